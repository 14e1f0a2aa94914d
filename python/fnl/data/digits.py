"""The embedded default dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grey images (pixel values 0..16) of the digits 0..9, shipped inside
scikit-learn (no download). They are returned as float32 NCHW (N, 1, 8, 8) arrays with int64
labels, split with a fixed, seeded, stratified train/test split (default 80/20, split seed 0,
so the test set is the same for every training seed) and normalized with the training set's
mean and standard deviation. Recommended augmentation: random crops with 1 pixel of zero
padding; no horizontal flips (a mirrored digit is a different symbol).
"""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, finish_dataset, stratified_split

__all__ = ["load_digits", "DIGITS_SPLIT_SEED"]

DIGITS_SPLIT_SEED = 0


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("[fnl.data] the embedded 'digits' dataset needs scikit-learn "
                          "(pip install scikit-learn)") from exc
    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images[:, None, :, :], labels


def load_digits(*, test_fraction: float = 0.2, split_seed: int = DIGITS_SPLIT_SEED,
                normalize: bool = True) -> Dataset:
    """The digits dataset as a Dataset: (N, 1, 8, 8) float32 images, int64 labels 0..9.

    Pixels are scaled to [0, 1] (divided by 16) and then, when normalize is true, shifted
    and scaled by the train-set mean and std. The split is stratified and depends only on
    split_seed and test_fraction.
    """
    images, labels = _raw_digits()
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    images = images / np.float32(16.0)
    return finish_dataset("digits", images[train_idx], labels[train_idx], images[test_idx],
                          labels[test_idx], num_classes=10, normalize=normalize,
                          crop_padding=1, flip=False, class_names=[str(d) for d in range(10)])
