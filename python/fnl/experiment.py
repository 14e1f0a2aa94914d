"""One training run of the `fnl train` command: configuration, model variant, optimizer,
schedule, epoch loop, metrics log, checkpoints and resume.

    >>> from fnl.experiment import TrainConfig, run
    >>> result = run(TrainConfig(epochs=2, factorization="lowrank", rank_scale=0.25), "runs/x")
    >>> result.test_accuracy                     # in [0, 1]

A run writes into its output folder

* ``metrics.jsonl``: one JSON object per epoch: epoch, lr, train_loss, train_accuracy,
  test_loss, test_accuracy, seconds (training steps of the epoch), samples_per_s,
  effective_step (mean over conv layers of lr / ||W||_F^2, the quantity of Fig. 3 of Khodak et
  al., ICLR 2021, lr being the last step's), effective_step_base (the same with the base lr: the
  schedule's factor removed, so only the norms differ between runs), frobenius (mean ||W||_F over conv layers) and ``layers``: per layer name, kind,
  ranks, ||W||_F, ||W||_* and lr / ||W||_F^2 (factorized layers measured from their factors,
  W = U M V^T never formed);
* ``checkpoint.npz``: after every epoch (fnl.checkpoint: atomic, verified): arrays
  ``model/<state_dict key>`` (parameters, batch-norm statistics, factor ranks) and
  ``optim/<key>`` (the optimizer's state buffers); config = this module's run record
  (architecture, ranks, factorization, optimizer hyperparameters and step counts, schedule
  position, epoch, RNG states of the batch loader and of every Dropout layer, metrics so far);
* ``model.npz``: the final checkpoint (same format), written when the last epoch completes.

Resume (``run(..., resume=True)``) rebuilds the model and optimizer from ``checkpoint.npz``,
restores the generators and continues at the next epoch: on the same machine with the same
thread count the final weights are bit-identical to an uninterrupted run.

Learning-rate schedules step once per iteration (an iteration = one optimizer step):
"cosine" anneals from lr to 0 over all iterations, "step" multiplies by 0.1 at 50% and 75% of
them, "constant" keeps lr; ``warmup`` epochs of linear warm-up from lr/10 are put in front.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import checkpoint as ckpt
from . import models as _models
from . import optim as _optim
from .data import Augmentation, BatchLoader, Dataset, load_dataset
from .factorization import collapse, factorize
from .nn import CrossEntropyLoss, Dropout, Module, no_grad
from .progress import EpochProgress
from .train import layer_stats

__all__ = [
    "FACTORIZATIONS",
    "MODELS",
    "OPTIMIZERS",
    "RunResult",
    "SCHEDULES",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "load_model",
    "run",
]

RUN_KIND = "fnl-train-run"
RUN_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"
MODEL_NAME = "model.npz"
METRICS_NAME = "metrics.jsonl"

MODELS = ("resnet20", "resnet32", "resnet56", "resnet110", "vgg11", "vgg13", "vgg16", "vgg19", "vgg-small")
FACTORIZATIONS = ("dense", "lowrank", "full", "deep", "wide")
OVERCOMPLETE = ("full", "deep", "wide")
INITS = ("spectral", "independent")
DECAYS = ("weight", "frobenius", "crs", "none")
OPTIMIZERS = ("sgd", "adamw", "lamb", "flambe")
SCHEDULES = ("cosine", "step", "constant")

#: a small VGG for 8x8 to 32x32 inputs (three 2x2 pools)
VGG_SMALL = [32, "M", 64, "M", 128, 128, "M"]

#: learning rate and weight decay when not given, per optimizer
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3, "lamb": 1e-2, "flambe": 1e-2}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-2, "lamb": 1e-2, "flambe": 1e-2}


class RunError(ValueError):
    """A run cannot start or continue (bad configuration, output folder in use, checkpoint
    that does not belong to this run...). The message is one line, for the command line."""


def _err(msg: str) -> str:
    return f"[fnl.experiment] {msg}"


# -- configuration ----------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that determines a training run (JSON-serializable; stored in checkpoints).

    model: one of MODELS; width: channel multiplier of the model.
    data: "digits", "cifar10", "cifar100" (with data_path) or a path to an .npz file or a
        CIFAR python folder. augment: the dataset's recommended augmentation (random crop with
        padding; horizontal flips only where they make sense).
    factorization: "dense"; "lowrank" with rank_scale (r = round(s c_out kh) for convs,
        round(s min(m, n)) for linear layers) or target_ratio (parameter ratio of the replaced
        layers); overcomplete "full" (r = c_out kh), "deep" (full plus ``depth`` inner
        identity matrices) or "wide" (3x full). First and last layers stay dense.
    init: "spectral" (SI: factors from the SVD of the dense init) or "independent" (Kaiming
        factors). decay: "weight" (L2 on every tensor, i.e. on each factor), "frobenius" (FD on
        factorized products, L2 elsewhere), "crs" (L2 scaled by the compression rate), "none".
    optimizer: "sgd" (momentum, nesterov), "adamw", "lamb", "flambe"; lr / weight_decay default
        per optimizer (DEFAULT_LR, DEFAULT_WEIGHT_DECAY).
    schedule: "cosine", "step", "constant" (per iteration), warmup: epochs of linear warm-up.
    epochs, batch_size, seed (model init, factor init, batch order, augmentation, dropout).
    max_batches: stop each epoch after this many batches (tiny runs for tests).
    fold: None for the dataset's own train/test split; k >= 0 for the k-fold split of the
        data (digits, or an .npz without a test set): the test set is part k % folds of a
        stratified partition into `folds` parts seeded by k // folds, the rest is the
        training set. Folds 0..folds-1 test every sample exactly once.
    """

    model: str = "resnet20"
    width: float = 0.5
    data: str = "digits"
    data_path: Optional[str] = None
    augment: bool = True
    factorization: str = "lowrank"
    rank_scale: Optional[float] = 0.25
    target_ratio: Optional[float] = None
    depth: int = 1
    init: str = "spectral"
    decay: str = "frobenius"
    weight_decay: Optional[float] = None
    optimizer: str = "sgd"
    lr: Optional[float] = None
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"
    warmup: int = 0
    epochs: int = 15
    batch_size: int = 64
    seed: int = 0
    max_batches: Optional[int] = None
    fold: Optional[int] = None
    folds: int = 5

    # -- derived ----------------------------------------------------------------------------
    @property
    def effective_lr(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)

    @property
    def effective_weight_decay(self) -> float:
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else float(self.weight_decay)

    @property
    def is_overcomplete(self) -> bool:
        return self.factorization in OVERCOMPLETE

    def describe(self) -> str:
        """A one-line summary: model, factorization, init, decay, optimizer, schedule."""
        if self.factorization == "dense":
            fact = "dense"
        elif self.factorization == "lowrank":
            fact = (f"low-rank (rank-scale {self.rank_scale:g})" if self.target_ratio is None
                    else f"low-rank (target ratio {self.target_ratio:g})")
        else:
            fact = f"overcomplete {self.factorization}" + (f" (depth {self.depth})" if self.factorization == "deep" else "")
        init = "" if self.factorization == "dense" else f", {self.init} init"
        return (f"{self.model} (width {self.width:g}), {fact}{init}, decay {self.decay} "
                f"{self.effective_weight_decay:g}, {self.optimizer} lr {self.effective_lr:g}, {self.schedule} "
                f"schedule{f' + {self.warmup} warm-up epochs' if self.warmup else ''}, {self.epochs} epochs, "
                f"batch {self.batch_size}, seed {self.seed}")

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Checks every field; raises RunError naming the field, the expectation and the value.
        Returns self."""
        def bad(name: str, want: str) -> RunError:
            return RunError(_err(f"{name} must be {want}, got {getattr(self, name)!r}"))

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def is_num(v) -> bool:
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
                and math.isfinite(float(v))

        for name, options in (("model", MODELS), ("factorization", FACTORIZATIONS), ("init", INITS),
                              ("decay", DECAYS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in options:
                raise bad(name, f"one of {', '.join(options)}")
        if not is_num(self.width) or not 0 < float(self.width) <= 64:
            raise bad("width", "a number in (0, 64]")
        if not isinstance(self.data, str) or not self.data:
            raise bad("data", "a dataset name or path")
        if self.data_path is not None and not isinstance(self.data_path, str):
            raise bad("data_path", "a path or None")
        if self.factorization == "lowrank":
            if (self.rank_scale is None) == (self.target_ratio is None):
                raise RunError(_err(f"a low-rank factorization needs exactly one of rank_scale and target_ratio, "
                                    f"got rank_scale={self.rank_scale!r}, target_ratio={self.target_ratio!r}"))
            if self.rank_scale is not None and (not is_num(self.rank_scale) or not 0 < self.rank_scale <= 1):
                raise bad("rank_scale", "a number in (0, 1]")
            if self.target_ratio is not None and (not is_num(self.target_ratio) or not 0 < self.target_ratio <= 1):
                raise bad("target_ratio", "a number in (0, 1]")
        if not is_int(self.depth) or not 1 <= self.depth <= 16:
            raise bad("depth", "an int in 1..16")
        if self.weight_decay is not None and (not is_num(self.weight_decay) or self.weight_decay < 0):
            raise bad("weight_decay", "a number >= 0")
        if self.lr is not None and (not is_num(self.lr) or not self.lr > 0):
            raise bad("lr", "a number > 0")
        if not is_num(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "a number in [0, 1)")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise RunError(_err("nesterov needs optimizer 'sgd' with momentum > 0"))
        for name, lo in (("epochs", 1), ("batch_size", 1), ("warmup", 0), ("seed", 0)):
            v = getattr(self, name)
            if not is_int(v) or v < lo or v > 2 ** 31:
                raise bad(name, f"an int >= {lo}")
        if self.warmup >= self.epochs and self.warmup > 0:
            raise RunError(_err(f"warmup ({self.warmup} epochs) must be shorter than the run ({self.epochs} epochs)"))
        if self.max_batches is not None and (not is_int(self.max_batches) or self.max_batches < 1):
            raise bad("max_batches", "an int >= 1 or None")
        if self.fold is not None and (not is_int(self.fold) or not 0 <= self.fold <= 2 ** 31):
            raise bad("fold", "an int >= 0 or None")
        if not is_int(self.folds) or not 2 <= self.folds <= 100:
            raise bad("folds", "an int in 2..100")
        if not isinstance(self.augment, (bool, np.bool_)):
            raise bad("augment", "a bool")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise RunError(_err(f"a run configuration must be a dict, got {type(d).__name__}"))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise RunError(_err(f"unknown configuration keys {unknown}"))
        return cls(**d).validate()


# -- building blocks --------------------------------------------------------------------------
def _dense_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> Module:
    kw = dict(num_classes=num_classes, in_channels=in_channels, width=cfg.width, seed=cfg.seed)
    if cfg.model.startswith("resnet"):
        return _models.resnet(int(cfg.model[len("resnet"):]), **kw)
    return _models.vgg(VGG_SMALL if cfg.model == "vgg-small" else cfg.model, **kw)


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> Module:
    """The model variant of ``cfg``: the dense model (seeded by cfg.seed), factorized as the
    config says (factor init seeded by cfg.seed + 1). ``model.factorization_report`` is set
    for factorized variants."""
    model = _dense_model(cfg, num_classes, in_channels)
    if cfg.factorization == "dense":
        return model
    kw: Dict[str, Any] = dict(init=cfg.init, seed=cfg.seed + 1, inplace=True)
    if cfg.factorization == "lowrank":
        if cfg.target_ratio is not None:
            kw["target_ratio"] = cfg.target_ratio
        else:
            kw["rank_scale"] = cfg.rank_scale
    else:
        kw["overcomplete"] = cfg.factorization
        kw["depth"] = cfg.depth
    return factorize(model, **kw)


def build_optimizer(cfg: TrainConfig, model: Module):
    """The optimizer of ``cfg`` over every parameter of ``model`` (its factor groups known, so
    Frobenius decay acts on the factorized products)."""
    lr, wd = cfg.effective_lr, cfg.effective_weight_decay
    if cfg.optimizer == "sgd":
        return _optim.SGD(model, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd,
                          decay=cfg.decay)
    cls = {"adamw": _optim.AdamW, "lamb": _optim.LAMB, "flambe": _optim.FLAMBe}[cfg.optimizer]
    return cls(model, lr=lr, weight_decay=wd, decay=cfg.decay)


def build_schedule(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """The per-iteration learning-rate schedule (None for a constant lr without warm-up)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    inner = None
    if cfg.schedule == "cosine":
        inner = _optim.CosineLR(optimizer, total)
    elif cfg.schedule == "step":
        milestones = sorted({max(1, int(total * 0.5)), max(2, int(total * 0.75))})
        inner = _optim.MultiStepLR(optimizer, milestones, gamma=0.1)
    if cfg.warmup:
        return _optim.LinearWarmup(optimizer, max(1, cfg.warmup * steps_per_epoch), then=inner)
    return inner


