"""The canonical training loop of the README / issue 4, exactly as written there, on real data.

A low-rank ResNet-20 (rank-scale 0.1, spectral initialization, Frobenius decay) trains on a
seeded subset of the scikit-learn digits (8x8 grey images, 10 classes) for a few epochs; its
test accuracy must rise well above chance (10%). The threshold is loose (the subset is small
and the run short) but fails when learning is broken (wrong gradients, a no-op optimizer,
a broken decay or factorization).
"""
import numpy as np
import pytest

import fnl
import fnl.data

pytest.importorskip("sklearn")


def test_canonical_loop_learns_digits():
    ds = fnl.data.load_dataset("digits")
    rng = np.random.default_rng(0)
    train = rng.permutation(len(ds.y_train))[:640]
    x_train, y_train = ds.x_train[train], ds.y_train[train]
    x_test, y_test = ds.x_test[:300], ds.y_test[:300]
    assert x_train.dtype == np.float32 and x_train.shape[1:] == (1, 8, 8)

    def batches(epoch):
        order = np.random.default_rng(epoch).permutation(len(y_train))
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            yield x_train[idx], y_train[idx]

    # --- the canonical loop, as in the issue -------------------------------------------
    model = fnl.models.resnet20(num_classes=10, in_channels=1)
    model = fnl.factorize(model, rank_scale=0.1, init="spectral")
    opt = fnl.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-4, decay="frobenius")
    loss_fn = fnl.nn.CrossEntropyLoss()
    losses = []
    for epoch in range(6):
        for xb, yb in batches(epoch):
            model.train()
            loss = loss_fn(model(xb), yb)
            model.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            losses.append(loss)
    model.eval(); logits = model(x_test)
    # -------------------------------------------------------------------------------------

    assert all(isinstance(v, float) and np.isfinite(v) for v in losses)
    assert logits.shape == (len(y_test), 10) and logits.dtype == np.float32
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y_test))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert accuracy >= 0.5, f"test accuracy {accuracy:.2%} after 6 epochs (chance 10%)"
    # the layers really are factorized
    assert any(isinstance(m, fnl.nn.FactorizedConv2d) for m in model.modules())
