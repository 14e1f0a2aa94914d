"""PNG plots for `fnl compare`, drawn with matplotlib's Agg renderer.

Functions take plain dicts/lists of numbers keyed by variant name and write one PNG each:

* plot_accuracy_vs_params: test accuracy (mean +- std over seeds) against parameters at test
  time, one marker per variant;
* plot_training_curves: per-epoch metrics (e.g. train loss, test accuracy) per variant, mean
  over seeds with a +-std band;
* plot_effective_step_size: the effective step size per variant over training (log scale).

They use matplotlib.figure.Figure directly (no pyplot, no global state, thread-safe) and
create the output folder when needed. matplotlib is imported lazily: importing fnl.plots
works without it; calling a function raises ImportError naming the package.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["plot_accuracy_vs_params", "plot_effective_step_size", "plot_training_curves"]

PathLike = Union[str, "os.PathLike[str]"]


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.4):
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("[fnl.plots] plotting needs matplotlib (pip install matplotlib)") from exc
    del matplotlib
    fig = Figure(figsize=(width * ncols, height), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save(fig, path: PathLike) -> Path:
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, format="png")
    return p


def _check_mapping(fn: str, name: str, data: Any) -> None:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"[fnl.plots.{fn}] {name} must be a non-empty dict keyed by variant, "
                         f"got {type(data).__name__ if not isinstance(data, Mapping) else 'an empty dict'}")


def _series(fn: str, what: str, values: Any) -> Tuple[np.ndarray, np.ndarray]:
    """A curve or a list of per-seed curves -> (mean, std) over seeds (ragged: truncated to
    the shortest run)."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise ValueError(f"[fnl.plots.{fn}] {what} must be a non-empty list of numbers or of "
                         f"per-seed lists, got {values!r:.80}")
    try:
        if all(isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str) for v in values):
            runs = [np.asarray(v, dtype=np.float64) for v in values]
            n = min(len(r) for r in runs)
            if n == 0:
                raise ValueError("empty run")
            stack = np.stack([r[:n] for r in runs])
            return stack.mean(axis=0), stack.std(axis=0)
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"[fnl.plots.{fn}] {what} must hold numbers, got {values!r:.80}") from None
    if arr.ndim != 1:
        raise ValueError(f"[fnl.plots.{fn}] {what} must be 1-D, got shape {arr.shape}")
    return arr, np.zeros_like(arr)


