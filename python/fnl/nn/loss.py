"""Softmax cross-entropy with label smoothing (engine kernel).

For logits z (N x K) and integer labels y, with q = (1 - eps) onehot(y) + eps / K:
loss = (1/N) sum_i [logsumexp(z_i) - sum_k q_ik z_ik] (a Python float, reduced in float64)
and dloss/dz = (softmax(z) - q) / N, which ``backward()`` returns.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .module import as_float32


class CrossEntropyLoss:
    def __init__(self, label_smoothing: float = 0.0):
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"[fnl.nn.CrossEntropyLoss] label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self._grad = None

    def __call__(self, logits, labels) -> float:
        return self.forward(logits, labels)

    def forward(self, logits, labels) -> float:
        z = as_float32(logits, "fnl.nn.CrossEntropyLoss", (2,))
        loss, self._grad = _native.cross_entropy(z, labels, self.label_smoothing, True)
        return loss

    def backward(self, grad: float = 1.0) -> np.ndarray:
        """dloss/dlogits of the last forward call, scaled by ``grad``."""
        if self._grad is None:
            raise RuntimeError("[fnl.nn.CrossEntropyLoss.backward] call the loss on logits and labels first")
        g, self._grad = self._grad, None
        if grad != 1.0:
            g *= np.float32(grad)
        return g

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing:g})"
