"""The output buffer cache (python/src/buffers.c): outputs of at least 1 MiB live on blocks
that are handed back to a bounded cache when the last array or view on them dies, and reused
by the next output of the same byte size.

Checked here: reuse happens, a block in use is never handed out twice (also when only a view
of an output is alive), results do not depend on what a reused block held, the limits hold,
the arrays are ordinary arrays, concurrent Python threads and a fork()ed child are safe, and
tracemalloc/RSS see no leak and exactly NumPy's accounting of live outputs.
"""
from __future__ import annotations

import copy
import gc
import itertools
import multiprocessing
import pickle
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import fnl
from test_leaks import assert_no_leak

MIB = 1 << 20
DEFAULT_LIMIT = 256 * MIB
NPY_DOMAIN = 389047  # numpy.lib.tracemalloc_domain (numpy.tracemalloc_domain before NumPy 2)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts with an empty cache at the default limit and restores the limit."""
    gc.collect()  # outputs of earlier tests released now would fill the cache later
    previous = fnl.set_output_cache(0)
    fnl.set_output_cache(DEFAULT_LIMIT)
    yield
    fnl.set_output_cache(previous)


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def info() -> dict:
    return fnl.output_cache_info()


RNG = np.random.default_rng(7)
UC = f32(RNG, 512, 4)  # compose(UC, V) with V of n rows: a 512 x n output of 2 KiB * n


def product(n: int = 512) -> np.ndarray:
    """A fresh output of 512 * n float32 values (n = 512: exactly 1 MiB)."""
    return fnl.compose(UC, np.ones((n, 4), np.float32))


def conv_inputs(seed: int = 0):
    """A conv layer whose outputs y (2 MiB) and dx (1 MiB) come from the cache."""
    rng = np.random.default_rng(seed)
    x = f32(rng, 4, 16, 64, 64)
    K = f32(rng, 32, 16, 3, 3) / 12
    U, V = f32(rng, 32 * 3, 4) / 4, f32(rng, 16 * 3, 4) / 4
    g = f32(rng, 4, 32, 64, 64)
    return x, K, U, V, g


def conv_outputs(x, K, U, V, g):
    """Forward and backward of the dense and the low-rank conv: every array they return."""
    y = fnl.conv2d(x, K, padding=1)
    d = fnl.conv2d_backward(g, x, K, padding=1)
    ly, z = fnl.lowrank_conv2d_forward(x, U, V, 3, padding=1)
    ld = fnl.lowrank_conv2d_backward(g, x, U, V, 3, padding=1, intermediate=z)
    outs = [y, d["x"], d["K"], ly, ld["x"], ld["U"], ld["V"]]
    return outs + ([z] if z is not None else [])


# ------------------------------------------------------------------------------ reuse


def test_released_output_block_is_reused():
    a = product()
    assert a.nbytes == MIB
    where = address(a)
    before = info()
    del a
    assert info()["cached_blocks"] == before["cached_blocks"] + 1
    assert info()["cached_bytes"] == before["cached_bytes"] + MIB
    b = product()
    assert address(b) == where
    after = info()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    np.testing.assert_array_equal(b, UC @ np.ones((4, 512), np.float32))


def test_only_outputs_of_the_same_byte_size_reuse_a_block():
    a = product(512)
    del a
    before = info()
    b = product(513)  # 2 KiB larger
    assert info()["misses"] == before["misses"] + 1 and info()["hits"] == before["hits"]
    assert info()["cached_blocks"] == 1  # the 1 MiB block is still there
    c = product(512)
    assert info()["hits"] == before["hits"] + 1 and info()["cached_blocks"] == 0
    assert not np.shares_memory(b, c)


def test_small_outputs_come_from_numpy():
    small = product(511)  # 1 MiB - 2 KiB
    assert small.base is None and small.flags.owndata
    before = info()
    del small
    assert info() == before
    large = product(512)
    assert large.base is not None and not large.flags.owndata
    assert info()["misses"] == before["misses"] + 1


