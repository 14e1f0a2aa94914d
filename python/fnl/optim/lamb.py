"""LAMB and FLAMBe: layer-wise trust-ratio Adam steps; FLAMBe decays factorized products by FD."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .. import _native
from .adamw import check_adam
from .optimizer import Optimizer


class LAMB(Optimizer):
    """LAMB (You et al. 2020, Algorithm 2), in place, one engine call per group. At step
    t = 1, 2, ... of a group, per parameter tensor w (one "layer" of the paper) with gradient g::

        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
        r = m_hat / (sqrt(v_hat) + eps)        m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
        u = r + D                              D = lambda w (decay="weight"), see below
        trust = ||w||_2 / ||u||_2              1 when either norm is 0
        w -= lr * trust * u

    Choices (documented judgment calls): phi is the identity (no clipping of ||w|| to
    [gamma_l, gamma_u]); bias correction on (the paper's Algorithm 2; NVIDIA's BERT LAMB has a
    flag); the trust ratio applies to every tensor, including those without decay (no
    exclusion list: use a parameter group with weight_decay=0 for biases/norm layers); no global
    gradient-norm clipping (do it before step() if wanted). Norms are accumulated in float64.

    ``trust_ratios()`` returns the ratios of the last step by parameter name.

    Args: as AdamW; defaults lr=1e-3, betas=(0.9, 0.999), eps=1e-6 (the paper's BERT setting),
    weight_decay=0.01, decay="weight".
    """

    name = "fnl.optim.LAMB"
    buffers = ("exp_avg", "exp_avg_sq")
    default_decay = "weight"

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, decay: str = None,
                 check_finite: bool = True):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, decay=self.default_decay if decay is None else decay)
        super().__init__(params, defaults, check_finite)
        self._trust = [None] * len(self.param_groups)
        self._update = [None] * len(self.param_groups)   # u between the engine's two passes

    def _check_hyper(self, group, g):
        super()._check_hyper(group, g)
        check_adam(self.name, group, g)

    def _step_group(self, g, group, plan, decay, chains, lam, work):
        b1, b2 = group["betas"]
        total = sum(p.data.size for p in plan.params)
        while len(self._update) <= g:
            self._update.append(None)
        if self._update[g] is None or self._update[g].size < total:
            self._update[g] = np.empty(total, dtype=np.float32)
        trust = _native.lamb_step(plan.datas(), plan.grads(), self._state_buffers(g, "exp_avg"),
                                  self._state_buffers(g, "exp_avg_sq"), decay, chains, lam, work,
                                  float(group["lr"]), float(b1), float(b2), float(group["eps"]),
                                  self.steps[g] + 1, self.check_finite, self._update[g])
        while len(self._trust) <= g:
            self._trust.append(None)
        self._trust[g] = trust

    def trust_ratios(self) -> Dict[str, float]:
        """{parameter name: trust ratio ||w|| / ||u||} of the last step (empty before any)."""
        out: Dict[str, float] = {}
        for plan, t in zip(self._plans, self._trust):
            if t is not None:
                out.update(zip(plan.names, (float(x) for x in t)))
        return out


class FLAMBe(LAMB):
    """FLAMBe (Khodak et al., ICLR 2021, Sec. 5): LAMB whose decay term for factorized products is the
    Frobenius-decay gradient instead of lambda w::

        u = m_hat / (sqrt(v_hat) + eps) + lambda * grad_P (1/2)||U M_1..M_d V^T||_F^2   (P = U, V, M_j)
        trust = ||w|| / ||u||   (1 when either norm is 0),   w -= lr * trust * u

    with lambda w for every tensor outside a factor group. The FD gradients are computed from
    Gram matrices at the parameters before the step (lambda U V^T V and lambda V U^T U when
    d = 0). This is LAMB with decay="frobenius" as the default (any other policy makes it plain
    LAMB with that policy). The paper applies it to the output-value products of attention and
    ordinary decay elsewhere; here every FactorGroup of the group gets FD. No FLAMBe code was
    published: formulas follow the paper's text.
    """

    name = "fnl.optim.FLAMBe"
    default_decay = "frobenius"
