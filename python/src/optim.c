/* Optimizer steps, in place on NumPy parameter buffers. */
#include "fnl_native.h"

PyMethodDef fnl_optim_methods[] = {
    {NULL, NULL, 0, NULL},
};
