"""Parameters and factor groups: the contract between layers and optimizers.

A Parameter owns a float32, C-contiguous value array ``data`` and a gradient buffer ``grad``
of the same shape; layers write gradients into ``grad`` (accumulating) and optimizers update
``data`` in place, so references held elsewhere (e.g. by a training script) stay valid.

A FactorGroup names the parameters of one factorized weight W = U M_1 ... M_d V^T so that
optimizers can apply Frobenius decay to the product instead of weight decay to each factor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np


class Parameter:
    """A trainable array with its gradient (both float32, C-contiguous)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        arr = np.array(data, dtype=np.float32, order="C", copy=True)
        if arr.size == 0:
            raise ValueError(f"[fnl.nn.Parameter] {name or 'data'} must not be empty")
        self.data = arr
        self.grad = np.zeros_like(arr)
        self.name = name

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    @property
    def size(self) -> int:
        return self.data.size

    def zero_grad(self) -> None:
        self.grad.fill(0.0)

    def assign(self, value) -> None:
        """Copies ``value`` into ``data`` in place (same shape required)."""
        value = np.asarray(value)
        if value.shape != self.data.shape:
            raise ValueError(
                f"[fnl.nn.Parameter] {self.name or 'parameter'} has shape {self.data.shape}, got {value.shape}"
            )
        np.copyto(self.data, value, casting="same_kind")

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape})"


@dataclass
class FactorGroup:
    """The factors of one factorized weight W = U M_1 ... M_d V^T.

    kind is "linear" (W is the (out, in) matrix) or "conv" (W is the (c_out*kh, c_in*kw)
    matrix layout of the kernel); dense_shape is the shape of the dense weight it replaces.
    """

    U: Parameter
    V: Parameter
    middle: List[Parameter] = field(default_factory=list)
    kind: str = "linear"
    dense_shape: Tuple[int, ...] = ()

    def parameters(self) -> List[Parameter]:
        return [self.U, self.V, *self.middle]

    @property
    def dense_params(self) -> int:
        return int(np.prod(self.dense_shape)) if self.dense_shape else self.U.shape[0] * self.V.shape[0]

    @property
    def factorized_params(self) -> int:
        return sum(p.size for p in self.parameters())
