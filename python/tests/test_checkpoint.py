"""fnl.checkpoint: round trips, atomic writes, rejection of damaged files, RNG state."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fnl.checkpoint as ck
from fnl.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    rng_from_state,
    rng_set_state,
    rng_to_state,
    save_checkpoint,
)


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "layer1.U": rng.normal(size=(5, 3)).astype(np.float32),
        "layer1.V": rng.normal(size=(4, 3)).astype(np.float32),
        "opt/momentum/layer1.U": rng.normal(size=(5, 3)),
        "steps": np.array(17, dtype=np.int64),
        "mask": rng.random(6) < 0.5,
        "bytes": rng.integers(0, 256, size=(2, 2), dtype=np.uint8),
        "empty": np.zeros((0, 3), np.float32),
        "ünïcode name": np.arange(3, dtype=np.int32),
    }


CONFIG = {"model": "resnet", "ranks": {"layer1": 3}, "epoch": 2, "lr": 0.1,
          "history": [{"loss": 1.5}, {"loss": 0.75}], "flag": True, "none": None}


def _leftovers(folder: Path, final: str):
    return sorted(p.name for p in folder.iterdir() if p.name != final)


def test_round_trip(tmp_path):
    arrays = _arrays()
    path = save_checkpoint(tmp_path / "ck.npz", arrays, CONFIG)
    assert path == tmp_path / "ck.npz" and _leftovers(tmp_path, "ck.npz") == []
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    loaded, config = load_checkpoint(path)
    assert config == CONFIG
    assert set(loaded) == set(arrays)
    for k, a in arrays.items():
        assert loaded[k].dtype == a.dtype and loaded[k].shape == a.shape, k
        np.testing.assert_array_equal(loaded[k], a)


def test_round_trip_conversions_and_exact_name(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    arrays = {"t": base.T, "lst": [1.0, 2.0], "strided": base[:, ::2]}
    config = {"np_int": np.int64(3), "np_float": np.float32(0.5), "tuple": (1, 2),
              "arr": np.arange(3), "path": Path("/x/y"), "big": 2 ** 80}
    path = save_checkpoint(tmp_path / "state", arrays, config)  # no suffix added
    assert path.name == "state" and path.is_file()
    loaded, cfg = load_checkpoint(str(path))
    np.testing.assert_array_equal(loaded["t"], base.T)
    np.testing.assert_array_equal(loaded["strided"], base[:, ::2])
    np.testing.assert_array_equal(loaded["lst"], [1.0, 2.0])
    assert cfg == {"np_int": 3, "np_float": 0.5, "tuple": [1, 2], "arr": [0, 1, 2],
                   "path": "/x/y", "big": 2 ** 80}


def test_overwrite_replaces_previous(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"a": np.zeros(3)}, {"epoch": 1})
    save_checkpoint(path, {"b": np.ones(2)}, {"epoch": 2})
    arrays, config = load_checkpoint(path)
    assert list(arrays) == ["b"] and config == {"epoch": 2}
    assert _leftovers(tmp_path, "ck.npz") == []


def test_required_keys(tmp_path):
    path = save_checkpoint(tmp_path / "ck.npz", {"a": np.zeros(1)}, {"epoch": 1})
    load_checkpoint(path, required_arrays=["a"], required_config=["epoch"])
    with pytest.raises(CheckpointError, match=r"\[fnl.checkpoint\] .* lacks required arrays \['b'\]"):
        load_checkpoint(path, required_arrays=["a", "b"])
    with pytest.raises(CheckpointError, match=r"config lacks required keys \['rng'\]"):
        load_checkpoint(path, required_config=["epoch", "rng"])


# -- atomicity --------------------------------------------------------------------------------
def _previous(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.arange(4.0)}, {"epoch": 1})
    return path, path.read_bytes()


def test_crash_in_replace_keeps_previous(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)

    def boom(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"w": np.zeros(1000)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, "ck.npz") == []  # the temporary file was removed
    monkeypatch.undo()
    arrays, config = load_checkpoint(path)
    assert config == {"epoch": 1}


def test_crash_while_writing_keeps_previous(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)

    def half_write(fh, **entries):
        fh.write(b"PK\x03\x04 partial data")
        raise KeyboardInterrupt  # even a BaseException cleans up

    monkeypatch.setattr(ck.np, "savez", half_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.zeros(10)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, "ck.npz") == []


def test_failed_save_does_not_touch_previous(tmp_path):
    path, before = _previous(tmp_path)
    with pytest.raises(TypeError, match=r"\[fnl.checkpoint\] config is not JSON-serializable"):
        save_checkpoint(path, {"w": np.zeros(2)}, {"f": object()})
    with pytest.raises(TypeError, match=r"array 'o' has dtype object"):
        save_checkpoint(path, {"o": np.array([None, 1], dtype=object)}, {})
    assert path.read_bytes() == before and _leftovers(tmp_path, "ck.npz") == []


_KILLER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import fnl.checkpoint as ck
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "fsync":      # killed after the temporary file is complete, before the rename
        ck.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    else:                    # killed in the middle of writing the archive
        real = ck.np.savez
        def partial(fh, **entries):
            fh.write(b"PK\\x03\\x04" + b"x" * 1000)
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        ck.np.savez = partial
    ck.save_checkpoint(path, {"w": np.zeros(100000, np.float32)}, {"epoch": 2})
""")