def test_live_outputs_never_share_memory():
    live = [product() for _ in range(6)]
    del live[1], live[3]  # two blocks back in the cache
    live += [product() for _ in range(4)]  # two of them reuse those blocks
    assert info()["hits"] >= 2
    for a, b in itertools.combinations(live, 2):
        assert not np.shares_memory(a, b)
    expected = [a.copy() for a in live]
    live[0][...] = -1.0
    for a, e in zip(live[1:], expected[1:]):
        np.testing.assert_array_equal(a, e)


def test_a_live_view_keeps_its_block_out_of_the_cache():
    a = product()
    where = address(a)
    view = a[100:200]
    expected = view.copy()
    del a
    assert info()["cached_blocks"] == 0  # the view holds the block
    b = product()
    assert address(b) != where and not np.shares_memory(b, view)
    b[...] = 123.0
    np.testing.assert_array_equal(view, expected)
    del view
    c = product()
    assert address(c) == where  # the block came back with the last view
    assert not np.shares_memory(b, c)


def test_results_do_not_depend_on_what_a_reused_block_held():
    """The same layers computed with fresh NumPy outputs, then several times on reused blocks
    that were filled with NaN before their release: every output is fully written."""
    inputs = conv_inputs()
    fnl.set_output_cache(0)
    expected = [a.copy() for a in conv_outputs(*inputs)]
    fnl.set_output_cache(DEFAULT_LIMIT)
    hits = info()["hits"]
    for rep in range(3):
        outs = conv_outputs(*inputs)
        for a, e in zip(outs, expected):
            np.testing.assert_array_equal(a, e)
        cached = [a for a in outs if a.base is not None]
        assert len(cached) >= 4  # y, dx of both layers
        for a in cached:
            a.fill(np.nan)
        del outs, cached, a
    assert info()["hits"] >= hits + 8


# ----------------------------------------------------------------------------- limits


def test_limit_bounds_the_cached_bytes():
    limit = 5 * MIB // 2
    assert fnl.set_output_cache(limit) == DEFAULT_LIMIT
    rng = np.random.default_rng(3)
    live = []
    for _ in range(300):
        if live and rng.random() < 0.55:
            del live[rng.integers(len(live))]
        else:
            live.append(product(int(rng.choice([512, 600, 700, 1100, 1400]))))
        state = info()
        assert state["limit"] == limit
        assert state["cached_bytes"] <= limit, state
    assert info()["hits"] > 0


