"""fnl.optim: one test per class of bad input; a failed step changes nothing."""
import numpy as np
import pytest

import fnl
import fnl.optim as fo
from fnl import _native
from fnl.nn.parameter import FactorGroup, Parameter


def group(seed=0):
    rng = np.random.default_rng(seed)
    U, V, b = Parameter(rng.standard_normal((5, 2)), "U"), Parameter(rng.standard_normal((4, 2)), "V"), \
        Parameter(rng.standard_normal(3), "b")
    for p in (U, V, b):
        p.grad[...] = rng.standard_normal(p.shape)
    return [U, V, b], [FactorGroup(U, V)]


ALL = [fo.SGD, fo.AdamW, fo.LAMB, fo.FLAMBe]


@pytest.mark.parametrize("cls", ALL)
def test_wrong_dtype_parameter_buffer_raises_type_error(cls):
    params, fgs = group()
    with pytest.raises(TypeError, match=r"float32"):
        params[2].data = params[2].data.astype(np.float64)
        cls(params)
    params, fgs = group()
    opt = cls([{"params": params, "factor_groups": fgs}], lr=0.1)
    params[2].data = params[2].data.astype(np.float64)      # swapped after construction
    with pytest.raises(TypeError, match=r"params\[2\] is updated in place and must be native float32.*'b'"):
        opt.step()


def _non_contiguous(p):
    p.data = np.zeros((5, 4), np.float32)[:, ::2]


def _read_only(p):
    p.data.flags.writeable = False


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("index, spoil, match", [
    (0, _non_contiguous, r"params\[0\].*C-contiguous.*'U'"),
    (1, _read_only, r"params\[1\].*writeable"),
], ids=["non_contiguous", "read_only"])
def test_unusable_parameter_buffer_raises(cls, index, spoil, match):
    params, _ = group()
    opt = cls(params, lr=0.1)
    spoil(params[index])
    with pytest.raises(ValueError, match=match):
        opt.step()


def test_bad_gradient_buffers_raise():
    params, _ = group()
    opt = fo.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"grads\[0\] must have the shape of its parameter \(5, 2\), got \(2, 5\)"):
        opt.step()
    params[0].grad = np.zeros((5, 2), np.float64)
    with pytest.raises(TypeError, match=r"grads\[0\].*float32"):
        opt.step()
    params[0].grad = np.zeros((2, 5), np.float32).T
    with pytest.raises(ValueError, match=r"grads\[0\].*C-contiguous"):
        opt.step()
    params[0].grad = params[0].data        # aliasing the parameter itself
    with pytest.raises(ValueError, match=r"overlaps params\[0\]"):
        opt.step()


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_raises_and_changes_nothing(cls, bad):
    params, fgs = group()
    opt = cls([{"params": params, "factor_groups": fgs}], lr=0.1)
    opt.step()
    before = [p.data.copy() for p in params]
    state = opt.state_dict()
    params[1].grad[2, 1] = bad
    with pytest.raises(ValueError, match=r"grads\[1\] contains NaN or inf \(first at flat index 5.*'V'"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)
    after = opt.state_dict()
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v)
    assert opt.steps == [1]
    # check_finite=False skips the scan (the update then propagates NaN, as in PyTorch)
    opt = cls(params, lr=0.1, check_finite=False)
    opt.step()
    assert not np.isfinite(params[1].data).all()


@pytest.mark.parametrize("cls", ALL)
def test_unknown_decay_policy(cls):
    params, _ = group()
    with pytest.raises(ValueError, match=r"decay must be one of 'weight', 'frobenius', 'crs', 'none', "
                                         r"'norm_matching', got 'l1'"):
        cls(params, decay="l1")


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_bad_learning_rate(cls, lr):
    params, _ = group()
    with pytest.raises(ValueError, match=r"lr \(group 0\) must be a finite number >= 0"):
        cls(params, lr=lr)
    opt = cls(params, lr=0.1)
    opt.param_groups[0]["lr"] = lr          # e.g. a broken schedule
    before = params[0].data.copy()
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    np.testing.assert_array_equal(params[0].data, before)
    with pytest.raises(TypeError, match="lr"):
        cls(params, lr="0.1")


