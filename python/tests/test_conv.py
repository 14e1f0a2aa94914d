"""fnl.conv: dense and low-rank conv2d, forward and backward, against a NumPy float64 direct
convolution (conv_reference.py), finite differences, thread counts, workspaces and torch."""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import conv_reference as ref  # noqa: E402

import fnl  # noqa: E402
from fnl import conv  # noqa: E402


def close(actual, expected, rtol=2e-5, what=""):
    """max |actual - expected| <= rtol * max(1, max |expected|) (float32 engine vs float64)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:.1g} x {scale:.3g}"


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# (batch, c_in, c_out, H, W, kernel, stride, padding, dilation)
CASES = [
    (2, 3, 4, 7, 6, (3, 3), 1, 1, 1),
    (1, 2, 3, 5, 5, (1, 1), 1, 0, 1),
    (3, 3, 2, 6, 7, (1, 1), 2, 0, 1),
    (2, 2, 3, 9, 8, (5, 5), 1, 2, 1),
    (2, 3, 2, 9, 7, (3, 1), 1, (1, 0), 1),
    (1, 2, 4, 5, 11, (1, 5), 1, (0, 2), 1),
    (2, 3, 4, 9, 9, (3, 3), 2, 1, 1),
    (1, 3, 3, 11, 9, (3, 3), (2, 1), (0, 2), 1),
    (2, 2, 3, 9, 10, (3, 3), (1, 3), 1, 2),
    (1, 4, 2, 13, 9, (3, 3), 1, 2, 2),
    (2, 3, 3, 8, 11, (3, 5), (2, 2), (2, 1), (2, 1)),
    (1, 2, 2, 7, 7, (5, 5), 2, 0, 1),
    (3, 1, 5, 5, 4, (3, 3), 1, 0, 1),
    (1, 5, 1, 6, 6, (5, 5), 3, 2, 1),
]


def case_id(c):
    n, ci, co, h, w, k, s, p, d = c
    return f"n{n}c{ci}o{co}_{h}x{w}_k{k[0]}x{k[1]}_s{s}_p{p}_d{d}".replace(" ", "")


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_reference(case, with_bias):
    n, ci, co, h, w, k, s, p, d = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()) % 2**32)
    x, K = rand(rng, n, ci, h, w), rand(rng, co, ci, *k)
    b = rand(rng, co) if with_bias else None
    y = fnl.conv.conv2d(x, K, stride=s, padding=p, dilation=d, bias=b)
    close(y, ref.conv2d(x, K, s, p, d, b), what="y")
    g = rand(rng, *y.shape)
    got = conv.conv2d_backward(g, x, K, stride=s, padding=p, dilation=d, bias=b)
    dx, dK, db = ref.conv2d_backward(g, x, K, s, p, d)
    close(got["x"], dx, what="dx")
    close(got["K"], dK, what="dK")
    if with_bias:
        close(got["bias"], db, what="dbias")
    else:
        assert got["bias"] is None


def lowrank_inputs(rng, case, ranks, with_bias):
    n, ci, co, h, w, k, s, p, d = case
    kh, kw = k
    x = rand(rng, n, ci, h, w)
    U = rand(rng, co * kh, ranks[0])
    V = rand(rng, ci * kw, ranks[-1])
    middle = [rand(rng, ranks[j], ranks[j + 1]) for j in range(len(ranks) - 1)] or None
    b = rand(rng, co) if with_bias else None
    return x, U, V, middle, b


def rank_choices(case):
    n, ci, co, h, w, (kh, kw), *_ = case
    full = min(co * kh, ci * kw)
    return [[1], [max(1, full // 2)], [full + 3], [2, max(1, full // 2) + 1, 3], [full + 2, 1]]


LR_CASES = [(c, i) for c in CASES for i in range(5)]


@pytest.mark.parametrize("path", ["fused", "fused-products", "compose"])
@pytest.mark.parametrize("case,ri", LR_CASES, ids=[f"{case_id(c)}-r{i}" for c, i in LR_CASES])
def test_lowrank_matches_reference(case, ri, path):
    n, ci, co, h, w, k, s, p, d = case
    ranks = rank_choices(case)[ri]
    with_bias = ri % 2 == 0
    rng = np.random.default_rng((zlib.crc32(case_id(case).encode()) + ri) % 2**32)
    x, U, V, middle, b = lowrank_inputs(rng, case, ranks, with_bias)
    kw = dict(stride=s, padding=p, dilation=d, bias=b, middle=middle)
    y = conv.lowrank_conv2d(x, U, V, k, _path=path, **kw)
    close(y, ref.lowrank_conv2d(x, U, V, k, s, p, d, b, middle), what="y")
    g = rand(rng, *y.shape)
    got = conv.lowrank_conv2d_backward(g, x, U, V, k, _path=path, **kw)
    want = ref.lowrank_conv2d_backward(g, x, U, V, k, s, p, d, middle)
    for name in ("x", "U", "V"):
        close(got[name], want[name], rtol=5e-5, what=f"d{name}")
    if with_bias:
        close(got["bias"], want["bias"], what="dbias")
    else:
        assert got["bias"] is None
    assert len(got["middle"]) == len(middle or [])
    for j, (a, e) in enumerate(zip(got["middle"], want["middle"])):
        close(a, e, rtol=5e-5, what=f"dmiddle[{j}]")


def test_paths_agree_and_auto_choice():
    rng = np.random.default_rng(7)
    x = rand(rng, 2, 8, 9, 9)
    for ranks, expected in (([3], "fused"), ([40], "compose"), ([30, 2, 30], "fused")):
        U, V = rand(rng, 8 * 3, ranks[0]), rand(rng, 8 * 3, ranks[-1])
        middle = [rand(rng, ranks[j], ranks[j + 1]) for j in range(len(ranks) - 1)] or None
        plan = conv._lowrank_plan(x.shape, 8, 3, ranks, padding=1)
        assert plan["path"] == expected
        assert plan["rank"] == min(ranks)
        results = {}
        for path in ("auto", "fused", "fused-products", "compose"):
            y = conv.lowrank_conv2d(x, U, V, 3, padding=1, middle=middle, _path=path)
            d = conv.lowrank_conv2d_backward(np.ones_like(y), x, U, V, 3, padding=1, middle=middle, _path=path)
            results[path] = (y, d)
        for path in ("fused", "fused-products", "compose"):
            close(results[path][0], results["auto"][0], rtol=1e-5, what=f"y {path}")
            for name in ("x", "U", "V"):
                close(results[path][1][name], results["auto"][1][name], rtol=5e-5, what=f"d{name} {path}")


@pytest.mark.parametrize("fused", ["fused", "fused-products"])
@pytest.mark.parametrize("case", [(3, 4, 5, 9, 8, (3, 3), (2, 1), 1, (1, 2)), (3, 4, 5, 9, 8, (3, 3), 1, 1, 1)])
def test_saved_intermediate(case, fused):
    rng = np.random.default_rng(3)
    n, ci, co, h, w, k, s, p, d = case
    x, U, V, middle, b = lowrank_inputs(rng, case, [6, 2, 4], True)
    kw = dict(stride=s, padding=p, dilation=d, bias=b, middle=middle)
    y, z = conv.lowrank_conv2d_forward(x, U, V, k, _path=fused, **kw)
    close(y, conv.lowrank_conv2d(x, U, V, k, _path=fused, **kw), rtol=1e-6)
    wo = ref.out_size(w, 3, 1, 1, d if isinstance(d, int) else d[1])
    assert z.shape == (2, n, h, wo) and z.dtype == np.float32
    g = rand(rng, *y.shape)
    a = conv.lowrank_conv2d_backward(g, x, U, V, k, _path=fused, intermediate=z, **kw)
    e = conv.lowrank_conv2d_backward(g, x, U, V, k, _path=fused, **kw)
    for name in ("x", "U", "V", "bias"):
        close(a[name], e[name], rtol=1e-6, what=name)
    for am, em in zip(a["middle"], e["middle"]):
        close(am, em, rtol=1e-6)
    y2, z2 = conv.lowrank_conv2d_forward(x, U, V, k, _path="compose", **kw)
    assert z2 is None
    close(y2, y, rtol=1e-5)


def test_workspace_reuse():
    rng = np.random.default_rng(5)
    ws = conv.ConvWorkspace()
    assert ws.nbytes == 0
    for n, h in ((2, 9), (4, 12), (1, 5), (4, 12)):
        x = rand(rng, n, 3, h, h)
        U, V = rand(rng, 4 * 3, 2), rand(rng, 3 * 3, 2)
        K = rand(rng, 4, 3, 3, 3)
        y = conv.lowrank_conv2d(x, U, V, 3, padding=1, workspace=ws)
        close(y, conv.lowrank_conv2d(x, U, V, 3, padding=1), rtol=1e-6)
        g = rand(rng, *y.shape)
        d1 = conv.lowrank_conv2d_backward(g, x, U, V, 3, padding=1, workspace=ws)
        d2 = conv.lowrank_conv2d_backward(g, x, U, V, 3, padding=1)
        close(d1["x"], d2["x"], rtol=1e-6)
        close(d1["U"], d2["U"], rtol=1e-6)
        yd = conv.conv2d(x, K, padding=1, workspace=ws)
        close(yd, conv.conv2d(x, K, padding=1), rtol=1e-6)
        e1 = conv.conv2d_backward(g, x, K, padding=1, workspace=ws)
        close(e1["K"], conv.conv2d_backward(g, x, K, padding=1)["K"], rtol=1e-6)
    held = ws.nbytes
    assert held > 0
    conv.lowrank_conv2d(rand(rng, 1, 3, 5, 5), U, V, 3, padding=1, workspace=ws)
    assert ws.nbytes == held  # never shrinks, no reallocation for smaller calls
    ws.clear()
    assert ws.nbytes == 0


@pytest.mark.parametrize("h,pad", [(1, 1), (2, 1), (3, 0), (4, 2), (5, 1), (6, 0), (7, 2), (12, 1)])
@pytest.mark.parametrize("rank", [8, 13])
def test_lowrank_winograd_height_stage(h, pad, rank):
    """kh = 3, height stride and dilation 1 and r >= 8: the kh x 1 stage runs as Winograd
    F(2, 3) (odd output heights leave half a tile; padding 0..2 reads zero rows). Forward,
    backward with and without the saved intermediate, against the float64 reference."""
    rng = np.random.default_rng(100 * h + 10 * pad + rank)
    n, ci, co, w = 3, 5, 6, 7
    x = rand(rng, n, ci, h, w)
    U, V = rand(rng, co * 3, rank, scale=0.3), rand(rng, ci * 3, rank, scale=0.3)
    b = rand(rng, co)
    kw = dict(padding=(pad, 1), bias=b)
    y, z = conv.lowrank_conv2d_forward(x, U, V, 3, _path="fused-products", **kw)
    close(y, ref.lowrank_conv2d(x, U, V, (3, 3), 1, (pad, 1), 1, b, None), what="y")
    g = rand(rng, *y.shape)
    want = ref.lowrank_conv2d_backward(g, x, U, V, (3, 3), 1, (pad, 1), 1, None)
    for saved in (None, z):
        got = conv.lowrank_conv2d_backward(g, x, U, V, 3, _path="fused-products", intermediate=saved, **kw)
        for name in ("x", "U", "V"):
            close(got[name], want[name], rtol=5e-5, what=f"d{name}")
        close(got["bias"], want["bias"], what="dbias")


@pytest.mark.parametrize("h,pad,kw,sw", [(1, 1, 3, 1), (2, 1, 1, 1), (3, 0, 3, 2), (4, 2, 3, 1), (5, 1, 1, 2),
                                        (6, 0, 3, 1), (7, 2, 3, 1), (12, 1, 3, 1)])
def test_conv2d_winograd_height_mode(h, pad, kw, sw):
    """kh = 3 with height stride and dilation 1 and c_in*kw >= 8: the dense conv runs its
    height taps as Winograd F(2, 3) over the width-lowered input (or x itself for kw = 1,
    stride 1). Forward and backward against the float64 reference."""
    rng = np.random.default_rng(1000 + 10 * h + pad)
    n, ci, co, w = 3, 8, 5, 7
    x = rand(rng, n, ci, h, w)
    K = rand(rng, co, ci, 3, kw, scale=0.3)
    b = rand(rng, co)
    pw = kw // 2
    opts = dict(stride=(1, sw), padding=(pad, pw))
    y = conv.conv2d(x, K, bias=b, **opts)
    close(y, ref.conv2d(x, K, (1, sw), (pad, pw), 1, b), what="y")
    g = rand(rng, *y.shape)
    got = conv.conv2d_backward(g, x, K, bias=b, **opts)
    dx, dK, db = ref.conv2d_backward(g, x, K, (1, sw), (pad, pw), 1)
    close(got["x"], dx, rtol=5e-5, what="dx")
    close(got["K"], dK, rtol=5e-5, what="dK")
    close(got["bias"], db, what="dbias")


@pytest.mark.parametrize("h,pad", [(16, 1), (17, 1), (19, 2)])
def test_winograd_f43_height_forms(h, pad):
    """At least 16 output rows, c_out >= 64 and r (or c_in*kw) >= 128: both Winograd height
    forms use F(4, 3) (6 products per 4 output rows; partial last tiles for 17 and 21 rows).
    The low-rank conv (r = 128, c_out = 64) and the dense conv (c_in*kw = 144) against the
    float64 reference, forward and every gradient."""
    rng = np.random.default_rng(4000 + 10 * h + pad)
    n, ci, co, w, r = 1, 48, 64, 3, 128
    x = rand(rng, n, ci, h, w)
    b = rand(rng, co)
    U, V = rand(rng, co * 3, r, scale=0.1), rand(rng, ci * 3, r, scale=0.1)
    opts = dict(padding=(pad, 1), bias=b)
    y, z = conv.lowrank_conv2d_forward(x, U, V, 3, _path="fused-products", **opts)
    close(y, ref.lowrank_conv2d(x, U, V, (3, 3), 1, (pad, 1), 1, b, None), what="y")
    g = rand(rng, *y.shape)
    want = ref.lowrank_conv2d_backward(g, x, U, V, (3, 3), 1, (pad, 1), 1, None)
    got = conv.lowrank_conv2d_backward(g, x, U, V, 3, _path="fused-products", intermediate=z, **opts)
    for name in ("x", "U", "V"):
        close(got[name], want[name], rtol=5e-5, what=f"d{name}")
    close(got["bias"], want["bias"], what="dbias")
    K = rand(rng, co, ci, 3, 3, scale=0.1)
    y = conv.conv2d(x, K, **opts)
    close(y, ref.conv2d(x, K, 1, (pad, 1), 1, b), what="dense y")
    got = conv.conv2d_backward(g, x, K, **opts)
    dx, dK, db = ref.conv2d_backward(g, x, K, 1, (pad, 1), 1)
    close(got["x"], dx, rtol=5e-5, what="dense dx")
    close(got["K"], dK, rtol=5e-5, what="dense dK")
    close(got["bias"], db, what="dense dbias")


@pytest.mark.parametrize("n,h,w,kw,pw,dw", [(1, 16, 16, 3, 1, 1), (3, 15, 20, 3, 0, 1), (2, 13, 21, 5, 2, 1),
                                           (1, 16, 17, 3, 2, 2), (3, 9, 31, 3, 1, 1)])
def test_lowrank_stage1_per_image(n, h, w, kw, pw, dw):
    """Planes of H*W >= 256 (and C_in*H*W <= 2^15) with width stride 1 and r <= C_in: the
    transposed 1 x kw stage reads x and writes dx in place, one product per image (other
    chunks are gathered first). Forward and every gradient against the float64 reference, with and without the
    saved intermediate, at 1 and 2 threads."""
    rng = np.random.default_rng(5000 + 7 * h + w + kw)
    ci, co, r, kh = 6, 7, 4, 3
    x = rand(rng, n, ci, h, w)
    U, V = rand(rng, co * kh, r, scale=0.5), rand(rng, ci * kw, r, scale=0.5)
    b = rand(rng, co)
    opts = dict(padding=(1, pw), dilation=(1, dw), bias=b)
    want_y = ref.lowrank_conv2d(x, U, V, (kh, kw), 1, (1, pw), (1, dw), b, None)
    g = rand(rng, *want_y.shape)
    want = ref.lowrank_conv2d_backward(g, x, U, V, (kh, kw), 1, (1, pw), (1, dw), None)
    before = fnl.get_num_threads()
    try:
        for threads in (1, 2):
            fnl.set_num_threads(threads)
            y, z = conv.lowrank_conv2d_forward(x, U, V, (kh, kw), _path="fused-products", **opts)
            close(y, want_y, what=f"y {threads} threads")
            for saved in (None, z):
                got = conv.lowrank_conv2d_backward(g, x, U, V, (kh, kw), _path="fused-products", intermediate=saved, **opts)
                for name in ("x", "U", "V", "bias"):
                    close(got[name], want[name], rtol=5e-5, what=f"d{name} {threads} threads")
    finally:
        fnl.set_num_threads(before)


@pytest.mark.parametrize("n,c,o,h,w,k,p", [
    (1, 3, 5, 1, 1, (3, 3), 1), (2, 19, 21, 8, 8, (3, 3), 1), (3, 16, 7, 13, 17, (3, 3), (2, 0)),
    (1, 5, 64, 9, 33, (5, 3), (4, 1)), (2, 7, 3, 1, 12, (1, 5), (0, 3)), (1, 64, 16, 6, 5, (3, 5), (1, 4)),
    (2, 9, 9, 16, 16, (3, 3), 0), (1, 4, 6, 2, 3, (3, 3), 2),
])
@pytest.mark.parametrize("r", [1, 8, 19])
def test_lowrank_direct_stages(n, c, o, h, w, k, p, r):
    """The fused path's direct stages (stride 1, dilation 1, padding <= kernel - 1: forward,
    the two adjoint convolutions and the two kernel gradients) against the float64 reference
    and the matrix-product stages, at remainder channel blocks, planes down to 1 x 1, vectors
    spanning rows and every padding of the range, with the intermediate saved or recomputed."""
    rng = np.random.default_rng(n * 1000 + c * 10 + r + h)
    case = (n, c, o, h, w, k, 1, p, 1)
    x, U, V, middle, b = lowrank_inputs(rng, case, [r], True)
    kw = dict(padding=p, bias=b)
    y, z = conv.lowrank_conv2d_forward(x, U, V, k, _path="fused", **kw)
    close(y, ref.lowrank_conv2d(x, U, V, k, 1, p, 1, b, None), what="y")
    yp, zp = conv.lowrank_conv2d_forward(x, U, V, k, _path="fused-products", **kw)
    close(z, zp, rtol=1e-5, what="z")
    g = rand(rng, *y.shape)
    want = ref.lowrank_conv2d_backward(g, x, U, V, k, 1, p, 1, None)
    for saved in (z, None):
        got = conv.lowrank_conv2d_backward(g, x, U, V, k, _path="fused", intermediate=saved, **kw)
        for name in ("x", "U", "V"):
            close(got[name], want[name], rtol=5e-5, what=f"d{name}")
        close(got["bias"], want["bias"], what="dbias")


@pytest.mark.parametrize("n,c,o,h,w,k,p,r", [
    (1, 8, 32, 8, 8, (3, 3), 1, 32), (3, 5, 33, 9, 13, (3, 3), (0, 1), 40), (2, 4, 40, 16, 5, (3, 1), (2, 0), 33),
    (1, 3, 32, 3, 9, (3, 5), (1, 2), 32), (5, 6, 36, 7, 7, (3, 3), 1, 48), (2, 7, 34, 1, 11, (3, 3), (1, 1), 35),
])
def test_lowrank_direct_winograd_stage(n, c, o, h, w, k, p, r):
    """With r and C_out >= 32 and a 3 x 1 height stage, the direct path runs that stage by
    Winograd F(4, 3) (F(2, 3) for 1, 2, 5 or 6 output rows): forward and every gradient
    against the float64 reference, with the intermediate saved or recomputed, at 1 and 2
    threads (batches split over workers and chunks; planes of one row up to 16 rows)."""
    rng = np.random.default_rng(7000 + n * 100 + h * 10 + r)
    case = (n, c, o, h, w, k, 1, p, 1)
    x, U, V, middle, b = lowrank_inputs(rng, case, [r], True)
    kw = dict(padding=p, bias=b)
    want_y = ref.lowrank_conv2d(x, U, V, k, 1, p, 1, b, None)
    g = rand(rng, *want_y.shape)
    want = ref.lowrank_conv2d_backward(g, x, U, V, k, 1, p, 1, None)
    before = fnl.get_num_threads()
    try:
        for threads in (1, 2):
            fnl.set_num_threads(threads)
            y, z = conv.lowrank_conv2d_forward(x, U, V, k, _path="fused", **kw)
            close(y, want_y, rtol=5e-5, what=f"y {threads} threads")
            for saved in (z, None):
                got = conv.lowrank_conv2d_backward(g, x, U, V, k, _path="fused", intermediate=saved, **kw)
                for name in ("x", "U", "V"):
                    close(got[name], want[name], rtol=5e-5, what=f"d{name} {threads} threads")
                close(got["bias"], want["bias"], what=f"dbias {threads} threads")
    finally:
        fnl.set_num_threads(before)


@pytest.mark.parametrize("batch", [1, 6, 7])
def test_thread_counts_agree(batch):
    """The batch is split over min(threads, batch) workers, each with its own partial kernel
    gradients added in worker order: 1, 2, 3 and 5 threads give the same results to float
    rounding, on the fused path (direct stages; products with plain and transposed stage 1,
    saved intermediate), the compose path and the dense kernel. The tolerance is that of the
    Winograd F(4, 3) height form these shapes take (as in `test_winograd_f43_height_forms`):
    the chunks a thread count gives change the products' summation order, and its transforms
    scale values by up to 10."""
    rng = np.random.default_rng(11)
    x = rand(rng, batch, 8, 20, 18)
    U, V = rand(rng, 8 * 3, 5), rand(rng, 8 * 3, 5)
    M = rand(rng, 5, 6)
    Vw = rand(rng, 8 * 3, 6)
    K = rand(rng, 8, 8, 3, 3)
    b = rand(rng, 8)
    before = fnl.get_num_threads()
    out = {}
    try:
        for t in (1, 2, 3, 5):
            fnl.set_num_threads(t)
            res = []
            y = conv.lowrank_conv2d(x, U, V, 3, stride=(1, 2), padding=1, bias=b)
            d = conv.lowrank_conv2d_backward(np.cos(y), x, U, V, 3, stride=(1, 2), padding=1, bias=b)
            res += [y, d["x"], d["U"], d["V"], d["bias"]]
            y, z = conv.lowrank_conv2d_forward(x, U, Vw, 3, padding=1, middle=[M])
            d = conv.lowrank_conv2d_backward(np.sin(y), x, U, Vw, 3, padding=1, middle=[M], intermediate=z)
            res += [y, z, d["x"], d["U"], d["V"], d["middle"][0]]
            y, z = conv.lowrank_conv2d_forward(x, U, Vw, 3, padding=1, middle=[M], _path="fused-products")
            d = conv.lowrank_conv2d_backward(np.sin(y), x, U, Vw, 3, padding=1, middle=[M], intermediate=z,
                                             _path="fused-products")
            res += [y, z, d["x"], d["U"], d["V"], d["middle"][0]]
            y = conv.lowrank_conv2d(x, U, V, 3, padding=1, _path="compose")
            d = conv.lowrank_conv2d_backward(np.cos(y), x, U, V, 3, padding=1, _path="compose")
            res += [y, d["x"], d["U"], d["V"]]
            yd = conv.conv2d(x, K, padding=(2, 1), dilation=(2, 1), bias=b)
            dd = conv.conv2d_backward(np.sin(yd), x, K, padding=(2, 1), dilation=(2, 1), bias=b)
            res += [yd, dd["x"], dd["K"], dd["bias"]]
            out[t] = res
    finally:
        fnl.set_num_threads(before)
    for t in (2, 3, 5):
        for i, (a, e) in enumerate(zip(out[t], out[1])):
            close(a, e, rtol=5e-5, what=f"output {i}, {t} threads vs 1")


def test_finite_differences_tiny():
    """Central differences of L = sum(G * y) on fnl's float32 forward. y is multilinear in x,
    U, each M_j and V (each appears once), so central differences are exact up to rounding."""
    rng = np.random.default_rng(13)
    case = (1, 2, 3, 5, 4, (3, 3), (1, 2), 1, 1)
    n, ci, co, h, w, k, s, p, d = case
    x, U, V, middle, b = lowrank_inputs(rng, case, [3, 2], True)
    kw = dict(stride=s, padding=p, dilation=d)
    y = conv.lowrank_conv2d(x, U, V, k, bias=b, middle=middle, **kw)
    G = rand(rng, *y.shape)
    grads = conv.lowrank_conv2d_backward(G, x, U, V, k, bias=b, middle=middle, **kw)
    args = {"x": x, "U": U, "V": V, "bias": b, "M": middle[0]}

    def loss(a):
        yy = conv.lowrank_conv2d(a["x"], a["U"], a["V"], k, bias=a["bias"], middle=[a["M"]], **kw)
        return float(np.sum(G.astype(np.float64) * yy))

    eps = 1e-2
    for name, analytic in (("x", grads["x"]), ("U", grads["U"]), ("V", grads["V"]), ("bias", grads["bias"]),
                           ("M", grads["middle"][0])):
        flat = args[name].reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            plus = {kk: vv.copy() for kk, vv in args.items()}
            minus = {kk: vv.copy() for kk, vv in args.items()}
            plus[name].reshape(-1)[i] += eps
            minus[name].reshape(-1)[i] -= eps
            fd = (loss(plus) - loss(minus)) / (2 * eps)
            assert abs(fd - analytic.reshape(-1)[i]) <= 2e-3 * max(1.0, abs(fd)), (name, i, fd)

    # The float64 reference's own gradients against central differences (exact in float64).
    want = ref.lowrank_conv2d_backward(G, x, U, V, k, s, p, d, middle)
    x64 = x.astype(np.float64)
    for i in rng.choice(x.size, size=5, replace=False):
        e = np.zeros(x.size)
        e[i] = 1e-3
        e = e.reshape(x.shape)
        fd = (np.sum(G * ref.lowrank_conv2d(x64 + e, U, V, k, s, p, d, b, middle))
              - np.sum(G * ref.lowrank_conv2d(x64 - e, U, V, k, s, p, d, b, middle))) / 2e-3
        assert abs(fd - want["x"].reshape(-1)[i]) <= 1e-8 * max(1.0, abs(fd))


def test_lowrank_equals_dense_of_composed_kernel():
    rng = np.random.default_rng(17)
    x = rand(rng, 2, 5, 10, 9)
    U, V = rand(rng, 6 * 3, 4), rand(rng, 5 * 3, 4)
    K = fnl.matrix_to_conv(fnl.compose(U, V), 6, 5, 3, 3)
    for opts in ({}, {"stride": 2, "padding": 1}, {"padding": (2, 1), "dilation": (2, 1)}):
        close(conv.lowrank_conv2d(x, U, V, 3, **opts), conv.conv2d(x, K, **opts), rtol=1e-5, what=str(opts))


def test_accepts_converted_inputs():
    """Array-likes, ints, float64, non-contiguous and read-only inputs are converted."""
    rng = np.random.default_rng(19)
    x64 = rng.standard_normal((2, 3, 12, 7))
    x = x64[:, :, ::2, :]  # non-contiguous float64
    x.flags.writeable = False
    K = rng.integers(-2, 3, size=(2, 3, 3, 3))  # ints
    y = conv.conv2d(x, K.tolist(), padding=1)
    close(y, ref.conv2d(x.astype(np.float32), K, 1, 1, 1))
    U = rng.standard_normal((2 * 3, 2)).T.copy().T  # Fortran order
    V = rng.standard_normal((3 * 3, 2))
    close(conv.lowrank_conv2d(x, U, V, 3, padding=1),
          ref.lowrank_conv2d(x.astype(np.float32), U.astype(np.float32), V.astype(np.float32), 3, 1, 1, 1))


def test_int_or_pair_options():
    rng = np.random.default_rng(23)
    x, K = rand(rng, 1, 2, 9, 9), rand(rng, 2, 2, 3, 3)
    close(conv.conv2d(x, K, stride=2, padding=1, dilation=1),
          conv.conv2d(x, K, stride=(2, 2), padding=[1, 1], dilation=(np.int64(1), 1)), rtol=0)
    U, V = rand(rng, 2 * 3, 2), rand(rng, 2 * 5, 2)
    y = conv.lowrank_conv2d(x, U, V, (3, 5), padding=(1, 2), groups=1)
    assert y.shape == (1, 2, 9, 9)


def test_torch_agrees():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(29)
    x, K, b = rand(rng, 2, 4, 11, 10), rand(rng, 5, 4, 3, 5), rand(rng, 5)
    opts = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    xt = torch.from_numpy(x).double().requires_grad_(True)
    Kt = torch.from_numpy(K).double().requires_grad_(True)
    bt = torch.from_numpy(b).double().requires_grad_(True)
    yt = F.conv2d(xt, Kt, bt, **opts)
    y = conv.conv2d(x, K, bias=b, **opts)
    close(y, yt.detach().numpy())
    g = rand(rng, *y.shape)
    yt.backward(torch.from_numpy(g).double())
    d = conv.conv2d_backward(g, x, K, bias=b, **opts)
    close(d["x"], xt.grad.numpy())
    close(d["K"], Kt.grad.numpy())
    close(d["bias"], bt.grad.numpy())
    # Low-rank: torch's two-conv form (1 x kw then kh x 1) of the same kernel.
    r = 3
    U, V = rand(rng, 5 * 3, r), rand(rng, 4 * 5, r)
    w1 = torch.from_numpy(np.ascontiguousarray(V.T.reshape(r, 4, 1, 5))).double()
    w2 = torch.from_numpy(np.ascontiguousarray(U.reshape(5, 3, r).transpose(0, 2, 1)[..., None])).double()
    z = F.conv2d(torch.from_numpy(x).double(), w1, stride=(1, 1 * opts["stride"][1]), padding=(0, 2), dilation=(1, 2))
    yt2 = F.conv2d(z, w2, stride=(2, 1), padding=(1, 0), dilation=(1, 1))
    close(conv.lowrank_conv2d(x, U, V, (3, 5), **opts), yt2.numpy())
