"""The matrix methods of factorized layers, computed by the Swift engine.

Conventions:
  * Pure functions accept array-likes of real numbers (ints and floats) and convert them to
    C-contiguous float32; the engine computes in float32 (reductions in float64).
  * Buffers updated in place (``add_to=``) must already be float32, C-contiguous and
    writeable, else TypeError/ValueError: a silent copy would drop the update.
  * A factorized matrix is W = U M_1 ... M_d V^T with U (m x r_0), M_j (r_{j-1} x r_j) and
    V (n x r_d); ``middle`` is None (W = U V^T) or the list [M_1, ..., M_d]. Passing U, V and
    every M_j with an extra leading axis gives a batch (e.g. attention heads).
  * Bad input raises TypeError (types, dtypes), ValueError (shapes, values, NaN/inf) or
    MemoryError, with the message starting "[fnl.<function>]".
"""
from __future__ import annotations

import contextlib
import numbers
import secrets
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

ArrayLike = Union[np.ndarray, Sequence]
Middle = Optional[Sequence[ArrayLike]]

_METHODS = {"exact": 0, "randomized": 1}


@contextlib.contextmanager
def _errors_as(fn: str):
    """Re-labels engine errors raised for another public function ("[fnl.spectral_init] ...")
    with the function the user called, so every message starts with "[fnl.<fn>]"."""
    try:
        yield
    except (TypeError, ValueError, MemoryError, OverflowError, RuntimeError) as e:
        msg = str(e)
        if type(e) in (TypeError, ValueError, MemoryError, OverflowError, RuntimeError) \
                and msg.startswith("[fnl.") and not msg.startswith(f"[fnl.{fn}]"):
            raise type(e)(f"[fnl.{fn}]" + msg[msg.index("]") + 1:]) from None
        raise


def _method(fn: str, method: str) -> int:
    if not isinstance(method, str):
        raise TypeError(f"[fnl.{fn}] method must be 'exact' or 'randomized', got {type(method).__name__}")
    if method not in _METHODS:
        raise ValueError(f"[fnl.{fn}] method must be 'exact' or 'randomized', got {method!r}")
    return _METHODS[method]


def _seed(fn: str, seed: Optional[int]) -> int:
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"[fnl.{fn}] seed must be None or an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"[fnl.{fn}] seed must be in 0..2**64-1, got {seed}")
    return int(seed)


