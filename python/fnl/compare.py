"""`fnl compare`: the ablation of Khodak, Tenenholtz, Mackey and Fusi (ICLR 2021, Table 1 and Section 4) on one dataset.

Variants (same model, data, optimizer, schedule and epochs; only factorization, factor
initialization and decay change):

    dense          the unfactorized model, L2 weight decay
    lowrank        low-rank, independent (Kaiming) factors, L2 decay on each factor
    lowrank-si     low-rank, spectral initialization (SI), L2 decay on each factor
    lowrank-fd     low-rank, independent factors, Frobenius decay (FD)
    lowrank-si-fd  low-rank, SI and FD (the paper's recipe)
    over           overcomplete (full, deep or wide), SI, L2 decay on each factor
    over-fd        overcomplete, SI, FD

Each variant is trained for every seed (``runs/<variant>/seed<k>/`` holds each run's
metrics.jsonl and model.npz); the folder then gets

* ``results.md``: the table (mean ± std test accuracy over seeds, parameters at test time:
  overcomplete models collapsed, training time) and which of the paper's orderings held;
* ``results.json``: every number (per run and aggregated);
* ``accuracy_vs_params.png``, ``training_curves.png`` (train loss and test accuracy per
  epoch), ``effective_step_size.png`` (mean over conv layers of lr0 / ||W||_F^2 per epoch, lr0
  the base learning rate: the schedule's common factor is left out so the curves show how
  each decay keeps the norms, as in Fig. 3 of the paper).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import experiment as ex
from .data import Dataset

__all__ = ["VARIANTS", "DEFAULT_SEEDS", "Variant", "default_config", "run_compare", "format_table", "orderings"]


@dataclass(frozen=True)
class Variant:
    label: str
    kind: str  # "dense" | "lowrank" | "over"
    init: str
    decay: str


VARIANTS: Dict[str, Variant] = {
    "dense": Variant("dense", "dense", "spectral", "weight"),
    "lowrank": Variant("low-rank", "lowrank", "independent", "weight"),
    "lowrank-si": Variant("low-rank + SI", "lowrank", "spectral", "weight"),
    "lowrank-fd": Variant("low-rank + FD", "lowrank", "independent", "frobenius"),
    "lowrank-si-fd": Variant("low-rank + SI & FD", "lowrank", "spectral", "frobenius"),
    "over": Variant("overcomplete", "over", "spectral", "weight"),
    "over-fd": Variant("overcomplete + FD", "over", "spectral", "frobenius"),
}

DEFAULT_SEEDS = (0, 1)


def default_config() -> ex.TrainConfig:
    """The shared settings of the default comparison (digits, a few minutes on 2 cores)."""
    return ex.TrainConfig()


def _label(key: str, overcomplete: str) -> str:
    label = VARIANTS[key].label
    if VARIANTS[key].kind == "over":
        label = label.replace("overcomplete", f"overcomplete ({overcomplete})")
    return label


def variant_config(base: ex.TrainConfig, key: str, seed: int, overcomplete: str = "full") -> ex.TrainConfig:
    v = VARIANTS[key]
    fact = {"dense": "dense", "lowrank": "lowrank", "over": overcomplete}[v.kind]
    return dataclasses.replace(base, factorization=fact, init=v.init, decay=v.decay, seed=int(seed),
                               rank_scale=base.rank_scale if v.kind == "lowrank" else None,
                               target_ratio=None).validate()


def _mean_std(values: Sequence[float]):
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std())


def _result_from_record(record: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    hist = record.get("history") or []
    last = hist[-1] if hist else {}
    return {"test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"),
            "params": record.get("params"), "params_test_time": record.get("params_test_time") or record.get("params"),
            "dense_params": record.get("dense_params"), "train_seconds": record.get("train_seconds"),
            "history": hist, "folder": str(folder)}


def _result(res: ex.RunResult) -> Dict[str, Any]:
    return {"test_accuracy": res.test_accuracy, "test_loss": res.test_loss, "params": res.params,
            "params_test_time": res.params_test_time, "dense_params": res.dense_params,
            "train_seconds": res.train_seconds, "history": res.history, "folder": str(res.out)}


def format_table(summary: Dict[str, Dict[str, Any]]) -> str:
    """The markdown table of the aggregated results."""
    lines = ["| variant | test accuracy (%) | parameters at test time | vs dense | training time (s) |",
             "|---|---:|---:|---:|---:|"]
    for s in summary.values():
        acc = f"{100 * s['accuracy_mean']:.2f} ± {100 * s['accuracy_std']:.2f}"
        ratio = f"{s['params_ratio']:.2f}x" if s.get("params_ratio") else ""
        secs = f"{s['seconds_mean']:.1f} ± {s['seconds_std']:.1f}"
        lines.append(f"| {s['label']} | {acc} | {s['params_test_time']:,} | {ratio} | {secs} |")
    return "\n".join(lines)


def orderings(summary: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The paper's three orderings, checked on the means (with the gap and the seeds' spread)."""
    out = []

    def check(claim: str, a: str, others: List[str]) -> None:
        if a not in summary or not all(o in summary for o in others):
            return
        best_other = max(others, key=lambda o: summary[o]["accuracy_mean"])
        gap = summary[a]["accuracy_mean"] - summary[best_other]["accuracy_mean"]
        spread = max(summary[a]["accuracy_std"], summary[best_other]["accuracy_std"])
        out.append({"claim": claim, "held": bool(gap > 0), "gap": gap, "spread": spread,
                    "against": summary[best_other]["label"],
                    "clear": bool(abs(gap) > spread)})

    check("low-rank + SI & FD is above the other low-rank variants", "lowrank-si-fd",
          ["lowrank", "lowrank-si", "lowrank-fd"])
    check("overcomplete with FD is above dense", "over-fd", ["dense"])
    check("FD is necessary for overcomplete training (overcomplete + FD above overcomplete without FD)",
          "over-fd", ["over"])
    return out


