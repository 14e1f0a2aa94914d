"""Batch normalization (PyTorch semantics), computed by the engine.

Training: per channel, batch mean and biased variance over (N, *spatial),
y = weight (x - mean) / sqrt(var + eps) + bias, and the running statistics move by
running = (1 - momentum) running + momentum stat (unbiased variance for running_var).
Evaluation: the running statistics instead of the batch's. Backward differentiates through
the batch statistics in training mode and treats the running ones as constants in eval mode.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .module import Module, as_float32
from .parameter import Parameter


class _BatchNorm(Module):
    _buffers = ("running_mean", "running_var")
    _ndims = (4,)
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"[fnl.nn.{name}] num_features must be an int >= 1, got {num_features!r}")
        if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
            raise ValueError(f"[fnl.nn.{name}] eps must be a finite number > 0, got {eps!r}")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
            raise ValueError(f"[fnl.nn.{name}] momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, np.float32), "weight")
        self.bias = Parameter(np.zeros(num_features, np.float32), "bias")
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)

    def forward(self, x):
        return self.forward_act(x)

    def forward_act(self, x, residual=None, relu: bool = False):
        """Batch norm with a fused epilogue, one pass over the data:
        y = act(weight xhat + bias + residual), act = ReLU when ``relu`` else the identity;
        ``residual`` (None or x's shape) is added before the activation (the residual block's
        relu(bn(conv(h)) + shortcut)). ``backward_act`` differentiates the whole expression."""
        name = type(self).__name__
        x = as_float32(x, f"fnl.nn.{name}", self._ndims)
        if x.shape[1] != self.num_features:
            raise ValueError(f"[fnl.nn.{name}] input must have {self.num_features} channels {self._layout}, got shape {x.shape}")
        relu = bool(relu)
        y, mean, invstd = _native.batchnorm_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                                    self.running_var, self.training, self.momentum, self.eps,
                                                    residual, relu)
        self._save(x, mean, invstd, self.training, y if relu else None, residual is not None)
        return y

    def backward(self, grad):
        """The input gradient (after a forward or a ``forward_act`` without residual)."""
        return self.backward_act(grad)[0]

    def backward_act(self, grad):
        """(dx, dresidual) of the last ``forward_act``: the gradient g = grad (masked by
        y > 0 when the ReLU was fused) goes through the normalization to give dx, and is
        itself dresidual (None when no residual was added). Accumulates the weight and bias
        gradients."""
        name = type(self).__name__
        x, mean, invstd, training, y, has_residual = self._take(name)
        g = as_float32(grad, f"fnl.nn.{name}.backward")
        if has_residual and y is None:
            dx, _ = _native.batchnorm_backward(g, x, self.weight.data, mean, invstd, training, self.weight.grad,
                                               self.bias.grad, True, None, False)
            return dx, g
        return _native.batchnorm_backward(g, x, self.weight.data, mean, invstd, training, self.weight.grad,
                                          self.bias.grad, True, y, has_residual)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs."""

    _ndims = (4,)
    _layout = "(N, C, H, W)"
