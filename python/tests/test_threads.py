"""Concurrency: the GIL is released around real work and the engine has no global mutable
state, so several Python threads calling at once get exactly the sequential results; the
thread budget (set_num_threads) changes speed, not results (beyond float rounding)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fnl
import references as ref
from conftest import assert_close


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def workload(seed: int):
    """Calls big enough to release the GIL, each returning arrays to compare."""
    rng = np.random.default_rng(seed)
    U, V = f32(rng, 300, 24), f32(rng, 260, 24)
    M1, M2 = f32(rng, 24, 16), f32(rng, 16, 24)
    W = f32(rng, 120, 90)
    Wr = f32(rng, 200, 160)
    K = f32(rng, 16, 8, 3, 3)
    UB, VB = f32(rng, 4, 128, 16), f32(rng, 4, 96, 16)
    return [
        ("compose", lambda: fnl.compose(U, V, [M1, M2])),
        ("grad", lambda: fnl.frobenius_decay_grad(U, V, 0.3, [M1, M2])),
        ("grad_batched", lambda: fnl.frobenius_decay_grad(UB, VB, 0.3)),
        ("penalty", lambda: fnl.frobenius_penalty(U, V, 0.3, [M1, M2])),
        ("nuclear", lambda: fnl.nuclear_norm(U, V)),
        ("si_exact", lambda: fnl.spectral_init(W, 12)),
        ("si_randomized", lambda: fnl.spectral_init(Wr, 10, "randomized", seed=seed)),
        ("conv", lambda: fnl.conv_to_matrix(K)),
        ("balance", lambda: fnl.factor_balance(UB, VB)),
    ]


def as_arrays(result):
    if isinstance(result, tuple):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def test_concurrent_calls_match_sequential():
    seeds = [1, 2, 3, 4]
    jobs = [(s, name, fn) for s in seeds for name, fn in workload(s)]
    expected = {(s, name): as_arrays(fn()) for s, name, fn in jobs}
    start = threading.Barrier(4)

    def worker(k):
        start.wait()
        got = {}
        for rep in range(3):
            order = jobs[k::4] + jobs[:k:4] + jobs if rep else jobs[k::4]
            for s, name, fn in order:
                got.setdefault((s, name), []).append(as_arrays(fn()))
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    checked = 0
    for got in results:
        for key, runs in got.items():
            for arrays in runs:
                for a, e in zip(arrays, expected[key]):
                    np.testing.assert_array_equal(a, e, err_msg=f"{key} differs under concurrency")
                    checked += 1
    assert checked > 100


def test_concurrent_add_to_into_separate_buffers():
    rng = np.random.default_rng(5)
    U, V = f32(rng, 256, 32), f32(rng, 200, 32)
    fresh = fnl.frobenius_decay_grad(U, V, 0.5)

    def worker(_):
        bufs = (np.zeros_like(U), np.zeros_like(V))
        for _ in range(20):
            fnl.frobenius_decay_grad(U, V, 0.5, add_to=bufs)
        return bufs

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(worker, range(4)))
    for bufs in outs:
        np.testing.assert_array_equal(bufs[0], outs[0][0])
        assert_close(bufs[0], 20 * fresh[0].astype(np.float64), rtol=1e-5, atol=1e-4, what="accumulated dU")


def test_gil_is_released_during_long_calls():
    """A pure-Python thread keeps running while another thread is inside the engine."""
    rng = np.random.default_rng(6)
    W = f32(rng, 400, 400)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        before = len(ticks)
        for _ in range(3):
            fnl.spectral_init(W, 50)
        during = len(ticks) - before
    finally:
        stop.set()
        t.join()
    assert during > 0


@pytest.fixture
def restore_threads():
    n = fnl.get_num_threads()
    yield
    fnl.set_num_threads(n)


def test_get_set_num_threads(restore_threads):
    assert isinstance(fnl.get_num_threads(), int) and fnl.get_num_threads() >= 1
    for n in (1, 2, 3, 1024, 1):
        fnl.set_num_threads(n)
        assert fnl.get_num_threads() == n
    fnl.set_num_threads(np.int64(2))
    assert fnl.get_num_threads() == 2


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1025, ValueError), (2**64, ValueError),
                                     (1.0, TypeError), ("1", TypeError), (None, TypeError), (False, TypeError)])
def test_set_num_threads_rejects(restore_threads, bad, exc):
    fnl.set_num_threads(2)
    with pytest.raises(exc, match=r"^\[fnl\.set_num_threads\] n must"):
        fnl.set_num_threads(bad)
    assert fnl.get_num_threads() == 2


def test_one_and_two_threads_agree(restore_threads):
    results = {}
    for n in (1, 2):
        fnl.set_num_threads(n)
        results[n] = [as_arrays(fn()) for _, fn in workload(11)]
    names = [name for name, _ in workload(11)]
    for name, one, two in zip(names, results[1], results[2]):
        for a, b in zip(one, two):
            if name == "si_exact" or name == "si_randomized":
                # Singular vectors may flip sign between BLAS partitions: compare U V^T.
                continue
            assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.max(np.abs(b)))), what=f"{name} 1 vs 2 threads")
    for n in (1, 2):
        fnl.set_num_threads(n)
        U, V = workload(11)[5][1]()
        results[n] = U.astype(np.float64) @ V.T.astype(np.float64)
    assert_close(results[1], results[2], rtol=0, atol=1e-4, what="SI U V^T 1 vs 2 threads")


def test_results_match_numpy_with_each_budget(restore_threads):
    rng = np.random.default_rng(12)
    U, V = f32(rng, 180, 40), f32(rng, 150, 40)
    for n in (1, 2):
        fnl.set_num_threads(n)
        assert_close(fnl.compose(U, V), ref.compose(U, V), rtol=1e-5, atol=1e-4, what=f"compose, {n} threads")


def conv_workload(seed: int):
    """Convolutions large enough to split their batch over the engine's workers."""
    rng = np.random.default_rng(seed)
    x = f32(rng, 8, 6, 12, 12)
    U, V = f32(rng, 8 * 3, 4), f32(rng, 6 * 3, 4)
    K = f32(rng, 8, 6, 3, 3)

    def lowrank():
        y, z = fnl.lowrank_conv2d_forward(x, U, V, 3, padding=1)
        d = fnl.lowrank_conv2d_backward(np.cos(y), x, U, V, 3, padding=1, intermediate=z)
        return [y, d["x"], d["U"], d["V"]]

    def dense():
        y = fnl.conv2d(x, K, padding=1)
        d = fnl.conv2d_backward(np.cos(y), x, K, padding=1)
        return [y, d["x"], d["K"]]

    # r = C_out = 32: the direct path's 3 x 1 stage by Winograd, chunks of images per worker.
    xw = f32(rng, 8, 4, 8, 8)
    Uw, Vw = f32(rng, 32 * 3, 32) / 8, f32(rng, 4 * 3, 32) / 4

    def lowrank_winograd():
        y, z = fnl.lowrank_conv2d_forward(xw, Uw, Vw, 3, padding=1, _path="fused")
        d = fnl.lowrank_conv2d_backward(np.cos(y), xw, Uw, Vw, 3, padding=1, intermediate=z, _path="fused")
        return [y, d["x"], d["U"], d["V"]]

    return [lowrank, dense, lowrank_winograd]


