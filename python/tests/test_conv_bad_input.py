"""fnl.conv: every class of bad input raises the right exception with a clear message."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from fnl import conv


def f32(*shape):
    return np.ones(shape, np.float32)


X = f32(2, 3, 8, 8)
U = f32(4 * 3, 2)
V = f32(3 * 3, 2)
K = f32(4, 3, 3, 3)
G = f32(2, 4, 8, 8)  # grad_y for padding 1


def lr(**kw):
    args = dict(x=X, U=U, V=V, kernel_size=3, padding=1)
    args.update(kw)
    return conv.lowrank_conv2d(**args)


def lr_back(**kw):
    args = dict(grad_y=G, x=X, U=U, V=V, kernel_size=3, padding=1)
    args.update(kw)
    return conv.lowrank_conv2d_backward(**args)


def raises(exc, match, fn, **kw):
    with pytest.raises(exc, match=match):
        fn(**kw)


# ---------------------------------------------------------------- dtypes and types


@pytest.mark.parametrize("arg", ["x", "U", "V"])
@pytest.mark.parametrize("bad", [np.ones((2, 3, 8, 8), complex), np.ones((2, 3, 8, 8), bool),
                                 np.array([["a"]]), np.array([None, 1], dtype=object)])
def test_lowrank_wrong_dtype(arg, bad):
    if arg != "x" and bad.ndim == 4:
        bad = bad[0, 0]
    with pytest.raises(TypeError, match=rf"\[fnl.lowrank_conv2d\] {arg} must hold real numbers|\[fnl.lowrank_conv2d\] {arg} must"):
        lr(**{arg: bad})


def test_dense_wrong_dtype():
    raises(TypeError, r"\[fnl.conv2d\] K must hold real numbers", conv.conv2d, x=X, K=K.astype(complex))
    raises(TypeError, r"\[fnl.conv2d\] x must be an array", conv.conv2d, x=None, K=K)
    raises(TypeError, r"\[fnl.conv2d_backward\] grad_y must hold real numbers", conv.conv2d_backward,
           grad_y=G.astype(bool), x=X, K=K, padding=1)


def test_option_types():
    raises(TypeError, r"\[fnl.lowrank_conv2d\] stride must be an int or a pair", lr, stride=1.5)
    raises(TypeError, r"\[fnl.lowrank_conv2d\] stride must be an int or a pair", lr, stride=(1, 2, 3))
    raises(TypeError, r"\[fnl.lowrank_conv2d\] padding must be an int or a pair", lr, padding=True)
    raises(TypeError, r"\[fnl.lowrank_conv2d\] kernel_size must be an int or a pair", lr, kernel_size="3")
    raises(TypeError, r"\[fnl.conv2d\] dilation must be an int or a pair", conv.conv2d, x=X, K=K, dilation=None)
    raises(TypeError, r"\[fnl.lowrank_conv2d\] middle must be None or a list", lr, middle=np.eye(2))
    raises(TypeError, r"\[fnl.lowrank_conv2d\] workspace must be None or a fnl.ConvWorkspace", lr,
           workspace=np.zeros(100, np.float32))
    raises(TypeError, r"\[fnl.lowrank_conv2d\] groups must be the int 1", lr, groups="1")


def test_groups_other_than_one():
    for fn, kw in ((lr, {}), (conv.conv2d, dict(x=X, K=K)), (lr_back, {}),
                   (conv.conv2d_backward, dict(grad_y=G, x=X, K=K, padding=1))):
        with pytest.raises(ValueError, match=r"groups must be 1: grouped and depthwise convolutions are not supported"):
            fn(groups=3, **kw)


# ---------------------------------------------------------------- option values


@pytest.mark.parametrize("kw,match", [
    (dict(stride=0), r"stride must be >= 1 along both axes, got 0"),
    (dict(stride=(1, 0)), r"stride must be >= 1 along both axes"),
    (dict(padding=-1), r"padding must be >= 0 along both axes"),
    (dict(dilation=(0, 1)), r"dilation must be >= 1 along both axes"),
    (dict(kernel_size=0), r"kernel_size must be >= 1"),
    (dict(stride=2**40), r"stride must be < 2\*\*31"),
    (dict(_path="fast"), r"_path must be 'auto', 'fused', 'compose' or 'fused-products'"),
])
def test_option_values(kw, match):
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] " + match):
        lr(**kw)


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] the dilated kernel height 9 .* exceeds the padded input height"):
        lr(kernel_size=3, dilation=4, padding=0, U=f32(4 * 3, 2), x=f32(2, 3, 8, 20))
    with pytest.raises(ValueError, match=r"\[fnl.conv2d\] the dilated kernel width 5 .* exceeds the padded input width 4"):
        conv.conv2d(f32(1, 3, 8, 4), f32(2, 3, 1, 5))


# ---------------------------------------------------------------- shapes


def test_wrong_ndim_and_empty():
    raises(ValueError, r"\[fnl.lowrank_conv2d\] x must have 4 dimensions, got shape \(3, 8, 8\)", lr, x=f32(3, 8, 8))
    raises(ValueError, r"\[fnl.lowrank_conv2d\] U must have 2 dimensions", lr, U=f32(12))
    raises(ValueError, r"\[fnl.conv2d\] K must have 4 dimensions", conv.conv2d, x=X, K=f32(4, 3, 3))
    raises(ValueError, r"\[fnl.lowrank_conv2d\] x must not be empty, got shape \(0, 3, 8, 8\)", lr, x=f32(0, 3, 8, 8))
    raises(ValueError, r"\[fnl.conv2d\] K must not be empty", conv.conv2d, x=X, K=f32(0, 3, 3, 3))


def test_factor_shapes():
    raises(ValueError, r"U must have c_out\*kh rows \(a multiple of kh=3\), got shape \(10, 2\)", lr, U=f32(10, 2))
    raises(ValueError, r"V must have c_in\*kw = 3\*3 = 9 rows \(x has c_in=3 channels\), got shape \(12, 2\)", lr,
           V=f32(12, 2))
    raises(ValueError, r"V must have 2 columns \(the columns of U\), got shape \(9, 3\)", lr, V=f32(9, 3))
    raises(ValueError, r"middle\[0\] must have 2 rows", lr, middle=[f32(3, 2)])
    raises(ValueError, r"V must have 5 columns \(the columns of the last middle matrix\)", lr, middle=[f32(2, 5)])
    raises(ValueError, r"\[fnl.lowrank_conv2d\] bias must have shape \(c_out,\) = \(4,\), got \(3,\)", lr, bias=f32(3))


def test_dense_shapes():
    raises(ValueError, r"\[fnl.conv2d\] K must have shape \(c_out, c_in, kh, kw\) with c_in = 3", conv.conv2d,
           x=X, K=f32(4, 2, 3, 3))
    raises(ValueError, r"\[fnl.conv2d\] bias must have shape \(c_out,\) = \(4,\), got \(5,\)", conv.conv2d, x=X, K=K,
           bias=f32(5))
    raises(ValueError, r"\[fnl.conv2d\] bias must have 1 dimensions, got shape \(4, 1\)", conv.conv2d, x=X, K=K,
           bias=f32(4, 1))


def test_grad_shape():
    raises(ValueError, r"\[fnl.lowrank_conv2d_backward\] grad_y must have the output's shape .* = \(2, 4, 8, 8\), got \(2, 4, 6, 6\)",
           lr_back, grad_y=f32(2, 4, 6, 6))
    raises(ValueError, r"\[fnl.conv2d_backward\] grad_y must have the output's shape", conv.conv2d_backward,
           grad_y=f32(2, 4, 8, 8), x=X, K=K, padding=0)


def test_intermediate_checks():
    y, z = conv.lowrank_conv2d_forward(X, U, V, 3, padding=1, _path="fused")
    raises(ValueError, r"intermediate must have shape \(r, n, h, out_w\) = \(2, 2, 8, 8\)", lr_back,
           intermediate=z[:, :1], _path="fused")
    raises(ValueError, r"intermediate must be None on the compose path", lr_back, intermediate=z, _path="compose")
    bad = z.copy()
    bad[0, 0, 0, 0] = np.nan
    raises(ValueError, r"intermediate contains NaN or inf", lr_back, intermediate=bad, _path="fused")


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("arg", ["x", "U", "V", "grad_y", "middle"])
def test_nan_and_inf(arg):
    base = dict(x=X.copy(), U=U.copy(), V=V.copy(), bias=f32(4), grad_y=G.copy(), middle=[f32(2, 2)])
    bad = base[arg][0] if arg == "middle" else base[arg]
    bad.reshape(-1)[3] = np.inf if arg in ("U", "grad_y") else np.nan
    name = "middle\\[0\\]" if arg == "middle" else arg
    with pytest.raises(ValueError, match=rf"\[fnl.lowrank_conv2d_backward\] {name} contains NaN or inf \(first at flat index 3"):
        conv.lowrank_conv2d_backward(base["grad_y"], base["x"], base["U"], base["V"], 3, padding=1,
                                     bias=base["bias"], middle=base["middle"])
    if arg == "x":
        with pytest.raises(ValueError, match=r"\[fnl.conv2d\] x contains NaN or inf"):
            conv.conv2d(base["x"], K, padding=1)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 8, 9, 9)).astype(np.float32)
    U = rng.standard_normal((6 * 3, 8)).astype(np.float32)
    V = rng.standard_normal((8 * 3, 8)).astype(np.float32)
    g = rng.standard_normal((3, 6, 9, 9)).astype(np.float32)
    return rng, x, U, V, g


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("path", ["fused", "compose"])
@pytest.mark.parametrize("arg", ["x", "grad_y", "intermediate"])
def test_non_finite_found_at_any_position(arg, path, value):
    """Large inputs are scanned only when a result is not finite: a NaN or infinity anywhere
    in them still reaches a result and is reported with its first flat index (Winograd and
    lowered stages, both paths, forward and backward)."""
    if arg == "intermediate" and path == "compose":
        pytest.skip("the intermediate exists only on the fused path")
    for seed in range(4):
        rng, x, U, V, g = _random_case(seed)
        y, z = conv.lowrank_conv2d_forward(x, U, V, 3, padding=1, _path="fused")
        base = dict(x=x, grad_y=g, intermediate=z)
        bad = base[arg]
        j = int(rng.integers(bad.size))
        bad.reshape(-1)[j] = value
        msg = rf"{arg} contains NaN or inf \(first at flat index {j}:"
        inter = z if path == "fused" else None
        with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d_backward\] " + msg):
            conv.lowrank_conv2d_backward(g, x, U, V, 3, padding=1, intermediate=inter, _path=path)
        if arg == "intermediate":
            continue
        K = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
        K5 = rng.standard_normal((6, 8, 5, 5)).astype(np.float32)
        with pytest.raises(ValueError, match=r"\[fnl.conv2d_backward\] " + msg):
            conv.conv2d_backward(g, x, K, padding=1)
        if arg == "x":
            with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] " + msg):
                conv.lowrank_conv2d(x, U, V, 3, padding=1, _path=path)
            for k, pad in ((K, 1), (K5, 2)):
                with pytest.raises(ValueError, match=r"\[fnl.conv2d\] " + msg):
                    conv.conv2d(x, k, padding=pad)


def test_values_no_output_reads_change_nothing():
    """A NaN in a pixel that a stride skips enters no result: the call succeeds and returns
    what it returns with that pixel zero (no silent wrong answer)."""
    rng, x, U, V, _ = _random_case(0)
    K = rng.standard_normal((6, 8, 1, 1)).astype(np.float32)
    bad = x.copy()
    bad[1, 2, 3, 5] = np.nan  # odd row and column: stride 2 never reads it
    clean = x.copy()
    clean[1, 2, 3, 5] = 0
    g = rng.standard_normal((3, 6, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(conv.conv2d(bad, K, stride=2), conv.conv2d(clean, K, stride=2))
    got, want = conv.conv2d_backward(g, bad, K, stride=2), conv.conv2d_backward(g, clean, K, stride=2)
    np.testing.assert_array_equal(got["K"], want["K"])
    np.testing.assert_array_equal(got["x"], want["x"])
    U1, V1 = U[:6], V[:8]
    np.testing.assert_array_equal(conv.lowrank_conv2d(bad, U1, V1, 1, stride=2),
                                  conv.lowrank_conv2d(clean, U1, V1, 1, stride=2))
    got = conv.lowrank_conv2d_backward(g, bad, U1, V1, 1, stride=2)
    want = conv.lowrank_conv2d_backward(g, clean, U1, V1, 1, stride=2)
    for key in ("x", "U", "V"):
        np.testing.assert_array_equal(got[key], want[key])


def test_nan_in_forward_only_arguments():
    """bias and K values reach the forward pass (the backward needs only bias's presence)."""
    b = f32(4)
    b[1] = np.nan
    raises(ValueError, r"\[fnl.lowrank_conv2d\] bias contains NaN or inf \(first at flat index 1", lr, bias=b)
    raises(ValueError, r"\[fnl.conv2d\] bias contains NaN or inf", conv.conv2d, x=X, K=K, bias=b)
    k = K.copy()
    k[0, 0, 0, 0] = -np.inf
    raises(ValueError, r"\[fnl.conv2d\] K contains NaN or inf", conv.conv2d, x=X, K=k)
    raises(ValueError, r"\[fnl.conv2d_backward\] K contains NaN or inf", conv.conv2d_backward, grad_y=G, x=X, K=k,
           padding=1)


def test_absurd_sizes():
    """Padding that makes an output of 2^62 pixels: refused before any allocation."""
    one = f32(1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"\[fnl.conv2d\] .*exceeds the BLAS limit"):
        conv.conv2d(one, one, padding=2**30)
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] .*exceeds the BLAS limit"):
        conv.lowrank_conv2d(one, f32(1, 1), f32(1, 1), 1, padding=2**30)
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] the output plane \(out_h\*out_w\)=4294967295 exceeds"):
        conv.lowrank_conv2d(one, f32(1, 1), f32(1, 1), 1, padding=(2**31 - 1, 0), stride=1)
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] U must have c_out\*kh rows"):
        conv.lowrank_conv2d(one, f32(1, 1), f32(1, 1), (2**31 - 1, 1))
    # 3x3 kernels with stride 1 (the Winograd height forms) and a huge height padding.
    x3 = f32(1, 3, 1, 1)
    with pytest.raises(ValueError, match=r"\[fnl.conv2d\] .*exceeds"):
        conv.conv2d(x3, f32(4, 3, 3, 3), padding=(2**30, 1))
    with pytest.raises(ValueError, match=r"\[fnl.lowrank_conv2d\] .*exceeds"):
        conv.lowrank_conv2d(x3, f32(4 * 3, 8), f32(3 * 3, 8), 3, padding=(2**30, 1))


def test_workspace_protocol_violation():
    class Liar(conv.ConvWorkspace):
        def _reserve(self, count):
            return np.zeros(1, np.float32)

    with pytest.raises(TypeError, match=r"workspace._reserve\(\d+\) must return a writeable, contiguous 1-D float32"):
        lr(workspace=Liar())


def test_no_reference_leaks():
    x, u, v, g = X.copy(), U.copy(), V.copy(), G.copy()
    b = f32(4)
    ws = conv.ConvWorkspace()
    counts = [sys.getrefcount(a) for a in (x, u, v, g, b)]
    for _ in range(300):
        conv.lowrank_conv2d(x, u, v, 3, padding=1, bias=b, workspace=ws)
        conv.lowrank_conv2d_backward(g, x, u, v, 3, padding=1, bias=b, middle=[np.eye(2, dtype=np.float32)])
        conv.conv2d_backward(g, x, K, padding=1, bias=b)
        try:
            conv.lowrank_conv2d(x, u, v, 3, padding=1, bias=f32(3))
        except ValueError:
            pass
    assert [sys.getrefcount(a) for a in (x, u, v, g, b)] == counts
