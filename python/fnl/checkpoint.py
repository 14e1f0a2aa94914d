"""Checkpoints: one .npz file of arrays plus a JSON config, written atomically and verified.

File format (version 1): an uncompressed .npz (zip) archive with

* ``a00000``, ``a00001``, ...: the arrays, in the order of their names (any string key is
  allowed; the mapping name -> entry lives in the metadata);
* ``__fnl_checkpoint__``: a uint8 array holding UTF-8 JSON
  ``{"format": "fnl-checkpoint", "format_version": 1, "config": {...},
  "arrays": [{"name", "entry", "dtype", "shape", "sha256"}, ...], "digest": "<sha256>"}``.

Each array's sha256 covers its dtype string, its shape and its C-order bytes; ``digest`` is the
sha256 of the JSON-encoded ``arrays`` list and ``config``, so any change to the arrays, to the
mapping or to the config is detected. Arrays are stored without pickling (object arrays are
refused) and read back with ``allow_pickle=False``.

Atomicity: `save_checkpoint` writes to a temporary file in the destination folder, flushes
and fsyncs it, then renames it over the destination with os.replace (atomic on POSIX) and
fsyncs the folder. A crash at any moment leaves either the previous complete checkpoint or
the new complete one under the final name, never a partial file (a stray temporary
``.<name>.*.tmp`` may remain after a hard kill; it is never read).

RNG state: `rng_to_state` / `rng_from_state` / `rng_set_state` turn a numpy Generator's
``bit_generator.state`` into JSON-compatible data and back, so a resumed run continues the
same random stream.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Tuple, Union

import numpy as np

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "rng_from_state",
    "rng_set_state",
    "rng_to_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "fnl-checkpoint"
CHECKPOINT_VERSION = 1
_META = "__fnl_checkpoint__"
PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (corrupted, truncated, wrong version...)."""


def _err(msg: str) -> str:
    return f"[fnl.checkpoint] {msg}"


# -- JSON helpers -----------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True, separators=(",", ":"))


