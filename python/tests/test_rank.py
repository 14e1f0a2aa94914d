"""fnl.rank: rank rules, parameter counts and the rank-scale for a target ratio."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import fnl
import references as ref

SCALES = [1e-6, 0.01, 0.1, 0.125, 0.25, 1 / 3, 0.5, 0.75, 1.0, 1.5, 2.0, 7.3]
LINEAR = [(1, 1), (1, 100), (100, 1), (5, 5), (10, 5), (64, 64), (768, 3072), (7, 13)]
CONV = [(1, 1, 1, 1), (64, 3, 7, 7), (64, 64, 3, 3), (128, 64, 1, 1), (5, 7, 3, 5), (16, 16, 5, 1)]


@pytest.mark.parametrize("m,n", LINEAR)
@pytest.mark.parametrize("s", SCALES)
def test_linear_rank(m, n, s):
    r = fnl.linear_rank(m, n, s)
    assert isinstance(r, int)
    assert r == ref.linear_rank(m, n, s)
    assert r >= 1


@pytest.mark.parametrize("shape", CONV)
@pytest.mark.parametrize("s", SCALES)
def test_conv_rank(shape, s):
    r = fnl.conv_rank(*shape, s)
    assert isinstance(r, int)
    assert r == ref.conv_rank(*shape, s)


def test_rank_rule_examples():
    assert fnl.linear_rank(768, 3072, 0.25) == 192
    assert fnl.linear_rank(10, 5, 0.5) == 2          # round(2.5) = 2: Python rounds ties to even
    assert fnl.linear_rank(10, 7, 0.5) == 4          # round(3.5) = 4
    assert fnl.linear_rank(1000, 1000, 1e-9) == 1    # max(1, .)
    assert fnl.linear_rank(4, 6, 2.0) == 8           # overcomplete above min(m, n)
    assert fnl.conv_rank(64, 3, 7, 7, 0.1) == 45     # round(0.1 * 64 * 7) = round(44.8)
    assert fnl.conv_rank(8, 100, 3, 3, 0.5) == 12    # uses c_out * kh, not c_in


@pytest.mark.parametrize("shape", LINEAR + CONV)
def test_rank_for_dispatches(shape):
    for s in (0.1, 0.5, 1.0):
        assert fnl.rank_for(shape, s) == ref.rank_for(shape, s)
        assert fnl.rank_for(list(shape), s) == ref.rank_for(shape, s)
        assert fnl.rank_for(np.array(shape), s) == ref.rank_for(shape, s)


@pytest.mark.parametrize("shape", LINEAR + CONV)
def test_parameter_counts(shape):
    assert fnl.dense_params(shape) == ref.dense_params(shape)
    for r, d in itertools.product([1, 3, 17], [0, 1, 3]):
        assert fnl.factorized_params(shape, r, d) == ref.factorized_params(shape, r, d)
    assert fnl.factorized_params(shape, 2) == ref.factorized_params(shape, 2, 0)


def test_parameter_counts_examples():
    assert fnl.dense_params((768, 3072)) == 768 * 3072
    assert fnl.factorized_params((768, 3072), 192) == 192 * (768 + 3072)
    assert fnl.dense_params((64, 3, 7, 7)) == 64 * 3 * 49
    assert fnl.factorized_params((64, 3, 7, 7), 10) == 10 * (64 * 7 + 3 * 7)
    assert fnl.factorized_params((10, 20), 4, depth=2) == 4 * 30 + 2 * 16


def test_numpy_integer_dimensions_are_accepted():
    K = np.zeros((8, 4, 3, 3))
    assert fnl.rank_for(K.shape, 0.5) == 12
    dims = np.array([8, 4, 3, 3])
    assert fnl.conv_rank(*dims, 0.5) == 12
    assert fnl.linear_rank(np.int32(10), np.int64(6), np.float32(0.5)) == 3
    assert fnl.factorized_params((np.int64(4), np.int64(5)), np.int64(2), np.int64(1)) == 2 * 9 + 4


@pytest.mark.parametrize("s", [0.05, 0.3, 1.0, 2.5])
def test_parameter_ratio(s):
    shapes = [(64, 64), (128, 64, 3, 3), (10, 1000)]
    assert fnl.parameter_ratio(shapes, s) == pytest.approx(ref.parameter_ratio(shapes, s), rel=1e-15)


NETWORKS = [
    [(64, 64)],
    [(512, 512), (512, 2048), (2048, 512)],
    [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3), (10, 256)],
    [(7, 13), (1, 50), (33, 2, 5, 5)],
]


@pytest.mark.parametrize("shapes", NETWORKS)
@pytest.mark.parametrize("target", [0.05, 0.1, 0.25, 0.5, 0.9, 1.5])
def test_rank_scale_for_ratio(shapes, target):
    rank1 = ref.parameter_ratio(shapes, 1e-12)
    if rank1 > target:
        with pytest.raises(ValueError, match=r"^\[fnl\.rank_scale_for_ratio\] target_ratio"):
            fnl.rank_scale_for_ratio(shapes, target)
        return
    s = fnl.rank_scale_for_ratio(shapes, target)
    assert isinstance(s, float) and s > 0
    assert ref.parameter_ratio(shapes, s) <= target
    # The largest such scale: a slightly larger one exceeds the target (bisection tolerance
    # is 1e-6 * max(1, s)).
    assert ref.parameter_ratio(shapes, s + 2e-6 * max(1.0, s)) > target


def test_rank_scale_for_ratio_tolerance_option():
    shapes = NETWORKS[2]
    s = fnl.rank_scale_for_ratio(shapes, 0.3, tol=1e-3)
    assert ref.parameter_ratio(shapes, s) <= 0.3
    assert ref.parameter_ratio(shapes, s + 2e-3 * max(1.0, s)) > 0.3


def test_rank_scale_for_ratio_accepts_generators():
    s = fnl.rank_scale_for_ratio((sh for sh in NETWORKS[1]), 0.5)
    assert ref.parameter_ratio(NETWORKS[1], s) <= 0.5


# ----------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("call", [
    lambda: fnl.linear_rank(0, 5, 0.5),
    lambda: fnl.linear_rank(5, -1, 0.5),
    lambda: fnl.conv_rank(4, 4, 0, 3, 0.5),
    lambda: fnl.linear_rank(5, 5, 0.0),
    lambda: fnl.linear_rank(5, 5, -0.5),
    lambda: fnl.linear_rank(5, 5, float("nan")),
    lambda: fnl.linear_rank(5, 5, float("inf")),
    lambda: fnl.rank_for((5, 5, 5), 0.5),
    lambda: fnl.rank_for((), 0.5),
    lambda: fnl.dense_params((5,)),
    lambda: fnl.factorized_params((5, 5), 0),
    lambda: fnl.factorized_params((5, 5), 2, depth=-1),
    lambda: fnl.parameter_ratio([], 0.5),
    lambda: fnl.parameter_ratio([(5, 5)], 0),
    lambda: fnl.rank_scale_for_ratio([], 0.5),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], 0),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], -1),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], float("nan")),
    lambda: fnl.rank_scale_for_ratio([(5, 5, 1)], 0.5),
    lambda: fnl.rank_scale_for_ratio([(5, 0)], 0.5),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], 0.5, tol=0),
])
def test_bad_values_raise_value_error(call):
    with pytest.raises(ValueError, match=r"^\[fnl\.\w+\] "):
        call()


@pytest.mark.parametrize("call", [
    lambda: fnl.linear_rank(5.0, 5, 0.5),
    lambda: fnl.linear_rank("5", 5, 0.5),
    lambda: fnl.linear_rank(True, 5, 0.5),
    lambda: fnl.linear_rank(5, None, 0.5),
    lambda: fnl.linear_rank(5, 5, "0.5"),
    lambda: fnl.linear_rank(5, 5, None),
    lambda: fnl.linear_rank(5, 5, True),
    lambda: fnl.linear_rank(5, 5, 1j),
    lambda: fnl.conv_rank(4, 4, 3.5, 3, 0.5),
    lambda: fnl.rank_for(5, 0.5),
    lambda: fnl.rank_for(None, 0.5),
    lambda: fnl.dense_params((5.5, 2)),
    lambda: fnl.factorized_params((5, 5), 2.0),
    lambda: fnl.factorized_params((5, 5), 2, depth=1.0),
    lambda: fnl.parameter_ratio(None, 0.5),
    lambda: fnl.parameter_ratio([5, 5], 0.5),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], "0.5"),
    lambda: fnl.rank_scale_for_ratio([(5, 5)], None),
    lambda: fnl.rank_scale_for_ratio(5, 0.5),
])
def test_bad_types_raise_type_error(call):
    with pytest.raises(TypeError, match=r"^\[fnl\.\w+\] "):
        call()


def test_messages_name_the_argument():
    with pytest.raises(ValueError, match=r"^\[fnl\.linear_rank\] n must be an int >= 1, got -1"):
        fnl.linear_rank(5, -1, 0.5)
    with pytest.raises(ValueError, match=r"^\[fnl\.conv_rank\] rank_scale must be a finite number > 0"):
        fnl.conv_rank(1, 1, 1, 1, -2)
    with pytest.raises(TypeError, match=r"^\[fnl\.rank_scale_for_ratio\] target_ratio must be a real number"):
        fnl.rank_scale_for_ratio([(5, 5)], "x")
