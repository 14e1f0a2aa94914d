"""Models: shapes for small grey and colour inputs, and whole-model gradient checks."""
import numpy as np
import pytest

import fnl
import fnl.models
import fnl.nn as nn
from fnl.factorization import factorize
from _nn_reference import cross_entropy64, reference


@pytest.mark.parametrize("build,params", [(fnl.models.resnet20, 272_474), (fnl.models.resnet32, 466_906)])
def test_resnet_parameter_counts(build, params):
    assert build(10, 3).num_parameters() == params
    # option A shortcuts: the CIFAR ResNet-20 of the paper's code (0.27M parameters)
    assert fnl.models.resnet20(10, 3, shortcut="pad").num_parameters() == 269_722


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 32, 32), (1, 3, 7, 9)])
def test_resnet_any_input(shape):
    model = fnl.models.resnet20(num_classes=10, in_channels=shape[1], width=0.25, seed=0)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    model.train() if shape[0] > 1 else model.eval()
    with nn.enable_grad():
        y = model(x)
        assert y.shape == (shape[0], 10)
        assert model.backward(np.ones_like(y)).shape == shape


def test_resnet_depths_and_bad_args():
    assert fnl.models.resnet56(5, 1, width=0.25).depth == 56
    assert fnl.models.resnet110(5, 1, width=0.125).depth == 110
    with pytest.raises(ValueError, match="6n \\+ 2"):
        fnl.models.resnet(21)
    with pytest.raises(ValueError, match="in_channels"):
        fnl.models.resnet20(10, 0)
    with pytest.raises(ValueError, match="width"):
        fnl.models.resnet20(10, 3, width=0)


def test_vgg_builder():
    model = fnl.models.vgg("vgg11", num_classes=7, in_channels=1, width=0.125, hidden=[16], dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7)
    assert model.backward(np.ones_like(y)).shape == x.shape
    small = fnl.models.vgg([8, "M", 16, "M"], num_classes=3, in_channels=3, seed=0)
    assert small(np.ones((2, 3, 32, 32), np.float32)).shape == (2, 3)
    with pytest.raises(ValueError, match="cfg"):
        fnl.models.vgg("vgg99")


def _whole_model_check(model, x, labels, directions=3, coords=6, rtol=2e-3):
    """fnl gradients of the cross-entropy of a whole model (training mode, batch statistics)
    against float64 central differences of the float64 reference model, along random
    directions over all parameters and on single coordinates."""
    rng = np.random.default_rng(0)
    loss_fn = nn.CrossEntropyLoss(0.1)
    model.train()
    model.zero_grad()
    loss = loss_fn(model(x), labels)
    dx = model.backward(loss_fn.backward())
    params = dict(model.named_parameters())
    P = {n: p.data.astype(np.float64) for n, p in params.items()}
    x64 = x.astype(np.float64)
    L = lambda: cross_entropy64(reference(model, x64, P), labels, 0.1)
    assert abs(L() - loss) < 1e-4 * max(1, abs(loss))
    eps = 1e-5
    for _ in range(directions):
        D = {n: rng.standard_normal(v.shape) for n, v in P.items()}
        dxd = rng.standard_normal(x.shape)
        analytic = sum(float(np.sum(params[n].grad * D[n])) for n in P) + float(np.sum(dx * dxd))
        for n in P:
            P[n] += eps * D[n]
        x64 += eps * dxd
        lp = L()
        for n in P:
            P[n] -= 2 * eps * D[n]
        x64 -= 2 * eps * dxd
        lm = L()
        for n in P:
            P[n] += eps * D[n]
        x64 += eps * dxd
        numeric = (lp - lm) / (2 * eps)
        assert abs(analytic - numeric) <= rtol * max(abs(numeric), 1e-2), (analytic, numeric)
    names = list(P)
    for i in range(coords):
        n = names[rng.integers(len(names))]
        flat = P[n].reshape(-1)
        j = rng.integers(flat.size)
        old = flat[j]
        flat[j] = old + eps; lp = L()
        flat[j] = old - eps; lm = L()
        flat[j] = old
        numeric = (lp - lm) / (2 * eps)
        assert abs(params[n].grad.reshape(-1)[j] - numeric) <= 2e-3 * max(1e-2, abs(numeric)) + 1e-5, n


@pytest.mark.parametrize("shortcut", ["projection", "pad"])
def test_tiny_resnet_whole_model_gradients(shortcut):
    model = fnl.models.resnet(8, num_classes=3, in_channels=2, width=0.25, shortcut=shortcut, seed=1)
    x = np.random.default_rng(2).standard_normal((4, 2, 6, 6)).astype(np.float32)
    _whole_model_check(model, x, np.array([0, 1, 2, 1]))


def test_tiny_factorized_resnet_whole_model_gradients():
    dense = fnl.models.resnet(8, num_classes=3, in_channels=1, width=0.5, seed=3)
    model = factorize(dense, rank_scale=0.3, overcomplete=None, seed=4)
    x = np.random.default_rng(5).standard_normal((4, 1, 5, 5)).astype(np.float32)
    _whole_model_check(model, x, np.array([2, 0, 1, 1]))


def test_tiny_deep_factorized_vgg_whole_model_gradients():
    model = fnl.models.vgg([4, "M", 6, 6], num_classes=3, in_channels=1, hidden=[5], seed=0)
    model = factorize(model, overcomplete="deep", init="independent", seed=1)
    for g in model.factor_groups():
        for m in g.middle:
            m.assign(np.eye(m.shape[0]) + 0.2 * np.random.default_rng(0).standard_normal(m.shape))
    x = np.random.default_rng(6).standard_normal((3, 1, 5, 5)).astype(np.float32)
    _whole_model_check(model, x, np.array([0, 1, 2]))