@pytest.mark.parametrize("cls", ALL)
def test_hyperparameters_changed_between_steps_are_validated_again(cls):
    """step() skips re-validating unchanged hyperparameters; any change (a value, its type,
    or an unhashable value) is validated before the engine runs."""
    params, fgs = group()
    opt = cls([{"params": params, "factor_groups": fgs}], lr=1.0)
    opt.step()
    g = opt.param_groups[0]
    before = [p.data.copy() for p in params]
    g["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    g["lr"] = True                              # == 1.0, but a bool is not a learning rate
    with pytest.raises(TypeError, match="lr"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)
    g["lr"] = 1.0
    opt.step()
    if cls is fo.SGD:
        g["nesterov"] = True                    # momentum is 0
        with pytest.raises(ValueError, match="nesterov"):
            opt.step()
    else:
        g["betas"] = [0.9, 1.5]                 # unhashable: validated on every step
        with pytest.raises(ValueError, match="beta"):
            opt.step()
        g["betas"] = (0.9, True)
        with pytest.raises(TypeError, match="beta"):
            opt.step()


def test_bad_hyperparameters():
    params, _ = group()
    with pytest.raises(ValueError, match="nesterov momentum requires momentum > 0"):
        fo.SGD(params, nesterov=True)
    with pytest.raises(ValueError, match="dampening = 0"):
        fo.SGD(params, momentum=0.9, nesterov=True, dampening=0.1)
    with pytest.raises(ValueError, match=r"dampening \(group 0\) must be a finite number in \[0, 1\]"):
        fo.SGD(params, momentum=0.9, dampening=2)
    with pytest.raises(ValueError, match="momentum"):
        fo.SGD(params, momentum=-0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        fo.SGD(params, weight_decay=-1e-4)
    with pytest.raises(ValueError, match=r"beta1 \(group 0\) must be a finite number in \[0, 1\)"):
        fo.AdamW(params, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="beta2"):
        fo.LAMB(params, betas=(0.9, -0.1))
    with pytest.raises(TypeError, match="betas must be a pair"):
        fo.AdamW(params, betas=0.9)
    with pytest.raises(ValueError, match=r"eps \(group 0\) must be a finite number > 0"):
        fo.FLAMBe(params, eps=0.0)


def test_bad_parameter_groups():
    params, fgs = group()
    with pytest.raises(TypeError, match="expected a model"):
        fo.SGD([])
    with pytest.raises(TypeError, match="expected a model"):
        fo.SGD(np.zeros(3))
    with pytest.raises(ValueError, match="'params' key"):
        fo.SGD([{"lr": 0.1}])
    with pytest.raises(ValueError, match="more than once"):
        fo.SGD([params[0], params[0]])
    with pytest.raises(ValueError, match="more than one parameter group"):
        fo.SGD([{"params": params[:2]}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="its V is not among the group's params"):
        fo.SGD([{"params": [params[0], params[2]], "factor_groups": fgs}])
    with pytest.raises(ValueError, match="belongs to two factor groups"):
        fo.SGD([{"params": params, "factor_groups": [fgs[0], FactorGroup(params[0], params[1])]}])
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['momentun'\]"):
        fo.SGD([{"params": params, "momentun": 0.9}])
    with pytest.raises(TypeError, match="must be a Parameter"):
        fo.SGD([{"params": [params[0], "x"]}])


def test_bad_factor_group_shapes():
    rng = np.random.default_rng(0)
    U, V = Parameter(rng.standard_normal((5, 2))), Parameter(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"factor group 0: V must have 2 columns, got shape \(4, 3\)"):
        fo.SGD([{"params": [U, V], "factor_groups": [FactorGroup(U, V)]}], decay="frobenius")
    M = Parameter(rng.standard_normal((3, 3)))
    with pytest.raises(ValueError, match=r"middle\[0\] must have 2 rows"):
        fo.SGD([{"params": [U, V, M], "factor_groups": [FactorGroup(U, V, [M])]}])
    W = Parameter(rng.standard_normal(5))
    V2 = Parameter(rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="U must be 2-D"):
        fo.SGD([{"params": [W, V2], "factor_groups": [FactorGroup(W, V2)]}])
    B = Parameter(rng.standard_normal((2, 4, 2)))
    with pytest.raises(ValueError, match="V must have the dimensions of U"):
        fo.SGD([{"params": [U, B], "factor_groups": [FactorGroup(U, B)]}])


def test_norm_matching_needs_a_valid_trajectory():
    params, fgs = group()
    with pytest.raises(ValueError, match="no norm_trajectory"):
        fo.SGD([{"params": params, "factor_groups": fgs}], decay="norm_matching")
    with pytest.raises(ValueError, match="no factor groups"):
        fo.SGD([{"params": params, "norm_trajectory": [[1.0]]}], decay="norm_matching")
    with pytest.raises(ValueError, match=r"must have shape \(steps, 1\)"):
        fo.SGD([{"params": params, "factor_groups": fgs, "norm_trajectory": np.ones((3, 2))}], decay="norm_matching")
    with pytest.raises(ValueError, match="finite norms >= 0"):
        fo.SGD([{"params": params, "factor_groups": fgs, "norm_trajectory": [1.0, -1.0]}], decay="norm_matching")


def test_non_finite_factor_with_frobenius_decay_raises():
    params, fgs = group()
    opt = fo.SGD([{"params": params, "factor_groups": fgs}], weight_decay=0.1, decay="frobenius")
    params[0].data[0, 0] = np.nan
    with pytest.raises(ValueError, match="factor product 0: U contains NaN"):
        opt.step()


def test_native_step_functions_validate_their_arguments():
    params, fgs = group()
    ps, gs = [p.data for p in params], [p.grad for p in params]
    decay = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match="expected 13 positional arguments"):
        _native.sgd_step(ps, gs)
    with pytest.raises(ValueError, match="momentum buffers are required"):
        _native.sgd_step(ps, gs, None, decay, None, None, None, 0.1, 0.9, 0.0, False, True, True)
    bufs = [np.zeros_like(p) for p in ps]
    bufs[1] = ps[1]
    with pytest.raises(ValueError, match=r"momentum_buffers\[1\] overlaps"):
        _native.sgd_step(ps, gs, bufs, decay, None, None, None, 0.1, 0.9, 0.0, False, True, True)
    with pytest.raises(ValueError, match="decay must hold one coefficient per parameter"):
        _native.sgd_step(ps, gs, None, np.zeros(2, np.float32), None, None, None, 0.1, 0.0, 0.0, False, True, True)
    with pytest.raises(ValueError, match="params must not be empty"):
        _native.sgd_step([], [], None, decay, None, None, None, 0.1, 0.0, 0.0, False, True, True)
    with pytest.raises(ValueError, match="grads must hold one array per parameter"):
        _native.sgd_step(ps, gs[:2], None, decay, None, None, None, 0.1, 0.0, 0.0, False, True, True)
    with pytest.raises(TypeError, match="chains must be a contiguous 1-D int64"):
        _native.sgd_step(ps, gs, None, decay, np.zeros(7), np.ones(1, np.float32), None, 0.1, 0.0, 0.0, False, True,
                         True)
    bad = np.array([0, 1, 5, 4, 2, 0, 7], np.int64)
    with pytest.raises(ValueError, match="factor product 0: tensor index 7 out of range"):
        _native.sgd_step(ps, gs, None, decay, bad, np.ones(1, np.float32), None, 0.1, 0.0, 0.0, False, True, True)
    rec = np.array([0, 1, 5, 4, 2, 0, 1], np.int64)
    with pytest.raises(ValueError, match="n_chains is 2"):
        _native.sgd_step(ps, gs, None, decay, rec, np.ones(2, np.float32), None, 0.1, 0.0, 0.0, False, True, True)
    with pytest.raises(ValueError, match="workspace must hold at least 18 floats"):
        _native.sgd_step(ps, gs, None, decay, rec, np.ones(1, np.float32), np.zeros(4, np.float32), 0.1, 0.0, 0.0,
                         False, True, True)
    with pytest.raises(ValueError, match="workspace overlaps"):
        _native.sgd_step(ps, gs, None, decay, rec, np.ones(1, np.float32), ps[0].reshape(-1), 0.1, 0.0, 0.0,
                         False, True, True)
    with pytest.raises(ValueError, match=r"\[fnl.optim.AdamW.step\] step must be in 1"):
        _native.adamw_step(ps, gs, bufs, bufs, decay, None, None, None, 0.1, 0.9, 0.99, 1e-8, 0, True)
    with pytest.raises(ValueError, match="targets must hold one norm per factor product"):
        _native.norm_match(ps, rec, 1, [1.0, 2.0])


def test_reference_leak_free_over_many_steps():
    """Thousands of steps (and failing steps) keep the reference counts of the buffers stable."""
    import sys
    params, fgs = group()
    opt = fo.FLAMBe([{"params": params, "factor_groups": fgs}], lr=1e-4)
    opt.step()
    counts = [sys.getrefcount(p.data) for p in params]
    for _ in range(2000):
        opt.step()
    params[0].grad[0, 0] = np.nan
    for _ in range(200):
        with pytest.raises(ValueError):
            opt.step()
    assert [sys.getrefcount(p.data) for p in params] == counts
