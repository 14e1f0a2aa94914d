"""The training-speed machinery of fnl.nn: fused BatchNorm(+residual)+ReLU passes, the fused
paths of BasicBlock and Sequential, the SIMD ReLU kernels, and the layers' memory pool."""
import gc

import numpy as np
import pytest

import fnl
import fnl.nn as nn
from fnl import _native
from _nn_reference import bn64, check_module, numgrad

rng = np.random.default_rng(4321)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


class PlainReLU(nn.ReLU):
    """A ReLU subclass: containers do not fuse it, so the layer-by-layer path runs."""


def fused_reference(x, gamma, beta, residual, relu, training, layer):
    if training:
        y = bn64(x, gamma, beta, layer.eps)
    else:
        y = bn64(x, gamma, beta, layer.eps, layer.running_mean.astype(np.float64), layer.running_var.astype(np.float64))
    if residual is not None:
        y = y + residual
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 7), (4, 3, 5, 5), (2, 2, 17, 3)])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_fused_forward_backward(shape, residual, relu, training):
    layer = nn.BatchNorm1d(shape[1]) if len(shape) < 4 else nn.BatchNorm2d(shape[1])
    layer.weight.assign(randn(shape[1]))
    layer.bias.assign(randn(shape[1]))
    layer.running_mean[:] = randn(shape[1])
    layer.running_var[:] = 0.5 + np.abs(randn(shape[1]))
    layer.train(training)
    x64 = (2 * randn(*shape) + 1).astype(np.float64)
    r64 = randn(*shape).astype(np.float64) if residual else None
    g64 = layer.weight.data.astype(np.float64)
    b64 = layer.bias.data.astype(np.float64)
    with nn.enable_grad():
        y = layer.forward_act(x64.astype(np.float32), None if r64 is None else r64.astype(np.float32), relu)
    ref = fused_reference(x64, g64, b64, r64, relu, training, layer)
    np.testing.assert_allclose(y, ref, atol=1e-4 * max(1, np.abs(ref).max()), rtol=1e-4)

    R = rng.standard_normal(shape)
    layer.zero_grad()
    dx, dres = layer.backward_act(R.astype(np.float32))
    f = lambda: float(np.sum(fused_reference(x64, g64, b64, r64, relu, training, layer) * R))
    for got, var, what in [(dx, x64, "x"), (layer.weight.grad, g64, "weight"), (layer.bias.grad, b64, "bias")] + (
            [(dres, r64, "residual")] if residual else []):
        num = numgrad(f, var)
        np.testing.assert_allclose(got, num, atol=2e-4 * max(1, np.abs(num).max()), rtol=2e-3, err_msg=what)
    if not residual:
        assert dres is None


def test_batchnorm_plain_backward_after_fused_forward_without_residual():
    layer = nn.BatchNorm2d(3)
    x = randn(4, 3, 3, 3)
    y = layer.forward_act(x, relu=True)
    g = randn(*y.shape)
    dx = layer.backward(g)
    ref = nn.BatchNorm2d(3)
    ref(x)
    np.testing.assert_allclose(dx, ref.backward(g * (y > 0)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_planes,planes,stride,shortcut", [(3, 3, 1, "projection"), (2, 4, 2, "projection"),
                                                              (2, 4, 2, "pad"), (3, 5, 1, "projection")])
def test_basic_block_fused_equals_layer_by_layer(in_planes, planes, stride, shortcut):
    fused = nn.BasicBlock(in_planes, planes, stride, shortcut, seed=7)
    plain = nn.BasicBlock(in_planes, planes, stride, shortcut, seed=7)
    plain.relu1, plain.relu2 = PlainReLU(), PlainReLU()
    assert fused._fusable() and not plain._fusable()
    for bn in ("bn1", "bn2"):
        w = randn(planes)
        getattr(fused, bn).weight.assign(w)
        getattr(plain, bn).weight.assign(w)
    x = randn(3, in_planes, 6, 5)
    yf, yp = fused(x), plain(x)
    np.testing.assert_allclose(yf, yp, rtol=1e-5, atol=1e-5)
    g = randn(*yf.shape)
    np.testing.assert_allclose(fused.backward(g), plain.backward(g), rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5, err_msg=name)
    for bn in ("bn1", "bn2"):
        np.testing.assert_allclose(getattr(fused, bn).running_var, getattr(plain, bn).running_var, rtol=1e-6)


