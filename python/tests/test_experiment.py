"""fnl.experiment: configuration checks, model variants, schedules, the run loop, resume."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fnl import experiment as ex
from fnl import models, nn
from fnl.checkpoint import load_checkpoint
from fnl.data import load_dataset

TINY = dict(width=0.25, batch_size=16, max_batches=2, epochs=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def run(cfg, out, ds, **kw):
    return ex.run(cfg, out, progress=False, log=None, dataset=ds, **kw)


# -- configuration --------------------------------------------------------------------------------
def test_defaults_are_the_papers_recipe():
    cfg = ex.TrainConfig().validate()
    assert (cfg.model, cfg.factorization, cfg.rank_scale, cfg.init, cfg.decay) == \
        ("resnet20", "lowrank", 0.25, "spectral", "frobenius")
    assert cfg.effective_lr == ex.DEFAULT_LR["sgd"]
    assert "low-rank (rank-scale 0.25)" in cfg.describe()


@pytest.mark.parametrize("change, needle", [
    (dict(model="resnet21"), "model"),
    (dict(factorization="tucker"), "factorization"),
    (dict(rank_scale=0.0), "rank_scale"),
    (dict(rank_scale=None), "exactly one"),
    (dict(target_ratio=0.5), "exactly one"),
    (dict(width=0), "width"),
    (dict(lr=-0.1), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=True), "batch_size"),
    (dict(warmup=3, epochs=3), "warmup"),
    (dict(depth=0), "depth"),
    (dict(optimizer="adamw", nesterov=True), "nesterov"),
    (dict(max_batches=0), "max_batches"),
    (dict(weight_decay=-1.0), "weight_decay"),
])
def test_config_validation(change, needle):
    with pytest.raises(ex.RunError, match=needle):
        dataclasses.replace(ex.TrainConfig(), **change).validate()


def test_config_round_trip():
    cfg = ex.TrainConfig(factorization="deep", rank_scale=None, depth=2, optimizer="flambe", lr=0.01)
    assert ex.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ex.RunError, match="unknown"):
        ex.TrainConfig.from_dict({**cfg.to_dict(), "colour": "blue"})


# -- building blocks ------------------------------------------------------------------------------
@pytest.mark.parametrize("fact", ex.FACTORIZATIONS)
def test_build_model_variants(fact):
    cfg = ex.TrainConfig(width=0.25, factorization=fact, rank_scale=0.25 if fact == "lowrank" else None)
    m = ex.build_model(cfg, 10, 1)
    dense = ex.build_model(dataclasses.replace(cfg, factorization="dense", rank_scale=None), 10, 1)
    groups = m.factor_groups()
    if fact == "dense":
        assert not groups
        return
    layers = [m for m in dense.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    assert len(groups) == len(layers) - 2  # all but the first conv and the final Linear
    if fact == "lowrank":
        assert m.num_parameters() < dense.num_parameters()
        assert ex.test_time_params(m, cfg) == m.num_parameters()
    else:
        assert m.num_parameters() > dense.num_parameters()
        assert ex.test_time_params(m, cfg) == dense.num_parameters()


def test_spectral_full_rank_matches_dense():
    """SI at full rank computes the dense model's function (same seed -> same dense init)."""
    cfg = ex.TrainConfig(width=0.25, factorization="full", rank_scale=None)
    over = ex.build_model(cfg, 10, 1).eval()
    dense = ex.build_model(dataclasses.replace(cfg, factorization="dense"), 10, 1).eval()
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ex.evaluate_logits(over, x), ex.evaluate_logits(dense, x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("opt, cls", [("sgd", "SGD"), ("adamw", "AdamW"), ("lamb", "LAMB"), ("flambe", "FLAMBe")])
def test_build_optimizer(opt, cls):
    cfg = ex.TrainConfig(width=0.25, optimizer=opt)
    model = ex.build_model(cfg, 10, 1)
    o = ex.build_optimizer(cfg, model)
    assert type(o).__name__ == cls
    assert o.param_groups[0]["lr"] == ex.DEFAULT_LR[opt]
    assert o.param_groups[0]["decay"] == "frobenius"


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0), ("step", 0), ("constant", 0), ("cosine", 1),
                                              ("constant", 1)])
