"""Learning-rate schedules: multi-step, cosine and linear warm-up (composable).

A schedule owns a step counter t (0 at construction) and sets ``group["lr"]`` of every
parameter group of its optimizer to ``lr_at(base, t)``, ``base`` being the group's
``initial_lr`` (recorded from ``lr`` by the first schedule attached to the optimizer). Call
``step()`` once per epoch or once per iteration: t counts calls, the unit is yours.

Composition: ``LinearWarmup(opt, warmup_steps, then=CosineLR(opt, total_steps))`` multiplies the
warm-up factor into the inner schedule's lr at the same t; step only the outermost schedule
(it keeps the inner schedule's counter in sync).
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ._groups import check_number


class LRSchedule:
    """Base class: subclasses define ``lr_at(base, t)``."""

    name = "fnl.optim.LRSchedule"

    def __init__(self, optimizer: Any):
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, list) or not groups:
            raise TypeError(f"[{self.name}] optimizer must be an fnl.optim optimizer with param_groups, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in groups:
            g.setdefault("initial_lr", g["lr"])
        self.t = 0
        self.apply()

    @property
    def base_lrs(self) -> List[float]:
        return [float(g["initial_lr"]) for g in self.optimizer.param_groups]

    def lr_at(self, base: float, t: int) -> float:  # pragma: no cover
        raise NotImplementedError

    def apply(self) -> None:
        """Sets every group's lr for the current t."""
        lrs = [self.lr_at(b, self.t) for b in self.base_lrs]
        for i, lr in enumerate(lrs):
            if not math.isfinite(lr) or lr < 0:
                raise ValueError(f"[{self.name}] computed lr {lr!r} for group {i} at t={self.t}")
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr

    def step(self) -> None:
        """Advances t by one and sets the groups' lr."""
        self.t += 1
        self.apply()

    def get_last_lr(self) -> List[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        t = state.get("t") if isinstance(state, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"[{self.name}.load_state_dict] expected {{'t': int >= 0}}, got {state!r}")
        self.t = int(t)
        self.apply()


class MultiStepLR(LRSchedule):
    """lr = base * gamma^k, k = number of milestones <= t (milestones: increasing ints >= 1).
    The paper's CIFAR ResNets: SGD lr 0.1, milestones (100, 150) epochs, gamma 0.1."""

    name = "fnl.optim.MultiStepLR"

    def __init__(self, optimizer: Any, milestones: Sequence[int], gamma: float = 0.1):
        ms = list(milestones)
        if not all(isinstance(m, (int, np.integer)) and not isinstance(m, bool) and m >= 1 for m in ms):
            raise ValueError(f"[{self.name}] milestones must be ints >= 1, got {milestones!r}")
        if ms != sorted(ms):
            raise ValueError(f"[{self.name}] milestones must be increasing, got {milestones!r}")
        self.milestones = [int(m) for m in ms]
        self.gamma = check_number(self.name, "gamma", gamma)
        super().__init__(optimizer)

    def lr_at(self, base: float, t: int) -> float:
        return base * self.gamma ** bisect.bisect_right(self.milestones, t)


class CosineLR(LRSchedule):
    """lr = min_lr + (base - min_lr) (1 + cos(pi min(t, T) / T)) / 2 with T = total_steps
    (Loshchilov & Hutter's SGDR without restarts; min_lr absolute, as PyTorch's eta_min);
    constant min_lr after T."""

    name = "fnl.optim.CosineLR"

    def __init__(self, optimizer: Any, total_steps: int, min_lr: float = 0.0):
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
            raise ValueError(f"[{self.name}] total_steps must be an int >= 1, got {total_steps!r}")
        self.total_steps = int(total_steps)
        self.min_lr = check_number(self.name, "min_lr", min_lr)
        super().__init__(optimizer)

    def lr_at(self, base: float, t: int) -> float:
        x = min(t, self.total_steps) / self.total_steps
        return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * x))


class LinearWarmup(LRSchedule):
    """lr = w(t) * inner(t), w(t) = start_factor + (1 - start_factor) min(t, W) / W for
    W = warmup_steps, inner = ``then.lr_at(base, t)`` or the constant base lr. With the default
    start_factor 0.1 the first step runs at a tenth of the base lr (the paper's warm-up for deep
    CIFAR ResNets uses a 10x smaller lr for the first epoch), reaching the base lr at t = W."""

    name = "fnl.optim.LinearWarmup"

    def __init__(self, optimizer: Any, warmup_steps: int, start_factor: float = 0.1,
                 then: Optional[LRSchedule] = None):
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 1:
            raise ValueError(f"[{self.name}] warmup_steps must be an int >= 1, got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.start_factor = check_number(self.name, "start_factor", start_factor, 0.0, 1.0)
        if then is not None:
            if not isinstance(then, LRSchedule):
                raise TypeError(f"[{self.name}] then must be a schedule, got {type(then).__name__}")
            if then.optimizer is not optimizer:
                raise ValueError(f"[{self.name}] then must schedule the same optimizer")
        self.then = then
        super().__init__(optimizer)

    def lr_at(self, base: float, t: int) -> float:
        w = self.start_factor + (1.0 - self.start_factor) * min(t, self.warmup_steps) / self.warmup_steps
        return w * (self.then.lr_at(base, t) if self.then is not None else base)

    def apply(self) -> None:
        if self.then is not None:
            self.then.t = self.t
        super().apply()
