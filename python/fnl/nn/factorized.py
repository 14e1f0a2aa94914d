"""Shared machinery of the factorized layers W = U M_1 ... M_d V^T (linear and conv)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .. import functional as F
from .module import Module
from .parameter import FactorGroup, Parameter


class FactorizedMixin:
    """U (rows x r_0), middle [M_1 (r_0 x r_1), ...], V (cols x r_d) held as Parameters.

    Subclasses set ``self._rows, self._cols`` (the dense matrix layout), ``self._kind``
    ("linear" or "conv") and ``self._dense_shape``.
    """

    U: Parameter
    V: Parameter
    middle: List[Parameter]

    @property
    def rank(self) -> int:
        """r_0, the number of columns of U (the rank of the factorization)."""
        return self.U.shape[1]

    @property
    def ranks(self) -> List[int]:
        return [self.U.shape[1]] + [m.shape[1] for m in self.middle]

    @property
    def depth(self) -> int:
        return len(self.middle)

    def factor_group(self) -> FactorGroup:
        return FactorGroup(self.U, self.V, list(self.middle), self._kind, tuple(self._dense_shape))

    def _middle_data(self):
        return [m.data for m in self.middle] if self.middle else None

    def dense_matrix(self) -> np.ndarray:
        """The composed (rows x cols) matrix U M_1 ... M_d V^T."""
        return F.compose(self.U.data, self.V.data, self._middle_data())

    @property
    def dense_params(self) -> int:
        return int(np.prod(self._dense_shape))

    @property
    def factorized_params(self) -> int:
        return self.U.size + self.V.size + sum(m.size for m in self.middle)

    def _factor_repr(self) -> str:
        dense, fact = self.dense_params, self.factorized_params
        depth = f", depth={self.depth}" if self.middle else ""
        return f"rank={self.rank}{depth}, params={fact}/{dense} ({fact / dense:.1%})"

    def resize(self, ranks: Sequence[int]) -> None:
        """Gives the factors new ranks [r_0, ..., r_d] (zero-filled; load values afterwards).
        The Parameter objects are kept, their arrays replaced."""
        ranks = [int(r) for r in ranks]
        if len(ranks) < 1 or any(r < 1 for r in ranks):
            raise ValueError(f"[fnl.nn.{type(self).__name__}.resize] ranks must be >= 1, got {ranks}")
        d = len(ranks) - 1
        shapes = [(self._rows, ranks[0])] + [(ranks[j], ranks[j + 1]) for j in range(d)]
        params = [self.U]
        while len(self.middle) < d:
            self.middle.append(Parameter(np.eye(1, dtype=np.float32), f"middle.{len(self.middle)}"))
        del self.middle[d:]
        params += self.middle
        for p, shape in zip(params, shapes):
            if p.shape != shape:
                p.data = np.zeros(shape, np.float32)
                p.grad = np.zeros(shape, np.float32)
        if self.V.shape != (self._cols, ranks[-1]):
            self.V.data = np.zeros((self._cols, ranks[-1]), np.float32)
            self.V.grad = np.zeros((self._cols, ranks[-1]), np.float32)

    # state dict hooks (Module calls these) ---------------------------------------------
    def _own_state(self) -> Dict[str, np.ndarray]:
        state = Module._own_state(self)
        state["factor_ranks"] = np.array(self.ranks, dtype=np.int64)
        return state

    def _load_own_state(self, state, prefix, used):
        key = prefix + "factor_ranks"
        ranks = None
        if key in state:
            ranks = [int(r) for r in np.asarray(state[key]).reshape(-1)]
            used.add(key)
        elif prefix + "U" in state:  # infer from the arrays
            d = sum(1 for k in state if k.startswith(prefix + "middle.") and k[len(prefix) + 7:].isdigit())
            ranks = [np.shape(state[prefix + "U"])[1]] + [np.shape(state[f"{prefix}middle.{j}"])[1] for j in range(d)]
        if ranks is not None and ranks != self.ranks:
            self.resize(ranks)
        return Module._load_own_state(self, state, prefix, used)