def test_basic_block_fused_gradients_against_finite_differences():
    block = nn.BasicBlock(2, 3, 2, seed=1)
    block.bn2.weight.assign(randn(3))
    check_module(block, randn(2, 2, 5, 5))


def test_sequential_fuses_batchnorm_relu_only_for_exact_classes():
    def build(relu):
        return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, seed=0), nn.BatchNorm2d(3), relu,
                             nn.Flatten(), nn.Linear(3 * 16, 4, seed=1), nn.BatchNorm1d(4), relu.__class__())

    fused, plain = build(nn.ReLU()), build(PlainReLU())
    assert [f for _, f in fused._plan()] == [False, True, False, False, True]
    assert not any(f for _, f in plain._plan())
    x = randn(5, 2, 4, 4)
    yf, yp = fused(x), plain(x)
    np.testing.assert_allclose(yf, yp, rtol=1e-5, atol=1e-6)
    g = randn(*yf.shape)
    np.testing.assert_allclose(fused.backward(g), plain.backward(g), rtol=1e-4, atol=1e-6)
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6, err_msg=name)
    # evaluation mode runs the same fused path on the running statistics
    fused.eval(), plain.eval()
    np.testing.assert_allclose(fused(x), plain(x), rtol=1e-5, atol=1e-6)
    check_module(build(nn.ReLU()), x)


def test_state_dict_names_unchanged_by_fusion():
    model = fnl.models.resnet20(10, 1, width=0.25, seed=0)
    keys = list(model.state_dict())
    model(randn(2, 1, 8, 8))
    assert list(model.state_dict()) == keys
    assert "layer1.0.bn1.running_mean" in keys


@pytest.mark.parametrize("count", [1, 15, 16, 17, 1000, 40_003])
def test_relu_kernels_simd_tails(count):
    x = randn(count)
    x[::7] = 0.0
    y = _native.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    g = randn(count)
    np.testing.assert_array_equal(_native.relu_backward(g, y), np.where(y > 0, g, 0))


def test_relu_nan_propagates():
    y = _native.relu_forward(np.array([np.nan, -1, 2, -np.inf] * 5, np.float32))
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2 and y[3] == 0


def test_batchnorm_binding_bad_arguments():
    x = randn(4, 3, 2, 2)
    w, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"\[fnl.nn.BatchNorm\] residual must have the shape"):
        _native.batchnorm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, randn(4, 3, 2, 3), True)
    with pytest.raises(TypeError):
        _native.batchnorm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, np.ones((4, 3, 2, 2), complex), True)
    y, mean, inv = _native.batchnorm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, None, True)
    gw, gb = np.zeros(3, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="needs the output y"):
        _native.batchnorm_backward(x, x, w, mean, inv, True, gw, gb, True, None, True)
    with pytest.raises(ValueError, match=r"y must have the shape"):
        _native.batchnorm_backward(x, x, w, mean, inv, True, gw, gb, True, y[:2], False)
    layer = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="residual must have the shape"):
        layer.forward_act(x, randn(4, 3, 1, 2), relu=True)


