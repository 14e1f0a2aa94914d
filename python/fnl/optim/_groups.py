"""Parameter groups: from a model or explicit dicts to what the engine's step functions need.

A *parameter group* is a dict with the keys

    params          list of Parameters (``.data`` and ``.grad``: float32, C-contiguous, same shape)
    factor_groups   list of FactorGroups whose parameters are all in ``params`` (optional)
    lr, weight_decay, decay, ... optimizer hyperparameters (defaults from the constructor)

Decay policies (per group; ``lambda`` = the group's ``weight_decay``):

    "weight"         every tensor: D = lambda * w (L2 on each factor separately: for U V^T this
                     penalizes an upper bound of lambda ||U V^T||_*, a nuclear-norm regularizer)
    "frobenius"      factor tensors: D = lambda * grad of (1/2)||U M_1..M_d V^T||_F^2 (Frobenius
                     decay, Gram-matrix kernel); every other tensor: D = lambda * w
    "crs"            factor tensors: D = lambda * rho * w, rho = factorized / dense parameter count
                     of the FactorGroup (compression-rate scaling, Gray et al. 2019); others lambda * w
    "none"           D = 0 everywhere
    "norm_matching"  D = 0 everywhere, and after each step every product is rescaled to the norm
                     recorded for this step in the group's ``norm_trajectory`` (see NormMatching)

A factor group's tensors must have shapes U (m, r_0), M_j (r_{j-1}, r_j), V (n, r_d), or all with
the same extra leading batch axis (e.g. attention heads; FD then sums over the batch).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

DECAY_POLICIES = ("weight", "frobenius", "crs", "none", "norm_matching")


def check_number(fn: str, name: str, value: Any, lo: float = 0.0, hi: Optional[float] = None,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number in [lo, hi] (or open ends), else TypeError/ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"[{fn}] {name} must be a real number, got {type(value).__name__}")
    x = float(value)
    ok = math.isfinite(x) and (x > lo if lo_open else x >= lo)
    if ok and hi is not None:
        ok = x < hi if hi_open else x <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"in {left}{lo:g}, {hi:g}{right}" if hi is not None else f"{'>' if lo_open else '>='} {lo:g}"
        raise ValueError(f"[{fn}] {name} must be a finite number {span}, got {value!r}")
    return x


def _is_model(obj: Any) -> bool:
    return callable(getattr(obj, "named_parameters", None)) and callable(getattr(obj, "factor_groups", None))


def _is_parameter(obj: Any) -> bool:
    return hasattr(obj, "data") and hasattr(obj, "grad")


def normalize_groups(fn: str, params: Any) -> List[Dict[str, Any]]:
    """Turns a model, a list of Parameters or a list of group dicts into a list of group dicts
    (new dicts; ``params`` and ``factor_groups`` as lists; ``names`` filled in)."""
    if _is_model(params):
        named = list(params.named_parameters())
        return [{
            "params": [p for _, p in named],
            "names": [n for n, _ in named],
            "factor_groups": list(params.factor_groups()),
        }]
    if isinstance(params, dict):
        params = [params]
    if isinstance(params, (list, tuple)) and params and all(isinstance(g, dict) for g in params):
        groups = []
        for g in params:
            if "params" not in g:
                raise ValueError(f"[{fn}] every parameter group dict needs a 'params' key, got keys {sorted(g)}")
            group = dict(g)
            ps = group["params"]
            group["params"] = [ps] if _is_parameter(ps) else list(ps)
            group["factor_groups"] = list(group.get("factor_groups") or [])
            groups.append(group)
        return groups
    if isinstance(params, (list, tuple)) and params and all(_is_parameter(p) for p in params):
        return [{"params": list(params), "factor_groups": []}]
    raise TypeError(
        f"[{fn}] expected a model (with named_parameters() and factor_groups()), a list of Parameters "
        f"or a list of parameter-group dicts, got {type(params).__name__}"
        + (" (empty)" if isinstance(params, (list, tuple)) and not params else "")
    )


def _check_parameter(fn: str, p: Any, name: str) -> None:
    if not _is_parameter(p):
        raise TypeError(f"[{fn}] {name} must be a Parameter (with .data and .grad), got {type(p).__name__}")
    for attr in ("data", "grad"):
        a = getattr(p, attr)
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            what = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"[{fn}] {name}.{attr} must be a float32 numpy array, got {what}")
    if p.grad.shape != p.data.shape:
        raise ValueError(f"[{fn}] {name}.grad has shape {p.grad.shape}, its data {p.data.shape}")
    if p.data.size == 0:
        raise ValueError(f"[{fn}] {name} must not be empty")


class GroupPlan:
    """What the engine needs for one group, derived once from its parameters and factor groups:
    the factor-product records, which tensors are factors and their compression rates."""

    def __init__(self, fn: str, group: Dict[str, Any], g: int):
        self.fn = fn
        self.params: List[Any] = group["params"]
        if not self.params:
            raise ValueError(f"[{fn}] parameter group {g} has no parameters")
        names = group.get("names")
        if names is None or len(names) != len(self.params):
            names = [getattr(p, "name", "") or f"group{g}.params[{i}]" for i, p in enumerate(self.params)]
        self.names: List[str] = list(names)
        for i, p in enumerate(self.params):
            _check_parameter(fn, p, f"parameter {self.names[i]!r}")
        self.index = {id(p): i for i, p in enumerate(self.params)}
        if len(self.index) != len(self.params):
            raise ValueError(f"[{fn}] parameter group {g} lists a parameter more than once")
        self.factor_groups = list(group.get("factor_groups") or [])
        n = len(self.params)
        self.member = np.zeros(n, dtype=bool)
        self.rate = np.ones(n, dtype=np.float64)
        records: List[int] = []
        self.depths: List[int] = []
        for k, fg in enumerate(self.factor_groups):
            tensors = [fg.U, fg.V, *fg.middle]
            idx = []
            for j, p in enumerate(tensors):
                what = "U" if j == 0 else "V" if j == 1 else f"middle[{j - 2}]"
                if id(p) not in self.index:
                    raise ValueError(
                        f"[{fn}] factor group {k} of parameter group {g}: its {what} is not among the group's params"
                    )
                i = self.index[id(p)]
                if self.member[i]:
                    raise ValueError(
                        f"[{fn}] parameter {self.names[i]!r} belongs to two factor groups; a tensor may "
                        f"belong to one factorized product only"
                    )
                self.member[i] = True
                idx.append(i)
            records += self._record(k, fg, idx)
            self.depths.append(len(fg.middle))
            rate = fg.factorized_params / max(fg.dense_params, 1)
            self.rate[idx] = rate
        self.n_chains = len(self.factor_groups)
        self.chains = np.asarray(records, dtype=np.int64) if records else None
        self.workspace_size = int(sum(self.params[i].data.size for i in np.flatnonzero(self.member)))
        self._decay_cache: Tuple[Any, ...] = ()

    def _record(self, k: int, fg: Any, idx: List[int]) -> List[int]:
        U, V, mids = fg.U.data, fg.V.data, [m.data for m in fg.middle]
        nd = U.ndim
        where = f"[{self.fn}] factor group {k}"
        if nd not in (2, 3):
            raise ValueError(f"{where}: U must be 2-D (m, r) or 3-D (batch, m, r), got shape {U.shape}")
        for name, a in [("V", V)] + [(f"middle[{j}]", m) for j, m in enumerate(mids)]:
            if a.ndim != nd or (nd == 3 and a.shape[0] != U.shape[0]):
                raise ValueError(f"{where}: {name} must have the dimensions of U {U.shape}, got shape {a.shape}")
        batch = U.shape[0] if nd == 3 else 1
        ranks = [U.shape[-1]]
        for j, m in enumerate(mids):
            if m.shape[-2] != ranks[-1]:
                raise ValueError(f"{where}: middle[{j}] must have {ranks[-1]} rows, got shape {m.shape}")
            ranks.append(m.shape[-1])
        if V.shape[-1] != ranks[-1]:
            raise ValueError(f"{where}: V must have {ranks[-1]} columns, got shape {V.shape}")
        return [len(mids), batch, U.shape[-2], V.shape[-2], *ranks, idx[0], idx[1], *idx[2:]]

    def decay_terms(self, policy: str, wd: float):
        """(decay coefficients float32[n], chains or None, chain_lam or None) for the engine."""
        key = (policy, wd)
        if self._decay_cache and self._decay_cache[0] == key:
            return self._decay_cache[1]
        n = len(self.params)
        chains = lam = None
        if policy == "weight":
            decay = np.full(n, wd, dtype=np.float32)
        elif policy == "frobenius":
            decay = np.where(self.member, 0.0, wd).astype(np.float32)
            if wd > 0 and self.chains is not None:
                chains, lam = self.chains, np.full(self.n_chains, wd, dtype=np.float32)
        elif policy == "crs":
            decay = (wd * self.rate).astype(np.float32)
        else:  # "none", "norm_matching"
            decay = np.zeros(n, dtype=np.float32)
        out = (decay, chains, lam)
        self._decay_cache = (key, out)
        return out

    def workspace(self, have: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.workspace_size == 0:
            return None
        if have is None or have.size < self.workspace_size:
            have = np.empty(self.workspace_size, dtype=np.float32)
        return have

    def datas(self) -> List[np.ndarray]:
        return [p.data for p in self.params]

    def grads(self) -> List[np.ndarray]:
        return [p.grad for p in self.params]


def check_trajectory(fn: str, traj: Any, n_chains: int, g: int) -> np.ndarray:
    """The recorded norm trajectory of a norm-matching group as float64 (steps, n_factor_groups)."""
    if traj is None:
        raise ValueError(
            f"[{fn}] parameter group {g} has decay='norm_matching' but no norm_trajectory "
            f"(an array of target norms, one row per step, one column per factor group)"
        )
    if n_chains == 0:
        raise ValueError(f"[{fn}] parameter group {g} has decay='norm_matching' but no factor groups")
    a = np.array(traj, dtype=np.float64)
    if a.ndim == 1 and n_chains == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] != n_chains or a.shape[0] == 0:
        raise ValueError(
            f"[{fn}] norm_trajectory of parameter group {g} must have shape (steps, {n_chains}), got {a.shape}"
        )
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"[{fn}] norm_trajectory of parameter group {g} must hold finite norms >= 0")
    return a
