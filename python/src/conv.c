/* Bindings of the convolutions: dense conv2d and the fused low-rank conv2d, forward and
 * backward. The Python layer (fnl/conv.py) turns keywords, ints-or-pairs and defaults into the
 * positional arguments below; this file checks arrays and shapes, asks the engine for the
 * geometry and workspace size, allocates outputs, releases the GIL and calls the engine. */
#include "fnl_native.h"

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

/* Everything one call owns; released by conv_free on every path. */
typedef struct {
    PyArrayObject *x, *K, *U, *V, *bias, *gy, *inter, *ws;
    fnl_middle_t mid;
    int64_t geom[FNL_CONV_GEOM_LEN];
} conv_t;

static void conv_free(conv_t *c) {
    Py_XDECREF(c->x); Py_XDECREF(c->K); Py_XDECREF(c->U); Py_XDECREF(c->V);
    Py_XDECREF(c->bias); Py_XDECREF(c->gy); Py_XDECREF(c->inter); Py_XDECREF(c->ws);
    fnl_middle_free(&c->mid);
}

static const float *data_or_null(PyArrayObject *a) { return a ? (const float *)PyArray_DATA(a) : NULL; }

/* Parses the six per-axis options {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w} into geom[7..12]. */
static int parse_options(PyObject *const *opts, const char *fn, int64_t *geom) {
    static const char *names[6] = {"stride (height)", "stride (width)", "padding (height)", "padding (width)",
                                   "dilation (height)", "dilation (width)"};
    static const long long lo[6] = {1, 1, 0, 0, 1, 1};
    for (int i = 0; i < 6; i++) {
        long long v;
        if (fnl_parse_int(opts[i], fn, names[i], lo[i], INT32_MAX, &v) < 0) return -1;
        geom[7 + i] = v;
    }
    return 0;
}

/* Parses kh, kw (ints >= 1) into geom[5], geom[6]. */
static int parse_kernel_size(PyObject *kh, PyObject *kw, const char *fn, int64_t *geom) {
    long long h, w;
    if (fnl_parse_int(kh, fn, "kernel_size (height)", 1, INT32_MAX, &h) < 0 ||
        fnl_parse_int(kw, fn, "kernel_size (width)", 1, INT32_MAX, &w) < 0)
        return -1;
    geom[5] = h;
    geom[6] = w;
    return 0;
}

/* x (n, c_in, h, w) into c->x and geom[0..3]. */
static int parse_x(PyObject *obj, const char *fn, conv_t *c) {
    if (!(c->x = fnl_as_input(obj, fn, "x", 4, 4))) return -1;
    for (int i = 0; i < 4; i++) c->geom[i] = PyArray_DIM(c->x, i);
    return 0;
}

/* bias: None or (c_out,). */
static int parse_bias(PyObject *obj, const char *fn, conv_t *c) {
    if (obj == Py_None) return 0;
    char s[128];
    if (!(c->bias = fnl_as_input(obj, fn, "bias", 1, 1))) return -1;
    if (PyArray_DIM(c->bias, 0) != c->geom[4]) {
        PyErr_Format(PyExc_ValueError, "[%s] bias must have shape (c_out,) = (%lld,), got %s", fn,
                     (long long)c->geom[4], fnl_shape_str(c->bias, s, sizeof s));
        return -1;
    }
    return 0;
}

/* grad_y: (n, c_out, out_h, out_w). */
static int parse_grad(PyObject *obj, const char *fn, conv_t *c, int64_t oh, int64_t ow) {
    char s[128];
    if (!(c->gy = fnl_as_input(obj, fn, "grad_y", 4, 4))) return -1;
    int64_t want[4] = {c->geom[0], c->geom[4], oh, ow};
    for (int i = 0; i < 4; i++) {
        if (PyArray_DIM(c->gy, i) != want[i]) {
            PyErr_Format(PyExc_ValueError,
                         "[%s] grad_y must have the output's shape (n, c_out, out_h, out_w) = (%lld, %lld, %lld, %lld), got %s",
                         fn, (long long)want[0], (long long)want[1], (long long)want[2], (long long)want[3],
                         fnl_shape_str(c->gy, s, sizeof s));
            return -1;
        }
    }
    return 0;
}

