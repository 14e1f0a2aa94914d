"""fnl.train: fit / evaluate / iterate_batches / layer_stats."""
import numpy as np
import pytest

import fnl
import fnl.models
import fnl.nn as nn
from fnl.factorization import factorize
from fnl.train import evaluate, fit, iterate_batches, layer_stats
from test_factorization import PlainSGD, _blobs


def test_iterate_batches_covers_everything_once():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10)
    seen = np.concatenate([yb for _, yb in iterate_batches(x, y, 3, seed=0)])
    assert sorted(seen) == list(range(10))
    assert [len(yb) for _, yb in iterate_batches(x, y, 3, shuffle=False, drop_last=True)] == [3, 3, 3]
    with pytest.raises(ValueError, match="same length"):
        next(iterate_batches(x, y[:5]))
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(x, y, 0))


def test_fit_logs_loss_accuracy_and_layer_norms():
    model = factorize(fnl.models.vgg([8, "M", 8], num_classes=4, in_channels=1, hidden=[8], seed=0), rank_scale=0.5, seed=0)
    opt = PlainSGD(model, lr=0.05)
    x, y = _blobs(96, 0)
    lines = []
    calls = []
    hist = fit(model, opt, x, y, epochs=2, batch_size=32, validation=_blobs(32, 1), seed=0, log=lines.append,
               scheduler=calls.append)
    assert len(hist) == 2 and calls == [1, 2] and len(lines) == 2
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "layers"} <= set(hist[0])
    names = [l["name"] for l in hist[-1]["layers"]]
    assert names == ["conv0", "conv2", "fc0", "classifier"]
    assert hist[-1]["layers"][1]["ranks"] == [model.conv2.rank]
    assert "effective_step" in hist[-1]["layers"][0]  # lr read from the optimizer
    ev = evaluate(model, x, y)
    assert 0 <= ev["accuracy"] <= 1 and model.training


def test_layer_stats_dense_values():
    layer = nn.Linear(4, 3, seed=0)
    model = nn.Sequential(layer)
    (row,) = layer_stats(model, lr=0.1)
    s = np.linalg.svd(layer.weight.data.astype(np.float64), compute_uv=False)
    assert row["frobenius"] == pytest.approx(np.sqrt(np.sum(s ** 2)), rel=1e-5)
    assert row["nuclear"] == pytest.approx(np.sum(s), rel=1e-4)