@pytest.mark.parametrize("mode", ["fsync", "savez"])
def test_killed_writer_leaves_previous_checkpoint(tmp_path, mode):
    path, before = _previous(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(path), mode], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == before
    arrays, config = load_checkpoint(path)
    assert config == {"epoch": 1}
    # only a hidden temporary file may remain; nothing partial under the final name
    assert all(n.startswith(".ck.npz.") and n.endswith(".tmp") for n in _leftovers(tmp_path, "ck.npz"))


# -- damaged files ----------------------------------------------------------------------------
def _entries(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _meta(entries: dict) -> dict:
    return json.loads(entries["__fnl_checkpoint__"].tobytes().decode())


def _with_meta(entries: dict, meta: dict, redigest: bool = True) -> dict:
    if redigest:
        meta["digest"] = ck._meta_digest(meta["arrays"], meta["config"])
    out = dict(entries)
    out["__fnl_checkpoint__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return out


@pytest.fixture
def good(tmp_path):
    return save_checkpoint(tmp_path / "ck.npz", _arrays(), CONFIG)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[fnl.checkpoint\] no checkpoint at .*nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(good, fraction):
    raw = good.read_bytes()
    good.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(CheckpointError, match=r"\[fnl.checkpoint\] .*(truncated|corrupted)"):
        load_checkpoint(good)


def test_garbage_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"is not an fnl checkpoint \(no '__fnl_checkpoint__' entry"):
        load_checkpoint(plain)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"single .npy array"):
        load_checkpoint(npy)
    assert isinstance(CheckpointError("x"), ValueError)


def test_flipped_byte_in_array_data(good):
    raw = bytearray(good.read_bytes())
    # the float32 layer1.U data: find its bytes and corrupt one
    target = _arrays()["layer1.U"].tobytes()
    pos = bytes(raw).find(target)
    assert pos > 0
    raw[pos + 5] ^= 0xFF
    good.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"\[fnl.checkpoint\] .*corrupted"):
        load_checkpoint(good)


def _add_one(entries, entry):
    entries[entry] = entries[entry] + 1  # same dtype/shape, other values, valid zip


def _to_float64(entries, entry):
    entries[entry] = entries[entry].astype(np.float64)


def _drop(entries, entry):
    del entries[entry]


@pytest.mark.parametrize("name, corrupt, match", [
    ("layer1.V", _add_one, r"array 'layer1.V' does not match its sha256 digest"),
    ("steps", _drop, r"array 'steps' \(entry 'a\d+'\) is missing"),
    ("layer1.U", _to_float64, r"array 'layer1.U' is <f8 \(5, 3\), the table says <f4"),
], ids=["digest_mismatch", "missing_entry", "shape_or_dtype_disagrees_with_table"])
def test_array_entry_problems(good, name, corrupt, match):
    entries = _entries(good)
    meta = _meta(entries)
    entry = next(a["entry"] for a in meta["arrays"] if a["name"] == name)
    corrupt(entries, entry)
    np.savez(good, **entries)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(good)


def test_config_tampering_detected(good):
    entries = _entries(good)
    meta = _meta(entries)
    meta["config"]["epoch"] = 99
    np.savez(good, **_with_meta(entries, meta, redigest=False))
    with pytest.raises(CheckpointError, match=r"metadata digest mismatch"):
        load_checkpoint(good)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(format_version=CHECKPOINT_VERSION + 1), r"format version 2; this fnl reads version 1"),
    (lambda m: m.pop("format_version"), r"format version None"),
    (lambda m: m.update(format="something-else"), r"is not an fnl checkpoint \(format 'something-else'\)"),
    (lambda m: m.pop("config"), r"field 'config' is missing"),
    (lambda m: m.update(arrays={}), r"field 'arrays' is missing or not a list"),
    (lambda m: m["arrays"].append({"name": "x"}), r"malformed array table entry"),
])
def test_metadata_problems(good, edit, match):
    entries = _entries(good)
    meta = _meta(entries)
    edit(meta)
    if "config" in meta and isinstance(meta.get("arrays"), list):
        meta["digest"] = ck._meta_digest(meta["arrays"], meta["config"])
    np.savez(good, **_with_meta(entries, meta, redigest=False))
    with pytest.raises(CheckpointError, match=r"\[fnl.checkpoint\] .*" + match):
        load_checkpoint(good)


