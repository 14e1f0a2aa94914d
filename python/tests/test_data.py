"""fnl.data: digits, CIFAR pickle folders, npz files, augmentation, batching, error paths."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from fnl.data import (
    Augmentation,
    BatchLoader,
    Dataset,
    horizontal_flip,
    iterate_batches,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_digits,
    load_npz,
    random_crop,
    stratified_split,
)

pytest.importorskip("sklearn")


# -- digits -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def digits_raw() -> Dataset:
    return load_digits(normalize=False)


def test_digits_shapes_and_metadata(digits):
    assert digits.name == "digits"
    assert digits.num_train + digits.num_test == 1797
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.x_test.shape[1:] == (1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.x_train.flags.c_contiguous
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64
    assert digits.num_classes == 10 and digits.in_channels == 1 and digits.image_size == (8, 8)
    assert digits.input_shape == (1, 8, 8)
    assert digits.flip is False and digits.crop_padding == 1
    assert set(np.unique(digits.y_test)) == set(range(10))
    meta = digits.metadata()
    assert meta["num_classes"] == 10 and meta["image_size"] == [8, 8]
    assert "digits" in repr(digits) and "1x8x8" in digits.describe()


def test_digits_split_is_stratified(digits):
    counts = np.bincount(digits.y_train, minlength=10) + np.bincount(digits.y_test, minlength=10)
    expected_test = np.floor(0.2 * counts + 0.5)
    np.testing.assert_array_equal(np.bincount(digits.y_test, minlength=10), expected_test)
    # about 20% test overall
    assert abs(digits.num_test / 1797 - 0.2) < 0.01


def test_digits_split_deterministic(digits):
    again = load_digits()
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    other = load_digits(split_seed=1)
    assert not np.array_equal(other.y_test, digits.y_test) or not np.array_equal(other.x_test, digits.x_test)
    assert other.num_test == digits.num_test


def test_digits_split_partitions_the_samples(digits_raw):
    # raw digits rows are all present exactly once across train and test
    from sklearn.datasets import load_digits as sk

    raw = sk().images.astype(np.float32) / 16
    both = np.concatenate([digits_raw.x_train, digits_raw.x_test])[:, 0]
    key = lambda a: np.sort(a.reshape(a.shape[0], -1).view(np.dtype((np.void, 64 * 4))).ravel())
    np.testing.assert_array_equal(key(both), key(raw))


def test_digits_normalized_with_train_stats(digits, digits_raw):
    assert abs(float(digits.x_train.mean())) < 1e-5
    assert abs(float(digits.x_train.std()) - 1.0) < 1e-4
    np.testing.assert_allclose(digits_raw.x_train.mean(), digits.mean[0], rtol=1e-5)
    expected = (digits_raw.x_test - digits.mean[0]) / digits.std[0]
    np.testing.assert_allclose(digits.x_test, expected, rtol=1e-5, atol=1e-6)
    assert 0.0 <= digits_raw.x_train.min() and digits_raw.x_train.max() <= 1.0
    np.testing.assert_array_equal(digits_raw.mean, [0.0])
    np.testing.assert_array_equal(digits_raw.std, [1.0])


def test_digits_other_fraction():
    ds = load_digits(test_fraction=0.5)
    assert abs(ds.num_test - 1797 / 2) <= 10


def test_load_dataset_digits_by_name(digits):
    ds = load_dataset("digits")
    np.testing.assert_array_equal(ds.y_test, digits.y_test)
    ds = load_dataset("DIGITS", split_seed=3)
    assert ds.num_train + ds.num_test == 1797


def test_subset_is_stratified(digits):
    sub = digits.subset(max_train=100, max_test=30, seed=1)
    assert sub.num_train == 100 and sub.num_test == 30
    np.testing.assert_array_equal(np.bincount(sub.y_train, minlength=10), np.full(10, 10))
    assert np.bincount(sub.y_test, minlength=10).min() == 3
    np.testing.assert_array_equal(sub.mean, digits.mean)
    same = digits.subset(max_train=100, max_test=30, seed=1)
    np.testing.assert_array_equal(same.x_train, sub.x_train)
    whole = digits.subset(max_train=10 ** 6)
    assert whole.num_train == digits.num_train
    with pytest.raises(ValueError, match=r"\[fnl.data\] max_train"):
        digits.subset(max_train=0)


# -- stratified_split ------------------------------------------------------------------------
def test_stratified_split_properties():
    labels = np.repeat(np.arange(4), [10, 7, 2, 1])
    np.random.default_rng(0).shuffle(labels)
    tr, te = stratified_split(labels, 0.3, seed=5)
    assert tr.dtype.kind == "i" and np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(labels.size))
    np.testing.assert_array_equal(np.bincount(labels[te], minlength=4), [3, 2, 1, 0])
    tr2, te2 = stratified_split(labels, 0.3, seed=5)
    np.testing.assert_array_equal(te, te2)


@pytest.mark.parametrize("labels, fraction, match", [
    (np.zeros((3, 2), np.int64), 0.2, "vector"),
    (np.zeros(0, np.int64), 0.2, "vector"),
    (np.array([0.0, 1.0]), 0.2, "integers"),
    (np.array([0, -1, 1]), 0.2, ">= 0"),
    (np.array([0, 1, 1]), 0.0, r"\(0, 1\)"),
    (np.array([0, 1, 1]), 1.0, r"\(0, 1\)"),
    (np.array([0, 1, 1]), "x", r"\(0, 1\)"),
])
def test_stratified_split_errors(labels, fraction, match):
    with pytest.raises(ValueError, match=r"\[fnl.data\].*" + match):
        stratified_split(labels, fraction)


def test_digits_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)


def test_dataset_validates_arrays():
    x = np.zeros((4, 1, 2, 2), np.float32)
    y = np.zeros(4, np.int64)
    m, s = np.zeros(1, np.float32), np.ones(1, np.float32)
    with pytest.raises(ValueError, match=r"\[fnl.data\] x_train must be a float32"):
        Dataset("t", x.astype(np.float64), y, x, y, 2, m, s)
    with pytest.raises(ValueError, match=r"y_test must be an int64"):
        Dataset("t", x, y, x, y.astype(np.int32), 2, m, s)
    with pytest.raises(ValueError, match=r"train images and labels disagree"):
        Dataset("t", x, y[:3], x, y, 2, m, s)
    with pytest.raises(ValueError, match=r"must lie in 0..1"):
        Dataset("t", x, y + 2, x, y, 2, m, s)
    with pytest.raises(ValueError, match=r"differ in \(C, H, W\)"):
        Dataset("t", x, y, np.zeros((4, 1, 3, 3), np.float32), y, 2, m, s)


# -- CIFAR ------------------------------------------------------------------------------------
def _dump(path: Path, obj, protocol: int = 2) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def _batch(rng, n, num_classes, label_key="labels", bytes_keys=True):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    d = {"data": data, label_key: labels, "batch_label": "synthetic"}
    if label_key == "fine_labels":
        d["coarse_labels"] = [l // 5 for l in labels]
    return {k.encode(): v for k, v in d.items()} if bytes_keys else d


def make_cifar10(root: Path, seed=0, per_batch=4, n_test=3, bytes_keys=True) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", _batch(rng, per_batch, 10, bytes_keys=bytes_keys))
    _dump(folder / "test_batch", _batch(rng, n_test, 10, bytes_keys=bytes_keys))
    names = [f"class{i}".encode() for i in range(10)]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return folder


def make_cifar100(root: Path, seed=0, n_train=12, n_test=5) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    _dump(folder / "train", _batch(rng, n_train, 100, "fine_labels"))
    _dump(folder / "test", _batch(rng, n_test, 100, "fine_labels"))
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    return folder


def _read(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def test_cifar10_loads_real_format(tmp_path):
    folder = make_cifar10(tmp_path)
    ds = load_cifar10(folder, normalize=False)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    b1, b5, tb = _read(folder / "data_batch_1"), _read(folder / "data_batch_5"), _read(folder / "test_batch")
    # the row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
    np.testing.assert_allclose(ds.x_train[0, 1, 2, 3], b1[b"data"][0, 1024 + 2 * 32 + 3] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_train[:4].reshape(4, -1), b1[b"data"] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_train[16:].reshape(4, -1), b5[b"data"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train[:4], b1[b"labels"])
    np.testing.assert_array_equal(ds.y_test, tb[b"labels"])
    assert ds.class_names == tuple(f"class{i}" for i in range(10))
    assert ds.flip is True and ds.crop_padding == 4


def test_cifar10_normalized_per_channel_and_parent_folder(tmp_path):
    make_cifar10(tmp_path)
    ds = load_cifar10(tmp_path)  # the parent of cifar-10-batches-py
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    assert ds.mean.shape == (3,) and ds.std.shape == (3,)


def test_cifar10_str_keys_and_autodetect(tmp_path):
    folder = make_cifar10(tmp_path, bytes_keys=False)
    a = load_dataset(folder)
    b = load_dataset(str(tmp_path))
    c = load_dataset("cifar10", path=folder)
    assert a.name == b.name == c.name == "cifar10"
    np.testing.assert_array_equal(a.x_train, c.x_train)


def test_cifar100_fine_labels(tmp_path):
    folder = make_cifar100(tmp_path)
    ds = load_cifar100(folder, normalize=False)
    assert ds.name == "cifar100" and ds.num_classes == 100
    assert ds.x_train.shape == (12, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_train, _read(folder / "train")[b"fine_labels"])
    assert ds.class_names[:2] == ("f0", "f1")
    assert load_dataset(tmp_path).name == "cifar100"
    assert load_dataset("cifar-100", path=tmp_path).num_classes == 100


def test_cifar_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[fnl.data\] no such folder"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"not a cifar10 python folder"):
        load_cifar10(tmp_path)
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing CIFAR file .*data_batch_3"):
        load_cifar10(folder)
    with pytest.raises(FileNotFoundError, match=r"not a cifar100 python folder"):
        load_cifar100(folder)


def test_cifar_archive_and_file_rejected(tmp_path):
    arch = tmp_path / "cifar-10-python.tar.gz"
    arch.write_bytes(b"\x1f\x8b junk")
    with pytest.raises(ValueError, match=r"archive: extract it first"):
        load_cifar10(arch)
    with pytest.raises(ValueError, match=r"archive: extract it first"):
        load_dataset(arch)
    other = tmp_path / "file.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match=r"is a file"):
        load_cifar10(other)


def test_cifar_corrupted_pickle(tmp_path):
    folder = make_cifar10(tmp_path)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"data_batch_2' is not a valid CIFAR pickle"):
        load_cifar10(folder)
    (folder / "data_batch_2").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"not a valid CIFAR pickle"):
        load_cifar10(folder)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = make_cifar10(tmp_path)
    _dump(folder / "data_batch_1", {b"data": _Evil(), b"labels": [0]})
    with pytest.raises(ValueError, match=r"disallowed object"):
        load_cifar10(folder)


@pytest.mark.parametrize("mutate, match", [
    (lambda b: {b"labels": b[b"labels"]}, r"has no 'data' entry"),
    (lambda b: {b"data": b[b"data"]}, r"has no 'labels' entry"),
    (lambda b: {**b, b"data": b[b"data"][:, :100]}, r"uint8 of shape \(N, 3072\)"),
    (lambda b: {**b, b"data": b[b"data"].astype(np.float32)}, r"uint8 of shape"),
    (lambda b: {**b, b"labels": b[b"labels"][:-1]}, r"4 images but 3 labels"),
    (lambda b: {**b, b"labels": [0, 1, 2, 10]}, r"labels must lie in 0..9"),
    (lambda b: {**b, b"labels": ["a", "b", "c", "d"]}, r"list of integers"),
    (lambda b: [b], r"expected a pickled dict"),
])
def test_cifar_wrong_contents(tmp_path, mutate, match):
    folder = make_cifar10(tmp_path)
    _dump(folder / "data_batch_4", mutate(_read(folder / "data_batch_4")))
    with pytest.raises(ValueError, match=r"\[fnl.data\].*" + match):
        load_cifar10(folder)


def test_cifar_variant_mismatch(tmp_path):
    # a CIFAR-100 train file where CIFAR-10 expects 'labels'
    folder = make_cifar10(tmp_path)
    _dump(folder / "data_batch_1", _batch(np.random.default_rng(1), 4, 100, "fine_labels"))
    with pytest.raises(ValueError, match=r"no 'labels' entry.*right CIFAR variant"):
        load_cifar10(folder)


def test_load_dataset_both_cifars_is_ambiguous(tmp_path):
    make_cifar10(tmp_path)
    make_cifar100(tmp_path)
    with pytest.raises(ValueError, match=r"holds both CIFAR-10 and CIFAR-100"):
        load_dataset(tmp_path)
    assert load_dataset("cifar100", path=tmp_path).num_classes == 100


# -- load_dataset errors ----------------------------------------------------------------------
def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[fnl.data\] no such file or folder: .*nope"):
        load_dataset("nope")
    with pytest.raises(FileNotFoundError, match=r"no such file or folder"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"needs the path"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match=r"embedded"):
        load_dataset("digits", path=tmp_path)
    with pytest.raises(ValueError, match=r"not a dataset folder"):
        load_dataset(tmp_path)
    txt = tmp_path / "data.csv"
    txt.write_text("1,2,3")
    with pytest.raises(ValueError, match=r"neither an .npz file nor a CIFAR python folder"):
        load_dataset(txt)
    with pytest.raises(ValueError, match=r"path= goes with a dataset name"):
        load_dataset(txt, path=tmp_path)
    with pytest.raises(TypeError, match=r"\[fnl.data\] expected a dataset name or a path"):
        load_dataset(42)
    make_cifar10(tmp_path / "c")
    with pytest.raises(ValueError, match=r"unexpected options"):
        load_dataset(tmp_path / "c", images_key="x")


# -- npz --------------------------------------------------------------------------------------
def test_npz_split_keys_nhwc_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, size=(30, 6, 5, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, size=(10, 6, 5, 3), dtype=np.uint8)
    y_tr, y_te = rng.integers(0, 4, 30), rng.integers(0, 4, 10)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ds = load_npz(path, normalize=False)
    assert ds.name == "mine" and ds.input_shape == (3, 6, 5)
    np.testing.assert_allclose(ds.x_train, x_tr.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.num_classes == int(max(y_tr.max(), y_te.max())) + 1
    assert ds.flip is False and ds.crop_padding == 0
    normed = load_dataset(path)
    np.testing.assert_allclose(normed.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_npz_single_set_is_split(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7, 7)).astype(np.float64)
    y = np.repeat(np.arange(5), 10)
    path = tmp_path / "one.npz"
    np.savez(path, images=x, labels=y)
    ds = load_npz(path, normalize=False, test_fraction=0.2, split_seed=3)
    assert ds.x_train.shape == (40, 1, 7, 7) and ds.x_test.shape == (10, 1, 7, 7)
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(5, 2))
    tr, te = stratified_split(y, 0.2, 3)
    np.testing.assert_allclose(ds.x_test[:, 0], x[te].astype(np.float32))
    again = load_dataset(path, split_seed=3, normalize=False)
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_npz_explicit_keys_layouts_and_label_forms(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.normal(size=(12, 3, 4, 4)).astype(np.float32)
    path = tmp_path / "k.npz"
    np.savez(path, foo=imgs, bar=np.arange(12).reshape(12, 1) % 3, baz=(np.arange(12) % 3).astype(np.float32))
    ds = load_npz(path, images_key="foo", labels_key="bar", normalize=False)
    assert ds.input_shape == (3, 4, 4) and ds.num_classes == 3
    ds2 = load_npz(path, images_key="foo", labels_key="baz", normalize=False)  # integral floats
    np.testing.assert_array_equal(ds2.y_train, ds.y_train)
    ds3 = load_npz(path, images_key="foo", labels_key="bar", layout="nhwc", normalize=False)
    assert ds3.input_shape == (4, 3, 4)
    ds4 = load_npz(path, images_key="foo", labels_key="bar", num_classes=7)
    assert ds4.num_classes == 7
    # upper-case recognised keys (scikit-style)
    p2 = tmp_path / "u.npz"
    np.savez(p2, X_train=imgs, Y_train=np.arange(12) % 3, X_test=imgs[:4], Y_test=np.arange(4) % 3)
    assert load_npz(p2).num_test == 4


def _npz(tmp_path, **arrays) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X4 = np.zeros((6, 1, 4, 4), np.float32)
Y6 = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("arrays, kwargs, match", [
    (dict(images=X4), {}, r"cannot find the labels array among keys \['images'\]"),
    (dict(foo=X4, bar=Y6), {}, r"cannot find the images array"),
    (dict(images=X4, labels=Y6[:5]), {}, r"6 images but 5 labels"),
    (dict(images=X4, labels=Y6.reshape(2, 3)), {}, r"must be a vector \(N,\)"),
    (dict(images=X4, labels=Y6 + 0.5), {}, r"integer class labels, got dtype float64"),
    (dict(images=X4, labels=Y6 - 1), {}, r"must be >= 0"),
    (dict(images=np.zeros((6, 16)), labels=Y6), {}, r"must have shape \(N, H, W\), \(N, C, H, W\)"),
    (dict(images=np.full((6, 4, 4), np.nan), labels=Y6), {}, r"NaN or infinity"),
    (dict(images=np.array(["a"] * 6), labels=Y6), {}, r"numeric array"),
    (dict(x_train=X4, y_train=Y6, x_test=np.zeros((2, 1, 5, 5)), y_test=Y6[:2]), {}, r"test images are \(1, 5, 5\)"),
    (dict(x_train=X4, y_train=Y6, x_test=X4), {}, r"found test images .* without test labels"),
    (dict(images=X4, labels=Y6), dict(images_key="nope"), r"has no array 'nope' \(images_key\)"),
    (dict(images=X4, labels=Y6), dict(layout="hwc"), r"layout must be"),
    (dict(images=X4[:, 0], labels=Y6), dict(layout="nchw"), r"needs 4 dimensions"),
    (dict(images=X4, labels=Y6 * 3), dict(num_classes=2), r"labels reach 3 but num_classes=2"),
    (dict(images=np.zeros((0, 1, 4, 4)), labels=np.zeros(0, np.int64)), {}, r"is empty"),
])
def test_npz_errors(tmp_path, arrays, kwargs, match):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=r"\[fnl.data\].*" + match):
        load_npz(path, **kwargs)


def test_npz_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\[fnl.data\] no such file"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"is not a file"):
        load_npz(tmp_path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match=r"not a readable .npz archive"):
        load_npz(junk)
    np.save(tmp_path / "single.npy", X4)
    single = tmp_path / "single.npz"
    (tmp_path / "single.npy").rename(single)
    with pytest.raises(ValueError, match=r"not a readable .npz archive.*single .npy"):
        load_npz(single)
    obj = tmp_path / "obj.npz"
    np.savez(obj, images=np.array([object()] * 6, dtype=object), labels=Y6)
    with pytest.raises(ValueError, match=r"Python objects"):
        load_npz(obj)
    good = _npz(tmp_path, images=X4, labels=Y6)
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"not a readable .npz archive"):
        load_npz(good)


# -- augmentation -----------------------------------------------------------------------------
def _distinct_batch(n=16, c=2, h=5, w=6):
    return (np.arange(n * c * h * w, dtype=np.float32) + 1).reshape(n, c, h, w)


def test_random_crop_is_shifted_zero_padded_window():
    x = _distinct_batch()
    pad = 2
    out = random_crop(x, pad, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.flags.c_contiguous
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    shifts = set()
    for n in range(x.shape[0]):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.array_equal(out[n], xpad[n, :, dy:dy + 5, dx:dx + 6])]
        assert len(matches) == 1, n
        shifts.add(matches[0])
    assert len(shifts) > 3  # offsets vary over the batch
    # the border that came from padding is exactly zero, the rest comes from the image
    assert (out == 0).any() and set(np.unique(out)) <= set(np.unique(x)) | {0.0}


def test_random_crop_offsets_follow_documented_draws():
    x = _distinct_batch(n=8)
    rng = np.random.default_rng(7)
    out = random_crop(x, 1, rng)
    dy, dx = np.random.default_rng(7).integers(0, 3, size=(2, 8))
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n in range(8):
        np.testing.assert_array_equal(out[n], xpad[n, :, dy[n]:dy[n] + 5, dx[n]:dx[n] + 6])


def test_random_crop_deterministic_and_padding_zero():
    x = _distinct_batch()
    a = random_crop(x, 3, np.random.default_rng(11))
    b = random_crop(x, 3, np.random.default_rng(11))
    c = random_crop(x, 3, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    same = random_crop(x, 0, np.random.default_rng(0))
    np.testing.assert_array_equal(same, x)
    assert same is not x
    assert random_crop(x[:1], 1, np.random.default_rng(0)).shape == (1, 2, 5, 6)


def test_horizontal_flip_is_exact_mirror():
    x = _distinct_batch(n=64)
    out = horizontal_flip(x, np.random.default_rng(3))
    mirrored = [np.array_equal(out[n], x[n, :, :, ::-1]) for n in range(64)]
    kept = [np.array_equal(out[n], x[n]) for n in range(64)]
    assert all(m != k for m, k in zip(mirrored, kept))
    assert 10 < sum(mirrored) < 54
    np.testing.assert_array_equal(horizontal_flip(x, np.random.default_rng(0), p=1.0), x[..., ::-1])
    np.testing.assert_array_equal(horizontal_flip(x, np.random.default_rng(0), p=0.0), x)
    np.testing.assert_array_equal(horizontal_flip(x, np.random.default_rng(3)), out)
    mask = np.random.default_rng(3).random(64) < 0.5
    np.testing.assert_array_equal(np.array(mirrored), mask)


def test_augmentation_pipeline(digits):
    aug = Augmentation.for_dataset(digits)
    assert aug == Augmentation(crop_padding=1, flip=False) and aug.active
    assert "random crop" in aug.describe() and "flip" not in aug.describe()
    assert not Augmentation.for_dataset(digits, enabled=False).active
    assert Augmentation().describe() == "none"
    x = digits.x_train[:32]
    a = aug(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, random_crop(x, 1, np.random.default_rng(1)))
    both = Augmentation(crop_padding=2, flip=True)
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    expect = horizontal_flip(random_crop(x, 2, r2), r2)
    np.testing.assert_array_equal(both(x, r1), expect)


def test_augmentation_errors():
    x = _distinct_batch()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\[fnl.data.random_crop\] x must be an array \(N, C, H, W\)"):
        random_crop(x[0], 1, rng)
    with pytest.raises(ValueError, match=r"padding must be an int >= 0"):
        random_crop(x, -1, rng)
    with pytest.raises(ValueError, match=r"padding must be an int >= 0"):
        random_crop(x, 1.5, rng)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        random_crop(x, 1, 0)
    with pytest.raises(ValueError, match=r"\[fnl.data.horizontal_flip\] p must be in"):
        horizontal_flip(x, rng, p=2.0)
    with pytest.raises(TypeError, match=r"\[fnl.data.horizontal_flip\] rng"):
        horizontal_flip(x, np.random.RandomState(0))


# -- loader -----------------------------------------------------------------------------------
def _xy(n=23):
    x = np.arange(n * 4, dtype=np.float64).reshape(n, 1, 2, 2)
    return x, np.arange(n, dtype=np.int32)


@pytest.mark.parametrize("n, b", [(23, 5), (20, 5), (7, 7), (1, 3), (5, 1)])
def test_loader_covers_every_sample_once(n, b):
    x, y = _xy(n)
    loader = BatchLoader(x, y, b, rng=np.random.default_rng(0))
    assert len(loader) == -(-n // b) and loader.samples_per_epoch == n
    for _ in range(2):
        seen = []
        for xb, yb in loader:
            assert xb.dtype == np.float32 and yb.dtype == np.int64 and xb.flags.c_contiguous
            assert len(yb) <= b
            np.testing.assert_array_equal(xb, x[yb].astype(np.float32))
            seen.append(yb)
        seen = np.concatenate(seen)
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))


def test_loader_drop_last():
    x, y = _xy(23)
    loader = BatchLoader(x, y, 5, drop_last=True, rng=np.random.default_rng(0))
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and loader.samples_per_epoch == 20
    seen = np.concatenate([yb for _, yb in batches])
    assert all(len(yb) == 5 for _, yb in batches) and len(np.unique(seen)) == 20


def test_loader_shuffle_is_seeded_and_changes_per_epoch():
    x, y = _xy(40)
    orders = lambda loader: np.concatenate([yb for _, yb in loader])
    l1 = BatchLoader(x, y, 8, rng=np.random.default_rng(5))
    l2 = BatchLoader(x, y, 8, rng=5)
    e1, e2 = orders(l1), orders(l2)
    np.testing.assert_array_equal(e1, e2)
    assert not np.array_equal(e1, np.arange(40))
    assert not np.array_equal(orders(l1), e1)  # next epoch, new permutation
    np.testing.assert_array_equal(orders(BatchLoader(x, y, 8, shuffle=False)), np.arange(40))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in iterate_batches(x, y, 6)]), np.arange(40))


def test_loader_applies_augmentation_with_its_rng():
    x, y = _xy(10)
    calls = []

    def aug(xb, rng):
        calls.append(rng)
        return -xb

    loader = BatchLoader(x, y, 4, rng=np.random.default_rng(0), augment=aug)
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, -x[yb].astype(np.float32))
    assert len(calls) == 3 and all(r is loader.rng for r in calls)
    assert BatchLoader(x, y, 4, augment=Augmentation()).augment is None


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.zeros((4, 2)), np.zeros(4, int), 0), {}, ValueError, r"batch_size must be an int >= 1"),
    ((np.zeros((4, 2)), np.zeros(4, int), True), {}, ValueError, r"batch_size must be an int >= 1"),
    ((np.zeros((4, 2)), np.zeros(3, int), 2), {}, ValueError, r"x has 4 samples but y has 3"),
    ((np.zeros((0, 2)), np.zeros(0, int), 2), {}, ValueError, r"empty"),
    ((np.zeros((4, 2)), np.zeros(4), 2), {}, ValueError, r"integer labels"),
    ((np.zeros((4, 2)), np.zeros((4, 1), int), 2), {}, ValueError, r"y must be a vector"),
    ((np.zeros(4), np.zeros(4, int), 2), {}, ValueError, r"x must be an array \(N, ...\)"),
    ((np.zeros((4, 2)), np.zeros(4, int), 5), dict(drop_last=True), ValueError, r"leaves no batch"),
    ((np.zeros((4, 2)), np.zeros(4, int), 2), dict(rng="seed"), TypeError, r"rng must be"),
])
def test_loader_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=r"\[fnl.data.BatchLoader\] .*" + match):
        BatchLoader(*args, **kwargs)