def _array_sha256(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(a.dtype.str.encode())
    h.update(repr(tuple(int(s) for s in a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())  # a C-order copy only when needed
    return h.hexdigest()


def _meta_digest(arrays_meta: list, config: Any) -> str:
    return hashlib.sha256(_dumps({"arrays": arrays_meta, "config": config}).encode()).hexdigest()


# -- saving -----------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: PathLike, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Path:
    """Write arrays and config to `path` atomically (see the module docstring); returns the path.

    arrays: mapping of string names to numeric/bool arrays (array-likes are converted with
    np.asarray; object arrays are refused). config: a JSON-serializable mapping (NumPy scalars,
    small arrays, tuples and Paths are converted). The exact name is used (no suffix added).
    """
    p = Path(path).expanduser()
    if not isinstance(arrays, Mapping):
        raise TypeError(_err(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}"))
    if not isinstance(config, Mapping):
        raise TypeError(_err(f"config must be a mapping, got {type(config).__name__}"))
    folder = p.parent
    if not folder.is_dir():
        raise FileNotFoundError(_err(f"folder '{folder}' does not exist (cannot write '{p}')"))
    if p.is_dir():
        raise ValueError(_err(f"'{p}' is a folder, expected a checkpoint file name"))

    entries: Dict[str, np.ndarray] = {}
    arrays_meta = []
    for i, name in enumerate(sorted(arrays)):
        if not isinstance(name, str) or not name:
            raise TypeError(_err(f"array names must be non-empty strings, got {name!r}"))
        a = np.asarray(arrays[name])
        if a.dtype.hasobject or a.dtype.kind not in "biufc":
            raise TypeError(_err(f"array '{name}' has dtype {a.dtype}; only numeric and bool "
                                 f"arrays can be stored"))
        entry = f"a{i:05d}"
        entries[entry] = a
        arrays_meta.append({"name": name, "entry": entry, "dtype": a.dtype.str,
                            "shape": [int(s) for s in a.shape], "sha256": _array_sha256(a)})
    try:
        config_plain = json.loads(_dumps(dict(config)))
    except (TypeError, ValueError) as exc:
        raise TypeError(_err(f"config is not JSON-serializable: {exc}")) from None
    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "config": config_plain, "arrays": arrays_meta,
            "digest": _meta_digest(arrays_meta, config_plain)}
    entries[_META] = np.frombuffer(_dumps(meta).encode("utf-8"), dtype=np.uint8)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        try:  # mkstemp creates 0600 files; give the checkpoint the usual umask-based mode
            os.fchmod(fd, 0o666 & ~_current_umask())
        except (AttributeError, OSError):  # pragma: no cover - platforms without fchmod
            pass
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **entries)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return p


# -- loading ----------------------------------------------------------------------------------
def _read_meta(p: Path, npz) -> dict:
    if _META not in npz.files:
        raise CheckpointError(_err(f"'{p}' is not an fnl checkpoint (no '{_META}' entry; "
                                   f"entries: {sorted(npz.files)[:10]})"))
    raw = npz[_META]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(_err(f"'{p}': metadata entry is malformed ({raw.dtype} {raw.shape})"))
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(_err(f"'{p}': metadata is not valid JSON ({exc})")) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(_err(f"'{p}' is not an fnl checkpoint (format "
                                   f"{meta.get('format') if isinstance(meta, dict) else None!r})"))
    version = meta.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(_err(f"'{p}' has format version {version!r}; this fnl reads "
                                   f"version {CHECKPOINT_VERSION}"))
    for key, kind in (("config", dict), ("arrays", list), ("digest", str)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(_err(f"'{p}': metadata field '{key}' is missing or not a "
                                       f"{kind.__name__}"))
    if _meta_digest(meta["arrays"], meta["config"]) != meta["digest"]:
        raise CheckpointError(_err(f"'{p}': metadata digest mismatch (config or array table "
                                   f"was modified or corrupted)"))
    return meta


def load_checkpoint(path: PathLike, *, required_arrays: Iterable[str] = (),
                    required_config: Iterable[str] = ()) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Read and verify a checkpoint written by save_checkpoint; returns (arrays, config).

    Raises FileNotFoundError when the file is missing and CheckpointError (a ValueError) when
    it is truncated or corrupted, has another format or version, fails a digest, lacks an
    array entry, or lacks one of required_arrays / required_config (top-level config keys).
    Every message starts with "[fnl.checkpoint]" and names the file and the problem.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(_err(f"no checkpoint at '{p}'"))
    if not p.is_file():
        raise CheckpointError(_err(f"'{p}' is not a file"))
    arrays: Dict[str, np.ndarray] = {}
    try:
        npz = np.load(p, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(_err(f"'{p}' is not a readable checkpoint (truncated or corrupted "
                                   f"file): {exc}")) from None
    if not hasattr(npz, "files"):
        raise CheckpointError(_err(f"'{p}' is a single .npy array, not an fnl checkpoint"))
    try:
        with npz:
            meta = _read_meta(p, npz)
            for item in meta["arrays"]:
                try:
                    name, entry = item["name"], item["entry"]
                    dtype, shape, digest = item["dtype"], tuple(item["shape"]), item["sha256"]
                except (KeyError, TypeError):
                    raise CheckpointError(_err(f"'{p}': malformed array table entry {item!r}")) from None
                if entry not in npz.files:
                    raise CheckpointError(_err(f"'{p}': array '{name}' (entry '{entry}') is missing "
                                               f"from the file (partial or edited checkpoint)"))
                a = npz[entry]
                if a.dtype.str != dtype or a.shape != shape:
                    raise CheckpointError(_err(f"'{p}': array '{name}' is {a.dtype.str} {a.shape}, "
                                               f"the table says {dtype} {shape}"))
                if _array_sha256(a) != digest:
                    raise CheckpointError(_err(f"'{p}': array '{name}' does not match its sha256 "
                                               f"digest (corrupted data)"))
                arrays[name] = a
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(_err(f"'{p}' is corrupted or truncated ({type(exc).__name__}: "
                                   f"{exc})")) from None
    missing = [k for k in required_arrays if k not in arrays]
    if missing:
        raise CheckpointError(_err(f"'{p}' lacks required arrays {missing}"))
    config = meta["config"]
    missing = [k for k in required_config if k not in config]
    if missing:
        raise CheckpointError(_err(f"'{p}': config lacks required keys {missing}"))
    return arrays, config


# -- RNG state --------------------------------------------------------------------------------
def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, int) and abs(obj) >= 2 ** 53:
        # exact for any JSON reader, not only Python's arbitrary-precision ints
        return {"__int__": str(obj)}
    return obj


def _from_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
        if "__int__" in obj and len(obj) == 1:
            return int(obj["__int__"])
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    return obj


def rng_to_state(rng: np.random.Generator) -> Dict[str, Any]:
    """The Generator's bit_generator.state as JSON-compatible data (big integers and arrays
    are tagged so they survive any JSON reader exactly)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(_err(f"rng must be a numpy.random.Generator, got {type(rng).__name__}"))
    return _to_jsonable(rng.bit_generator.state)


def _bit_generator_for(state: Any) -> np.random.BitGenerator:
    if not isinstance(state, dict) or not isinstance(state.get("bit_generator"), str):
        raise ValueError(_err(f"not a numpy bit generator state: {str(state)[:80]!r}"))
    name = state["bit_generator"]
    cls = getattr(np.random, name, None)
    if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
        raise ValueError(_err(f"unknown bit generator {name!r}"))
    bit_gen = cls()
    try:
        bit_gen.state = _from_jsonable(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(_err(f"invalid {name} state: {exc}")) from None
    return bit_gen


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A new Generator continuing exactly where the saved one stopped."""
    return np.random.Generator(_bit_generator_for(dict(state) if isinstance(state, Mapping) else state))


def rng_set_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Restore a saved state into an existing Generator (same bit generator type)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(_err(f"rng must be a numpy.random.Generator, got {type(rng).__name__}"))
    bit_gen = _bit_generator_for(dict(state) if isinstance(state, Mapping) else state)
    if type(bit_gen) is not type(rng.bit_generator):
        raise ValueError(_err(f"state is for {type(bit_gen).__name__}, the generator uses "
                              f"{type(rng.bit_generator).__name__}"))
    rng.bit_generator.state = bit_gen.state
