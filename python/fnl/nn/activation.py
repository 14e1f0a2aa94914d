"""Activations and shape layers: ReLU (engine), Dropout (seeded), Flatten, Identity."""
from __future__ import annotations

import numpy as np

from .. import _native
from . import init as _init
from .module import Module, as_float32


class ReLU(Module):
    """y = max(x, 0); backward passes the gradient where y > 0."""

    def forward(self, x):
        y = _native.relu_forward(as_float32(x, "fnl.nn.ReLU"))
        self._save(y)
        return y

    def backward(self, grad):
        (y,) = self._take("ReLU")
        return _native.relu_backward(as_float32(grad, "fnl.nn.ReLU.backward"), y)


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad):
        return grad


class Flatten(Module):
    """(N, d_1, d_2, ...) -> (N, d_1 d_2 ...)."""

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"[fnl.nn.Flatten] input must have a batch axis, got shape {x.shape}")
        self._save(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        (shape,) = self._take("Flatten")
        return np.asarray(grad).reshape(shape)


class Dropout(Module):
    """Inverted dropout: in training, y = x m / (1 - p) with m ~ Bernoulli(1 - p) drawn from
    the layer's own generator (seeded: reproducible masks); identity in evaluation."""

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"[fnl.nn.Dropout] p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self._gen = _init.rng(seed)

    def forward(self, x):
        x = as_float32(x, "fnl.nn.Dropout")
        if not self.training or self.p == 0:
            self._save(None)
            return x
        mask = (self._gen.random(x.shape, dtype=np.float32) >= self.p).astype(np.float32)
        mask *= 1.0 / (1.0 - self.p)
        self._save(mask)
        return x * mask

    def backward(self, grad):
        (mask,) = self._take("Dropout")
        g = as_float32(grad, "fnl.nn.Dropout.backward")
        return g if mask is None else g * mask

    def extra_repr(self) -> str:
        return f"p={self.p:g}"
