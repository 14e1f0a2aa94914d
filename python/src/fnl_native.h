/* Shared declarations of the fnl._native extension: argument parsing and validation helpers
 * (args.c) and the method tables of each concern (config.c, factorized.c, ...).
 * The extension never does arithmetic: it parses, validates, allocates outputs, releases
 * the GIL, calls the engine and raises. */
#ifndef FNL_NATIVE_H
#define FNL_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#ifndef FNL_IMPORT_ARRAY_HERE
#define NO_IMPORT_ARRAY
#endif
#define PY_ARRAY_UNIQUE_SYMBOL fnl_ARRAY_API
#include <numpy/arrayobject.h>

#include "fnl_engine.h"

#define FNL_ERR_CAP 512
/* Work (in float operations) below which the GIL is kept: releasing costs more than the call. */
#define FNL_GIL_THRESHOLD 32768

/* Runs `call` (an engine call assigning `status`) with the GIL released when work is large. */
#define FNL_ENGINE_CALL(work, call)                                                    \
    do {                                                                               \
        if ((work) >= FNL_GIL_THRESHOLD) {                                             \
            Py_BEGIN_ALLOW_THREADS call; Py_END_ALLOW_THREADS                          \
        } else {                                                                       \
            call;                                                                      \
        }                                                                              \
    } while (0)

/* ---- args.c ---- */

/* Raises the exception of an engine status: "[fn] message". Returns -1 when status != 0. */
int fnl_raise_status(int32_t status, const char *fn, const char *msg);

/* Converts an array-like to a new C-contiguous float32 array (new reference). Accepts real
 * numeric dtypes (ints and floats, converted); rejects bool, complex, object, strings
 * (TypeError), a number of dimensions outside [min_nd, max_nd] and empty arrays (ValueError).
 * Returns NULL with an exception set. */
PyArrayObject *fnl_as_input(PyObject *obj, const char *fn, const char *arg, int min_nd, int max_nd);

/* Checks an array updated in place: an ndarray of float32, C-contiguous, writeable, aligned,
 * with exactly `nd` dimensions of `shape`. Never copies. Returns 0, or -1 with TypeError or
 * ValueError set. */
int fnl_check_inplace(PyObject *obj, const char *fn, const char *arg, int nd, const npy_intp *shape);

/* A new uninitialized float32 output; MemoryError naming fn and arg when it cannot be had. */
PyArrayObject *fnl_new_output(int nd, const npy_intp *shape, const char *fn, const char *arg);

/* True when the data of the two arrays overlap in memory. */
int fnl_overlap(PyArrayObject *a, PyArrayObject *b);

/* Parses an integer argument (not bool) in [lo, hi]. Returns 0 or -1 with an exception. */
int fnl_parse_int(PyObject *obj, const char *fn, const char *arg, long long lo, long long hi, long long *out);

/* Parses a finite real number (not bool) >= lo. Returns 0 or -1 with an exception. */
int fnl_parse_float(PyObject *obj, const char *fn, const char *arg, double lo, double *out);

/* Checks the number of positional arguments of a METH_FASTCALL function. */
int fnl_check_nargs(Py_ssize_t nargs, Py_ssize_t expected, const char *fn);

/* Formats a shape as "(a, b, c)" into buf. */
const char *fnl_shape_str(PyArrayObject *a, char *buf, size_t cap);

/* ---- method tables ---- */
extern PyMethodDef fnl_config_methods[];
extern PyMethodDef fnl_factorized_methods[];
extern PyMethodDef fnl_conv_methods[];
extern PyMethodDef fnl_optim_methods[];
extern PyMethodDef fnl_nn_methods[];

#endif /* FNL_NATIVE_H */
