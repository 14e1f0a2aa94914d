/* Bindings of the neural-network layer kernels (fnl_nn.h): fully connected layers (dense and
 * low-rank), batch normalization, pooling, ReLU and softmax cross-entropy. Parameter
 * gradients are accumulated in place into float32 buffers (the Parameter.grad arrays). */
/* NumPy's memory-handler API (NEP 49, NumPy >= 1.22) for the training-step memory pool below. */
#define NPY_TARGET_VERSION 0x0000000f
#include "fnl_native.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>


/* An optional input: None -> NULL with *ok = 1. */
static PyArrayObject *opt_input(PyObject *obj, const char *fn, const char *arg, int min_nd, int max_nd, int *ok) {
    *ok = 1;
    if (obj == Py_None) return NULL;
    PyArrayObject *a = fnl_as_input(obj, fn, arg, min_nd, max_nd);
    if (!a) *ok = 0;
    return a;
}

static const float *fdata(PyArrayObject *a) { return a ? (const float *)PyArray_DATA(a) : NULL; }
static float *fbuf(PyObject *o) { return o == Py_None ? NULL : (float *)PyArray_DATA((PyArrayObject *)o); }

static int check_vector(PyArrayObject *a, const char *fn, const char *arg, npy_intp len) {
    char s[128];
    if (PyArray_NDIM(a) != 1 || PyArray_DIM(a, 0) != len) {
        PyErr_Format(PyExc_ValueError, "[%s] %s must have shape (%lld,), got %s", fn, arg, (long long)len,
                     fnl_shape_str(a, s, sizeof s));
        return -1;
    }
    return 0;
}

static int check_same_shape(PyArrayObject *a, PyArrayObject *ref, const char *fn, const char *arg, const char *refname) {
    char s1[128], s2[128];
    if (!PyArray_SAMESHAPE(a, ref)) {
        PyErr_Format(PyExc_ValueError, "[%s] %s must have the shape of %s %s, got %s", fn, arg, refname,
                     fnl_shape_str(ref, s1, sizeof s1), fnl_shape_str(a, s2, sizeof s2));
        return -1;
    }
    return 0;
}

static int check_inplace_opt(PyObject *obj, const char *fn, const char *arg, int nd, const npy_intp *shape) {
    return obj == Py_None ? 0 : fnl_check_inplace(obj, fn, arg, nd, shape);
}

/* ---- dense linear ---- */

