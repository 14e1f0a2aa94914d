"""fnl.progress: running statistics, the tqdm bar and the plain-print fallback."""
from __future__ import annotations

import io
import math

import pytest

from fnl.progress import EpochProgress, has_tqdm


def _feed(bar):
    bar.update(10, loss=2.0, correct=5)
    bar.update(30, loss=1.0, correct=27, lr=0.1)


def test_statistics_and_fallback_print():
    out = io.StringIO()
    with EpochProgress(40, epoch=2, epochs=5, use_tqdm=False, file=out) as bar:
        _feed(bar)
        bar.set(test_acc=88.5)
    s = bar.summary
    assert s["samples"] == 40 and s["loss"] == pytest.approx((2.0 * 10 + 1.0 * 30) / 40)
    assert s["accuracy"] == pytest.approx(100 * 32 / 40)
    assert s["lr"] == 0.1 and s["test_acc"] == 88.5
    assert s["seconds"] >= 0 and s["samples_per_s"] > 0
    line = out.getvalue()
    assert line.count("\n") == 1
    assert line.startswith("epoch 2/5: loss 1.2500 acc 80.00% ") and "samples/s" in line and "test_acc 88.5" in line
    assert bar.close() == bar.summary  # idempotent, prints nothing more
    assert out.getvalue() == line


def test_disable_prints_nothing():
    out = io.StringIO()
    bar = EpochProgress(5, desc="eval", disable=True, file=out)
    bar.update(5, loss=0.5)
    summary = bar.close()
    assert out.getvalue() == "" and summary["loss"] == 0.5 and math.isnan(summary["accuracy"])


@pytest.mark.skipif(not has_tqdm(), reason="tqdm not installed")
def test_tqdm_bar():
    out = io.StringIO()
    with EpochProgress(40, epoch=1, epochs=3, use_tqdm=True, file=out) as bar:
        _feed(bar)
    text = out.getvalue()
    assert "epoch 1/3" in text and "40/40" in text and "loss=1.2500" in text and "acc=80.00%" in text
    assert "img/s" in text


def test_labels_and_errors():
    assert EpochProgress(1, use_tqdm=False, disable=True).desc == "train"
    assert EpochProgress(1, epoch=3, use_tqdm=False, disable=True).desc == "epoch 3"
    with pytest.raises(ValueError, match=r"\[fnl.progress\] total must be an int >= 0"):
        EpochProgress(-1)


def test_falls_back_to_prints_without_tqdm(monkeypatch):
    import fnl.progress as progress

    monkeypatch.setattr(progress, "has_tqdm", lambda: False)
    out = io.StringIO()
    with progress.EpochProgress(3, epoch=1, file=out) as bar:
        bar.update(3, loss=0.25, correct=3)
    assert out.getvalue().startswith("epoch 1: loss 0.2500 acc 100.00% ")
