/*
 * Factorized matrices W_b = U_b M_1b ... M_db V_b^T over a batch of b < batch items:
 * U is (batch, m, r_0), middle[j] is (batch, r_j, r_{j+1}), V is (batch, n, r_d), all
 * row-major and contiguous; ranks holds depth+1 entries r_0..r_d; middle may be NULL when
 * depth == 0. Part of fnl_engine.h.
 */
#ifndef FNL_FACTORIZED_H
#define FNL_FACTORIZED_H

#define FNL_SI_EXACT 0
#define FNL_SI_RANDOMIZED 1

/* Spectral initialization of the dense m x n matrix W at rank `rank` (>= 1; above min(m, n)
 * the factors are padded with zero columns). Writes U (m x rank), V (n x rank) and the
 * leading min(rank, m, n) singular values into s; total_energy = ||W||_F^2 and
 * tail_energy = ||W - U V^T||_F^2. method: FNL_SI_EXACT or FNL_SI_RANDOMIZED (with
 * oversample >= 0, power_iters >= 0 and seed). */
int32_t fnl_spectral_init(const float *W, int64_t m, int64_t n, int64_t rank, int32_t method,
                          int64_t oversample, int64_t power_iters, uint64_t seed,
                          float *U, float *V, float *s, double *total_energy, double *tail_energy,
                          char *err, size_t err_cap);

/* squared_norms[b] = ||W_b||_F^2 (batch entries), from Gram matrices. */
int32_t fnl_frobenius_sq_norms(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                               const float *U, const float *V, const float *const *middle,
                               double *squared_norms, char *err, size_t err_cap);

/* penalty = (lam / 2) sum_b ||W_b||_F^2, lam >= 0. */
int32_t fnl_frobenius_penalty(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                              const float *U, const float *V, const float *const *middle,
                              float lam, double *penalty, char *err, size_t err_cap);

/* Gradient of the penalty: dU = lam U (M G_V M^T), dV = lam V (M^T G_U M),
 * dM_j = lam (M_1..M_{j-1})^T G_U M G_V (M_{j+1}..M_d)^T. accumulate != 0 adds into the
 * outputs instead of overwriting them. */
int32_t fnl_frobenius_decay_grad(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                                 const float *U, const float *V, const float *const *middle,
                                 float lam, int32_t accumulate,
                                 float *dU, float *dV, float *const *dmiddle,
                                 char *err, size_t err_cap);

/* W_b = U_b M_b V_b^T, written as (batch, m, n). */
int32_t fnl_compose(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                    const float *U, const float *V, const float *const *middle,
                    float *W, char *err, size_t err_cap);

/* nuclear[b] = ||W_b||_* through the thin QR of the factors. */
int32_t fnl_nuclear_norms(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                          const float *U, const float *V, const float *const *middle,
                          double *nuclear, char *err, size_t err_cap);

/* balance[b] = ||U_b^T U_b - V_b^T V_b||_F (depth must be 0). */
int32_t fnl_factor_balance(int64_t batch, int64_t m, int64_t n, int64_t rank,
                           const float *U, const float *V, double *balance, char *err, size_t err_cap);

/* Conv kernel K (c_out, c_in, kh, kw) <-> matrix W ((c_out*kh) x (c_in*kw)),
 * K[o, i, h, w] = W[o*kh + h, i*kw + w]. */
int32_t fnl_conv_to_matrix(const float *K, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw,
                           float *W, char *err, size_t err_cap);
int32_t fnl_matrix_to_conv(const float *W, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw,
                           float *K, char *err, size_t err_cap);

#endif /* FNL_FACTORIZED_H */
