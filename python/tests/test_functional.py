"""fnl.functional against the NumPy float64 references (references.py) over many shapes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import fnl
import references as ref
from conftest import assert_close, random_chain, scale_atol

# Shapes that exercise the edges: row and column vectors, squares, odd sizes, tall and wide.
MATRIX_SHAPES = [(1, 1), (1, 7), (7, 1), (1, 33), (33, 1), (2, 3), (5, 5), (13, 7), (7, 13),
                 (31, 17), (17, 31), (64, 48), (100, 3), (3, 100)]


def ranks_for(m, n):
    """Rank 1, a middle rank, rank = min(m, n) and an overcomplete rank (padding)."""
    k = min(m, n)
    return sorted({1, max(1, k // 2), k, k + 3})


SHAPE_RANKS = [(m, n, r) for (m, n) in MATRIX_SHAPES for r in ranks_for(m, n)]

# Chains U M_1 .. M_d V^T: (m, n, ranks) with depth 0..3, square and non-square middles.
CHAINS = [
    (1, 1, [1]), (1, 9, [2]), (9, 1, [3]), (6, 5, [4]), (13, 7, [7]), (20, 30, [11]),
    (5, 4, [3, 3]), (5, 4, [2, 6]), (1, 8, [3, 2]), (8, 1, [1, 4]),
    (9, 7, [4, 2, 6]), (7, 9, [3, 5, 3]), (12, 11, [4, 2, 6, 3]), (3, 40, [5, 1, 7, 2]),
    (33, 17, [8, 8, 8, 8]),
]
BATCHES = [None, 1, 3]


def chain_id(c):
    m, n, ranks = c
    return f"{m}x{n}-r{'.'.join(map(str, ranks))}"


def middle_arg(mids):
    return mids if mids else None


def well_separated(rng, m, n, decay=0.7):
    """A float32 m x n matrix with singular values decay^i (gaps make the rank-r truncation
    unique, so factors can be compared with the reference, not only properties)."""
    k = min(m, n)
    P, _ = np.linalg.qr(rng.standard_normal((m, k)))
    Q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = decay ** np.arange(k)
    return ((P * s) @ Q.T).astype(np.float32)


# ============================================================== spectral_init / compress


@pytest.mark.parametrize("m,n,rank", SHAPE_RANKS)
def test_spectral_init_exact_properties(rng, m, n, rank):
    W = rng.standard_normal((m, n)).astype(np.float32)
    U, V = fnl.spectral_init(W, rank)
    assert U.shape == (m, rank) and V.shape == (n, rank)
    assert U.dtype == np.float32 and V.dtype == np.float32
    _, _, s_ref, rel_ref, W_r = ref.svd_truncate(W, rank)
    k = min(rank, m, n)
    s1 = float(s_ref[0])
    # U^T U = V^T V = diag(S) (zero block for padding columns).
    S = np.zeros((rank, rank))
    S[:k, :k] = np.diag(s_ref)
    Ud, Vd = U.astype(np.float64), V.astype(np.float64)
    assert_close(Ud.T @ Ud, S, rtol=0, atol=2e-5 * s1 * max(m, n), what="U^T U")
    assert_close(Vd.T @ Vd, S, rtol=0, atol=2e-5 * s1 * max(m, n), what="V^T V")
    # Padding columns are exactly zero.
    assert not np.any(U[:, k:]) and not np.any(V[:, k:])
    # The reported error of compress is the reference sqrt(tail / total).
    t = fnl.compress(W, rank)
    assert_close(t.singular_values, s_ref, rtol=1e-5, atol=2e-6 * s1 * max(m, n), what="s")
    assert_close(t.relative_error, rel_ref, rtol=0, atol=1e-4, what="relative_error")
    # U V^T achieves the best rank-r error: ||W - U V^T||_F equals the reference tail.
    err = np.linalg.norm(W.astype(np.float64) - Ud @ Vd.T) / np.linalg.norm(W.astype(np.float64))
    assert_close(err, rel_ref, rtol=0, atol=1e-4, what="achieved error")


@pytest.mark.parametrize("m,n,rank", SHAPE_RANKS)
def test_spectral_init_exact_matches_truncated_svd(rng, m, n, rank):
    W = well_separated(rng, m, n)
    U, V = fnl.spectral_init(W, rank)
    _, _, _, _, W_r = ref.svd_truncate(W, rank)
    assert_close(U.astype(np.float64) @ V.T.astype(np.float64), W_r, rtol=0, atol=2e-5 * max(m, n),
                 what="U V^T vs best rank-r")


def test_spectral_init_factors_match_reference_up_to_sign(rng):
    W = well_separated(rng, 23, 17)
    U, V = fnl.spectral_init(W, 9)
    U_ref, V_ref, *_ = ref.svd_truncate(W, 9)
    signs = np.sign(np.sum(U * U_ref, axis=0))
    assert np.all(signs != 0)
    assert_close(U * signs, U_ref, rtol=0, atol=1e-4, what="U")
    assert_close(V * signs, V_ref, rtol=0, atol=1e-4, what="V")


def test_spectral_init_zero_matrix():
    U, V = fnl.spectral_init(np.zeros((4, 6)), 2)
    assert not np.any(U) and not np.any(V)
    assert fnl.compress(np.zeros((4, 6)), 2).relative_error == 0.0


def test_spectral_init_accepts_array_likes_and_integer_dtypes(rng):
    W = rng.integers(-5, 6, size=(6, 4))
    for arg in (W, W.tolist(), W.astype(np.int8), W.astype(np.float64), np.asfortranarray(W),
                W.astype(np.float32)[:, ::-1][:, ::-1]):
        U, V = fnl.spectral_init(arg, 4)
        assert_close(U @ V.T, W, rtol=0, atol=1e-4 * np.abs(W).max() * 6, what="full-rank reconstruction")


def test_compress_returns_truncation(rng):
    W = rng.standard_normal((12, 9))
    t = fnl.compress(W, 3)
    assert isinstance(t, fnl.Truncation)
    U, V, s, rel = t
    assert U.shape == (12, 3) and V.shape == (9, 3) and s.shape == (3,)
    assert isinstance(rel, float)
    assert np.all(np.diff(s) <= 0)


def test_relative_error_matches_tail_formula(rng):
    W = rng.standard_normal((40, 25))
    s = ref.singular_values(W)
    for r in (1, 5, 24, 25, 30):
        t = fnl.compress(W, r)
        expected = np.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2))
        assert_close(t.relative_error, expected, rtol=0, atol=1e-5, what=f"rank {r}")


# ------------------------------------------------------------------ randomized SI


def low_rank_plus_noise(rng, m, n, r, noise=1e-3):
    A = rng.standard_normal((m, r))
    B = rng.standard_normal((n, r))
    return (A @ B.T + noise * rng.standard_normal((m, n))).astype(np.float32)


@pytest.mark.parametrize("m,n,r", [(200, 150, 10), (150, 200, 10), (300, 64, 5), (120, 120, 1)])
def test_randomized_close_to_exact_on_low_rank_plus_noise(rng, m, n, r):
    W = low_rank_plus_noise(rng, m, n, r)
    exact = fnl.compress(W, r)
    rand = fnl.compress(W, r, method="randomized", seed=7)
    assert rand.U.shape == (m, r) and rand.V.shape == (n, r)
    assert_close(rand.singular_values, exact.singular_values, rtol=1e-3, atol=0, what="s")
    # Achieved Frobenius error within 1% of the exact truncation's.
    W64 = W.astype(np.float64)
    e_exact = np.linalg.norm(W64 - exact.U.astype(np.float64) @ exact.V.T.astype(np.float64))
    e_rand = np.linalg.norm(W64 - rand.U.astype(np.float64) @ rand.V.T.astype(np.float64))
    assert e_rand <= 1.01 * e_exact + 1e-6 * np.linalg.norm(W64)
    # The reported error agrees with the achieved one to ~sqrt(float32 eps) (it is computed as
    # total - captured energy; see test_randomized_reported_error_is_accurate for the strict form).
    assert_close(rand.relative_error, e_rand / np.linalg.norm(W64), rtol=0.05, atol=1e-3, what="reported error")
    # SI properties hold for the randomized factors too.
    Ud, Vd = rand.U.astype(np.float64), rand.V.astype(np.float64)
    s1 = float(rand.singular_values[0])
    assert_close(Ud.T @ Ud, np.diag(rand.singular_values), rtol=0, atol=1e-4 * s1, what="U^T U")
    assert_close(Vd.T @ Vd, np.diag(rand.singular_values), rtol=0, atol=1e-4 * s1, what="V^T V")


@pytest.mark.parametrize("m,n,r", [(200, 150, 10), (300, 64, 5)])
def test_randomized_reported_error_is_accurate(rng, m, n, r):
    W = low_rank_plus_noise(rng, m, n, r)
    rand = fnl.compress(W, r, method="randomized", seed=7)
    W64 = W.astype(np.float64)
    achieved = np.linalg.norm(W64 - rand.U.astype(np.float64) @ rand.V.T.astype(np.float64)) / np.linalg.norm(W64)
    assert_close(rand.relative_error, achieved, rtol=0.05, atol=1e-6, what="reported relative error")


def test_randomized_reproducible_for_a_seed(rng):
    W = rng.standard_normal((90, 70)).astype(np.float32)
    a = fnl.spectral_init(W, 6, method="randomized", seed=123)
    b = fnl.spectral_init(W, 6, method="randomized", seed=123)
    c = fnl.spectral_init(W, 6, method="randomized", seed=124)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    big = 2**64 - 1
    d = fnl.spectral_init(W, 6, method="randomized", seed=big)
    e = fnl.spectral_init(W, 6, method="randomized", seed=np.uint64(big))
    np.testing.assert_array_equal(d[0], e[0])


def test_randomized_options_and_fallback(rng):
    W = rng.standard_normal((60, 50)).astype(np.float32)
    # Sketch >= min(m, n): falls back to the exact method (identical results).
    ex = fnl.spectral_init(W, 45)
    rd = fnl.spectral_init(W, 45, method="randomized", seed=1)
    np.testing.assert_array_equal(ex[0], rd[0])
    # Power iterations improve (or keep) the error on a slowly decaying spectrum.
    errs = [fnl.compress(W, 5, method="randomized", seed=3, power_iters=q, oversample=2).relative_error
            for q in (0, 4)]
    exact = fnl.compress(W, 5).relative_error
    assert errs[1] <= errs[0] + 1e-6 and errs[1] >= exact - 1e-5
    # Overcomplete randomized pads with zeros like the exact method.
    U, V = fnl.spectral_init(W, 70, method="randomized", seed=2)
    assert U.shape == (60, 70) and not np.any(U[:, 50:])


def test_seed_none_draws_a_seed(rng):
    W = rng.standard_normal((80, 60)).astype(np.float32)
    U, V = fnl.spectral_init(W, 4, method="randomized")
    assert U.shape == (80, 4)


# ================================================================= conv layout


CONV_SHAPES = [(1, 1, 1, 1), (2, 3, 3, 3), (3, 2, 1, 5), (4, 1, 5, 1), (1, 5, 2, 3), (5, 4, 3, 2), (8, 6, 3, 3)]


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_to_matrix_layout(rng, shape):
    K = rng.standard_normal(shape).astype(np.float32)
    W = fnl.conv_to_matrix(K)
    c_out, c_in, kh, kw = shape
    assert W.shape == (c_out * kh, c_in * kw) and W.dtype == np.float32
    np.testing.assert_array_equal(W, ref.conv_to_matrix(K))
    for o, i, h, w in itertools.product(range(c_out), range(c_in), range(kh), range(kw)):
        assert K[o, i, h, w] == W[o * kh + h, i * kw + w]
    back = fnl.matrix_to_conv(W, *shape)
    assert back.shape == shape
    np.testing.assert_array_equal(back, K)
    np.testing.assert_array_equal(fnl.matrix_to_conv(W, *shape), ref.matrix_to_conv(W, *shape))


@pytest.mark.parametrize("shape", [(2, 3, 3, 3), (5, 4, 3, 2), (3, 2, 2, 4)])
def test_conv_layout_is_not_a_bare_reshape(rng, shape):
    K = rng.standard_normal(shape).astype(np.float32)
    c_out, c_in, kh, kw = shape
    assert not np.array_equal(fnl.conv_to_matrix(K), K.reshape(c_out * kh, c_in * kw))


def test_matrix_to_conv_from_matrix(rng):
    W = rng.standard_normal((6, 8))
    K = fnl.matrix_to_conv(W, 2, 4, 3, 2)
    assert_close(K, ref.matrix_to_conv(W, 2, 4, 3, 2), rtol=1e-7, atol=0, what="K")


@pytest.mark.parametrize("shape,rank", [((4, 3, 3, 3), 2), ((4, 3, 3, 3), 9), ((2, 5, 3, 1), 6), ((6, 2, 3, 3), 20)])
def test_spectral_init_conv_uses_the_permuted_layout(rng, shape, rank):
    K = rng.standard_normal(shape).astype(np.float32)
    c_out, c_in, kh, kw = shape
    U, V = fnl.spectral_init_conv(K, rank)
    assert U.shape == (c_out * kh, rank) and V.shape == (c_in * kw, rank)
    Wm = ref.conv_to_matrix(K)
    *_, rel, W_r = ref.svd_truncate(Wm, rank)
    UV = U.astype(np.float64) @ V.T.astype(np.float64)
    err = np.linalg.norm(Wm - UV) / np.linalg.norm(Wm)
    assert_close(err, rel, rtol=0, atol=1e-4, what="SI error in the permuted layout")
    if rank >= min(Wm.shape):
        # Full rank: U V^T reproduces the permuted matrix, not the bare reshape.
        assert_close(UV, Wm, rtol=0, atol=1e-4, what="U V^T")
        assert np.abs(UV - K.reshape(c_out * kh, c_in * kw)).max() > 1e-2
    Us, Vs = fnl.spectral_init(fnl.conv_to_matrix(K), rank)
    np.testing.assert_array_equal(U, Us)
    np.testing.assert_array_equal(V, Vs)
    K_back = fnl.matrix_to_conv(fnl.compose(U, V), *shape)
    assert K_back.shape == shape


# ================================================================= compose


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", CHAINS, ids=chain_id)
def test_compose(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    W = fnl.compose(U, V, middle_arg(mids))
    expected = ref.compose(U, V, mids)
    assert W.dtype == np.float32 and W.shape == expected.shape
    assert_close(W, expected, rtol=1e-5, atol=scale_atol(expected, 1e-5), what="compose")


def test_compose_tuple_middle_and_array_likes(rng):
    U, V, mids = random_chain(rng, 4, 5, [3, 2])
    a = fnl.compose(U, V, mids)
    b = fnl.compose(U.tolist(), V.astype(np.float64), tuple(mids))
    np.testing.assert_array_equal(a, b)
    assert_close(fnl.compose([[1, 2]], [[3, 4]]), [[11]], rtol=0, atol=0, what="1x1")


@pytest.mark.parametrize("m,n,rank", [(9, 7, 3), (1, 5, 2), (6, 1, 1), (20, 12, 12)])
def test_compose_of_spectral_init_is_truncation(rng, m, n, rank):
    W = rng.standard_normal((m, n))
    U, V = fnl.spectral_init(W, rank)
    *_, W_r = ref.svd_truncate(W, rank)
    assert_close(fnl.compose(U, V), W_r, rtol=0, atol=1e-4 * np.abs(W).max(), what="compose(SI)")


def test_compose_on_strided_views(rng):
    U = rng.standard_normal((8, 6)).astype(np.float32)
    V = rng.standard_normal((10, 6)).astype(np.float32)
    Us, Vs = U[::2], np.concatenate([V, V], axis=1)[:, ::2]
    assert not Us.flags.c_contiguous and not Vs.flags.c_contiguous
    assert_close(fnl.compose(Us, Vs), ref.compose(Us, Vs), rtol=1e-5, atol=1e-5, what="strided")
    Ut = np.asfortranarray(U)
    assert_close(fnl.compose(Ut, V), ref.compose(U, V), rtol=1e-5, atol=1e-5, what="Fortran order")


# ================================================================= Frobenius decay


def penalty_atol(U, V, mids, lam):
    """Float32 rounding of the Gram path: relative to (lam/2) * ||U||^2 ||M||^2 ||V||^2."""
    bound = 0.5 * lam * np.sum(ref.f64(U) ** 2) * np.sum(ref.f64(V) ** 2)
    for mm in mids:
        bound *= np.sum(ref.f64(mm) ** 2)
    return 1e-5 * bound + 1e-30


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", CHAINS, ids=chain_id)
def test_frobenius_penalty(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    for lam in (0.0, 1e-4, 0.5, 3.0):
        p = fnl.frobenius_penalty(U, V, lam, middle_arg(mids))
        assert isinstance(p, float)
        assert_close(p, ref.fd_penalty(U, V, lam, mids), rtol=1e-5, atol=penalty_atol(U, V, mids, lam),
                     what=f"penalty lam={lam}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", CHAINS, ids=chain_id)
def test_frobenius_decay_grad_vs_reference(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    lam = 0.7
    grads = fnl.frobenius_decay_grad(U, V, lam, middle_arg(mids))
    expected = ref.fd_grad(U, V, lam, mids)
    assert isinstance(grads, tuple) and len(grads) == 2 + len(mids)
    for name, g, e, like in zip(["dU", "dV"] + [f"dM{j}" for j in range(len(mids))], grads, expected,
                                [U, V, *mids]):
        assert g.dtype == np.float32 and g.shape == like.shape
        assert_close(g, e, rtol=1e-4, atol=scale_atol(e, 1e-5) + 1e-7, what=name)


@pytest.mark.parametrize("chain", [(4, 3, [2]), (1, 3, [2]), (3, 1, [1]), (4, 3, [2, 3]), (3, 4, [3, 1, 2]),
                                   (2, 5, [2, 3, 2, 2])], ids=chain_id)
@pytest.mark.parametrize("batch", [None, 2])
def test_frobenius_decay_grad_vs_finite_differences(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    lam = 1.3
    grads = fnl.frobenius_decay_grad(U, V, lam, middle_arg(mids))

    def f(*arrays):
        return ref.fd_penalty(arrays[0], arrays[1], lam, list(arrays[2:]))

    numeric = ref.central_differences(f, [U, V, *mids])
    for j, (g, e) in enumerate(zip(grads, numeric)):
        assert_close(g, e, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(e).max()), what=f"gradient {j} vs FD")


def test_frobenius_decay_grad_lam_zero_and_linearity(rng):
    U, V, mids = random_chain(rng, 7, 5, [3, 4])
    zero = fnl.frobenius_decay_grad(U, V, 0.0, mids)
    assert all(not np.any(g) for g in zero)
    g1 = fnl.frobenius_decay_grad(U, V, 1.0, mids)
    g2 = fnl.frobenius_decay_grad(U, V, 2.5, mids)
    for a, b in zip(g1, g2):
        assert_close(b, 2.5 * a.astype(np.float64), rtol=1e-6, atol=1e-7, what="linear in lam")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", [(6, 5, [3]), (5, 4, [2, 6]), (9, 7, [4, 2, 6]), (1, 1, [1])], ids=chain_id)
def test_frobenius_decay_grad_add_to(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    lam = 0.9
    bufs = tuple(rng.standard_normal(a.shape).astype(np.float32) for a in [U, V, *mids])
    before = [b.copy() for b in bufs]
    out = fnl.frobenius_decay_grad(U, V, lam, middle_arg(mids), add_to=bufs)
    assert isinstance(out, tuple) and len(out) == len(bufs)
    for o, b in zip(out, bufs):
        assert o is b
    fresh = fnl.frobenius_decay_grad(U, V, lam, middle_arg(mids))
    for b, b0, g in zip(bufs, before, fresh):
        assert_close(b, b0.astype(np.float64) + g, rtol=1e-5, atol=1e-5, what="accumulated")
    # A list is accepted too, and a second call accumulates again.
    lst = list(bufs)
    out2 = fnl.frobenius_decay_grad(U, V, lam, middle_arg(mids), add_to=lst)
    for o, b, b0, g in zip(out2, bufs, before, fresh):
        assert o is b
        assert_close(b, b0.astype(np.float64) + 2 * g.astype(np.float64), rtol=1e-5, atol=1e-5, what="twice")


# ================================================================= diagnostics


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", CHAINS, ids=chain_id)
def test_frobenius_norm(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    got = fnl.frobenius_norm(U, V, middle_arg(mids))
    expected = ref.frobenius_norm(U, V, mids)
    if batch is None:
        assert isinstance(got, float)
    else:
        assert isinstance(got, np.ndarray) and got.shape == (batch,)
    assert_close(got, expected, rtol=1e-5, atol=1e-6 * np.sqrt(penalty_atol(U, V, mids, 2.0) / 1e-5), what="norm")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", CHAINS, ids=chain_id)
def test_nuclear_norm(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    got = fnl.nuclear_norm(U, V, middle_arg(mids))
    expected = ref.nuclear_norm(U, V, mids)
    if batch is None:
        assert isinstance(got, float)
    else:
        assert got.shape == (batch,)
    assert_close(got, expected, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(expected))), what="nuclear")


@pytest.mark.parametrize("m,n,r", [(10, 8, 3), (8, 10, 12), (1, 6, 4), (6, 1, 2), (30, 20, 20)])
def test_nuclear_norm_of_rank_deficient_and_overcomplete_factors(rng, m, n, r):
    U = rng.standard_normal((m, r)).astype(np.float32)
    V = rng.standard_normal((n, r)).astype(np.float32)
    U[:, 0] = 0  # a zero column
    assert_close(fnl.nuclear_norm(U, V), ref.nuclear_norm(U, V), rtol=1e-4, atol=1e-4, what="nuclear")


def test_nuclear_norm_vs_weight_decay_bound(rng):
    """(1/2)(||U||^2 + ||V||^2) >= ||U V^T||_*, with equality for balanced (SI) factors."""
    W = rng.standard_normal((15, 11))
    U, V = fnl.spectral_init(W, 11)
    nuc = fnl.nuclear_norm(U, V)
    assert_close(fnl.weight_decay_penalty(U, V, 1.0), nuc, rtol=1e-4, atol=0, what="tight at SI")
    assert_close(nuc, np.sum(ref.singular_values(W)), rtol=1e-4, atol=0, what="nuclear of W")
    U2, V2 = U * 3.0, V / 3.0
    assert fnl.weight_decay_penalty(U2, V2, 1.0) > 1.5 * fnl.nuclear_norm(U2, V2)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("m,n,r", [(1, 1, 1), (6, 5, 3), (1, 9, 4), (9, 1, 2), (20, 30, 7)])
def test_factor_balance(rng, m, n, r, batch):
    U, V, _ = random_chain(rng, m, n, [r], batch)
    got = fnl.factor_balance(U, V)
    expected = ref.factor_balance(U, V)
    if batch is None:
        assert isinstance(got, float)
    assert_close(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.max(expected))), what="balance")


@pytest.mark.parametrize("m,n,r", [(12, 9, 4), (5, 5, 5), (3, 8, 6)])
def test_factor_balance_zero_after_si(rng, m, n, r):
    W = rng.standard_normal((m, n))
    U, V = fnl.spectral_init(W, r)
    assert fnl.factor_balance(U, V) <= 1e-5 * np.sum(ref.singular_values(W) ** 2) ** 0.5 * max(m, n)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("chain", [(6, 5, [3]), (9, 7, [4, 2, 6]), (1, 1, [1])], ids=chain_id)
def test_effective_step_size(rng, chain, batch):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks, batch)
    got = fnl.effective_step_size(0.1, U, V, middle_arg(mids))
    assert_close(got, ref.effective_step_size(0.1, U, V, mids), rtol=1e-5, atol=0, what="lr / ||W||^2")


def test_effective_step_size_of_zero_product_is_inf():
    U = np.zeros((3, 2), np.float32)
    V = np.ones((4, 2), np.float32)
    assert fnl.effective_step_size(0.1, U, V) == np.inf
    got = fnl.effective_step_size(0.1, np.stack([U, U + 1]), np.stack([V, V]))
    assert got[0] == np.inf and np.isfinite(got[1])


@pytest.mark.parametrize("chain", [(6, 5, [3]), (9, 7, [4, 2, 6])], ids=chain_id)
def test_weight_decay_and_crs(rng, chain):
    m, n, ranks = chain
    U, V, mids = random_chain(rng, m, n, ranks)
    assert_close(fnl.weight_decay_penalty(U, V, 0.3, middle_arg(mids)), ref.weight_decay_penalty(U, V, 0.3, mids),
                 rtol=1e-12, atol=0, what="weight decay")
    assert_close(fnl.crs_coefficient(1e-4, 1000, 250), ref.crs_coefficient(1e-4, 1000, 250), rtol=1e-15, atol=0,
                 what="crs")
    dense = fnl.dense_params((m, n))
    fact = fnl.factorized_params((m, n), ranks[0])
    assert_close(fnl.crs_coefficient(0.5, dense, fact), 0.5 * fact / dense, rtol=1e-15, atol=0, what="crs")


def test_fd_penalty_equals_half_lam_frobenius_norm_squared(rng):
    U, V, mids = random_chain(rng, 11, 8, [5, 3])
    lam = 0.25
    p = fnl.frobenius_penalty(U, V, lam, mids)
    f = fnl.frobenius_norm(U, V, mids)
    assert_close(p, 0.5 * lam * f * f, rtol=1e-6, atol=0, what="penalty vs norm")
    W = fnl.compose(U, V, mids)
    assert_close(p, 0.5 * lam * np.sum(W.astype(np.float64) ** 2), rtol=1e-5, atol=0, what="penalty vs W")


# ================================================================= extreme magnitudes


@pytest.mark.parametrize("scale", [1e38, 1e25, 1e-30, 1e-44])
def test_diagnostics_over_the_float32_range(rng, scale):
    """Norms are finite and accurate whenever they fit a double, even when float32 Gram
    matrices would overflow or underflow (entries near the float32 limits)."""
    U = (rng.standard_normal((5, 3)) * scale).astype(np.float32)
    V = rng.standard_normal((4, 3)).astype(np.float32)
    M = rng.standard_normal((3, 2)).astype(np.float32)
    V2 = rng.standard_normal((4, 2)).astype(np.float32)
    Vs = (V * scale).astype(np.float32)
    assert_close(fnl.nuclear_norm(U, Vs), ref.nuclear_norm(U, Vs), rtol=1e-5, atol=0, what="nuclear U V^T")
    assert_close(fnl.nuclear_norm(U, V2, [M * np.float32(scale)]), ref.nuclear_norm(U, V2, [M * np.float32(scale)]),
                 rtol=1e-5, atol=0, what="nuclear with middle")
    assert_close(fnl.frobenius_norm(U, V2, [M]), ref.frobenius_norm(U, V2, [M]), rtol=1e-5, atol=0, what="frobenius")
    assert_close(fnl.frobenius_penalty(U, V2, 1.0, [M]), ref.fd_penalty(U, V2, 1.0, [M]), rtol=1e-5, atol=0,
                 what="penalty")
    assert_close(fnl.factor_balance(U, Vs), ref.factor_balance(U, Vs), rtol=1e-5, atol=0, what="balance")
    # Batched: one extreme item next to an ordinary one.
    Ub = np.stack([U, (U / np.float32(scale)).astype(np.float32)])
    Vb = np.stack([Vs, V])
    assert_close(fnl.nuclear_norm(Ub, Vb), ref.nuclear_norm(Ub, Vb), rtol=1e-5, atol=0, what="batched nuclear")


def test_zero_factors_give_zero_diagnostics():
    Z, O = np.zeros((3, 2), np.float32), np.ones((4, 2), np.float32)
    assert fnl.frobenius_norm(Z, O) == 0.0
    assert fnl.nuclear_norm(Z, O) == 0.0
    assert fnl.factor_balance(Z, np.zeros((4, 2))) == 0.0
    assert fnl.frobenius_penalty(Z, O, 1.0) == 0.0


@pytest.mark.parametrize("scale", [3.75e37, 1e30, 1e-30, 1e-40])
def test_exact_spectral_init_over_the_float32_range(rng, scale):
    W = (rng.uniform(-1, 1, (30, 20)) * scale).astype(np.float32)
    t = fnl.compress(W, 3)
    *_, rel, _ = ref.svd_truncate(W, 3)
    assert np.all(np.isfinite(t.U)) and np.all(np.isfinite(t.V))
    assert_close(t.relative_error, rel, rtol=0, atol=1e-4, what="relative error")


@pytest.mark.parametrize("scale", [
    3.75e37, 1e30, 1e-30, 1e-40])
def test_randomized_spectral_init_over_the_float32_range(rng, scale):
    W = (rng.uniform(-1, 1, (30, 20)) * scale).astype(np.float32)
    t = fnl.compress(W, 3, method="randomized", seed=0)
    exact = fnl.compress(W, 3)
    assert np.all(np.isfinite(t.U)) and np.all(np.isfinite(t.V))
    assert t.relative_error <= exact.relative_error * 1.05 + 1e-3
