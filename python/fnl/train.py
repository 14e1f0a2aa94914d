"""Training helpers over NumPy arrays: batches, fit, evaluate and per-layer diagnostics.

The loop ``fit`` runs is the canonical one (README):

    model.train(); loss = loss_fn(model(xb), yb); model.zero_grad()
    model.backward(loss_fn.backward()); optimizer.step()

and logs, per epoch, the mean training loss and accuracy, the validation loss and accuracy
(when validation data is given) and, per layer, ||W||_F, ||W||_* and the effective step size
lr / ||W||_F^2 (W = U M V^T for factorized layers, computed from the factors).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from . import functional as F
from .nn.conv import Conv2d
from .nn.linear import Linear
from .nn.loss import CrossEntropyLoss
from .nn.module import Module, no_grad


def iterate_batches(x, y, batch_size: int = 128, shuffle: bool = True, seed=None,
                    drop_last: bool = False) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(x[idx], y[idx]) batches of ``batch_size`` (the last one smaller unless drop_last),
    in a seeded random order when ``shuffle``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"[fnl.train.iterate_batches] x and y must have the same length, got {len(x)} and {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"[fnl.train.iterate_batches] batch_size must be an int >= 1, got {batch_size!r}")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    stop = len(x) - (len(x) % batch_size if drop_last else 0)
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield np.ascontiguousarray(x[idx], dtype=np.float32), y[idx]


def _current_lr(optimizer) -> Optional[float]:
    lr = getattr(optimizer, "lr", None)
    if lr is None:
        groups = getattr(optimizer, "param_groups", None)
        if groups:
            g = groups[0]
            lr = g.get("lr") if isinstance(g, dict) else getattr(g, "lr", None)
    try:
        return None if lr is None else float(lr)
    except (TypeError, ValueError):
        return None


def layer_stats(model: Module, lr: Optional[float] = None) -> List[Dict]:
    """For every Conv2d/Linear and factorized layer: name, kind, ranks (None when dense),
    Frobenius norm, nuclear norm and (with lr) the effective step size lr / ||W||_F^2.
    Factorized layers are measured from their factors (W is never formed)."""
    out = []
    for name, m in model.named_modules():
        if hasattr(m, "factor_group"):
            g = m.factor_group()
            U, V = g.U.data, g.V.data
            mid = [p.data for p in g.middle] or None
            row = {"name": name, "kind": g.kind, "ranks": m.ranks}
        elif isinstance(m, (Conv2d, Linear)):
            W = F.conv_to_matrix(m.weight.data) if isinstance(m, Conv2d) else m.weight.data
            U, V, mid = W, np.eye(W.shape[1], dtype=np.float32), None
            row = {"name": name, "kind": "conv" if isinstance(m, Conv2d) else "linear", "ranks": None}
        else:
            continue
        row["frobenius"] = float(F.frobenius_norm(U, V, mid))
        row["nuclear"] = float(F.nuclear_norm(U, V, mid))
        if lr is not None:
            row["effective_step"] = float(F.effective_step_size(lr, U, V, mid))
        out.append(row)
    return out


def evaluate(model: Module, x, y, loss_fn=None, batch_size: int = 256) -> Dict[str, float]:
    """Mean loss and accuracy of ``model`` in evaluation mode over (x, y), batched, saving
    nothing for backward. The model's mode is restored afterwards."""
    loss_fn = loss_fn or CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    try:
        with no_grad():
            for xb, yb in iterate_batches(x, y, batch_size, shuffle=False):
                logits = model(xb)
                total += loss_fn(logits, yb) * len(yb)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
                count += len(yb)
    finally:
        model.train(was_training)
    return {"loss": total / count, "accuracy": correct / count}


def train_step(model: Module, optimizer, loss_fn, xb, yb) -> Tuple[float, int]:
    """One step of the canonical loop; returns (loss, number of correct predictions)."""
    model.train()
    logits = model(xb)
    loss = loss_fn(logits, yb)
    if not math.isfinite(loss):
        raise FloatingPointError(f"[fnl.train] the loss is {loss}: training diverged")
    model.zero_grad()
    model.backward(loss_fn.backward())
    optimizer.step()
    return loss, int(np.sum(np.argmax(logits, axis=1) == np.asarray(yb)))


def fit(model: Module, optimizer, x, y, epochs: int = 1, batch_size: int = 128, loss_fn=None,
        validation: Optional[Tuple[np.ndarray, np.ndarray]] = None, scheduler=None, seed=None,
        log: Optional[Callable[[str], None]] = print, layer_diagnostics: bool = True) -> List[Dict]:
    """Trains for ``epochs`` passes over (x, y) in seeded random batches.

    ``scheduler`` (optional) is called after each epoch: ``scheduler.step()`` if it has one,
    else ``scheduler(epoch)``. Returns one dict per epoch: epoch, loss, accuracy, seconds,
    val_loss / val_accuracy (with validation data) and ``layers`` (layer_stats).
    """
    loss_fn = loss_fn or CrossEntropyLoss()
    history = []
    gen = np.random.default_rng(seed)
    for epoch in range(1, int(epochs) + 1):
        start = time.perf_counter()
        total, correct, count = 0.0, 0, 0
        for xb, yb in iterate_batches(x, y, batch_size, True, gen):
            loss, ok = train_step(model, optimizer, loss_fn, xb, yb)
            total += loss * len(yb)
            correct += ok
            count += len(yb)
        row = {"epoch": epoch, "loss": total / count, "accuracy": correct / count,
               "seconds": time.perf_counter() - start}
        if validation is not None:
            ev = evaluate(model, validation[0], validation[1], loss_fn)
            row["val_loss"], row["val_accuracy"] = ev["loss"], ev["accuracy"]
        if layer_diagnostics:
            row["layers"] = layer_stats(model, _current_lr(optimizer))
        if scheduler is not None:
            scheduler.step() if hasattr(scheduler, "step") else scheduler(epoch)
        history.append(row)
        if log is not None:
            msg = f"epoch {epoch}: loss {row['loss']:.4f} acc {row['accuracy']:.3f}"
            if validation is not None:
                msg += f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
            if layer_diagnostics and row["layers"]:
                fro = [l["frobenius"] for l in row["layers"]]
                msg += f" | ||W||_F mean {np.mean(fro):.3g}"
            log(msg + f" ({row['seconds']:.1f}s)")
    return history
