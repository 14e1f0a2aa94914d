"""Initializers (NumPy, float32) shared by the layers and by fnl.factorize."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def rng(seed) -> np.random.Generator:
    """A NumPy Generator from None (fresh entropy), an int or an existing Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"[fnl.nn] seed must be None, an int or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(seed)


def kaiming_normal(shape: Tuple[int, ...], fan_in: int, gen: np.random.Generator) -> np.ndarray:
    """N(0, 2 / fan_in) entries (He et al. 2015, ReLU gain): the dense init of conv/linear."""
    return (gen.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def orthonormal_rows(k: int, r: int, gen: np.random.Generator) -> np.ndarray:
    """A k x r matrix R with orthonormal rows (R R^T = I_k), k <= r, from the QR of a
    Gaussian r x k matrix."""
    q, rr = np.linalg.qr(gen.standard_normal((r, k)))
    q *= np.sign(np.diag(rr))[None, :]
    return q.T.astype(np.float64)


def spread_factors(U: np.ndarray, V: np.ndarray, k: int, gen: Optional[np.random.Generator]) -> Tuple[np.ndarray, np.ndarray]:
    """Spectral factors padded with zero columns beyond the k = min(m, n) singular values
    (spectral_init at a rank r > k) are rotated by a random R (k x r, R R^T = I):
    U' = U_k R, V' = V_k R. The product U' V'^T = U_k V_k^T is unchanged and the balance
    U'^T U' = V'^T V' = R^T S R holds, but no column is zero (zero columns would receive zero
    gradients forever, wasting the overcomplete width)."""
    r = U.shape[1]
    if r <= k or gen is None:
        return U, V
    R = orthonormal_rows(k, r, gen)
    return ((U[:, :k].astype(np.float64) @ R).astype(np.float32),
            (V[:, :k].astype(np.float64) @ R).astype(np.float32))
