/*
 * Neural-network layer kernels: fully connected (dense and low-rank U M_1..M_d V^T), batch
 * normalization, max/average pooling, ReLU and softmax cross-entropy. Arrays are row-major
 * float32 and contiguous; images are NCHW. Gradients named d* are overwritten, or added into
 * when `accumulate` != 0 (parameter gradients only). Optional pointers may be NULL. Part of
 * fnl_engine.h.
 */
#ifndef FNL_NN_H
#define FNL_NN_H

/* y (n x n_out) = x (n x n_in) W^T + bias; W is (n_out x n_in); bias may be NULL. */
int32_t fnl_linear_forward(const float *x, int64_t n, int64_t n_in, int64_t n_out, const float *W,
                           const float *bias, float *y, char *err, size_t err_cap);

/* dW (+)= dy^T x, dbias (+)= column sums of dy (if dbias), dx = dy W (if dx). */
int32_t fnl_linear_backward(const float *dy, const float *x, int64_t n, int64_t n_in, int64_t n_out,
                            const float *W, int32_t accumulate, float *dW, float *dbias, float *dx,
                            char *err, size_t err_cap);

/* y = x V M_d^T ... M_1^T U^T + bias with U (n_out x r_0), middle[j] (r_j x r_{j+1}),
 * V (n_in x r_depth); ranks holds depth+1 entries; middle may be NULL when depth == 0. */
int32_t fnl_lowrank_linear_forward(const float *x, int64_t n, int64_t n_in, int64_t n_out, int64_t depth,
                                   const int64_t *ranks, const float *U, const float *V,
                                   const float *const *middle, const float *bias, float *y,
                                   char *err, size_t err_cap);

/* Gradients of the low-rank linear layer: dU, dV, dmiddle[j] (+)=, dbias (+)= (if dbias),
 * dx = (if dx). dmiddle may be NULL when depth == 0. */
int32_t fnl_lowrank_linear_backward(const float *dy, const float *x, int64_t n, int64_t n_in, int64_t n_out,
                                    int64_t depth, const int64_t *ranks, const float *U, const float *V,
                                    const float *const *middle, int32_t accumulate, float *dU, float *dV,
                                    float *const *dmiddle, float *dbias, float *dx, char *err, size_t err_cap);

/* Batch norm over x (n, c, s) (s = spatial size). training != 0: batch statistics, writes
 * mean and invstd = 1/sqrt(var + eps) (c each) and updates running_mean/running_var in place
 * with `momentum` (unbiased variance, PyTorch's rule); training == 0: uses the running
 * statistics and writes them (mean, invstd) too. y = gamma (x - mean) invstd + beta. */
int32_t fnl_batchnorm_forward(const float *x, int64_t n, int64_t c, int64_t s, const float *gamma,
                              const float *beta, float *running_mean, float *running_var, int32_t training,
                              float momentum, float eps, float *y, float *mean, float *invstd,
                              char *err, size_t err_cap);

/* dgamma (+)= sum dy xhat, dbeta (+)= sum dy; dx (if dx) = gamma invstd / (n s) (n s dy - dbeta
 * - xhat dgamma) when training != 0, else gamma invstd dy. xhat = (x - mean) invstd. */
int32_t fnl_batchnorm_backward(const float *dy, const float *x, int64_t n, int64_t c, int64_t s,
                               const float *gamma, const float *mean, const float *invstd, int32_t training,
                               int32_t accumulate, float *dgamma, float *dbeta, float *dx,
                               char *err, size_t err_cap);

/* Batch norm with a fused epilogue: y = act(gamma (x - mean) invstd + beta + residual), act = ReLU
 * when relu != 0 else the identity; residual (x's shape) may be NULL. Otherwise as
 * fnl_batchnorm_forward. */
int32_t fnl_batchnorm_act_forward(const float *x, int64_t n, int64_t c, int64_t s, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var, int32_t training,
                                  float momentum, float eps, const float *residual, int32_t relu, float *y,
                                  float *mean, float *invstd, char *err, size_t err_cap);

/* Backward of fnl_batchnorm_act_forward: with output = the forward's y of a relu != 0 call, the
 * gradient g = dy where output > 0 (else 0) goes through the normalization as dy does in
 * fnl_batchnorm_backward, and masked_grad (if given; needs output; not dx) receives g, the
 * gradient of the residual. output == NULL: exactly fnl_batchnorm_backward. */
int32_t fnl_batchnorm_act_backward(const float *dy, const float *x, const float *output, int64_t n, int64_t c,
                                   int64_t s, const float *gamma, const float *mean, const float *invstd,
                                   int32_t training, int32_t accumulate, float *dgamma, float *dbeta, float *dx,
                                   float *masked_grad, char *err, size_t err_cap);

/* Max pooling of x (n, c, h, w) into y (n, c, oh, ow), with idx the flat argmax (row * w + col)
 * inside each input plane. Kernel (kh, kw), stride (sh, sw), padding (ph, pw) <= kernel / 2. */
int32_t fnl_maxpool2d_forward(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
                              int64_t ow, float *y, int32_t *idx, char *err, size_t err_cap);

/* dx (planes x in_plane) = scatter-add of dy (planes x out_plane) at idx. */
int32_t fnl_maxpool2d_backward(const float *dy, const int32_t *idx, int64_t planes, int64_t out_plane,
                               int64_t in_plane, float *dx, char *err, size_t err_cap);

/* Average pooling; count_include_pad != 0 divides by the window clipped to the padded input,
 * else by the number of input elements covered. */
int32_t fnl_avgpool2d_forward(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
                              int64_t ow, int32_t count_include_pad, float *y, char *err, size_t err_cap);

int32_t fnl_avgpool2d_backward(const float *dy, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
                               int64_t ow, int32_t count_include_pad, float *dx, char *err, size_t err_cap);

/* y = max(x, 0) over count values. */
int32_t fnl_relu_forward(const float *x, int64_t count, float *y, char *err, size_t err_cap);

/* dx = dy where y > 0, else 0. */
int32_t fnl_relu_backward(const float *dy, const float *y, int64_t count, float *dx, char *err, size_t err_cap);

/* Softmax cross-entropy with label smoothing eps in [0, 1] over logits (n x k) and labels in
 * 0..k-1: loss = mean_i [logsumexp(z_i) - sum_k q_ik z_ik], q = (1 - eps) onehot + eps / k;
 * dlogits (if given) = (softmax(z) - q) / n. */
int32_t fnl_cross_entropy(const float *logits, const int64_t *labels, int64_t n, int64_t k, float smoothing,
                          double *loss, float *dlogits, char *err, size_t err_cap);

#endif /* FNL_NN_H */
