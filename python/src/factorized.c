/* Bindings of the factorized-matrix functions: spectral initialization, Frobenius decay,
 * composition, diagnostics and the conv kernel <-> matrix layout. */
#include "fnl_native.h"

/* The parsed arguments of a factorized matrix U M_1 .. M_d V^T (optionally batched). */
typedef struct {
    PyArrayObject *U, *V;
    fnl_middle_t mid;
    int batched;
    npy_intp batch, m, n;
} chain_t;

static void chain_free(chain_t *c) {
    Py_XDECREF(c->U);
    Py_XDECREF(c->V);
    fnl_middle_free(&c->mid);
}

/* Parses U, V and middle (None or a sequence of matrices). U and V are 2-D, or 3-D for a
 * batch (leading axis); every inner matrix has the same number of dimensions as U. */
static int chain_parse(const char *fn, PyObject *U, PyObject *V, PyObject *middle, chain_t *c) {
    /* Only the fields chain_free reads need zeroing (the arrays are filled as parsed): a full
     * memset of the ~1.6 KB struct is measurable on tiny calls. */
    c->mid.seq = NULL;
    c->U = c->V = NULL;
    c->mid.depth = 0;
    char s1[128], s2[128];
    if (!(c->U = fnl_as_input(U, fn, "U", 2, 3))) return -1;
    int nd = PyArray_NDIM(c->U);
    if (!(c->V = fnl_as_input(V, fn, "V", nd, nd))) return -1;
    c->batched = nd == 3;
    c->batch = c->batched ? PyArray_DIM(c->U, 0) : 1;
    if (c->batched && PyArray_DIM(c->V, 0) != c->batch) {
        PyErr_Format(PyExc_ValueError, "[%s] U and V must have the same batch size, got U of shape %s and V of shape %s",
                     fn, fnl_shape_str(c->U, s1, sizeof s1), fnl_shape_str(c->V, s2, sizeof s2));
        return -1;
    }
    c->m = PyArray_DIM(c->U, nd - 2);
    c->n = PyArray_DIM(c->V, nd - 2);
    c->mid.ranks[0] = PyArray_DIM(c->U, nd - 1);
    return fnl_parse_middle(middle, c->V, fn, nd, c->batch, &c->mid);
}

/* Floating-point work of a Gram-based call, to decide on releasing the GIL. */
static double chain_work(const chain_t *c) {
    double r = (double)c->mid.ranks[0];
    return (double)c->batch * ((double)c->m + (double)c->n) * r * r + (double)c->mid.depth * r * r * r;
}

static PyObject *spectral_init(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.spectral_init";
    long long rank, method, oversample, power_iters;
    if (fnl_check_nargs(nargs, 6, fn) < 0) return NULL;
    if (fnl_parse_int(args[1], fn, "rank", 1, INT32_MAX, &rank) < 0 ||
        fnl_parse_int(args[2], fn, "method", 0, 1, &method) < 0 ||
        fnl_parse_int(args[3], fn, "oversample", 0, 1 << 20, &oversample) < 0 ||
        fnl_parse_int(args[4], fn, "power_iters", 0, 100, &power_iters) < 0)
        return NULL;
    if (!PyLong_Check(args[5]) || PyBool_Check(args[5])) {
        PyErr_Format(PyExc_TypeError, "[%s] seed must be an int, got %.100s", fn, Py_TYPE(args[5])->tp_name);
        return NULL;
    }
    unsigned long long seed = PyLong_AsUnsignedLongLong(args[5]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "[%s] seed must be in 0..2**64-1, got %R", fn, args[5]);
        return NULL;
    }
    PyArrayObject *W = fnl_as_input(args[0], fn, "W", 2, 2);
    if (!W) return NULL;
    npy_intp m = PyArray_DIM(W, 0), n = PyArray_DIM(W, 1), k = m < n ? m : n;
    npy_intp ushape[2] = {m, (npy_intp)rank}, vshape[2] = {n, (npy_intp)rank};
    npy_intp sshape[1] = {(npy_intp)rank < k ? (npy_intp)rank : k};
    PyArrayObject *U = fnl_new_output(2, ushape, fn, "U");
    PyArrayObject *V = U ? fnl_new_output(2, vshape, fn, "V") : NULL;
    PyArrayObject *S = V ? fnl_new_output(1, sshape, fn, "s") : NULL;
    if (!S) { Py_DECREF(W); Py_XDECREF(U); Py_XDECREF(V); return NULL; }
    double total = 0, tail = 0;
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL((double)m * (double)n * (double)sshape[0],
        status = fnl_spectral_init((const float *)PyArray_DATA(W), m, n, rank, (int32_t)method, oversample,
                                   power_iters, seed, (float *)PyArray_DATA(U), (float *)PyArray_DATA(V),
                                   (float *)PyArray_DATA(S), &total, &tail, err, sizeof err));
    Py_DECREF(W);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(U); Py_DECREF(V); Py_DECREF(S); return NULL; }
    return Py_BuildValue("(NNNdd)", U, V, S, total, tail);
}

