"""factorize / collapse: ranks, SI exactness at full rank, collapse equivalence, state dicts,
bad inputs, and the canonical training loop (plain SGD written here)."""
import copy

import numpy as np
import pytest

import fnl
import fnl.models
import fnl.nn as nn
from fnl.factorization import collapse, factorize
from fnl.train import evaluate, iterate_batches, layer_stats

rng = np.random.default_rng(7)


def tiny(seed=0, **kw):
    return fnl.models.resnet(8, num_classes=4, in_channels=2, width=0.5, seed=seed, **kw)


def x_small(n=4, c=2, h=6, w=6):
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


def outputs(model, x, train=False):
    model.train(train)
    with nn.no_grad():
        return model(x)


def test_ranks_follow_rank_rule_and_first_last_stay_dense():
    dense = fnl.models.resnet20(10, 1, seed=0)
    model = factorize(dense, rank_scale=0.1, seed=0)
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    rep = model.factorization_report
    assert rep.kept_dense == ["conv1", "fc"]
    for layer in rep.layers:
        assert layer.ranks == [fnl.rank_for(layer.dense_shape, 0.1)]
    assert rep.params_before == dense.num_parameters() and rep.params_after == model.num_parameters()
    assert rep.params_after < 0.25 * rep.params_before
    assert len(model.factor_groups()) == len(rep.layers) == 20
    assert type(dense.layer1[0].conv1) is nn.Conv2d  # not in place by default


def test_target_ratio():
    model, rep = factorize(tiny(), target_ratio=0.3, seed=0, return_report=True)
    assert rep.layer_ratio <= 0.3
    looser = factorize(tiny(), rank_scale=rep.rank_scale * 1.2, seed=0).factorization_report
    assert looser.layer_ratio > rep.layer_ratio or looser.layer_ratio <= 0.3


@pytest.mark.parametrize("form", ["full", "deep", "wide"])
def test_spectral_init_at_full_rank_reproduces_dense_outputs(form):
    dense = tiny(seed=1)
    x = x_small()
    model = factorize(dense, overcomplete=form, init="spectral", seed=2)
    for layer in model.factor_groups():
        if form == "wide":
            assert layer.U.shape[1] == 3 * fnl.rank_for(layer.dense_shape, 1.0)
            assert np.all(np.linalg.norm(layer.U.data, axis=0) > 0)  # no dead columns
        if form == "deep":
            np.testing.assert_array_equal(layer.middle[0].data, np.eye(layer.U.shape[1]))
    for train in (False, True):
        ref = outputs(dense, x, train)
        np.testing.assert_allclose(outputs(model, x, train), ref, atol=2e-4 * np.abs(ref).max(), rtol=1e-3)
    assert model.num_parameters() > dense.num_parameters()


def test_spectral_init_low_rank_is_truncated_svd():
    dense = tiny(seed=3)
    model = factorize(dense, rank_scale=0.25, seed=0)
    layer = model.layer2[0].conv2
    W = fnl.conv_to_matrix(dense.layer2[0].conv2.weight.data).astype(np.float64)
    s = np.linalg.svd(W, compute_uv=False)
    r = layer.rank
    approx = layer.dense_matrix().astype(np.float64)
    assert np.linalg.norm(W - approx) == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-3)
    rep = {l.name: l for l in model.factorization_report.layers}
    assert rep["layer2.0.conv2"].relative_error == pytest.approx(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s ** 2)), rel=1e-3)
    # SI balance: U^T U = V^T V
    assert fnl.factor_balance(layer.U.data, layer.V.data) < 1e-4 * np.linalg.norm(layer.U.data) ** 2


def test_independent_init_is_not_spectral():
    dense = tiny(seed=4)
    model = factorize(dense, rank_scale=0.5, init="independent", seed=1)
    layer = model.layer1[0].conv2
    W = fnl.conv_to_matrix(dense.layer1[0].conv2.weight.data)
    assert np.linalg.norm(W - layer.dense_matrix()) > 0.5 * np.linalg.norm(W)
    again = factorize(dense, rank_scale=0.5, init="independent", seed=1)
    np.testing.assert_array_equal(again.layer1[0].conv2.U.data, layer.U.data)  # seeded


@pytest.mark.parametrize("kw", [dict(rank_scale=0.3), dict(overcomplete="deep", init="independent"),
                                dict(overcomplete="wide")])
def test_collapse_gives_same_outputs(kw):
    model = factorize(tiny(seed=5), seed=3, **kw)
    for g in model.factor_groups():  # train-like perturbation of the factors
        for p in g.parameters():
            p.data += 0.05 * rng.standard_normal(p.shape).astype(np.float32)
    x = x_small()
    dense = collapse(model)
    assert not dense.factor_groups()
    assert all(type(m) in (nn.Conv2d, nn.Linear) for m in dense.modules() if "Conv" in type(m).__name__)
    for train in (False, True):
        ref = outputs(model, x, train)
        np.testing.assert_allclose(outputs(dense, x, train), ref, atol=2e-4 * np.abs(ref).max(), rtol=1e-3)
    if "overcomplete" in kw:
        assert dense.num_parameters() < model.num_parameters()
    assert dense.factorization_report.params_after == dense.num_parameters()


