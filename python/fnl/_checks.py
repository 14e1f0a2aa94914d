"""One argument parser for the Python layer (the Python twin of python/src/args.c).

Every public function validates its scalar arguments through these helpers, so every
message has the same shape and names the function the user called and the argument:

    [fnl.linear_rank] rank_scale must be a finite number > 0, got inf

TypeError when the value has the wrong type (bool is never an int or a number here; str is
never a number), ValueError when it has the right type but is out of range. Python ints of
any size are accepted and compared exactly, so 10**400 gives the ValueError of the range and
never an OverflowError from a conversion.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Optional

__all__ = ["check_int", "check_number", "check_choice", "check_bool", "check_seed", "fail"]


def _where(fn: str) -> str:
    return fn if fn.startswith("[fnl.") else f"[fnl.{fn}]"


def fail(fn: str, name: str, want: str, value: Any, error: type = ValueError) -> Exception:
    """The exception for argument `name` of `fn` that must be `want` and is `value`."""
    return error(f"{_where(fn)} {name} must be {want}, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (bool, numbers.Number, str)) or value is None:
        return text
    return f"{type(value).__name__} {text}"


def _range_text(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}" \
            if isinstance(lo, float) or isinstance(hi, float) else f"in {lo}..{hi}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}" if isinstance(lo, float) else f">= {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}" if isinstance(hi, float) else f"<= {hi}"
    return ""


def check_int(fn: str, name: str, value: Any, *, lo: Optional[int] = None, hi: Optional[int] = None,
              none: bool = False) -> Optional[int]:
    """`value` as a Python int in lo..hi (either bound optional); None passes when `none`."""
    if value is None and none:
        return None
    want = ("an int " + _range_text(lo, hi)).strip() + (" or None" if none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(fn, name, want, value, TypeError)
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise fail(fn, name, want, value)
    return v


def check_number(fn: str, name: str, value: Any, *, lo: Optional[float] = None, hi: Optional[float] = None,
                 lo_open: bool = False, hi_open: bool = False, none: bool = False) -> Optional[float]:
    """`value` as a finite Python float within the bounds (open or closed); None passes when
    `none`. Integers too large for a float are out of range (ValueError), not an OverflowError."""
    if value is None and none:
        return None
    rng = _range_text(None if lo is None else float(lo), None if hi is None else float(hi), lo_open, hi_open)
    want = ("a finite number " + rng).strip() + (" or None" if none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(fn, name, want, value, TypeError)
    try:
        v = float(value)
    except OverflowError:
        raise fail(fn, name, want, value) from None
    if not math.isfinite(v):
        raise fail(fn, name, want, value)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise fail(fn, name, want, value)
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise fail(fn, name, want, value)
    return v


def check_choice(fn: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices` (compared with ==, types checked: a str choice
    takes only a str)."""
    options = list(choices)
    want = "one of " + ", ".join(repr(c) for c in options)
    for c in options:
        if type(value) is type(c) and value == c:
            return value
    raise fail(fn, name, want, value, TypeError if options and not any(isinstance(value, type(c)) for c in options)
               else ValueError)


def check_bool(fn: str, name: str, value: Any) -> bool:
    """A real bool (True/False or NumPy's bool_); strings such as "no" are refused."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise fail(fn, name, "a bool", value, TypeError)


def check_seed(fn: str, name: str, value: Any, *, none: bool = True) -> Optional[int]:
    """A seed for np.random.default_rng: an int >= 0 (or None when `none`)."""
    return check_int(fn, name, value, lo=0, none=none)
