"""The Dataset container and the helpers every loader shares.

Images are float32 NCHW arrays, labels int64 vectors in 0..num_classes-1. Normalization is
per channel with the *training* set's statistics:

    x_norm[:, c] = (x[:, c] - mean_c) / std_c,   mean_c, std_c over (N_train, H, W)

and the same (mean, std) are applied to the test set, so no test information leaks into the
inputs. A stratified split keeps each class's share equal in train and test (up to rounding).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["Dataset", "stratified_split", "channel_stats", "normalize_images"]


def _err(msg: str) -> str:
    return f"[fnl.data] {msg}"


@dataclass(frozen=True, repr=False)
class Dataset:
    """A train/test pair of image arrays with their labels and metadata.

    Attributes
    ----------
    name: a short identifier ("digits", "cifar10", "cifar100" or the npz file stem).
    x_train, x_test: float32 arrays (N, C, H, W), C-contiguous.
    y_train, y_test: int64 arrays (N,), values in 0..num_classes-1.
    num_classes: number of classes.
    mean, std: float32 (C,) per-channel statistics used for normalization (zeros/ones when
        the images were not normalized).
    crop_padding: recommended zero padding of the random-crop augmentation (0: none).
    flip: whether horizontal flips make sense for this data (False for digits).
    class_names: optional class names.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    crop_padding: int = 0
    flip: bool = False
    class_names: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
                raise ValueError(_err(f"x_{split} must be a float32 array (N, C, H, W), got "
                                      f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"))
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(_err(f"y_{split} must be an int64 vector, got "
                                      f"{getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}"))
            if x.shape[0] != y.shape[0]:
                raise ValueError(_err(f"{split} images and labels disagree: {x.shape[0]} images, "
                                      f"{y.shape[0]} labels"))
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(_err(f"y_{split} must lie in 0..{self.num_classes - 1}, got "
                                      f"{int(y.min())}..{int(y.max())}"))
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(_err(f"train images {self.x_train.shape[1:]} and test images "
                                  f"{self.x_test.shape[1:]} differ in (C, H, W)"))

    # -- derived metadata ---------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W)."""
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
                f"shape=({c}, {h}, {w}), num_classes={self.num_classes})")

    def describe(self) -> str:
        c, h, w = self.input_shape
        return (f"{self.name}: {self.num_train} train / {self.num_test} test images, "
                f"{c}x{h}x{w}, {self.num_classes} classes")

    def metadata(self) -> dict:
        """JSON-serializable description (for logs and checkpoints)."""
        return {
            "name": self.name,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": list(self.image_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "crop_padding": self.crop_padding,
            "flip": self.flip,
        }

    def subset(self, max_train: Optional[int] = None, max_test: Optional[int] = None,
               seed: int = 0) -> "Dataset":
        """A smaller dataset: stratified random subsets of at most max_train / max_test
        samples (None keeps a split whole). Normalization statistics are kept as they are."""
        x_tr, y_tr, x_te, y_te = self.x_train, self.y_train, self.x_test, self.y_test
        rng = np.random.default_rng(seed)
        if max_train is not None:
            idx = _stratified_take(y_tr, _check_count("max_train", max_train), rng)
            x_tr, y_tr = x_tr[idx], y_tr[idx]
        if max_test is not None:
            idx = _stratified_take(y_te, _check_count("max_test", max_test), rng)
            x_te, y_te = x_te[idx], y_te[idx]
        return replace(self, x_train=np.ascontiguousarray(x_tr), y_train=y_tr,
                       x_test=np.ascontiguousarray(x_te), y_test=y_te)


def _check_count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(_err(f"{name} must be an int >= 1 or None, got {n!r}"))
    return int(n)


def _within_class_rank(labels: np.ndarray, order: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For the permutation `order` of the samples, return (sorted_idx, rank) where sorted_idx
    groups the samples by class (stable w.r.t. `order`) and rank[i] is the position of
    sorted_idx[i] among the samples of its class."""
    sorted_idx = order[np.argsort(labels[order], kind="stable")]
    sorted_labels = labels[sorted_idx]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, sorted_labels.size])
    rank = np.arange(sorted_labels.size) - np.repeat(starts, counts)
    return sorted_idx, rank


def _stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random subset of min(n, N) samples (sorted)."""
    total = labels.size
    if n >= total:
        return np.arange(total)
    sorted_idx, rank = _within_class_rank(labels, rng.permutation(total))
    # order by (rank within class, random tie-break between classes): taking the first n
    # interleaves the classes, so every class receives its share of n up to one sample.
    tie = rng.random(total)
    order = np.lexsort((tie, rank / np.bincount(labels)[labels[sorted_idx]]))
    return np.sort(sorted_idx[order[:n]])


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A seeded stratified split: returns (train_idx, test_idx), both sorted int64.

    Each class c with n_c samples contributes round(test_fraction * n_c) samples to the test
    set (at least one when n_c >= 2, and always at least one sample stays in train), chosen
    uniformly at random with np.random.default_rng(seed). Vectorized: no loop over samples.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(_err(f"labels must be a non-empty vector, got shape {labels.shape}"))
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(_err(f"labels must be integers, got dtype {labels.dtype}"))
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise ValueError(_err(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")) from None
    if not 0.0 < fraction < 1.0:
        raise ValueError(_err(f"test_fraction must be in (0, 1), got {test_fraction!r}"))
    if labels.min() < 0:
        raise ValueError(_err(f"labels must be >= 0, got {int(labels.min())}"))
    rng = np.random.default_rng(seed)
    sorted_idx, rank = _within_class_rank(labels, rng.permutation(labels.size))
    counts = np.bincount(labels)
    n_test = np.floor(fraction * counts + 0.5).astype(np.int64)
    n_test = np.where(counts >= 2, np.clip(n_test, 1, counts - 1), 0)
    is_test = rank < n_test[labels[sorted_idx]]
    return np.sort(sorted_idx[~is_test]), np.sort(sorted_idx[is_test])


def channel_stats(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a (N, C, H, W) array, float32 (C,).

    Accumulated in float64 one channel at a time (the loop is over channels, not samples, so
    no float64 copy of the whole array is made); a channel with zero variance gets std 1 (so
    it maps to zeros)."""
    c = x.shape[1]
    mean = np.empty(c, np.float64)
    std = np.empty(c, np.float64)
    for k in range(c):
        xk = x[:, k]
        mean[k] = np.mean(xk, dtype=np.float64)
        d = xk - xk.dtype.type(mean[k])  # centred in the input precision (two-pass variance)
        std[k] = np.sqrt(np.sum(np.square(d, out=d), dtype=np.float64) / max(d.size, 1))
    std = np.where(std > 1e-12, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def normalize_images(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean_c) / std_c per channel, float32 C-contiguous (a new array)."""
    c = x.shape[1]
    mean = np.asarray(mean, dtype=np.float32).reshape(1, c, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, c, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def finish_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, *, num_classes: Optional[int] = None, normalize: bool = True,
                   crop_padding: int = 0, flip: bool = False,
                   class_names: Optional[Sequence[str]] = None) -> Dataset:
    """Normalize with train statistics (optionally) and build the Dataset.

    Consumes its image arrays: float32 C-contiguous inputs are normalized in place (every
    loader passes freshly made arrays), which keeps the peak memory of CIFAR near one copy."""
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    c = x_train.shape[1]
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise ValueError(_err(f"{name}: images contain NaN or infinity"))
    if normalize:
        mean, std = channel_stats(x_train)
        for x in (x_train, x_test):
            x -= mean.reshape(1, c, 1, 1)
            x /= std.reshape(1, c, 1, 1)
    else:
        mean, std = np.zeros(c, np.float32), np.ones(c, np.float32)
    y_train = np.ascontiguousarray(y_train, dtype=np.int64)
    y_test = np.ascontiguousarray(y_test, dtype=np.int64)
    if num_classes is None:
        num_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=int(num_classes), mean=mean, std=std, crop_padding=int(crop_padding),
                   flip=bool(flip), class_names=tuple(class_names) if class_names is not None else None)
