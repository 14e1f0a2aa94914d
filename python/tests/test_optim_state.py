"""fnl.optim state dicts and learning-rate schedules."""
import math

import numpy as np
import pytest

import fnl.optim as fo
from fnl.nn.parameter import FactorGroup, Parameter


def group(seed=0, depth=1):
    rng = np.random.default_rng(seed)
    U, V = Parameter(rng.standard_normal((6, 3)), "U"), Parameter(rng.standard_normal((5, 3)), "V")
    mids = [Parameter(rng.standard_normal((3, 3)), f"M{j}") for j in range(depth)]
    b = Parameter(rng.standard_normal(4), "b")
    return [U, V, *mids, b], [FactorGroup(U, V, mids)]


def clone(params, fgs):
    new = [Parameter(p.data, p.name) for p in params]
    idx = {id(p): i for i, p in enumerate(params)}
    nfg = [FactorGroup(new[idx[id(f.U)]], new[idx[id(f.V)]], [new[idx[id(m)]] for m in f.middle]) for f in fgs]
    return new, nfg


def grads(rng, *param_lists):
    g = [rng.standard_normal(p.shape) for p in param_lists[0]]
    for ps in param_lists:
        for p, x in zip(ps, g):
            p.grad[...] = x


MAKERS = {
    "sgd": lambda ps, fg: fo.SGD([{"params": ps, "factor_groups": fg}], lr=0.05, momentum=0.9, nesterov=True,
                                 weight_decay=0.1, decay="frobenius"),
    "adamw": lambda ps, fg: fo.AdamW([{"params": ps, "factor_groups": fg}], lr=0.01, weight_decay=0.1, decay="crs"),
    "flambe": lambda ps, fg: fo.FLAMBe([{"params": ps, "factor_groups": fg}], lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_round_trip_continues_identically(kind):
    rng = np.random.default_rng(1)
    params, fgs = group()
    opt = MAKERS[kind](params, fgs)
    for _ in range(3):
        grads(rng, params)
        opt.step()
    state = opt.state_dict()
    assert state["param_groups.0.step"] == 3
    assert all(isinstance(v, (int, float, str, bool, np.ndarray)) for v in state.values())
    buffers = [k for k in state if k.startswith("state.")]
    assert len(buffers) == len(params) * len(opt.buffers)
    # a fresh optimizer over copies of the parameters, restored from the state dict
    params2, fgs2 = clone(params, fgs)
    opt2 = MAKERS[kind](params2, fgs2)
    opt2.param_groups[0]["lr"] = 123.0          # overwritten by the load
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt2.steps == [3]
    for _ in range(2):
        grads(rng, params, params2)
        opt.step()
        opt2.step()
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)
    # the state dict holds copies: later steps do not change it
    s2 = opt.state_dict()
    assert not all(np.array_equal(state[k], s2[k]) for k in buffers)


def test_load_state_dict_copies_into_existing_buffers():
    rng = np.random.default_rng(2)
    params, fgs = group()
    opt = MAKERS["sgd"](params, fgs)
    grads(rng, params)
    opt.step()
    held = opt.state[0]["momentum_buffer"][0]
    state = opt.state_dict()
    state["state.0.0.momentum_buffer"] = np.full_like(held, 7.0)
    opt.load_state_dict(state)
    assert opt.state[0]["momentum_buffer"][0] is held
    assert np.all(held == 7.0)


def test_load_state_dict_validates_before_changing_anything():
    rng = np.random.default_rng(3)
    params, fgs = group()
    opt = MAKERS["adamw"](params, fgs)
    grads(rng, params)
    opt.step()
    good = opt.state_dict()
    cases = [
        ({"state.0.0.exp_avg": np.zeros((2, 2))}, ValueError, r"state.0.0.exp_avg has shape \(2, 2\), its parameter \(6, 3\)"),
        ({"param_groups.0.decay": "weight"}, ValueError, "saved with decay='weight'"),
        ({"param_groups.0.lr": -1.0}, ValueError, "lr"),
        ({"param_groups.0.step": -1}, ValueError, "step must be an int >= 0"),
        ({"param_groups.0.bogus": 1.0}, ValueError, "unknown hyperparameter"),
        ({"state.9.0.exp_avg": np.zeros(3)}, ValueError, "unexpected keys"),
        ({"state.0.1.exp_avg": np.full((5, 3), np.nan)}, ValueError, "NaN"),
    ]
    for change, exc, msg in cases:
        bad = dict(good)
        bad.update(change)
        before = opt.state_dict()
        with pytest.raises(exc, match=msg):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        for k, v in before.items():
            assert np.array_equal(after[k], v) if isinstance(v, np.ndarray) else after[k] == v
    missing = dict(good)
    del missing["state.0.2.exp_avg_sq"]
    with pytest.raises(ValueError, match="'state.0.2.exp_avg_sq' is missing"):
        opt.load_state_dict(missing)
    del missing["param_groups.0.step"]
    with pytest.raises(ValueError, match="missing key 'param_groups.0.step'"):
        opt.load_state_dict(missing)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({})
    with pytest.raises(TypeError):
        opt.load_state_dict([1, 2])


def test_state_dict_round_trips_tuples_and_trajectories():
    params, fgs = group()
    opt = fo.SGD([{"params": params, "factor_groups": fgs, "decay": "norm_matching",
                   "norm_trajectory": [[1.0], [2.0], [3.0]]}], lr=0.1)
    state = opt.state_dict()
    assert state["param_groups.0.norm_trajectory"].shape == (3, 1)
    assert "state.0.0.momentum_buffer" not in state      # no momentum: no buffer
    opt.load_state_dict(state)
    adam = fo.AdamW(params, betas=(0.8, 0.9))
    s = adam.state_dict()
    adam.param_groups[0]["betas"] = (0.5, 0.5)
    adam.load_state_dict(s)
    assert adam.param_groups[0]["betas"] == (0.8, 0.9)


# ---- schedules ---------------------------------------------------------------------------

def opt_with_two_groups():
    params, fgs = group()
    return fo.SGD([{"params": params[:3], "factor_groups": fgs, "lr": 0.1},
                   {"params": params[3:], "lr": 0.02}], momentum=0.9)


def lrs(schedule, steps):
    out = [schedule.get_last_lr()]
    for _ in range(steps):
        schedule.step()
        out.append(schedule.get_last_lr())
    return np.array(out)


def test_multistep():
    opt = opt_with_two_groups()
    got = lrs(fo.MultiStepLR(opt, milestones=[2, 4], gamma=0.1), 5)
    want = np.array([[0.1, 0.02]] * 2 + [[0.01, 0.002]] * 2 + [[0.001, 0.0002]] * 2)
    np.testing.assert_allclose(got, want)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_cosine():
    opt = opt_with_two_groups()
    got = lrs(fo.CosineLR(opt, total_steps=4, min_lr=0.001), 6)
    for t in range(7):
        x = min(t, 4) / 4
        for g, base in enumerate([0.1, 0.02]):
            assert got[t, g] == pytest.approx(0.001 + (base - 0.001) * 0.5 * (1 + math.cos(math.pi * x)))
    assert got[4, 0] == pytest.approx(0.001) and got[6, 1] == pytest.approx(0.001)


def test_linear_warmup_alone_and_composed():
    opt = opt_with_two_groups()
    got = lrs(fo.LinearWarmup(opt, warmup_steps=4, start_factor=0.2), 5)
    np.testing.assert_allclose(got[:, 0], [0.02, 0.04, 0.06, 0.08, 0.1, 0.1])
    opt = opt_with_two_groups()
    cos = fo.CosineLR(opt, total_steps=10)
    warm = fo.LinearWarmup(opt, warmup_steps=2, start_factor=0.5, then=cos)
    got = lrs(warm, 10)
    for t in range(11):
        w = 0.5 + 0.5 * min(t, 2) / 2
        assert got[t, 1] == pytest.approx(w * 0.02 * 0.5 * (1 + math.cos(math.pi * t / 10)))
    assert cos.t == 10
    opt = opt_with_two_groups()
    ms = fo.MultiStepLR(opt, [3])
    got = lrs(fo.LinearWarmup(opt, 2, then=ms), 4)
    np.testing.assert_allclose(got[:, 0], [0.01, 0.055, 0.1, 0.01, 0.01])


def test_schedule_drives_the_optimizer_steps():
    rng = np.random.default_rng(4)
    p = Parameter(np.ones(3))
    opt = fo.SGD([p], lr=1.0)
    sched = fo.MultiStepLR(opt, milestones=[1], gamma=0.5)
    for expected in (1.0, 0.5, 0.5):
        p.grad[...] = 1.0
        before = p.data.copy()
        opt.step()
        np.testing.assert_allclose(before - p.data, expected)
        sched.step()
    del rng


def test_schedule_state_dict_and_errors():
    opt = opt_with_two_groups()
    s = fo.CosineLR(opt, total_steps=10)
    for _ in range(3):
        s.step()
    state = s.state_dict()
    opt2 = opt_with_two_groups()
    s2 = fo.CosineLR(opt2, total_steps=10)
    s2.load_state_dict(state)
    assert s2.get_last_lr() == s.get_last_lr()
    with pytest.raises(ValueError, match="expected"):
        s2.load_state_dict({"t": -1})
    with pytest.raises(ValueError, match="milestones must be increasing"):
        fo.MultiStepLR(opt, [5, 2])
    with pytest.raises(ValueError, match="milestones must be ints >= 1"):
        fo.MultiStepLR(opt, [0.5])
    with pytest.raises(ValueError, match="total_steps"):
        fo.CosineLR(opt, 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        fo.LinearWarmup(opt, 0)
    with pytest.raises(ValueError, match="start_factor"):
        fo.LinearWarmup(opt, 3, start_factor=1.5)
    with pytest.raises(ValueError, match="same optimizer"):
        fo.LinearWarmup(opt_with_two_groups(), 3, then=s)
    with pytest.raises(TypeError, match="optimizer"):
        fo.CosineLR(object(), 3)
    with pytest.raises(ValueError, match="gamma"):
        fo.MultiStepLR(opt, [1], gamma=-1)