def test_schedules(schedule, warmup):
    cfg = ex.TrainConfig(width=0.25, schedule=schedule, warmup=warmup, epochs=4, lr=0.1)
    model = ex.build_model(cfg, 10, 1)
    opt = ex.build_optimizer(cfg, model)
    sched = ex.build_schedule(cfg, opt, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        if sched is not None:
            sched.step()
    lrs = np.array(lrs)
    if warmup:
        assert lrs[0] == pytest.approx(0.01) and lrs[0] < lrs[5] < lrs[10] + 1e-12
    else:
        assert lrs[0] == pytest.approx(0.1)
    if schedule == "cosine":
        assert lrs[-1] < 0.001 and np.all(np.diff(lrs[10:]) <= 1e-12)
    elif schedule == "step":
        assert set(np.round(lrs / 0.1, 6)) == {1.0, 0.1, 0.01}
        assert lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01) and lrs[30] == pytest.approx(0.001)
    else:
        assert np.allclose(lrs[10:], 0.1)


# -- the run ----------------------------------------------------------------------------------------
def test_run_result_and_files(tmp_path, digits):
    cfg = ex.TrainConfig(**TINY)
    res = run(cfg, tmp_path / "r", digits)
    assert res.finished and res.epoch == 2 and 0 <= res.test_accuracy <= 1
    assert res.params < res.dense_params and res.params_test_time == res.params
    assert len(res.history) == 2 and res.train_seconds > 0
    arrays, record = load_checkpoint(tmp_path / "r" / "model.npz")
    assert record["params_test_time"] == res.params
    assert record["history"][-1]["test_accuracy"] == res.test_accuracy
    model, cfg2, _ = ex.load_model(tmp_path / "r" / "model.npz")
    assert cfg2 == cfg and not model.training
    assert model.num_parameters() == res.params


def test_overcomplete_test_time_params(tmp_path, digits):
    res = run(ex.TrainConfig(factorization="deep", rank_scale=None, **TINY), tmp_path / "r", digits)
    assert res.params_test_time == res.dense_params < res.params


def test_resume_truncates_the_log_after_a_crash(tmp_path, digits):
    cfg = ex.TrainConfig(**{**TINY, "epochs": 3})
    out = tmp_path / "r"
    run(cfg, out, digits, stop_after=1)
    # a crash after logging epoch 2 but before its checkpoint, plus a torn last line
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 2, "test_accuracy": 0.0}) + "\n" + '{"epoch": 3, "te')
    res = run(None, out, digits, resume=True)
    rows = ex.read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1]["test_accuracy"] == res.history[1]["test_accuracy"]
    assert res.finished


def test_resume_of_finished_run_is_a_no_op(tmp_path, digits):
    out = tmp_path / "r"
    first = run(ex.TrainConfig(**TINY), out, digits)
    before = (out / "model.npz").read_bytes()
    again = run(None, out, digits, resume=True)
    assert again.test_accuracy == first.test_accuracy and again.epoch == 2
    assert (out / "model.npz").read_bytes() == before


def test_resume_rejects_other_data(tmp_path, digits):
    out = tmp_path / "r"
    run(ex.TrainConfig(**TINY), out, digits, stop_after=1)
    with pytest.raises(ex.RunError, match="no longer matches"):
        run(None, out, digits.subset(max_train=500), resume=True)


def test_dropout_rng_is_checkpointed(tmp_path, digits, monkeypatch):
    """A model with Dropout resumes bit-identically: the layers' generators are saved."""
    def vgg_with_dropout(cfg, num_classes, in_channels):
        return models.vgg([8, "M", 16, "M"], num_classes, in_channels, hidden=(16,), dropout=0.5, seed=cfg.seed)

    monkeypatch.setattr(ex, "_dense_model", vgg_with_dropout)
    cfg = ex.TrainConfig(model="vgg-small", **TINY)
    a = run(cfg, tmp_path / "a", digits)
    run(cfg, tmp_path / "b", digits, stop_after=1)
    _, rec = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert list(rec["rng"]["dropout"]) == ["fc0_dropout"]
    b = run(None, tmp_path / "b", digits, resume=True)
    wa, _ = load_checkpoint(tmp_path / "a" / "model.npz")
    wb, _ = load_checkpoint(tmp_path / "b" / "model.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert a.test_accuracy == b.test_accuracy


def test_divergence_is_reported(tmp_path, digits):
    cfg = ex.TrainConfig(**{**TINY, "lr": 1e6, "max_batches": 6, "epochs": 1}, factorization="dense",
                         rank_scale=None, decay="weight")
    with pytest.raises((FloatingPointError, ValueError), match="diverged|NaN|inf"):
        run(cfg, tmp_path / "r", digits)