/* Shared body of the functions returning one float64 per batch item. */
typedef int32_t (*per_item_fn)(int64_t, int64_t, int64_t, int64_t, const int64_t *, const float *, const float *,
                               const float *const *, double *, char *, size_t);

static PyObject *per_item(const char *fn, per_item_fn call, PyObject *const *args, Py_ssize_t nargs, int depth_zero) {
    chain_t c;
    if (fnl_check_nargs(nargs, depth_zero ? 2 : 3, fn) < 0) return NULL;
    if (chain_parse(fn, args[0], args[1], depth_zero ? Py_None : args[2], &c) < 0) { chain_free(&c); return NULL; }
    npy_intp shape[1] = {c.batch};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, shape, NPY_FLOAT64);
    if (!out) { chain_free(&c); return NULL; }
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL(chain_work(&c),
        status = call(c.batch, c.m, c.n, c.mid.depth, c.mid.ranks, PyArray_DATA(c.U), PyArray_DATA(c.V), c.mid.data,
                      PyArray_DATA(out), err, sizeof err));
    chain_free(&c);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(out); return NULL; }
    return (PyObject *)out;
}

static PyObject *frobenius_sq_norms(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return per_item("fnl.frobenius_norm", fnl_frobenius_sq_norms, args, nargs, 0);
}

static PyObject *nuclear_norms(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return per_item("fnl.nuclear_norm", fnl_nuclear_norms, args, nargs, 0);
}

static int32_t balance_adapter(int64_t batch, int64_t m, int64_t n, int64_t depth, const int64_t *ranks,
                               const float *U, const float *V, const float *const *middle, double *out,
                               char *err, size_t cap) {
    return fnl_factor_balance(batch, m, n, ranks[0], U, V, out, err, cap);
}

static PyObject *factor_balance(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return per_item("fnl.factor_balance", balance_adapter, args, nargs, 1);
}

static PyObject *frobenius_penalty(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.frobenius_penalty";
    chain_t c;
    double lam;
    if (fnl_check_nargs(nargs, 4, fn) < 0 || fnl_parse_float(args[3], fn, "lam", 0.0, &lam) < 0) return NULL;
    if (chain_parse(fn, args[0], args[1], args[2], &c) < 0) { chain_free(&c); return NULL; }
    double penalty = 0;
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL(chain_work(&c),
        status = fnl_frobenius_penalty(c.batch, c.m, c.n, c.mid.depth, c.mid.ranks, PyArray_DATA(c.U), PyArray_DATA(c.V),
                                       c.mid.data, (float)lam, &penalty, err, sizeof err));
    chain_free(&c);
    if (fnl_raise_status(status, fn, err) < 0) return NULL;
    return PyFloat_FromDouble(penalty);
}

