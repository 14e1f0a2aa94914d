"""SGD with momentum and Nesterov momentum (PyTorch's semantics) and per-group decay policies."""
from __future__ import annotations

from typing import Any

from .. import _native
from ._groups import check_number
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, in place on float32 parameters, one engine call per group.

    Per parameter tensor w with loss gradient g, at every step (exactly torch.optim.SGD when
    decay="weight")::

        d  = g + D                         D: the decay term of the group's policy, added BEFORE
                                           momentum (weight: lambda w; frobenius on factors:
                                           lambda * grad (1/2)||U M V^T||_F^2; crs: lambda rho w)
        if momentum != 0:
            b = d                          on the first step (the buffer starts as d, undampened)
            b = momentum b + (1 - dampening) d   afterwards
            d = d + momentum b  if nesterov  else  b
        w -= lr d

    Args:
        params: a model (``named_parameters()`` and ``factor_groups()``), a list of Parameters,
            or a list of parameter-group dicts (``params``, optional ``factor_groups`` and any
            hyperparameter below; see ``fnl.optim._groups`` for the decay policies).
        lr: learning rate (>= 0).
        momentum: momentum factor mu (>= 0); 0 keeps no buffer.
        dampening: 0 <= dampening <= 1 (PyTorch's; not applied on the first step).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0, as in PyTorch).
        weight_decay: lambda (>= 0).
        decay: "weight" | "frobenius" | "crs" | "none" | "norm_matching".
        check_finite: scan gradients for NaN/inf before each step (ValueError naming the
            parameter; parameters and state are left unchanged).

    Frobenius decay (Khodak et al., ICLR 2021): the FD gradient of each factorized product is computed
    from Gram matrices in the engine at the parameters before the step and enters where weight
    decay would, before momentum.
    """

    name = "fnl.optim.SGD"
    buffers = ("momentum_buffer",)

    def __init__(self, params: Any, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, decay: str = "weight",
                 check_finite: bool = True):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay, decay=decay)
        super().__init__(params, defaults, check_finite)

    def _check_hyper(self, group, g):
        super()._check_hyper(group, g)
        fn = self.name
        mu = check_number(fn, f"momentum (group {g})", group["momentum"])
        damp = check_number(fn, f"dampening (group {g})", group["dampening"], 0.0, 1.0)
        if not isinstance(group["nesterov"], (bool, int)):
            raise TypeError(f"[{fn}] nesterov must be a bool, got {type(group['nesterov']).__name__}")
        if group["nesterov"] and (mu <= 0 or damp != 0):
            raise ValueError(f"[{fn}] nesterov momentum requires momentum > 0 and dampening = 0, "
                             f"got momentum={group['momentum']!r}, dampening={group['dampening']!r} (group {g})")

    def _step_group(self, g, group, plan, decay, chains, lam, work):
        mu = float(group["momentum"])
        bufs, first = None, False
        if mu != 0:
            first = self.state[g]["momentum_buffer"] is None
            bufs = self._state_buffers(g, "momentum_buffer")
        _native.sgd_step(plan.datas(), plan.grads(), bufs, decay, chains, lam, work, float(group["lr"]), mu,
                         float(group["dampening"]), bool(group["nesterov"]), first, self.check_finite)