def test_larger_than_limit_blocks_are_freed_and_the_oldest_evicted():
    fnl.set_output_cache(5 * MIB // 2)
    a, b, c = product(512), product(513), product(514)
    del a, b  # 2 MiB + 2 KiB cached
    assert info()["cached_blocks"] == 2
    del c  # does not fit next to both: the oldest (a's) goes
    state = info()
    assert state["cached_blocks"] == 2 and state["cached_bytes"] == 2 * MIB + 6 * 1024
    before = info()
    product(512)  # a's block is gone; the new one, released, evicts b's
    assert info()["misses"] == before["misses"] + 1
    product(514)  # c's block is still there
    assert info()["hits"] == before["hits"] + 1
    state = info()
    assert state["cached_blocks"] == 2 and state["cached_bytes"] == 2 * MIB + 4 * 1024
    big = product(1400)  # 2.7 MiB: larger than the limit, freed when released
    del big
    assert info()["cached_blocks"] == 2 and info()["cached_bytes"] == state["cached_bytes"]


def test_at_most_32_free_blocks():
    live = [product() for _ in range(40)]
    del live[:]
    state = info()
    assert state["cached_blocks"] == 32 and state["cached_bytes"] == 32 * MIB


def test_zero_disables_the_cache_and_empties_it():
    live = [product() for _ in range(3)]
    del live[:]
    assert info()["cached_bytes"] == 3 * MIB
    assert fnl.set_output_cache(0) == DEFAULT_LIMIT
    state = info()
    assert state == {**state, "limit": 0, "cached_bytes": 0, "cached_blocks": 0}
    a = product()
    assert a.base is None and a.flags.owndata  # from NumPy, as without the cache
    assert info()["misses"] == state["misses"]
    # An output made while the cache was on, released while it is off, is freed.
    fnl.set_output_cache(DEFAULT_LIMIT)
    b = product()
    fnl.set_output_cache(0)
    del b
    assert info()["cached_blocks"] == 0
    assert fnl.set_output_cache(DEFAULT_LIMIT) == 0
    c = product()
    del c
    assert info()["cached_blocks"] == 1 and info()["limit"] == DEFAULT_LIMIT


def test_lowering_the_limit_evicts():
    live = [product() for _ in range(4)]
    del live[:]
    fnl.set_output_cache(2 * MIB)
    assert info()["cached_bytes"] == 2 * MIB and info()["cached_blocks"] == 2


def test_info_is_a_plain_dict():
    state = info()
    assert set(state) == {"limit", "cached_bytes", "cached_blocks", "hits", "misses"}
    assert all(type(v) is int and v >= 0 for v in state.values())
    assert state["limit"] == DEFAULT_LIMIT


@pytest.mark.parametrize("bad, exc", [
    (-1, ValueError), (-(2**70), ValueError), (2**70, ValueError),
    (1.5, TypeError), ("1024", TypeError), (None, TypeError), (True, TypeError), (np.ones(2, int), TypeError),
])
def test_set_output_cache_rejects(bad, exc):
    with pytest.raises(exc, match=r"^\[fnl\.set_output_cache\] max_bytes "):
        fnl.set_output_cache(bad)
    assert info()["limit"] == DEFAULT_LIMIT


def test_set_output_cache_accepts_integer_types():
    assert fnl.set_output_cache(np.int64(3 * MIB)) == DEFAULT_LIMIT
    assert fnl.set_output_cache(0) == 3 * MIB


def test_memory_error_message_is_unchanged():
    live = [product() for _ in range(2)]
    del live[:]
    huge = np.broadcast_to(np.float32(1), (2**20, 1))  # its product: 4 TiB
    with pytest.raises(MemoryError, match=r"^\[fnl\.compose\] cannot allocate W \(1099511627776 float32 values, "
                                          r"4096\.0 GiB\)$"):
        fnl.compose(huge, huge)
    a = product()  # the cache still works
    del a
    assert info()["cached_blocks"] >= 1


# ------------------------------------------------------------------ ordinary arrays


def test_cached_outputs_are_ordinary_arrays():
    a = product()
    assert type(a) is np.ndarray and a.dtype == np.float32 and a.shape == (512, 512)
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    assert a.base is not None and address(a) % 64 == 0
    assert np.asarray(a) is a
    expected = UC @ np.ones((4, 512), np.float32)
    back = pickle.loads(pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL))
    np.testing.assert_array_equal(back, expected)
    assert back.dtype == np.float32 and not np.shares_memory(back, a)
    np.testing.assert_array_equal(copy.deepcopy(a), expected)
    a += 1.0
    np.testing.assert_array_equal(a, expected + 1.0)
    assert np.asarray(a.reshape(-1)).base is not None
    with pytest.raises(ValueError):
        a.resize((10,))  # like any array on memory it does not own


def test_large_blocks_are_huge_page_aligned():
    x, K, U, V, g = conv_inputs()
    y = fnl.conv2d(x, K, padding=1)  # 2 MiB
    big = fnl.conv2d(np.concatenate([x, x]), K, padding=1)  # 4 MiB
    assert address(y) % 64 == 0
    assert address(big) % (2 * MIB) == 0


def test_outputs_and_views_deleted_in_any_order():
    for order in itertools.permutations(range(4)):
        a, b = product(), product()
        objs = [a, a[::2], b, b.T]
        del a, b
        for i in order:
            objs[i] = None
        assert info()["cached_blocks"] == 2
        fnl.set_output_cache(0)
        fnl.set_output_cache(DEFAULT_LIMIT)


def test_reference_counts():
    a = product()
    base = a.base
    counts = sys.getrefcount(a), sys.getrefcount(base)
    assert counts == (2, 3)  # a: the name and the argument; base: also the array


