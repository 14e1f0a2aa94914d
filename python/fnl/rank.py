"""Rank rules and parameter counts for factorized layers.

A linear layer W (m x n) factorized at rank r as U V^T keeps r (m + n) parameters instead of
m n; a conv kernel (c_out, c_in, kh, kw) in the matrix layout (c_out*kh) x (c_in*kw) keeps
r (c_out*kh + c_in*kw) instead of c_out*c_in*kh*kw. The *rank-scale* s sets the rank relative
to the layer: r = max(1, round(s * min(m, n))) for linear layers and
r = max(1, round(s * c_out * kh)) for convolutions (the rule of Khodak et al., ICLR 2021).
"""
from __future__ import annotations

import numbers
from typing import Iterable, Sequence

Shape = Sequence[int]


def _check_positive(fn: str, **dims: int) -> None:
    for name, d in dims.items():
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"[fnl.{fn}] {name} must be an int, got {type(d).__name__} {d!r}")
        if d < 1:
            raise ValueError(f"[fnl.{fn}] {name} must be an int >= 1, got {d!r}")


def _check_real(fn: str, name: str, x) -> float:
    """A finite real number > 0 (int, float or NumPy scalar; not bool or str)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"[fnl.{fn}] {name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if not (x > 0 and x < float("inf")):
        raise ValueError(f"[fnl.{fn}] {name} must be a finite number > 0, got {x!r}")
    return x


def _check_scale(fn: str, s: float) -> float:
    return _check_real(fn, "rank_scale", s)


def _shape(fn: str, shape) -> tuple:
    try:
        return tuple(shape)
    except TypeError:
        raise TypeError(f"[fnl.{fn}] a layer shape must be a sequence of ints, got {type(shape).__name__}") from None


def _shapes(fn: str, shapes) -> list:
    try:
        shapes = [_shape(fn, s) for s in shapes]
    except TypeError as e:
        if str(e).startswith("[fnl."):
            raise
        raise TypeError(f"[fnl.{fn}] shapes must be a list of layer shapes, got {type(shapes).__name__}") from None
    if not shapes:
        raise ValueError(f"[fnl.{fn}] shapes must not be empty")
    return shapes


def linear_rank(m: int, n: int, rank_scale: float) -> int:
    """r = max(1, round(rank_scale * min(m, n))) for an m x n matrix."""
    _check_positive("linear_rank", m=m, n=n)
    return max(1, round(_check_scale("linear_rank", rank_scale) * min(m, n)))


def conv_rank(c_out: int, c_in: int, kh: int, kw: int, rank_scale: float) -> int:
    """r = max(1, round(rank_scale * c_out * kh)) for a (c_out, c_in, kh, kw) kernel."""
    _check_positive("conv_rank", c_out=c_out, c_in=c_in, kh=kh, kw=kw)
    return max(1, round(_check_scale("conv_rank", rank_scale) * c_out * kh))


def _matrix_dims(fn: str, shape: Shape) -> tuple[int, int]:
    shape = _shape(fn, shape)
    if len(shape) == 2:
        _check_positive(fn, m=shape[0], n=shape[1])
        return int(shape[0]), int(shape[1])
    if len(shape) == 4:
        _check_positive(fn, c_out=shape[0], c_in=shape[1], kh=shape[2], kw=shape[3])
        return int(shape[0]) * int(shape[2]), int(shape[1]) * int(shape[3])
    raise ValueError(f"[fnl.{fn}] a layer shape must be (m, n) or (c_out, c_in, kh, kw), got {shape!r}")


def rank_for(shape: Shape, rank_scale: float) -> int:
    """The rank rule for a linear (m, n) or conv (c_out, c_in, kh, kw) shape."""
    shape = _shape("rank_for", shape)
    _matrix_dims("rank_for", shape)
    return linear_rank(*shape, rank_scale) if len(shape) == 2 else conv_rank(*shape, rank_scale)


def dense_params(shape: Shape) -> int:
    """Parameters of the dense layer weight: m n, or c_out c_in kh kw."""
    rows, cols = _matrix_dims("dense_params", shape)
    return rows * cols


def factorized_params(shape: Shape, rank: int, depth: int = 0) -> int:
    """Parameters of U (rows x r), V (cols x r) and `depth` inner r x r matrices."""
    rows, cols = _matrix_dims("factorized_params", shape)
    _check_positive("factorized_params", rank=rank)
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise TypeError(f"[fnl.factorized_params] depth must be an int, got {type(depth).__name__}")
    if depth < 0:
        raise ValueError(f"[fnl.factorized_params] depth must be an int >= 0, got {depth!r}")
    rank, depth = int(rank), int(depth)
    return rank * (rows + cols) + depth * rank * rank


def parameter_ratio(shapes: Iterable[Shape], rank_scale: float) -> float:
    """Factorized over dense parameters for the layers `shapes` at one rank-scale."""
    shapes = _shapes("parameter_ratio", shapes)
    _check_scale("parameter_ratio", rank_scale)
    dense = sum(dense_params(s) for s in shapes)
    return sum(factorized_params(s, rank_for(s, rank_scale)) for s in shapes) / dense


def rank_scale_for_ratio(shapes: Iterable[Shape], target_ratio: float, *, tol: float = 1e-6) -> float:
    """The largest rank-scale whose parameter ratio over `shapes` does not exceed
    `target_ratio`, by bisection (the ratio is a non-decreasing step function of the scale).
    Raises ValueError when even rank 1 everywhere exceeds the target."""
    shapes = _shapes("rank_scale_for_ratio", shapes)
    target = _check_real("rank_scale_for_ratio", "target_ratio", target_ratio)
    tol = _check_real("rank_scale_for_ratio", "tol", tol)
    for sh in shapes:
        _matrix_dims("rank_scale_for_ratio", sh)
    lo = 1e-9
    if parameter_ratio(shapes, lo) > target:
        raise ValueError(
            f"[fnl.rank_scale_for_ratio] target_ratio={target} is below the rank-1 ratio "
            f"{parameter_ratio(shapes, lo):.6g} of these layers"
        )
    hi = 1.0
    while parameter_ratio(shapes, hi) <= target and hi < 1e6:
        lo, hi = hi, hi * 2
    if parameter_ratio(shapes, hi) <= target:
        return hi
    while hi - lo > tol * max(1.0, lo):
        mid = 0.5 * (lo + hi)
        if parameter_ratio(shapes, mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo
