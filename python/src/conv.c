/* Convolutions (dense and fused low-rank). */
#include "fnl_native.h"

PyMethodDef fnl_conv_methods[] = {
    {NULL, NULL, 0, NULL},
};
