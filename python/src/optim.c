/* Optimizer steps, in place on NumPy parameter buffers.
 *
 * Every step function takes one parameter group as lists of arrays: params (updated in
 * place), grads (read only) and the optimizer's state buffers (updated in place), all float32,
 * C-contiguous, the shape of their parameter; never copied (a copy would silently drop the
 * update). Factorized products for Frobenius decay / norm matching come as an int64 record
 * array (see fnl_optim.h), their FD coefficients as chain_lam, and the FD workspace as a
 * float32 1-D array owned by the optimizer. */
#include "fnl_native.h"

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

/* A parsed parameter group. Tuples hold references to every array for the duration of the
 * call, so the GIL can be released even if the caller's lists change meanwhile. */
typedef struct {
    Py_ssize_t count, n_chains, chains_len, work_len;
    PyObject *lists[4];      /* params, grads, state0, state1 (tuples or NULL) */
    float **p, **s0, **s1;
    const float **g;
    int64_t *sizes;
    PyArrayObject *decay, *chains, *lam;
    float *work;
    double total;            /* floats in the group (for the GIL decision) */
} group_t;

static void group_free(group_t *gr) {
    for (int i = 0; i < 4; i++) Py_XDECREF(gr->lists[i]);
    PyMem_Free(gr->p);
    PyMem_Free(gr->s0);
    PyMem_Free(gr->s1);
    PyMem_Free((void *)gr->g);
    PyMem_Free(gr->sizes);
    Py_XDECREF(gr->decay);
    Py_XDECREF(gr->chains);
    Py_XDECREF(gr->lam);
}

/* A new tuple of the items of a list or tuple argument, or NULL with TypeError. */
static PyObject *as_tuple(PyObject *obj, const char *fn, const char *arg) {
    if (!PyList_Check(obj) && !PyTuple_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "[%s] %s must be a list of numpy arrays, got %.100s", fn, arg,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PySequence_Tuple(obj);
}

/* A read-only buffer used without copying: a native float32, C-contiguous, aligned ndarray
 * with exactly the shape of `like`. */
static int check_read_buffer(PyObject *obj, const char *fn, const char *arg, PyArrayObject *like) {
    char s1[128], s2[128];
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "[%s] %s must be a numpy.ndarray (float32), got %.100s", fn, arg,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32 || PyArray_ISBYTESWAPPED(a)) {
        PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(a));
        PyErr_Format(PyExc_TypeError, "[%s] %s must be native float32 (it is read without a copy), got dtype %s",
                     fn, arg, s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        return -1;
    }
    int ok = PyArray_NDIM(a) == PyArray_NDIM(like);
    for (int i = 0; ok && i < PyArray_NDIM(a); i++) ok = PyArray_DIM(a, i) == PyArray_DIM(like, i);
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "[%s] %s must have the shape of its parameter %s, got %s", fn, arg,
                     fnl_shape_str(like, s1, sizeof s1), fnl_shape_str(a, s2, sizeof s2));
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "[%s] %s must be C-contiguous and aligned; use numpy.ascontiguousarray first",
                     fn, arg);
        return -1;
    }
    return 0;
}

/* True when `obj` passes fnl_check_inplace (float32, native, C-contiguous, aligned, writeable)
 * with the shape of `like` (or any shape when like is NULL): the per-tensor fast path, which
 * formats no argument name; on failure the caller runs the full check for the message. */
static int inplace_ok(PyObject *obj, PyArrayObject *like) {
    if (!PyArray_Check(obj)) return 0;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32 || PyArray_ISBYTESWAPPED(a) || !PyArray_IS_C_CONTIGUOUS(a) ||
        !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a))
        return 0;
    if (like) {
        if (PyArray_NDIM(a) != PyArray_NDIM(like)) return 0;
        for (int i = 0; i < PyArray_NDIM(a); i++)
            if (PyArray_DIM(a, i) != PyArray_DIM(like, i)) return 0;
    }
    return 1;
}

/* Parses params, grads and up to two state lists (state names NULL when absent), decay,
 * chains / chain_lam (None or arrays) and the workspace (None or a float32 1-D array). */