def test_concurrent_convolutions_match_sequential(restore_threads):
    """Several Python threads running batch-split convolutions at once (one gets the worker
    pool, the others run their workers serially) get exactly the sequential results."""
    fnl.set_num_threads(2)
    jobs = [fn for seed in range(4) for fn in conv_workload(seed)]
    expected = [fn() for fn in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda fn: fn(), jobs))
            for e, g in zip(expected, got):
                for a, b in zip(e, g):
                    np.testing.assert_array_equal(a, b)


def _child_runs_convolutions(queue):
    fnl.set_num_threads(2)
    queue.put([a.sum() for fn in conv_workload(0) for a in fn()])


def test_forked_child_can_use_the_pool(restore_threads):
    """After the pool's threads exist, a fork()ed child (which inherits none of them) still
    runs parallel work to completion with the same results."""
    import multiprocessing

    fnl.set_num_threads(2)
    expected = [a.sum() for fn in conv_workload(0) for a in fn()]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_runs_convolutions, args=(queue,))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    np.testing.assert_array_equal(np.array(got), np.array(expected))


def test_thread_budget_changes_during_convolutions(restore_threads):
    """set_num_threads called while other threads run batch-split convolutions (which hold
    OpenBLAS at one thread for their duration) changes no result, and afterwards the budget
    is the last one set."""
    jobs = [fn for seed in range(2) for fn in conv_workload(seed)]
    fnl.set_num_threads(1)
    expected = [fn() for fn in jobs]
    stop = threading.Event()

    def toggle():
        n = 1
        while not stop.is_set():
            n = 3 - n
            fnl.set_num_threads(n)

    toggler = threading.Thread(target=toggle)
    toggler.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for _ in range(5):
                got = list(pool.map(lambda fn: fn(), jobs))
                for e, g in zip(expected, got):
                    for a, b in zip(e, g):
                        assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.max(np.abs(b)))),
                                     what="conv under budget changes")
    finally:
        stop.set()
        toggler.join()
    fnl.set_num_threads(2)
    assert fnl.get_num_threads() == 2
    np.testing.assert_array_equal(jobs[0]()[0], jobs[0]()[0])
