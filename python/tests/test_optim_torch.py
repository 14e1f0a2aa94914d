"""Optional: fnl.optim.SGD / AdamW against torch.optim on the same tensors (skipped without torch)."""
import numpy as np
import pytest

import fnl.optim as fo
from fnl.nn.parameter import Parameter

torch = pytest.importorskip("torch")

SHAPES = [(7, 3), (5,), (4, 3, 3, 3), (33,)]


def run_both(make_fnl, make_torch, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    params = [Parameter(x, f"p{i}") for i, x in enumerate(init)]
    tparams = [torch.nn.Parameter(torch.tensor(x)) for x in init]
    opt, topt = make_fnl(params), make_torch(tparams)
    for _ in range(steps):
        for p, t in zip(params, tparams):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum,nesterov,dampening,wd", [(0, False, 0, 0), (0.9, False, 0, 1e-2),
                                                            (0.9, True, 0, 1e-2), (0.8, False, 0.2, 5e-3)])
def test_sgd_matches_torch(momentum, nesterov, dampening, wd):
    run_both(lambda ps: fo.SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov, dampening=dampening,
                               weight_decay=wd),
             lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=momentum, nesterov=nesterov, dampening=dampening,
                                        weight_decay=wd))


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adamw_matches_torch(wd):
    run_both(lambda ps: fo.AdamW(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd),
             lambda ts: torch.optim.AdamW(ts, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd))