def test_factorized_linear_layers_in_vgg():
    model = fnl.models.vgg([4, "M", 8], num_classes=3, in_channels=1, hidden=[12, 10], seed=0)
    f = factorize(model, rank_scale=0.5, seed=0)
    assert isinstance(f.fc0, nn.FactorizedLinear) and isinstance(f.fc1, nn.FactorizedLinear)
    assert type(f.conv0) is nn.Conv2d and type(f.classifier) is nn.Linear
    full = factorize(model, overcomplete="full", seed=0)
    x = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    ref = outputs(model, x)
    np.testing.assert_allclose(outputs(full, x), ref, atol=1e-4 * max(1, np.abs(ref).max()))


def test_state_dict_across_rank_changes():
    a = factorize(tiny(seed=6), rank_scale=0.5, seed=0)
    b = factorize(tiny(seed=7), rank_scale=0.2, seed=0)
    b.load_state_dict(a.state_dict())
    x = x_small()
    np.testing.assert_array_equal(outputs(a, x), outputs(b, x))
    assert [g.U.shape for g in b.factor_groups()] == [g.U.shape for g in a.factor_groups()]


def test_pretrained_conversion_and_inplace():
    dense = tiny(seed=8)
    same = factorize(dense, rank_scale=0.2, inplace=True, seed=0)
    assert same is dense and isinstance(dense.layer1[0].conv1, nn.FactorizedConv2d)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        factorize(tiny(), rank_scale=0.1, target_ratio=0.2)
    with pytest.raises(ValueError, match="exactly one"):
        factorize(tiny())
    with pytest.raises(ValueError, match="exactly one"):
        factorize(tiny(), rank_scale=0.1, overcomplete="full")
    with pytest.raises(ValueError, match="init must be"):
        factorize(tiny(), rank_scale=0.1, init="svd")
    with pytest.raises(ValueError, match="overcomplete must be"):
        factorize(tiny(), overcomplete="huge")
    with pytest.raises(ValueError, match="rank_scale must be a finite number > 0"):
        factorize(tiny(), rank_scale=-1)
    with pytest.raises(ValueError, match="below the rank-1 ratio"):
        factorize(tiny(), target_ratio=1e-6)
    with pytest.raises(TypeError, match="fnl.nn.Module"):
        factorize("resnet", rank_scale=0.1)
    with pytest.raises(TypeError, match="fnl.nn.Module"):
        collapse(None)
    with pytest.raises(ValueError, match="no Conv2d/Linear layer"):
        factorize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), rank_scale=0.5)


def _blobs(n, seed):
    """A learnable 4-class task on 8x8 grey images: which quadrant holds a bright blob."""
    g = np.random.default_rng(seed)
    y = g.integers(0, 4, n)
    x = 0.3 * g.standard_normal((n, 1, 8, 8)).astype(np.float32)
    for q in range(4):
        r, c = divmod(q, 2)
        x[y == q, 0, 4 * r + 1:4 * r + 3, 4 * c + 1:4 * c + 3] += 1.5
    return x, y


class PlainSGD:
    """w -= lr * (g + wd * w) with momentum (a stand-in for fnl.optim in these tests)."""

    def __init__(self, model, lr, momentum=0.9, weight_decay=0.0):
        self.params, self.lr, self.mu, self.wd = model.parameters(), lr, momentum, weight_decay
        self.buf = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        for p, b in zip(self.params, self.buf):
            b *= self.mu
            b += p.grad + self.wd * p.data
            p.data -= self.lr * b


def test_canonical_loop_learns():
    model = fnl.models.resnet20(num_classes=4, in_channels=1, width=0.25, seed=0)
    model = factorize(model, rank_scale=0.1, init="spectral", seed=0)
    opt = PlainSGD(model, lr=0.1, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x, y = _blobs(320, 0)
    x_test, y_test = _blobs(200, 1)
    params = [p.data for p in model.parameters()]
    losses = []
    for epoch in range(2):
        for xb, yb in iterate_batches(x, y, 32, seed=epoch):
            model.train()
            loss = loss_fn(model(xb), yb)
            assert isinstance(loss, float)
            model.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            losses.append(loss)
    assert all(a is p.data for a, p in zip(params, model.parameters()))  # updated in place
    model.eval()
    logits = model(x_test)
    acc = float(np.mean(np.argmax(logits, 1) == y_test))
    assert acc > 0.6, (acc, losses[::8])
    assert evaluate(model, x_test, y_test)["accuracy"] == pytest.approx(acc)
    stats = layer_stats(model, lr=0.1)
    assert len(stats) == 22 and all(s["nuclear"] >= s["frobenius"] * (1 - 1e-5) > 0 for s in stats)
    assert all(s["effective_step"] == pytest.approx(0.1 / s["frobenius"] ** 2, rel=1e-4) for s in stats)