static int group_parse(group_t *gr, const char *fn, PyObject *params, PyObject *grads,
                       PyObject *state0, const char *name0, PyObject *state1, const char *name1,
                       PyObject *decay, PyObject *chains, PyObject *lam, PyObject *work) {
    memset(gr, 0, sizeof *gr);
    char name[64];
    if (!(gr->lists[0] = as_tuple(params, fn, "params"))) return -1;
    gr->count = PyTuple_GET_SIZE(gr->lists[0]);
    if (gr->count == 0) {
        PyErr_Format(PyExc_ValueError, "[%s] params must not be empty", fn);
        return -1;
    }
    if (!(gr->lists[1] = as_tuple(grads, fn, "grads"))) return -1;
    const char *names[2] = {name0, name1};
    PyObject *states[2] = {state0, state1};
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        if (!(gr->lists[2 + k] = as_tuple(states[k], fn, names[k]))) return -1;
    }
    for (int k = 1; k < 4; k++) {
        if (gr->lists[k] && PyTuple_GET_SIZE(gr->lists[k]) != gr->count) {
            PyErr_Format(PyExc_ValueError, "[%s] %s must hold one array per parameter (%zd), got %zd", fn,
                         k == 1 ? "grads" : names[k - 2], gr->count, PyTuple_GET_SIZE(gr->lists[k]));
            return -1;
        }
    }
    size_t n = (size_t)gr->count;
    gr->p = PyMem_Malloc(n * sizeof *gr->p);
    gr->g = PyMem_Malloc(n * sizeof *gr->g);
    gr->s0 = PyMem_Malloc(n * sizeof *gr->s0);
    gr->s1 = PyMem_Malloc(n * sizeof *gr->s1);
    gr->sizes = PyMem_Malloc(n * sizeof *gr->sizes);
    if (!gr->p || !gr->g || !gr->s0 || !gr->s1 || !gr->sizes) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < gr->count; i++) {
        /* Argument names are formatted only on the error paths (snprintf per tensor would
         * dominate steps over many small tensors). */
        PyObject *po = PyTuple_GET_ITEM(gr->lists[0], i);
        PyArrayObject *pa = (PyArrayObject *)po;
        if (!inplace_ok(po, NULL)) {
            snprintf(name, sizeof name, "params[%zd]", i);
            if (fnl_check_inplace(po, fn, name, PyArray_Check(po) ? PyArray_NDIM(pa) : 0,
                                  PyArray_Check(po) ? PyArray_DIMS(pa) : NULL) < 0)
                return -1;
        }
        if (PyArray_SIZE(pa) == 0) {
            PyErr_Format(PyExc_ValueError, "[%s] params[%zd] must not be empty", fn, i);
            return -1;
        }
        PyObject *go = PyTuple_GET_ITEM(gr->lists[1], i);
        if (!PyArray_Check(go) || PyArray_TYPE((PyArrayObject *)go) != NPY_FLOAT32 || !inplace_ok(go, pa)) {
            snprintf(name, sizeof name, "grads[%zd]", i);
            if (check_read_buffer(go, fn, name, pa) < 0) return -1;
        }
        if (fnl_overlap(pa, (PyArrayObject *)go)) {
            PyErr_Format(PyExc_ValueError, "[%s] grads[%zd] overlaps params[%zd] in memory", fn, i, i);
            return -1;
        }
        PyArrayObject *sa[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            if (!gr->lists[2 + k]) continue;
            PyObject *so = PyTuple_GET_ITEM(gr->lists[2 + k], i);
            if (!inplace_ok(so, pa)) {
                snprintf(name, sizeof name, "%s[%zd]", names[k], i);
                if (fnl_check_inplace(so, fn, name, PyArray_NDIM(pa), PyArray_DIMS(pa)) < 0) return -1;
            }
            sa[k] = (PyArrayObject *)so;
            if (fnl_overlap(sa[k], pa) || fnl_overlap(sa[k], (PyArrayObject *)go) || (k == 1 && fnl_overlap(sa[0], sa[1]))) {
                PyErr_Format(PyExc_ValueError, "[%s] %s[%zd] overlaps another buffer of parameter %zd in memory", fn,
                             names[k], i, i);
                return -1;
            }
        }
        gr->p[i] = PyArray_DATA(pa);
        gr->g[i] = PyArray_DATA((PyArrayObject *)go);
        gr->s0[i] = sa[0] ? PyArray_DATA(sa[0]) : NULL;
        gr->s1[i] = sa[1] ? PyArray_DATA(sa[1]) : NULL;
        gr->sizes[i] = (int64_t)PyArray_SIZE(pa);
        gr->total += (double)PyArray_SIZE(pa);
    }
    if (!(gr->decay = fnl_as_input(decay, fn, "decay", 1, 1))) return -1;
    if (PyArray_DIM(gr->decay, 0) != gr->count) {
        PyErr_Format(PyExc_ValueError, "[%s] decay must hold one coefficient per parameter (%zd), got %zd", fn,
                     gr->count, (Py_ssize_t)PyArray_DIM(gr->decay, 0));
        return -1;
    }
    if ((chains == Py_None) != (lam == Py_None)) {
        PyErr_Format(PyExc_TypeError, "[%s] chains and chain_lam must both be None or both be arrays", fn);
        return -1;
    }
    if (chains != Py_None) {
        if (!PyArray_Check(chains) || PyArray_TYPE((PyArrayObject *)chains) != NPY_INT64 ||
            PyArray_NDIM((PyArrayObject *)chains) != 1 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)chains)) {
            PyErr_Format(PyExc_TypeError, "[%s] chains must be a contiguous 1-D int64 numpy array of product records", fn);
            return -1;
        }
        Py_INCREF(chains);
        gr->chains = (PyArrayObject *)chains;
        gr->chains_len = PyArray_DIM(gr->chains, 0);
        if (!(gr->lam = fnl_as_input(lam, fn, "chain_lam", 1, 1))) return -1;
        gr->n_chains = PyArray_DIM(gr->lam, 0);
    }
    if (work != Py_None) {
        if (!PyArray_Check(work) || PyArray_NDIM((PyArrayObject *)work) != 1) {
            PyErr_Format(PyExc_TypeError, "[%s] workspace must be None or a 1-D float32 numpy array", fn);
            return -1;
        }
        if (fnl_check_inplace(work, fn, "workspace", 1, PyArray_DIMS((PyArrayObject *)work)) < 0) return -1;
        for (Py_ssize_t i = 0; i < gr->count; i++) {
            for (int k = 0; k < 4; k++) {
                if (gr->lists[k] && fnl_overlap((PyArrayObject *)work, (PyArrayObject *)PyTuple_GET_ITEM(gr->lists[k], i))) {
                    PyErr_Format(PyExc_ValueError, "[%s] workspace overlaps a buffer of parameter %zd in memory", fn, i);
                    return -1;
                }
            }
        }
        gr->work = PyArray_DATA((PyArrayObject *)work);
        gr->work_len = PyArray_DIM((PyArrayObject *)work, 0);
    }
    return 0;
}

