/* Argument parsing and validation shared by every function of fnl._native. */
#include "fnl_native.h"
#include <math.h>

int fnl_raise_status(int32_t status, const char *fn, const char *msg) {
    if (status == FNL_OK) return 0;
    PyObject *type = PyExc_RuntimeError;
    if (status == FNL_EVALUE) type = PyExc_ValueError;
    else if (status == FNL_ENOMEM) type = PyExc_MemoryError;
    PyErr_Format(type, "[%s] %s", fn, msg[0] ? msg : "engine failure without a message");
    return -1;
}

const char *fnl_shape_str(PyArrayObject *a, char *buf, size_t cap) {
    size_t used = 0;
    int nd = PyArray_NDIM(a);
    used += (size_t)snprintf(buf + used, cap - used, "(");
    for (int i = 0; i < nd && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)PyArray_DIM(a, i));
    if (used < cap) snprintf(buf + used, cap - used, nd == 1 ? ",)" : ")");
    return buf;
}

static int check_dtype_kind(PyArray_Descr *d, const char *fn, const char *arg) {
    char kind = d->kind;
    if (kind == 'i' || kind == 'u' || kind == 'f') return 0;
    PyObject *s = PyObject_Str((PyObject *)d);
    PyErr_Format(PyExc_TypeError, "[%s] %s must hold real numbers (converted to float32), got dtype %s",
                 fn, arg, s ? PyUnicode_AsUTF8(s) : "?");
    Py_XDECREF(s);
    return -1;
}

PyArrayObject *fnl_as_input(PyObject *obj, const char *fn, const char *arg, int min_nd, int max_nd) {
    /* The common case first: an exact float32 ndarray that is already C-contiguous, aligned,
     * native-endian, non-empty and of an accepted rank is used as is (the conversion below
     * would return the same object, at several times the cost of this check on tiny calls). */
    if (PyArray_CheckExact(obj)) {
        PyArrayObject *a = (PyArrayObject *)obj;
        int nd = PyArray_NDIM(a);
        if (PyArray_TYPE(a) == NPY_FLOAT32 && nd >= min_nd && nd <= max_nd && PyArray_ISNOTSWAPPED(a) &&
            PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a) && PyArray_SIZE(a) > 0) {
            Py_INCREF(obj);
            return a;
        }
    }
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "[%s] %s must be an array, got None", fn, arg);
        return NULL;
    }
    PyArrayObject *any;
    if (PyArray_Check(obj)) {
        Py_INCREF(obj);
        any = (PyArrayObject *)obj;
    } else {
        any = (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
        if (!any) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "[%s] %s must be an array of real numbers, got %.100s",
                         fn, arg, Py_TYPE(obj)->tp_name);
            return NULL;
        }
    }
    if (check_dtype_kind(PyArray_DESCR(any), fn, arg) < 0) { Py_DECREF(any); return NULL; }
    int nd = PyArray_NDIM(any);
    if (nd < min_nd || nd > max_nd) {
        char shape[128];
        if (min_nd == max_nd)
            PyErr_Format(PyExc_ValueError, "[%s] %s must have %d dimensions, got shape %s", fn, arg, min_nd,
                         fnl_shape_str(any, shape, sizeof shape));
        else
            PyErr_Format(PyExc_ValueError, "[%s] %s must have %d to %d dimensions, got shape %s", fn, arg,
                         min_nd, max_nd, fnl_shape_str(any, shape, sizeof shape));
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_SIZE(any) == 0) {
        char shape[128];
        PyErr_Format(PyExc_ValueError, "[%s] %s must not be empty, got shape %s", fn, arg,
                     fnl_shape_str(any, shape, sizeof shape));
        Py_DECREF(any);
        return NULL;
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_FromAny(
        (PyObject *)any, PyArray_DescrFromType(NPY_FLOAT32), 0, 0,
        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST, NULL);
    Py_DECREF(any);
    if (!out && PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_MemoryError, "[%s] cannot allocate a float32 copy of %s", fn, arg);
    }
    return out;
}

int fnl_check_inplace(PyObject *obj, const char *fn, const char *arg, int nd, const npy_intp *shape) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "[%s] %s is updated in place and must be a numpy.ndarray, got %.100s",
                     fn, arg, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32 || PyArray_ISBYTESWAPPED(a)) {
        PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(a));
        PyErr_Format(PyExc_TypeError, "[%s] %s is updated in place and must be native float32, got dtype %s",
                     fn, arg, s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        return -1;
    }
    char buf[128];
    int ok = PyArray_NDIM(a) == nd;
    for (int i = 0; ok && i < nd; i++) ok = PyArray_DIM(a, i) == shape[i];
    if (!ok) {
        char want[128];
        size_t used = (size_t)snprintf(want, sizeof want, "(");
        for (int i = 0; i < nd && used < sizeof want; i++)
            used += (size_t)snprintf(want + used, sizeof want - used, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (used < sizeof want) snprintf(want + used, sizeof want - used, nd == 1 ? ",)" : ")");
        PyErr_Format(PyExc_ValueError, "[%s] %s must have shape %s, got %s", fn, arg, want,
                     fnl_shape_str(a, buf, sizeof buf));
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError,
                     "[%s] %s is updated in place and must be C-contiguous and aligned "
                     "(a copy would silently drop the update); use numpy.ascontiguousarray first",
                     fn, arg);
        return -1;
    }
    if (!PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "[%s] %s is updated in place and must be writeable, got a read-only array",
                     fn, arg);
        return -1;
    }
    return 0;
}