def test_metadata_not_json(good):
    entries = _entries(good)
    entries["__fnl_checkpoint__"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(good, **entries)
    with pytest.raises(CheckpointError, match=r"metadata is not valid JSON"):
        load_checkpoint(good)
    entries["__fnl_checkpoint__"] = np.zeros((2, 2), np.float32)
    np.savez(good, **entries)
    with pytest.raises(CheckpointError, match=r"metadata entry is malformed"):
        load_checkpoint(good)


def test_save_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[fnl.checkpoint\] folder .* does not exist"):
        save_checkpoint(tmp_path / "no" / "ck.npz", {}, {})
    with pytest.raises(ValueError, match=r"is a folder"):
        save_checkpoint(tmp_path, {}, {})
    with pytest.raises(TypeError, match=r"arrays must be a mapping"):
        save_checkpoint(tmp_path / "ck.npz", [np.zeros(1)], {})
    with pytest.raises(TypeError, match=r"config must be a mapping"):
        save_checkpoint(tmp_path / "ck.npz", {}, [1])
    with pytest.raises(TypeError, match=r"array names must be non-empty strings"):
        save_checkpoint(tmp_path / "ck.npz", {"": np.zeros(1)}, {})
    with pytest.raises(TypeError, match=r"dtype <U1"):
        save_checkpoint(tmp_path / "ck.npz", {"s": np.array(["a"])}, {})
    assert list(tmp_path.iterdir()) == []


# -- RNG state --------------------------------------------------------------------------------
@pytest.mark.parametrize("bitgen", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_rng_state_round_trip_through_json(bitgen):
    rng = np.random.Generator(getattr(np.random, bitgen)(1234))
    rng.normal(size=7)
    rng.integers(0, 10, size=3, dtype=np.uint32)  # leaves a buffered uint32 in some generators
    state = json.loads(json.dumps(rng_to_state(rng)))
    restored = rng_from_state(state)
    np.testing.assert_array_equal(restored.random(20), rng.random(20))
    np.testing.assert_array_equal(restored.permutation(50), rng.permutation(50))
    other = np.random.Generator(getattr(np.random, bitgen)(1))
    rng_set_state(other, state)
    rng2 = rng_from_state(state)
    np.testing.assert_array_equal(other.integers(0, 2 ** 31, 10), rng2.integers(0, 2 ** 31, 10))


def test_rng_state_in_checkpoint_resumes_loader_stream(tmp_path):
    from fnl.data import Augmentation, BatchLoader

    x = np.random.default_rng(0).normal(size=(30, 1, 4, 4)).astype(np.float32)
    y = np.arange(30)
    aug = Augmentation(crop_padding=1, flip=True)
    loader = BatchLoader(x, y, 7, rng=np.random.default_rng(42), augment=aug)
    list(loader)  # epoch 1
    save_checkpoint(tmp_path / "ck.npz", {"x": np.zeros(1)}, {"rng": rng_to_state(loader.rng)})
    uninterrupted = list(loader)  # epoch 2
    _, config = load_checkpoint(tmp_path / "ck.npz")
    resumed = BatchLoader(x, y, 7, rng=rng_from_state(config["rng"]), augment=aug)
    again = list(resumed)
    assert len(again) == len(uninterrupted) == 5
    for (xa, ya), (xb, yb) in zip(uninterrupted, again):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)


def test_rng_state_errors():
    with pytest.raises(TypeError, match=r"\[fnl.checkpoint\] rng must be a numpy.random.Generator"):
        rng_to_state(np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"not a numpy bit generator state"):
        rng_from_state({"state": 1})
    with pytest.raises(ValueError, match=r"unknown bit generator 'Nope'"):
        rng_from_state({"bit_generator": "Nope"})
    with pytest.raises(ValueError, match=r"unknown bit generator 'Generator'"):
        rng_from_state({"bit_generator": "Generator"})
    with pytest.raises(ValueError, match=r"invalid PCG64 state"):
        rng_from_state({"bit_generator": "PCG64", "state": {"state": 1}})
    state = rng_to_state(np.random.Generator(np.random.MT19937(0)))
    with pytest.raises(ValueError, match=r"state is for MT19937, the generator uses PCG64"):
        rng_set_state(np.random.default_rng(0), state)
    with pytest.raises(TypeError, match=r"rng must be"):
        rng_set_state(None, state)
