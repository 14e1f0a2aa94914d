"""Thousands of random malformed calls to every function: only TypeError, ValueError,
MemoryError or OverflowError may escape, and the interpreter must survive.

The fuzz loop runs in a subprocess (so a crash is reported as a failure with the last call,
instead of killing the test session); it is also importable and runnable on its own:
    python python/tests/test_fuzz.py SEED COUNT
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

ALLOWED = (TypeError, ValueError, MemoryError, OverflowError)

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex64,
          object, "U3", "S2", "datetime64[s]", np.longdouble, ">f4"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -3.4e38, 1e-45, 1e300]


class Fuzzer:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def dim(self):
        r = self.rng.random()
        if r < 0.08:
            return 0
        if r < 0.12:
            return int(self.choice([2**31, 2**40, -1]))  # only used for scalar dims, never allocated
        return int(self.rng.integers(1, 7))

    def shape(self, nd=None):
        nd = int(self.rng.integers(0, 5)) if nd is None else nd
        return tuple(int(self.rng.integers(0, 6)) if self.rng.random() < 0.1 else int(self.rng.integers(1, 6))
                     for _ in range(nd))

    def array(self, shape=None, dtype=None):
        shape = self.shape() if shape is None else shape
        dtype = self.choice(DTYPES) if dtype is None else dtype
        a = self.rng.standard_normal(shape)
        if self.rng.random() < 0.15 and a.size:
            a.flat[int(self.rng.integers(a.size))] = self.choice(SPECIAL)
        try:
            a = a.astype(dtype)
        except (TypeError, ValueError):
            a = np.zeros(shape, dtype=dtype)
        r = self.rng.random()
        if r < 0.1 and a.ndim >= 1 and a.shape[-1] > 1:
            a = a[..., ::2]  # non-contiguous
        elif r < 0.15 and a.ndim >= 2:
            a = np.asfortranarray(a)
        elif r < 0.2:
            a = a.copy()
            a.flags.writeable = False
        return a

    def scalar(self):
        return self.choice([0, 1, -1, 2, 3, 2**31, 2**40, 2**63, 2**64, -(2**63) - 1, 10**100, 0.5, -0.5, np.nan,
                            np.inf, 1e300, True, False, None, "1", "exact", "randomized", b"x", 1j,
                            np.int64(2), np.float32(0.1), np.uint64(2**64 - 1), [], (), {}, object(), [1, 2],
                            np.array([1, 2]), np.array(3)])

    def nested(self, depth=0):
        r = self.rng.random()
        if depth > 3 or r < 0.3:
            return self.choice([1, 2.5, np.nan, None, "a", 10**30, True, 1j])
        return [self.nested(depth + 1) for _ in range(int(self.rng.integers(0, 4)))]

    def value(self):
        r = self.rng.random()
        if r < 0.55:
            return self.array()
        if r < 0.8:
            return self.scalar()
        if r < 0.9:
            return self.nested()
        return [self.array() for _ in range(int(self.rng.integers(0, 4)))]

    def chain(self):
        """A consistent factor chain (possibly batched) with one argument possibly mutated."""
        batch = () if self.rng.random() < 0.6 else (int(self.rng.integers(1, 4)),)
        depth = int(self.rng.integers(0, 4))
        ranks = [int(self.rng.integers(1, 6)) for _ in range(depth + 1)]
        m, n = int(self.rng.integers(1, 8)), int(self.rng.integers(1, 8))
        U = self.rng.standard_normal(batch + (m, ranks[0])).astype(np.float32)
        V = self.rng.standard_normal(batch + (n, ranks[-1])).astype(np.float32)
        mids = [self.rng.standard_normal(batch + (ranks[j], ranks[j + 1])).astype(np.float32) for j in range(depth)]
        args = [U, V, mids if mids else None]
        if self.rng.random() < 0.7:
            i = int(self.rng.integers(3))
            if i == 2 and mids and self.rng.random() < 0.5:
                mids[int(self.rng.integers(len(mids)))] = self.value()
            else:
                args[i] = self.value()
        return args

    def grad_buffers(self, args):
        U, V, mids = args
        like = [U, V] + list(mids if isinstance(mids, list) else [])
        bufs = []
        for a in like:
            shape = np.shape(a) if isinstance(a, np.ndarray) else self.shape()
            if self.rng.random() < 0.8:
                bufs.append(np.zeros(shape, np.float32))
            else:
                bufs.append(self.value())
        if self.rng.random() < 0.2 and bufs:
            bufs.pop()
        if self.rng.random() < 0.1 and isinstance(U, np.ndarray):
            bufs[0] = U  # aliasing an input
        return self.choice([tuple(bufs), list(bufs), bufs[0] if bufs else None, None])

    def call(self):
        """A (description, thunk) pair for one random call."""
        import fnl
        from fnl import _native

        k = int(self.rng.integers(22))
        v, s = self.value, self.scalar
        if k == 0:
            W = self.array(self.shape(2), np.float32) if self.rng.random() < 0.5 else v()
            args = (W, self.choice([1, 2, 3, 7, s()]), self.choice(["exact", "randomized", s()]),
                    self.choice([None, 0, 123, s()]))
            kw = {}
            if self.rng.random() < 0.3:
                kw["oversample"] = self.choice([0, 1, 10, s()])
            if self.rng.random() < 0.3:
                kw["power_iters"] = self.choice([0, 1, 3, s()])
            f = self.choice([fnl.spectral_init, fnl.compress])
            return f, args, kw
        if k == 1:
            K = self.array(self.shape(4), np.float32) if self.rng.random() < 0.5 else v()
            return fnl.spectral_init_conv, (K, self.choice([1, 2, s()])), {}
        if k == 2:
            return fnl.conv_to_matrix, (self.array(self.shape(4)) if self.rng.random() < 0.5 else v(),), {}
        if k == 3:
            dims = [self.dim() if self.rng.random() < 0.8 else s() for _ in range(4)]
            return fnl.matrix_to_conv, (self.array(self.shape(2)) if self.rng.random() < 0.6 else v(), *dims), {}
        if k in (4, 5):
            return fnl.compose, tuple(self.chain()), {}
        if k == 6:
            U, V, M = self.chain()
            return fnl.frobenius_penalty, (U, V, self.choice([0.1, 0.0, s()]), M), {}
        if k in (7, 8, 9):
            args = self.chain()
            return (fnl.frobenius_decay_grad, (args[0], args[1], self.choice([0.1, 1.0, s()]), args[2]),
                    {"add_to": self.grad_buffers(args)})
        if k == 10:
            return self.choice([fnl.frobenius_norm, fnl.nuclear_norm]), tuple(self.chain()), {}
        if k == 11:
            U, V, _ = self.chain()
            return fnl.factor_balance, (U, V), {}
        if k == 12:
            U, V, M = self.chain()
            return fnl.effective_step_size, (self.choice([0.1, s()]), U, V, M), {}
        if k == 13:
            U, V, M = self.chain()
            return fnl.weight_decay_penalty, (U, V, self.choice([0.1, s()]), M), {}
        if k == 14:
            return fnl.crs_coefficient, (self.choice([0.1, s()]), self.choice([10, s()]), self.choice([5, s()])), {}
        if k == 15:
            return fnl.set_num_threads, (self.choice([1, 2, s()]),), {}
        if k == 16:
            f = self.choice([fnl.linear_rank, fnl.conv_rank, fnl.rank_for, fnl.dense_params, fnl.factorized_params,
                             fnl.parameter_ratio])
            nargs = int(self.rng.integers(0, 6))
            return f, tuple(self.choice([self.dim(), s(), (self.dim(), self.dim()), [self.shape(2)]])
                            for _ in range(nargs)), {}
        if k == 17:
            shapes = [self.choice([self.shape(2), self.shape(4), self.shape(), s()]) for _ in range(int(self.rng.integers(0, 4)))]
            return fnl.rank_scale_for_ratio, (self.choice([shapes, s()]), self.choice([0.1, 0.5, 2.0, s()])), {}
        # Direct calls into the extension with random positional arguments.
        names = ["spectral_init", "frobenius_sq_norms", "nuclear_norms", "factor_balance", "frobenius_penalty",
                 "frobenius_decay_grad", "compose", "conv_to_matrix", "matrix_to_conv", "set_num_threads"]
        f = getattr(_native, self.choice(names))
        if self.rng.random() < 0.5:
            U, V, M = self.chain()
            pool = [U, V, M, 0.1, 1, None, (np.zeros((2, 2), np.float32),), v()]
            args = tuple(self.choice(pool) for _ in range(int(self.rng.integers(0, 8))))
        else:
            args = tuple(v() for _ in range(int(self.rng.integers(0, 8))))
        return f, args, {}


def describe(f, args, kw) -> str:
    def short(x):
        if isinstance(x, np.ndarray):
            return f"ndarray{x.shape}:{x.dtype}{'' if x.flags.c_contiguous else ':strided'}"
        if isinstance(x, (list, tuple)):
            return type(x).__name__ + "[" + ", ".join(short(y) for y in x[:6]) + "]"
        r = repr(x)
        return r if len(r) < 40 else r[:37] + "..."
    return f"{getattr(f, '__name__', f)}({', '.join(short(a) for a in args)}{', ' if kw else ''}" \
           f"{', '.join(f'{k}={short(x)}' for k, x in kw.items())})"


def run(seed: int, count: int, log_path: str | None = None) -> dict:
    import warnings

    import fnl

    warnings.simplefilter("ignore")
    fz = Fuzzer(seed)
    threads = fnl.get_num_threads()
    log = open(log_path, "w", buffering=1) if log_path else None
    stats = {"ok": 0}
    try:
        for i in range(count):
            f, args, kw = fz.call()
            if log:
                log.write(f"{i}: {describe(f, args, kw)}\n")
            try:
                f(*args, **kw)
                stats["ok"] += 1
            except ALLOWED as e:
                name = type(e).__name__
                stats[name] = stats.get(name, 0) + 1
                msg = str(e)
                # Errors raised by fnl itself carry the function name; Python's own argument
                # errors (wrong keyword, arity of a Python wrapper) need not.
                if not msg.startswith("[fnl.") and "argument" not in msg:
                    raise AssertionError(f"message without [fnl.<name>] prefix from {describe(f, args, kw)}: "
                                         f"{name}: {msg}") from e
            except RuntimeError as e:
                raise AssertionError(f"RuntimeError escaped from {describe(f, args, kw)}: {e}") from e
            except Exception as e:
                raise AssertionError(f"{type(e).__name__} escaped from {describe(f, args, kw)}: {e}") from e
    finally:
        fnl.set_num_threads(threads)
        if log:
            log.close()
    return stats


def _run_subprocess(seed: int, count: int):
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "calls.log")
        proc = subprocess.run(
            [sys.executable, "-X", "faulthandler", __file__, str(seed), str(count), log],
            capture_output=True, text=True, timeout=300,
        )
        last = ""
        if os.path.exists(log):
            with open(log) as fh:
                lines = fh.read().splitlines()
            last = lines[-1] if lines else ""
        assert proc.returncode == 0, (
            f"fuzz seed {seed} failed with exit code {proc.returncode}; last call: {last}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
        )
        return proc.stdout


def test_fuzz_random_malformed_calls():
    out = _run_subprocess(seed=20240601, count=25000)
    assert "ok=" in out


def test_fuzz_second_seed_in_process():
    # In-process as well: refcount or heap damage from the error paths would surface here.
    stats = run(seed=7, count=5000)
    assert stats["ok"] > 0 and sum(stats.values()) == 5000


if __name__ == "__main__":
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    log = sys.argv[3] if len(sys.argv) > 3 else None
    stats = run(seed, count, log)
    print(" ".join(f"{k}={v}" for k, v in sorted(stats.items())))
