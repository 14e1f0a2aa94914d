/* Neural-network layer kernels (batch norm, pooling, losses ...). Part of fnl_engine.h. */
#ifndef FNL_NN_H
#define FNL_NN_H
#endif /* FNL_NN_H */
