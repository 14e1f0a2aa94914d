"""The main job until training exists: a short demonstration on a matrix problem.

    python -m fnl demo [--steps N] [--seed S]

A factorized linear model W = U V^T (rank r) is trained by plain gradient descent on a
regression Y = X W*^T, where the target W* (m x n) is dense (full rank, decaying spectrum)
and X has orthonormal columns scaled so that X^T X / N = I. The loss is

    L(U, V) = 1/(2N) ||X (U V^T)^T - Y||_F^2 = 1/2 ||U V^T - W*||_F^2,

so its best rank-r value is known (Eckart-Young) and every number below can be checked by
hand. Part 1 compares spectral initialization (SI) of a dense init with independent random
factors; part 2 compares Frobenius decay (FD) with plain weight decay (WD) on the factors:

    WD: (lam/2)(||U||_F^2 + ||V||_F^2) >= lam ||U V^T||_*   (equal when U^T U = V^T V)
    FD: (lam/2) ||U V^T||_F^2

At the optimum WD soft-thresholds the singular values, s_i = max(s*_i - lam, 0) (a nuclear-norm
penalty: low rank), while FD shrinks them all alike, s_i = s*_i / (1 + lam) (ridge on W).
Everything heavy runs in fnl's engine; NumPy only multiplies the data (no Python loops over
elements; the loop is over training steps).
"""
from __future__ import annotations

import argparse
import time
from typing import List, Sequence

import numpy as np

from . import functional as F
from ._engine import get_num_threads, set_num_threads


def _table(headers: Sequence[str], rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


class Problem:
    """Regression with a dense target whose singular values decay like 4 / (1 + i/4)."""

    def __init__(self, m: int, n: int, samples: int, rng: np.random.Generator):
        self.m, self.n = m, n
        P, _ = np.linalg.qr(rng.standard_normal((m, m)))
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        k = min(m, n)
        self.s_target = 4.0 / (1.0 + np.arange(k) / 4.0)
        self.W = ((P[:, :k] * self.s_target) @ Q[:, :k].T).astype(np.float32)  # W* (m x n)
        Xq, _ = np.linalg.qr(rng.standard_normal((samples, n)))
        self.X = (Xq * np.sqrt(samples)).astype(np.float32)  # X^T X / N = I
        self.Y = self.X @ self.W.T
        self.N = samples

    def loss_and_grad(self, U: np.ndarray, V: np.ndarray):
        """Loss and (dL/dU, dL/dV) = (G V, G^T U), G = dL/dW = R^T X / N, R = X V U^T - Y, without
        forming W or G: O(N (m + n) r) per step."""
        XV = self.X @ V
        R = XV @ U.T - self.Y  # residual (N x m)
        loss = 0.5 * float(np.vdot(R, R)) / self.N
        return loss, (R.T @ XV) / self.N, (self.X.T @ (R @ U)) / self.N

    def rel_error(self, U: np.ndarray, V: np.ndarray) -> float:
        return float(np.linalg.norm(F.compose(U, V) - self.W) / np.linalg.norm(self.W))


def train(problem: Problem, U, V, lr: float, steps: int, reg: str = "none", lam: float = 0.0,
          checkpoints: Sequence[int] = ()):
    """Plain gradient descent; the regularizer's gradient is added to the loss gradient."""
    U, V = U.copy(), V.copy()
    losses = {}
    for step in range(steps + 1):
        loss, dU, dV = problem.loss_and_grad(U, V)
        if step in checkpoints:
            losses[step] = loss
        if step == steps or not np.isfinite(loss):
            break
        if reg == "wd":
            dU += lam * U
            dV += lam * V
        elif reg == "fd":
            F.frobenius_decay_grad(U, V, lam, add_to=(dU, dV))  # dU += lam U V^T V, dV += lam V U^T U
        U -= lr * dU
        V -= lr * dV
    return U, V, losses


def spectrum(U, V, rank: int) -> np.ndarray:
    """Singular values of U V^T (fnl.compress of the composed product)."""
    return F.compress(F.compose(U, V), rank).singular_values.astype(np.float64)


def effective_rank(s: np.ndarray) -> float:
    """exp(entropy of s / sum(s)) (Roy & Vetterli 2007): r for r equal values, ~1 for one dominant."""
    p = s[s > 0] / np.sum(s)
    return float(np.exp(-np.sum(p * np.log(p)))) if p.size else 0.0


def part1(pb: Problem, rank: int, lr: float, steps: int, rng) -> str:
    m, n = pb.m, pb.n
    W0 = (rng.standard_normal((m, n)) / np.sqrt(n)).astype(np.float32)  # the dense layer's init
    U_si, V_si = F.spectral_init(W0, rank, seed=0)
    # Independent factors, each initialized as a dense layer of its own shape (fan-in scaling):
    # V^T maps n -> r (std 1/sqrt(n)), U maps r -> m (std 1/sqrt(r)); E||U V^T||_F^2 = E||W0||_F^2.
    U_rn = (rng.standard_normal((m, rank)) / np.sqrt(rank)).astype(np.float32)
    V_rn = (rng.standard_normal((n, rank)) / np.sqrt(n)).astype(np.float32)
    checkpoints = sorted({0, 10, 30, 100, steps})
    floor = F.compress(pb.W, rank).relative_error
    rows = []
    for name, U, V in (("SI of a dense init", U_si, V_si), ("independent random factors", U_rn, V_rn)):
        U1, V1, losses = train(pb, U, V, lr, steps, checkpoints=checkpoints)
        rows.append([name, f"{F.frobenius_norm(U, V):.2f}", f"{F.factor_balance(U, V):.2f}"]
                    + [f"{losses[c]:.4f}" if c in losses else "diverged" for c in checkpoints]
                    + [f"{pb.rel_error(U1, V1):.4f}"])
    best = 0.5 * float(np.sum(pb.s_target[rank:] ** 2))
    head = ["init", "||UV^T||_F", "||U^TU-V^TV||"] + [f"loss@{c}" for c in checkpoints] + ["rel.err"]
    rows.append(["(best rank-r: Eckart-Young)", "", ""] + [""] * (len(checkpoints) - 1) + [f"{best:.4f}", f"{floor:.4f}"])
    return _table(head, rows)


def part2(pb: Problem, rank: int, lr: float, steps: int, lam_wd: float, lam_fd: float) -> str:
    W0 = np.random.default_rng(1).standard_normal((pb.m, pb.n)).astype(np.float32) / np.float32(np.sqrt(pb.n))
    U0, V0 = F.spectral_init(W0, rank, seed=0)
    k = rank
    s_star = pb.s_target[:k]
    runs = [("none", 0.0, s_star), ("wd", lam_wd, np.maximum(s_star - lam_wd, 0)), ("fd", lam_fd, s_star / (1 + lam_fd))]
    rows_a, rows_b = [], []
    for reg, lam, predicted in runs:
        U, V, losses = train(pb, U0, V0, lr, steps, reg=reg, lam=lam, checkpoints=[steps])
        s = spectrum(U, V, k)
        label = {"none": "no penalty", "wd": f"weight decay lam={lam}", "fd": f"Frobenius decay lam={lam}"}[reg]
        nuc = F.nuclear_norm(U, V)
        fro = F.frobenius_norm(U, V)
        rows_a.append([label, f"{losses.get(steps, float('nan')):.4f}", f"{fro:.3f}", f"{nuc:.3f}",
                       f"{F.weight_decay_penalty(U, V, lam):.4f}", f"{lam * nuc:.4f}",
                       f"{F.frobenius_penalty(U, V, lam):.4f}", f"{F.factor_balance(U, V):.1e}"])
        alive = s > 1e-2 * s[0]
        rows_b.append([label, f"{effective_rank(s):.1f}", f"{int(np.sum(alive))}/{k}",
                       f"{s[0]:.3f} / {predicted[0]:.3f}", f"{s[k // 2]:.3f} / {predicted[k // 2]:.3f}",
                       f"{s[-1]:.3f} / {predicted[-1]:.3f}",
                       f"{s[0] / s[alive][-1]:.1f}", f"{F.effective_step_size(lr, U, V):.2e}"])
    a = _table(["training", "loss", "||W||_F", "||W||_*", "WD pen.", "lam*||W||_*", "FD pen.",
                "||U^TU-V^TV||"], rows_a)
    b = _table(["training", "eff.rank", "s_i>1%s_1", "s_1 got/pred", f"s_{k // 2 + 1} got/pred",
                f"s_{k} got/pred", "s_1/s_min>1%", "lr/||W||_F^2"], rows_b)
    return a + "\n\n" + b


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fnl demo", description="SI vs random factors and FD vs weight decay on a "
                                "factorized matrix regression (seeded, about 10 s on 2 cores).")
    p.add_argument("--size", type=int, default=256, help="W is size x size (default 256)")
    p.add_argument("--rank", type=int, default=32, help="rank r of the factors (default 32)")
    p.add_argument("--steps", type=int, default=300, help="gradient steps in part 1 (part 2: 4x; default 300)")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    # The problem is small: the engine runs on one thread, so that its idle OpenBLAS workers
    # do not spin against NumPy's own OpenBLAS between the steps (see ARCHITECTURE.md).
    threads = get_num_threads()
    set_num_threads(1)
    try:
        return _run(a, t0)
    finally:
        set_num_threads(threads)