def _colors(n: int):
    from matplotlib import colormaps
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_accuracy_vs_params(results: Mapping[str, Mapping[str, Any]], path: PathLike, *,
                            title: Optional[str] = None, log_x: bool = True,
                            ylabel: str = "test accuracy (%)") -> Path:
    """Accuracy against parameters, one point with a std error bar per variant.

    results[variant] = {"params": number, "accuracy": number or list over seeds,
    optional "accuracy_std": number (used when accuracy is a single mean)}.
    """
    fn = "plot_accuracy_vs_params"
    _check_mapping(fn, "results", results)
    points = []
    for variant, r in results.items():
        if not isinstance(r, Mapping) or "params" not in r or "accuracy" not in r:
            raise ValueError(f"[fnl.plots.{fn}] results[{variant!r}] needs 'params' and 'accuracy'")
        acc = r["accuracy"]
        try:
            if isinstance(acc, (Sequence, np.ndarray)) and not isinstance(acc, str):
                a = np.asarray(acc, dtype=np.float64).ravel()
                if a.size == 0:
                    raise ValueError
                mean, std = float(a.mean()), float(a.std())
            else:
                mean, std = float(acc), float(r.get("accuracy_std", 0.0) or 0.0)
            params = float(r["params"])
        except (TypeError, ValueError):
            raise ValueError(f"[fnl.plots.{fn}] results[{variant!r}]: params and accuracy must be "
                             f"numbers (accuracy may be a non-empty list)") from None
        if not (params > 0 and math.isfinite(params)):
            raise ValueError(f"[fnl.plots.{fn}] results[{variant!r}]: params must be > 0, got {params}")
        points.append((str(variant), params, mean, std))
    fig, (ax,) = _figure()
    for (variant, params, mean, std), color in zip(points, _colors(len(points))):
        ax.errorbar([params], [mean], yerr=[std], fmt="o", capsize=4, color=color, label=variant)
        ax.annotate(variant, (params, mean), textcoords="offset points", xytext=(5, 5), fontsize=7)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("parameters at test time")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "accuracy vs parameters (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_training_curves(curves: Mapping[str, Mapping[str, Any]], path: PathLike, *,
                         metrics: Optional[Sequence[str]] = None, title: Optional[str] = None,
                         labels: Optional[Mapping[str, str]] = None) -> Path:
    """One subplot per metric, one line per variant (mean over seeds, shaded +-std).

    curves[variant][metric] = list of per-epoch values, or a list of such lists (one per
    seed). metrics defaults to the metrics of the first variant, in order; a variant missing
    a metric is skipped in that subplot. labels maps metric names to axis labels.
    """
    fn = "plot_training_curves"
    _check_mapping(fn, "curves", curves)
    for variant, m in curves.items():
        if not isinstance(m, Mapping):
            raise ValueError(f"[fnl.plots.{fn}] curves[{variant!r}] must be a dict of metric -> values")
    if metrics is None:
        metrics = list(next(iter(curves.values())).keys())
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"[fnl.plots.{fn}] no metrics to plot")
    if not any(metric in m for m in curves.values() for metric in metrics):
        raise ValueError(f"[fnl.plots.{fn}] none of the variants has any of the metrics {metrics}")
    labels = dict(labels or {})
    fig, axes = _figure(len(metrics), width=5.2)
    from matplotlib.ticker import MaxNLocator
    colors = _colors(len(curves))
    for ax, metric in zip(axes, metrics):
        for (variant, m), color in zip(curves.items(), colors):
            if metric not in m:
                continue
            mean, std = _series(fn, f"curves[{variant!r}][{metric!r}]", m[metric])
            x = np.arange(1, mean.size + 1)
            ax.plot(x, mean, color=color, label=str(variant), lw=1.5)
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(labels.get(metric, metric.replace("_", " ")))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title or "training curves (mean ± std over seeds)")
    return _save(fig, path)


def plot_effective_step_size(steps: Mapping[str, Any], path: PathLike, *,
                             title: Optional[str] = None, xlabel: str = "epoch",
                             log_y: bool = True) -> Path:
    """Effective step size per variant over training.

    steps[variant] = a list of values over training (x = 1, 2, ...), a list of per-seed lists
    (mean +- std shown), or {"x": [...], "y": values} with explicit x positions. Non-positive
    values are dropped from a log-scale plot.
    """
    fn = "plot_effective_step_size"
    _check_mapping(fn, "steps", steps)
    fig, (ax,) = _figure()
    for (variant, s), color in zip(steps.items(), _colors(len(steps))):
        if isinstance(s, Mapping):
            if "y" not in s:
                raise ValueError(f"[fnl.plots.{fn}] steps[{variant!r}] as a dict needs 'y' (and optionally 'x')")
            mean, std = _series(fn, f"steps[{variant!r}]['y']", s["y"])
            x = np.asarray(s.get("x", np.arange(1, mean.size + 1)), dtype=np.float64)
            if x.shape != mean.shape:
                raise ValueError(f"[fnl.plots.{fn}] steps[{variant!r}]: x has {x.size} values, y has {mean.size}")
        else:
            mean, std = _series(fn, f"steps[{variant!r}]", s)
            x = np.arange(1, mean.size + 1, dtype=np.float64)
        keep = np.isfinite(mean) & ((mean > 0) if log_y else True)
        if not keep.any():
            continue
        ax.plot(x[keep], mean[keep], color=color, label=str(variant), lw=1.5)
        if np.any(std[keep] > 0):
            lo = mean[keep] - std[keep]
            if log_y:
                lo = np.maximum(lo, mean[keep] * 1e-3)
            ax.fill_between(x[keep], lo, mean[keep] + std[keep], color=color, alpha=0.15, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("effective step size")
    ax.set_title(title or "effective step size per variant")
    ax.grid(True, alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
