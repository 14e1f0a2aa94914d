"""fnl.optim update formulas vs the NumPy float64 references of optim_reference.py.

Tolerances: every step is computed in float32 (norms in float64); after a few steps the
parameters agree with the float64 reference to rtol 2e-5 / atol 2e-6 (SGD) and
rtol 5e-5 / atol 5e-6 (Adam-type, whose r = m_hat / (sqrt(v_hat) + eps) amplifies rounding
where v is small).
"""
import os
import sys

import numpy as np
import pytest

import fnl.optim as fo
from fnl.nn.parameter import FactorGroup, Parameter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from optim_reference import RefAdamW, RefLAMB, RefModel, RefSGD, fd_grads, product_norm

SGD_TOL = dict(rtol=2e-5, atol=2e-6)
ADAM_TOL = dict(rtol=5e-5, atol=5e-6)


def make_group(rng, depth=0, batch=None, m=7, n=5, r=3, extra=((4, 3), (6,)), scale=1.0):
    """A parameter group: one factorized product U M_1..M_d V^T (shapes (m, r), (r, r), (n, r),
    with a leading batch axis when batch is set) and plain tensors of the given shapes."""
    lead = () if batch is None else (batch,)
    U = Parameter(rng.standard_normal(lead + (m, r)) * scale, "U")
    mids = [Parameter(rng.standard_normal(lead + (r, r)) * scale, f"M{j}") for j in range(depth)]
    V = Parameter(rng.standard_normal(lead + (n, r)) * scale, "V")
    plain = [Parameter(rng.standard_normal(s) * scale, f"p{i}") for i, s in enumerate(extra)]
    fg = FactorGroup(U, V, mids, "linear", (m, n))
    return [U, V, *mids, *plain], [fg]


def set_grads(rng, params, scale=1.0):
    grads = []
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape) * scale
        grads.append(p.grad.copy())
    return grads


def assert_params(params, ref, tol):
    for p, w in zip(params, ref.m.w):
        np.testing.assert_allclose(p.data, w, err_msg=p.name, **tol)


def run(opt, ref, params, rng, steps=5):
    for _ in range(steps):
        grads = set_grads(rng, params)
        opt.step()
        out = ref.step(grads)
    return out


@pytest.mark.parametrize("decay", ["weight", "frobenius", "crs", "none"])
@pytest.mark.parametrize("momentum,nesterov,dampening", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                         (0.5, False, 0.3)])
def test_sgd_matches_reference(decay, momentum, nesterov, dampening):
    rng = np.random.default_rng(0)
    params, fgs = make_group(rng)
    ref = RefSGD(RefModel(params, fgs), lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                 weight_decay=0.1, decay=decay)
    opt = fo.SGD([{"params": params, "factor_groups": fgs}], lr=0.05, momentum=momentum, dampening=dampening,
                 nesterov=nesterov, weight_decay=0.1, decay=decay)
    run(opt, ref, params, rng)
    assert_params(params, ref, SGD_TOL)
    if momentum:
        for b, rb in zip(opt.state[0]["momentum_buffer"], ref.buf):
            np.testing.assert_allclose(b, rb, **SGD_TOL)


@pytest.mark.parametrize("depth,batch", [(1, None), (2, None), (0, 3), (1, 2)])
@pytest.mark.parametrize("decay", ["frobenius", "crs"])
def test_sgd_deep_and_batched_factor_groups(depth, batch, decay):
    rng = np.random.default_rng(1)
    params, fgs = make_group(rng, depth=depth, batch=batch, m=6, n=4, r=2)
    ref = RefSGD(RefModel(params, fgs), lr=0.02, momentum=0.9, weight_decay=0.3, decay=decay)
    opt = fo.SGD([{"params": params, "factor_groups": fgs}], lr=0.02, momentum=0.9, weight_decay=0.3, decay=decay)
    run(opt, ref, params, rng, steps=4)
    assert_params(params, ref, SGD_TOL)


