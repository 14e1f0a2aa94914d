"""The `fnl` command end to end on tiny configurations: train, resume, export, compare, errors.

Runs go through ``fnl.cli.main(argv)`` in-process (same code path as the console script)
on the embedded digits data with a quarter-width ResNet-20 and a few batches per epoch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnl import cli
from fnl import experiment as ex
from fnl.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--width", "0.25", "--batch-size", "16", "--max-batches", "2", "--quiet", "--threads", "1"]


def fnl(capsys, *argv):
    """(exit status, stdout, stderr) of `fnl argv...`."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path):
    """{relative path: sha256} of every file under folder (to prove nothing changed)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str, *needles: str) -> None:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert lines, "expected an error message on stderr"
    assert len(lines) == 1 or lines[0].startswith("usage:"), err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch low-rank (SI & FD) run and a 2-epoch overcomplete run."""
    base = tmp_path_factory.mktemp("trained")
    runs = {}
    for name, extra in (("lowrank", []), ("full", ["--factorization", "full"])):
        out = base / name
        assert cli.main(["train", "--out", str(out), "--epochs", "2", *TINY, *extra]) == 0
        runs[name] = out
    return runs


# -- help -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [[], ["train"], ["compare"], ["export"]])
def test_help(capsys, cmd):
    code, out, _ = fnl(capsys, *cmd, "--help")
    assert code == 0
    assert "usage: fnl" in out
    for opt in {"train": ["--rank-scale", "--target-ratio", "--init", "--decay", "--optimizer", "--resume",
                          "--threads", "--max-batches", "--warmup"],
                "compare": ["--seeds", "--variants", "--overcomplete"],
                "export": ["CHECKPOINT", "--out"]}.get(cmd[0] if cmd else "", ["train", "compare", "export"]):
        assert opt in out


def test_no_command_prints_help(capsys):
    code, out, _ = fnl(capsys)
    assert code == 2 and "train" in out


def test_python_dash_m(tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "fnl", "train", "--help"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 0 and "--factorization" in r.stdout


# -- train ----------------------------------------------------------------------------------------
def test_train_end_to_end(trained, capsys):
    out = trained["lowrank"]
    assert {p.name for p in out.iterdir()} >= {"metrics.jsonl", "checkpoint.npz", "model.npz"}
    rows = ex.read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "effective_step", "effective_step_base",
                  "frobenius"):
            assert isinstance(r[k], float) and np.isfinite(r[k]), k
        kinds = {l["kind"] for l in r["layers"]}
        assert "conv" in kinds and "linear" in kinds
        fact = [l for l in r["layers"] if l["ranks"]]
        assert fact, "factorized layers must report their ranks"
        for l in r["layers"]:
            assert l["nuclear"] >= l["frobenius"] > 0
            assert l["effective_step"] == pytest.approx(r["lr"] / l["frobenius"] ** 2, rel=1e-5)
    arrays, record = load_checkpoint(out / "model.npz")
    assert record["epoch"] == 2 and record["finished"]
    assert record["config"]["factorization"] == "lowrank" and record["config"]["rank_scale"] == 0.25
    assert record["config"]["init"] == "spectral" and record["config"]["decay"] == "frobenius"
    assert record["ranks"] and all(isinstance(v, list) for v in record["ranks"].values())
    assert record["rng"]["loader"]["bit_generator"] == "PCG64"
    assert any(k.startswith("optim/state.") for k in arrays)
    assert any(k.endswith("factor_ranks") for k in arrays)
    assert record["optimizer"]["scalars"]["param_groups.0.step"] == 4


def test_train_prints_test_accuracy(tmp_path, capsys):
    code, out, err = fnl(capsys, "train", "--out", tmp_path / "r", "--epochs", "1", *TINY,
                         "--factorization", "dense", "--optimizer", "adamw", "--schedule", "step")
    assert code == 0, err
    assert re.search(r"^test accuracy: \d{1,3}\.\d\d%$", out, re.M), out
    assert "saved" in out


@pytest.mark.parametrize("extra", [
    ["--factorization", "deep", "--depth", "2", "--decay", "weight"],
    ["--factorization", "wide", "--optimizer", "flambe"],
    ["--factorization", "lowrank", "--target-ratio", "0.3", "--init", "independent", "--optimizer", "lamb",
     "--decay", "crs"],
    ["--model", "vgg-small", "--decay", "none", "--nesterov", "--warmup", "1"],
])
def test_train_variants(tmp_path, capsys, extra):
    code, out, err = fnl(capsys, "train", "--out", tmp_path / "r", "--epochs", "2", *TINY, *extra)
    assert code == 0, err
    assert "test accuracy:" in out


