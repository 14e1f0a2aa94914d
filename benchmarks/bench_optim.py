"""One optimizer step of fnl.optim against a straightforward NumPy implementation of the same
update, on the parameter sets of a low-rank ResNet-20 and of a ~10M-parameter model.

    python benchmarks/bench_optim.py            # both parameter sets
    python benchmarks/bench_optim.py --quick    # fewer repetitions (a smoke test)

Rows: SGD with momentum 0.9 + Frobenius decay (decay="frobenius"), SGD with momentum and plain
weight decay, and FLAMBe. The ratio is NumPy time / fnl time (> 1: fnl faster; target >= 3),
medians of alternating repetitions after a warm-up. GB/s counts the bytes an update must move
at least (each array read or written once per step: SGD momentum reads w, g, b and writes w, b,
20 B per float; Adam-type steps read w, g, m, v and write w, m, v, 28 B), and is compared with
the copy bandwidth measured in the same run (np.copyto of a 256 MiB array, read + write
counted). fnl also scans the gradients for NaN/inf before every step (check_finite=True, the
default; +4 B per float not counted); the "no check" column shows the step without it.

The NumPy reference computes the FD gradients from Gram matrices as fnl does (U (V^T V),
V (U^T U)), so both do the same multiply-adds: NumPy with one matmul call per product, fnl from
one engine call per step (OpenBLAS's small-matrix sgemm kernels, Gram matrices of 1-4 columns
in Swift). The rest of the difference is the element-wise part (one fused pass in fnl,
threaded for large groups, against several NumPy passes with temporaries). On the ResNet-20
set the FD products are about half of fnl's step time.

Environment: as benchmarks/bench_factorized.py, OPENBLAS_THREAD_TIMEOUT=4 unless set (two
OpenBLAS pools live in this process) and fnl imported before NumPy.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

ENV_DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "4"}
for _k, _v in ENV_DEFAULTS.items():
    os.environ.setdefault(_k, _v)

import fnl  # noqa: E402
import fnl.optim as fo  # noqa: E402
import numpy as np  # noqa: E402
from fnl.nn.parameter import FactorGroup, Parameter  # noqa: E402


# ---------------------------------------------------------------- parameter sets


def rank(s: float, rows: int) -> int:
    return max(1, round(s * rows))


def resnet20_lowrank(scale: float = 0.1, in_channels: int = 3, classes: int = 10):
    """Shapes of a CIFAR ResNet-20 (16/32/64 channels, 3x3 convs, 1x1 projection shortcuts at
    the stage changes) with every conv but the first factorized at rank-scale `scale` in the
    (c_out*kh) x (c_in*kw) layout: U (c_out*kh, r), V (c_in*kw, r), r = round(scale c_out kh).
    BatchNorm weight/bias per conv; dense first conv and classifier."""
    dense = [(16, in_channels, 3, 3), (16,), (16,)]
    factors = []
    c_in = 16
    for c_out in (16, 32, 64):
        for block in range(3):
            for conv in range(2):
                ci = c_in if conv == 0 else c_out
                factors.append(((c_out * 3, rank(scale, c_out * 3)), (ci * 3, rank(scale, c_out * 3))))
                dense += [(c_out,), (c_out,)]
            if block == 0 and c_in != c_out:
                factors.append(((c_out, rank(scale, c_out)), (c_in, rank(scale, c_out))))
                dense += [(c_out,), (c_out,)]
            c_in = c_out
    dense += [(classes, 64), (classes,)]
    return factors, dense


def large_model():
    """~10M parameters: a transformer-like mix. 24 factorized 3072 x 768 MLP weights at rank
    48, a 8192 x 512 embedding, two dense 768 x 768 matrices, 48 vectors of 768."""
    factors = [((3072, 48), (768, 48)) for _ in range(24)]
    dense = [(8192, 512), (768, 768), (768, 768)] + [(768,)] * 48
    return factors, dense


def build(factors, dense, seed):
    rng = np.random.default_rng(seed)
    params, fgs = [], []
    for (ushape, vshape) in factors:
        U = Parameter(rng.standard_normal(ushape) * 0.1)
        V = Parameter(rng.standard_normal(vshape) * 0.1)
        params += [U, V]
        fgs.append(FactorGroup(U, V))
    params += [Parameter(rng.standard_normal(s) * 0.1) for s in dense]
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.01
    return params, fgs


# ---------------------------------------------------------------- NumPy references


class NumpySGD:
    """SGD momentum with FD (or weight decay) written the straightforward NumPy way."""

    def __init__(self, params, fgs, lr, mu, wd, frobenius):
        self.params, self.lr, self.mu, self.wd = params, lr, mu, wd
        self.fgs = fgs if frobenius else []
        self.factor = {id(p) for fg in self.fgs for p in (fg.U, fg.V)}
        self.buf = [np.zeros_like(p.data) for p in params]

    def step(self):
        fd = {}
        for fg in self.fgs:
            U, V = fg.U.data, fg.V.data
            fd[id(fg.U)] = self.wd * (U @ (V.T @ V))
            fd[id(fg.V)] = self.wd * (V @ (U.T @ U))
        for p, b in zip(self.params, self.buf):
            d = p.grad + (fd[id(p)] if id(p) in fd else self.wd * p.data)
            b *= self.mu
            b += d
            p.data -= self.lr * b


class NumpyFLAMBe:
    """LAMB with FD terms on the factors, straightforward NumPy."""

    def __init__(self, params, fgs, lr, wd, b1=0.9, b2=0.999, eps=1e-6):
        self.params, self.fgs, self.lr, self.wd = params, fgs, lr, wd
        self.b1, self.b2, self.eps = b1, b2, eps
        self.m = [np.zeros_like(p.data) for p in params]
        self.v = [np.zeros_like(p.data) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        fd = {}
        for fg in self.fgs:
            U, V = fg.U.data, fg.V.data
            fd[id(fg.U)] = self.wd * (U @ (V.T @ V))
            fd[id(fg.V)] = self.wd * (V @ (U.T @ U))
        for p, m, v in zip(self.params, self.m, self.v):
            g, w = p.grad, p.data
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * (g * g)
            u = (m / bc1) / (np.sqrt(v / bc2) + self.eps)
            u += fd[id(p)] if id(p) in fd else self.wd * w
            wn, un = np.linalg.norm(w), np.linalg.norm(u)
            trust = wn / un if wn > 0 and un > 0 else 1.0
            w -= (self.lr * trust) * u


# ---------------------------------------------------------------- timing


def alternate(fns, reps):
    """Warm-up, then `reps` rounds calling every function once per round (rotating the order);
    returns the median time of each."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for i in range(reps):
        order = list(range(len(fns)))
        order = order[i % len(order):] + order[:i % len(order)]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def copy_bandwidth(reps):
    src = np.ones(64 * 2**20, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = min(timeit_once(lambda: np.copyto(dst, src)) for _ in range(reps))
    return 2 * src.nbytes / t / 1e9


def timeit_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fmt(t):
    return f"{t * 1e6:.0f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args()
    reps = args.reps or (5 if args.quick else 21)
    copy = copy_bandwidth(5 if args.quick else 10)
    blas = fnl.blas_info()
    print(f"fnl.optim step vs NumPy  |  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, fnl threads {fnl.get_num_threads()}, OpenBLAS {blas.get('corename')}, "
          f"NumPy {np.__version__}")
    print(f"copy bandwidth (np.copyto, 256 MiB, read+write): {copy:.1f} GB/s\n")
    head = f"{'parameter set':<26}{'update':<22}{'floats':>10}{'fnl':>10}{'no check':>10}{'NumPy':>11}" \
           f"{'ratio':>7}{'fnl GB/s':>10}{'% copy':>8}"
    print(head)
    print("-" * len(head))
    sets = [("ResNet-20 rank-scale 0.1", resnet20_lowrank()), ("~10M (transformer-like)", large_model())]
    for label, (factors, dense) in sets:
        for update in ("SGD mom. + FD", "SGD mom. + wd", "FLAMBe"):
            pa, fa = build(factors, dense, 0)
            pb, fb = build(factors, dense, 0)
            pc, fc = build(factors, dense, 0)
            n = sum(p.size for p in pa)
            groups = lambda ps, fg: [{"params": ps, "factor_groups": fg}]  # noqa: E731
            if update.startswith("SGD"):
                decay = "frobenius" if "FD" in update else "weight"
                ours = fo.SGD(groups(pa, fa), lr=0.01, momentum=0.9, weight_decay=5e-4, decay=decay)
                nocheck = fo.SGD(groups(pc, fc), lr=0.01, momentum=0.9, weight_decay=5e-4, decay=decay,
                                 check_finite=False)
                ref = NumpySGD(pb, fb, 0.01, 0.9, 5e-4, decay == "frobenius")
                bytes_per = 20
            else:
                ours = fo.FLAMBe(groups(pa, fa), lr=1e-3, weight_decay=0.01)
                nocheck = fo.FLAMBe(groups(pc, fc), lr=1e-3, weight_decay=0.01, check_finite=False)
                ref = NumpyFLAMBe(pb, fb, 1e-3, 0.01)
                bytes_per = 28
            t_fnl, t_nc, t_np = alternate([ours.step, nocheck.step, ref.step], reps)
            gbs = bytes_per * n / t_fnl / 1e9
            print(f"{label:<26}{update:<22}{n:>10,}{fmt(t_fnl):>10}{fmt(t_nc):>10}{fmt(t_np):>11}"
                  f"{t_np / t_fnl:>6.1f}x{gbs:>10.1f}{100 * gbs / copy:>7.0f}%")
            # the two implementations agree (same update on the same start values)
            worst = max(float(np.max(np.abs(p.data - q.data))) for p, q in zip(pa, pb))
            assert worst < 1e-4, f"fnl and NumPy disagree by {worst}"
    print("\nratio = NumPy / fnl (target >= 3x). GB/s: minimal bytes of the update (20 B/float for "
          "SGD momentum, 28 B/float for Adam-type) per fnl step, gradient NaN scan not counted.")


if __name__ == "__main__":
    main()
