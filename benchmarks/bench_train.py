"""Benchmark: one training step of ResNet-20 (low-rank and dense), fnl vs PyTorch on the CPU.

    python benchmarks/bench_train.py [--batch 128] [--repeat 5] [--rounds 3] [--threads 1,2]

One step = model.train(); forward; softmax cross-entropy; zero_grad; backward; optimizer step,
on a fixed batch of (N, 3, 32, 32) float32 inputs with 10 classes.

  low-rank   fnl.models.resnet20(10, 3) factorized with fnl.factorize(rank_scale=0.1,
             init="spectral"): every conv except the first (and the final Linear) becomes a
             FactorizedConv2d (ranks r = max(1, round(0.1 c_out kh))), projection shortcuts
             included; SGD(lr=0.1, momentum=0.9, weight_decay=1e-4, decay="frobenius").
  dense      the same ResNet-20 unfactorized; SGD with ordinary weight decay 1e-4.

The PyTorch model is built from the fnl model, module by module, with the same weights: a
FactorizedConv2d becomes two convolutions, a 1 x kw conv (c_in -> r; the width stride,
padding and dilation) then a kh x 1 conv (r -> c_out; the height ones), exactly fnl's fused
kernel's two stages; BatchNorm2d, ReLU, the projection shortcut (1x1 conv + BN), global
average pooling and Linear as in fnl.models. Its optimizer is torch.optim.SGD(momentum=0.9)
with weight decay 1e-4 on the non-factor tensors and, for the factor pairs, the Frobenius
decay gradient lambda U (V^T V), lambda V (U^T U) added to the gradients before the step
(computed from the two conv kernels viewed as the factors U, V, as fnl does). Autograd does
the backward pass.

torch runs in a separate process (torch.set_num_threads(threads), fnl.set_num_threads(threads)
here) so that its OpenMP threads and fnl's OpenBLAS threads never compete for the cores. The
two are measured alternately, round after round, and the best time of all rounds is kept
(the machine may be shared). The sgemm rate (one 2048^3 product) of each side's BLAS is
measured in the same run. Each thread count of --threads gets its own table (with 1 thread
the comparison is least sensitive to other work on the machine).

What fnl's step runs: the fused low-rank conv kernels (the 1 x kw stage's output kept for
backward, one ConvWorkspace per thread), BatchNorm+ReLU and BatchNorm+residual+ReLU as single
engine passes, the layers' arrays served by fnl.nn's memory pool (no page faults per step),
and the optimizer step in the engine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from measure import best_time, engine_sgemm_seconds



def build_fnl(kind: str, seed: int = 0):
    import fnl

    model = fnl.models.resnet20(num_classes=10, in_channels=3, seed=seed)
    if kind == "lowrank":
        model = fnl.factorize(model, rank_scale=0.1, init="spectral")
    return model


def make_batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def fnl_step_fn(kind: str, n: int):
    import fnl

    model = build_fnl(kind)
    decay = "frobenius" if kind == "lowrank" else "weight"
    opt = fnl.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-4, decay=decay)
    loss_fn = fnl.nn.CrossEntropyLoss()
    x, y = make_batch(n)

    def step():
        model.train()
        loss_fn(model(x), y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()

    return step


# ---------------------------------------------------------------- torch (worker process)


def to_torch(module):
    """The torch equivalent of an fnl module tree (same weights; see the module docstring)."""
    import torch
    from torch import nn as tnn

    from fnl import nn as fnn

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).copy())

    class Block(tnn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1, self.bn1 = to_torch(b.conv1), to_torch(b.bn1)
            self.conv2, self.bn2 = to_torch(b.conv2), to_torch(b.bn2)
            self.shortcut = None if b.shortcut is None else to_torch(b.shortcut)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out = out + (x if self.shortcut is None else self.shortcut(x))
            return torch.relu(out)

    if isinstance(module, fnn.FactorizedConv2d):
        if module.middle:
            raise NotImplementedError("inner factor matrices")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = module.kernel_size, module.stride, module.padding, module.dilation
        r, c_in, c_out = module.rank, module.in_channels, module.out_channels
        a = tnn.Conv2d(c_in, r, (1, kw), (1, sw), (0, pw), (1, dw), bias=False)
        b = tnn.Conv2d(r, c_out, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=module.bias is not None)
        with torch.no_grad():
            # V[c*kw + j, q] = a.weight[q, c, 0, j];  U[o*kh + i, q] = b.weight[o, q, i, 0]
            a.weight.copy_(t(module.V.data.reshape(c_in, kw, r, 1).transpose(2, 0, 3, 1)))
            b.weight.copy_(t(module.U.data.reshape(c_out, kh, r, 1).transpose(0, 2, 1, 3)))
            if module.bias is not None:
                b.bias.copy_(t(module.bias.data))
        seq = tnn.Sequential(a, b)
        seq.fnl_factor_pair = (a, b)
        return seq
    if isinstance(module, fnn.Conv2d):
        m = tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                       module.dilation, bias=module.bias is not None)
        with torch.no_grad():
            m.weight.copy_(t(module.weight.data))
            if module.bias is not None:
                m.bias.copy_(t(module.bias.data))
        return m
    if isinstance(module, fnn.BatchNorm2d):
        m = tnn.BatchNorm2d(module.num_features, module.eps, module.momentum)
        with torch.no_grad():
            m.weight.copy_(t(module.weight.data))
            m.bias.copy_(t(module.bias.data))
        return m
    if isinstance(module, fnn.ReLU):
        return tnn.ReLU()
    if isinstance(module, fnn.GlobalAvgPool2d):
        return tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten())
    if isinstance(module, fnn.Linear):
        m = tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        with torch.no_grad():
            m.weight.copy_(t(module.weight.data))
            if module.bias is not None:
                m.bias.copy_(t(module.bias.data))
        return m
    if isinstance(module, fnn.BasicBlock):
        return Block(module)
    if isinstance(module, fnn.Sequential):
        return tnn.Sequential(*[to_torch(m) for m in module])
    raise NotImplementedError(type(module).__name__)


def torch_step_fn(kind: str, n: int):
    import torch

    model = to_torch(build_fnl(kind))
    pairs = [m.fnl_factor_pair for m in model.modules() if hasattr(m, "fnl_factor_pair")]
    lam = 1e-4
    factor_ids = {id(p) for a, b in pairs for p in (a.weight, b.weight)}
    others = [p for p in model.parameters() if id(p) not in factor_ids]
    factors = [p for p in model.parameters() if id(p) in factor_ids]
    groups = [{"params": others, "weight_decay": lam}]
    if factors:
        groups.append({"params": factors, "weight_decay": 0.0})
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = (torch.from_numpy(a) for a in make_batch(n))

    def frobenius_decay():
        # U = b.weight as (c_out*kh, r), V = a.weight as (c_in*kw, r); dU = lam U (V^T V), dV = lam V (U^T U).
        with torch.no_grad():
            for a, b in pairs:
                wa, wb = a.weight, b.weight
                r, c_in, _, kw = wa.shape
                c_out, _, kh, _ = wb.shape
                V = wa.permute(1, 3, 0, 2).reshape(c_in * kw, r)
                U = wb.permute(0, 2, 1, 3).reshape(c_out * kh, r)
                gU = (U @ (V.T @ V)).mul_(lam)
                gV = (V @ (U.T @ U)).mul_(lam)
                wb.grad.add_(gU.reshape(c_out, kh, r, 1).permute(0, 2, 1, 3))
                wa.grad.add_(gV.reshape(c_in, kw, r, 1).permute(2, 0, 3, 1))

    def step():
        model.train()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        frobenius_decay()
        opt.step()

    return step


def torch_worker(threads: int, n: int, repeat: int) -> None:
    """Answers one JSON request per line ({"kind": "lowrank" | "dense" | "sgemm"}) with the
    best time of `repeat` calls."""
    import torch

    torch.set_num_threads(threads)
    import fnl

    fnl.set_num_threads(1)  # only builds the models here
    steps = {"lowrank": torch_step_fn("lowrank", n), "dense": torch_step_fn("dense", n)}
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    steps["sgemm"] = lambda: torch.mm(a, b)
    print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        kind = json.loads(line)["kind"]
        print(json.dumps({"t": best_time(steps[kind], repeat)}), flush=True)


class TorchWorker:
    def __init__(self, threads: int, n: int, repeat: int):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--torch-worker", "--threads", str(threads),
             "--batch", str(n), "--repeat", str(repeat)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        first = self.proc.stdout.readline()
        if not first:
            err = self.proc.stderr.read().strip().splitlines()
            raise RuntimeError(err[-1] if err else "torch worker failed")
        self.info = json.loads(first)

    def time(self, kind: str) -> float:
        self.proc.stdin.write(json.dumps({"kind": kind}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["t"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def start_torch(threads: int, n: int, repeat: int):
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None, "torch is not installed"
    try:
        return TorchWorker(threads, n, repeat), None
    except Exception as e:  # torch present but unusable
        return None, f"torch failed to start: {e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5, help="timed steps per measurement (after 2 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fnl/torch passes; the best time is kept")
    ap.add_argument("--threads", default="1,2", help="thread counts to measure, e.g. 2 or 1,2")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(int(args.threads), args.batch, args.repeat)
        return
    import fnl

    counts = [int(t) for t in str(args.threads).split(",")]
    kinds = ("lowrank", "dense")
    params = {k: build_fnl(k).num_parameters() for k in kinds}
    steps = {k: fnl_step_fn(k, args.batch) for k in kinds}
    print(f"fnl training-step benchmark: ResNet-20, batch {args.batch} x 3 x 32 x 32, 10 classes; "
          f"best of {args.rounds} rounds x {args.repeat} steps (after 2 warm-up steps)")
    names = {"lowrank": "low-rank (s=0.1, SI, SGD+FD)", "dense": "dense (SGD, weight decay)"}
    flop = 2.0 * 2048**3
    for threads in counts:
        worker, note = (None, "--no-torch") if args.no_torch else start_torch(threads, args.batch, args.repeat)
        fnl.set_num_threads(threads)
        best: dict = {}

        def keep(key, value):
            best[key] = min(best.get(key, float("inf")), value)

        for _ in range(args.rounds):
            keep(("fnl", "sgemm"), engine_sgemm_seconds(fnl, 3, warmup=1))
            if worker:
                keep(("torch", "sgemm"), worker.time("sgemm"))
            for k in kinds:
                keep(("fnl", k), best_time(steps[k], args.repeat))
                if worker:
                    keep(("torch", k), worker.time(k))
        if worker:
            worker.close()

        print()
        line = (f"{threads} thread{'s' if threads > 1 else ''}: sgemm 2048^3 fnl engine (OpenBLAS "
                f"{fnl.blas_info()['corename']}) {flop / best[('fnl', 'sgemm')] / 1e9:.1f} GFLOP/s")
        if worker:
            line += f"; torch {worker.info['version']} (MKL) {flop / best[('torch', 'sgemm')] / 1e9:.1f} GFLOP/s"
        else:
            line += f"; torch skipped ({note})"
        print(line)
        head = f"{'model':<32}{'params':>9}{'fnl step':>11}"
        if worker:
            head += f"{'torch step':>12}{'torch/fnl':>11}"
        print(head)
        print("-" * len(head))
        for k in kinds:
            row = f"{names[k]:<32}{params[k]:>9,}{best[('fnl', k)] * 1e3:>9.1f}ms"
            if worker:
                row += f"{best[('torch', k)] * 1e3:>10.1f}ms{best[('torch', k)] / best[('fnl', k)]:>10.2f}x"
            print(row)
    print()
    print("target: torch/fnl >= 1 for the low-rank step (fnl not slower)")


if __name__ == "__main__":
    main()
