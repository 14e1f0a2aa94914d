"""Shared test helpers: assert_close with explicit tolerances, random factor chains.

The NumPy float64 references live in references.py. Tests import both by module name
(pytest puts this folder on sys.path: python/tests has no __init__.py).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest


def assert_close(actual, expected, rtol: float, atol: float, what: str = "") -> None:
    """|actual - expected| <= atol + rtol |expected| elementwise, with a readable report.

    Both tolerances are required: the engine computes in float32, so every comparison with a
    float64 reference states how much rounding it allows."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what} shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(a)), f"{what} has non-finite values"
    err = np.abs(a - e)
    bound = atol + rtol * np.abs(e)
    if np.all(err <= bound):
        return
    i = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    raise AssertionError(
        f"{what} not close (rtol={rtol:g}, atol={atol:g}): worst at {i}: actual {a[i]!r} "
        f"expected {e[i]!r} |diff| {err[i]:.3g} > {bound[i]:.3g}; max |diff| {err.max():.3g}"
    )


def scale_atol(expected, rel: float) -> float:
    """An absolute tolerance relative to the size of `expected` (its max-abs entry), for
    float32 results whose rounding error is proportional to the magnitude of the data."""
    e = np.asarray(expected, dtype=np.float64)
    return rel * (float(np.max(np.abs(e))) if e.size else 0.0) + 1e-30


def random_chain(rng: np.random.Generator, m: int, n: int, ranks: Sequence[int],
                 batch: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
    """Random float32 U (m x r_0), V (n x r_d) and middles M_j (r_{j-1} x r_j), with a leading
    batch axis when `batch` is given. Entries ~ N(0, 1/sqrt(r)) keep products O(1)."""
    lead = () if batch is None else (batch,)
    U = (rng.standard_normal(lead + (m, ranks[0])) / np.sqrt(ranks[0])).astype(np.float32)
    V = (rng.standard_normal(lead + (n, ranks[-1])) / np.sqrt(ranks[-1])).astype(np.float32)
    mids = [
        (rng.standard_normal(lead + (ranks[j], ranks[j + 1])) / np.sqrt(ranks[j])).astype(np.float32)
        for j in range(len(ranks) - 1)
    ]
    return U, V, mids


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
