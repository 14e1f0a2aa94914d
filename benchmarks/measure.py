"""Timing helpers shared by the benchmark scripts."""
import time

import numpy as np


def best_time(fn, repeat: int, warmup: int = 2) -> float:
    """Best wall time of `repeat` calls after `warmup` calls (the machine may be shared:
    the minimum is the least disturbed measurement)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def engine_sgemm_seconds(fnl, repeat: int, warmup: int = 2, n: int = 2048) -> float:
    """Best time of one n^3 sgemm inside the engine (fnl.compose of rank-n factors):
    the machine's peak for the GFLOP/s columns is 2 n^3 / this."""
    rng = np.random.default_rng(1)
    U = rng.standard_normal((n, n)).astype(np.float32)
    V = rng.standard_normal((n, n)).astype(np.float32)
    return best_time(lambda: fnl.compose(U, V), repeat, warmup)
