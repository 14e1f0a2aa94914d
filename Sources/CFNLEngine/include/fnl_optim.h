/*
 * Optimizer steps, in place on parameter buffers. Part of fnl_engine.h.
 *
 * Every step function updates one parameter group of `count` tensors in one call:
 *   params[i]  float[sizes[i]]  the parameter, updated in place;
 *   grads[i]   float[sizes[i]]  its loss gradient (read only);
 *   decay[i]                    its weight-decay coefficient (finite, >= 0);
 * the decay term D_i = decay[i] * w_i + fd_i is added to the gradient, fd_i being the
 * Frobenius-decay gradient of the factorized product tensor i belongs to (0 for others).
 *
 * Factorized products (for FD and norm matching) are concatenated int64 records
 *   [depth, batch, m, n, r_0, ..., r_depth, iU, iV, iM_1, ..., iM_depth]   (2*depth + 7 entries)
 * naming tensors of the group: W_b = U_b M_1b ... M_db V_b^T, U (batch, m, r_0), V (batch, n, r_d),
 * M_j (batch, r_{j-1}, r_j) row-major; a tensor belongs to at most one product. n_chains is the
 * number of records (chains and chain_lam may be NULL when it is 0). chain_lam[c] >= 0 is the FD
 * coefficient lambda of product c:
 *   fd_U = lambda U (M G_V M^T), fd_V = lambda V (M^T G_U M), fd_Mj = lambda P^T G_U M G_V S^T
 * (see fnl_frobenius_decay_grad), evaluated at the parameters before the step. The FD terms
 * are written into `workspace` (workspace_len floats, at least the total size of the factor
 * tensors; NULL for a temporary allocation).
 *
 * check_finite != 0: every gradient is scanned for NaN/inf before any buffer changes
 * (FNL_EVALUE naming grads[i]). lr >= 0. Buffers never alias one another (the caller checks).
 */
#ifndef FNL_OPTIM_H
#define FNL_OPTIM_H

/* SGD, PyTorch semantics:  d = g + D;  if mu != 0: b = d (first_step) or b = mu b + (1 - dampening) d,
 * d = nesterov ? d + mu b : b;  w -= lr d.  momentum may be NULL when mu == 0.
 * nesterov requires mu > 0 and dampening == 0; 0 <= dampening <= 1. */
int32_t fnl_sgd_step(int64_t count, float *const *params, const float *const *grads, float *const *momentum,
                     const int64_t *sizes, const float *decay,
                     int64_t n_chains, int64_t chains_len, const int64_t *chains, const float *chain_lam,
                     float *workspace, int64_t workspace_len,
                     float lr, float mu, float dampening, int32_t nesterov, int32_t first_step,
                     int32_t check_finite, char *err, size_t err_cap);

/* AdamW, PyTorch semantics with the decay term decoupled:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   r = (m / (1 - b1^step)) / (sqrt(v) / sqrt(1 - b2^step) + eps);  w -= lr (r + D).
 * step >= 1 is the 1-based index of this step; 0 <= b1, b2 < 1; eps > 0. */
int32_t fnl_adamw_step(int64_t count, float *const *params, const float *const *grads,
                       float *const *exp_avg, float *const *exp_avg_sq,
                       const int64_t *sizes, const float *decay,
                       int64_t n_chains, int64_t chains_len, const int64_t *chains, const float *chain_lam,
                       float *workspace, int64_t workspace_len,
                       float lr, float beta1, float beta2, float eps, int64_t step,
                       int32_t check_finite, char *err, size_t err_cap);

/* LAMB / FLAMBe: moments and r as for AdamW, u = r + D, per tensor
 * trust = ||w|| / ||u|| (1 when either norm is 0), w -= lr trust u.
 * update (update_len >= the total size of the group, or NULL for a temporary) holds u between
 * the two passes. trust_out (may be NULL) receives the count trust ratios. */
int32_t fnl_lamb_step(int64_t count, float *const *params, const float *const *grads,
                      float *const *exp_avg, float *const *exp_avg_sq,
                      const int64_t *sizes, const float *decay,
                      int64_t n_chains, int64_t chains_len, const int64_t *chains, const float *chain_lam,
                      float *workspace, int64_t workspace_len, float *update, int64_t update_len,
                      float lr, float beta1, float beta2, float eps, int64_t step,
                      int32_t check_finite, double *trust_out, char *err, size_t err_cap);

/* Frobenius norms of the products (norms_out[c] = sqrt(sum_b ||W_b||_F^2), may be NULL) and,
 * when targets != NULL, norm matching: every factor of product c is scaled by
 * (targets[c] / norm_c)^(1 / (depth + 2)) (products of norm 0 are left unchanged). */
int32_t fnl_norm_match(int64_t count, float *const *params, const int64_t *sizes,
                       int64_t n_chains, int64_t chains_len, const int64_t *chains, const double *targets,
                       double *norms_out, char *err, size_t err_cap);

#endif /* FNL_OPTIM_H */
