/* fnl._native: the hand-written CPython binding of the fnl Swift engine.
 * Module definition, import-time ABI version check, and the method tables of each concern. */
#define FNL_IMPORT_ARRAY_HERE
#include "fnl_native.h"

static PyMethodDef *const method_tables[] = {
    fnl_config_methods, fnl_factorized_methods, fnl_conv_methods, fnl_optim_methods, fnl_nn_methods, NULL,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "fnl._native",
    "Low-level binding of the fnl Swift engine (use the fnl package instead).", -1, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    import_array();
    int32_t engine = fnl_abi_version();
    if (engine != FNL_ABI_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "[fnl] engine library ABI version %d does not match the extension's %d: "
                     "rebuild the package (pip install .)", (int)engine, FNL_ABI_VERSION);
        return NULL;
    }
    PyObject *m = PyModule_Create(&native_module);
    if (!m) return NULL;
    for (int t = 0; method_tables[t]; t++) {
        if (PyModule_AddFunctions(m, method_tables[t]) < 0) { Py_DECREF(m); return NULL; }
    }
    if (PyModule_AddIntConstant(m, "ABI_VERSION", FNL_ABI_VERSION) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
