"""Reference and memory leaks of the extension, on success and on every error path.

Three measures over thousands of calls: sys.getrefcount of every argument and of the
returned objects (exact), tracemalloc (Python and NumPy allocations) and the process RSS
(also the engine's own malloc). Error paths are exercised at each stage: argument parsing,
conversion, shape checks after conversion, in-place buffer checks after some outputs were
set, and errors reported by the engine itself.
"""
from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np
import pytest

import fnl

N = 1500


def f32(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def run_many(call, n):
    for _ in range(n):
        try:
            call()
        except (TypeError, ValueError, MemoryError):
            pass


def assert_no_leak(call, objects, n=N):
    """Refcounts of `objects` unchanged after n calls; traced memory and RSS stable."""
    run_many(call, 50)  # warm up caches, free lists, lazily created objects
    gc.collect()
    before = [sys.getrefcount(o) for o in objects]
    tracemalloc.start()
    run_many(call, n // 4)
    gc.collect()
    traced0 = tracemalloc.get_traced_memory()[0]
    rss0 = rss_bytes()
    run_many(call, n)
    gc.collect()
    traced1 = tracemalloc.get_traced_memory()[0]
    rss1 = rss_bytes()
    tracemalloc.stop()
    after = [sys.getrefcount(o) for o in objects]
    assert after == before, f"reference counts changed: {before} -> {after}"
    # A leak of even one small array per call would grow by >= n * 100 bytes.
    assert traced1 - traced0 < 64 * 1024, f"traced memory grew by {traced1 - traced0} bytes over {n} calls"
    assert rss1 - rss0 < 8 * 1024 * 1024, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB over {n} calls"


U, V, M, M2 = f32(7, 3), f32(5, 2), f32(3, 4), f32(4, 2)
UB, VB, MB = f32(2, 7, 3), f32(2, 5, 4), f32(2, 3, 4)
W, K = f32(9, 6), f32(3, 2, 3, 3)
MIDS = [M, M2]
U64 = U.astype(np.float64)

SUCCESS = {
    "spectral_init": (lambda: fnl.spectral_init(W, 3), [W]),
    "spectral_init_randomized": (lambda: fnl.spectral_init(f32(40, 30), 2, "randomized", 5), []),
    "compress": (lambda: fnl.compress(W, 2), [W]),
    "spectral_init_conv": (lambda: fnl.spectral_init_conv(K, 2), [K]),
    "conv_to_matrix": (lambda: fnl.conv_to_matrix(K), [K]),
    "matrix_to_conv": (lambda: fnl.matrix_to_conv(W, 3, 2, 3, 3), [W]),
    "compose": (lambda: fnl.compose(U, V, MIDS), [U, V, M, M2, MIDS]),
    "compose_converted": (lambda: fnl.compose(U64, f32(5, 3).tolist()), [U64]),
    "compose_batched": (lambda: fnl.compose(UB, VB, [MB]), [UB, VB, MB]),
    "frobenius_penalty": (lambda: fnl.frobenius_penalty(U, V, 0.1, MIDS), [U, V, M, M2, MIDS]),
    "frobenius_decay_grad": (lambda: fnl.frobenius_decay_grad(U, V, 0.1, MIDS), [U, V, M, M2, MIDS]),
    "frobenius_norm": (lambda: fnl.frobenius_norm(UB, VB, [MB]), [UB, VB, MB]),
    "nuclear_norm": (lambda: fnl.nuclear_norm(U, V, MIDS), [U, V, M, M2, MIDS]),
    "factor_balance": (lambda: fnl.factor_balance(U, f32(5, 3)), [U]),
    "effective_step_size": (lambda: fnl.effective_step_size(0.1, U, V, MIDS), [U, V, MIDS]),
    "weight_decay_penalty": (lambda: fnl.weight_decay_penalty(U, V, 0.1, MIDS), [U, V, MIDS]),
    "get_num_threads": (lambda: fnl.get_num_threads(), []),
    "blas_info": (lambda: fnl.blas_info(), []),
}


@pytest.mark.parametrize("name", list(SUCCESS))
def test_no_leak_on_success(name):
    call, objects = SUCCESS[name]
    call()  # must succeed: this is the success path
    assert_no_leak(call, objects)


def test_no_leak_add_to():
    bufs = (np.zeros_like(U), np.zeros_like(V), np.zeros_like(M), np.zeros_like(M2))
    lst = list(bufs)
    assert_no_leak(lambda: fnl.frobenius_decay_grad(U, V, 1e-6, MIDS, add_to=bufs), [U, V, M, M2, *bufs])
    assert_no_leak(lambda: fnl.frobenius_decay_grad(U, V, 1e-6, MIDS, add_to=lst), [lst, *bufs])


def nan_copy(a):
    b = a.copy()
    b.flat[0] = np.nan
    return b


U_NAN = nan_copy(U)
BAD_BUFS_LATE = (np.zeros_like(U), np.zeros_like(V), np.zeros_like(M), np.zeros((4, 2), np.float64))
RO = np.zeros_like(V)
RO.flags.writeable = False
BAD_BUFS_RO = [np.zeros_like(U), RO, np.zeros_like(M), np.zeros_like(M2)]
ALIAS_BUFS = (np.zeros_like(U), np.zeros_like(V), M, np.zeros_like(M2))
COMPLEX = U.astype(np.complex64)
HUGE = np.broadcast_to(np.float32(1), (2**20, 1))

ERRORS = {
    "wrong_dtype": (lambda: fnl.compose(COMPLEX, V), [COMPLEX, V]),
    "non_array": (lambda: fnl.compose("abc", V), [V]),
    "ragged": (lambda: fnl.compose([[1.0], [1.0, 2.0]], V), [V]),
    "wrong_ndim": (lambda: fnl.compose(U[0], V), [U, V]),
    "shape_after_conversion": (lambda: fnl.compose(U64, f32(5, 9)), [U64]),
    "middle_mismatch_late": (lambda: fnl.compose(U, V, [M, f32(3, 2)]), [U, V, M]),
    "middle_not_list": (lambda: fnl.compose(U, V, M), [U, V, M]),
    "middle_none_item": (lambda: fnl.compose(U, V, [M, None]), [U, V, M]),
    "nan_from_engine": (lambda: fnl.compose(U_NAN, f32(5, 3)), [U_NAN]),
    "nan_penalty": (lambda: fnl.frobenius_penalty(U_NAN, f32(5, 3), 0.1), [U_NAN]),
    "lam_bad": (lambda: fnl.frobenius_penalty(U, V, -1.0, MIDS), [U, V, MIDS]),
    "grad_buffer_late": (lambda: fnl.frobenius_decay_grad(U, V, 0.1, MIDS, add_to=BAD_BUFS_LATE),
                         [U, V, M, M2, *BAD_BUFS_LATE]),
    "grad_buffer_readonly": (lambda: fnl.frobenius_decay_grad(U, V, 0.1, MIDS, add_to=BAD_BUFS_RO),
                             [BAD_BUFS_RO, *BAD_BUFS_RO]),
    "grad_buffer_alias": (lambda: fnl.frobenius_decay_grad(U, V, 0.1, MIDS, add_to=ALIAS_BUFS), [*ALIAS_BUFS]),
    "grad_buffer_count": (lambda: fnl.frobenius_decay_grad(U, V, 0.1, MIDS, add_to=ALIAS_BUFS[:2]), [*ALIAS_BUFS]),
    "grad_nan_engine": (lambda: fnl.frobenius_decay_grad(U_NAN, f32(5, 3), 0.1), [U_NAN]),
    "si_rank": (lambda: fnl.spectral_init(W, 0), [W]),
    "si_rank_type": (lambda: fnl.spectral_init(W, "2"), [W]),
    "si_nan": (lambda: fnl.spectral_init(nan_copy(W), 2), [W]),
    "si_seed": (lambda: fnl.spectral_init(W, 2, "randomized", 2**64), [W]),
    "si_memory": (lambda: fnl.spectral_init(W, 2**31 - 1), [W]),
    "compose_memory": (lambda: fnl.compose(HUGE, HUGE), [HUGE]),
    "conv_dims": (lambda: fnl.matrix_to_conv(W, 2, 2, 2, 2), [W]),
    "conv_nan": (lambda: fnl.conv_to_matrix(nan_copy(K)), [K]),
    "threads": (lambda: fnl.set_num_threads(0), []),
    "native_nargs": (lambda: fnl._native.compose(U, V), [U, V]),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_no_leak_on_error_paths(name):
    call, objects = ERRORS[name]
    with pytest.raises((TypeError, ValueError, MemoryError)):
        call()
    assert_no_leak(call, objects)


def test_results_hold_no_extra_references():
    Wc = fnl.compose(U, V, MIDS)
    assert sys.getrefcount(Wc) == 2
    grads = fnl.frobenius_decay_grad(U, V, 0.1, MIDS)
    assert sys.getrefcount(grads) == 2
    for g in grads:
        assert sys.getrefcount(g) == 3  # the tuple, the loop variable, the argument
    P, Q = fnl.spectral_init(W, 2)
    assert sys.getrefcount(P) == 2 and sys.getrefcount(Q) == 2
    t = fnl.compress(W, 2)
    assert sys.getrefcount(t.singular_values) == 3  # the namedtuple and the argument
    s = fnl._native.nuclear_norms(U, f32(5, 3), None)
    assert sys.getrefcount(s) == 2
    assert Wc.base is None and all(g.base is None for g in grads)


def test_add_to_returns_the_buffers_without_extra_references():
    V3 = f32(5, 3)
    bufs = (np.zeros_like(U), np.zeros_like(V3))
    before = [sys.getrefcount(b) for b in bufs]
    out = fnl.frobenius_decay_grad(U, V3, 0.1, add_to=bufs)
    assert [sys.getrefcount(b) for b in bufs] == [c + 1 for c in before]  # held by `out`
    del out
    assert [sys.getrefcount(b) for b in bufs] == before


X_CONV = f32(2, 5, 3, 3)


@pytest.mark.parametrize("call_with, shape", [
    (lambda mids: fnl.compose(U, V, mids), (7, 5)),
    (lambda mids: fnl.lowrank_conv2d(X_CONV, U, V, 1, middle=mids), (2, 7, 3, 3)),
], ids=["compose", "lowrank_conv2d"])
def test_middle_mutated_by_array_conversion(call_with, shape):
    """A middle list mutated while its items are converted (user __array__ code) must
    neither crash nor leak: the binding works on a snapshot."""
    mids = [None, None]

    class Evil:
        def __array__(self, dtype=None, copy=None):
            mids.clear()
            return np.eye(3, 4, dtype=np.float32)

    def call():
        mids[:] = [Evil(), M2]
        return call_with(mids)

    for _ in range(200):
        out = call()
        assert out.shape == shape
    assert_no_leak(call, [M2])
