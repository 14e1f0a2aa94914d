"""Fully connected layers: dense and factorized, computed by the engine (BLAS).

    Linear:            y = x W^T + b,                     W: (out_features, in_features)
    FactorizedLinear:  y = x (U M_1 ... M_d V^T)^T + b,   U: (out, r), M_j: (r, r), V: (in, r)

The factorized layer never forms W: the batch runs through x V, then the inner matrices,
then U^T. Inputs are (N, in_features) (more leading axes are flattened and restored).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _native
from . import init as _init
from .factorized import FactorizedMixin
from .module import Module, as_float32
from .parameter import Parameter


def _check_features(where, **dims):
    for name, d in dims.items():
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"[fnl.nn.{where}] {name} must be an int >= 1, got {d!r}")


def _flatten(x: np.ndarray, features: int, where: str) -> np.ndarray:
    if x.shape[-1] != features:
        raise ValueError(f"[fnl.nn.{where}] input must have {features} features in its last axis, got shape {x.shape}")
    return x.reshape(-1, features)


class Linear(Module):
    """y = x W^T + b with W Kaiming-normal (std sqrt(2 / in_features)) and b = 0."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, seed=None):
        super().__init__()
        _check_features("Linear", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        gen = _init.rng(seed)
        self.weight = Parameter(_init.kaiming_normal((out_features, in_features), in_features, gen), "weight")
        self.bias = Parameter(np.zeros(out_features, np.float32), "bias") if bias else None

    def forward(self, x):
        x = as_float32(x, "fnl.nn.Linear")
        shape = x.shape
        x2 = _flatten(x, self.in_features, "Linear")
        y = _native.linear_forward(x2, self.weight.data, None if self.bias is None else self.bias.data)
        self._save(x2, shape)
        return y.reshape(shape[:-1] + (self.out_features,))

    def backward(self, grad):
        x2, shape = self._take("Linear")
        g = as_float32(grad, "fnl.nn.Linear.backward").reshape(-1, self.out_features)
        dx = _native.linear_backward(g, x2, self.weight.data, self.weight.grad,
                                     None if self.bias is None else self.bias.grad, True)
        return dx.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class FactorizedLinear(FactorizedMixin, Module):
    """y = x (U M_1 ... M_d V^T)^T + b: a rank-r factorized fully connected layer.

    rank may exceed min(in, out) (the overcomplete "wide" form); depth d adds inner r x r
    matrices initialized to the identity (the "deep" form). Factors start as independent
    Kaiming-normal layers: V with std sqrt(2 / in_features) (x -> r), U with std sqrt(2 / r)
    (r -> out); use ``from_dense`` (or fnl.factorize) for spectral initialization.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, depth: int = 0, bias: bool = True,
                 seed=None):
        super().__init__()
        _check_features("FactorizedLinear", in_features=in_features, out_features=out_features, rank=rank)
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 0 <= depth <= 64:
            raise ValueError(f"[fnl.nn.FactorizedLinear] depth must be an int in 0..64, got {depth!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._rows, self._cols, self._kind = self.out_features, self.in_features, "linear"
        self._dense_shape = (self.out_features, self.in_features)
        gen = _init.rng(seed)
        r = int(rank)
        self.U = Parameter(_init.kaiming_normal((out_features, r), r, gen), "U")
        self.V = Parameter(_init.kaiming_normal((in_features, r), in_features, gen), "V")
        self.middle = [Parameter(np.eye(r, dtype=np.float32), f"middle.{j}") for j in range(int(depth))]
        self.bias = Parameter(np.zeros(out_features, np.float32), "bias") if bias else None

    @classmethod
    def from_dense(cls, layer: Linear, rank: int, depth: int = 0, init: str = "spectral", seed=None) -> "FactorizedLinear":
        """Factorizes a Linear layer: "spectral" takes the rank-r truncated SVD of its weight
        (U = P sqrt(S), V = Q sqrt(S); exact when rank >= min(m, n)), "independent" draws
        fresh Kaiming factors. The bias is copied; inner matrices are identities."""
        if not isinstance(layer, Linear):
            raise TypeError(f"[fnl.nn.FactorizedLinear.from_dense] layer must be a Linear, got {type(layer).__name__}")
        gen = _init.rng(seed)
        new = cls(layer.in_features, layer.out_features, rank, depth, layer.bias is not None, seed=gen)
        if init == "spectral":
            from .. import functional as F

            U, V = F.spectral_init(layer.weight.data, int(rank))
            U, V = _init.spread_factors(U, V, min(layer.weight.shape), gen)
            new.U.assign(U)
            new.V.assign(V)
        elif init != "independent":
            raise ValueError(f"[fnl.nn.FactorizedLinear.from_dense] init must be 'spectral' or 'independent', got {init!r}")
        if layer.bias is not None:
            new.bias.assign(layer.bias.data)
        return new

    def to_dense(self) -> Linear:
        """The equivalent Linear layer (W = U M_1 ... M_d V^T, same bias)."""
        out = Linear(self.in_features, self.out_features, self.bias is not None, seed=0)
        out.weight.assign(self.dense_matrix())
        if self.bias is not None:
            out.bias.assign(self.bias.data)
        out.training = self.training
        return out

    def forward(self, x):
        x = as_float32(x, "fnl.nn.FactorizedLinear")
        shape = x.shape
        x2 = _flatten(x, self.in_features, "FactorizedLinear")
        y = _native.lowrank_linear_forward(x2, self.U.data, self.V.data, self._middle_data(),
                                           None if self.bias is None else self.bias.data)
        self._save(x2, shape)
        return y.reshape(shape[:-1] + (self.out_features,))

    def backward(self, grad):
        x2, shape = self._take("FactorizedLinear")
        g = as_float32(grad, "fnl.nn.FactorizedLinear.backward").reshape(-1, self.out_features)
        dx = _native.lowrank_linear_backward(g, x2, self.U.data, self.V.data, self._middle_data(),
                                             self.U.grad, self.V.grad, [m.grad for m in self.middle],
                                             None if self.bias is None else self.bias.grad, True)
        return dx.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self._factor_repr()}, bias={self.bias is not None}"