#define GROUP_CHAINS(gr) (gr).n_chains, (gr).chains_len, (gr).chains ? PyArray_DATA((gr).chains) : NULL, \
                         (gr).lam ? PyArray_DATA((gr).lam) : NULL, (gr).work, (gr).work_len

static int parse_flag(PyObject *obj, const char *fn, const char *arg, int32_t *out) {
    int v = PyObject_IsTrue(obj);
    if (v < 0) return -1;
    *out = v;
    return 0;
}

/* sgd_step(params, grads, momentum_buffers | None, decay, chains | None, chain_lam | None,
 *          workspace | None, lr, momentum, dampening, nesterov, first_step, check_finite) */
static PyObject *sgd_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.optim.SGD.step";
    double lr, mu, damp;
    int32_t nesterov, first, check;
    if (fnl_check_nargs(nargs, 13, fn) < 0 || fnl_parse_float(args[7], fn, "lr", 0.0, &lr) < 0 ||
        fnl_parse_float(args[8], fn, "momentum", 0.0, &mu) < 0 ||
        fnl_parse_float(args[9], fn, "dampening", 0.0, &damp) < 0 ||
        parse_flag(args[10], fn, "nesterov", &nesterov) < 0 || parse_flag(args[11], fn, "first_step", &first) < 0 ||
        parse_flag(args[12], fn, "check_finite", &check) < 0)
        return NULL;
    group_t gr;
    int has_buf = args[2] != Py_None;
    if (mu != 0 && !has_buf) {
        PyErr_Format(PyExc_ValueError, "[%s] momentum buffers are required when momentum != 0", fn);
        return NULL;
    }
    if (group_parse(&gr, fn, args[0], args[1], args[2], has_buf ? "momentum_buffers" : NULL, NULL, NULL,
                    args[3], args[4], args[5], args[6]) < 0) {
        group_free(&gr);
        return NULL;
    }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(gr.total * 8,
        status = fnl_sgd_step(gr.count, gr.p, gr.g, has_buf ? gr.s0 : NULL, gr.sizes, PyArray_DATA(gr.decay),
                              GROUP_CHAINS(gr), (float)lr, (float)mu, (float)damp, nesterov, first, check,
                              err, sizeof err));
    group_free(&gr);
    if (fnl_raise_status(status, fn, err) < 0) return NULL;
    Py_RETURN_NONE;
}

