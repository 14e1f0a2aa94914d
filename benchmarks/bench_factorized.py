"""fnl's matrix methods against their NumPy references, measured side by side in one run.

    python benchmarks/bench_factorized.py            # the sizes of issue 2 (a few minutes)
    python benchmarks/bench_factorized.py --quick    # small sizes (seconds; a smoke test)

Prints one table. Every ratio is reference time / fnl time (a speed-up: > 1 means fnl is
faster), from the median of several repetitions after a warm-up, fnl and the reference
alternating so that background load hits both alike. The machine's sgemm rate is measured in
the same run through both OpenBLAS copies in the process (fnl's, and NumPy's own), and the
GFLOP/s of each row are given as a fraction of it where a flop count is meaningful.

Environment. NumPy from pip ships its own (symbol-prefixed) OpenBLAS, so two OpenBLAS thread
pools live in this process. After each parallel call OpenBLAS's idle workers spin for
2**OPENBLAS_THREAD_TIMEOUT cycles (default 2**28, about 0.1 s) before sleeping, and on a
2-core machine the spinning pool of one library halves the speed of the other when the two
alternate, as they do here. Unless the caller set it, this script sets
OPENBLAS_THREAD_TIMEOUT=4 (the minimum OpenBLAS accepts) before either library is loaded.
Both copies read OPENBLAS_CORETYPE; fnl sets it at import (unless the user chose) to the
family the CPU's flags support, and this script imports fnl before NumPy so that both copies
run the same kernel family; the header prints the family each copy actually uses.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
import timeit

ENV_DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "4"}
ENV_SET_HERE = {k: v for k, v in ENV_DEFAULTS.items() if k not in os.environ}
os.environ.update(ENV_SET_HERE)

import fnl  # noqa: E402  (before NumPy: fnl chooses OPENBLAS_CORETYPE for both OpenBLAS copies)
import numpy as np  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not the targets)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per row (default 5, quick 3)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ---------------------------------------------------------------- timing


def alternate(fnl_fn, ref_fn, reps: int):
    """Warm-up, then `reps` alternating timed calls of each; returns the two medians (s)."""
    fnl_fn()
    ref_fn()
    a, b = [], []
    for i in range(reps):
        for fn, out in ((fnl_fn, a), (ref_fn, b)) if i % 2 == 0 else ((ref_fn, b), (fnl_fn, a)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def per_call(fn, reps: int, number: int) -> float:
    """Median time per call (s) over `reps` blocks of `number` calls."""
    fn()
    return statistics.median(t / number for t in timeit.repeat(fn, number=number, repeat=reps))


def fmt_time(t: float) -> str:
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


# ---------------------------------------------------------------- environment


def numpy_blas() -> dict:
    """NumPy's BLAS: the loaded library per threadpoolctl when installed, else show_config."""
    try:
        import threadpoolctl

        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas" and "libopenblas.so" not in os.path.basename(info["filepath"]) \
                    and "openblasp-r" not in info["filepath"]:
                return {"corename": info.get("architecture"), "version": info.get("version"),
                        "threads": info.get("num_threads"), "source": "threadpoolctl",
                        "library": os.path.basename(info["filepath"])}
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"corename": "? (install threadpoolctl)", "version": cfg.get("version"), "threads": "?",
                "source": "numpy.show_config", "library": cfg.get("name")}
    except Exception:  # NumPy 1.x without mode="dicts"
        return {"corename": "?", "version": "?", "threads": "?", "source": "unavailable", "library": "?"}


def header(args) -> list[str]:
    info = fnl.blas_info()
    nb = numpy_blas()
    env = {k: os.environ.get(k, "(unset)") for k in
           ("OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "command: " + " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv),
        f"machine: {cpu}, {os.cpu_count()} logical CPUs, load average {load}; {platform.platform()}",
        f"python {platform.python_version()}, numpy {np.__version__}, fnl {fnl.__version__}",
        f"fnl   OpenBLAS: {info['config'].split()[1]} corename={info['corename']} (fnl requested "
        f"{info['requested']}), threads={fnl.get_num_threads()}",
        f"numpy OpenBLAS: {nb['library']} {nb['version']} corename={nb['corename']}, threads={nb['threads']} "
        f"(via {nb['source']})",
        "env: " + " ".join(f"{k}={v}" for k, v in env.items())
        + (f"  [set by this script: {', '.join(ENV_SET_HERE)}]" if ENV_SET_HERE else ""),
    ]
    return lines


# ---------------------------------------------------------------- rows


class Table:
    COLS = ("row", "fnl", "reference", "ratio", "target", "pass", "notes")

    def __init__(self):
        self.rows = []

    def add(self, row, t_fnl, t_ref, ratio, target, ok, notes=""):
        self.rows.append((row, t_fnl, t_ref, ratio, target, "PASS" if ok else "FAIL", notes))

    def render(self) -> list[str]:
        widths = [max(len(str(r[i])) for r in self.rows + [self.COLS]) for i in range(len(self.COLS))]
        widths[-1] = 0
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
        return [line(self.COLS), line(["-" * w for w in widths[:-1]] + ["-----"])] + [line(r) for r in self.rows]


def gemm_rates(n, reps, rng):
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    t_fnl, t_np = alternate(lambda: fnl.compose(A, B), lambda: np.matmul(A, B.T), reps)
    flops = 2.0 * n**3
    return flops / t_fnl / 1e9, flops / t_np / 1e9, t_fnl, t_np


