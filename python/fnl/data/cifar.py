"""CIFAR-10 and CIFAR-100 from the standard python-pickle folders.

Layouts (as distributed at https://www.cs.toronto.edu/~kriz/cifar.html, extracted):

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta           (we use the 100 "fine" labels)

Each batch is a pickled dict with b"data": uint8 (N, 3072) rows holding the red, green and
blue 32x32 planes in row-major order, and b"labels" (CIFAR-10) or b"fine_labels"
(CIFAR-100). Images become float32 (N, 3, 32, 32) in [0, 1], then normalized with the
training set's per-channel mean and std. Recommended augmentation: random 32x32 crops with 4
pixels of zero padding and horizontal flips.

The pickles are read with a restricted unpickler that only rebuilds NumPy arrays, lists,
dicts, strings and numbers, so a tampered file cannot run code.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .dataset import Dataset, finish_dataset

__all__ = ["load_cifar10", "load_cifar100", "find_cifar_folder", "CIFAR10_DIR", "CIFAR100_DIR"]

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"
PathLike = Union[str, "os.PathLike[str]"]


def _np_core_multiarray():
    core = getattr(np, "_core", None)
    if core is not None and hasattr(core, "multiarray"):
        return core.multiarray
    return np.core.multiarray  # pragma: no cover - NumPy < 2


_MA = _np_core_multiarray()
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _MA._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MA._reconstruct,
    ("numpy.core.multiarray", "scalar"): _MA.scalar,
    ("numpy._core.multiarray", "scalar"): _MA.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("__builtin__", "list"): list,
    ("__builtin__", "dict"): dict,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"disallowed object {module}.{name}") from None


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"[fnl.data] missing CIFAR file '{path}'")
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, MemoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"[fnl.data] '{path}' is not a valid CIFAR pickle (corrupted or "
                         f"truncated file?): {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"[fnl.data] '{path}' is not a CIFAR batch: expected a pickled dict, "
                         f"got {type(obj).__name__}")
    # keys are bytes in the original (Python 2) files; accept str keys too
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_arrays(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise ValueError(f"[fnl.data] '{path}' has no '{key}' entry (keys: "
                             f"{sorted(map(str, batch))}); is this the right CIFAR variant?")
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise ValueError(f"[fnl.data] '{path}': 'data' must be uint8 of shape (N, 3072), got "
                         f"{data.dtype} {data.shape}")
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError):
        raise ValueError(f"[fnl.data] '{path}': '{label_key}' is not a list of integers") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"[fnl.data] '{path}': '{label_key}' must be a list of integers, got "
                         f"{labels.dtype} {labels.shape}")
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"[fnl.data] '{path}': {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"[fnl.data] '{path}': labels must lie in 0..{num_classes - 1}, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _stack(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x, np.concatenate([p[1] for p in parts])


def _label_names(path: Path, key: str) -> Optional[list[str]]:
    if not path.is_file():
        return None
    try:
        names = _read_pickle(path).get(key)
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


def find_cifar_folder(path: PathLike, variant: str) -> Path:
    """The extracted CIFAR folder for variant "cifar10" or "cifar100": `path` itself when it
    holds the batch files, else its child cifar-10-batches-py / cifar-100-python."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"[fnl.data] no such folder: '{p}'")
    if p.is_file():
        if p.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise ValueError(f"[fnl.data] '{p}' is an archive: extract it first "
                             f"(tar xzf '{p}') and pass the extracted folder")
        raise ValueError(f"[fnl.data] '{p}' is a file; {variant} needs the extracted "
                         f"python-pickle folder ({CIFAR10_DIR if variant == 'cifar10' else CIFAR100_DIR})")
    marker, sub = ((_CIFAR10_TRAIN[0], CIFAR10_DIR) if variant == "cifar10" else ("train", CIFAR100_DIR))
    if (p / marker).is_file():
        return p
    if (p / sub / marker).is_file():
        return p / sub
    raise FileNotFoundError(f"[fnl.data] '{p}' is not a {variant} python folder: expected "
                            f"'{marker}' in it or in '{p / sub}'")


def load_cifar10(path: PathLike, *, normalize: bool = True) -> Dataset:
    """CIFAR-10 from `path` (the folder cifar-10-batches-py or its parent): 50,000 train and
    10,000 test images, float32 (N, 3, 32, 32), labels 0..9."""
    folder = find_cifar_folder(path, "cifar10")
    x_tr, y_tr = _stack([_batch_arrays(folder / name, "labels", 10) for name in _CIFAR10_TRAIN])
    x_te, y_te = _stack([_batch_arrays(folder / _CIFAR10_TEST, "labels", 10)])
    names = _label_names(folder / "batches.meta", "label_names")
    return finish_dataset("cifar10", x_tr, y_tr, x_te, y_te, num_classes=10, normalize=normalize,
                          crop_padding=4, flip=True,
                          class_names=names if names and len(names) == 10 else None)


def load_cifar100(path: PathLike, *, normalize: bool = True) -> Dataset:
    """CIFAR-100 (fine labels) from `path` (the folder cifar-100-python or its parent): 50,000
    train and 10,000 test images, float32 (N, 3, 32, 32), labels 0..99."""
    folder = find_cifar_folder(path, "cifar100")
    x_tr, y_tr = _stack([_batch_arrays(folder / "train", "fine_labels", 100)])
    x_te, y_te = _stack([_batch_arrays(folder / "test", "fine_labels", 100)])
    names = _label_names(folder / "meta", "fine_label_names")
    return finish_dataset("cifar100", x_tr, y_tr, x_te, y_te, num_classes=100, normalize=normalize,
                          crop_padding=4, flip=True,
                          class_names=names if names and len(names) == 100 else None)
