"""The optimizer base class: parameter groups, the step loop, norm matching and state dicts.

Subclasses (SGD, AdamW, LAMB, FLAMBe) declare their hyperparameters and state buffers and run
one engine call per parameter group per step (`_step_group`); every per-element loop runs in
the Swift engine, in place on the parameters' float32 buffers.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import _native
from ._groups import DECAY_POLICIES, GroupPlan, check_number, check_trajectory, normalize_groups

_BUFFER_REF = re.compile(r"\b(params|grads|momentum_buffers|exp_avg|exp_avg_sq)\[(\d+)\]")
_ENGINE_PREFIX = re.compile(r"^\[fnl\.optim\.\w+\.step\]")
_RESERVED = ("params", "factor_groups", "names")


class Optimizer:
    """Base class. ``param_groups`` is a list of dicts (see ``fnl.optim._groups``); their
    hyperparameters (``lr`` ...) may be changed between steps, e.g. by a schedule.

    State: ``state[g][buffer]`` is a list of float32 arrays (one per parameter of group g) and
    ``steps[g]`` the number of steps group g has taken.
    """

    #: State buffer names (one float32 array per parameter), set by subclasses.
    buffers: Sequence[str] = ()
    #: Hyperparameters and their defaults, set by subclasses (lr, weight_decay, decay always).
    name = "fnl.optim.Optimizer"

    def __init__(self, params: Any, defaults: Dict[str, Any], check_finite: bool = True):
        self.defaults = dict(defaults)
        self.check_finite = bool(check_finite)
        self.param_groups: List[Dict[str, Any]] = []
        self.state: List[Dict[str, Optional[List[np.ndarray]]]] = []
        self.steps: List[int] = []
        self._plans: List[GroupPlan] = []
        self._workspaces: List[Optional[np.ndarray]] = []
        self._trajectories: List[Optional[np.ndarray]] = []
        self._traj_src: List[Any] = []
        self._validated: List[Any] = []     # per group: the hyperparameter key last validated
        self._seen: set = set()
        for group in normalize_groups(self.name, params):
            self.add_param_group(group)

    # ---- groups -----------------------------------------------------------------------

    def add_param_group(self, group: Dict[str, Any]) -> None:
        """Adds a group (a dict with 'params' and optional 'factor_groups' and hyperparameters);
        missing hyperparameters take the constructor's defaults."""
        g = len(self.param_groups)
        group = normalize_groups(self.name, [group])[0] if "names" not in group else dict(group)
        unknown = set(group) - set(self.defaults) - set(_RESERVED) - {"norm_trajectory", "initial_lr"}
        if unknown:
            raise ValueError(f"[{self.name}] unknown hyperparameters {sorted(unknown)} in parameter group {g}; "
                             f"expected some of {sorted(self.defaults)}")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        plan = GroupPlan(self.name, group, g)
        for i, p in enumerate(plan.params):
            if id(p) in self._seen:
                raise ValueError(f"[{self.name}] parameter {plan.names[i]!r} appears in more than one parameter group")
        self._check_hyper(group, g)
        traj = None
        if group["decay"] == "norm_matching":
            traj = check_trajectory(self.name, group.get("norm_trajectory"), plan.n_chains, g)
        self._seen.update(id(p) for p in plan.params)
        self.param_groups.append(group)
        self._plans.append(plan)
        self._workspaces.append(None)
        self._trajectories.append(traj)
        self._traj_src.append(group.get("norm_trajectory"))
        self._validated.append(self._hyper_key(group))
        self.state.append({b: None for b in self.buffers})
        self.steps.append(0)

    def _hyper_key(self, group: Dict[str, Any]) -> Any:
        """The group's hyperparameters as a hashable key of (type, value) pairs (types included:
        1 == 1.0 == True, but only some of them are valid), or None when a value is unhashable
        (e.g. a list or an array): step() validates the hyperparameters again only when the
        key changed or is None, which saves a few microseconds per step."""
        def typed(v: Any) -> Any:
            return (tuple, tuple(typed(x) for x in v)) if isinstance(v, tuple) else (type(v), v)
        try:
            key = tuple(typed(group.get(k)) for k in self.defaults)
            hash(key)
        except TypeError:
            return None
        return key

    def _check_hyper(self, group: Dict[str, Any], g: int) -> None:
        """Validates the common hyperparameters; subclasses extend."""
        fn = self.name
        check_number(fn, f"lr (group {g})", group["lr"])
        check_number(fn, f"weight_decay (group {g})", group["weight_decay"])
        if group["decay"] not in DECAY_POLICIES:
            raise ValueError(f"[{fn}] decay must be one of {', '.join(map(repr, DECAY_POLICIES))}, "
                             f"got {group['decay']!r} (group {g})")

    # ---- stepping -----------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Sets every parameter's gradient to zero (in place)."""
        for plan in self._plans:
            for p in plan.params:
                p.grad.fill(0.0)

    def step(self) -> None:
        """One optimizer step over every group: one engine call per group (plus one for norm
        matching). Gradients are checked for NaN/inf first (unless check_finite=False): a
        failed step changes neither parameters nor state."""
        for g, group in enumerate(self.param_groups):
            key = self._hyper_key(group)
            if key is None or key != self._validated[g]:
                self._check_hyper(group, g)
                self._validated[g] = key
            plan = self._plans[g]
            traj = self._trajectories[g]
            if group["decay"] == "norm_matching":
                src = group.get("norm_trajectory")
                if traj is None or src is not self._traj_src[g]:
                    traj = self._trajectories[g] = check_trajectory(self.name, src, plan.n_chains, g)
                    self._traj_src[g] = src
                if self.steps[g] >= traj.shape[0]:
                    raise ValueError(f"[{self.name}] norm_trajectory of group {g} has {traj.shape[0]} steps; "
                                     f"step {self.steps[g] + 1} has no target norm")
            decay, chains, lam = plan.decay_terms(group["decay"], float(group["weight_decay"]))
            work = None
            if chains is not None:
                work = self._workspaces[g] = plan.workspace(self._workspaces[g])
            try:
                self._step_group(g, group, plan, decay, chains, lam, work)
                if group["decay"] == "norm_matching":
                    _native.norm_match(plan.datas(), plan.chains, plan.n_chains, traj[self.steps[g]])
            except (ValueError, TypeError) as e:
                raise self._annotate(e, plan) from None
            self.steps[g] += 1

    def _step_group(self, g, group, plan, decay, chains, lam, work) -> None:  # pragma: no cover
        raise NotImplementedError

    def _state_buffers(self, g: int, name: str) -> List[np.ndarray]:
        """The state buffers `name` of group g, allocated (zeros) on first use."""
        bufs = self.state[g][name]
        if bufs is None:
            bufs = self.state[g][name] = [np.zeros_like(p.data) for p in self._plans[g].params]
        return bufs

    def _annotate(self, e: Exception, plan: GroupPlan) -> Exception:
        """Names the optimizer class and the parameter in an engine message that names a buffer
        by index ("grads[3]" -> "grads[3] (parameter 'layer1.U')")."""
        msg = _ENGINE_PREFIX.sub(f"[{self.name}.step]", str(e), count=1)
        m = _BUFFER_REF.search(msg)
        if m and int(m.group(2)) < len(plan.names):
            msg += f" (parameter {plan.names[int(m.group(2))]!r})"
        return type(e)(msg)

    # ---- diagnostics --------------------------------------------------------------------

    def factor_norms(self, group: int = 0) -> np.ndarray:
        """||U M_1..M_d V^T||_F of every factor group of parameter group `group` (float64), from
        Gram matrices: record these after each step of a Frobenius-decay run to build the
        norm_trajectory of a norm-matching run."""
        plan = self._plans[group]
        if plan.n_chains == 0:
            return np.zeros(0)
        return _native.norm_match(plan.datas(), plan.chains, plan.n_chains, None)

    # ---- state dicts --------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """A flat dict: ``param_groups.{g}.{hyper}`` (numbers, strings; tuples and trajectories as
        arrays), ``param_groups.{g}.step`` (int) and ``state.{g}.{i}.{buffer}`` (float32 copies,
        i = the parameter's index in its group)."""
        out: Dict[str, Any] = {}
        for g, group in enumerate(self.param_groups):
            for k, v in group.items():
                if k in _RESERVED or v is None:
                    continue
                out[f"param_groups.{g}.{k}"] = np.array(v, dtype=np.float64) if isinstance(v, (tuple, list, np.ndarray)) else v
            out[f"param_groups.{g}.step"] = int(self.steps[g])
            for b, bufs in self.state[g].items():
                if bufs is not None:
                    for i, a in enumerate(bufs):
                        out[f"state.{g}.{i}.{b}"] = a.copy()
        return out

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores hyperparameters, step counts and state buffers from ``state_dict()`` output of
        an optimizer over the same parameter shapes. Everything is validated before anything
        changes; buffers are copied into the existing arrays (references stay valid)."""
        fn = f"{self.name}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"[{fn}] state must be a dict, got {type(state).__name__}")
        expected_groups = {k.split(".")[1] for k in state if k.startswith("param_groups.")}
        if len(expected_groups) != len(self.param_groups):
            raise ValueError(f"[{fn}] the state has {len(expected_groups)} parameter groups, "
                             f"this optimizer {len(self.param_groups)}")
        hyper: List[Dict[str, Any]] = []
        steps: List[int] = []
        buffers: List[Dict[str, Optional[List[np.ndarray]]]] = []
        known = set()
        for g, group in enumerate(self.param_groups):
            plan = self._plans[g]
            key = f"param_groups.{g}.step"
            if key not in state:
                raise ValueError(f"[{fn}] missing key {key!r}")
            known.add(key)
            step = state[key]
            if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"[{fn}] {key} must be an int >= 0, got {step!r}")
            steps.append(int(step))
            h: Dict[str, Any] = {}
            prefix = f"param_groups.{g}."
            for k, v in state.items():
                if k.startswith(prefix) and k != key:
                    name = k[len(prefix):]
                    known.add(k)
                    if name not in self.defaults and name not in ("norm_trajectory", "initial_lr"):
                        raise ValueError(f"[{fn}] unknown hyperparameter {k!r}")
                    cur = group.get(name, self.defaults.get(name))
                    if isinstance(cur, tuple):
                        v = tuple(float(x) for x in np.asarray(v).ravel())
                    elif isinstance(v, np.ndarray) and v.ndim == 0:
                        v = v.item()
                    h[name] = v
            if h.get("decay", group["decay"]) != group["decay"]:
                raise ValueError(f"[{fn}] group {g} was saved with decay={h['decay']!r} but this optimizer uses "
                                 f"decay={group['decay']!r}")
            trial = dict(group)
            trial.update(h)
            self._check_hyper(trial, g)
            if trial["decay"] == "norm_matching":
                check_trajectory(fn, trial.get("norm_trajectory"), plan.n_chains, g)
            bufs: Dict[str, Optional[List[np.ndarray]]] = {}
            for b in self.buffers:
                keys = [f"state.{g}.{i}.{b}" for i in range(len(plan.params))]
                present = [k in state for k in keys]
                if not any(present):
                    bufs[b] = None
                    continue
                if not all(present):
                    raise ValueError(f"[{fn}] {keys[present.index(False)]!r} is missing")
                arrs = []
                for k, p in zip(keys, plan.params):
                    a = np.asarray(state[k])
                    if a.shape != p.data.shape:
                        raise ValueError(f"[{fn}] {k} has shape {a.shape}, its parameter {p.data.shape}")
                    if not np.all(np.isfinite(a)):
                        raise ValueError(f"[{fn}] {k} contains NaN or inf")
                    arrs.append(a)
                    known.add(k)
                bufs[b] = arrs
            hyper.append(h)
            buffers.append(bufs)
        extra = sorted(set(state) - known)
        if extra:
            raise ValueError(f"[{fn}] unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        for g, group in enumerate(self.param_groups):
            group.update(hyper[g])
            self.steps[g] = steps[g]
            for b, arrs in buffers[g].items():
                if arrs is None:
                    self.state[g][b] = None
                    continue
                mine = self._state_buffers(g, b)
                for dst, src in zip(mine, arrs):
                    np.copyto(dst, src, casting="unsafe")

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for g, group in enumerate(self.param_groups):
            hp = ", ".join(f"{k}={group[k]!r}" for k in self.defaults if k != "norm_trajectory")
            lines.append(f"  group {g}: {len(self._plans[g].params)} tensors, "
                         f"{len(self._plans[g].factor_groups)} factor groups, {hp}")
        lines.append(")")
        return "\n".join(lines)