def _real(fn: str, name: str, x) -> float:
    """A finite real number >= 0 (int, float or NumPy scalar; not bool, str or arrays)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"[fnl.{fn}] {name} must be a real number, got {type(x).__name__}")
    try:
        v = float(x)
    except OverflowError:
        v = float("inf")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"[fnl.{fn}] {name} must be a finite number >= 0, got {x!r}")
    return v


def _count(fn: str, name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"[fnl.{fn}] {name} must be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"[fnl.{fn}] {name} must be >= 1, got {x!r}")
    return int(x)


def _factor64(fn: str, name: str, x) -> np.ndarray:
    """x as a float64 array for the light NumPy glue, with the engine's input rules: real
    numbers only (TypeError), 2 or 3 dimensions, not empty, finite (ValueError)."""
    try:
        a = np.asarray(x)
    except Exception:
        raise TypeError(f"[fnl.{fn}] {name} must be an array of real numbers, got {type(x).__name__}") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(f"[fnl.{fn}] {name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ValueError(f"[fnl.{fn}] {name} must have 2 to 3 dimensions, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"[fnl.{fn}] {name} must not be empty, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"[fnl.{fn}] {name} contains NaN or inf")
    return a


def _middle(fn: str, middle: Middle):
    if middle is None or isinstance(middle, (list, tuple)):
        return middle
    raise TypeError(f"[fnl.{fn}] middle must be None or a list of matrices, got {type(middle).__name__}")


class Truncation(NamedTuple):
    """A rank-r truncated SVD W ~ U V^T with balanced factors."""

    U: np.ndarray
    V: np.ndarray
    singular_values: np.ndarray
    relative_error: float


def _truncate(fn: str, W, rank, method, seed, oversample, power_iters) -> Truncation:
    U, V, s, total, tail = _native.spectral_init(
        W, rank, _method(fn, method), oversample, power_iters, _seed(fn, seed)
    )
    rel = float(np.sqrt(tail / total)) if total > 0 else 0.0
    return Truncation(U, V, s, rel)


def spectral_init(
    W: ArrayLike,
    rank: int,
    method: str = "exact",
    seed: Optional[int] = None,
    *,
    oversample: int = 10,
    power_iters: int = 4,
) -> Tuple[np.ndarray, np.ndarray]:
    """Spectral initialization: factors of the rank-``rank`` truncated SVD W ~ P S Q^T.

    Returns (U, V) with U = P sqrt(S) (m x rank) and V = Q sqrt(S) (n x rank), so that
    U V^T is the best rank-r approximation of W and U^T U = V^T V = diag(S). A rank above
    min(m, n) pads both factors with zero columns (overcomplete factorization of W).

    method="exact" uses LAPACK's sgesdd; method="randomized" a Gaussian sketch of
    rank + ``oversample`` columns refined by ``power_iters`` power iterations (Halko et al.),
    reproducible for a given ``seed`` (None draws one). The randomized method falls back to the
    exact one when the sketch would not be smaller than min(m, n). The defaults (10, 4) keep
    ||W - U V^T||_F within 0.5% of the exact truncation's even for a Gaussian W (a flat
    spectrum, the hardest case: 4096 x 4096, rank 128) at about 1/30 of the exact cost;
    power_iters=2 gives about 0.9% there, and much less on spectra that decay.
    """
    t = _truncate("spectral_init", W, rank, method, seed, oversample, power_iters)
    return t.U, t.V


def compress(
    W: ArrayLike,
    rank: int,
    method: str = "exact",
    seed: Optional[int] = None,
    *,
    oversample: int = 10,
    power_iters: int = 4,
) -> Truncation:
    """Compresses a (pretrained) dense W to rank ``rank`` by truncated SVD.

    Returns Truncation(U, V, singular_values, relative_error) where U V^T is the
    approximation (balanced factors, as spectral_init) and relative_error =
    ||W - U V^T||_F / ||W||_F (0 for W = 0).
    """
    with _errors_as("compress"):
        return _truncate("compress", W, rank, method, seed, oversample, power_iters)


def conv_to_matrix(K: ArrayLike) -> np.ndarray:
    """Kernel (c_out, c_in, kh, kw) -> matrix (c_out*kh, c_in*kw), K[o,i,h,w] = W[o*kh+h, i*kw+w].

    Rows are (output channel, kernel row), columns (input channel, kernel column): the layout
    whose rank-r factorization runs as a 1 x kw conv followed by a kh x 1 conv. This permutes
    the axes to (c_out, kh, c_in, kw); it is not a bare reshape.
    """
    return _native.conv_to_matrix(K)


def matrix_to_conv(W: ArrayLike, c_out: int, c_in: int, kh: int, kw: int) -> np.ndarray:
    """Inverse of conv_to_matrix: (c_out*kh, c_in*kw) -> (c_out, c_in, kh, kw)."""
    return _native.matrix_to_conv(W, c_out, c_in, kh, kw)


def spectral_init_conv(
    K: ArrayLike, rank: int, method: str = "exact", seed: Optional[int] = None, **options
) -> Tuple[np.ndarray, np.ndarray]:
    """Spectral initialization of a conv kernel (c_out, c_in, kh, kw) through its matrix
    layout: U is (c_out*kh) x rank, V is (c_in*kw) x rank."""
    with _errors_as("spectral_init_conv"):
        return spectral_init(conv_to_matrix(K), rank, method, seed, **options)


def compose(U: ArrayLike, V: ArrayLike, middle: Middle = None) -> np.ndarray:
    """Collapse: W = U M_1 ... M_d V^T as a dense (m, n) array ((batch, m, n) for batches),
    multiplied in the cheaper order."""
    return _native.compose(U, V, _middle("compose", middle))


def frobenius_penalty(U: ArrayLike, V: ArrayLike, lam: float, middle: Middle = None) -> float:
    """Frobenius decay penalty (lam / 2) ||U M_1 ... M_d V^T||_F^2 (summed over a batch),
    from the Gram matrices U^T U and V^T V: W is never formed."""
    if middle is not None:  # (the common middle=None skips a call: this is the fastest path to the engine)
        middle = _middle("frobenius_penalty", middle)
    return _native.frobenius_penalty(U, V, middle, lam)


def frobenius_decay_grad(
    U: ArrayLike,
    V: ArrayLike,
    lam: float,
    middle: Middle = None,
    *,
    add_to: Optional[Sequence[np.ndarray]] = None,
) -> Tuple[np.ndarray, ...]:
    """Gradient of frobenius_penalty: (dU, dV, dM_1, ..., dM_d), with M = M_1 ... M_d,
    G_U = U^T U, G_V = V^T V:

        dU   = lam U (M G_V M^T)                 (lam U V^T V when d = 0)
        dV   = lam V (M^T G_U M)
        dM_j = lam (M_1..M_{j-1})^T G_U M G_V (M_{j+1}..M_d)^T

    at O((m + n) r^2) cost. With ``add_to=(gU, gV, *gM)`` the gradients are added in place
    into those float32 buffers (e.g. the loss gradients, before momentum) and returned.
    """
    if middle is not None:
        middle = _middle("frobenius_decay_grad", middle)
    return _native.frobenius_decay_grad(U, V, middle, lam, add_to)


def _scalar_or_batch(values: np.ndarray, U) -> Union[float, np.ndarray]:
    return values if np.ndim(U) == 3 else float(values[0])


def frobenius_norm(U: ArrayLike, V: ArrayLike, middle: Middle = None) -> Union[float, np.ndarray]:
    """||U M V^T||_F without forming the product (an array of norms for a batch)."""
    sq = _native.frobenius_sq_norms(U, V, _middle("frobenius_norm", middle))
    return _scalar_or_batch(np.sqrt(sq), U)


def nuclear_norm(U: ArrayLike, V: ArrayLike, middle: Middle = None) -> Union[float, np.ndarray]:
    """||U M V^T||_* (sum of singular values) from the small r x r problem R_U M R_V^T
    after thin QR of the factors (an array for a batch)."""
    return _scalar_or_batch(_native.nuclear_norms(U, V, _middle("nuclear_norm", middle)), U)


def factor_balance(U: ArrayLike, V: ArrayLike) -> Union[float, np.ndarray]:
    """||U^T U - V^T V||_F: 0 right after spectral initialization (both equal diag(S))."""
    return _scalar_or_batch(_native.factor_balance(U, V), U)


def effective_step_size(lr: float, U: ArrayLike, V: ArrayLike, middle: Middle = None) -> Union[float, np.ndarray]:
    """lr / ||U M V^T||_F^2: the step size seen by the scale-invariant product (Zhang et al.
    2019); weight decay keeps it from shrinking as the norm grows."""
    lr = _real("effective_step_size", "lr", lr)
    with _errors_as("effective_step_size"):
        sq = _native.frobenius_sq_norms(U, V, _middle("effective_step_size", middle))
    with np.errstate(divide="ignore"):
        return _scalar_or_batch(np.where(sq > 0, lr / np.maximum(sq, np.finfo(np.float64).tiny), np.inf), U)


def weight_decay_penalty(U: ArrayLike, V: ArrayLike, lam: float, middle: Middle = None) -> float:
    """Plain weight decay on each factor: (lam / 2) (||U||^2 + ||V||^2 + sum_j ||M_j||^2),
    an upper bound of lam ||U V^T||_* (tight at the balanced optimum): a nuclear-norm penalty."""
    lam = _real("weight_decay_penalty", "lam", lam)
    mids = list(_middle("weight_decay_penalty", middle) or [])
    factors = [_factor64("weight_decay_penalty", "U", U), _factor64("weight_decay_penalty", "V", V)]
    factors += [_factor64("weight_decay_penalty", f"middle[{j}]", m) for j, m in enumerate(mids)]
    return 0.5 * lam * sum(float(np.sum(np.square(f))) for f in factors)


def crs_coefficient(lam: float, dense_params: int, factorized_params: int) -> float:
    """Compression-rate-scaled weight decay (Gray et al., 2019): lam * factorized / dense."""
    lam = _real("crs_coefficient", "lam", lam)
    dense = _count("crs_coefficient", "dense_params", dense_params)
    factorized = _count("crs_coefficient", "factorized_params", factorized_params)
    return lam * factorized / dense