def _run(a, t0: float) -> int:
    rng = np.random.default_rng(a.seed)
    pb = Problem(a.size, a.size, a.size, rng)
    print(f"fnl demo: factorized W = U V^T ({a.size} x {a.size}, rank {a.rank}) trained by gradient descent "
          f"(lr {a.lr}) on Y = X W*^T, L = 1/2 ||U V^T - W*||_F^2; W* is dense with singular values "
          f"4/(1 + i/4).\n")
    print(f"1. Initialization: spectral init (SI) of a dense init vs independent random factors "
          f"({a.steps} steps, loss = L).")
    print(part1(pb, a.rank, a.lr, a.steps, rng))
    print("   SI starts balanced (U^T U = V^T V = diag(S)), so both factors learn at the same rate; the\n"
          "   independent factors start unbalanced and the product's spectrum is not the dense init's.\n")
    steps2 = 4 * a.steps
    lam_wd, lam_fd = 0.5, 0.25
    print(f"2. Regularization: weight decay (WD) on the factors vs Frobenius decay (FD), from SI ({steps2} steps).")
    print(part2(pb, a.rank, a.lr, steps2, lam_wd, lam_fd))
    print("   WD's penalty equals lam*||W||_* once the factors balance: a nuclear-norm penalty that\n"
          "   soft-thresholds singular values (pred. max(s*-lam, 0)) and cuts the effective rank; FD penalizes\n"
          "   ||W||_F^2 and shrinks all of them alike (pred. s*/(1+lam)), keeping the rank the factors were given.\n"
          "   lr/||W||_F^2 is the effective step size of the scale-invariant product.")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0
