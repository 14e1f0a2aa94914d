"""fnl.nn layers: forward vs float64 references, backward vs finite differences."""
import numpy as np
import pytest

import fnl.nn as nn
from _nn_reference import bn64, check_module, cross_entropy64, numgrad, pool64

rng = np.random.default_rng(1234)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("n,fin,fout,bias", [(1, 3, 2, True), (5, 7, 4, False), (4, 33, 17, True)])
def test_linear(n, fin, fout, bias):
    check_module(nn.Linear(fin, fout, bias=bias, seed=0), randn(n, fin))


@pytest.mark.parametrize("n,fin,fout,rank,depth", [(1, 5, 4, 2, 0), (6, 9, 7, 3, 1), (3, 4, 5, 12, 2), (2, 6, 3, 1, 0)])
def test_factorized_linear(n, fin, fout, rank, depth):
    layer = nn.FactorizedLinear(fin, fout, rank, depth=depth, seed=1)
    for m in layer.middle:  # non-identity inner matrices exercise the chain rule
        m.assign(np.eye(rank) + 0.3 * randn(rank, rank))
    check_module(layer, randn(n, fin))


def test_linear_extra_leading_axes():
    layer = nn.Linear(4, 3, seed=0)
    x = randn(2, 5, 4)
    y = layer(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, x @ layer.weight.data.T + layer.bias.data, atol=1e-5)
    assert layer.backward(np.ones_like(y)).shape == x.shape


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,bias", [
    (2, 3, 3, 1, 1, 1, True), (3, 2, (3, 1), (2, 1), (1, 0), 1, False), (1, 4, 1, 2, 0, 1, True),
    (2, 2, 3, 1, 2, 2, False),
])
def test_conv2d(cin, cout, k, stride, pad, dil, bias):
    check_module(nn.Conv2d(cin, cout, k, stride, pad, dil, bias=bias, seed=2), randn(2, cin, 6, 5))


@pytest.mark.parametrize("cin,cout,k,rank,stride,pad,depth", [
    (2, 3, 3, 2, 1, 1, 0), (3, 4, 3, 5, 2, 1, 1), (2, 2, (1, 3), 7, 1, (0, 1), 0), (3, 2, 1, 1, 1, 0, 0),
])
def test_factorized_conv2d(cin, cout, k, rank, stride, pad, depth):
    layer = nn.FactorizedConv2d(cin, cout, k, rank, stride, pad, bias=True, depth=depth, seed=3)
    for m in layer.middle:
        m.assign(np.eye(rank) + 0.3 * randn(rank, rank))
    layer.bias.assign(randn(cout))
    check_module(layer, randn(1, cin, 5, 6))


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 4, 5), (1, 2, 3, 3)])
def test_batchnorm_train_grad(shape):
    layer = nn.BatchNorm1d(shape[1]) if len(shape) < 4 else nn.BatchNorm2d(shape[1])
    layer.weight.assign(randn(shape[1]))
    layer.bias.assign(randn(shape[1]))
    check_module(layer, 2 * randn(*shape) + 1)


def test_batchnorm_eval_grad_and_semantics():
    layer = nn.BatchNorm2d(3, momentum=0.1)
    layer.weight.assign(randn(3))
    x = 3 * randn(4, 3, 2, 2) + 2
    layer(x)  # one training step moves the running statistics
    mean, var = x.astype(np.float64).mean(axis=(0, 2, 3)), x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var, rtol=1e-5)
    layer.eval()
    y = layer(x)  # eval: running statistics, nothing updated, nothing saved
    np.testing.assert_allclose(y, bn64(x.astype(np.float64), layer.weight.data, layer.bias.data, 1e-5,
                                       layer.running_mean.astype(np.float64), layer.running_var.astype(np.float64)),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="no saved forward"):
        layer.backward(y)
    with nn.enable_grad():
        check_module(layer, x)  # frozen statistics: gradient of an affine map


