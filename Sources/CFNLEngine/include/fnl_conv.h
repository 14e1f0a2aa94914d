/* Convolutions (dense and fused low-rank). Part of fnl_engine.h. */
#ifndef FNL_CONV_H
#define FNL_CONV_H
#endif /* FNL_CONV_H */
