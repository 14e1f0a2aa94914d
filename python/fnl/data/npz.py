"""Image datasets stored in a NumPy .npz file.

Two layouts are recognised (key names are matched case-insensitively):

* separate splits: train images/labels and test images/labels, e.g. ``x_train, y_train,
  x_test, y_test`` (Keras' mnist.npz), ``X_train/Y_train``, ``train_images/train_labels``,
  ``images_train/labels_train``;
* one set: ``x/y``, ``X/Y``, ``images/labels``, ``data/targets``, ``inputs/targets``; it is
  split with the seeded stratified split of `fnl.data.stratified_split`.

Keys may also be given explicitly. Images may be (N, H, W) (one channel), (N, C, H, W) or
(N, H, W, C); ``layout="auto"`` takes NHWC when the last axis has 1, 3 or 4 entries and the
second does not. uint8 images are scaled to [0, 1]; all images are then normalized with the
training set's per-channel mean and std. Labels must be integers (N,) (or (N, 1)).
No augmentation is recommended by default (crop_padding=0, flip=False); the caller decides.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np

from .dataset import Dataset, finish_dataset, stratified_split

__all__ = ["load_npz"]

PathLike = Union[str, "os.PathLike[str]"]

_TRAIN_X = ("x_train", "train_x", "train_images", "images_train", "train_data", "data_train",
            "x_tr", "train_inputs")
_TRAIN_Y = ("y_train", "train_y", "train_labels", "labels_train", "train_targets",
            "targets_train", "y_tr")
_TEST_X = ("x_test", "test_x", "test_images", "images_test", "test_data", "data_test", "x_te",
           "test_inputs")
_TEST_Y = ("y_test", "test_y", "test_labels", "labels_test", "test_targets", "targets_test", "y_te")
_ALL_X = ("x", "images", "image", "data", "inputs", "features", "imgs")
_ALL_Y = ("y", "labels", "label", "targets", "target", "classes")


def _find(keys: Mapping[str, str], candidates) -> Optional[str]:
    for c in candidates:
        if c in keys:
            return keys[c]
    return None


def _to_nchw(x: np.ndarray, what: str, layout: str, path: Path) -> np.ndarray:
    if x.dtype == object or x.dtype.kind not in "uifb":
        raise ValueError(f"[fnl.data] '{path}': {what} must be a numeric array, got dtype {x.dtype}")
    if x.ndim == 3:
        if layout == "nhwc" or layout == "nchw":
            raise ValueError(f"[fnl.data] '{path}': {what} has shape {x.shape} (N, H, W); "
                             f"layout='{layout}' needs 4 dimensions (use layout='auto')")
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if layout == "auto":
            nhwc = x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
        else:
            nhwc = layout == "nhwc"
        if nhwc:
            x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"[fnl.data] '{path}': {what} must have shape (N, H, W), (N, C, H, W) or "
                         f"(N, H, W, C), got {x.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"[fnl.data] '{path}': {what} is empty (shape {x.shape})")
    if x.dtype == np.uint8:
        out = x.astype(np.float32) * np.float32(1.0 / 255.0)
    else:
        out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"[fnl.data] '{path}': {what} contains NaN or infinity")
    return np.ascontiguousarray(out)


def _labels(y: np.ndarray, what: str, n: int, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"[fnl.data] '{path}': {what} must be a vector (N,) of integer class "
                         f"labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise ValueError(f"[fnl.data] '{path}': {what} must hold integer class labels, got "
                             f"dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"[fnl.data] '{path}': {n} images but {y.shape[0]} labels in {what}")
    if y.size and y.min() < 0:
        raise ValueError(f"[fnl.data] '{path}': {what} must be >= 0, got {int(y.min())}")
    return y.astype(np.int64)


def load_npz(path: PathLike, *, images_key: Optional[str] = None, labels_key: Optional[str] = None,
             test_images_key: Optional[str] = None, test_labels_key: Optional[str] = None,
             layout: str = "auto", test_fraction: float = 0.2, split_seed: int = 0,
             normalize: bool = True, num_classes: Optional[int] = None) -> Dataset:
    """Load an .npz image dataset (see the module docstring for the recognised keys).

    images_key/labels_key name the training (or only) set, test_images_key/test_labels_key
    the test set; without a test set the data is split (stratified, seeded by split_seed,
    test_fraction of each class). layout is "auto", "nchw" or "nhwc". num_classes defaults
    to max(label) + 1.
    """
    p = Path(path).expanduser()
    if layout not in ("auto", "nchw", "nhwc"):
        raise ValueError(f"[fnl.data] layout must be 'auto', 'nchw' or 'nhwc', got {layout!r}")
    if not p.exists():
        raise FileNotFoundError(f"[fnl.data] no such file: '{p}'")
    if not p.is_file():
        raise ValueError(f"[fnl.data] '{p}' is not a file (expected an .npz archive)")
    try:
        npz = np.load(p, allow_pickle=False)
        if not hasattr(npz, "files"):
            raise ValueError("a single .npy array, not an .npz archive")
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"[fnl.data] '{p}' is not a readable .npz archive of arrays "
                         f"(corrupted file, or arrays stored as Python objects?): {exc}") from None
    lower = {k.lower(): k for k in arrays}
    listing = sorted(arrays)

    def pick(given: Optional[str], candidates, what: str) -> Optional[str]:
        if given is not None:
            if given not in arrays:
                raise ValueError(f"[fnl.data] '{p}' has no array '{given}' ({what}); keys: {listing}")
            return given
        return _find(lower, candidates)

    xk = pick(images_key, _TRAIN_X, "images_key")
    yk = pick(labels_key, _TRAIN_Y, "labels_key")
    txk = pick(test_images_key, _TEST_X, "test_images_key")
    tyk = pick(test_labels_key, _TEST_Y, "test_labels_key")
    if xk is None and yk is None:
        xk, yk = _find(lower, _ALL_X), _find(lower, _ALL_Y)
    if xk is None or yk is None:
        raise ValueError(f"[fnl.data] '{p}': cannot find the {'images' if xk is None else 'labels'} "
                         f"array among keys {listing}; name it with images_key=/labels_key= "
                         f"(recognised: x_train/y_train, x/y, images/labels, ...)")
    if (txk is None) != (tyk is None):
        raise ValueError(f"[fnl.data] '{p}': found test {'images' if txk else 'labels'} "
                         f"('{txk or tyk}') without test {'labels' if txk else 'images'}; keys: {listing}")

    x = _to_nchw(arrays[xk], f"images '{xk}'", layout, p)
    y = _labels(arrays[yk], f"labels '{yk}'", x.shape[0], p)
    if txk is not None:
        x_te = _to_nchw(arrays[txk], f"test images '{txk}'", layout, p)
        y_te = _labels(arrays[tyk], f"test labels '{tyk}'", x_te.shape[0], p)
        if x_te.shape[1:] != x.shape[1:]:
            raise ValueError(f"[fnl.data] '{p}': train images are {x.shape[1:]} (C, H, W) but test "
                             f"images are {x_te.shape[1:]}")
        x_tr, y_tr = x, y
    else:
        tr, te = stratified_split(y, test_fraction, split_seed)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    found = int(max(y_tr.max(), y_te.max(initial=-1))) + 1
    if num_classes is None:
        num_classes = found
    elif found > num_classes:
        raise ValueError(f"[fnl.data] '{p}': labels reach {found - 1} but num_classes={num_classes}")
    name = p.name[:-4] if p.name.endswith(".npz") else p.name
    return finish_dataset(name, x_tr, y_tr, x_te, y_te, num_classes=num_classes,
                          normalize=normalize, crop_padding=0, flip=False)
