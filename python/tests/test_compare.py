"""fnl.compare: variant definitions, the table, the paper's orderings, a tiny run via the API."""
from __future__ import annotations

import json

import pytest

from fnl import compare as cmp
from fnl import experiment as ex
from fnl.data import load_dataset


def test_variants_follow_the_paper():
    base = ex.TrainConfig()
    want = {
        "dense": ("dense", "weight"),
        "lowrank": ("lowrank", "independent", "weight"),
        "lowrank-si": ("lowrank", "spectral", "weight"),
        "lowrank-fd": ("lowrank", "independent", "frobenius"),
        "lowrank-si-fd": ("lowrank", "spectral", "frobenius"),
        "over": ("deep", "spectral", "weight"),
        "over-fd": ("deep", "spectral", "frobenius"),
    }
    assert list(cmp.VARIANTS) == list(want)
    for key, w in want.items():
        cfg = cmp.variant_config(base, key, seed=3, overcomplete="deep")
        assert cfg.seed == 3 and cfg.factorization == w[0] and cfg.decay == w[-1]
        if len(w) == 3:
            assert cfg.init == w[1]
        assert (cfg.rank_scale is not None) == (w[0] == "lowrank")


def _summary(accs):
    return {k: {"label": cmp.VARIANTS[k].label, "accuracy_mean": m, "accuracy_std": s, "params_test_time": 1000,
                "params_ratio": 1.0, "seconds_mean": 1.0, "seconds_std": 0.1} for k, (m, s) in accs.items()}


def test_orderings():
    s = _summary({"dense": (0.90, 0.001), "lowrank": (0.80, 0.01), "lowrank-si": (0.85, 0.01),
                  "lowrank-fd": (0.82, 0.01), "lowrank-si-fd": (0.86, 0.02), "over": (0.91, 0.001),
                  "over-fd": (0.905, 0.001)})
    o = cmp.orderings(s)
    assert [x["held"] for x in o] == [True, True, False]
    assert o[0]["against"] == "low-rank + SI" and o[0]["gap"] == pytest.approx(0.01)
    assert o[0]["clear"] is False  # 1 point gap, 2 points std
    assert o[1]["clear"] is True
    assert cmp.orderings(_summary({"dense": (0.9, 0.0)})) == []


def test_format_table():
    t = cmp.format_table(_summary({"dense": (0.9, 0.01234), "over-fd": (0.5, 0.0)}))
    lines = t.splitlines()
    assert lines[0].startswith("| variant | test accuracy (%)")
    assert "| dense | 90.00 ± 1.23 | 1,000 | 1.00x | 1.0 ± 0.1 |" in lines


def test_run_compare_api(tmp_path):
    ds = load_dataset("digits").subset(max_train=200, max_test=100)
    logs = []
    res = cmp.run_compare(tmp_path / "c", overrides=dict(width=0.25, epochs=1, batch_size=32, max_batches=1),
                          seeds=[0], variants=["lowrank", "lowrank-si", "lowrank-fd", "lowrank-si-fd"],
                          progress=False, log=logs.append, dataset=ds, command="fnl compare (test)")
    assert set(res["summary"]) == {"lowrank", "lowrank-si", "lowrank-fd", "lowrank-si-fd"}
    assert len(res["orderings"]) == 1
    md = (tmp_path / "c" / "results.md").read_text()
    assert "Command: `fnl compare (test)`" in md and "| low-rank + SI & FD |" in md
    assert json.loads((tmp_path / "c" / "results.json").read_text())["seeds"] == [0]
    assert any("| low-rank |" in l for l in logs)


@pytest.mark.parametrize("kw, needle", [
    (dict(variants=["nope"]), "variants"),
    (dict(seeds=[-1]), "seeds"),
    (dict(overcomplete="tall"), "overcomplete"),
    (dict(overrides={"colour": 1}), "unknown"),
    (dict(overrides={"epochs": 0}), "epochs"),
])
def test_run_compare_rejects(tmp_path, kw, needle):
    with pytest.raises(ex.RunError, match=needle):
        cmp.run_compare(tmp_path / "c", progress=False, log=None, **kw)
    assert not (tmp_path / "c").exists()