def _ordering_lines(items: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for o in items:
        verdict = "held" if o["held"] else "did not hold"
        note = "" if o["clear"] else " (within the seeds' spread: not a clear difference)"
        lines.append(f"- {o['claim']}: **{verdict}** ({100 * o['gap']:+.2f} points vs {o['against']}, "
                     f"largest std {100 * o['spread']:.2f}){note}")
    return lines


def _check_out(out: Path, resume: bool, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ex.RunError(f"[fnl.compare] --out '{out}' exists and is not a folder")
    if out.is_dir() and not (resume or force):
        used = [n for n in ("results.md", "results.json", "runs") if (out / n).exists()]
        if used:
            raise ex.RunError(f"[fnl.compare] '{out}' already holds a comparison ({', '.join(used)}): use --resume "
                              f"to reuse its finished runs, --force to start over, or another --out")


def run_compare(out, *, overrides: Optional[Dict[str, Any]] = None, overcomplete: str = "full",
                seeds: Optional[Sequence[int]] = None, variants: Optional[Sequence[str]] = None,
                resume: bool = False, force: bool = False, progress: bool = True,
                log: Optional[Callable[[str], None]] = print, dataset: Optional[Dataset] = None,
                command: Optional[str] = None) -> Dict[str, Any]:
    """Runs the comparison into ``out`` and returns the results dict (also in results.json).

    overrides: TrainConfig fields applied to every variant (model, width, epochs, lr, ...).
    resume: reuse finished runs (model.npz with the same configuration) and resume
    interrupted ones; force: retrain everything. Everything is validated before a file is
    written."""
    say = log or (lambda s: None)
    out = Path(out).expanduser()
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ex.TrainConfig)}
    if unknown:
        raise ex.RunError(f"[fnl.compare] unknown settings {sorted(unknown)}")
    if overcomplete not in ex.OVERCOMPLETE:
        raise ex.RunError(f"[fnl.compare] overcomplete must be one of {', '.join(ex.OVERCOMPLETE)}, got {overcomplete!r}")
    base = dataclasses.replace(default_config(), **overrides)
    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    keys = list(VARIANTS if variants is None else variants)
    bad = [k for k in keys if k not in VARIANTS]
    if bad or not keys:
        raise ex.RunError(f"[fnl.compare] variants must be some of {', '.join(VARIANTS)}, got {keys!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ex.RunError(f"[fnl.compare] seeds must be ints >= 0, got {seeds!r}")
    plan = [(k, s, variant_config(base, k, s, overcomplete)) for k in keys for s in seeds]
    _check_out(out, resume, force)
    ds = dataset if dataset is not None else ex._load_data(base)

    say(f"data: {ds.describe()}")
    say(f"compare: {len(keys)} variants x {len(seeds)} seeds; shared settings: {base.model} (width {base.width:g}), "
        f"{base.optimizer} lr {base.effective_lr:g}, weight decay {base.effective_weight_decay:g}, {base.schedule} "
        f"schedule, {base.epochs} epochs, batch {base.batch_size}; low-rank rank-scale {base.rank_scale:g}; "
        f"overcomplete {overcomplete}")
    out.mkdir(parents=True, exist_ok=True)
    runs: Dict[str, List[Dict[str, Any]]] = {k: [] for k in keys}
    wall0 = time.perf_counter()
    for i, (key, seed, cfg) in enumerate(plan, start=1):
        folder = out / "runs" / key / f"seed{seed}"
        result = None
        if resume and (folder / ex.MODEL_NAME).exists():
            try:
                _, record, saved = ex.read_run_checkpoint(folder / ex.MODEL_NAME)
                if saved == cfg and record.get("finished"):
                    result = _result_from_record(record, folder)
                    say(f"[{i}/{len(plan)}] {_label(key, overcomplete)}, seed {seed}: reusing the finished run")
            except (ValueError, OSError) as exc:
                say(f"[{i}/{len(plan)}] {folder / ex.MODEL_NAME} is not reusable ({exc}); training again")
        if result is None:
            can_resume = False
            if resume and (folder / ex.CHECKPOINT_NAME).exists():
                try:
                    _, _, saved = ex.read_run_checkpoint(folder / ex.CHECKPOINT_NAME)
                    can_resume = dataclasses.replace(saved, epochs=cfg.epochs) == cfg
                except (ValueError, OSError):
                    can_resume = False
            say(f"[{i}/{len(plan)}] {_label(key, overcomplete)}, seed {seed}" + (" (resumed)" if can_resume else ""))
            if can_resume:
                res = ex.run(None, folder, resume=True, epochs=cfg.epochs, progress=progress, log=None,
                             dataset=ds, leave=False)
            else:
                res = ex.run(cfg, folder, force=True, progress=progress, log=None, dataset=ds, leave=False)
            result = _result(res)
            say(f"    test accuracy {100 * res.test_accuracy:.2f}%, {res.params_test_time:,} parameters at test "
                f"time, {res.train_seconds:.1f}s")
        runs[key].append(result)
    wall = time.perf_counter() - wall0

    dense_params = None
    summary: Dict[str, Dict[str, Any]] = {}
    for key in keys:
        rs = runs[key]
        acc_m, acc_s = _mean_std([r["test_accuracy"] for r in rs])
        sec_m, sec_s = _mean_std([r["train_seconds"] for r in rs])
        summary[key] = {"label": _label(key, overcomplete), "accuracy_mean": acc_m, "accuracy_std": acc_s,
                        "accuracies": [r["test_accuracy"] for r in rs],
                        "params_test_time": int(rs[0]["params_test_time"]), "params_training": int(rs[0]["params"]),
                        "seconds_mean": sec_m, "seconds_std": sec_s}
        dense_params = dense_params or rs[0].get("dense_params")
    for s in summary.values():
        s["params_ratio"] = s["params_test_time"] / dense_params if dense_params else None
    table = format_table(summary)
    checks = orderings(summary)
    cmd = command or ("fnl " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "fnl compare")
    header = [f"# fnl compare: {ds.name}", "",
              f"Command: `{cmd}`", "",
              f"Data: {ds.describe()}. Model: {base.model} (width {base.width:g}), {base.optimizer} "
              f"(lr {base.effective_lr:g}, momentum {base.momentum:g}, weight decay {base.effective_weight_decay:g}), "
              f"{base.schedule} schedule{f' with {base.warmup} warm-up epochs' if base.warmup else ''}, "
              f"{base.epochs} epochs, batch {base.batch_size}"
              f"{', augmentation ' + ('on' if base.augment else 'off')}; low-rank rank-scale {base.rank_scale:g}; "
              f"overcomplete form: {overcomplete}. Seeds: {', '.join(map(str, seeds))}. "
              f"Mean ± std over seeds; parameters at test time count overcomplete models after collapsing; "
              f"training time is the time of the training steps per run (wall time of the whole comparison "
              f"{wall:.0f}s).", ""]
    body = header + [table, ""]
    if checks:
        body += ["The paper's orderings on this data:", ""] + _ordering_lines(checks) + [""]
    body += ["Plots: accuracy_vs_params.png, training_curves.png, effective_step_size.png.", ""]
    (out / "results.md").write_text("\n".join(body), encoding="utf-8")
    results = {"dataset": ds.metadata(), "base_config": base.to_dict(), "overcomplete": overcomplete,
               "seeds": seeds, "variants": keys, "summary": summary, "orderings": checks, "runs": runs,
               "wall_seconds": wall, "command": cmd}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=lambda o: o.item()
                                                 if isinstance(o, np.generic) else str(o)), encoding="utf-8")
    _plots(out, summary, runs)
    say("")
    say(table)
    if checks:
        say("")
        for line in _ordering_lines(checks):
            say(line.replace("**", ""))
    say(f"\nwrote {out / 'results.md'}, results.json and plots ({wall:.0f}s)")
    return results


def _plots(out: Path, summary: Dict[str, Dict[str, Any]], runs: Dict[str, List[Dict[str, Any]]]) -> None:
    from . import plots
    acc = {s["label"]: {"params": s["params_test_time"], "accuracy": [100 * a for a in s["accuracies"]]}
           for s in summary.values()}
    plots.plot_accuracy_vs_params(acc, out / "accuracy_vs_params.png")
    curves, steps = {}, {}
    for key, rs in runs.items():
        label = summary[key]["label"]
        curves[label] = {
            "train_loss": [[h["train_loss"] for h in r["history"]] for r in rs],
            "test_accuracy": [[100 * h["test_accuracy"] for h in r["history"]] for r in rs],
        }
        eff = [[h.get("effective_step_base") or math.nan for h in r["history"]] for r in rs]
        steps[label] = eff
    plots.plot_training_curves(curves, out / "training_curves.png",
                               labels={"train_loss": "training loss", "test_accuracy": "test accuracy (%)"})
    plots.plot_effective_step_size(steps, out / "effective_step_size.png",
                                   title="effective step size lr0 / ||W||_F^2 (base lr, mean over conv layers)")
