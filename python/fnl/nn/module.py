"""The module protocol of fnl.nn: parameters, train/eval, forward and backward, state dicts.

A Module computes ``y = module(x)`` (``forward``) on float32 NumPy arrays and, after a forward
pass that saved what it needs, ``grad_x = module.backward(grad_y)``: the gradient with respect
to its input, *accumulating* the gradients of its parameters into ``Parameter.grad``
(``zero_grad()`` clears them). The saved state of a forward pass is released by backward.

What a forward pass saves: in training mode always; in evaluation mode nothing (inference
over large batches keeps no activations), unless inside ``with fnl.nn.enable_grad():``.
``with fnl.nn.no_grad():`` saves nothing even in training mode.

Submodules, parameters and lists of parameters are discovered from the instance attributes
(in assignment order), so a layer is written as plain Python:

    class Affine(Module):
        def __init__(self, n):
            super().__init__()
            self.scale = Parameter(np.ones(n, np.float32), "scale")

State dicts are flat ``{dotted.name: numpy array}`` dicts of parameters and buffers (copies).
Factorized layers also store ``<prefix>.factor_ranks`` (int64 [r_0, ..., r_d]); loading a
state dict whose ranks differ resizes the layer's factors in place (the Parameter objects
stay the same, their arrays are replaced: build optimizers after loading).
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .. import _native
from .parameter import FactorGroup, Parameter

_state = threading.local()

#: the methods of every Module subclass that run inside the memory pool
_POOLED_METHODS = ("forward", "backward", "forward_act", "backward_act")


def _pooled(fn):
    """Runs fn with NumPy allocations served by the layers' memory pool (see memory_pool)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        prev = _native.pool_enter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            _native.pool_exit(prev)

    wrapper._fnl_pooled = True
    return wrapper


