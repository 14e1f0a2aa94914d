"""Mini-batch iteration with seeded shuffling.

Each epoch draws one permutation rng.permutation(N) (when shuffle is true) and yields
consecutive slices of it; the last, smaller batch is dropped when drop_last is true. Every
sample therefore appears exactly once per epoch (or at most once with drop_last). Batches are
(xb, yb): float32 C-contiguous (B, C, H, W) and int64 (B,). An optional augmentation is
applied to each training batch with the same generator, so one Generator (whose state can be
checkpointed with fnl.checkpoint.rng_to_state) determines the whole stream.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np

__all__ = ["BatchLoader", "iterate_batches"]

Batch = Tuple[np.ndarray, np.ndarray]


def _check_arrays(x, y) -> Tuple[np.ndarray, np.ndarray]:
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(f"[fnl.data.BatchLoader] x must be an array (N, ...), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, np.ndarray) or y.ndim != 1:
        raise ValueError(f"[fnl.data.BatchLoader] y must be a vector (N,), got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"[fnl.data.BatchLoader] x has {x.shape[0]} samples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("[fnl.data.BatchLoader] the dataset is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"[fnl.data.BatchLoader] y must hold integer labels, got dtype {y.dtype}")
    return x, y


class BatchLoader:
    """Iterate over (xb, yb) mini-batches; one `for` loop over the loader is one epoch.

    Parameters
    ----------
    x, y: the samples (N, ...) and integer labels (N,).
    batch_size: samples per batch (>= 1).
    shuffle: draw a fresh permutation from `rng` at the start of each epoch.
    drop_last: skip the final batch when it has fewer than batch_size samples.
    rng: a numpy Generator (shuffling and augmentation draw from it), or an int seed.
    augment: optional callable (xb, rng) -> xb applied to every batch (e.g. Augmentation).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 drop_last: bool = False, rng: Optional[np.random.Generator] = None,
                 augment: Optional[Callable[[np.ndarray, np.random.Generator], np.ndarray]] = None):
        self.x, self.y = _check_arrays(x, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"[fnl.data.BatchLoader] batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if drop_last and self.batch_size > self.x.shape[0]:
            raise ValueError(f"[fnl.data.BatchLoader] batch_size={self.batch_size} with drop_last=True "
                             f"leaves no batch for {self.x.shape[0]} samples")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(0 if rng is None else int(rng))
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(f"[fnl.data.BatchLoader] rng must be a numpy Generator or an int seed, "
                            f"got {type(rng).__name__}")
        self.rng = rng
        if augment is not None and not getattr(augment, "active", True):
            augment = None
        self.augment = augment

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def samples_per_epoch(self) -> int:
        return len(self) * self.batch_size if self.drop_last else self.num_samples

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_samples
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            xb = self.x[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            yield (np.ascontiguousarray(xb, dtype=np.float32),
                   np.ascontiguousarray(self.y[idx], dtype=np.int64))


def iterate_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                    drop_last: bool = False, rng: Optional[np.random.Generator] = None) -> Iterator[Batch]:
    """One pass over (x, y) in batches (no augmentation): a one-epoch BatchLoader. Without
    shuffle the order is the stored order (what evaluation wants)."""
    return iter(BatchLoader(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, rng=rng))
