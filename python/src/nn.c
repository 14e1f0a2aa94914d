/* Neural-network layer kernels (batch norm, pooling, losses ...). */
#include "fnl_native.h"

PyMethodDef fnl_nn_methods[] = {
    {NULL, NULL, 0, NULL},
};