# ---------------------------------------------------------------------- concurrency


def test_concurrent_threads_match_sequential():
    """Python threads running convolutions at once (the engine releases the GIL; outputs are
    allocated and released with it held) get the sequential results on distinct blocks."""
    inputs = [conv_inputs(seed) for seed in range(4)]
    expected = [[a.copy() for a in conv_outputs(*inp)] for inp in inputs]
    results = [None] * len(inputs)
    errors = []
    start = threading.Barrier(len(inputs))

    def worker(k):
        try:
            start.wait()
            for _ in range(3):
                outs = conv_outputs(*inputs[k])
                for a, e in zip(outs, expected[k]):
                    np.testing.assert_array_equal(a, e)
                for a in outs:
                    a.fill(np.nan)  # poison before release: any sharing would show
            results[k] = conv_outputs(*inputs[k])
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for outs, exp in zip(results, expected):
        for a, e in zip(outs, exp):
            np.testing.assert_array_equal(a, e)
    flat = [a for outs in results for a in outs]
    for a, b in itertools.combinations(flat, 2):
        assert not np.shares_memory(a, b)
    assert info()["hits"] > 0


def _child_uses_the_cache(queue, inputs, expected):
    try:
        before = fnl.output_cache_info()
        for _ in range(3):
            outs = conv_outputs(*inputs)
            ok = all(np.array_equal(a, e) for a, e in zip(outs, expected))
            del outs
        after = fnl.output_cache_info()
        queue.put((ok, after["hits"] - before["hits"]))
    except BaseException as e:
        queue.put((False, repr(e)))


def test_forked_child_inherits_a_working_cache():
    inputs = conv_inputs()
    expected = [a.copy() for a in conv_outputs(*inputs)]  # their blocks are now cached
    assert info()["cached_blocks"] >= 2
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_uses_the_cache, args=(queue, inputs, expected))
    child.start()
    try:
        ok, hits = queue.get(timeout=120)
    finally:
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert ok is True and hits > 0, hits
    # The parent's cache is untouched by the child.
    outs = conv_outputs(*inputs)
    for a, e in zip(outs, expected):
        np.testing.assert_array_equal(a, e)


# ------------------------------------------------------------------ memory accounting


def numpy_traced(snapshot) -> dict:
    traces = snapshot.filter_traces([tracemalloc.DomainFilter(True, NPY_DOMAIN)]).traces
    return {t.size for t in traces}


def test_tracemalloc_sees_live_outputs_like_numpy_arrays():
    domain = getattr(np.lib, "tracemalloc_domain", None) or getattr(np, "tracemalloc_domain")
    assert domain == NPY_DOMAIN
    a = product()
    del a  # cached, untraced
    tracemalloc.start()
    try:
        b = product(512)  # a reused block
        c = product(700)  # a new block
        traced = tracemalloc.get_traced_memory()[0]
        sizes = numpy_traced(tracemalloc.take_snapshot())
        assert MIB in sizes and 700 * 2048 in sizes
        assert traced >= MIB + 700 * 2048
        del b, c  # back in the cache: no longer traced
        gc.collect()
        sizes = numpy_traced(tracemalloc.take_snapshot())
        assert MIB not in sizes and 700 * 2048 not in sizes
        assert tracemalloc.get_traced_memory()[0] < traced - MIB
        assert info()["cached_blocks"] == 2
    finally:
        tracemalloc.stop()


def test_no_leak_over_many_cached_outputs():
    x, K, U, V, g = conv_inputs()
    assert_no_leak(lambda: fnl.conv2d(x, K, padding=1), [x, K], n=200)
    assert_no_leak(lambda: fnl.conv2d_backward(g, x, K, padding=1), [g, x, K], n=100)
    assert_no_leak(lambda: product(512) + 0, [UC], n=400)


def test_no_leak_when_views_outlive_outputs():
    views = []

    def call():
        views.append(product()[::7])
        if len(views) > 3:
            views.pop(0)

    assert_no_leak(call, [UC], n=400)
