"""The `fnl` command (console script and ``python -m fnl``).

    fnl train    train one model variant (dense, low-rank, overcomplete) with SI/FD options
    fnl compare  the ablation of Khodak et al. (ICLR 2021) on one dataset: a table and plots
    fnl export   collapse a trained factorized/overcomplete model into a plain dense model file
    fnl demo     (when fnl.demo is installed) the matrix-level SI / FD demonstration

Every command has ``--help``. Errors (bad arguments, missing data, damaged checkpoints) print
one line on stderr and exit with a non-zero status (2 for usage errors, 1 otherwise) without
overwriting anything; Ctrl-C exits with 130 and the last epoch's checkpoint stays resumable.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "build_parser"]

_DESCRIPTION = "Factorized neural layers: train, compare and export factorized networks (Swift engine)."


# -- argument types -----------------------------------------------------------------------------
def _int_at_least(text: str, lo: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _nonneg_int(text: str) -> int:
    return _int_at_least(text, 0)


def _float(text: str, lo: float, hi: Optional[float], lo_open: bool, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {what}, got {text!r}") from None
    ok = v == v and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi) and v != float("inf")
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a number {what}, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    return _float(text, 0.0, None, True, "> 0")


def _nonneg_float(text: str) -> float:
    return _float(text, 0.0, None, False, ">= 0")


def _fraction(text: str) -> float:
    return _float(text, 0.0, 1.0, True, "in (0, 1]")


def _momentum(text: str) -> float:
    v = _float(text, 0.0, 1.0, False, "in [0, 1)")
    if v >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v


def _seeds(text: str) -> List[int]:
    """"3" -> [0, 1, 2]; "0,4,7" -> [0, 4, 7]."""
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
            if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise ValueError
            return seeds
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (e.g. 3) or distinct seeds >= 0 (e.g. 0,1,2), "
                                         f"got {text!r}") from None
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError(f"expected a seed count in 1..100, got {text!r}")
    return list(range(n))


def _variants(text: str) -> List[str]:
    from .compare import VARIANTS
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(VARIANTS)}; "
                                         f"unknown: {', '.join(unknown) or '(empty)'}")
    return list(dict.fromkeys(keys))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: 'fnl train: error: ... (see fnl train --help)'."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- parsers ------------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser, defaults, *, compare: bool) -> None:
    """Options shared by train and compare (defaults None: 'not given', resolved later)."""
    from . import experiment as ex
    d = defaults
    g = p.add_argument_group("data and model")
    g.add_argument("--data", default=None, metavar="NAME|PATH",
                   help="digits (embedded, default), cifar10 or cifar100 (with --data-path), or a path to an "
                        ".npz file (images + labels) or an extracted CIFAR python folder")
    g.add_argument("--data-path", default=None, metavar="PATH",
                   help="folder of the extracted CIFAR python pickles (for --data cifar10/cifar100)")
    g.add_argument("--no-augment", action="store_true", default=None,
                   help="disable the dataset's augmentation (random crop with padding; flips for CIFAR)")
    g.add_argument("--model", default=None, choices=ex.MODELS,
                   help=f"network (default {d.model}); vgg-small = {ex.VGG_SMALL}")
    g.add_argument("--width", default=None, type=_positive_float,
                   help=f"channel multiplier of the model (default {d.width:g})")
    if not compare:
        g = p.add_argument_group("factorization")
        g.add_argument("--factorization", default=None, choices=ex.FACTORIZATIONS,
                       help="dense; lowrank (with --rank-scale or --target-ratio); overcomplete full "
                            "(r = c_out*k), deep (full + inner identity), wide (3x full) "
                            f"(default {d.factorization})")
        g.add_argument("--rank-scale", default=None, type=_fraction,
                       help=f"low-rank: r = round(s * c_out * k) for convs, round(s * min(m, n)) for linear "
                            f"layers (default {d.rank_scale:g})")
        g.add_argument("--target-ratio", default=None, type=_fraction,
                       help="low-rank: pick the rank-scale whose factorized/dense parameter ratio over the "
                            "replaced layers is at most this (instead of --rank-scale)")
        g.add_argument("--depth", default=None, type=_positive_int,
                       help=f"deep overcomplete: number of inner identity matrices (default {d.depth})")
        g.add_argument("--init", default=None, choices=ex.INITS,
                       help=f"factor initialization: spectral (SI) or independent Kaiming factors "
                            f"(default {d.init})")
        g.add_argument("--decay", default=None, choices=ex.DECAYS,
                       help="weight (L2 on each factor), frobenius (FD on factorized products), crs "
                            f"(L2 scaled by compression), none (default {d.decay})")
    else:
        g = p.add_argument_group("factorization")
        g.add_argument("--rank-scale", default=None, type=_fraction,
                       help=f"rank-scale of the low-rank variants (default {d.rank_scale:g})")
        g.add_argument("--overcomplete", default=None, choices=ex.OVERCOMPLETE,
                       help="form of the overcomplete variants (default full)")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default=None, choices=ex.OPTIMIZERS,
                   help=f"optimizer (default {d.optimizer})")
    g.add_argument("--lr", default=None, type=_positive_float,
                   help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in ex.DEFAULT_LR.items()) + ")")
    g.add_argument("--weight-decay", default=None, type=_nonneg_float,
                   help="decay coefficient lambda (default: " +
                        ", ".join(f"{k} {v:g}" for k, v in ex.DEFAULT_WEIGHT_DECAY.items()) + ")")
    g.add_argument("--momentum", default=None, type=_momentum, help=f"SGD momentum (default {d.momentum:g})")
    g.add_argument("--nesterov", action="store_true", default=None, help="SGD with Nesterov momentum")
    g.add_argument("--schedule", default=None, choices=ex.SCHEDULES,
                   help=f"learning-rate schedule, stepped per iteration: cosine to 0, step (x0.1 at 50%% and "
                        f"75%%), constant (default {d.schedule})")
    g.add_argument("--warmup", default=None, type=_nonneg_int,
                   help="epochs of linear warm-up from lr/10 (default 0)")
    g.add_argument("--epochs", default=None, type=_positive_int, help=f"epochs (default {d.epochs})")
    g.add_argument("--batch-size", default=None, type=_positive_int, help=f"batch size (default {d.batch_size})")
    g.add_argument("--max-batches", default=None, type=_positive_int,
                   help="stop every epoch after this many batches (tiny runs, tests)")
    g = p.add_argument_group("run")
    g.add_argument("--threads", default=None, type=_positive_int,
                   help="threads of the engine and BLAS (default: the engine's choice)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run(s) in --out from the last checkpoint" if not compare else
                        "reuse the finished runs in --out and resume the unfinished ones")
    g.add_argument("--force", action="store_true", help="overwrite the results already in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch instead)")


def build_parser() -> argparse.ArgumentParser:
    from . import compare as cmp
    from . import experiment as ex
    d = ex.TrainConfig()
    parser = _Parser(prog="fnl", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="command")

    t = sub.add_parser("train", help="train one model (dense, low-rank or overcomplete; SI / FD options)",
                       description="Train one model variant and save it. Defaults: a low-rank ResNet-20 "
                                   f"(rank-scale {d.rank_scale:g}) with spectral initialization and Frobenius "
                                   "decay on the embedded digits data. Writes metrics.jsonl, checkpoint.npz "
                                   "(every epoch) and model.npz into --out, and prints 'test accuracy: NN.NN%'.")
    _add_common(t, d, compare=False)
    t.add_argument("--seed", default=None, type=_nonneg_int, help=f"seed (default {d.seed})")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/<model>-<factorization>-s<seed>)")
    t.add_argument("--stop-after", default=None, type=_positive_int, metavar="EPOCH",
                   help="stop after this epoch as if interrupted (continue later with --resume)")

    c = sub.add_parser("compare", help="the paper's ablation: dense / low-rank (SI, FD) / overcomplete, "
                                       "a table and plots",
                       description="Train every variant over several seeds on one dataset and write "
                                   "results.md (mean ± std test accuracy, parameters at test time, training "
                                   "time), results.json and PNG plots into --out; prints the table. Variants: "
                                   + "; ".join(f"{k} = {v.label}" for k, v in cmp.VARIANTS.items()) + ".")
    cd = cmp.default_config()
    _add_common(c, cd, compare=True)
    c.add_argument("--seeds", default=None, type=_seeds,
                   help=f"number of seeds (0..N-1) or a list such as 0,1,2 (default {len(cmp.DEFAULT_SEEDS)})")
    c.add_argument("--variants", default=None, type=_variants,
                   help=f"comma-separated subset of {','.join(cmp.VARIANTS)} (default: all)")
    c.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/compare)")

    e = sub.add_parser("export", help="collapse a trained factorized/overcomplete model into a dense model file",
                       description="Load a model saved by `fnl train` (model.npz / checkpoint.npz, or the run "
                                   "folder), multiply its factors back into plain dense layers and save it in "
                                   "the same checkpoint format; reports the parameters and the largest "
                                   "difference between the two models' outputs on random inputs.")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="a model file or a run folder (uses model.npz, "
                                                           "else checkpoint.npz)")
    e.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: <run folder>/model-dense.npz or <file stem>-dense.npz)")
    e.add_argument("--samples", default=64, type=_positive_int,
                   help="random inputs used to compare the outputs (default 64)")
    e.add_argument("--seed", default=0, type=_nonneg_int, help="seed of the random inputs (default 0)")
    e.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    e.add_argument("--threads", default=None, type=_positive_int, help="engine threads")

    if importlib.util.find_spec("fnl.demo") is not None:
        sub.add_parser("demo", help="SI vs random factors and Frobenius decay vs weight decay on a matrix "
                                    "problem (a table)", add_help=False)
    return parser


# -- helpers ------------------------------------------------------------------------------------
class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    return " ".join(text.split())


def _set_threads(n: Optional[int]) -> None:
    if n is not None:
        from . import set_num_threads
        set_num_threads(n)


_CFG_FIELDS = {
    "model": "model", "width": "width", "data": "data", "data_path": "data_path", "factorization": "factorization",
    "rank_scale": "rank_scale", "target_ratio": "target_ratio", "depth": "depth", "init": "init", "decay": "decay",
    "weight_decay": "weight_decay", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum",
    "nesterov": "nesterov", "schedule": "schedule", "warmup": "warmup", "epochs": "epochs",
    "batch_size": "batch_size", "seed": "seed", "max_batches": "max_batches",
}


def _given(args: argparse.Namespace) -> Dict[str, Any]:
    """The TrainConfig fields set on the command line."""
    out = {}
    for attr, fld in _CFG_FIELDS.items():
        v = getattr(args, attr, None)
        if v is not None:
            out[fld] = v
    if getattr(args, "no_augment", None):
        out["augment"] = False
    return out


def _train_config(args: argparse.Namespace):
    from .experiment import TrainConfig
    given = _given(args)
    if "target_ratio" in given:
        if "rank_scale" in given:
            raise CommandError("give either --rank-scale or --target-ratio, not both")
        given["rank_scale"] = None
    fact = given.get("factorization", TrainConfig.factorization)
    if fact != "lowrank":
        for opt in ("rank_scale", "target_ratio"):
            if given.get(opt) is not None:
                raise CommandError(f"--{opt.replace('_', '-')} applies to --factorization lowrank, "
                                   f"not {fact}")
    if "depth" in given and fact != "deep":
        raise CommandError(f"--depth applies to --factorization deep, not {fact}")
    if fact == "dense":
        for opt in ("init",):
            if opt in given:
                raise CommandError(f"--{opt} applies to factorized models, not --factorization dense")
    return TrainConfig(**given).validate()


def _default_train_out(cfg) -> Path:
    return Path("runs") / f"{cfg.model}-{cfg.factorization}-s{cfg.seed}"


# -- commands -----------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from . import experiment as ex
    _set_threads(args.threads)
    if args.resume:
        if args.out is None:
            raise CommandError("--resume needs --out (the folder of the run to continue)")
        if args.force:
            raise CommandError("--resume and --force exclude each other")
        out = Path(args.out)
        cp = out / ex.CHECKPOINT_NAME
        if not cp.exists():
            raise CommandError(f"cannot resume: no {ex.CHECKPOINT_NAME} in '{out}'")
        _, record, saved = ex.read_run_checkpoint(cp)
        given = _given(args)
        given.pop("epochs", None)
        for fld, v in given.items():
            if getattr(saved, fld) != v:
                raise CommandError(f"--{fld.replace('_', '-')} {v!r} differs from the run being resumed "
                                   f"({getattr(saved, fld)!r}); a resumed run keeps its configuration "
                                   f"(only --epochs may change)")
        result = ex.run(None, out, resume=True, epochs=args.epochs, stop_after=args.stop_after,
                        progress=not args.quiet)
    else:
        cfg = _train_config(args)
        out = Path(args.out) if args.out is not None else _default_train_out(cfg)
        result = ex.run(cfg, out, force=args.force, stop_after=args.stop_after, progress=not args.quiet)
    if result.finished:
        extra = ""
        if result.params_test_time != result.params:
            extra = f"; {result.params_test_time:,} after collapsing (fnl export)"
        print(f"saved {out / ex.MODEL_NAME} ({result.params:,} parameters{extra}; "
              f"dense model: {result.dense_params:,}); metrics in {out / ex.METRICS_NAME}")
    else:
        print(f"stopped after epoch {result.epoch}/{result.config.epochs}; continue with: "
              f"fnl train --out {out} --resume")
    print(f"training time: {result.train_seconds:.1f}s")
    print(f"test accuracy: {100 * result.test_accuracy:.2f}%")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import compare as cmp
    _set_threads(args.threads)
    given = _given(args)
    for fld in ("factorization", "init", "decay", "target_ratio", "depth", "seed"):
        given.pop(fld, None)
    out = Path(args.out) if args.out is not None else Path("runs") / "compare"
    if args.resume and args.force:
        raise CommandError("--resume and --force exclude each other")
    cmp.run_compare(out, overrides=given, overcomplete=args.overcomplete or "full",
                    seeds=args.seeds, variants=args.variants, resume=args.resume, force=args.force,
                    progress=not args.quiet)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from . import experiment as ex
    from .factorization import collapse
    import numpy as np
    _set_threads(args.threads)
    src = Path(args.checkpoint).expanduser()
    if src.is_dir():
        cand = [src / ex.MODEL_NAME, src / ex.CHECKPOINT_NAME]
        found = [p for p in cand if p.exists()]
        if not found:
            raise CommandError(f"'{src}' holds no {ex.MODEL_NAME} or {ex.CHECKPOINT_NAME}")
        src_file = found[0]
        default_out = src / "model-dense.npz"
    else:
        if not src.exists():
            raise CommandError(f"no such checkpoint: '{src}'")
        src_file = src
        default_out = src.with_name(src.name[:-4] + "-dense.npz" if src.name.endswith(".npz") else src.name + "-dense.npz")
    dst = Path(args.out).expanduser() if args.out is not None else default_out
    if dst.resolve() == src_file.resolve():
        raise CommandError(f"--out '{dst}' is the input file; choose another name")
    if dst.exists() and not args.force:
        raise CommandError(f"'{dst}' exists; use --force to overwrite it or choose another --out")
    if dst.is_dir():
        raise CommandError(f"--out '{dst}' is a folder; give a file name")
    if not dst.parent.is_dir():
        raise CommandError(f"the folder of --out '{dst}' does not exist")
    model, cfg, record = ex.load_model(src_file)
    dense = collapse(model).eval()
    arch = record["architecture"]
    size = arch.get("image_size") or [8, 8]
    x = np.random.default_rng(args.seed).standard_normal(
        (args.samples, arch["in_channels"], int(size[0]), int(size[1]))).astype(np.float32)
    y0 = ex.evaluate_logits(model, x)
    y1 = ex.evaluate_logits(dense, x)
    diff = float(np.max(np.abs(y0.astype(np.float64) - y1)))
    scale = float(np.max(np.abs(y0))) if y0.size else 1.0
    import dataclasses
    dense_cfg = dataclasses.replace(cfg, factorization="dense", rank_scale=None, target_ratio=None)
    rec = dict(record)
    rec["exported_from"] = {"file": str(src_file), "factorization": record.get("factorization"),
                            "params": model.num_parameters(), "ranks": record.get("ranks")}
    rec["factorization"] = {"kind": "dense", "init": cfg.init, "rank_scale": None, "target_ratio": None,
                            "depth": cfg.depth, "collapsed_from": cfg.factorization}
    ex.save_model(dst, dense, dense_cfg, rec)
    kind = "dense already" if cfg.factorization == "dense" else cfg.factorization
    print(f"loaded {src_file}: {cfg.model}, {kind}, {model.num_parameters():,} parameters")
    print(f"collapsed: {dense.num_parameters():,} parameters in plain dense layers "
          f"({dense.num_parameters() / model.num_parameters():.1%} of the trained model)")
    print(f"max abs difference of the outputs on {args.samples} random inputs: {diff:.3g} "
          f"(largest |output| {scale:.3g})")
    print(f"saved {dst}")
    tol = 1e-3 * max(1.0, scale)
    if not diff <= tol:
        print(f"fnl export: error: the collapsed model's outputs differ by {diff:.3g} (> {tol:.3g})",
              file=sys.stderr)
        return 1
    return 0


def _cmd_demo(rest: List[str]) -> int:
    if importlib.util.find_spec("fnl.demo") is None:
        raise CommandError("the demo is not installed in this version of fnl")
    from . import demo  # type: ignore[attr-defined]
    return demo.run(rest)


# -- entry point --------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs `fnl <command> [options]`; returns the exit status (0 ok, 1 error, 2 usage, 130
    interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    try:
        if command == "demo":
            return _cmd_demo(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        handler = {"train": _cmd_train, "compare": _cmd_compare, "export": _cmd_export}[args.command]
        return handler(args)
    except KeyboardInterrupt:
        print(f"\nfnl {command}: interrupted" + ("; continue with --resume" if command in ("train", "compare") else ""),
              file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (CommandError, ValueError, TypeError, KeyError, OSError, MemoryError, FloatingPointError,
            RuntimeError, ImportError) as exc:
        if os.environ.get("FNL_DEBUG"):
            raise
        print(f"fnl {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
