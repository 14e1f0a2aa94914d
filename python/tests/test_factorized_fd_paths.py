"""Frobenius-decay gradients of U V^T through every Gram-matrix path of the engine, against the
float64 reference of references.py (W formed explicitly).

The engine computes G = A^T A for a factor A (rows x k) by one of four paths (Blas.gram):
a sum of squares (k = 1), a SIMD loop in Swift (2 <= k <= 4 while rows * k^2 <= 4096),
OpenBLAS sgemm (rows * k^2 <= 2^20; one call, or two when k > 16 is not a multiple of 16) and
ssyrk above. These shapes put U and V on both sides of each threshold, with odd sizes, one-row
factors and the ranks of a low-rank ResNet-20 (3, 5, 6, 10, 19).

Tolerance: float32 Gram matrices and products over up to ~1000 rows: rtol 1e-4 with an absolute
floor of 1e-5 x the largest entry (as test_functional.py).
"""
import numpy as np
import pytest

import fnl
import fnl.optim as fo
import references as ref
from fnl.nn.parameter import FactorGroup, Parameter
from conftest import assert_close, random_chain, scale_atol

NARROW_WORK = 4096        # Blas.narrowGramWork
GEMM_WORK = 1 << 20       # Blas.gemmGramWork


def edge_rows(k, work):
    """Rows putting rows * k^2 just below, at and just above `work`."""
    at = work // (k * k)
    return [at - 1, at, at + 1]


SHAPES = (
    [(m, n, r) for r in (1, 2, 3, 4) for m, n in ((1, 1), (2, 7), (5, 1), (9, 13), (48, 16))]
    + [(rows, 3, k) for k in (2, 3, 4) for rows in edge_rows(k, NARROW_WORK)]
    + [(2000, 5, 1), (48, 48, 5), (96, 48, 10), (32, 16, 3), (64, 32, 6), (192, 96, 19), (1, 192, 19),
       (33, 40, 17), (20, 9, 32), (7, 3, 47)]
    + [(rows, 2, 32) for rows in edge_rows(32, GEMM_WORK)]
)


# every shape unbatched, the smaller ones also as a batch of 2 (e.g. attention heads)
CASES = [(m, n, r, None) for m, n, r in SHAPES] + [(m, n, r, 2) for m, n, r in SHAPES if m * r <= 20000]


@pytest.mark.parametrize("m,n,r,batch", CASES, ids=lambda v: str(v))
def test_frobenius_decay_grad_over_gram_paths(rng, m, n, r, batch):
    U, V, _ = random_chain(rng, m, n, [r], batch)
    dU, dV = fnl.frobenius_decay_grad(U, V, 0.3)
    eU, eV = ref.fd_grad(U, V, 0.3)
    assert_close(dU, eU, rtol=1e-4, atol=scale_atol(eU, 1e-5) + 1e-7, what=f"dU {m}x{r}")
    assert_close(dV, eV, rtol=1e-4, atol=scale_atol(eV, 1e-5) + 1e-7, what=f"dV {n}x{r}")


@pytest.mark.parametrize("m,n,r", [(40, 3, 1), (9, 5, 3), (257, 2, 4), (192, 96, 19)])
@pytest.mark.parametrize("which,bad", [("U", np.nan), ("V", np.inf), ("V", -np.inf)])
def test_optimizer_finds_non_finite_factors_on_every_gram_path(m, n, r, which, bad):
    """The optimizers read the factors' finiteness off the Gram diagonals (no separate scan):
    a NaN or inf anywhere in U or V must still stop the step, name it, and change nothing."""
    rng = np.random.default_rng(5)
    U, V, _ = random_chain(rng, m, n, [r])
    pu, pv = Parameter(U, "U"), Parameter(V, "V")
    for p in (pu, pv):
        p.grad[...] = rng.standard_normal(p.shape)
    at = (m // 2, r - 1) if which == "U" else (n - 1, r // 2)
    (pu if which == "U" else pv).data[at] = bad
    before = [pu.data.copy(), pv.data.copy()]
    opt = fo.SGD([{"params": [pu, pv], "factor_groups": [FactorGroup(pu, pv)]}], lr=0.1, momentum=0.9,
                 weight_decay=1e-3, decay="frobenius")
    flat = at[0] * r + at[1]
    with pytest.raises(ValueError, match=rf"factor product 0: {which} contains NaN or inf \(first at flat index {flat}:"):
        opt.step()
    np.testing.assert_array_equal(pu.data, before[0])
    np.testing.assert_array_equal(pv.data, before[1])
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        fnl.frobenius_decay_grad(pu.data, pv.data, 0.3)