def test_batchnorm_matches_torch_running_stats():
    torch = pytest.importorskip("torch")
    layer = nn.BatchNorm2d(3)
    ref = torch.nn.BatchNorm2d(3)
    for _ in range(3):
        x = randn(5, 3, 4, 4) * 2 + 1
        y = layer(x)
        yt = ref(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(y, yt, atol=1e-5)
    np.testing.assert_allclose(layer.running_mean, ref.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(layer.running_var, ref.running_var.numpy(), atol=1e-5)


def test_batchnorm_single_value_per_channel_rejected():
    with pytest.raises(ValueError, match="more than one value"):
        nn.BatchNorm1d(3)(randn(1, 3))


@pytest.mark.parametrize("cls,k,s,p", [
    (nn.MaxPool2d, 2, 2, 0), (nn.MaxPool2d, 3, 2, 1), (nn.MaxPool2d, (2, 3), (1, 2), (1, 1)),
    (nn.AvgPool2d, 2, 2, 0), (nn.AvgPool2d, 3, 1, 1), (nn.AvgPool2d, (3, 2), (2, 1), (1, 0)),
])
def test_pooling(cls, k, s, p):
    check_module(cls(k, s, p), randn(2, 3, 7, 6))


def test_avgpool_count_exclude_pad_and_ceil_mode():
    x = randn(1, 2, 5, 5)
    layer = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
    check_module(layer, x)
    m = nn.MaxPool2d(2, 2, ceil_mode=True)
    y = m(x)
    assert y.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(y, pool64(x.astype(np.float64), (2, 2), (2, 2), (0, 0), "max", 3, 3))
    assert nn.MaxPool2d(2, 2, ceil_mode=True)(randn(1, 1, 1, 1)).shape == (1, 1, 1, 1)


def test_pooling_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = randn(2, 3, 9, 8)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(nn.MaxPool2d(3, 2, 1, ceil_mode=True)(x), F.max_pool2d(xt, 3, 2, 1, ceil_mode=True).numpy())
    np.testing.assert_allclose(nn.AvgPool2d(3, 2, 1, ceil_mode=True)(x),
                               F.avg_pool2d(xt, 3, 2, 1, ceil_mode=True).numpy(), atol=1e-6)
    np.testing.assert_allclose(nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x),
                               F.avg_pool2d(xt, 3, 2, 1, count_include_pad=False).numpy(), atol=1e-6)


def test_global_avg_pool_relu_flatten():
    check_module(nn.GlobalAvgPool2d(), randn(3, 4, 5, 3))
    x = randn(2, 3, 4)
    x[np.abs(x) < 0.05] = 0.5  # stay away from the kink
    check_module(nn.ReLU(), x)
    check_module(nn.Flatten(), randn(2, 3, 2, 2))


def test_dropout_seeded_and_eval_identity():
    x = randn(50, 40)
    a, b = nn.Dropout(0.3, seed=7), nn.Dropout(0.3, seed=7)
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)
    kept = ya != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(ya[kept], x[kept] / 0.7, rtol=1e-6)
    g = a.backward(np.ones_like(x))
    np.testing.assert_allclose(g, kept / 0.7, rtol=1e-6)
    a.eval()
    np.testing.assert_array_equal(a(x), x)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("n,k", [(1, 2), (5, 3), (7, 10)])
def test_cross_entropy(eps, n, k):
    z = randn(n, k) * 3
    labels = rng.integers(0, k, n)
    loss_fn = nn.CrossEntropyLoss(eps)
    loss = loss_fn(z, labels)
    assert isinstance(loss, float)
    z64 = z.astype(np.float64)
    assert abs(loss - cross_entropy64(z64, labels, eps)) < 1e-6
    g = loss_fn.backward()
    num = numgrad(lambda: cross_entropy64(z64, labels, eps), z64)
    np.testing.assert_allclose(g, num, atol=1e-6)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    z, labels = randn(6, 5), rng.integers(0, 5, 6)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(labels), label_smoothing=0.2)
    assert abs(nn.CrossEntropyLoss(0.2)(z, labels) - ref.item()) < 1e-5


def test_cross_entropy_large_logits_stable():
    z = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss_fn = nn.CrossEntropyLoss()
    assert loss_fn(z, [0]) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(loss_fn.backward()))


# ---- bad inputs -------------------------------------------------------------------------

def test_bad_inputs_layers():
    with pytest.raises(ValueError, match=r"\[fnl.nn.Linear\] input must have 3 features"):
        nn.Linear(3, 2)(randn(4, 5))
    with pytest.raises(TypeError, match="real numbers"):
        nn.Linear(3, 2)(np.ones((2, 3), dtype=bool))
    with pytest.raises(TypeError, match="real numbers"):
        nn.Linear(3, 2)(np.ones((2, 3), dtype=complex))
    with pytest.raises(ValueError, match="empty"):
        nn.Linear(3, 2)(np.ones((0, 3), np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        nn.BatchNorm1d(2)(np.array([[np.nan, 1], [2, 3]], np.float32))
    with pytest.raises(ValueError, match="4 dimensions"):
        nn.Conv2d(3, 2, 3)(randn(3, 5, 5))
    with pytest.raises(ValueError, match="3 channels"):
        nn.Conv2d(3, 2, 3)(randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="4 channels"):
        nn.BatchNorm2d(4)(randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nn.MaxPool2d(3)(randn(1, 1, 2, 2))
    with pytest.raises(ValueError, match="padding must be at most"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 1, 0)
    with pytest.raises(ValueError, match="rank"):
        nn.FactorizedConv2d(1, 1, 3, 0)
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(2, momentum=2)
    with pytest.raises(RuntimeError, match="no saved forward"):
        nn.Linear(2, 2).backward(randn(1, 2))


def test_bad_inputs_loss():
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        loss_fn(randn(2, 3), [0, 3])
    with pytest.raises(ValueError, match=r"labels must be in"):
        loss_fn(randn(2, 3), [-1, 0])
    with pytest.raises(TypeError, match="labels must hold integers"):
        loss_fn(randn(2, 3), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        loss_fn(randn(2, 3), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or inf"):
        loss_fn(np.array([[np.inf, 0]], np.float32), [0])
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(1.5)
    with pytest.raises(RuntimeError, match="call the loss"):
        nn.CrossEntropyLoss().backward()


def test_bad_inplace_gradient_buffers():
    layer = nn.Linear(3, 2)
    layer(randn(2, 3))
    layer.weight.grad = np.zeros((2, 3), np.float64)
    with pytest.raises(TypeError, match="weight.grad is updated in place and must be native float32"):
        layer.backward(randn(2, 2))
    layer(randn(2, 3))
    layer.weight.grad = np.zeros((3, 2), np.float32).T
    with pytest.raises(ValueError, match="C-contiguous"):
        layer.backward(randn(2, 2))
    layer(randn(2, 3))
    g = np.zeros((2, 3), np.float32)
    g.flags.writeable = False
    layer.weight.grad = g
    with pytest.raises(ValueError, match="writeable"):
        layer.backward(randn(2, 2))
