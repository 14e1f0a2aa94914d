"""Batch augmentation, vectorized over the batch and driven by a seeded numpy Generator.

* random_crop(x, padding, rng): pad each image with `padding` zeros on every side and cut
  an H x W window at offsets (dy, dx) drawn uniformly from {0, ..., 2 padding}:

      out[n, c, i, j] = xpad[n, c, i + dy_n, j + dx_n],

  i.e. the image shifted by (padding - dy_n, padding - dx_n) with zeros filling the border.
  (The zeros are in the space of the given array: for normalized inputs they are the channel
  mean of the raw data.)
* horizontal_flip(x, rng, p): mirror each image left-right with probability p:
  out[n, :, :, j] = x[n, :, :, W - 1 - j] for the chosen n.

Flips make sense for natural images (CIFAR), not for digits; `Augmentation.for_dataset`
follows the dataset's recommendation. The same generator state gives the same output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["random_crop", "horizontal_flip", "Augmentation"]


def _check_batch(fn: str, x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"[fnl.data.{fn}] x must be an array (N, C, H, W), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    return x


def _check_rng(fn: str, rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"[fnl.data.{fn}] rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def random_crop(x: np.ndarray, padding: int, rng: np.random.Generator, fill: float = 0.0) -> np.ndarray:
    """Random H x W crops of the zero-padded batch (a new array of x's shape and dtype).

    Draws rng.integers(0, 2 padding + 1, size=(2, N)) (rows: dy, dx). padding=0 returns a copy.
    """
    _check_batch("random_crop", x)
    _check_rng("random_crop", rng)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"[fnl.data.random_crop] padding must be an int >= 0, got {padding!r}")
    n, c, h, w = x.shape
    if padding == 0 or n == 0:
        return x.copy()
    p = int(padding)
    offsets = rng.integers(0, 2 * p + 1, size=(2, n))
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant", constant_values=fill)
    windows = sliding_window_view(xpad, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W), a view
    # advanced indices separated by a slice: the broadcast batch axis comes first -> (N, C, H, W)
    return np.ascontiguousarray(windows[np.arange(n), :, offsets[0], offsets[1]])


def horizontal_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability p (draws rng.random(N)); a new array."""
    _check_batch("horizontal_flip", x)
    _check_rng("horizontal_flip", rng)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"[fnl.data.horizontal_flip] p must be in [0, 1], got {p!r}")
    mask = rng.random(x.shape[0]) < p
    return np.ascontiguousarray(np.where(mask[:, None, None, None], x[..., ::-1], x))


@dataclass(frozen=True)
class Augmentation:
    """A crop-then-flip pipeline: crop_padding=0 disables crops, flip=False disables flips."""

    crop_padding: int = 0
    flip: bool = False

    @classmethod
    def for_dataset(cls, dataset, enabled: bool = True) -> "Augmentation":
        """The dataset's recommended augmentation (its crop_padding and flip), or none."""
        if not enabled:
            return cls()
        return cls(crop_padding=int(dataset.crop_padding), flip=bool(dataset.flip))

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, rng)
        if self.flip:
            x = horizontal_flip(x, rng)
        return x

    def describe(self) -> str:
        parts = []
        if self.crop_padding:
            parts.append(f"random crop (padding {self.crop_padding})")
        if self.flip:
            parts.append("horizontal flip")
        return ", ".join(parts) if parts else "none"

