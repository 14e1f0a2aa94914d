"""Datasets for the fnl command: the embedded digits, CIFAR-10/100 folders and .npz files.

    >>> from fnl.data import load_dataset, BatchLoader, Augmentation
    >>> ds = load_dataset("digits")                  # (N, 1, 8, 8) float32, labels int64
    >>> loader = BatchLoader(ds.x_train, ds.y_train, 64, rng=np.random.default_rng(0),
    ...                      augment=Augmentation.for_dataset(ds))

Every loader returns a `Dataset` (train/test arrays normalized with train statistics,
num_classes, in_channels, image_size, name). Errors are ValueError / FileNotFoundError with
messages starting "[fnl.data]".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .augment import Augmentation, horizontal_flip, random_crop
from .cifar import CIFAR10_DIR, CIFAR100_DIR, find_cifar_folder, load_cifar10, load_cifar100
from .dataset import Dataset, channel_stats, normalize_images, stratified_split
from .digits import load_digits
from .loader import BatchLoader, iterate_batches
from .npz import load_npz

__all__ = [
    "Augmentation",
    "BatchLoader",
    "DATASET_NAMES",
    "Dataset",
    "channel_stats",
    "find_cifar_folder",
    "horizontal_flip",
    "iterate_batches",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_npz",
    "normalize_images",
    "random_crop",
    "stratified_split",
]

DATASET_NAMES = ("digits", "cifar10", "cifar100")
_ALIASES = {"digits": "digits", "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
            "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100"}


def _detect(p: Path) -> str:
    """The kind of data at an existing path: "npz", "cifar10" or "cifar100"."""
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return "npz"
        if p.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise ValueError(f"[fnl.data] '{p}' is an archive: extract it first (tar xzf '{p}') "
                             f"and pass the extracted folder")
        raise ValueError(f"[fnl.data] '{p}' is neither an .npz file nor a CIFAR python folder")
    kinds = []
    for kind in ("cifar10", "cifar100"):
        try:
            find_cifar_folder(p, kind)
            kinds.append(kind)
        except FileNotFoundError:
            pass
    if len(kinds) == 1:
        return kinds[0]
    if len(kinds) == 2:
        raise ValueError(f"[fnl.data] '{p}' holds both CIFAR-10 and CIFAR-100; pass "
                         f"name='cifar10' or name='cifar100' with path='{p}'")
    raise ValueError(f"[fnl.data] '{p}' is not a dataset folder: expected the extracted "
                     f"'{CIFAR10_DIR}' (data_batch_1..5, test_batch) or '{CIFAR100_DIR}' "
                     f"(train, test), or a parent folder holding one of them")


def load_dataset(name_or_path: Union[str, "os.PathLike[str]"], *, path: Optional[Union[str, "os.PathLike[str]"]] = None,
                 normalize: bool = True, test_fraction: float = 0.2, split_seed: int = 0,
                 **npz_options) -> Dataset:
    """Load a dataset by name or path and return a Dataset.

    name_or_path:
      * "digits": scikit-learn's bundled 8x8 digits (stratified split with split_seed and
        test_fraction);
      * "cifar10" / "cifar100" with `path=` the extracted python folder (or its parent);
      * a path to a CIFAR python folder (kind detected from its files), or to an .npz file
        (see fnl.data.load_npz; npz_options such as images_key=, layout= go there; files
        without a test set are split with split_seed and test_fraction).
    """
    if isinstance(name_or_path, str) and name_or_path.strip().lower() in _ALIASES:
        kind = _ALIASES[name_or_path.strip().lower()]
        if kind == "digits":
            if path is not None or npz_options:
                raise ValueError("[fnl.data] 'digits' is embedded: it takes no path or npz options")
            return load_digits(test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)
        if path is None:
            raise ValueError(f"[fnl.data] {kind} needs the path of its extracted python folder "
                             f"('{CIFAR10_DIR if kind == 'cifar10' else CIFAR100_DIR}' from "
                             f"https://www.cs.toronto.edu/~kriz/cifar.html)")
        if npz_options:
            raise ValueError(f"[fnl.data] unexpected options for {kind}: {sorted(npz_options)}")
        loader = load_cifar10 if kind == "cifar10" else load_cifar100
        return loader(path, normalize=normalize)
    if path is not None:
        raise ValueError(f"[fnl.data] path= goes with a dataset name ({', '.join(DATASET_NAMES)}), "
                         f"got name_or_path={name_or_path!r}")
    try:
        p = Path(name_or_path).expanduser()
    except TypeError:
        raise TypeError(f"[fnl.data] expected a dataset name or a path, got "
                        f"{type(name_or_path).__name__}") from None
    if not p.exists():
        raise FileNotFoundError(f"[fnl.data] no such file or folder: '{p}' (expected one of "
                                f"{', '.join(DATASET_NAMES)}, a CIFAR python folder or an .npz file)")
    kind = _detect(p)
    if kind == "npz":
        return load_npz(p, test_fraction=test_fraction, split_seed=split_seed,
                        normalize=normalize, **npz_options)
    if npz_options:
        raise ValueError(f"[fnl.data] unexpected options for {kind}: {sorted(npz_options)}")
    return (load_cifar10 if kind == "cifar10" else load_cifar100)(p, normalize=normalize)
