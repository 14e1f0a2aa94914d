"""NumPy float64 reference implementations: the test oracle for fnl.

Every reference is deliberately the slow, obvious way (form W, call np.linalg.svd, explicit
index loops) so that it shares no shortcut with the engine it checks. Inputs are converted to
float64 first; batched inputs (a leading axis) are handled by looping over the batch.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np


def f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _chain(middle: Optional[Sequence]) -> List[np.ndarray]:
    return [f64(m) for m in (middle or [])]


def middle_product(middle: Sequence[np.ndarray], r0: int) -> np.ndarray:
    """M_1 ... M_d (float64), the r0 x r0 identity when empty."""
    out = np.eye(r0)
    for m in middle:
        out = out @ m
    return out


# ---------------------------------------------------------------- composition, norms


def compose(U, V, middle=None) -> np.ndarray:
    """W = U M_1 ... M_d V^T (batched: matmul broadcasts over the leading axis)."""
    U, V, mids = f64(U), f64(V), _chain(middle)
    out = U
    for m in mids:
        out = out @ m
    return out @ np.swapaxes(V, -1, -2)


def frobenius_sq(U, V, middle=None) -> np.ndarray:
    """||W_b||_F^2 per batch item (a 0-d array for unbatched input)."""
    W = compose(U, V, middle)
    return np.sum(W * W, axis=(-2, -1))


def frobenius_norm(U, V, middle=None):
    return np.sqrt(frobenius_sq(U, V, middle))


def fd_penalty(U, V, lam, middle=None) -> float:
    """(lam / 2) sum_b ||W_b||_F^2, by forming W in float64."""
    return 0.5 * float(lam) * float(np.sum(frobenius_sq(U, V, middle)))


def fd_grad(U, V, lam, middle=None) -> Tuple[np.ndarray, ...]:
    """Gradient of fd_penalty through W (chain rule on the formed product):
    G = lam W; dU = G (M V^T)^T; dV = G^T (U M); dM_j = (U M_<j)^T G (M_>j V^T)^T."""
    U, V, mids = f64(U), f64(V), _chain(middle)
    lam = float(lam)
    T = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731
    G = lam * compose(U, V, mids)
    left = [U]  # left[j] = U M_1 .. M_j
    for m in mids:
        left.append(left[-1] @ m)
    right = [T(V)]  # right[k] = M_{d-k+1} .. M_d V^T
    for m in reversed(mids):
        right.append(m @ right[-1])
    right = right[::-1]  # right[j] = M_{j+1} .. M_d V^T
    dU = G @ T(right[0])
    dV = T(G) @ left[-1]
    dM = [T(left[j]) @ G @ T(right[j + 1]) for j in range(len(mids))]
    return (dU, dV, *dM)


def central_differences(f, arrays: Sequence[np.ndarray], eps: float = 1e-6) -> List[np.ndarray]:
    """d f / d arrays[i] by central differences, every entry, in float64."""
    arrays = [f64(a).copy() for a in arrays]
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            hi = f(*arrays)
            flat[i] = old - eps
            lo = f(*arrays)
            flat[i] = old
            gflat[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def nuclear_norm(U, V, middle=None):
    """||W_b||_* = sum of singular values, via np.linalg.svd of the formed W."""
    W = compose(U, V, middle)
    return np.sum(np.linalg.svd(W, compute_uv=False), axis=-1)


def factor_balance(U, V):
    U, V = f64(U), f64(V)
    D = np.swapaxes(U, -1, -2) @ U - np.swapaxes(V, -1, -2) @ V
    return np.sqrt(np.sum(D * D, axis=(-2, -1)))


def effective_step_size(lr, U, V, middle=None):
    sq = frobenius_sq(U, V, middle)
    return np.where(sq > 0, float(lr) / np.where(sq > 0, sq, 1.0), np.inf)


def weight_decay_penalty(U, V, lam, middle=None) -> float:
    return 0.5 * float(lam) * sum(float(np.sum(f64(a) ** 2)) for a in [U, V, *(middle or [])])


def crs_coefficient(lam, dense, factorized) -> float:
    return float(lam) * factorized / dense


# ---------------------------------------------------------------- truncated SVD (SI)


def svd_truncate(W, rank: int):
    """Best rank-`rank` approximation of W in float64.

    Returns (U, V, s, relative_error, W_r): U = P sqrt(S), V = Q sqrt(S) padded with zero
    columns above min(m, n); s the leading min(rank, m, n) singular values; W_r = U V^T;
    relative_error = sqrt(sum_{i >= rank} s_i^2 / sum s_i^2) (0 for W = 0).
    """
    W = f64(W)
    m, n = W.shape
    P, s, Qt = np.linalg.svd(W, full_matrices=False)
    k = min(rank, len(s))
    U = np.zeros((m, rank))
    V = np.zeros((n, rank))
    U[:, :k] = P[:, :k] * np.sqrt(s[:k])
    V[:, :k] = Qt[:k].T * np.sqrt(s[:k])
    total = float(np.sum(s**2))
    tail = float(np.sum(s[k:] ** 2))
    rel = math.sqrt(tail / total) if total > 0 else 0.0
    return U, V, s[:k], rel, U @ V.T


def singular_values(W) -> np.ndarray:
    return np.linalg.svd(f64(W), compute_uv=False)


# ---------------------------------------------------------------- conv layout


def conv_to_matrix(K) -> np.ndarray:
    """W[o*kh + h, i*kw + w] = K[o, i, h, w], by explicit loops."""
    K = f64(K)
    c_out, c_in, kh, kw = K.shape
    W = np.empty((c_out * kh, c_in * kw))
    for o in range(c_out):
        for i in range(c_in):
            for h in range(kh):
                for w in range(kw):
                    W[o * kh + h, i * kw + w] = K[o, i, h, w]
    return W


def matrix_to_conv(W, c_out, c_in, kh, kw) -> np.ndarray:
    W = f64(W)
    K = np.empty((c_out, c_in, kh, kw))
    for o in range(c_out):
        for i in range(c_in):
            for h in range(kh):
                for w in range(kw):
                    K[o, i, h, w] = W[o * kh + h, i * kw + w]
    return K


# ---------------------------------------------------------------- rank rules


def round_half_even(x: float) -> int:
    """Python's round (the rule's `round`): ties to even."""
    f = math.floor(x)
    d = x - f
    if d > 0.5 or (d == 0.5 and f % 2 == 1):
        return int(f) + 1
    return int(f)


def linear_rank(m, n, s) -> int:
    return max(1, round_half_even(s * min(m, n)))


def conv_rank(c_out, c_in, kh, kw, s) -> int:
    return max(1, round_half_even(s * c_out * kh))


def matrix_dims(shape) -> Tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    c_out, c_in, kh, kw = shape
    return c_out * kh, c_in * kw


def rank_for(shape, s) -> int:
    return linear_rank(*shape, s) if len(shape) == 2 else conv_rank(*shape, s)


def dense_params(shape) -> int:
    return int(np.prod(shape))


def factorized_params(shape, rank, depth=0) -> int:
    rows, cols = matrix_dims(shape)
    return rows * rank + cols * rank + depth * rank * rank


def parameter_ratio(shapes, s) -> float:
    return sum(factorized_params(sh, rank_for(sh, s)) for sh in shapes) / sum(dense_params(sh) for sh in shapes)