@pytest.mark.parametrize("cls", [fo.SGD, fo.FLAMBe])
def test_frobenius_decay_over_low_rank_conv_shapes(cls):
    """Many factor pairs in one group, shaped like a low-rank ResNet's (c_out*kh, r), (c_in*kw, r)
    factors: ranks 1-6 (the engine's Swift Gram path, up to its threshold and past it), 10 and
    19 (OpenBLAS), odd sizes and a one-row factor, against the float64 reference."""
    rng = np.random.default_rng(11)
    shapes = [(48, 48, 5), (32, 16, 3), (9, 1, 1), (7, 300, 2), (65, 33, 4), (257, 31, 4), (96, 48, 10),
              (192, 96, 19), (64, 32, 6), (1, 5, 1)]
    params, fgs = [], []
    for m, n, r in shapes:
        U = Parameter(rng.standard_normal((m, r)) / np.sqrt(r), f"U{m}x{r}")
        V = Parameter(rng.standard_normal((n, r)) / np.sqrt(r), f"V{n}x{r}")
        params += [U, V]
        fgs.append(FactorGroup(U, V, [], "conv", (m, n)))
    params.append(Parameter(rng.standard_normal(7), "bias"))
    groups = [{"params": params, "factor_groups": fgs}]
    if cls is fo.SGD:
        ref = RefSGD(RefModel(params, fgs), lr=0.05, momentum=0.9, weight_decay=0.05, decay="frobenius")
        opt = fo.SGD(groups, lr=0.05, momentum=0.9, weight_decay=0.05, decay="frobenius")
        tol = SGD_TOL
    else:
        # (eps=1e-3: with the default 1e-6, m_hat / (sqrt(v_hat) + eps) amplifies float32
        # rounding ~100x at the rare tiny-gradient entries of these ~6000 values; FD is the subject here)
        ref = RefLAMB(RefModel(params, fgs), lr=1e-2, eps=1e-3, weight_decay=0.05, decay="frobenius")
        opt = fo.FLAMBe(groups, lr=1e-2, eps=1e-3, weight_decay=0.05)
        tol = ADAM_TOL
    run(opt, ref, params, rng, steps=3)
    assert_params(params, ref, tol)


def test_frobenius_decay_term_is_the_gradient_of_the_product_penalty():
    """One plain SGD step with zero loss gradient moves the factors by exactly -lr * FD grad,
    FD grad checked against the float64 formula with W formed explicitly."""
    rng = np.random.default_rng(2)
    params, fgs = make_group(rng, depth=1, m=9, n=8, r=4, extra=())
    before = [p.data.astype(np.float64) for p in params]
    for p in params:
        p.grad[...] = 0
    fo.SGD([{"params": params, "factor_groups": fgs}], lr=0.5, weight_decay=0.2, decay="frobenius").step()
    dU, dV, dM = fd_grads(before[0], before[1], [before[2]], 0.2)
    for p, w0, g in zip(params, before, [dU, dV, dM]):
        np.testing.assert_allclose((w0 - p.data) / 0.5, g, rtol=1e-4, atol=1e-5)


def test_crs_scales_decay_by_compression_rate():
    rng = np.random.default_rng(3)
    params, fgs = make_group(rng, m=10, n=8, r=2, extra=((5,),))
    rate = fgs[0].factorized_params / fgs[0].dense_params
    before = [p.data.copy() for p in params]
    for p in params:
        p.grad[...] = 0
    fo.SGD([{"params": params, "factor_groups": fgs}], lr=1.0, weight_decay=0.1, decay="crs").step()
    np.testing.assert_allclose(params[0].data, before[0] * (1 - 0.1 * rate), rtol=1e-6)
    np.testing.assert_allclose(params[2].data, before[2] * (1 - 0.1), rtol=1e-6)