/* U, V and middle of a low-rank kernel; sets geom[4] = c_out = rows(U) / kh and the ranks. */
static int parse_factors(PyObject *U, PyObject *V, PyObject *middle, const char *fn, conv_t *c) {
    char s[128];
    if (!(c->U = fnl_as_input(U, fn, "U", 2, 2))) return -1;
    if (!(c->V = fnl_as_input(V, fn, "V", 2, 2))) return -1;
    int64_t kh = c->geom[5], kw = c->geom[6], cin = c->geom[1];
    if (PyArray_DIM(c->U, 0) % kh != 0) {
        PyErr_Format(PyExc_ValueError, "[%s] U must have c_out*kh rows (a multiple of kh=%lld), got shape %s", fn,
                     (long long)kh, fnl_shape_str(c->U, s, sizeof s));
        return -1;
    }
    c->geom[4] = PyArray_DIM(c->U, 0) / kh;
    if (cin > INT32_MAX || PyArray_DIM(c->V, 0) != cin * kw) {
        PyErr_Format(PyExc_ValueError, "[%s] V must have c_in*kw = %lld*%lld = %lld rows (x has c_in=%lld channels), got shape %s",
                     fn, (long long)cin, (long long)kw, (long long)(cin * kw), (long long)cin,
                     fnl_shape_str(c->V, s, sizeof s));
        return -1;
    }
    c->mid.ranks[0] = PyArray_DIM(c->U, 1);
    return fnl_parse_middle(middle, c->V, fn, 2, 0, &c->mid);
}

/* The caller's workspace: None, or an object whose _reserve(count) returns a float32 buffer
 * of at least `count` floats (fnl.ConvWorkspace). Sets c->ws (NULL for None). */
static int reserve_workspace(PyObject *ws, const char *fn, int64_t count, conv_t *c) {
    if (ws == Py_None) return 0;
    PyObject *buf = PyObject_CallMethod(ws, "_reserve", "L", (long long)count);
    if (!buf) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "[%s] workspace must be None or a fnl.ConvWorkspace, got %.100s", fn,
                         Py_TYPE(ws)->tp_name);
        }
        return -1;
    }
    if (!PyArray_Check(buf) || PyArray_TYPE((PyArrayObject *)buf) != NPY_FLOAT32 ||
        PyArray_NDIM((PyArrayObject *)buf) != 1 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)buf) ||
        !PyArray_ISALIGNED((PyArrayObject *)buf) || !PyArray_ISWRITEABLE((PyArrayObject *)buf) ||
        PyArray_SIZE((PyArrayObject *)buf) < count) {
        PyErr_Format(PyExc_TypeError,
                     "[%s] workspace._reserve(%lld) must return a writeable, contiguous 1-D float32 array of at least "
                     "that many floats, got %.100s", fn, (long long)count, Py_TYPE(buf)->tp_name);
        Py_DECREF(buf);
        return -1;
    }
    c->ws = (PyArrayObject *)buf;
    PyArrayObject *inputs[6] = {c->x, c->K, c->U, c->V, c->gy, c->inter};
    for (int i = 0; i < 6; i++) {
        if (inputs[i] && fnl_overlap(c->ws, inputs[i])) {
            PyErr_Format(PyExc_ValueError, "[%s] the workspace buffer overlaps an input array in memory", fn);
            return -1;
        }
    }
    return 0;
}

static float *ws_data(conv_t *c) { return c->ws ? (float *)PyArray_DATA(c->ws) : NULL; }
static int64_t ws_count(conv_t *c) { return c->ws ? (int64_t)PyArray_SIZE(c->ws) : 0; }

/* Floating-point work of a call, to decide on releasing the GIL. */
static double conv_work(const conv_t *c) {
    return (double)c->geom[0] * (double)c->geom[1] * (double)c->geom[2] * (double)c->geom[3] *
           (double)c->geom[5] * (double)c->geom[6];
}

/* ---------------------------------------------------------------- dense */