PyArrayObject *fnl_new_output(int nd, const npy_intp *shape, const char *fn, const char *arg) {
    /* Reject element counts whose byte size overflows before asking NumPy. */
    npy_intp count = 1;
    for (int i = 0; i < nd; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && count > NPY_MAX_INTP / 4 / shape[i])) {
            PyErr_Format(PyExc_MemoryError, "[%s] %s would be too large to allocate", fn, arg);
            return NULL;
        }
        count *= shape[i];
    }
    PyArrayObject *out = fnl_output_array(nd, shape, (size_t)count * sizeof(float));
    if (!out) {
        char gib[64];
        snprintf(gib, sizeof gib, "%.1f", (double)count * 4.0 / (1024.0 * 1024.0 * 1024.0));
        PyErr_Clear();
        PyErr_Format(PyExc_MemoryError, "[%s] cannot allocate %s (%lld float32 values, %s GiB)", fn, arg,
                     (long long)count, gib);
    }
    return out;
}

int fnl_overlap(PyArrayObject *a, PyArrayObject *b) {
    const char *a0 = PyArray_BYTES(a), *b0 = PyArray_BYTES(b);
    const char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    return a0 < b1 && b0 < a1;
}

int fnl_parse_int(PyObject *obj, const char *fn, const char *arg, long long lo, long long hi, long long *out) {
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "[%s] %s must be an int, got %.100s", fn, arg, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *idx = PyNumber_Index(obj);
    if (!idx) {
        /* e.g. a NumPy array of several ints, whose __index__ raises */
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "[%s] %s must be an int, got %.100s", fn, arg, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow || v < lo || v > hi) {
        PyObject *r = PyObject_Repr(obj);
        PyErr_Format(PyExc_ValueError, "[%s] %s must be in %lld..%lld, got %s", fn, arg, lo, hi,
                     r ? PyUnicode_AsUTF8(r) : "?");
        Py_XDECREF(r);
        return -1;
    }
    *out = v;
    return 0;
}

int fnl_parse_float(PyObject *obj, const char *fn, const char *arg, double lo, double *out) {
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj) || PyNumber_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "[%s] %s must be a real number, got %.100s", fn, arg, Py_TYPE(obj)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        v = INFINITY; /* an int too large for a double: reported as out of range below */
    }
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "[%s] %s must be a real number, got %.100s", fn, arg, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!isfinite(v) || v < lo) {
        char bound[64];
        snprintf(bound, sizeof bound, "%g", lo);
        PyErr_Format(PyExc_ValueError, "[%s] %s must be a finite number >= %s, got %R", fn, arg, bound, obj);
        return -1;
    }
    *out = v;
    return 0;
}

int fnl_check_nargs(Py_ssize_t nargs, Py_ssize_t expected, const char *fn) {
    if (nargs == expected) return 0;
    PyErr_Format(PyExc_TypeError, "[%s] expected %zd positional arguments, got %zd", fn, expected, nargs);
    return -1;
}

int fnl_parse_middle(PyObject *middle, PyArrayObject *V, const char *fn, int nd, npy_intp batch, fnl_middle_t *m) {
    char s[128];
    int batched = nd == 3;
    if (middle != Py_None) {
        if (!PyList_Check(middle) && !PyTuple_Check(middle)) {
            PyErr_Format(PyExc_TypeError, "[%s] middle must be None or a list of matrices, got %.100s", fn,
                         Py_TYPE(middle)->tp_name);
            return -1;
        }
        /* A tuple snapshot: converting an item may run user code (__array__) that mutates a list. */
        if (!(m->seq = PySequence_Tuple(middle))) return -1;
        Py_ssize_t d = PyTuple_GET_SIZE(m->seq);
        if (d > FNL_MAX_DEPTH) {
            PyErr_Format(PyExc_ValueError, "[%s] middle must hold at most %d matrices, got %zd", fn, FNL_MAX_DEPTH, d);
            return -1;
        }
        for (Py_ssize_t j = 0; j < d; j++) {
            char name[32];
            snprintf(name, sizeof name, "middle[%d]", (int)j);
            PyArrayObject *a = fnl_as_input(PyTuple_GET_ITEM(m->seq, j), fn, name, nd, nd);
            if (!a) return -1;
            m->arr[m->depth++] = a;
            m->data[j] = (const float *)PyArray_DATA(a);
            if (PyArray_DIM(a, nd - 2) != m->ranks[j] || (batched && PyArray_DIM(a, 0) != batch)) {
                PyErr_Format(PyExc_ValueError,
                             "[%s] %s must have %lld rows (the columns of the factor before it)%s, got shape %s",
                             fn, name, (long long)m->ranks[j], batched ? " and the batch size of U" : "",
                             fnl_shape_str(a, s, sizeof s));
                return -1;
            }
            m->ranks[j + 1] = PyArray_DIM(a, nd - 1);
        }
    }
    if (PyArray_DIM(V, nd - 1) != m->ranks[m->depth]) {
        PyErr_Format(PyExc_ValueError, "[%s] V must have %lld columns (%s), got shape %s", fn,
                     (long long)m->ranks[m->depth], m->depth ? "the columns of the last middle matrix" : "the columns of U",
                     fnl_shape_str(V, s, sizeof s));
        return -1;
    }
    return 0;
}

void fnl_middle_free(fnl_middle_t *m) {
    Py_XDECREF(m->seq);
    for (int j = 0; j < m->depth; j++) Py_XDECREF(m->arr[j]);
}
