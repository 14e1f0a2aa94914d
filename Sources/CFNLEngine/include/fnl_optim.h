/* Optimizer steps, in place on parameter buffers. Part of fnl_engine.h. */
#ifndef FNL_OPTIM_H
#define FNL_OPTIM_H
#endif /* FNL_OPTIM_H */
