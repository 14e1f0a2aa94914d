"""Sequential: modules applied in order; backward runs them in reverse."""
from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """Sequential(m0, m1, ...) names its children "0", "1", ...; Sequential(OrderedDict) or
    keyword arguments name them explicitly."""

    def __init__(self, *modules, **named):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        items += list(named.items())
        self._order = []
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"[fnl.nn.Sequential] {name} must be a Module, got {type(m).__name__}")
            setattr(self, name, m)
            self._order.append(name)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):
        if isinstance(i, str):
            return getattr(self, i)
        return getattr(self, self._order[i])

    def __iter__(self):
        return (getattr(self, n) for n in self._order)

    def named_children(self):
        for n in self._order:
            yield n, getattr(self, n)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x

    def backward(self, grad):
        for n in reversed(self._order):
            grad = getattr(self, n).backward(grad)
        return grad