def _dropouts(model: Module) -> List[Tuple[str, Dropout]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Dropout)]


def _layer_ranks(model: Module) -> Dict[str, List[int]]:
    return {name: list(m.ranks) for name, m in model.named_modules() if hasattr(m, "factor_group")}


def test_time_params(model: Module, cfg: TrainConfig) -> int:
    """Parameters of the model used at test time: overcomplete models are collapsed into
    dense layers first (the smaller form); others count as they are."""
    if cfg.is_overcomplete:
        return collapse(model).num_parameters()
    return model.num_parameters()


def _mean_over_convs(layers: List[Dict], key: str) -> Optional[float]:
    vals = [l[key] for l in layers if l["kind"] == "conv" and key in l and math.isfinite(l[key])]
    if not vals:
        vals = [l[key] for l in layers if key in l and math.isfinite(l[key])]
    return float(np.mean(vals)) if vals else None


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> Tuple[float, float]:
    """(mean loss, accuracy in [0, 1]) of ``model`` in evaluation mode; the mode is restored."""
    loss_fn = CrossEntropyLoss()
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                xb = np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)
                yb = y[i:i + batch_size]
                logits = model(xb)
                total += loss_fn(logits, yb) * len(yb)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    finally:
        model.train(was)
    return total / len(x), correct / len(x)