def _arrays_equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_resume_after_interruption_is_bit_identical(tmp_path, capsys):
    args = ["--epochs", "2", *TINY]
    assert fnl(capsys, "train", "--out", tmp_path / "full", *args)[0] == 0
    code, out, _ = fnl(capsys, "train", "--out", tmp_path / "cut", *args, "--stop-after", "1")
    assert code == 0 and "--resume" in out
    assert not (tmp_path / "cut" / "model.npz").exists()
    code, out, err = fnl(capsys, "train", "--out", tmp_path / "cut", "--resume", "--quiet")
    assert code == 0, err
    a, ra = load_checkpoint(tmp_path / "full" / "model.npz")
    b, rb = load_checkpoint(tmp_path / "cut" / "model.npz")
    _arrays_equal(a, b)
    assert ra["rng"] == rb["rng"] and ra["schedule"] == rb["schedule"]
    ma = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
          for r in ex.read_metrics(tmp_path / "full" / "metrics.jsonl")]
    mb = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
          for r in ex.read_metrics(tmp_path / "cut" / "metrics.jsonl")]
    assert ma == mb


def test_resume_extends_a_finished_run(tmp_path, capsys):
    """(2 epochs) == (1 epoch, then --resume --epochs 2) with a schedule that does not depend
    on the planned length."""
    args = [*TINY, "--schedule", "constant"]
    assert fnl(capsys, "train", "--out", tmp_path / "two", "--epochs", "2", *args)[0] == 0
    assert fnl(capsys, "train", "--out", tmp_path / "one", "--epochs", "1", *args)[0] == 0
    code, _, err = fnl(capsys, "train", "--out", tmp_path / "one", "--resume", "--epochs", "2", "--quiet")
    assert code == 0, err
    _arrays_equal(load_checkpoint(tmp_path / "two" / "model.npz")[0], load_checkpoint(tmp_path / "one" / "model.npz")[0])


def test_resume_rejects_changed_settings(trained, capsys):
    before = snapshot(trained["lowrank"])
    code, _, err = fnl(capsys, "train", "--out", trained["lowrank"], "--resume", "--lr", "0.5")
    assert code == 1
    one_error_line(err, "--lr", "differs")
    assert snapshot(trained["lowrank"]) == before


