"""fnl.plots: PNG files are written for plain dicts of numbers; bad inputs are named."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from fnl.plots import plot_accuracy_vs_params, plot_effective_step_size, plot_training_curves  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = Path(path).read_bytes()
    return data[:8] == PNG and b"IEND" in data[-12:] and len(data) > 1000


def test_accuracy_vs_params(tmp_path):
    results = {
        "dense": {"params": 120_000, "accuracy": [97.1, 97.8, 97.5]},
        "low-rank": {"params": 30_000, "accuracy": [94.0, 95.2]},
        "low-rank + SI & FD": {"params": 30_000, "accuracy": 96.4, "accuracy_std": 0.3},
        "overcomplete + FD": {"params": 120_000, "accuracy": 98.0},
    }
    out = plot_accuracy_vs_params(results, tmp_path / "sub" / "dir" / "acc.png", title="digits")
    assert out == tmp_path / "sub" / "dir" / "acc.png" and _is_png(out)
    assert _is_png(plot_accuracy_vs_params(results, str(tmp_path / "lin.png"), log_x=False))


def test_training_curves(tmp_path):
    curves = {
        "dense": {"train_loss": [[2.0, 1.0, 0.5], [2.1, 0.9, 0.6]], "test_accuracy": [[50, 80, 90], [55, 82, 91]]},
        "low-rank": {"train_loss": [2.2, 1.3, 0.8, 0.7], "test_accuracy": [40, 70, 85, 88]},
        "ragged": {"train_loss": [[2.0, 1.0, 0.5], [2.0, 1.0]]},  # seeds of unequal length
    }
    out = plot_training_curves(curves, tmp_path / "curves.png", labels={"test_accuracy": "test acc (%)"})
    assert _is_png(out)
    assert _is_png(plot_training_curves(curves, tmp_path / "one.png", metrics=["train_loss"]))


def test_effective_step_size(tmp_path):
    steps = {
        "dense": [0.1, 0.08, 0.05, 0.01],
        "low-rank + FD": [[0.2, 0.1, 0.05], [0.25, 0.12, 0.04]],
        "explicit x": {"x": [100, 200, 300], "y": [1e-3, 5e-4, 2e-4]},
        "with zeros": [0.0, 0.1, -1.0, 0.05],  # non-positive values are dropped on the log axis
        "all zero": [0.0, 0.0],
    }
    assert _is_png(plot_effective_step_size(steps, tmp_path / "ess.png", xlabel="step"))
    assert _is_png(plot_effective_step_size(steps, tmp_path / "lin.png", log_y=False))


@pytest.mark.parametrize("call, match", [
    (lambda p: plot_accuracy_vs_params({}, p), r"results must be a non-empty dict"),
    (lambda p: plot_accuracy_vs_params([1], p), r"results must be a non-empty dict"),
    (lambda p: plot_accuracy_vs_params({"a": {"params": 1}}, p), r"results\['a'\] needs 'params' and 'accuracy'"),
    (lambda p: plot_accuracy_vs_params({"a": {"params": "x", "accuracy": 1}}, p), r"must be numbers"),
    (lambda p: plot_accuracy_vs_params({"a": {"params": 10, "accuracy": []}}, p), r"must be numbers"),
    (lambda p: plot_accuracy_vs_params({"a": {"params": 0, "accuracy": 1}}, p), r"params must be > 0"),
    (lambda p: plot_training_curves({}, p), r"curves must be a non-empty dict"),
    (lambda p: plot_training_curves({"a": [1, 2]}, p), r"curves\['a'\] must be a dict"),
    (lambda p: plot_training_curves({"a": {"loss": [1]}}, p, metrics=["acc"]), r"none of the variants has any"),
    (lambda p: plot_training_curves({"a": {"loss": []}}, p), r"non-empty list"),
    (lambda p: plot_training_curves({"a": {"loss": ["x", "y"]}}, p), r"must hold numbers"),
    (lambda p: plot_training_curves({"a": {"loss": [[]]}}, p), r"must hold numbers"),
    (lambda p: plot_training_curves({"a": {}}, p), r"no metrics to plot"),
    (lambda p: plot_effective_step_size({}, p), r"steps must be a non-empty dict"),
    (lambda p: plot_effective_step_size({"a": {"x": [1]}}, p), r"needs 'y'"),
    (lambda p: plot_effective_step_size({"a": {"x": [1, 2], "y": [1.0]}}, p), r"x has 2 values, y has 1"),
    (lambda p: plot_effective_step_size({"a": 3.0}, p), r"non-empty list"),
])
def test_bad_inputs(tmp_path, call, match):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"\[fnl.plots\.\w+\] .*" + match):
        call(out)
    assert not out.exists()


def test_plots_do_not_import_fnl_nn():
    source = Path(__import__("fnl.plots").plots.__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            assert mod not in (".nn", "fnl.nn", "..nn") and not mod.startswith(("fnl.nn.", ".nn.")), mod
            assert not (node.level and node.module is None and any(a.name == "nn" for a in node.names))
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("fnl") for a in node.names)


def test_missing_matplotlib_is_named(tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"\[fnl.plots\] plotting needs matplotlib"):
        plot_effective_step_size({"a": [1.0]}, tmp_path / "x.png")
