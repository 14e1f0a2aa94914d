/* Shared declarations of the fnl._native extension: argument parsing and validation helpers
 * (args.c), the output buffer cache (buffers.c) and the method tables of each concern
 * (config.c, factorized.c, ...).
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

/* A new uninitialized float32 output (large ones from the output buffer cache, buffers.c);
 * MemoryError naming fn and arg when it cannot be had. */
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

/* The most middle matrices of a factor chain U M_1 ... M_d V^T (the engine's limit). */
#define FNL_MAX_DEPTH 64

/* The middle matrices of a factor chain, as parsed by fnl_parse_middle. Before any parsing,
 * `seq` must be NULL and `depth` 0 (fnl_middle_free reads only those); ranks[0] (the columns
 * of U) is set by the caller. */
typedef struct {
    PyObject *seq; /* tuple snapshot of the middle sequence (caller code may mutate a list) */
    PyArrayObject *arr[FNL_MAX_DEPTH];
    const float *data[FNL_MAX_DEPTH];
    int depth;
    int64_t ranks[FNL_MAX_DEPTH + 1];
} fnl_middle_t;

/* Parses `middle` (None or a list/tuple of at most FNL_MAX_DEPTH matrices of nd dimensions,
 * nd == 3 meaning a leading batch axis of size `batch`): every M_j must have ranks[j - 1]
 * rows (and the batch size), giving ranks[j]; then V (already parsed, nd dimensions) must
 * have ranks[depth] columns. Returns 0, or -1 with TypeError or ValueError set (m is then
 * partly filled: release it with fnl_middle_free as on success). */
int fnl_parse_middle(PyObject *middle, PyArrayObject *V, const char *fn, int nd, npy_intp batch, fnl_middle_t *m);

/* Releases the references of a fnl_middle_t. */
void fnl_middle_free(fnl_middle_t *m);

/* ---- buffers.c ---- */

/* Outputs of at least this many bytes come from the output buffer cache (when it is enabled). */
#define FNL_CACHE_MIN_BYTES ((size_t)1 << 20)

/* A new uninitialized C-contiguous float32 array of `shape` (nbytes bytes in all): on a block
 * of the output buffer cache when it is large enough and the cache enabled (the array's base
 * then owns the block), else from NumPy. NULL, usually with an exception set, on failure. */
PyArrayObject *fnl_output_array(int nd, const npy_intp *shape, size_t nbytes);

/* Sets the most bytes of free memory the output cache may keep (0 disables it and frees every
 * cached block); returns the previous limit. */
size_t fnl_output_cache_set_limit(size_t max_bytes);

typedef struct {
    size_t limit, cached_bytes, cached_blocks;
    unsigned long long hits, misses;
} fnl_output_cache_info_t;

/* The limit, the free memory held, and how many large outputs reused a block (hits) or got a
 * new one (misses). */
fnl_output_cache_info_t fnl_output_cache_info(void);

/* ---- method tables ---- */
extern PyMethodDef fnl_config_methods[];
extern PyMethodDef fnl_factorized_methods[];
extern PyMethodDef fnl_conv_methods[];
extern PyMethodDef fnl_optim_methods[];
extern PyMethodDef fnl_nn_methods[];

#endif /* FNL_NATIVE_H */