def test_memory_pool_reuses_blocks_and_respects_the_limit():
    old = nn.memory_pool()["limit"]
    try:
        nn.memory_pool(0)
        assert nn.memory_pool()["cached_bytes"] == 0
        nn.memory_pool(64 << 20)
        layer = nn.ReLU().eval()  # keeps no reference to its output
        x = randn(64, 8, 16, 16)  # 512 KiB
        first = layer(x)
        expected = np.maximum(x, 0)
        np.testing.assert_array_equal(first, expected)
        del first
        gc.collect()
        info = nn.memory_pool()
        assert info["cached_blocks"] >= 1 and info["cached_bytes"] >= x.nbytes
        hits = info["hits"]
        a = layer(x)
        b = layer(2 * x)  # two live arrays never share a block
        assert nn.memory_pool()["hits"] > hits
        assert not np.shares_memory(a, b)
        np.testing.assert_array_equal(a, expected)
        np.testing.assert_array_equal(b, np.maximum(2 * x, 0))
        del a, b
        nn.memory_pool(x.nbytes)  # a smaller limit evicts
        assert nn.memory_pool()["cached_bytes"] <= x.nbytes
        nn.memory_pool(0)
        assert nn.memory_pool()["cached_blocks"] == 0
    finally:
        nn.memory_pool(old)


def test_memory_pool_training_steps_hit_the_pool():
    model = fnl.factorize(fnl.models.resnet20(10, 3, width=0.5, seed=0), rank_scale=0.25)
    opt = fnl.optim.SGD(model, lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x, y = randn(16, 3, 16, 16), rng.integers(0, 10, 16)
    losses = []
    for step in range(3):
        if step == 1:
            before = nn.memory_pool()
        losses.append(loss_fn(model(x), y))
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    after = nn.memory_pool()
    assert after["hits"] > before["hits"]
    assert all(np.isfinite(losses))


def test_memory_pool_bad_limit():
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match=r"\[fnl.nn.memory_pool\] limit"):
            nn.memory_pool(bad)


def test_pooled_arrays_outlive_the_pool_scope():
    layer = nn.BatchNorm2d(4)
    ys = [layer(randn(8, 4, 32, 32)) for _ in range(3)]
    for y in ys:
        assert y.flags.c_contiguous and y.dtype == np.float32 and np.isfinite(y).all()
    assert len({y.ctypes.data for y in ys}) == 3


def test_bindings_hold_no_extra_references():
    from test_leaks import assert_no_leak

    x, r, g = randn(4, 3, 5, 5), randn(4, 3, 5, 5), randn(4, 3, 5, 5)
    w, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    gw, gb = np.zeros(3, np.float32), np.zeros(3, np.float32)
    y, mean, inv = _native.batchnorm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, r, True)
    objects = [x, r, g, w, b, rm, rv, gw, gb, y, mean, inv]

    def calls():
        _native.batchnorm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, r, True)
        _native.batchnorm_forward(x, w, b, rm, rv, False, 0.1, 1e-5, None, False)
        _native.batchnorm_backward(g, x, w, mean, inv, True, gw, gb, True, y, True)
        _native.batchnorm_backward(g, x, w, mean, inv, True, gw, gb, False, None, False)
        _native.pool_exit(_native.pool_enter())
        for bad in ((x, w, b, rm, rv, True, 0.1, 1e-5, r[:1], True),):
            try:
                _native.batchnorm_forward(*bad)
            except ValueError:
                pass
        try:
            _native.batchnorm_backward(g, x, w, mean, inv, True, gw, gb, True, None, True)
        except ValueError:
            pass

    assert_no_leak(calls, objects, n=400)


def test_batchnorm_nan_leaves_statistics_and_gradients_unchanged():
    layer = nn.BatchNorm2d(3)
    x = randn(4, 3, 2, 2)
    y = layer.forward_act(x, relu=True)
    g = randn(4, 3, 2, 2)
    g[:, 2] = np.where(y[:, 2] > 0, np.nan, g[:, 2])  # where the ReLU passes the gradient
    with pytest.raises(ValueError, match="channel 2"):
        layer.backward_act(g)
    assert (y[:, 2] > 0).any()
    assert not layer.weight.grad.any() and not layer.bias.grad.any()
    rm, rv = layer.running_mean.copy(), layer.running_var.copy()
    x[0, 1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="channel 1"):
        layer.forward_act(x, randn(4, 3, 2, 2), relu=True)
    np.testing.assert_array_equal(layer.running_mean, rm)
    np.testing.assert_array_equal(layer.running_var, rv)