def evaluate_logits(model: Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The model's outputs on x in evaluation mode (batched); the mode is restored."""
    was = model.training
    model.eval()
    try:
        with no_grad():
            return np.concatenate([np.asarray(model(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
                                   for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


# -- results ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    config: TrainConfig
    out: Path
    epoch: int
    test_accuracy: float
    test_loss: float
    params: int
    params_test_time: int
    dense_params: int
    train_seconds: float
    history: List[Dict[str, Any]] = field(default_factory=list)
    finished: bool = True


# -- checkpoints ------------------------------------------------------------------------------
def _split_optimizer_state(state: Dict[str, Any]) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    arrays, scalars = {}, {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        elif isinstance(v, (np.integer,)):
            scalars[k] = int(v)
        elif isinstance(v, (np.floating,)):
            scalars[k] = float(v)
        elif isinstance(v, (np.bool_,)):
            scalars[k] = bool(v)
        else:
            scalars[k] = v
    return arrays, scalars


def _record(cfg: TrainConfig, ds_meta: Dict[str, Any], model: Module, optimizer, schedule, epoch: int,
            loader: Optional[BatchLoader], history: List[Dict], train_seconds: float, dense_params: int,
            finished: bool) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """(arrays, config) of a checkpoint of the run at the end of ``epoch``."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt_arrays, opt_scalars = ({}, {}) if optimizer is None else _split_optimizer_state(optimizer.state_dict())
    arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
    record = {
        "kind": RUN_KIND,
        "version": RUN_VERSION,
        "config": cfg.to_dict(),
        "dataset": ds_meta,
        "architecture": {"model": cfg.model, "width": cfg.width, "num_classes": ds_meta["num_classes"],
                         "in_channels": ds_meta["in_channels"], "image_size": ds_meta["image_size"]},
        "factorization": {"kind": cfg.factorization, "init": cfg.init, "rank_scale": cfg.rank_scale,
                          "target_ratio": cfg.target_ratio, "depth": cfg.depth},
        "ranks": _layer_ranks(model),
        "optimizer": {"name": cfg.optimizer, "scalars": opt_scalars,
                      "array_keys": sorted(opt_arrays)} if optimizer is not None else None,
        "schedule": {"name": cfg.schedule, "t": schedule.t if schedule is not None else 0},
        "epoch": int(epoch),
        "finished": bool(finished),
        "rng": {"loader": ckpt.rng_to_state(loader.rng) if loader is not None else None,
                "dropout": {name: ckpt.rng_to_state(m._gen) for name, m in _dropouts(model)}},
        "params": model.num_parameters(),
        "params_test_time": test_time_params(model, cfg) if finished else None,
        "dense_params": int(dense_params),
        "train_seconds": float(train_seconds),
        "history": [{k: v for k, v in row.items() if k != "layers"} for row in history],
    }
    return arrays, record


def read_run_checkpoint(path) -> Tuple[Dict[str, np.ndarray], Dict[str, Any], TrainConfig]:
    """Loads and checks a run checkpoint; returns (arrays, record, config)."""
    arrays, record = ckpt.load_checkpoint(path, required_config=("kind", "version", "config", "architecture",
                                                                   "epoch"))
    if record.get("kind") != RUN_KIND:
        raise ckpt.CheckpointError(f"[fnl.checkpoint] '{path}' is an fnl checkpoint but not a training run "
                                   f"(kind {record.get('kind')!r})")
    if record.get("version") != RUN_VERSION:
        raise ckpt.CheckpointError(f"[fnl.checkpoint] '{path}' has run format version {record.get('version')!r}, "
                                   f"this fnl reads {RUN_VERSION}")
    try:
        cfg = TrainConfig.from_dict(record["config"])
    except (RunError, TypeError) as exc:
        raise ckpt.CheckpointError(f"[fnl.checkpoint] '{path}': invalid run configuration ({exc})") from None
    arch = record["architecture"]
    for key in ("num_classes", "in_channels"):
        if not isinstance(arch.get(key), int) or arch[key] < 1:
            raise ckpt.CheckpointError(f"[fnl.checkpoint] '{path}': architecture.{key} is missing or invalid")
    return arrays, record, cfg


def _model_state(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}


def load_model(path) -> Tuple[Module, TrainConfig, Dict[str, Any]]:
    """Rebuilds the model stored in a run checkpoint (``model.npz`` / ``checkpoint.npz`` of
    `fnl train`, or an exported file); returns (model in eval mode, config, record)."""
    arrays, record, cfg = read_run_checkpoint(path)
    arch = record["architecture"]
    model = build_model(cfg, arch["num_classes"], arch["in_channels"])
    try:
        model.load_state_dict(_model_state(arrays))
    except (KeyError, ValueError) as exc:
        raise ckpt.CheckpointError(f"[fnl.checkpoint] '{path}': the stored weights do not fit the "
                                   f"{cfg.model} model of its configuration ({exc})") from None
    return model.eval(), cfg, record


def save_model(path, model: Module, cfg: TrainConfig, record: Dict[str, Any]) -> Path:
    """Writes ``model`` (weights only) as a run checkpoint with the given config/record."""
    record = dict(record)
    record["config"] = cfg.to_dict()
    record["ranks"] = _layer_ranks(model)
    record["params"] = model.num_parameters()
    record["optimizer"] = None
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    return ckpt.save_checkpoint(path, arrays, record)


# -- metrics log ------------------------------------------------------------------------------
def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_metrics(path) -> List[Dict[str, Any]]:
    """The rows of a metrics.jsonl file (lines that are not valid JSON objects are skipped:
    a line cut by a crash)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json_line(row: Dict[str, Any]) -> str:
    return json.dumps(row, default=ckpt._json_default, separators=(",", ":")) + "\n"


# -- the run ----------------------------------------------------------------------------------
def _load_data(cfg: TrainConfig) -> Dataset:
    split = {} if cfg.fold is None else {"fold": cfg.fold, "folds": cfg.folds}
    if cfg.data_path is not None:
        return load_dataset(cfg.data, path=cfg.data_path, **split)
    return load_dataset(cfg.data, **split)


def _check_fresh_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(_err(f"--out '{out}' exists and is not a folder"))
    if out.is_dir() and not force:
        used = [n for n in (CHECKPOINT_NAME, MODEL_NAME, METRICS_NAME) if (out / n).exists()]
        if used:
            raise RunError(_err(f"'{out}' already holds a run ({', '.join(used)}): continue it with --resume, "
                                f"or choose another --out (or --force to overwrite)"))


def run(cfg: Optional[TrainConfig], out, *, resume: bool = False, force: bool = False,
        epochs: Optional[int] = None, stop_after: Optional[int] = None, progress: bool = True,
        log: Optional[Callable[[str], None]] = print, dataset: Optional[Dataset] = None,
        leave: bool = True) -> RunResult:
    """Trains (or resumes) one run into the folder ``out``; returns its RunResult.

    cfg: the configuration (ignored with resume=True: the checkpoint's is used; ``epochs``
        may then extend or shorten the run, which re-plans the learning-rate schedule).
    force: start afresh even if ``out`` already holds a run (its files are replaced).
    stop_after: stop after this epoch (as if interrupted; the checkpoint allows resuming).
    progress: show a progress bar per epoch; log: receives the text lines (None: silent).
    dataset: an already loaded dataset matching cfg.data (compare shares one).
    leave: keep each epoch's progress bar on screen when it completes.
    Nothing is written before the configuration, the data and (for resume) the checkpoint
    have been validated.
    """
    say = log or (lambda s: None)
    out = Path(out).expanduser()
    start_epoch = 0
    record_in: Optional[Dict[str, Any]] = None
    arrays_in: Optional[Dict[str, np.ndarray]] = None
    if resume:
        cp = out / CHECKPOINT_NAME
        if not out.is_dir():
            raise RunError(_err(f"cannot resume: '{out}' is not a folder holding a run"))
        if not cp.exists():
            raise RunError(_err(f"cannot resume: no {CHECKPOINT_NAME} in '{out}'"))
        arrays_in, record_in, cfg = read_run_checkpoint(cp)
        start_epoch = int(record_in["epoch"])
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=int(epochs))
    else:
        if cfg is None:
            raise RunError(_err("a configuration is needed unless resuming"))
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=int(epochs))
        _check_fresh_out(out, force)
    cfg.validate()
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise RunError(_err(f"stop_after must be an int >= 1, got {stop_after!r}"))

    ds = dataset if dataset is not None else _load_data(cfg)
    ds_meta = ds.metadata()
    if record_in is not None:
        saved = record_in.get("dataset") or {}
        for key in ("num_classes", "in_channels", "image_size", "num_train", "num_test"):
            if key in saved and saved[key] != ds_meta[key]:
                raise RunError(_err(f"the data no longer matches the checkpoint: {key} was {saved[key]!r}, "
                                    f"now {ds_meta[key]!r}"))
    model = build_model(cfg, ds.num_classes, ds.in_channels)
    dense_params = _dense_model(cfg, ds.num_classes, ds.in_channels).num_parameters() \
        if cfg.factorization != "dense" else model.num_parameters()
    loader = BatchLoader(ds.x_train, ds.y_train, cfg.batch_size, shuffle=True,
                         rng=np.random.default_rng([cfg.seed, 2]),
                         augment=Augmentation.for_dataset(ds, cfg.augment))
    steps_per_epoch = len(loader) if cfg.max_batches is None else min(len(loader), cfg.max_batches)
    history: List[Dict[str, Any]] = []
    train_seconds = 0.0
    if record_in is not None:
        # restore weights (ranks included), then build the optimizer on the loaded parameters
        try:
            model.load_state_dict(_model_state(arrays_in))
        except (KeyError, ValueError) as exc:
            raise ckpt.CheckpointError(f"[fnl.checkpoint] '{out / CHECKPOINT_NAME}': the stored weights do not "
                                       f"fit the model ({exc})") from None
    optimizer = build_optimizer(cfg, model)
    schedule = build_schedule(cfg, optimizer, steps_per_epoch)
    if record_in is not None:
        opt_rec = record_in.get("optimizer")
        if not isinstance(opt_rec, dict) or not isinstance(opt_rec.get("scalars"), dict):
            raise ckpt.CheckpointError(f"[fnl.checkpoint] '{out / CHECKPOINT_NAME}' holds no optimizer state "
                                       f"(an exported model cannot be resumed)")
        state = dict(opt_rec["scalars"])
        state.update({k[len("optim/"):]: v for k, v in arrays_in.items() if k.startswith("optim/")})
        try:
            optimizer.load_state_dict(state)
            if schedule is not None:
                schedule.load_state_dict({"t": int(record_in.get("schedule", {}).get("t", 0))})
            rng = record_in.get("rng") or {}
            if rng.get("loader") is None:
                raise ValueError("no loader RNG state")
            ckpt.rng_set_state(loader.rng, rng["loader"])
            drop_states = rng.get("dropout") or {}
            for name, m in _dropouts(model):
                if name not in drop_states:
                    raise ValueError(f"no RNG state for dropout layer {name!r}")
                ckpt.rng_set_state(m._gen, drop_states[name])
        except (KeyError, ValueError, TypeError) as exc:
            raise ckpt.CheckpointError(f"[fnl.checkpoint] '{out / CHECKPOINT_NAME}': cannot restore the "
                                       f"training state ({exc})") from None
        history = [dict(r) for r in record_in.get("history", [])]
        train_seconds = float(record_in.get("train_seconds", 0.0))

    # everything is validated: from here on the folder is written
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_NAME
    if record_in is None:
        _write_text_atomic(metrics_path, "")
        for stale in (CHECKPOINT_NAME, MODEL_NAME):
            if (out / stale).exists():
                (out / stale).unlink()
    else:  # keep the log lines of the epochs the checkpoint covers (a crash may have left more)
        rows = [r for r in read_metrics(metrics_path) if isinstance(r.get("epoch"), int) and r["epoch"] <= start_epoch]
        _write_text_atomic(metrics_path, "".join(_json_line(r) for r in rows))

    if record_in is None:
        say(f"data: {ds.describe()}")
        say(f"run: {cfg.describe()}")
        rep = getattr(model, "factorization_report", None)
        params_tt = test_time_params(model, cfg)
        extra = f" ({params_tt:,} at test time after collapsing)" if cfg.is_overcomplete else ""
        ratio = f", {model.num_parameters() / dense_params:.1%} of dense" if rep is not None else ""
        say(f"model: {model.num_parameters():,} parameters{ratio}{extra}")
    else:
        say(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}: {cfg.describe()}")

    loss_fn = CrossEntropyLoss()
    last_epoch = start_epoch
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    test_loss, test_acc = (history[-1]["test_loss"], history[-1]["test_accuracy"]) if history else (math.nan, math.nan)
    for epoch in range(start_epoch + 1, end_epoch + 1):
        total = steps_per_epoch * cfg.batch_size if cfg.max_batches is not None else loader.samples_per_epoch
        total = min(total, loader.samples_per_epoch)
        model.train()
        t0 = time.perf_counter()
        with EpochProgress(total, epoch=epoch, epochs=cfg.epochs, disable=not progress, leave=leave) as bar:
            for b, (xb, yb) in enumerate(itertools.islice(loader, steps_per_epoch)):
                logits = model(xb)
                loss = loss_fn(logits, yb)
                if not math.isfinite(loss):
                    raise FloatingPointError(_err(f"the training loss is {loss} at epoch {epoch}, batch {b + 1}: "
                                                  f"training diverged (try a smaller --lr)"))
                model.zero_grad()
                model.backward(loss_fn.backward())
                lr_used = float(optimizer.param_groups[0]["lr"])
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                bar.update(len(yb), loss=loss, correct=int(np.sum(np.argmax(logits, axis=1) == yb)))
            seconds = time.perf_counter() - t0
            test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test)
            bar.set(test_acc=f"{100 * test_acc:.2f}%")
        summary = bar.summary
        train_seconds += seconds
        layers = layer_stats(model, lr_used)
        row = {"epoch": epoch, "lr": lr_used, "train_loss": summary["loss"],
               "train_accuracy": summary["accuracy"] / 100.0, "test_loss": test_loss, "test_accuracy": test_acc,
               "seconds": seconds, "samples_per_s": summary["samples"] / seconds if seconds > 0 else None,
               "effective_step": _mean_over_convs(layers, "effective_step"),
               "effective_step_base": _mean_over_convs(
                   [dict(l, base=cfg.effective_lr / l["frobenius"] ** 2) for l in layers if l["frobenius"] > 0], "base"),
               "frobenius": _mean_over_convs(layers, "frobenius"),
               "nuclear": _mean_over_convs(layers, "nuclear"),
               "layers": layers}
        history.append({k: v for k, v in row.items() if k != "layers"})
        with open(metrics_path, "a", encoding="utf-8") as fh:
            fh.write(_json_line(row))
        finished = epoch == cfg.epochs
        arrays, record = _record(cfg, ds_meta, model, optimizer, schedule, epoch, loader, history,
                                 train_seconds, dense_params, finished)
        ckpt.save_checkpoint(out / CHECKPOINT_NAME, arrays, record)
        if finished:
            ckpt.save_checkpoint(out / MODEL_NAME, arrays, record)
        if not progress:
            say(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc "
                f"{100 * row['train_accuracy']:.2f}% | test loss {test_loss:.4f} acc {100 * test_acc:.2f}% "
                f"| {seconds:.1f}s")
        last_epoch = epoch
    if last_epoch == start_epoch and record_in is not None and start_epoch >= cfg.epochs:
        say(f"the run in '{out}' already completed {start_epoch} epochs (of {cfg.epochs})")
        if not (out / MODEL_NAME).exists():
            arrays, record = _record(cfg, ds_meta, model, optimizer, schedule, start_epoch, loader, history,
                                     train_seconds, dense_params, True)
            ckpt.save_checkpoint(out / MODEL_NAME, arrays, record)
    return RunResult(config=cfg, out=out, epoch=last_epoch, test_accuracy=float(test_acc), test_loss=float(test_loss),
                     params=model.num_parameters(), params_test_time=test_time_params(model, cfg),
                     dense_params=int(dense_params), train_seconds=train_seconds, history=history,
                     finished=last_epoch >= cfg.epochs)
