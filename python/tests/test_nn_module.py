"""The module protocol: parameters, modes, zero_grad, state dicts (incl. changed ranks), repr."""
import numpy as np
import pytest

import fnl
import fnl.models
import fnl.nn as nn
from fnl.factorization import factorize


def small_net(seed=0):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False, seed=seed), nn.BatchNorm2d(4), nn.ReLU(),
        nn.FactorizedConv2d(4, 6, 3, rank=3, padding=1, seed=seed), nn.BatchNorm2d(6), nn.ReLU(),
        nn.GlobalAvgPool2d(), nn.FactorizedLinear(6, 5, rank=2, depth=1, seed=seed), nn.ReLU(), nn.Linear(5, 3, seed=seed),
    )


def test_named_parameters_and_counts():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    assert names[:3] == ["0.weight", "1.weight", "1.bias"]
    assert "3.U" in names and "3.V" in names and "7.middle.0" in names
    assert net.num_parameters() == sum(p.size for p in net.parameters())
    groups = net.factor_groups()
    assert len(groups) == 2
    assert groups[0].kind == "conv" and groups[0].dense_shape == (6, 4, 3, 3)
    assert groups[1].kind == "linear" and len(groups[1].middle) == 1
    assert groups[0].U is net[3].U  # the same Parameter objects the layer uses


def test_train_eval_and_zero_grad():
    net = small_net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    x = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype(np.float32)
    y = net(x)
    net.backward(np.ones_like(y))
    assert any(np.any(p.grad != 0) for p in net.parameters())
    before = [p.grad.copy() for p in net.parameters()]
    net(x)
    net.backward(np.ones_like(y))  # gradients accumulate
    for b, p in zip(before, net.parameters()):
        np.testing.assert_allclose(p.grad, 2 * b, rtol=1e-4, atol=1e-6)
    ids = [id(p.grad) for p in net.parameters()]
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())
    assert ids == [id(p.grad) for p in net.parameters()]  # in place


def test_no_grad_saves_nothing():
    net = small_net()
    x = np.ones((2, 1, 4, 4), np.float32)
    with nn.no_grad():
        y = net(x)
    with pytest.raises(RuntimeError, match="no saved forward"):
        net.backward(np.ones_like(y))


def test_state_dict_round_trip():
    a, b = small_net(0), small_net(1)
    x = np.random.default_rng(1).standard_normal((3, 1, 5, 5)).astype(np.float32)
    a(x)  # move running statistics
    sd = a.state_dict()
    assert "1.running_mean" in sd and "3.factor_ranks" in sd
    np.testing.assert_array_equal(sd["7.factor_ranks"], [2, 2])
    b.load_state_dict(sd)
    a.eval(); b.eval()
    np.testing.assert_array_equal(a(x), b(x))
    sd["0.weight"][:] = 0  # copies, not views
    assert np.any(a[0].weight.data != 0)


def test_state_dict_changed_ranks_load_back():
    a, b = small_net(0), small_net(1)
    # a's factorized layers get other ranks (e.g. after rank adaptation)
    a[3].resize([5])
    a[3].U.assign(np.random.default_rng(2).standard_normal(a[3].U.shape))
    a[3].V.assign(np.random.default_rng(3).standard_normal(a[3].V.shape))
    a[7].resize([4, 3])
    for p in (a[7].U, a[7].V, a[7].middle[0]):
        p.assign(np.random.default_rng(4).standard_normal(p.shape))
    sd = a.state_dict()
    U_obj = b[3].U
    b.load_state_dict(sd)
    assert b[3].ranks == [5] and b[7].ranks == [4, 3]
    assert b[3].U is U_obj and b[3].U.grad.shape == b[3].U.shape
    x = np.random.default_rng(5).standard_normal((3, 1, 5, 5)).astype(np.float32)
    a.eval(); b.eval()
    np.testing.assert_array_equal(a(x), b(x))
    # without factor_ranks entries the ranks are inferred from the arrays
    sd2 = {k: v for k, v in sd.items() if not k.endswith("factor_ranks")}
    c = small_net(2)
    c.load_state_dict(sd2)
    assert c[7].ranks == [4, 3]


def test_load_state_dict_errors():
    net = small_net()
    sd = net.state_dict()
    bad = dict(sd)
    del bad["0.weight"]
    with pytest.raises(KeyError, match="missing"):
        net.load_state_dict(bad)
    missing, unexpected = net.load_state_dict({**sd, "extra": np.zeros(1)}, strict=False)
    assert unexpected == ["extra"] and missing == []
    bad = dict(sd)
    bad["9.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="9.weight has shape"):
        net.load_state_dict(bad)
    with pytest.raises(TypeError):
        net.load_state_dict([1, 2])


def test_repr_shows_ranks_and_compression():
    net = small_net()
    text = repr(net)
    assert "FactorizedConv2d(4, 6, kernel_size=(3, 3)" in text
    assert "rank=3, params=" in text and "depth=1" in text
    assert "%" in net.summary()
    model = factorize(fnl.models.resnet20(10, 1, width=0.5, seed=0), rank_scale=0.25, seed=0)
    assert "factorized layers" in model.summary()
    assert "parameters:" in str(model.factorization_report)