static PyObject *frobenius_decay_grad(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.frobenius_decay_grad";
    chain_t c;
    double lam;
    if (fnl_check_nargs(nargs, 5, fn) < 0 || fnl_parse_float(args[3], fn, "lam", 0.0, &lam) < 0) return NULL;
    if (chain_parse(fn, args[0], args[1], args[2], &c) < 0) { chain_free(&c); return NULL; }
    PyObject *add_to = args[4];
    PyObject *add_to_items = NULL; /* tuple snapshot of add_to */
    Py_ssize_t count = 2 + c.mid.depth;
    PyArrayObject *inputs[FNL_MAX_DEPTH + 2] = {c.U, c.V};
    for (int j = 0; j < c.mid.depth; j++) inputs[2 + j] = c.mid.arr[j];
    PyObject *result = PyTuple_New(count);
    if (!result) { chain_free(&c); return NULL; }
    if (add_to != Py_None) {
        if (!PyTuple_Check(add_to) && !PyList_Check(add_to)) {
            PyErr_Format(PyExc_TypeError, "[%s] add_to must be None or a tuple (dU, dV, *dmiddle), got %.100s", fn,
                         Py_TYPE(add_to)->tp_name);
            goto fail;
        }
        if (!(add_to_items = PySequence_Tuple(add_to))) goto fail;
        if (PyTuple_GET_SIZE(add_to_items) != count) {
            PyErr_Format(PyExc_ValueError, "[%s] add_to must hold %zd arrays (dU, dV and one per middle matrix), got %zd",
                         fn, count, PyTuple_GET_SIZE(add_to_items));
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyArrayObject *like = inputs[i];
        char name[32];
        if (i < 2) snprintf(name, sizeof name, "add_to[%d] (d%s)", (int)i, i ? "V" : "U");
        else snprintf(name, sizeof name, "add_to[%d] (dmiddle[%d])", (int)i, (int)i - 2);
        PyArrayObject *out;
        if (add_to == Py_None) {
            out = fnl_new_output(PyArray_NDIM(like), PyArray_DIMS(like), fn, name + 7);
            if (!out) goto fail;
        } else {
            PyObject *o = PyTuple_GET_ITEM(add_to_items, i);
            if (fnl_check_inplace(o, fn, name, PyArray_NDIM(like), PyArray_DIMS(like)) < 0) goto fail;
            out = (PyArrayObject *)o;
            for (Py_ssize_t k = 0; k < count; k++) {
                if (fnl_overlap(out, inputs[k])) {
                    PyErr_Format(PyExc_ValueError, "[%s] %s overlaps an input factor in memory; pass separate buffers", fn, name);
                    goto fail;
                }
            }
            for (Py_ssize_t k = 0; k < i; k++) {
                if (fnl_overlap(out, (PyArrayObject *)PyTuple_GET_ITEM(result, k))) {
                    PyErr_Format(PyExc_ValueError, "[%s] %s overlaps another gradient buffer in memory", fn, name);
                    goto fail;
                }
            }
            Py_INCREF(o);
        }
        PyTuple_SET_ITEM(result, i, (PyObject *)out);
    }
    {
        float *dmid[FNL_MAX_DEPTH];
        for (int j = 0; j < c.mid.depth; j++) dmid[j] = PyArray_DATA((PyArrayObject *)PyTuple_GET_ITEM(result, 2 + j));
        char err[FNL_ERR_CAP];
        err[0] = 0;
        int32_t status;
        FNL_ENGINE_CALL(chain_work(&c),
            status = fnl_frobenius_decay_grad(c.batch, c.m, c.n, c.mid.depth, c.mid.ranks, PyArray_DATA(c.U),
                                              PyArray_DATA(c.V), c.mid.data, (float)lam, add_to != Py_None,
                                              PyArray_DATA((PyArrayObject *)PyTuple_GET_ITEM(result, 0)),
                                              PyArray_DATA((PyArrayObject *)PyTuple_GET_ITEM(result, 1)), dmid,
                                              err, sizeof err));
        if (fnl_raise_status(status, fn, err) < 0) goto fail;
    }
    chain_free(&c);
    Py_XDECREF(add_to_items);
    return result;
fail:
    chain_free(&c);
    Py_XDECREF(add_to_items);
    Py_DECREF(result); /* unset tuple slots are NULL and skipped */
    return NULL;
}

static PyObject *compose(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.compose";
    chain_t c;
    if (fnl_check_nargs(nargs, 3, fn) < 0) return NULL;
    if (chain_parse(fn, args[0], args[1], args[2], &c) < 0) { chain_free(&c); return NULL; }
    npy_intp shape[3] = {c.batch, c.m, c.n};
    PyArrayObject *W = c.batched ? fnl_new_output(3, shape, fn, "W") : fnl_new_output(2, shape + 1, fn, "W");
    if (!W) { chain_free(&c); return NULL; }
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL((double)c.batch * (double)c.m * (double)c.n * (double)c.mid.ranks[0],
        status = fnl_compose(c.batch, c.m, c.n, c.mid.depth, c.mid.ranks, PyArray_DATA(c.U), PyArray_DATA(c.V), c.mid.data,
                             PyArray_DATA(W), err, sizeof err));
    chain_free(&c);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(W); return NULL; }
    return (PyObject *)W;
}