/* Shared parsing of adamw_step / lamb_step:
 * (params, grads, exp_avg, exp_avg_sq, decay, chains | None, chain_lam | None, workspace | None,
 *  lr, beta1, beta2, eps, step, check_finite) */
static int adam_parse(const char *fn, PyObject *const *args, Py_ssize_t nargs, group_t *gr, double *hp,
                      long long *step, int32_t *check) {
    memset(gr, 0, sizeof *gr);
    if (fnl_check_nargs(nargs, 14, fn) < 0 || fnl_parse_float(args[8], fn, "lr", 0.0, &hp[0]) < 0 ||
        fnl_parse_float(args[9], fn, "beta1", 0.0, &hp[1]) < 0 ||
        fnl_parse_float(args[10], fn, "beta2", 0.0, &hp[2]) < 0 ||
        fnl_parse_float(args[11], fn, "eps", 0.0, &hp[3]) < 0 ||
        fnl_parse_int(args[12], fn, "step", 1, INT64_MAX, step) < 0 || parse_flag(args[13], fn, "check_finite", check) < 0)
        return -1;
    return group_parse(gr, fn, args[0], args[1], args[2], "exp_avg", args[3], "exp_avg_sq", args[4], args[5],
                       args[6], args[7]);
}

static PyObject *adamw_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.optim.AdamW.step";
    group_t gr;
    double hp[4];
    long long step;
    int32_t check;
    if (adam_parse(fn, args, nargs, &gr, hp, &step, &check) < 0) { group_free(&gr); return NULL; }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(gr.total * 12,
        status = fnl_adamw_step(gr.count, gr.p, gr.g, gr.s0, gr.s1, gr.sizes, PyArray_DATA(gr.decay),
                                GROUP_CHAINS(gr), (float)hp[0], (float)hp[1], (float)hp[2], (float)hp[3],
                                (int64_t)step, check, err, sizeof err));
    group_free(&gr);
    if (fnl_raise_status(status, fn, err) < 0) return NULL;
    Py_RETURN_NONE;
}

/* lamb_step(<as adamw_step>, update | None): returns the per-tensor trust ratios (float64).
 * update: the optimizer's float32 1-D buffer for u (>= the group's size), or None. */
static PyObject *lamb_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.optim.LAMB.step";
    group_t gr;
    double hp[4];
    long long step;
    int32_t check;
    if (fnl_check_nargs(nargs, 15, fn) < 0) return NULL;
    if (adam_parse(fn, args, 14, &gr, hp, &step, &check) < 0) { group_free(&gr); return NULL; }
    PyObject *upd = args[14];
    float *update = NULL;
    npy_intp update_len = 0;
    if (upd != Py_None) {
        if (!PyArray_Check(upd) || PyArray_NDIM((PyArrayObject *)upd) != 1) {
            PyErr_Format(PyExc_TypeError, "[%s] update must be None or a 1-D float32 numpy array", fn);
            group_free(&gr);
            return NULL;
        }
        if (fnl_check_inplace(upd, fn, "update", 1, PyArray_DIMS((PyArrayObject *)upd)) < 0) { group_free(&gr); return NULL; }
        for (Py_ssize_t i = 0; i < gr.count; i++) {
            for (int k = 0; k < 4; k++) {
                if (gr.lists[k] && fnl_overlap((PyArrayObject *)upd, (PyArrayObject *)PyTuple_GET_ITEM(gr.lists[k], i))) {
                    PyErr_Format(PyExc_ValueError, "[%s] update overlaps a buffer of parameter %zd in memory", fn, i);
                    group_free(&gr);
                    return NULL;
                }
            }
        }
        if (gr.work && fnl_overlap((PyArrayObject *)upd, (PyArrayObject *)args[7])) {
            PyErr_Format(PyExc_ValueError, "[%s] update overlaps the workspace in memory", fn);
            group_free(&gr);
            return NULL;
        }
        update = PyArray_DATA((PyArrayObject *)upd);
        update_len = PyArray_DIM((PyArrayObject *)upd, 0);
    }
    npy_intp shape[1] = {gr.count};
    PyArrayObject *trust = (PyArrayObject *)PyArray_SimpleNew(1, shape, NPY_FLOAT64);
    if (!trust) { group_free(&gr); return NULL; }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(gr.total * 16,
        status = fnl_lamb_step(gr.count, gr.p, gr.g, gr.s0, gr.s1, gr.sizes, PyArray_DATA(gr.decay),
                               GROUP_CHAINS(gr), update, update_len, (float)hp[0], (float)hp[1], (float)hp[2],
                               (float)hp[3], (int64_t)step, check, PyArray_DATA(trust), err, sizeof err));
    group_free(&gr);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(trust); return NULL; }
    return (PyObject *)trust;
}

