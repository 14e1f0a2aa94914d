"""`fnl demo` / fnl.demo: the matrix-problem demonstration (small sizes; no timing)."""
import subprocess
import sys

import pytest

from fnl import cli, demo


def test_demo_prints_both_tables(capsys):
    assert cli.main(["demo", "--size", "48", "--rank", "6", "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "SI of a dense init" in out and "independent random factors" in out
    assert "weight decay lam=0.5" in out and "Frobenius decay lam=0.25" in out


def test_demo_keeps_the_thread_count():
    import fnl

    before = fnl.get_num_threads()
    demo.run(["--size", "32", "--rank", "4", "--steps", "3"])
    assert fnl.get_num_threads() == before


def test_weight_decay_reaches_the_nuclear_norm_at_balance():
    """The demo's claim: once WD has balanced the factors, (lam/2)(|U|^2+|V|^2) = lam ||UV^T||_*."""
    import numpy as np

    import fnl

    pb = demo.Problem(40, 40, 40, np.random.default_rng(0))
    U0, V0 = fnl.spectral_init(np.random.default_rng(1).standard_normal((40, 40)) / np.sqrt(40), 8, seed=0)
    U, V, _ = demo.train(pb, U0, V0, lr=0.2, steps=400, reg="wd", lam=0.5)
    assert fnl.factor_balance(U, V) < 1e-3
    assert fnl.weight_decay_penalty(U, V, 0.5) == pytest.approx(0.5 * fnl.nuclear_norm(U, V), rel=1e-3)


def test_python_dash_m_runs():
    r = subprocess.run([sys.executable, "-m", "fnl", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "demo" in r.stdout