static PyObject *conv_to_matrix(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.conv_to_matrix";
    if (fnl_check_nargs(nargs, 1, fn) < 0) return NULL;
    PyArrayObject *K = fnl_as_input(args[0], fn, "K", 4, 4);
    if (!K) return NULL;
    npy_intp *d = PyArray_DIMS(K);
    npy_intp shape[2] = {d[0] * d[2], d[1] * d[3]};
    PyArrayObject *W = fnl_new_output(2, shape, fn, "W");
    if (!W) { Py_DECREF(K); return NULL; }
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(K),
        status = fnl_conv_to_matrix(PyArray_DATA(K), d[0], d[1], d[2], d[3], PyArray_DATA(W), err, sizeof err));
    Py_DECREF(K);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(W); return NULL; }
    return (PyObject *)W;
}

static PyObject *matrix_to_conv(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.matrix_to_conv";
    long long dims[4];
    const char *names[4] = {"c_out", "c_in", "kh", "kw"};
    if (fnl_check_nargs(nargs, 5, fn) < 0) return NULL;
    for (int i = 0; i < 4; i++)
        if (fnl_parse_int(args[1 + i], fn, names[i], 1, INT32_MAX, &dims[i]) < 0) return NULL;
    PyArrayObject *W = fnl_as_input(args[0], fn, "W", 2, 2);
    if (!W) return NULL;
    if ((long long)PyArray_DIM(W, 0) != dims[0] * dims[2] || (long long)PyArray_DIM(W, 1) != dims[1] * dims[3]) {
        char s[128];
        PyErr_Format(PyExc_ValueError, "[%s] W must have shape (c_out*kh, c_in*kw) = (%lld, %lld), got %s", fn,
                     dims[0] * dims[2], dims[1] * dims[3], fnl_shape_str(W, s, sizeof s));
        Py_DECREF(W);
        return NULL;
    }
    npy_intp shape[4] = {(npy_intp)dims[0], (npy_intp)dims[1], (npy_intp)dims[2], (npy_intp)dims[3]};
    PyArrayObject *K = fnl_new_output(4, shape, fn, "K");
    if (!K) { Py_DECREF(W); return NULL; }
    char err[FNL_ERR_CAP];
    err[0] = 0;
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(W),
        status = fnl_matrix_to_conv(PyArray_DATA(W), dims[0], dims[1], dims[2], dims[3], PyArray_DATA(K), err, sizeof err));
    Py_DECREF(W);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(K); return NULL; }
    return (PyObject *)K;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

PyMethodDef fnl_factorized_methods[] = {
    {"spectral_init", FASTCALL(spectral_init), "spectral_init(W, rank, method, oversample, power_iters, seed)"},
    {"frobenius_sq_norms", FASTCALL(frobenius_sq_norms), "frobenius_sq_norms(U, V, middle) -> float64[batch]"},
    {"nuclear_norms", FASTCALL(nuclear_norms), "nuclear_norms(U, V, middle) -> float64[batch]"},
    {"factor_balance", FASTCALL(factor_balance), "factor_balance(U, V) -> float64[batch]"},
    {"frobenius_penalty", FASTCALL(frobenius_penalty), "frobenius_penalty(U, V, middle, lam) -> float"},
    {"frobenius_decay_grad", FASTCALL(frobenius_decay_grad), "frobenius_decay_grad(U, V, middle, lam, add_to)"},
    {"compose", FASTCALL(compose), "compose(U, V, middle) -> W"},
    {"conv_to_matrix", FASTCALL(conv_to_matrix), "conv_to_matrix(K) -> W"},
    {"matrix_to_conv", FASTCALL(matrix_to_conv), "matrix_to_conv(W, c_out, c_in, kh, kw) -> K"},
    {NULL, NULL, 0, NULL},
};