# -- export ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", ["lowrank", "full"])
def test_export_matches_outputs(trained, tmp_path, capsys, run):
    dst = tmp_path / f"{run}-dense.npz"
    code, out, err = fnl(capsys, "export", trained[run], "--out", dst)
    assert code == 0, err
    m = re.search(r"max abs difference of the outputs on \d+ random inputs: (\S+)", out)
    assert m and float(m.group(1)) < 1e-3
    model, cfg, rec = ex.load_model(trained[run] / "model.npz")
    dense, dcfg, drec = ex.load_model(dst)
    assert dcfg.factorization == "dense" and not dense.factor_groups()
    assert drec["exported_from"]["params"] == model.num_parameters()
    x = np.random.default_rng(1).standard_normal((7, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ex.evaluate_logits(dense, x), ex.evaluate_logits(model, x), rtol=1e-4, atol=1e-4)
    if run == "full":  # overcomplete collapses to fewer parameters
        assert dense.num_parameters() < model.num_parameters()
    assert f"{dense.num_parameters():,}" in out


def test_export_refuses_to_overwrite(trained, tmp_path, capsys):
    dst = tmp_path / "x.npz"
    dst.write_bytes(b"keep me")
    code, _, err = fnl(capsys, "export", trained["lowrank"], "--out", dst)
    assert code == 1
    one_error_line(err, "exists", "--force")
    assert dst.read_bytes() == b"keep me"


# -- damaged checkpoints --------------------------------------------------------------------------
def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped", "empty", "missing_arrays", "foreign"])
def test_damaged_checkpoint(trained, tmp_path, capsys, damage):
    run = _copy_run(trained["lowrank"], tmp_path / "run")
    cp = run / "checkpoint.npz"
    raw = cp.read_bytes()
    if damage == "truncated":
        cp.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cp.write_bytes(os.urandom(2048))
    elif damage == "flipped":
        b = bytearray(raw)
        b[len(b) // 3] ^= 0xFF
        cp.write_bytes(bytes(b))
    elif damage == "empty":
        cp.write_bytes(b"")
    elif damage == "missing_arrays":  # a valid file whose weights are partial
        arrays, record = load_checkpoint(cp)
        arrays = {k: v for i, (k, v) in enumerate(sorted(arrays.items())) if i % 3}
        save_checkpoint(cp, arrays, record)
    elif damage == "foreign":  # a valid fnl checkpoint that is not a training run
        save_checkpoint(cp, {"w": np.zeros(3, np.float32)}, {"what": "else"})
    before = snapshot(run)
    code, out, err = fnl(capsys, "train", "--out", run, "--resume", "--epochs", "3")
    assert code == 1
    one_error_line(err, "checkpoint", str(cp))
    assert "Traceback" not in err
    assert snapshot(run) == before
    (run / "model.npz").unlink()
    code, _, err = fnl(capsys, "export", cp, "--out", tmp_path / "exported.npz")
    assert code == 1
    one_error_line(err, str(cp))
    assert not (tmp_path / "exported.npz").exists()


def test_stray_temporary_file_is_ignored(trained, tmp_path, capsys):
    run = _copy_run(trained["lowrank"], tmp_path / "run")
    (run / ".checkpoint.npz.abc123.tmp").write_bytes(b"half a file")  # a crash during a save
    code, out, err = fnl(capsys, "train", "--out", run, "--resume", "--epochs", "3")
    assert code == 0, err
    assert ex.read_metrics(run / "metrics.jsonl")[-1]["epoch"] == 3


# -- bad arguments and data paths -----------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["train", "--model", "resnet21"], "--model"),
    (["train", "--rank-scale", "0"], "--rank-scale"),
    (["train", "--rank-scale", "1.5"], "--rank-scale"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--batch-size", "x"], "--batch-size"),
    (["train", "--decay", "l1"], "--decay"),
    (["train", "--bogus"], "unrecognized"),
    (["compare", "--variants", "dense,nope"], "nope"),
    (["compare", "--seeds", "0,0"], "--seeds"),
    (["export"], "CHECKPOINT"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors(tmp_path, capsys, argv, needle):
    code, _, err = fnl(capsys, *argv, "--out", tmp_path / "o") if argv[0] != "frobnicate" else fnl(capsys, *argv)
    assert code == 2
    assert needle in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--factorization", "dense", "--rank-scale", "0.5"], "--rank-scale"),
    (["--rank-scale", "0.5", "--target-ratio", "0.5"], "--target-ratio"),
    (["--depth", "3"], "--depth"),
    (["--optimizer", "adamw", "--nesterov"], "nesterov"),
    (["--warmup", "5", "--epochs", "2"], "warmup"),
])
def test_inconsistent_options(tmp_path, capsys, argv, needle):
    code, _, err = fnl(capsys, "train", "--out", tmp_path / "o", *argv)
    assert code == 1
    one_error_line(err, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("data", ["missing", "folder", "text", "cifar10", "badnpz"])
def test_bad_data(tmp_path, capsys, data):
    extra = []
    if data == "missing":
        arg, needle = str(tmp_path / "nowhere.npz"), "no such file"
    elif data == "folder":
        (tmp_path / "empty").mkdir()
        arg, needle = str(tmp_path / "empty"), "not a dataset folder"
    elif data == "text":
        (tmp_path / "d.txt").write_text("hello")
        arg, needle = str(tmp_path / "d.txt"), "neither"
    elif data == "cifar10":
        arg, needle = "cifar10", "path"
    else:
        np.savez(tmp_path / "bad.npz", images=np.zeros((10, 8, 8), np.float32), labels=np.zeros(7, np.int64))
        arg, needle = str(tmp_path / "bad.npz"), "bad.npz"
    for cmd in ("train", "compare"):
        code, _, err = fnl(capsys, cmd, "--data", arg, "--out", tmp_path / "o", *extra)
        assert code == 1, (cmd, err)
        one_error_line(err, needle)
        assert not (tmp_path / "o").exists()


def test_existing_run_is_not_overwritten(trained, capsys):
    before = snapshot(trained["lowrank"])
    code, _, err = fnl(capsys, "train", "--out", trained["lowrank"], *TINY)
    assert code == 1
    one_error_line(err, "already holds a run", "--resume")
    assert snapshot(trained["lowrank"]) == before


def test_resume_without_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "nothing"):
        code, _, err = fnl(capsys, "train", "--out", out, "--resume")
        assert code == 1
        one_error_line(err, "checkpoint.npz")
    assert not (tmp_path / "nothing").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_export_missing_input(tmp_path, capsys):
    code, _, err = fnl(capsys, "export", tmp_path / "none.npz")
    assert code == 1
    one_error_line(err, "none.npz")


def test_demo_subcommand_is_optional(capsys):
    import importlib.util
    if importlib.util.find_spec("fnl.demo") is not None:
        pytest.skip("fnl.demo is installed")
    code, _, err = fnl(capsys, "demo")
    assert code == 1 and "demo" in err


# -- compare --------------------------------------------------------------------------------------
def test_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--out", out, "--seeds", "2", "--epochs", "2", *TINY,
            "--variants", "dense,lowrank,lowrank-si-fd,over,over-fd"]
    code, stdout, err = fnl(capsys, *args)
    assert code == 0, err
    md = (out / "results.md").read_text()
    for label in ("dense", "low-rank", "low-rank + SI & FD", "overcomplete (full)", "overcomplete (full) + FD"):
        assert f"| {label} |" in md and f"| {label} |" in stdout
    rows = [l for l in md.splitlines() if l.startswith("| ") and "±" in l]
    assert len(rows) == 5
    for row in rows:
        assert re.search(r"\| \d+\.\d\d ± \d+\.\d\d \|", row), row
    for png in ("accuracy_vs_params.png", "training_curves.png", "effective_step_size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "results.json").read_text())
    s = res["summary"]
    assert s["over"]["params_test_time"] == s["dense"]["params_test_time"]  # collapsed
    assert s["over"]["params_training"] > s["dense"]["params_training"]
    assert s["lowrank"]["params_test_time"] < s["dense"]["params_test_time"]
    assert len(res["runs"]["dense"]) == 2
    claims = [o["claim"] for o in res["orderings"]]  # the low-rank ordering needs all four low-rank variants
    assert len(claims) == 2 and claims[0].startswith("overcomplete with FD") and claims[1].startswith("FD is necessary")
    assert "The paper's orderings" in md
    # the same command again must not overwrite; --resume reuses every finished run
    before = snapshot(out / "runs")
    code, _, err = fnl(capsys, *args)
    assert code == 1
    one_error_line(err, "already holds", "--resume")
    code, stdout, err = fnl(capsys, *args, "--resume")
    assert code == 0, err
    assert stdout.count("reusing the finished run") == 10
    assert snapshot(out / "runs") == before


# -- the accuracy requirement -------------------------------------------------------------
def test_default_train_reaches_95_percent_on_digits(tmp_path, capsys):
    """`fnl train` with its defaults: a low-rank ResNet-20 at rank-scale 0.25 with SI & FD,
    seeded, on digits, in the default number of epochs (about 15-25 s on 2 cores)."""
    code, out, err = fnl(capsys, "train", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    acc = float(re.search(r"^test accuracy: (\d+\.\d\d)%$", out, re.M).group(1))
    _, record = load_checkpoint(tmp_path / "r" / "model.npz")
    cfg = record["config"]
    assert (cfg["model"], cfg["factorization"], cfg["rank_scale"], cfg["init"], cfg["decay"]) == \
        ("resnet20", "lowrank", 0.25, "spectral", "frobenius")
    assert acc >= 95.0, out


def test_train_and_export_on_an_npz_file(tmp_path, capsys):
    """Any .npz of images + labels: 3 channels, 12x12, 4 classes (crop augmentation applies)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", images=rng.random((120, 12, 12, 3), dtype=np.float32),
             labels=rng.integers(0, 4, 120))
    code, out, err = fnl(capsys, "train", "--data", tmp_path / "toy.npz", "--out", tmp_path / "r", "--epochs", "1",
                         "--model", "vgg-small", *TINY)
    assert code == 0, err
    _, record = load_checkpoint(tmp_path / "r" / "model.npz")
    assert record["architecture"]["in_channels"] == 3 and record["architecture"]["num_classes"] == 4
    code, out, err = fnl(capsys, "export", tmp_path / "r")
    assert code == 0, err
    assert (tmp_path / "r" / "model-dense.npz").exists()
