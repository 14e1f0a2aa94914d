/*
 * Convolutions (dense and fused low-rank), NCHW float32, groups = 1. Part of fnl_engine.h.
 *
 * geom points to FNL_CONV_GEOM_LEN int64 entries
 *     {n, c_in, h, w, c_out, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w}:
 * x (n, c_in, h, w), kernel (c_out, c_in, kh, kw), y (n, c_out, out_h, out_w) with
 *     out = (size + 2 pad - dil (k - 1) - 1) / stride + 1,
 *     y[n, o, oh, ow] = bias[o] + sum_{i,a,b} K[o, i, a, b] x[n, i, oh*sh - ph + a*dh, ow*sw - pw + b*dw]
 * (zero padding). bias / dbias may be NULL (no bias).
 *
 * workspace: NULL (the engine allocates temporaries) or a caller buffer of workspace_count
 * floats, at least the size reported by the plan functions, reusable across calls (not
 * concurrently). Outputs never alias inputs or the workspace (the caller checks).
 */
#ifndef FNL_CONV_H
#define FNL_CONV_H

#include <stddef.h>
#include <stdint.h>

#define FNL_CONV_GEOM_LEN 13

/* Validates the geometry; writes the output size and the workspace floats of
 * fnl_conv2d_forward / fnl_conv2d_backward (any output pointer may be NULL). */
int32_t fnl_conv2d_plan(const int64_t *geom, int64_t *out_h, int64_t *out_w,
                        int64_t *workspace_forward, int64_t *workspace_backward, char *err, size_t err_cap);

/* y = conv2d(x, K) + bias. */
int32_t fnl_conv2d_forward(const int64_t *geom, const float *x, const float *K, const float *bias, float *y,
                           float *workspace, int64_t workspace_count, char *err, size_t err_cap);

/* Gradients of a loss with dL/dy = grad_y: dx (like x), dK (like K), dbias (c_out; skipped when NULL).
 * Every output is overwritten. */
int32_t fnl_conv2d_backward(const int64_t *geom, const float *grad_y, const float *x, const float *K,
                            float *dx, float *dK, float *dbias,
                            float *workspace, int64_t workspace_count, char *err, size_t err_cap);

/* Low-rank kernel W = U M_1 .. M_depth V^T in the layout of fnl_conv_to_matrix:
 * U ((c_out*kh) x r_0), middle[j] (r_j x r_{j+1}), V ((c_in*kw) x r_depth), ranks r_0..r_depth
 * (depth + 1 entries; middle may be NULL when depth == 0); K[o, i, a, b] = W[o*kh + a, i*kw + b].
 * path: FNL_LRCONV_AUTO chooses by operation count between
 *   FNL_LRCONV_FUSED:   a 1 x kw conv (c_in -> r channels, width options) then a kh x 1 conv
 *                       (r -> c_out, height options), r = min_j r_j, W never formed;
 *   FNL_LRCONV_COMPOSE: W formed, then the dense convolution.
 * The fused path runs both stages as direct convolutions where both axes have stride 1,
 * dilation 1 and padding <= kernel - 1 (and the engine was built for AVX2 + FMA), else as
 * matrix products (lowering, Winograd); an engine built without AVX2 + FMA takes the direct
 * stages only when FNL_LRCONV_FUSED is requested. FNL_LRCONV_FUSED_PRODUCTS requests the fused
 * path with matrix products everywhere (comparisons and tests; the plan reports it as
 * FNL_LRCONV_FUSED). */
#define FNL_LRCONV_AUTO 0
#define FNL_LRCONV_FUSED 1
#define FNL_LRCONV_COMPOSE 2
#define FNL_LRCONV_FUSED_PRODUCTS 3

/* The path taken, the intermediate channels r, the output size, the workspace floats of
 * forward / backward and the float count of the intermediate z (r, n, h, out_w) of the
 * fused path (0 on the compose path). Any output pointer may be NULL. */
int32_t fnl_lowrank_conv2d_plan(const int64_t *geom, int64_t depth, const int64_t *ranks, int32_t path,
                                int32_t *chosen_path, int64_t *rank, int64_t *out_h, int64_t *out_w,
                                int64_t *workspace_forward, int64_t *workspace_backward,
                                int64_t *intermediate_count, char *err, size_t err_cap);

/* y = conv2d(x, K(U M V^T)) + bias. intermediate: NULL, or (fused path only) a buffer of
 * intermediate_count floats that receives z for fnl_lowrank_conv2d_backward. */
int32_t fnl_lowrank_conv2d_forward(const int64_t *geom, int64_t depth, const int64_t *ranks,
                                   const float *x, const float *U, const float *V, const float *const *middle,
                                   const float *bias, int32_t path, float *y, float *intermediate,
                                   float *workspace, int64_t workspace_count, char *err, size_t err_cap);

/* Gradients dx, dU, dV, dmiddle[j] (like middle[j]) and dbias (skipped when NULL) of a loss
 * with dL/dy = grad_y, in one call. intermediate: NULL (z is recomputed from x) or the buffer
 * filled by the forward pass with the same x, factors and path. */
int32_t fnl_lowrank_conv2d_backward(const int64_t *geom, int64_t depth, const int64_t *ranks,
                                    const float *grad_y, const float *x, const float *U, const float *V,
                                    const float *const *middle, const float *intermediate, int32_t path,
                                    float *dx, float *dU, float *dV, float *const *dmiddle, float *dbias,
                                    float *workspace, int64_t workspace_count, char *err, size_t err_cap);

#endif /* FNL_CONV_H */