static PyObject *linear_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.Linear";
    char s1[128], s2[128];
    int ok;
    if (fnl_check_nargs(nargs, 3, fn) < 0) return NULL;
    PyArrayObject *x = NULL, *W = NULL, *b = NULL, *y = NULL;
    if (!(x = fnl_as_input(args[0], fn, "x", 2, 2))) goto fail;
    if (!(W = fnl_as_input(args[1], fn, "weight", 2, 2))) goto fail;
    b = opt_input(args[2], fn, "bias", 1, 1, &ok);
    if (!ok) goto fail;
    npy_intp n = PyArray_DIM(x, 0), nin = PyArray_DIM(x, 1), nout = PyArray_DIM(W, 0);
    if (PyArray_DIM(W, 1) != nin) {
        PyErr_Format(PyExc_ValueError, "[%s] x must have %lld features (weight of shape %s), got shape %s", fn,
                     (long long)PyArray_DIM(W, 1), fnl_shape_str(W, s1, sizeof s1), fnl_shape_str(x, s2, sizeof s2));
        goto fail;
    }
    if (b && check_vector(b, fn, "bias", nout) < 0) goto fail;
    npy_intp shape[2] = {n, nout};
    if (!(y = fnl_new_output(2, shape, fn, "y"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)n * nin * nout,
        status = fnl_linear_forward(fdata(x), n, nin, nout, fdata(W), fdata(b), (float *)PyArray_DATA(y), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(x); Py_DECREF(W); Py_XDECREF(b);
    return (PyObject *)y;
fail:
    Py_XDECREF(x); Py_XDECREF(W); Py_XDECREF(b); Py_XDECREF(y);
    return NULL;
}

/* linear_backward(dy, x, W, grad_W, grad_b|None, need_dx) -> dx|None; grads accumulate. */
static PyObject *linear_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.Linear.backward";
    char s1[128], s2[128];
    if (fnl_check_nargs(nargs, 6, fn) < 0) return NULL;
    PyArrayObject *dy = NULL, *x = NULL, *W = NULL, *dx = NULL;
    int need_dx = PyObject_IsTrue(args[5]);
    if (need_dx < 0) return NULL;
    if (!(dy = fnl_as_input(args[0], fn, "grad", 2, 2))) goto fail;
    if (!(x = fnl_as_input(args[1], fn, "x", 2, 2))) goto fail;
    if (!(W = fnl_as_input(args[2], fn, "weight", 2, 2))) goto fail;
    npy_intp n = PyArray_DIM(x, 0), nin = PyArray_DIM(x, 1), nout = PyArray_DIM(W, 0);
    if (PyArray_DIM(W, 1) != nin || PyArray_DIM(dy, 0) != n || PyArray_DIM(dy, 1) != nout) {
        PyErr_Format(PyExc_ValueError, "[%s] grad must have shape (%lld, %lld) (batch, out_features), got %s (x %s)", fn,
                     (long long)n, (long long)nout, fnl_shape_str(dy, s1, sizeof s1), fnl_shape_str(x, s2, sizeof s2));
        goto fail;
    }
    npy_intp wshape[2] = {nout, nin}, bshape[1] = {nout};
    if (fnl_check_inplace(args[3], fn, "weight.grad", 2, wshape) < 0) goto fail;
    if (check_inplace_opt(args[4], fn, "bias.grad", 1, bshape) < 0) goto fail;
    if (need_dx) {
        npy_intp xshape[2] = {n, nin};
        if (!(dx = fnl_new_output(2, xshape, fn, "grad_x"))) goto fail;
    }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(2.0 * n * nin * nout,
        status = fnl_linear_backward(fdata(dy), fdata(x), n, nin, nout, fdata(W), 1, fbuf(args[3]), fbuf(args[4]),
                                     dx ? (float *)PyArray_DATA(dx) : NULL, err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(dy); Py_DECREF(x); Py_DECREF(W);
    if (dx) return (PyObject *)dx;
    Py_RETURN_NONE;
fail:
    Py_XDECREF(dy); Py_XDECREF(x); Py_XDECREF(W); Py_XDECREF(dx);
    return NULL;
}

/* ---- low-rank linear ---- */

typedef struct {
    PyArrayObject *U, *V;
    fnl_middle_t mid;
} lr_t;

static void lr_free(lr_t *c) {
    Py_XDECREF(c->U);
    Py_XDECREF(c->V);
    fnl_middle_free(&c->mid);
}

/* U (n_out x r_0), middle list (parsed from a snapshot: see fnl_parse_middle), V (n_in x r_d). */
static int lr_parse(const char *fn, PyObject *U, PyObject *V, PyObject *middle, lr_t *c) {
    c->U = c->V = NULL;
    c->mid.seq = NULL;
    c->mid.depth = 0;
    if (!(c->U = fnl_as_input(U, fn, "U", 2, 2))) return -1;
    if (!(c->V = fnl_as_input(V, fn, "V", 2, 2))) return -1;
    c->mid.ranks[0] = PyArray_DIM(c->U, 1);
    return fnl_parse_middle(middle, c->V, fn, 2, 1, &c->mid);
}

static double lr_work(const lr_t *c, npy_intp n) {
    double w = (double)PyArray_DIM(c->U, 0) * c->mid.ranks[0] + (double)PyArray_DIM(c->V, 0) * c->mid.ranks[c->mid.depth];
    for (int j = 0; j < c->mid.depth; j++) w += (double)c->mid.ranks[j] * c->mid.ranks[j + 1];
    return w * n;
}

static PyObject *lowrank_linear_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.FactorizedLinear";
    char s1[128];
    int ok;
    lr_t c;
    if (fnl_check_nargs(nargs, 5, fn) < 0) return NULL;
    PyArrayObject *x = NULL, *b = NULL, *y = NULL;
    if (lr_parse(fn, args[1], args[2], args[3], &c) < 0) goto fail;
    if (!(x = fnl_as_input(args[0], fn, "x", 2, 2))) goto fail;
    b = opt_input(args[4], fn, "bias", 1, 1, &ok);
    if (!ok) goto fail;
    npy_intp n = PyArray_DIM(x, 0), nin = PyArray_DIM(c.V, 0), nout = PyArray_DIM(c.U, 0);
    if (PyArray_DIM(x, 1) != nin) {
        PyErr_Format(PyExc_ValueError, "[%s] x must have %lld features (the rows of V), got shape %s", fn,
                     (long long)nin, fnl_shape_str(x, s1, sizeof s1));
        goto fail;
    }
    if (b && check_vector(b, fn, "bias", nout) < 0) goto fail;
    npy_intp shape[2] = {n, nout};
    if (!(y = fnl_new_output(2, shape, fn, "y"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(lr_work(&c, n),
        status = fnl_lowrank_linear_forward(fdata(x), n, nin, nout, c.mid.depth, c.mid.ranks, fdata(c.U), fdata(c.V), c.mid.data,
                                            fdata(b), (float *)PyArray_DATA(y), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    lr_free(&c); Py_DECREF(x); Py_XDECREF(b);
    return (PyObject *)y;
fail:
    lr_free(&c); Py_XDECREF(x); Py_XDECREF(b); Py_XDECREF(y);
    return NULL;
}

/* lowrank_linear_backward(dy, x, U, V, middle, gU, gV, gmiddle|None, gb|None, need_dx) -> dx|None */
static PyObject *lowrank_linear_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.FactorizedLinear.backward";
    char s1[128];
    lr_t c;
    if (fnl_check_nargs(nargs, 10, fn) < 0) return NULL;
    PyArrayObject *dy = NULL, *x = NULL, *dx = NULL;
    float *gmid[FNL_MAX_DEPTH];
    int need_dx = PyObject_IsTrue(args[9]);
    if (need_dx < 0) return NULL;
    if (lr_parse(fn, args[2], args[3], args[4], &c) < 0) goto fail;
    if (!(dy = fnl_as_input(args[0], fn, "grad", 2, 2))) goto fail;
    if (!(x = fnl_as_input(args[1], fn, "x", 2, 2))) goto fail;
    npy_intp n = PyArray_DIM(x, 0), nin = PyArray_DIM(c.V, 0), nout = PyArray_DIM(c.U, 0);
    if (PyArray_DIM(x, 1) != nin) {
        PyErr_Format(PyExc_ValueError, "[%s] x must have %lld features (the rows of V), got shape %s", fn,
                     (long long)nin, fnl_shape_str(x, s1, sizeof s1));
        goto fail;
    }
    if (PyArray_DIM(dy, 0) != n || PyArray_DIM(dy, 1) != nout) {
        PyErr_Format(PyExc_ValueError, "[%s] grad must have shape (%lld, %lld), got %s", fn, (long long)n,
                     (long long)nout, fnl_shape_str(dy, s1, sizeof s1));
        goto fail;
    }
    if (fnl_check_inplace(args[5], fn, "U.grad", 2, PyArray_DIMS(c.U)) < 0) goto fail;
    if (fnl_check_inplace(args[6], fn, "V.grad", 2, PyArray_DIMS(c.V)) < 0) goto fail;
    PyObject *gm = args[7];
    if (c.mid.depth > 0) {
        if ((!PyList_Check(gm) && !PyTuple_Check(gm)) || PySequence_Fast_GET_SIZE(gm) != c.mid.depth) {
            PyErr_Format(PyExc_ValueError, "[%s] the middle gradients must be a list of %d arrays", fn, c.mid.depth);
            goto fail;
        }
        for (int j = 0; j < c.mid.depth; j++) {
            char name[40];
            snprintf(name, sizeof name, "middle[%d].grad", j);
            PyObject *g = PySequence_Fast_GET_ITEM(gm, j);
            if (fnl_check_inplace(g, fn, name, 2, PyArray_DIMS(c.mid.arr[j])) < 0) goto fail;
            gmid[j] = (float *)PyArray_DATA((PyArrayObject *)g);
        }
    }
    npy_intp bshape[1] = {nout};
    if (check_inplace_opt(args[8], fn, "bias.grad", 1, bshape) < 0) goto fail;
    if (need_dx) {
        npy_intp xshape[2] = {n, nin};
        if (!(dx = fnl_new_output(2, xshape, fn, "grad_x"))) goto fail;
    }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(3.0 * lr_work(&c, n),
        status = fnl_lowrank_linear_backward(fdata(dy), fdata(x), n, nin, nout, c.mid.depth, c.mid.ranks, fdata(c.U),
                                             fdata(c.V), c.mid.data, 1, fbuf(args[5]), fbuf(args[6]),
                                             c.mid.depth ? gmid : NULL, fbuf(args[8]),
                                             dx ? (float *)PyArray_DATA(dx) : NULL, err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    lr_free(&c); Py_DECREF(dy); Py_DECREF(x);
    if (dx) return (PyObject *)dx;
    Py_RETURN_NONE;
fail:
    lr_free(&c); Py_XDECREF(dy); Py_XDECREF(x); Py_XDECREF(dx);
    return NULL;
}

/* ---- batch norm ---- */

/* (N, C, S) of a 2-D to 4-D input. */
static void ncs(PyArrayObject *x, npy_intp *n, npy_intp *c, npy_intp *s) {
    *n = PyArray_DIM(x, 0);
    *c = PyArray_DIM(x, 1);
    *s = 1;
    for (int i = 2; i < PyArray_NDIM(x); i++) *s *= PyArray_DIM(x, i);
}

/* batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, residual | None,
 *                   relu) -> (y, mean, invstd): y = act(gamma xhat + beta + residual) */
static PyObject *batchnorm_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.BatchNorm";
    if (fnl_check_nargs(nargs, 10, fn) < 0) return NULL;
    PyArrayObject *x = NULL, *gamma = NULL, *beta = NULL, *res = NULL, *y = NULL, *mean = NULL, *invstd = NULL;
    double momentum, eps;
    int training = PyObject_IsTrue(args[5]), relu = PyObject_IsTrue(args[9]), ok;
    if (training < 0 || relu < 0) return NULL;
    if (fnl_parse_float(args[6], fn, "momentum", 0.0, &momentum) < 0 || fnl_parse_float(args[7], fn, "eps", 0.0, &eps) < 0)
        return NULL;
    if (!(x = fnl_as_input(args[0], fn, "x", 2, 4))) goto fail;
    npy_intp n, c, s;
    ncs(x, &n, &c, &s);
    if (!(gamma = fnl_as_input(args[1], fn, "weight", 1, 1)) || check_vector(gamma, fn, "weight", c) < 0) goto fail;
    if (!(beta = fnl_as_input(args[2], fn, "bias", 1, 1)) || check_vector(beta, fn, "bias", c) < 0) goto fail;
    res = opt_input(args[8], fn, "residual", 2, 4, &ok);
    if (!ok || (res && check_same_shape(res, x, fn, "residual", "the input") < 0)) goto fail;
    npy_intp cshape[1] = {c};
    if (fnl_check_inplace(args[3], fn, "running_mean", 1, cshape) < 0) goto fail;
    if (fnl_check_inplace(args[4], fn, "running_var", 1, cshape) < 0) goto fail;
    if (!(y = fnl_new_output(PyArray_NDIM(x), PyArray_DIMS(x), fn, "y"))) goto fail;
    if (!(mean = fnl_new_output(1, cshape, fn, "mean"))) goto fail;
    if (!(invstd = fnl_new_output(1, cshape, fn, "invstd"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(4.0 * n * c * s,
        status = fnl_batchnorm_act_forward(fdata(x), n, c, s, fdata(gamma), fdata(beta), fbuf(args[3]), fbuf(args[4]),
                                           training, (float)momentum, (float)eps, fdata(res), relu,
                                           (float *)PyArray_DATA(y), (float *)PyArray_DATA(mean),
                                           (float *)PyArray_DATA(invstd), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(x); Py_DECREF(gamma); Py_DECREF(beta); Py_XDECREF(res);
    return Py_BuildValue("(NNN)", y, mean, invstd);
fail:
    Py_XDECREF(x); Py_XDECREF(gamma); Py_XDECREF(beta); Py_XDECREF(res); Py_XDECREF(y); Py_XDECREF(mean);
    Py_XDECREF(invstd);
    return NULL;
}

/* batchnorm_backward(dy, x, gamma, mean, invstd, training, grad_gamma, grad_beta, need_dx, y | None,
 *                    need_masked) -> (dx | None, masked | None). With y (the output of a relu=True
 * forward) the gradient is first masked by y > 0; masked is that masked gradient. */
static PyObject *batchnorm_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.BatchNorm.backward";
    if (fnl_check_nargs(nargs, 11, fn) < 0) return NULL;
    PyArrayObject *dy = NULL, *x = NULL, *gamma = NULL, *mean = NULL, *invstd = NULL, *out = NULL, *dx = NULL,
                  *masked = NULL;
    int training = PyObject_IsTrue(args[5]), need_dx = PyObject_IsTrue(args[8]), need_masked = PyObject_IsTrue(args[10]);
    int ok;
    if (training < 0 || need_dx < 0 || need_masked < 0) return NULL;
    if (!(x = fnl_as_input(args[1], fn, "x", 2, 4))) goto fail;
    if (!(dy = fnl_as_input(args[0], fn, "grad", 2, 4)) || check_same_shape(dy, x, fn, "grad", "the input") < 0) goto fail;
    out = opt_input(args[9], fn, "y", 2, 4, &ok);
    if (!ok || (out && check_same_shape(out, x, fn, "y", "the input") < 0)) goto fail;
    if (need_masked && !out) {
        PyErr_Format(PyExc_ValueError, "[%s] the masked gradient needs the output y of a fused ReLU", fn);
        goto fail;
    }
    npy_intp n, c, s;
    ncs(x, &n, &c, &s);
    if (!(gamma = fnl_as_input(args[2], fn, "weight", 1, 1)) || check_vector(gamma, fn, "weight", c) < 0) goto fail;
    if (!(mean = fnl_as_input(args[3], fn, "mean", 1, 1)) || check_vector(mean, fn, "mean", c) < 0) goto fail;
    if (!(invstd = fnl_as_input(args[4], fn, "invstd", 1, 1)) || check_vector(invstd, fn, "invstd", c) < 0) goto fail;
    npy_intp cshape[1] = {c};
    if (fnl_check_inplace(args[6], fn, "weight.grad", 1, cshape) < 0) goto fail;
    if (fnl_check_inplace(args[7], fn, "bias.grad", 1, cshape) < 0) goto fail;
    if (need_dx && !(dx = fnl_new_output(PyArray_NDIM(x), PyArray_DIMS(x), fn, "grad_x"))) goto fail;
    if (need_masked && !(masked = fnl_new_output(PyArray_NDIM(x), PyArray_DIMS(x), fn, "grad_residual"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(5.0 * n * c * s,
        status = fnl_batchnorm_act_backward(fdata(dy), fdata(x), fdata(out), n, c, s, fdata(gamma), fdata(mean),
                                            fdata(invstd), training, 1, fbuf(args[6]), fbuf(args[7]),
                                            dx ? (float *)PyArray_DATA(dx) : NULL,
                                            masked ? (float *)PyArray_DATA(masked) : NULL, err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(dy); Py_DECREF(x); Py_DECREF(gamma); Py_DECREF(mean); Py_DECREF(invstd); Py_XDECREF(out);
    return Py_BuildValue("(NN)", dx ? (PyObject *)dx : Py_NewRef(Py_None), masked ? (PyObject *)masked : Py_NewRef(Py_None));
fail:
    Py_XDECREF(dy); Py_XDECREF(x); Py_XDECREF(gamma); Py_XDECREF(mean); Py_XDECREF(invstd); Py_XDECREF(out);
    Py_XDECREF(dx); Py_XDECREF(masked);
    return NULL;
}

/* ---- pooling ---- */

/* Parses the 8 ints kh, kw, sh, sw, ph, pw, oh, ow starting at args[first]. */
/* Parses `count` pooling geometry ints from args[first]: kernel_size, stride, padding (6), then
 * the output height and width (count 8). */
static int parse_pool_n(PyObject *const *args, int first, const char *fn, int count, long long *g) {
    static const char *names[8] = {"kernel_size[0]", "kernel_size[1]", "stride[0]", "stride[1]",
                                   "padding[0]", "padding[1]", "output height", "output width"};
    for (int i = 0; i < count; i++) {
        long long lo = (i == 4 || i == 5) ? 0 : 1;
        if (fnl_parse_int(args[first + i], fn, names[i], lo, INT32_MAX, &g[i]) < 0) return -1;
    }
    return 0;
}

static int parse_pool(PyObject *const *args, int first, const char *fn, long long g[8]) {
    return parse_pool_n(args, first, fn, 8, g);
}

static PyObject *maxpool2d_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.MaxPool2d";
    long long g[8];
    if (fnl_check_nargs(nargs, 9, fn) < 0 || parse_pool(args, 1, fn, g) < 0) return NULL;
    PyArrayObject *x = fnl_as_input(args[0], fn, "x", 4, 4), *y = NULL, *idx = NULL;
    if (!x) return NULL;
    npy_intp shape[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), (npy_intp)g[6], (npy_intp)g[7]};
    if (!(y = fnl_new_output(4, shape, fn, "y"))) goto fail;
    if (!(idx = (PyArrayObject *)PyArray_EMPTY(4, shape, NPY_INT32, 0))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(y) * g[0] * g[1],
        status = fnl_maxpool2d_forward(fdata(x), shape[0], shape[1], PyArray_DIM(x, 2), PyArray_DIM(x, 3), g[0], g[1],
                                       g[2], g[3], g[4], g[5], g[6], g[7], (float *)PyArray_DATA(y),
                                       (int32_t *)PyArray_DATA(idx), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(x);
    return Py_BuildValue("(NN)", y, idx);
fail:
    Py_XDECREF(x); Py_XDECREF(y); Py_XDECREF(idx);
    return NULL;
}

/* maxpool2d_backward(dy, indices, h, w) -> dx */
static PyObject *maxpool2d_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.MaxPool2d.backward";
    long long h, w;
    char s1[128], s2[128];
    if (fnl_check_nargs(nargs, 4, fn) < 0 || fnl_parse_int(args[2], fn, "h", 1, INT32_MAX, &h) < 0 ||
        fnl_parse_int(args[3], fn, "w", 1, INT32_MAX, &w) < 0)
        return NULL;
    PyArrayObject *dy = NULL, *idx = NULL, *dx = NULL;
    if (!(dy = fnl_as_input(args[0], fn, "grad", 4, 4))) goto fail;
    if (!PyArray_Check(args[1]) || PyArray_TYPE((PyArrayObject *)args[1]) != NPY_INT32) {
        PyErr_Format(PyExc_TypeError, "[%s] indices must be an int32 numpy array (from the forward pass)", fn);
        goto fail;
    }
    if (!(idx = (PyArrayObject *)PyArray_FROMANY(args[1], NPY_INT32, 4, 4, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)))
        goto fail;
    if (!PyArray_SAMESHAPE(dy, idx)) {
        PyErr_Format(PyExc_ValueError, "[%s] grad must have the shape of the indices %s, got %s", fn,
                     fnl_shape_str(idx, s1, sizeof s1), fnl_shape_str(dy, s2, sizeof s2));
        goto fail;
    }
    npy_intp shape[4] = {PyArray_DIM(dy, 0), PyArray_DIM(dy, 1), (npy_intp)h, (npy_intp)w};
    if (!(dx = fnl_new_output(4, shape, fn, "grad_x"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(dx) + PyArray_SIZE(dy),
        status = fnl_maxpool2d_backward(fdata(dy), (const int32_t *)PyArray_DATA(idx), shape[0] * shape[1],
                                        PyArray_DIM(dy, 2) * PyArray_DIM(dy, 3), (int64_t)h * w,
                                        (float *)PyArray_DATA(dx), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(dy); Py_DECREF(idx);
    return (PyObject *)dx;
fail:
    Py_XDECREF(dy); Py_XDECREF(idx); Py_XDECREF(dx);
    return NULL;
}

/* avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad) -> y */
static PyObject *avgpool2d_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.AvgPool2d";
    long long g[8];
    if (fnl_check_nargs(nargs, 10, fn) < 0 || parse_pool(args, 1, fn, g) < 0) return NULL;
    int include = PyObject_IsTrue(args[9]);
    if (include < 0) return NULL;
    PyArrayObject *x = fnl_as_input(args[0], fn, "x", 4, 4), *y = NULL;
    if (!x) return NULL;
    npy_intp shape[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), (npy_intp)g[6], (npy_intp)g[7]};
    if (!(y = fnl_new_output(4, shape, fn, "y"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(y) * g[0] * g[1],
        status = fnl_avgpool2d_forward(fdata(x), shape[0], shape[1], PyArray_DIM(x, 2), PyArray_DIM(x, 3), g[0], g[1],
                                       g[2], g[3], g[4], g[5], g[6], g[7], include, (float *)PyArray_DATA(y),
                                       err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(x);
    return (PyObject *)y;
fail:
    Py_XDECREF(x); Py_XDECREF(y);
    return NULL;
}

/* avgpool2d_backward(dy, h, w, kh, kw, sh, sw, ph, pw, count_include_pad) -> dx */
static PyObject *avgpool2d_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.AvgPool2d.backward";
    long long h, w, g[8];
    if (fnl_check_nargs(nargs, 10, fn) < 0 || fnl_parse_int(args[1], fn, "h", 1, INT32_MAX, &h) < 0 ||
        fnl_parse_int(args[2], fn, "w", 1, INT32_MAX, &w) < 0)
        return NULL;
    if (parse_pool_n(args, 3, fn, 6, g) < 0) return NULL;
    int include = PyObject_IsTrue(args[9]);
    if (include < 0) return NULL;
    PyArrayObject *dy = fnl_as_input(args[0], fn, "grad", 4, 4), *dx = NULL;
    if (!dy) return NULL;
    npy_intp shape[4] = {PyArray_DIM(dy, 0), PyArray_DIM(dy, 1), (npy_intp)h, (npy_intp)w};
    if (!(dx = fnl_new_output(4, shape, fn, "grad_x"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(dy) * g[0] * g[1],
        status = fnl_avgpool2d_backward(fdata(dy), shape[0], shape[1], h, w, g[0], g[1], g[2], g[3], g[4], g[5],
                                        PyArray_DIM(dy, 2), PyArray_DIM(dy, 3), include, (float *)PyArray_DATA(dx),
                                        err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(dy);
    return (PyObject *)dx;
fail:
    Py_XDECREF(dy); Py_XDECREF(dx);
    return NULL;
}

/* ---- ReLU ---- */

static PyObject *relu_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.ReLU";
    if (fnl_check_nargs(nargs, 1, fn) < 0) return NULL;
    PyArrayObject *x = fnl_as_input(args[0], fn, "x", 1, NPY_MAXDIMS), *y = NULL;
    if (!x) return NULL;
    if (!(y = fnl_new_output(PyArray_NDIM(x), PyArray_DIMS(x), fn, "y"))) { Py_DECREF(x); return NULL; }
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(x),
        status = fnl_relu_forward(fdata(x), PyArray_SIZE(x), (float *)PyArray_DATA(y), err, sizeof err));
    Py_DECREF(x);
    if (fnl_raise_status(status, fn, err) < 0) { Py_DECREF(y); return NULL; }
    return (PyObject *)y;
}

static PyObject *relu_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.ReLU.backward";
    if (fnl_check_nargs(nargs, 2, fn) < 0) return NULL;
    PyArrayObject *dy = NULL, *y = NULL, *dx = NULL;
    if (!(y = fnl_as_input(args[1], fn, "y", 1, NPY_MAXDIMS))) goto fail;
    if (!(dy = fnl_as_input(args[0], fn, "grad", 1, NPY_MAXDIMS)) || check_same_shape(dy, y, fn, "grad", "the output") < 0)
        goto fail;
    if (!(dx = fnl_new_output(PyArray_NDIM(y), PyArray_DIMS(y), fn, "grad_x"))) goto fail;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL((double)PyArray_SIZE(y),
        status = fnl_relu_backward(fdata(dy), fdata(y), PyArray_SIZE(y), (float *)PyArray_DATA(dx), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(dy); Py_DECREF(y);
    return (PyObject *)dx;
fail:
    Py_XDECREF(dy); Py_XDECREF(y); Py_XDECREF(dx);
    return NULL;
}

/* ---- cross-entropy ---- */

/* cross_entropy(logits, labels, smoothing, need_grad) -> (loss, dlogits|None) */
static PyObject *cross_entropy(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.CrossEntropyLoss";
    char s1[128], s2[128];
    double smoothing;
    if (fnl_check_nargs(nargs, 4, fn) < 0 || fnl_parse_float(args[2], fn, "label_smoothing", 0.0, &smoothing) < 0)
        return NULL;
    int need = PyObject_IsTrue(args[3]);
    if (need < 0) return NULL;
    if (smoothing > 1.0) {
        PyErr_Format(PyExc_ValueError, "[%s] label_smoothing must be in [0, 1], got %R", fn, args[2]);
        return NULL;
    }
    PyArrayObject *z = NULL, *any = NULL, *labels = NULL, *dz = NULL;
    if (!(z = fnl_as_input(args[0], fn, "logits", 2, 2))) goto fail;
    if (!(any = (PyArrayObject *)PyArray_FROMANY(args[1], NPY_NOTYPE, 0, 0, 0))) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "[%s] labels must be an array of integers, got %.100s", fn, Py_TYPE(args[1])->tp_name);
        goto fail;
    }
    char kind = PyArray_DESCR(any)->kind;
    if (kind != 'i' && kind != 'u') {
        PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(any));
        PyErr_Format(PyExc_TypeError, "[%s] labels must hold integers, got dtype %s", fn, s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        goto fail;
    }
    if (PyArray_NDIM(any) != 1 || PyArray_DIM(any, 0) != PyArray_DIM(z, 0)) {
        PyErr_Format(PyExc_ValueError, "[%s] labels must have shape (%lld,) (one per row of logits %s), got %s", fn,
                     (long long)PyArray_DIM(z, 0), fnl_shape_str(z, s1, sizeof s1), fnl_shape_str(any, s2, sizeof s2));
        goto fail;
    }
    if (!(labels = (PyArrayObject *)PyArray_FROMANY((PyObject *)any, NPY_INT64, 1, 1,
                                                    NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST)))
        goto fail;
    if (need && !(dz = fnl_new_output(2, PyArray_DIMS(z), fn, "grad_logits"))) goto fail;
    double loss = 0;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    FNL_ENGINE_CALL(20.0 * PyArray_SIZE(z),
        status = fnl_cross_entropy(fdata(z), (const int64_t *)PyArray_DATA(labels), PyArray_DIM(z, 0), PyArray_DIM(z, 1),
                                   (float)smoothing, &loss, dz ? (float *)PyArray_DATA(dz) : NULL, err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    Py_DECREF(z); Py_DECREF(any); Py_DECREF(labels);
    if (dz) return Py_BuildValue("(dN)", loss, dz);
    return Py_BuildValue("(dO)", loss, Py_None);
fail:
    Py_XDECREF(z); Py_XDECREF(any); Py_XDECREF(labels); Py_XDECREF(dz);
    return NULL;
}

/* ---- memory pool of the layers' arrays ----
 *
 * A training step allocates the same set of large arrays (activations, gradients) every
 * time and frees them by the next step. Fresh large blocks come from mmap and cost a page
 * fault per 4 KiB on first touch (a third of a ResNet-20 step on this machine's kernel). The
 * pool is a NumPy memory handler (NEP 49) that the nn layers install around their forward and
 * backward passes (pool_enter / pool_exit): blocks of at least POOL_MIN_BYTES freed by such
 * arrays are kept (up to a byte limit, oldest evicted first) and handed out again to an
 * allocation of exactly the same size, most recently freed first. Arrays remember their
 * handler, so they return to the pool wherever they are freed. Thread-safe (one mutex). */

#define POOL_SLOTS 1024
#define POOL_MIN_BYTES ((size_t)1 << 16)
#define POOL_HUGE_BYTES ((size_t)1 << 22)

static struct { void *ptr; size_t size; } pool_slot[POOL_SLOTS];
static size_t pool_count = 0, pool_bytes = 0, pool_limit = (size_t)1 << 30;
static unsigned long long pool_hits = 0, pool_misses = 0;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* Drops the oldest cached blocks until `bytes` more fit under the limit (lock held). */
static void pool_evict_for(size_t bytes) {
    size_t drop = 0;
    while (drop < pool_count && pool_bytes + bytes > pool_limit) {
        free(pool_slot[drop].ptr);
        pool_bytes -= pool_slot[drop].size;
        drop++;
    }
    if (drop) {
        memmove(pool_slot, pool_slot + drop, (pool_count - drop) * sizeof pool_slot[0]);
        pool_count -= drop;
    }
}

static void *pool_malloc(void *ctx, size_t size) {
    (void)ctx;
    if (size < POOL_MIN_BYTES) return malloc(size ? size : 1);
    pthread_mutex_lock(&pool_lock);
    for (size_t i = pool_count; i-- > 0;) {
        if (pool_slot[i].size == size) {
            void *p = pool_slot[i].ptr;
            memmove(pool_slot + i, pool_slot + i + 1, (pool_count - i - 1) * sizeof pool_slot[0]);
            pool_count--;
            pool_bytes -= size;
            pool_hits++;
            pthread_mutex_unlock(&pool_lock);
            return p;
        }
    }
    pool_misses++;
    pthread_mutex_unlock(&pool_lock);
    void *p = malloc(size);
#ifdef MADV_HUGEPAGE
    if (p && size >= POOL_HUGE_BYTES) {  /* as NumPy does for large arrays: fewer faults and TLB misses */
        uintptr_t start = ((uintptr_t)p + 4095u) & ~(uintptr_t)4095u;
        madvise((void *)start, size - (start - (uintptr_t)p), MADV_HUGEPAGE);
    }
#endif
    return p;
}

static void *pool_calloc(void *ctx, size_t nelem, size_t elsize) {
    (void)ctx;
    return calloc(nelem ? nelem : 1, elsize ? elsize : 1);
}

static void *pool_realloc(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    return realloc(ptr, size ? size : 1);
}

static void pool_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (!ptr) return;
    if (size < POOL_MIN_BYTES || size > pool_limit) { free(ptr); return; }
    pthread_mutex_lock(&pool_lock);
    pool_evict_for(size);
    if (pool_count == POOL_SLOTS) pool_evict_for(pool_limit);  /* table full: start over */
    pool_slot[pool_count].ptr = ptr;
    pool_slot[pool_count].size = size;
    pool_count++;
    pool_bytes += size;
    pthread_mutex_unlock(&pool_lock);
}

static PyDataMem_Handler pool_handler = {
    "fnl_nn_pool", 1, {NULL, pool_malloc, pool_calloc, pool_realloc, pool_free},
};
static PyObject *pool_capsule = NULL;

static int pool_supported(void) { return PyArray_GetNDArrayCFeatureVersion() >= 0x0000000f; }

/* A child forked while another thread held the lock gets a fresh, unlocked one. */
static void pool_after_fork_child(void) { pthread_mutex_init(&pool_lock, NULL); }

/* pool_enter() -> the previous handler (pass it to pool_exit), or None when unsupported. */
static PyObject *pool_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (fnl_check_nargs(nargs, 0, "fnl.nn.memory_pool") < 0) return NULL;
    if (!pool_supported()) Py_RETURN_NONE;
    if (!pool_capsule) {
        if (!(pool_capsule = PyCapsule_New(&pool_handler, "mem_handler", NULL))) return NULL;
        pthread_atfork(NULL, NULL, pool_after_fork_child);
    }
    return PyDataMem_SetHandler(pool_capsule);
}

static PyObject *pool_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (fnl_check_nargs(nargs, 1, "fnl.nn.memory_pool") < 0) return NULL;
    if (args[0] == Py_None) Py_RETURN_NONE;
    PyObject *mine = PyDataMem_SetHandler(args[0]);
    if (!mine) return NULL;
    Py_DECREF(mine);
    Py_RETURN_NONE;
}

/* pool_config(limit_bytes | None) -> (limit, cached bytes, cached blocks, hits, misses);
 * a new limit evicts what no longer fits (0 empties the pool). */
static PyObject *pool_config(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.nn.memory_pool";
    long long limit = -1;
    if (fnl_check_nargs(nargs, 1, fn) < 0) return NULL;
    if (args[0] != Py_None && fnl_parse_int(args[0], fn, "limit", 0, (long long)1 << 50, &limit) < 0) return NULL;
    pthread_mutex_lock(&pool_lock);
    if (limit >= 0) {
        pool_limit = (size_t)limit;
        pool_evict_for(0);
    }
    PyObject *out = Py_BuildValue("(nnnKK)", (Py_ssize_t)pool_limit, (Py_ssize_t)pool_bytes, (Py_ssize_t)pool_count,
                                  pool_hits, pool_misses);
    pthread_mutex_unlock(&pool_lock);
    return out;
}

#define M(name) {#name, (PyCFunction)(void (*)(void))name, METH_FASTCALL, NULL}
PyMethodDef fnl_nn_methods[] = {
    M(linear_forward), M(linear_backward), M(lowrank_linear_forward), M(lowrank_linear_backward),
    M(batchnorm_forward), M(batchnorm_backward), M(maxpool2d_forward), M(maxpool2d_backward),
    M(avgpool2d_forward), M(avgpool2d_backward), M(relu_forward), M(relu_backward), M(cross_entropy),
    M(pool_enter), M(pool_exit), M(pool_config),
    {NULL, NULL, 0, NULL},
};
