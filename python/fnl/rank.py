"""Rank rules and parameter counts for factorized layers.

A linear layer W (m x n) factorized at rank r as U V^T keeps r (m + n) parameters instead of
m n; a conv kernel (c_out, c_in, kh, kw) in the matrix layout (c_out*kh) x (c_in*kw) keeps
r (c_out*kh + c_in*kw) instead of c_out*c_in*kh*kw. The *rank-scale* s sets the rank relative
to the layer: r = max(1, round(s * min(m, n))) for linear layers and
r = max(1, round(s * c_out * kh)) for convolutions (the rule of Khodak et al., 2021).
"""
from __future__ import annotations

from typing import Iterable, Sequence

Shape = Sequence[int]


def _check_positive(fn: str, **dims: int) -> None:
    for name, d in dims.items():
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"[fnl.{fn}] {name} must be an int >= 1, got {d!r}")


def _check_scale(fn: str, s: float) -> float:
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise TypeError(f"[fnl.{fn}] rank_scale must be a real number, got {type(s).__name__}") from None
    if not (s > 0 and s < float("inf")):
        raise ValueError(f"[fnl.{fn}] rank_scale must be a finite number > 0, got {s!r}")
    return s


def linear_rank(m: int, n: int, rank_scale: float) -> int:
    """r = max(1, round(rank_scale * min(m, n))) for an m x n matrix."""
    _check_positive("linear_rank", m=m, n=n)
    return max(1, round(_check_scale("linear_rank", rank_scale) * min(m, n)))


def conv_rank(c_out: int, c_in: int, kh: int, kw: int, rank_scale: float) -> int:
    """r = max(1, round(rank_scale * c_out * kh)) for a (c_out, c_in, kh, kw) kernel."""
    _check_positive("conv_rank", c_out=c_out, c_in=c_in, kh=kh, kw=kw)
    return max(1, round(_check_scale("conv_rank", rank_scale) * c_out * kh))


def _matrix_dims(fn: str, shape: Shape) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) == 2:
        _check_positive(fn, m=shape[0], n=shape[1])
        return shape[0], shape[1]
    if len(shape) == 4:
        _check_positive(fn, c_out=shape[0], c_in=shape[1], kh=shape[2], kw=shape[3])
        return shape[0] * shape[2], shape[1] * shape[3]
    raise ValueError(f"[fnl.{fn}] a layer shape must be (m, n) or (c_out, c_in, kh, kw), got {shape!r}")


def rank_for(shape: Shape, rank_scale: float) -> int:
    """The rank rule for a linear (m, n) or conv (c_out, c_in, kh, kw) shape."""
    shape = tuple(shape)
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
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"[fnl.factorized_params] depth must be an int >= 0, got {depth!r}")
    return rank * (rows + cols) + depth * rank * rank


def parameter_ratio(shapes: Iterable[Shape], rank_scale: float) -> float:
    """Factorized over dense parameters for the layers `shapes` at one rank-scale."""
    shapes = [tuple(s) for s in shapes]
    if not shapes:
        raise ValueError("[fnl.parameter_ratio] shapes must not be empty")
    dense = sum(dense_params(s) for s in shapes)
    return sum(factorized_params(s, rank_for(s, rank_scale)) for s in shapes) / dense


def rank_scale_for_ratio(shapes: Iterable[Shape], target_ratio: float, *, tol: float = 1e-6) -> float:
    """The largest rank-scale whose parameter ratio over `shapes` does not exceed
    `target_ratio`, by bisection (the ratio is a non-decreasing step function of the scale).
    Raises ValueError when even rank 1 everywhere exceeds the target."""
    shapes = [tuple(s) for s in shapes]
    if not shapes:
        raise ValueError("[fnl.rank_scale_for_ratio] shapes must not be empty")
    try:
        target = float(target_ratio)
    except (TypeError, ValueError):
        raise TypeError(f"[fnl.rank_scale_for_ratio] target_ratio must be a real number, got {target_ratio!r}") from None
    if not (target > 0 and target < float("inf")):
        raise ValueError(f"[fnl.rank_scale_for_ratio] target_ratio must be a finite number > 0, got {target_ratio!r}")
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
