"""One test per class of bad input, for every function family of fnl.functional.

Every error must be TypeError (types, dtypes), ValueError (shapes, values, NaN/inf) or
MemoryError (absurd sizes), with a message that starts "[fnl.<function>] " and names the
argument. Buffers updated in place must be left untouched when a call fails.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import fnl


def expect(exc, fn: str, arg: str, call, match: str = "") -> str:
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert type(info.value) is exc or exc is Exception, f"{type(info.value).__name__}: {msg}"
    assert msg.startswith(f"[fnl.{fn}] "), msg
    assert arg in msg, f"argument {arg!r} not named in: {msg}"
    if match:
        assert re.search(match, msg), f"{match!r} not in: {msg}"
    return msg


def f32(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


# Each family: (public name, callable over named array arguments, good arrays, allowed ndims).
# The callable receives the arrays as keywords so that one can be replaced by a bad value.
FAMILIES = {
    "spectral_init": (lambda W: fnl.spectral_init(W, 2), {"W": (6, 5)}, {"W": (2,)}),
    "compress": (lambda W: fnl.compress(W, 2), {"W": (6, 5)}, {"W": (2,)}),
    "spectral_init_conv": (lambda K: fnl.spectral_init_conv(K, 2), {"K": (2, 3, 3, 3)}, {"K": (4,)}),
    "conv_to_matrix": (lambda K: fnl.conv_to_matrix(K), {"K": (2, 3, 3, 3)}, {"K": (4,)}),
    "matrix_to_conv": (lambda W: fnl.matrix_to_conv(W, 2, 3, 3, 3), {"W": (6, 9)}, {"W": (2,)}),
    "compose": (lambda U, V, M: fnl.compose(U, V, [M]), {"U": (6, 3), "V": (5, 2), "M": (3, 2)},
                {"U": (2, 3), "V": (2,), "M": (2,)}),
    "frobenius_penalty": (lambda U, V, M: fnl.frobenius_penalty(U, V, 0.1, [M]),
                          {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2,), "M": (2,)}),
    "frobenius_decay_grad": (lambda U, V, M: fnl.frobenius_decay_grad(U, V, 0.1, [M]),
                             {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2,), "M": (2,)}),
    "frobenius_norm": (lambda U, V, M: fnl.frobenius_norm(U, V, [M]),
                       {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2,), "M": (2,)}),
    "nuclear_norm": (lambda U, V, M: fnl.nuclear_norm(U, V, [M]),
                     {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2,), "M": (2,)}),
    "factor_balance": (lambda U, V: fnl.factor_balance(U, V), {"U": (6, 3), "V": (5, 3)}, {"U": (2, 3), "V": (2,)}),
    "effective_step_size": (lambda U, V, M: fnl.effective_step_size(0.1, U, V, [M]),
                            {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2,), "M": (2,)}),
    "weight_decay_penalty": (lambda U, V, M: fnl.weight_decay_penalty(U, V, 0.1, [M]),
                             {"U": (6, 3), "V": (5, 2), "M": (3, 2)}, {"U": (2, 3), "V": (2, 3), "M": (2, 3)}),
}
MSG_NAME = {"M": "middle[0]"}
ARRAY_ARGS = [(fam, arg) for fam, (_, arrays, _) in FAMILIES.items() for arg in arrays]


def good_arrays(fam):
    return {k: f32(*shape) for k, shape in FAMILIES[fam][1].items()}


def call_with(fam, **replace):
    fn, _, _ = FAMILIES[fam]
    arrays = good_arrays(fam)
    arrays.update(replace)
    return lambda: fn(**arrays)


def ids(p):
    return f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p)


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_good_calls_succeed(fam):
    call_with(fam)()


# ------------------------------------------------------------------------- dtype


BAD_DTYPES = {
    "complex": lambda a: a.astype(np.complex64),
    "bool": lambda a: a > 0,
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "bytes": lambda a: a.astype("S8"),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
    "structured": lambda a: np.zeros(a.shape, [("x", "f4"), ("y", "f4")]),
}


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
@pytest.mark.parametrize("kind", list(BAD_DTYPES))
def test_wrong_dtype_is_type_error(fam, arg, kind):
    bad = BAD_DTYPES[kind](good_arrays(fam)[arg])
    expect(TypeError, fam, MSG_NAME.get(arg, arg), call_with(fam, **{arg: bad}))


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
@pytest.mark.parametrize("bad", ["a string", None, object(), {"a": 1}, 1j],
                         ids=["str", "None", "object", "dict", "complex"])
def test_non_array_is_type_error(fam, arg, bad):
    expect(TypeError, fam, MSG_NAME.get(arg, arg), call_with(fam, **{arg: bad}))


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
def test_integer_and_float64_arrays_are_converted(fam, arg):
    a = good_arrays(fam)[arg]
    call_with(fam, **{arg: (a * 10).astype(np.int32)})()
    call_with(fam, **{arg: a.astype(np.float64)})()
    call_with(fam, **{arg: a.tolist()})()


# ------------------------------------------------------------------ ndim and shape


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
def test_wrong_ndim_is_value_error(fam, arg):
    allowed = FAMILIES[fam][2][arg]
    a = good_arrays(fam)[arg]
    for nd in range(0, 6):
        if nd in allowed:
            continue
        shape = (a.shape + (1,) * 6)[:nd] if nd > a.ndim else a.shape[:nd]
        bad = np.ones(shape, np.float32) if nd else np.float32(1.0)
        expect(ValueError, fam, MSG_NAME.get(arg, arg), call_with(fam, **{arg: bad}), match="dimension")


def test_ragged_nested_lists_are_type_error():
    expect(TypeError, "compose", "U", lambda: fnl.compose([[1, 2], [3]], np.ones((2, 2))))
    expect(TypeError, "spectral_init", "W", lambda: fnl.spectral_init([[1, 2], [3]], 1))


@pytest.mark.parametrize("fam", ["compose", "frobenius_penalty", "frobenius_decay_grad", "frobenius_norm",
                                 "nuclear_norm", "effective_step_size"])
def test_chain_shape_mismatch_is_value_error(fam):
    expect(ValueError, fam, "V", call_with(fam, V=f32(5, 3)), match=r"V must have 2 columns")
    expect(ValueError, fam, "middle[0]", call_with(fam, M=f32(4, 2)), match=r"must have 3 rows")
    # Batched U with unbatched V, and batch sizes that differ.
    expect(ValueError, fam, "V", call_with(fam, U=f32(2, 6, 3)))
    expect(ValueError, fam, "batch", call_with(fam, U=f32(2, 6, 3), V=f32(3, 5, 2), M=f32(2, 3, 2)))
    expect(ValueError, fam, "middle[0]", call_with(fam, U=f32(2, 6, 3), V=f32(2, 5, 2), M=f32(3, 3, 2)))


def test_factor_balance_shape_mismatch():
    expect(ValueError, "factor_balance", "V", lambda: fnl.factor_balance(f32(6, 3), f32(5, 2)))


def test_matrix_to_conv_shape_mismatch():
    expect(ValueError, "matrix_to_conv", "W", lambda: fnl.matrix_to_conv(f32(6, 9), 3, 3, 3, 3), match=r"\(9, 9\)")


@pytest.mark.parametrize("fam", ["compose", "frobenius_penalty", "frobenius_decay_grad", "frobenius_norm",
                                 "nuclear_norm", "effective_step_size", "weight_decay_penalty"])
@pytest.mark.parametrize("middle", [np.eye(3), "abc", 5, {"a": np.eye(3)}], ids=["ndarray", "str", "int", "dict"])
def test_middle_must_be_a_list(fam, middle):
    fn = {"compose": lambda: fnl.compose(f32(6, 3), f32(5, 3), middle),
          "frobenius_penalty": lambda: fnl.frobenius_penalty(f32(6, 3), f32(5, 3), 0.1, middle),
          "frobenius_decay_grad": lambda: fnl.frobenius_decay_grad(f32(6, 3), f32(5, 3), 0.1, middle),
          "frobenius_norm": lambda: fnl.frobenius_norm(f32(6, 3), f32(5, 3), middle),
          "nuclear_norm": lambda: fnl.nuclear_norm(f32(6, 3), f32(5, 3), middle),
          "effective_step_size": lambda: fnl.effective_step_size(0.1, f32(6, 3), f32(5, 3), middle),
          "weight_decay_penalty": lambda: fnl.weight_decay_penalty(f32(6, 3), f32(5, 3), 0.1, middle)}[fam]
    expect(TypeError, fam, "middle", fn)


def test_too_many_middle_matrices():
    mids = [np.eye(1, dtype=np.float32)] * 65
    expect(ValueError, "compose", "middle", lambda: fnl.compose(f32(3, 1), f32(2, 1), mids), match="at most 64")
    fnl.compose(f32(3, 1), f32(2, 1), mids[:64])


# ------------------------------------------------------------------------- NaN/inf


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_inf_is_value_error_naming_the_argument(fam, arg, value):
    a = good_arrays(fam)[arg].copy()
    a.flat[a.size // 2] = value
    expect(ValueError, fam, MSG_NAME.get(arg, arg), call_with(fam, **{arg: a}), match="NaN or inf")


def test_float64_overflowing_float32_is_value_error():
    """1e300 becomes inf in the float32 conversion and is reported, never computed with."""
    W = np.full((3, 3), 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"^\[fnl\.spectral_init\] W contains NaN or inf"):
            fnl.spectral_init(W, 1)


# --------------------------------------------------------------------------- empty


@pytest.mark.parametrize("fam,arg", ARRAY_ARGS, ids=ids)
def test_empty_arrays_are_value_error(fam, arg):
    a = good_arrays(fam)[arg]
    for axis in range(a.ndim):
        shape = list(a.shape)
        shape[axis] = 0
        expect(ValueError, fam, MSG_NAME.get(arg, arg), call_with(fam, **{arg: np.ones(shape, np.float32)}),
               match="empty|dimension|rows|columns|shape")


def test_empty_list_is_value_error():
    expect(ValueError, "spectral_init", "W", lambda: fnl.spectral_init([[]], 1), match="empty")
    expect(ValueError, "compose", "U", lambda: fnl.compose([], [[1.0]]))


# -------------------------------------------------------------------- absurd sizes


@pytest.mark.parametrize("rank", [2**40, 2**63 - 1, 2**64, 10**30, -1, 0])
def test_absurd_rank(rank):
    expect(ValueError, "spectral_init", "rank", lambda: fnl.spectral_init(f32(4, 3), rank))
    expect(ValueError, "compress", "rank", lambda: fnl.compress(f32(4, 3), rank))
    expect(ValueError, "spectral_init_conv", "rank", lambda: fnl.spectral_init_conv(f32(2, 2, 2, 2), rank))


def test_rank_too_large_to_allocate_is_memory_error():
    expect(MemoryError, "spectral_init", "U", lambda: fnl.spectral_init(f32(4, 3), 2**31 - 1))


def test_huge_output_is_memory_error():
    # Zero-stride views: a (2**20, 1) factor costs 4 MiB, its product 4 TiB.
    U = np.broadcast_to(np.float32(1), (2**20, 1))
    expect(MemoryError, "compose", "W", lambda: fnl.compose(U, U))


def test_huge_input_copy_is_memory_error():
    # Converting this zero-stride view to a contiguous float32 array needs 4 TiB.
    W = np.broadcast_to(np.float32(1), (2**20, 2**20))
    with pytest.raises(MemoryError, match=r"^\[fnl\.spectral_init\] .*W"):
        fnl.spectral_init(W, 1)


@pytest.mark.parametrize("dims", [(2**40, 1, 1, 1), (1, 2**63, 1, 1), (1, 1, -3, 1), (0, 1, 1, 1)])
def test_absurd_conv_dims(dims):
    expect(ValueError, "matrix_to_conv", "", lambda: fnl.matrix_to_conv(f32(2, 2), *dims))


def test_absurd_randomized_options():
    W = f32(20, 20)
    expect(ValueError, "spectral_init", "oversample", lambda: fnl.spectral_init(W, 2, "randomized", 0, oversample=2**40))
    expect(ValueError, "spectral_init", "oversample", lambda: fnl.spectral_init(W, 2, "randomized", 0, oversample=-1))
    expect(ValueError, "spectral_init", "power_iters", lambda: fnl.spectral_init(W, 2, "randomized", 0, power_iters=10**6))
    expect(ValueError, "spectral_init", "seed", lambda: fnl.spectral_init(W, 2, "randomized", seed=2**64))
    expect(ValueError, "spectral_init", "seed", lambda: fnl.spectral_init(W, 2, "randomized", seed=-1))


# ----------------------------------------------------------------- scalar types


@pytest.mark.parametrize("bad", [2.0, "2", None, True, [2], np.array([2, 3]), 2j], ids=repr)
def test_rank_wrong_type(bad):
    expect(TypeError, "spectral_init", "rank", lambda: fnl.spectral_init(f32(4, 3), bad))
    expect(TypeError, "compress", "rank", lambda: fnl.compress(f32(4, 3), bad))


def test_rank_numpy_integer_accepted():
    U, V = fnl.spectral_init(f32(4, 3), np.int64(2))
    assert U.shape == (4, 2)


@pytest.mark.parametrize("bad,exc", [(None, TypeError), (5, TypeError), ([], TypeError), ("svd", ValueError),
                                     ("Exact", ValueError)], ids=repr)
def test_method_bad(bad, exc):
    expect(exc, "spectral_init", "method", lambda: fnl.spectral_init(f32(4, 3), 2, bad))
    expect(exc, "compress", "method", lambda: fnl.compress(f32(4, 3), 2, bad))


@pytest.mark.parametrize("bad", [1.5, "1", True, [1]], ids=repr)
def test_seed_wrong_type(bad):
    expect(TypeError, "spectral_init", "seed", lambda: fnl.spectral_init(f32(4, 3), 2, "randomized", bad))


@pytest.mark.parametrize("name", ["oversample", "power_iters"])
@pytest.mark.parametrize("bad", [1.5, "1", None, True], ids=repr)
def test_randomized_options_wrong_type(name, bad):
    expect(TypeError, "spectral_init", name, lambda: fnl.spectral_init(f32(4, 3), 2, "randomized", 0, **{name: bad}))


LAM_FUNCS = {
    "frobenius_penalty": lambda lam: fnl.frobenius_penalty(f32(4, 2), f32(3, 2), lam),
    "frobenius_decay_grad": lambda lam: fnl.frobenius_decay_grad(f32(4, 2), f32(3, 2), lam),
    "weight_decay_penalty": lambda lam: fnl.weight_decay_penalty(f32(4, 2), f32(3, 2), lam),
    "crs_coefficient": lambda lam: fnl.crs_coefficient(lam, 10, 5),
    "effective_step_size": lambda lr: fnl.effective_step_size(lr, f32(4, 2), f32(3, 2)),
}
LAM_NAME = {"effective_step_size": "lr"}


@pytest.mark.parametrize("fam", list(LAM_FUNCS))
@pytest.mark.parametrize("bad", ["0.1", None, True, 1j, [0.1], np.array([1.0, 2.0]), object()], ids=repr)
def test_lam_wrong_type(fam, bad):
    expect(TypeError, fam, LAM_NAME.get(fam, "lam"), lambda: LAM_FUNCS[fam](bad))


@pytest.mark.parametrize("fam", list(LAM_FUNCS))
@pytest.mark.parametrize("bad", [-1.0, -1e-30, float("nan"), float("inf"), 10**400], ids=repr)
def test_lam_bad_value(fam, bad):
    expect(ValueError, fam, LAM_NAME.get(fam, "lam"), lambda: LAM_FUNCS[fam](bad))


@pytest.mark.parametrize("fam", list(LAM_FUNCS))
def test_lam_numpy_scalars_and_ints_accepted(fam):
    for lam in (np.float32(0.5), np.float64(0.5), 1, np.int64(2), 0):
        LAM_FUNCS[fam](lam)


@pytest.mark.parametrize("bad,exc", [("10", TypeError), (10.0, TypeError), (None, TypeError), (0, ValueError),
                                     (-5, ValueError)], ids=repr)
def test_crs_counts(bad, exc):
    expect(exc, "crs_coefficient", "dense_params", lambda: fnl.crs_coefficient(0.1, bad, 5))
    expect(exc, "crs_coefficient", "factorized_params", lambda: fnl.crs_coefficient(0.1, 10, bad))


@pytest.mark.parametrize("i,bad,exc", [(0, 2.0, TypeError), (1, "3", TypeError), (2, None, TypeError),
                                       (3, True, TypeError), (0, 0, ValueError), (3, -1, ValueError)])
def test_matrix_to_conv_dims_wrong(i, bad, exc):
    dims = [2, 3, 3, 3]
    dims[i] = bad
    name = ["c_out", "c_in", "kh", "kw"][i]
    expect(exc, "matrix_to_conv", name, lambda: fnl.matrix_to_conv(f32(6, 9), *dims))


# ---------------------------------------------------------------- add_to buffers


def grad_setup(depth=1, batch=None):
    lead = () if batch is None else (batch,)
    U, V = f32(*lead, 6, 3), f32(*lead, 5, 2)
    mids = [f32(*lead, 3, 2)] if depth else []
    if not depth:
        V = f32(*lead, 5, 3)
    bufs = [np.full(a.shape, 7.0, np.float32) for a in [U, V, *mids]]
    return U, V, mids, bufs


ADD_TO_NAMES = ["dU", "dV", "dmiddle[0]"]


def check_untouched(bufs):
    for b in bufs:
        if isinstance(b, np.ndarray) and b.dtype == np.float32:
            assert np.all(np.asarray(b) == 7.0), "a buffer was modified by a failing call"


def bad_buffer(kind, good):
    if kind == "float64":
        return good.astype(np.float64), TypeError
    if kind == "int32":
        return good.astype(np.int32), TypeError
    if kind == "byteswapped":
        return good.astype(good.dtype.newbyteorder()), TypeError
    if kind == "list":
        return good.tolist(), TypeError
    if kind == "None":
        return None, TypeError
    if kind == "noncontiguous":
        big = np.full(good.shape[:-1] + (2 * good.shape[-1],), 7.0, np.float32)
        return big[..., ::2], ValueError
    if kind == "fortran":
        a = np.asfortranarray(np.full(good.shape[:-2] + (good.shape[-2], good.shape[-1] + 1), 7.0, np.float32))
        return a[..., :-1], ValueError
    if kind == "readonly":
        a = good.copy()
        a.flags.writeable = False
        return a, ValueError
    if kind == "wrongshape":
        return np.full(good.shape[:-1] + (good.shape[-1] + 1,), 7.0, np.float32), ValueError
    if kind == "transposed":
        return np.full(good.shape[::-1], 7.0, np.float32), ValueError
    if kind == "flat":
        return np.full(good.size, 7.0, np.float32), ValueError
    raise AssertionError(kind)


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("kind", ["float64", "int32", "byteswapped", "list", "None", "noncontiguous", "fortran",
                                  "readonly", "wrongshape", "transposed", "flat"])
@pytest.mark.parametrize("batch", [None, 2])
def test_add_to_bad_buffer(position, kind, batch):
    U, V, mids, bufs = grad_setup(1, batch)
    bad, exc = bad_buffer(kind, bufs[position])
    if kind == "transposed" and bad.shape == bufs[position].shape:
        pytest.skip("the transposed shape equals the shape")
    bufs[position] = bad
    expect(exc, "frobenius_decay_grad", f"add_to[{position}] ({ADD_TO_NAMES[position]})",
           lambda: fnl.frobenius_decay_grad(U, V, 0.1, mids, add_to=tuple(bufs)))
    check_untouched(bufs)
    if isinstance(bad, np.ndarray) and bad.dtype != np.float32:
        assert np.all(bad == 7.0) or np.all(bad.astype(np.float64) == 7.0)


def test_readonly_buffer_untouched_value():
    U, V, mids, bufs = grad_setup(1)
    bufs[2].flags.writeable = False
    with pytest.raises(ValueError, match=r"must be writeable"):
        fnl.frobenius_decay_grad(U, V, 0.1, mids, add_to=bufs)
    check_untouched(bufs)


@pytest.mark.parametrize("bad", [np.zeros(3), "abc", 5, {"dU": 1}], ids=["ndarray", "str", "int", "dict"])
def test_add_to_not_a_sequence(bad):
    U, V, mids, _ = grad_setup(1)
    expect(TypeError, "frobenius_decay_grad", "add_to", lambda: fnl.frobenius_decay_grad(U, V, 0.1, mids, add_to=bad))


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_add_to_wrong_count(count):
    U, V, mids, bufs = grad_setup(1)
    bufs = (bufs * 2)[:count]
    expect(ValueError, "frobenius_decay_grad", "add_to", lambda: fnl.frobenius_decay_grad(U, V, 0.1, mids, add_to=bufs),
           match="3 arrays")
    check_untouched(bufs)


def test_add_to_overlapping_inputs():
    U, V, mids, bufs = grad_setup(0)
    # A buffer that is an input factor.
    expect(ValueError, "frobenius_decay_grad", "add_to[0] (dU)",
           lambda: fnl.frobenius_decay_grad(U, V, 0.1, add_to=(U, bufs[1])), match="overlaps an input")
    # A buffer that shares memory with an input through a view.
    big = np.full((11, 3), 7.0, np.float32)
    Uv, dv = big[:6], big[5:10]
    expect(ValueError, "frobenius_decay_grad", "add_to[1] (dV)",
           lambda: fnl.frobenius_decay_grad(Uv, V, 0.1, add_to=(bufs[0], dv)), match="overlaps an input")
    check_untouched(bufs)
    # Two buffers that overlap each other.
    both = np.full((6, 3), 7.0, np.float32)
    expect(ValueError, "frobenius_decay_grad", "add_to[1] (dV)",
           lambda: fnl.frobenius_decay_grad(U, f32(6, 3), 0.1, add_to=(both, both)), match="another gradient")
    assert np.all(both == 7.0)
    # A middle-gradient buffer overlapping the middle input.
    U, V, mids, bufs = grad_setup(1)
    expect(ValueError, "frobenius_decay_grad", "add_to[2] (dmiddle[0])",
           lambda: fnl.frobenius_decay_grad(U, V, 0.1, mids, add_to=(bufs[0], bufs[1], mids[0])))
    check_untouched(bufs)


def test_add_to_untouched_when_inputs_fail():
    U, V, mids, bufs = grad_setup(1)
    Ubad = U.copy()
    Ubad[0, 0] = np.nan
    expect(ValueError, "frobenius_decay_grad", "U", lambda: fnl.frobenius_decay_grad(Ubad, V, 0.1, mids, add_to=bufs))
    expect(ValueError, "frobenius_decay_grad", "lam", lambda: fnl.frobenius_decay_grad(U, V, -1.0, mids, add_to=bufs))
    expect(TypeError, "frobenius_decay_grad", "lam", lambda: fnl.frobenius_decay_grad(U, V, "x", mids, add_to=bufs))
    check_untouched(bufs)


def test_input_views_of_float64_buffers_do_not_alias():
    """A float64 input is converted (copied), so a float32 buffer can never alias the copy."""
    U = np.ones((4, 2))
    V = np.ones((3, 2), np.float32)
    buf = [np.zeros((4, 2), np.float32), np.zeros((3, 2), np.float32)]
    fnl.frobenius_decay_grad(U, V, 1.0, add_to=buf)
    assert np.all(buf[0] == 6.0)  # U (V^T V) = 1 * 3 * 2


# ---------------------------------------------------------------------- threads


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (1025, ValueError), (2**70, ValueError),
                                     (2.0, TypeError), ("2", TypeError), (None, TypeError), (True, TypeError)],
                         ids=repr)
def test_set_num_threads_bad(bad, exc):
    before = fnl.get_num_threads()
    expect(exc, "set_num_threads", "n", lambda: fnl.set_num_threads(bad))
    assert fnl.get_num_threads() == before


# ------------------------------------------------------------- native arg counts


@pytest.mark.parametrize("name", ["spectral_init", "frobenius_sq_norms", "nuclear_norms", "factor_balance",
                                  "frobenius_penalty", "frobenius_decay_grad", "compose", "conv_to_matrix",
                                  "matrix_to_conv", "set_num_threads"])
def test_native_wrong_argument_count(name):
    from fnl import _native

    fn = getattr(_native, name)
    for args in ((), (1,) * 9):
        with pytest.raises(TypeError, match=r"^\[fnl\.\w+\] expected \d+ positional arguments"):
            fn(*args)
    with pytest.raises(TypeError):
        fn(x=1)
