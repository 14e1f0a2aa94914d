"""Sequential: modules applied in order; backward runs them in reverse.

A BatchNorm1d/2d directly followed by a ReLU (exactly those classes) runs as one fused engine
pass (BatchNorm.forward_act with relu=True; same values, one pass over the data instead of
two, and no intermediate array); the ReLU module stays in the tree.
"""
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

    def _plan(self):
        """The children in order, a BatchNorm directly followed by a ReLU (exact classes)
        paired so that the two run as one fused engine call (same result, one pass)."""
        from .activation import ReLU
        from .batchnorm import BatchNorm1d, BatchNorm2d

        mods = list(self)
        plan, i = [], 0
        while i < len(mods):
            m = mods[i]
            if type(m) in (BatchNorm1d, BatchNorm2d) and i + 1 < len(mods) and type(mods[i + 1]) is ReLU:
                plan.append((m, True))
                i += 2
            else:
                plan.append((m, False))
                i += 1
        return plan

    def forward(self, x):
        plan = self._plan()
        for m, fused in plan:
            x = m.forward_act(x, relu=True) if fused else m(x)
        self._last_plan = plan
        return x

    def backward(self, grad):
        plan = getattr(self, "_last_plan", None)
        if plan is None:
            plan = [(m, False) for m in self]
        for m, fused in reversed(plan):
            grad = m.backward_act(grad)[0] if fused else m.backward(grad)
        return grad