@pytest.mark.parametrize("decay", ["weight", "frobenius", "crs", "none"])
def test_adamw_matches_reference(decay):
    rng = np.random.default_rng(4)
    params, fgs = make_group(rng, depth=1)
    ref = RefAdamW(RefModel(params, fgs), lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, decay=decay)
    opt = fo.AdamW([{"params": params, "factor_groups": fgs}], lr=0.01, betas=(0.9, 0.99), eps=1e-8,
                   weight_decay=0.1, decay=decay)
    run(opt, ref, params, rng)
    assert_params(params, ref, ADAM_TOL)
    for name, rb in (("exp_avg", ref.exp_avg), ("exp_avg_sq", ref.exp_avg_sq)):
        for b, r in zip(opt.state[0][name], rb):
            np.testing.assert_allclose(b, r, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls,decay", [(fo.LAMB, "weight"), (fo.FLAMBe, "frobenius"), (fo.LAMB, "crs")])
@pytest.mark.parametrize("depth", [0, 2])
def test_lamb_and_flambe_match_reference_with_trust_ratios(cls, decay, depth):
    rng = np.random.default_rng(5)
    params, fgs = make_group(rng, depth=depth)
    ref = RefLAMB(RefModel(params, fgs), lr=0.02, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.05, decay=decay)
    opt = cls([{"params": params, "factor_groups": fgs}], lr=0.02, eps=1e-6, weight_decay=0.05)
    assert opt.param_groups[0]["decay"] == decay or cls is fo.LAMB
    if cls is fo.LAMB:
        opt.param_groups[0]["decay"] = decay
    trust = run(opt, ref, params, rng, steps=4)
    assert_params(params, ref, ADAM_TOL)
    got = opt.trust_ratios()
    np.testing.assert_allclose([got[p.name] for p in params], trust, rtol=1e-5)


def test_flambe_trust_ratio_uses_fd_gradient_not_weight():
    """At step 1 with g = 0 the Adam direction vanishes, so u = D and the trust ratio is
    ||w|| / ||D||: ||w|| / ||lambda w|| = 1 / lambda for LAMB, ||w|| / ||g_FD|| for FLAMBe."""
    rng = np.random.default_rng(6)
    params, fgs = make_group(rng, extra=((5,),))
    for p in params:
        p.grad[...] = 0
    before = [p.data.astype(np.float64) for p in params]
    lamb = fo.LAMB([{"params": params, "factor_groups": fgs}], lr=0.0, weight_decay=0.1)
    lamb.step()
    np.testing.assert_allclose(list(lamb.trust_ratios().values()), 10.0, rtol=1e-6)
    flambe = fo.FLAMBe([{"params": params, "factor_groups": fgs}], lr=0.0, weight_decay=0.1)
    flambe.step()
    dU, dV = fd_grads(before[0], before[1], [], 0.1)
    t = flambe.trust_ratios()
    np.testing.assert_allclose(t["U"], np.linalg.norm(before[0]) / np.linalg.norm(dU), rtol=1e-5)
    np.testing.assert_allclose(t["V"], np.linalg.norm(before[1]) / np.linalg.norm(dV), rtol=1e-5)
    assert t["p0"] == pytest.approx(10.0)


def test_zero_norm_edge_cases():
    rng = np.random.default_rng(7)
    zero_w = Parameter(np.zeros((4, 3)), "zero_w")
    zero_g = Parameter(rng.standard_normal(5), "zero_g")
    both = Parameter(np.zeros(3), "both")
    params = [zero_w, zero_g, both]
    zero_w.grad[...] = rng.standard_normal((4, 3))
    before = zero_g.data.copy()
    opt = fo.LAMB(params, lr=0.1, weight_decay=0.0)
    opt.step()
    t = opt.trust_ratios()
    assert t == {"zero_w": 1.0, "zero_g": 1.0, "both": 1.0}
    # zero weights: trust 1, so w = -lr * r with |r| ~ 1 at step 1
    np.testing.assert_allclose(zero_w.data, -0.1 * zero_w.grad / (np.abs(zero_w.grad) + 1e-6), rtol=1e-5)
    np.testing.assert_array_equal(zero_g.data, before)      # u = 0: no move
    np.testing.assert_array_equal(both.data, 0)
    # FD of a zero product is zero, SGD with zero gradients leaves zero weights at zero
    U, V = Parameter(np.zeros((3, 2)), "U"), Parameter(np.zeros((4, 2)), "V")
    sgd = fo.SGD([{"params": [U, V], "factor_groups": [FactorGroup(U, V)]}], lr=0.1, momentum=0.9,
                 weight_decay=0.1, decay="frobenius")
    sgd.step()
    sgd.step()
    assert not U.data.any() and not V.data.any()
    assert sgd.factor_norms()[0] == 0
    # norm matching cannot rescale a zero product: left unchanged
    nm = fo.SGD([{"params": [U, V], "factor_groups": [FactorGroup(U, V)], "decay": "norm_matching",
                  "norm_trajectory": [[1.0]]}], lr=0.1)
    nm.step()
    assert not U.data.any()


def test_norm_matching_follows_a_recorded_fd_trajectory():
    rng = np.random.default_rng(8)
    params, fgs = make_group(rng, depth=1)
    copies = [Parameter(p.data, p.name) for p in params]
    cfgs = [FactorGroup(copies[0], copies[1], [copies[2]], "linear", (7, 5))]
    fd = fo.SGD([{"params": params, "factor_groups": fgs}], lr=0.05, momentum=0.9, weight_decay=0.5,
                decay="frobenius")
    traj = []
    for _ in range(4):
        set_grads(rng, params)
        fd.step()
        traj.append(fd.factor_norms())
    traj = np.array(traj)
    ref = RefSGD(RefModel(copies, cfgs), lr=0.05, momentum=0.9, decay="norm_matching", trajectory=traj)
    nm = fo.SGD([{"params": copies, "factor_groups": cfgs, "decay": "norm_matching", "norm_trajectory": traj}],
                lr=0.05, momentum=0.9)
    for t in range(4):
        grads = set_grads(rng, copies)
        nm.step()
        ref.step(grads)
        np.testing.assert_allclose(nm.factor_norms(), traj[t], rtol=1e-5)
        assert product_norm(copies[0].data, copies[1].data, [copies[2].data]) == pytest.approx(traj[t][0], rel=1e-5)
    assert_params(copies, ref, SGD_TOL)
    with pytest.raises(ValueError, match="norm_trajectory of group 0 has 4 steps"):
        nm.step()


def test_multiple_groups_and_a_model_like_object():
    rng = np.random.default_rng(9)
    params, fgs = make_group(rng)

    class Model:
        def named_parameters(self):
            return [(f"layer.{p.name}", p) for p in params]

        def factor_groups(self):
            return fgs

    ref = RefSGD(RefModel(params, fgs), lr=0.1, momentum=0.9, weight_decay=1e-2, decay="frobenius")
    opt = fo.SGD(Model(), lr=0.1, momentum=0.9, weight_decay=1e-2, decay="frobenius")
    run(opt, ref, params, rng, steps=3)
    assert_params(params, ref, SGD_TOL)
    # two groups: factors with FD at one lr, plain tensors without decay at another
    a, b = params[:2], params[2:]
    ra, rb = RefModel(a, fgs), RefModel(b)
    ref_a = RefSGD(ra, lr=0.1, weight_decay=0.2, decay="frobenius")
    ref_b = RefSGD(rb, lr=0.01, decay="none")
    opt = fo.SGD([{"params": a, "factor_groups": fgs, "weight_decay": 0.2, "decay": "frobenius"},
                  {"params": b, "lr": 0.01, "decay": "none"}], lr=0.1)
    for _ in range(3):
        grads = set_grads(rng, params)
        opt.step()
        ref_a.step(grads[:2])
        ref_b.step(grads[2:])
    for p, w in zip(a, ra.w):
        np.testing.assert_allclose(p.data, w, **SGD_TOL)
    for p, w in zip(b, rb.w):
        np.testing.assert_allclose(p.data, w, **SGD_TOL)


@pytest.mark.parametrize("cls", [fo.SGD, fo.AdamW, fo.FLAMBe])
def test_large_tensors_take_the_threaded_path(cls):
    """Tensors above the engine's parallel threshold (2^17 floats) give the reference result."""
    rng = np.random.default_rng(10)
    params, fgs = make_group(rng, m=600, n=400, r=8, extra=((300, 500), (17,)))
    kw = dict(lr=0.01, weight_decay=0.01)
    if cls is fo.SGD:
        kw.update(momentum=0.9, nesterov=True, decay="frobenius")
        ref = RefSGD(RefModel(params, fgs), **kw)
    elif cls is fo.AdamW:
        kw.update(decay="frobenius")
        ref = RefAdamW(RefModel(params, fgs), **kw)
    else:
        ref = RefLAMB(RefModel(params, fgs), lr=0.01, eps=1e-6, weight_decay=0.01, decay="frobenius")
        kw.update(eps=1e-6)
    opt = cls([{"params": params, "factor_groups": fgs}], **kw)
    run(opt, ref, params, rng, steps=2)
    assert_params(params, ref, ADAM_TOL)


def test_step_updates_in_place_and_keeps_references():
    rng = np.random.default_rng(11)
    params, fgs = make_group(rng)
    ids = [id(p.data) for p in params]
    views = [p.data for p in params]
    before = [v.copy() for v in views]
    set_grads(rng, params)
    fo.AdamW(params, lr=0.1).step()
    assert [id(p.data) for p in params] == ids
    assert all(not np.array_equal(v, b) for v, b in zip(views, before))


def test_zero_grad_and_repr():
    rng = np.random.default_rng(12)
    params, fgs = make_group(rng)
    set_grads(rng, params)
    opt = fo.FLAMBe([{"params": params, "factor_groups": fgs}])
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)
    text = repr(opt)
    assert "FLAMBe" in text and "1 factor groups" in text and "frobenius" in text
