"""AdamW (decoupled weight decay) with per-group decay policies, including decoupled FD."""
from __future__ import annotations

from typing import Any, Tuple

from .. import _native
from ._groups import check_number
from .optimizer import Optimizer


def check_adam(fn: str, group, g: int) -> None:
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"[{fn}] betas must be a pair (beta1, beta2), got {betas!r} (group {g})")
    check_number(fn, f"beta1 (group {g})", betas[0], 0.0, 1.0, hi_open=True)
    check_number(fn, f"beta2 (group {g})", betas[1], 0.0, 1.0, hi_open=True)
    check_number(fn, f"eps (group {g})", group["eps"], 0.0, lo_open=True)


class AdamW(Optimizer):
    """AdamW (Loshchilov & Hutter 2019) with torch.optim.AdamW's conventions, in place, one
    engine call per group. At step t = 1, 2, ... of a group, per tensor w with gradient g::

        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        r = (m / (1 - beta1^t)) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        w -= lr (r + D)

    The decay term D is *decoupled* (not fed through the moments) and scaled by lr as in PyTorch
    (w *= 1 - lr lambda is the same update): lambda w for decay="weight"; for decay="frobenius"
    the factors' D is lambda * grad (1/2)||U M V^T||_F^2 (the paper's "subtract lambda eta times
    the Frobenius gradients", Khodak et al., ICLR 2021, Sec. 5) and other tensors keep lambda w; "crs"
    scales lambda by the compression rate on the factors. amsgrad is not supported.

    Args: as SGD, plus betas=(beta1, beta2) in [0, 1) and eps > 0. Defaults follow PyTorch
    (lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2).
    """

    name = "fnl.optim.AdamW"
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, decay: str = "weight",
                 check_finite: bool = True):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, decay=decay)
        super().__init__(params, defaults, check_finite)

    def _check_hyper(self, group, g):
        super()._check_hyper(group, g)
        check_adam(self.name, group, g)

    def _step_group(self, g, group, plan, decay, chains, lam, work):
        b1, b2 = group["betas"]
        _native.adamw_step(plan.datas(), plan.grads(), self._state_buffers(g, "exp_avg"),
                           self._state_buffers(g, "exp_avg_sq"), decay, chains, lam, work, float(group["lr"]),
                           float(b1), float(b2), float(group["eps"]), self.steps[g] + 1, self.check_finite)