def memory_pool(limit: Optional[int] = None) -> Dict[str, int]:
    """The memory pool of the layers' arrays; ``limit`` (bytes) sets its size (0 empties it).

    A training step allocates the same large arrays (activations, gradients) every time.
    Fresh large blocks come from the OS and cost a page fault per 4 KiB on first use (about
    a third of a ResNet-20 step here), so the forward and backward passes of fnl.nn modules
    allocate NumPy arrays through a pool: blocks of 64 KiB or more freed by those arrays are
    kept, up to ``limit`` bytes (default 1 GiB; oldest evicted first), and reused by the next
    allocation of exactly the same size. Only arrays created inside module passes use it;
    they return to the pool wherever they are freed. Returns {"limit", "cached_bytes",
    "cached_blocks", "hits", "misses"}.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"[fnl.nn.memory_pool] limit must be an int >= 0 (bytes) or None, got {limit!r}")
    lim, cached, blocks, hits, misses = _native.pool_config(None if limit is None else int(limit))
    return {"limit": lim, "cached_bytes": cached, "cached_blocks": blocks, "hits": hits, "misses": misses}


def _grad_mode() -> Optional[bool]:
    return getattr(_state, "mode", None)


@contextlib.contextmanager
def no_grad():
    """Forward passes inside save nothing for backward (even in training mode)."""
    old = _grad_mode()
    _state.mode = False
    try:
        yield
    finally:
        _state.mode = old


@contextlib.contextmanager
def enable_grad():
    """Forward passes inside save what backward needs, even in evaluation mode."""
    old = _grad_mode()
    _state.mode = True
    try:
        yield
    finally:
        _state.mode = old


def as_float32(x, where: str, ndim: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    """x as a C-contiguous float32 array (copying only when needed), checking its ndim."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception:  # pragma: no cover - exotic objects
            raise TypeError(f"[{where}] input must be an array of real numbers, got {type(x).__name__}") from None
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"[{where}] input must hold real numbers, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if ndim is not None and arr.ndim not in ndim:
        want = " or ".join(str(d) for d in ndim)
        raise ValueError(f"[{where}] input must have {want} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"[{where}] input must not be empty, got shape {arr.shape}")
    return arr


class Module:
    """Base class of the layers and models (see the module docstring for the protocol)."""

    #: names of the non-trainable arrays saved in state dicts (e.g. running statistics)
    _buffers: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _POOLED_METHODS:
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_fnl_pooled", False):
                setattr(cls, name, _pooled(fn))

    def __init__(self) -> None:
        self.training = True
        self._saved = None

    # ---- structure -------------------------------------------------------------------
    def _members(self) -> Iterator[Tuple[str, object]]:
        for name, value in vars(self).items():
            if not name.startswith("_"):
                yield name, value

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        for name, value in self._members():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        """(dotted name, module) for this module ("" for the root) and every descendant."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _own_parameters(self) -> Iterator[Tuple[str, Parameter]]:
        for name, value in self._members():
            if isinstance(value, Parameter):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Parameter):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """(dotted name, Parameter) of every parameter, in definition order."""
        seen = set()
        for mname, module in self.named_modules(prefix):
            for pname, p in module._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> List[Parameter]:
        return [p for _, p in self.named_parameters()]

    def factor_groups(self) -> List[FactorGroup]:
        """The FactorGroup of every factorized layer (for Frobenius decay in optimizers)."""
        return [m.factor_group() for m in self.modules() if hasattr(m, "factor_group")]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def _keep(self) -> bool:
        """Whether this forward pass saves state for backward."""
        mode = _grad_mode()
        return self.training if mode is None else mode

    def _save(self, *items):
        self._saved = items if self._keep() else None

    def _take(self, where: str):
        saved = self._saved
        if saved is None:
            raise RuntimeError(
                f"[fnl.nn.{where}.backward] no saved forward pass: call forward in training mode "
                "(or inside fnl.nn.enable_grad()) before backward, once per forward"
            )
        self._saved = None
        return saved

    # ---- computation -------------------------------------------------------------------
    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, x):
        return self.forward(x)

    # ---- state dicts -------------------------------------------------------------------
    def _own_state(self) -> Dict[str, np.ndarray]:
        state = {name: p.data.copy() for name, p in self._own_parameters()}
        for b in self._buffers:
            state[b] = np.array(getattr(self, b), copy=True)
        return state

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Flat {dotted name: array copy} of parameters, buffers and factor ranks."""
        out: Dict[str, np.ndarray] = {}
        for mname, module in self.named_modules():
            for key, value in module._own_state().items():
                out[f"{mname}.{key}" if mname else key] = value
        return out

    def _load_own_state(self, state: Dict[str, np.ndarray], prefix: str, used: set) -> List[str]:
        """Loads this module's own entries; returns the missing keys."""
        missing = []
        for name, p in self._own_parameters():
            key = prefix + name
            if key not in state:
                missing.append(key)
                continue
            value = np.asarray(state[key])
            if value.shape != p.shape:
                raise ValueError(
                    f"[fnl.nn.Module.load_state_dict] {key} has shape {p.shape} in the model, got {value.shape}"
                )
            p.assign(value.astype(np.float32, copy=False))
            used.add(key)
        for b in self._buffers:
            key = prefix + b
            if key not in state:
                missing.append(key)
                continue
            current = getattr(self, b)
            value = np.asarray(state[key])
            if value.shape != current.shape:
                raise ValueError(
                    f"[fnl.nn.Module.load_state_dict] {key} has shape {current.shape} in the model, got {value.shape}"
                )
            np.copyto(current, value, casting="unsafe")
            used.add(key)
        return missing

    def load_state_dict(self, state: Dict[str, np.ndarray], strict: bool = True) -> Tuple[List[str], List[str]]:
        """Copies a state dict into the parameters and buffers (in place).

        Factorized layers whose stored ranks differ are resized first. With ``strict`` a
        missing or unexpected key raises KeyError; otherwise (missing, unexpected) is returned.
        """
        if not isinstance(state, dict):
            raise TypeError(f"[fnl.nn.Module.load_state_dict] state must be a dict, got {type(state).__name__}")
        used: set = set()
        missing: List[str] = []
        for mname, module in self.named_modules():
            missing += module._load_own_state(state, f"{mname}." if mname else "", used)
        unexpected = [k for k in state if k not in used]
        if strict and (missing or unexpected):
            raise KeyError(
                f"[fnl.nn.Module.load_state_dict] state dict does not match the model: "
                f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
            )
        return missing, unexpected

    # ---- printing ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        return "\n".join(lines) + "\n)"

    def summary(self) -> str:
        """Parameter count and, when factorized layers are present, their compression."""
        total = self.num_parameters()
        groups = self.factor_groups()
        if not groups:
            return f"{type(self).__name__}: {total:,} parameters"
        fact = sum(g.factorized_params for g in groups)
        dense = sum(g.dense_params for g in groups)
        return (f"{type(self).__name__}: {total:,} parameters; {len(groups)} factorized layers hold "
                f"{fact:,} parameters for {dense:,} dense ({fact / dense:.1%})")