/* K (c_out, c_in, kh, kw) into c->K and geom[4..6]. */
static int parse_kernel(PyObject *obj, const char *fn, conv_t *c) {
    char s1[128], s2[128];
    if (!(c->K = fnl_as_input(obj, fn, "K", 4, 4))) return -1;
    if (PyArray_DIM(c->K, 1) != c->geom[1]) {
        PyErr_Format(PyExc_ValueError, "[%s] K must have shape (c_out, c_in, kh, kw) with c_in = %lld (x has shape %s), got %s",
                     fn, (long long)c->geom[1], fnl_shape_str(c->x, s1, sizeof s1), fnl_shape_str(c->K, s2, sizeof s2));
        return -1;
    }
    c->geom[4] = PyArray_DIM(c->K, 0);
    c->geom[5] = PyArray_DIM(c->K, 2);
    c->geom[6] = PyArray_DIM(c->K, 3);
    return 0;
}

/* conv2d(x, K, bias, sh, sw, ph, pw, dh, dw, workspace) -> y */
static PyObject *conv2d(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.conv2d";
    conv_t c;
    memset(&c, 0, sizeof c);
    PyArrayObject *y = NULL;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    int64_t oh, ow, wsf;
    if (fnl_check_nargs(nargs, 10, fn) < 0 || parse_options(args + 3, fn, c.geom) < 0) goto fail;
    if (parse_x(args[0], fn, &c) < 0 || parse_kernel(args[1], fn, &c) < 0 || parse_bias(args[2], fn, &c) < 0) goto fail;
    status = fnl_conv2d_plan(c.geom, &oh, &ow, &wsf, NULL, err, sizeof err);
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    if (reserve_workspace(args[9], fn, wsf, &c) < 0) goto fail;
    {
        npy_intp shape[4] = {(npy_intp)c.geom[0], (npy_intp)c.geom[4], (npy_intp)oh, (npy_intp)ow};
        if (!(y = fnl_new_output(4, shape, fn, "y"))) goto fail;
    }
    FNL_ENGINE_CALL(conv_work(&c),
        status = fnl_conv2d_forward(c.geom, PyArray_DATA(c.x), PyArray_DATA(c.K), data_or_null(c.bias),
                                    PyArray_DATA(y), ws_data(&c), ws_count(&c), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    conv_free(&c);
    return (PyObject *)y;
fail:
    conv_free(&c);
    Py_XDECREF(y);
    return NULL;
}

/* conv2d_backward(grad_y, x, K, has_bias, sh, sw, ph, pw, dh, dw, workspace) -> (dx, dK, dbias | None) */
static PyObject *conv2d_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.conv2d_backward";
    conv_t c;
    memset(&c, 0, sizeof c);
    PyArrayObject *dx = NULL, *dK = NULL, *db = NULL;
    char err[FNL_ERR_CAP] = "";
    int32_t status;
    int64_t oh, ow, wsb;
    int has_bias;
    if (fnl_check_nargs(nargs, 11, fn) < 0 || parse_options(args + 4, fn, c.geom) < 0) goto fail;
    if ((has_bias = PyObject_IsTrue(args[3])) < 0) goto fail;
    if (parse_x(args[1], fn, &c) < 0 || parse_kernel(args[2], fn, &c) < 0) goto fail;
    status = fnl_conv2d_plan(c.geom, &oh, &ow, NULL, &wsb, err, sizeof err);
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    if (parse_grad(args[0], fn, &c, oh, ow) < 0) goto fail;
    if (reserve_workspace(args[10], fn, wsb, &c) < 0) goto fail;
    if (!(dx = fnl_new_output(4, PyArray_DIMS(c.x), fn, "dx"))) goto fail;
    if (!(dK = fnl_new_output(4, PyArray_DIMS(c.K), fn, "dK"))) goto fail;
    if (has_bias) {
        npy_intp bshape[1] = {(npy_intp)c.geom[4]};
        if (!(db = fnl_new_output(1, bshape, fn, "dbias"))) goto fail;
    }
    FNL_ENGINE_CALL(conv_work(&c),
        status = fnl_conv2d_backward(c.geom, PyArray_DATA(c.gy), PyArray_DATA(c.x), PyArray_DATA(c.K),
                                     PyArray_DATA(dx), PyArray_DATA(dK), db ? (float *)PyArray_DATA(db) : NULL,
                                     ws_data(&c), ws_count(&c), err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    conv_free(&c);
    if (!db) { Py_INCREF(Py_None); db = (PyArrayObject *)Py_None; }
    return Py_BuildValue("(NNN)", dx, dK, db);
fail:
    conv_free(&c);
    Py_XDECREF(dx); Py_XDECREF(dK); Py_XDECREF(db);
    return NULL;
}

/* conv2d_plan(n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw) -> dict */
static PyObject *conv2d_plan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.conv2d";
    static const char *names[7] = {"n", "c_in", "h", "w", "c_out", "kernel_size (height)", "kernel_size (width)"};
    int64_t geom[FNL_CONV_GEOM_LEN], oh, ow, wsf, wsb;
    if (fnl_check_nargs(nargs, 13, fn) < 0) return NULL;
    for (int i = 0; i < 7; i++) {
        long long v;
        if (fnl_parse_int(args[i], fn, names[i], 1, INT32_MAX, &v) < 0) return NULL;
        geom[i] = v;
    }
    if (parse_options(args + 7, fn, geom) < 0) return NULL;
    char err[FNL_ERR_CAP] = "";
    if (fnl_raise_status(fnl_conv2d_plan(geom, &oh, &ow, &wsf, &wsb, err, sizeof err), fn, err) < 0) return NULL;
    return Py_BuildValue("{s:L,s:L,s:L,s:L}", "out_h", (long long)oh, "out_w", (long long)ow,
                         "workspace_forward", (long long)wsf, "workspace_backward", (long long)wsb);
}

/* ---------------------------------------------------------------- low rank */

static int parse_path(PyObject *obj, const char *fn, int32_t *path) {
    long long p;
    if (fnl_parse_int(obj, fn, "path", 0, 3, &p) < 0) return -1;
    *path = (int32_t)p;
    return 0;
}

typedef struct {
    int32_t path;
    int64_t rank, oh, ow, wsf, wsb, inter;
} lr_plan_t;

static int lr_plan(conv_t *c, int32_t path, const char *fn, lr_plan_t *p) {
    char err[FNL_ERR_CAP] = "";
    int32_t status = fnl_lowrank_conv2d_plan(c->geom, c->mid.depth, c->mid.ranks, path, &p->path, &p->rank, &p->oh, &p->ow,
                                             &p->wsf, &p->wsb, &p->inter, err, sizeof err);
    return fnl_raise_status(status, fn, err);
}

/* lowrank_conv2d(x, U, V, middle, bias, kh, kw, sh, sw, ph, pw, dh, dw, path, workspace, save)
 *   -> y, or (y, intermediate | None) when save is true */
static PyObject *lowrank_conv2d(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.lowrank_conv2d";
    conv_t c;
    memset(&c, 0, sizeof c);
    PyArrayObject *y = NULL, *z = NULL;
    char err[FNL_ERR_CAP] = "";
    int32_t status, path;
    int save;
    lr_plan_t p;
    if (fnl_check_nargs(nargs, 16, fn) < 0 || parse_kernel_size(args[5], args[6], fn, c.geom) < 0 ||
        parse_options(args + 7, fn, c.geom) < 0 || parse_path(args[13], fn, &path) < 0)
        goto fail;
    if ((save = PyObject_IsTrue(args[15])) < 0) goto fail;
    if (parse_x(args[0], fn, &c) < 0 || parse_factors(args[1], args[2], args[3], fn, &c) < 0 ||
        parse_bias(args[4], fn, &c) < 0)
        goto fail;
    if (lr_plan(&c, path, fn, &p) < 0) goto fail;
    if (reserve_workspace(args[14], fn, p.wsf, &c) < 0) goto fail;
    {
        npy_intp shape[4] = {(npy_intp)c.geom[0], (npy_intp)c.geom[4], (npy_intp)p.oh, (npy_intp)p.ow};
        if (!(y = fnl_new_output(4, shape, fn, "y"))) goto fail;
        npy_intp zshape[4] = {(npy_intp)p.rank, (npy_intp)c.geom[0], (npy_intp)c.geom[2], (npy_intp)p.ow};
        if (save && p.inter > 0 && !(z = fnl_new_output(4, zshape, fn, "the intermediate"))) goto fail;
    }
    FNL_ENGINE_CALL(conv_work(&c),
        status = fnl_lowrank_conv2d_forward(c.geom, c.mid.depth, c.mid.ranks, PyArray_DATA(c.x), PyArray_DATA(c.U),
                                            PyArray_DATA(c.V), c.mid.data, data_or_null(c.bias), path, PyArray_DATA(y),
                                            z ? (float *)PyArray_DATA(z) : NULL, ws_data(&c), ws_count(&c),
                                            err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    conv_free(&c);
    if (!save) return (PyObject *)y;
    if (!z) { Py_INCREF(Py_None); z = (PyArrayObject *)Py_None; }
    return Py_BuildValue("(NN)", y, z);
fail:
    conv_free(&c);
    Py_XDECREF(y); Py_XDECREF(z);
    return NULL;
}

/* lowrank_conv2d_backward(grad_y, x, U, V, middle, has_bias, kh, kw, sh, sw, ph, pw, dh, dw, path, workspace,
 *                         intermediate) -> (dx, dU, dV, dbias | None, [dM_1, ...]) */
static PyObject *lowrank_conv2d_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.lowrank_conv2d_backward";
    conv_t c;
    memset(&c, 0, sizeof c);
    PyArrayObject *dx = NULL, *dU = NULL, *dV = NULL, *db = NULL;
    PyObject *dmids = NULL;
    char err[FNL_ERR_CAP] = "", s[128];
    int32_t status, path;
    int has_bias;
    lr_plan_t p;
    if (fnl_check_nargs(nargs, 17, fn) < 0 || parse_kernel_size(args[6], args[7], fn, c.geom) < 0 ||
        parse_options(args + 8, fn, c.geom) < 0 || parse_path(args[14], fn, &path) < 0)
        goto fail;
    if ((has_bias = PyObject_IsTrue(args[5])) < 0) goto fail;
    if (parse_x(args[1], fn, &c) < 0 || parse_factors(args[2], args[3], args[4], fn, &c) < 0) goto fail;
    if (lr_plan(&c, path, fn, &p) < 0) goto fail;
    if (parse_grad(args[0], fn, &c, p.oh, p.ow) < 0) goto fail;
    if (args[16] != Py_None) {
        if (p.inter == 0) {
            PyErr_Format(PyExc_ValueError,
                         "[%s] intermediate must be None on the compose path (the forward pass saves none)", fn);
            goto fail;
        }
        if (!(c.inter = fnl_as_input(args[16], fn, "intermediate", 4, 4))) goto fail;
        int64_t want[4] = {p.rank, c.geom[0], c.geom[2], p.ow};
        for (int i = 0; i < 4; i++) {
            if (PyArray_DIM(c.inter, i) != want[i]) {
                PyErr_Format(PyExc_ValueError,
                             "[%s] intermediate must have shape (r, n, h, out_w) = (%lld, %lld, %lld, %lld) as saved by "
                             "the forward pass, got %s", fn, (long long)want[0], (long long)want[1],
                             (long long)want[2], (long long)want[3], fnl_shape_str(c.inter, s, sizeof s));
                goto fail;
            }
        }
    }
    if (reserve_workspace(args[15], fn, p.wsb, &c) < 0) goto fail;
    if (!(dx = fnl_new_output(4, PyArray_DIMS(c.x), fn, "dx"))) goto fail;
    if (!(dU = fnl_new_output(2, PyArray_DIMS(c.U), fn, "dU"))) goto fail;
    if (!(dV = fnl_new_output(2, PyArray_DIMS(c.V), fn, "dV"))) goto fail;
    if (has_bias) {
        npy_intp bshape[1] = {(npy_intp)c.geom[4]};
        if (!(db = fnl_new_output(1, bshape, fn, "dbias"))) goto fail;
    }
    if (!(dmids = PyList_New(c.mid.depth))) goto fail;
    float *dmp[FNL_MAX_DEPTH];
    for (int j = 0; j < c.mid.depth; j++) {
        PyArrayObject *d = fnl_new_output(2, PyArray_DIMS(c.mid.arr[j]), fn, "dmiddle");
        if (!d) goto fail;
        PyList_SET_ITEM(dmids, j, (PyObject *)d);
        dmp[j] = (float *)PyArray_DATA(d);
    }
    FNL_ENGINE_CALL(conv_work(&c),
        status = fnl_lowrank_conv2d_backward(c.geom, c.mid.depth, c.mid.ranks, PyArray_DATA(c.gy), PyArray_DATA(c.x),
                                             PyArray_DATA(c.U), PyArray_DATA(c.V), c.mid.data, data_or_null(c.inter),
                                             path, PyArray_DATA(dx), PyArray_DATA(dU), PyArray_DATA(dV), dmp,
                                             db ? (float *)PyArray_DATA(db) : NULL, ws_data(&c), ws_count(&c),
                                             err, sizeof err));
    if (fnl_raise_status(status, fn, err) < 0) goto fail;
    conv_free(&c);
    if (!db) { Py_INCREF(Py_None); db = (PyArrayObject *)Py_None; }
    return Py_BuildValue("(NNNNN)", dx, dU, dV, db, dmids);
fail:
    conv_free(&c);
    Py_XDECREF(dx); Py_XDECREF(dU); Py_XDECREF(dV); Py_XDECREF(db); Py_XDECREF(dmids);
    return NULL;
}

/* lowrank_conv2d_plan(n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, ranks, path) -> dict */
static PyObject *lowrank_conv2d_plan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.lowrank_conv2d";
    static const char *names[7] = {"n", "c_in", "h", "w", "c_out", "kernel_size (height)", "kernel_size (width)"};
    conv_t c;
    memset(&c, 0, sizeof c);
    int32_t path;
    lr_plan_t p;
    if (fnl_check_nargs(nargs, 15, fn) < 0) return NULL;
    for (int i = 0; i < 7; i++) {
        long long v;
        if (fnl_parse_int(args[i], fn, names[i], 1, INT32_MAX, &v) < 0) return NULL;
        c.geom[i] = v;
    }
    if (parse_options(args + 7, fn, c.geom) < 0 || parse_path(args[14], fn, &path) < 0) return NULL;
    PyObject *ranks = args[13];
    if (!PyTuple_Check(ranks) || PyTuple_GET_SIZE(ranks) < 1 || PyTuple_GET_SIZE(ranks) > FNL_MAX_DEPTH + 1) {
        PyErr_Format(PyExc_TypeError, "[%s] ranks must be a tuple of 1..%d ints", fn, FNL_MAX_DEPTH + 1);
        return NULL;
    }
    c.mid.depth = (int)PyTuple_GET_SIZE(ranks) - 1;
    for (int j = 0; j <= c.mid.depth; j++) {
        long long v;
        if (fnl_parse_int(PyTuple_GET_ITEM(ranks, j), fn, "rank", 1, INT32_MAX, &v) < 0) return NULL;
        c.mid.ranks[j] = v;
    }
    if (lr_plan(&c, path, fn, &p) < 0) return NULL;
    static const char *paths[3] = {"auto", "fused", "compose"};
    return Py_BuildValue("{s:s,s:L,s:L,s:L,s:L,s:L,s:L}", "path", paths[p.path < 0 || p.path > 2 ? 0 : p.path],
                         "rank", (long long)p.rank, "out_h", (long long)p.oh, "out_w", (long long)p.ow,
                         "workspace_forward", (long long)p.wsf, "workspace_backward", (long long)p.wsb,
                         "intermediate_count", (long long)p.inter);
}

PyMethodDef fnl_conv_methods[] = {
    {"conv2d", FASTCALL(conv2d), "conv2d(x, K, bias, sh, sw, ph, pw, dh, dw, workspace) -> y"},
    {"conv2d_backward", FASTCALL(conv2d_backward),
     "conv2d_backward(grad_y, x, K, has_bias, sh, sw, ph, pw, dh, dw, workspace) -> (dx, dK, dbias)"},
    {"conv2d_plan", FASTCALL(conv2d_plan), "conv2d_plan(n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw) -> dict"},
    {"lowrank_conv2d", FASTCALL(lowrank_conv2d),
     "lowrank_conv2d(x, U, V, middle, bias, kh, kw, sh, sw, ph, pw, dh, dw, path, workspace, save) -> y or (y, z)"},
    {"lowrank_conv2d_backward", FASTCALL(lowrank_conv2d_backward),
     "lowrank_conv2d_backward(grad_y, x, U, V, middle, has_bias, kh, kw, sh, sw, ph, pw, dh, dw, path, workspace, "
     "intermediate) -> (dx, dU, dV, dbias, [dM])"},
    {"lowrank_conv2d_plan", FASTCALL(lowrank_conv2d_plan),
     "lowrank_conv2d_plan(n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, ranks, path) -> dict"},
    {NULL, NULL, 0, NULL},
};
