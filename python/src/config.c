/* Engine configuration: thread budget, BLAS information and the output buffer cache. */
#include "fnl_native.h"

static PyObject *set_num_threads(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.set_num_threads";
    long long n;
    if (fnl_check_nargs(nargs, 1, fn) < 0 || fnl_parse_int(args[0], fn, "n", 1, 1024, &n) < 0) return NULL;
    char err[FNL_ERR_CAP] = "";
    if (fnl_raise_status(fnl_set_num_threads((int64_t)n, err, sizeof err), fn, err) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLongLong((long long)fnl_get_num_threads());
}

static PyObject *blas_info(PyObject *self, PyObject *unused) {
    char config[256] = "", core[64] = "";
    fnl_blas_info(config, sizeof config, core, sizeof core);
    return Py_BuildValue("{s:s,s:s}", "config", config, "corename", core);
}

static PyObject *set_output_cache(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *fn = "fnl.set_output_cache";
    long long max_bytes;
    if (fnl_check_nargs(nargs, 1, fn) < 0 || fnl_parse_int(args[0], fn, "max_bytes", 0, PY_SSIZE_T_MAX, &max_bytes) < 0)
        return NULL;
    return PyLong_FromSize_t(fnl_output_cache_set_limit((size_t)max_bytes));
}

static PyObject *output_cache_info(PyObject *self, PyObject *unused) {
    fnl_output_cache_info_t info = fnl_output_cache_info();
    return Py_BuildValue("{s:n,s:n,s:n,s:K,s:K}", "limit", (Py_ssize_t)info.limit, "cached_bytes",
                         (Py_ssize_t)info.cached_bytes, "cached_blocks", (Py_ssize_t)info.cached_blocks, "hits",
                         info.hits, "misses", info.misses);
}

PyMethodDef fnl_config_methods[] = {
    {"set_num_threads", (PyCFunction)(void (*)(void))set_num_threads, METH_FASTCALL, "set_num_threads(n)"},
    {"get_num_threads", get_num_threads, METH_NOARGS, "get_num_threads()"},
    {"blas_info", blas_info, METH_NOARGS, "blas_info() -> dict"},
    {"set_output_cache", (PyCFunction)(void (*)(void))set_output_cache, METH_FASTCALL,
     "set_output_cache(max_bytes) -> previous limit"},
    {"output_cache_info", output_cache_info, METH_NOARGS, "output_cache_info() -> dict"},
    {NULL, NULL, 0, NULL},
};