/* norm_match(params, chains, n_chains, targets | None) -> norms before (float64[n_chains]). */
static PyObject *norm_match(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.optim.norm_matching";
    long long n_chains;
    if (fnl_check_nargs(nargs, 4, fn) < 0 || fnl_parse_int(args[2], fn, "n_chains", 1, INT32_MAX, &n_chains) < 0)
        return NULL;
    group_t gr;
    memset(&gr, 0, sizeof gr);
    PyArrayObject *targets = NULL, *norms = NULL;
    char name[64];
    if (!(gr.lists[0] = as_tuple(args[0], fn, "params"))) goto fail;
    gr.count = PyTuple_GET_SIZE(gr.lists[0]);
    gr.p = PyMem_Malloc((size_t)(gr.count ? gr.count : 1) * sizeof *gr.p);
    gr.sizes = PyMem_Malloc((size_t)(gr.count ? gr.count : 1) * sizeof *gr.sizes);
    if (!gr.p || !gr.sizes) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t i = 0; i < gr.count; i++) {
        PyObject *po = PyTuple_GET_ITEM(gr.lists[0], i);
        snprintf(name, sizeof name, "params[%zd]", i);
        if (fnl_check_inplace(po, fn, name, PyArray_Check(po) ? PyArray_NDIM((PyArrayObject *)po) : 0,
                              PyArray_Check(po) ? PyArray_DIMS((PyArrayObject *)po) : NULL) < 0)
            goto fail;
        gr.p[i] = PyArray_DATA((PyArrayObject *)po);
        gr.sizes[i] = (int64_t)PyArray_SIZE((PyArrayObject *)po);
        gr.total += (double)gr.sizes[i];
    }
    if (!PyArray_Check(args[1]) || PyArray_TYPE((PyArrayObject *)args[1]) != NPY_INT64 ||
        PyArray_NDIM((PyArrayObject *)args[1]) != 1 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)args[1])) {
        PyErr_Format(PyExc_TypeError, "[%s] chains must be a contiguous 1-D int64 numpy array of product records", fn);
        goto fail;
    }
    if (args[3] != Py_None) {
        targets = (PyArrayObject *)PyArray_FROMANY(args[3], NPY_FLOAT64, 1, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        if (!targets) goto fail;
        if (PyArray_DIM(targets, 0) != n_chains) {
            PyErr_Format(PyExc_ValueError, "[%s] targets must hold one norm per factor product (%lld), got %zd", fn,
                         n_chains, (Py_ssize_t)PyArray_DIM(targets, 0));
            goto fail;
        }
    }
    npy_intp shape[1] = {(npy_intp)n_chains};
    if (!(norms = (PyArrayObject *)PyArray_SimpleNew(1, shape, NPY_FLOAT64))) goto fail;
    {
        char err[FNL_ERR_CAP] = "";
        int32_t status;
        FNL_ENGINE_CALL(gr.total * 8,
            status = fnl_norm_match(gr.count, gr.p, gr.sizes, n_chains, PyArray_DIM((PyArrayObject *)args[1], 0),
                                    PyArray_DATA((PyArrayObject *)args[1]), targets ? PyArray_DATA(targets) : NULL,
                                    PyArray_DATA(norms), err, sizeof err));
        if (fnl_raise_status(status, fn, err) < 0) goto fail;
    }
    group_free(&gr);
    Py_XDECREF(targets);
    return (PyObject *)norms;
fail:
    group_free(&gr);
    Py_XDECREF(targets);
    Py_XDECREF(norms);
    return NULL;
}

PyMethodDef fnl_optim_methods[] = {
    {"sgd_step", FASTCALL(sgd_step),
     "sgd_step(params, grads, momentum_buffers, decay, chains, chain_lam, workspace, lr, momentum, dampening, "
     "nesterov, first_step, check_finite)"},
    {"adamw_step", FASTCALL(adamw_step),
     "adamw_step(params, grads, exp_avg, exp_avg_sq, decay, chains, chain_lam, workspace, lr, beta1, beta2, eps, "
     "step, check_finite)"},
    {"lamb_step", FASTCALL(lamb_step),
     "lamb_step(params, grads, exp_avg, exp_avg_sq, decay, chains, chain_lam, workspace, lr, beta1, beta2, eps, "
     "step, check_finite, update) -> trust ratios"},
    {"norm_match", FASTCALL(norm_match), "norm_match(params, chains, n_chains, targets) -> norms before"},
    {NULL, NULL, 0, NULL},
};