def main(argv=None) -> int:
    args = parse_args(argv)
    quick = args.quick
    reps = args.reps or (3 if quick else 5)
    rng = np.random.default_rng(args.seed)
    out = header(args)
    table = Table()

    # sgemm peak, both OpenBLAS copies.
    n = 512 if quick else 2048
    g_fnl, g_np, t_fnl, t_np = gemm_rates(n, reps, rng)
    peak = max(g_fnl, g_np)
    table.add(f"sgemm {n}^3: fnl.compose vs np.matmul", fmt_time(t_fnl), fmt_time(t_np), f"{t_np / t_fnl:.2f}x",
              "(peak)", True, f"fnl {g_fnl:.1f} GFLOP/s, numpy {g_np:.1f} GFLOP/s")

    def frac(gf):
        return f"{gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of sgemm"

    # (a) Frobenius decay gradient vs forming W.
    m = n_ = 512 if quick else 2048
    r, lam = 64, 1e-3
    U = (rng.standard_normal((m, r)) / np.sqrt(r)).astype(np.float32)
    V = (rng.standard_normal((n_, r)) / np.sqrt(r)).astype(np.float32)

    def naive():
        W = U @ V.T
        return lam * (W @ V), lam * (W.T @ U)

    dU, dV = fnl.frobenius_decay_grad(U, V, lam)
    rU, rV = naive()
    err = max(np.abs(dU - rU).max() / np.abs(rU).max(), np.abs(dV - rV).max() / np.abs(rV).max())
    t_fnl, t_ref = alternate(lambda: fnl.frobenius_decay_grad(U, V, lam), naive, reps * 3)
    fl_fnl = 4.0 * (m + n_) * r * r  # two Gram matrices (counted full) + two (m|n) x r x r products
    fl_ref = 6.0 * m * n_ * r
    ratio = t_ref / t_fnl
    table.add(f"(a) FD grad {m}x{n_} r={r} vs W=UV^T, WV, W^TU", fmt_time(t_fnl), fmt_time(t_ref),
              f"{ratio:.1f}x", ">= 15x", ratio >= 15,
              f"fnl {frac(fl_fnl / t_fnl / 1e9)}; naive {frac(fl_ref / t_ref / 1e9)}; max rel diff {err:.1e}")

    # (b) exact SI vs numpy.linalg.svd.
    # Two ranks per size: r = n/8 takes the engine's leading-triplets path (sgesvdx + Rayleigh-Ritz),
    # r = n/2 its full thin SVD (sgesdd), like numpy.linalg.svd.
    for n in ((256, 512) if quick else (1024, 2048)):
        W = rng.standard_normal((n, n), dtype=np.float32) / np.float32(np.sqrt(n))
        for r, path in ((n // 8, "sgesvdx top r + Rayleigh-Ritz"), (n // 2, "sgesdd, all n triplets")):
            t_fnl, t_ref = alternate(lambda: fnl.spectral_init(W, r, method="exact"),
                                     lambda: np.linalg.svd(W, full_matrices=False), max(3, reps - 2))
            ratio = t_ref / t_fnl
            table.add(f"(b) exact SI {n}x{n} r={r} vs np.linalg.svd", fmt_time(t_fnl), fmt_time(t_ref),
                      f"{ratio:.2f}x", ">= 1.0x", ratio >= 1.0, f"fnl: {path}; numpy: sgesdd, all n triplets")

    # (c) randomized vs exact SI.
    n = 1024 if quick else 4096
    r = 32 if quick else 128
    W = rng.standard_normal((n, n), dtype=np.float32) / np.float32(np.sqrt(n))
    t_rand, t_exact = alternate(lambda: fnl.spectral_init(W, r, method="randomized", seed=1),
                                lambda: fnl.spectral_init(W, r, method="exact"), 3)
    norm = np.linalg.norm(W.astype(np.float64))

    def rel_error(UV):
        return float(np.linalg.norm((W - fnl.compose(*UV)).astype(np.float64)) / norm)

    e_rand = rel_error(fnl.spectral_init(W, r, method="randomized", seed=1))
    e_exact = rel_error(fnl.spectral_init(W, r, method="exact"))
    excess = e_rand / e_exact - 1
    ratio = t_exact / t_rand
    table.add(f"(c) randomized SI {n}x{n} r={r} vs exact SI", fmt_time(t_rand), fmt_time(t_exact), f"{ratio:.1f}x",
              ">= 10x", ratio >= 10, "")
    table.add(f"(c) ... ||W-UV^T||_F/||W||_F, randomized vs exact", f"{e_rand:.5f}", f"{e_exact:.5f}",
              f"{100 * excess:+.2f}%", "<= +1%", excess <= 0.01, "oversample=10, power_iters=4 (the defaults)")

    # (d) Python -> Swift call overhead.
    a11 = np.ones((1, 1), np.float32)
    a1 = np.ones(1, np.float32)
    number = 20000 if quick else 200000
    t_fnl = per_call(lambda: fnl.frobenius_penalty(a11, a11, 0.5), reps * 2, number)
    t_ref = per_call(lambda: np.add(a1, a1), reps * 2, number)
    ratio = t_ref / t_fnl
    table.add("(d) call: fnl.frobenius_penalty 1x1 vs np.add 1-elt", fmt_time(t_fnl), fmt_time(t_ref),
              f"{ratio:.2f}x", "> 1x", ratio > 1, "per call, incl. the Python wrapper")

    out += [""] + table.render()
    print("\n".join(out))
    return 0 if all(r[5] == "PASS" for r in table.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
