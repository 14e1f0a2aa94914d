/*
 * fnl_engine.h: the C ABI of the fnl Swift engine (libFNLEngine.so). This header and the
 * per-domain headers it includes are the whole contract between the engine and its callers.
 *
 * Conventions (every function unless stated):
 *   - returns an int32 status: FNL_OK (0) or one of the FNL_E* codes below;
 *   - on failure writes a NUL-terminated message (without the public function name) into the
 *     caller's buffer `err` of `err_cap` bytes;
 *   - matrices are row-major float32 and C-contiguous; sizes are int64;
 *   - outputs never alias inputs (the caller checks); no function keeps a pointer after it
 *     returns and none has global mutable state apart from the thread budget, so concurrent
 *     calls from several threads are safe.
 */
#ifndef FNL_ENGINE_H
#define FNL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever any signature or meaning below changes; checked at Python import. */
#define FNL_ABI_VERSION 1

#define FNL_OK 0
#define FNL_EVALUE 1   /* invalid argument value or shape     -> ValueError   */
#define FNL_ENOMEM 2   /* workspace allocation failed         -> MemoryError  */
#define FNL_ENUMERIC 3 /* LAPACK failure, e.g. no convergence -> RuntimeError */

/* ABI version of the loaded library (FNL_ABI_VERSION it was built with). */
int32_t fnl_abi_version(void);

/* Thread budget shared by OpenBLAS and the engine's parallel loops (1..1024). */
int32_t fnl_set_num_threads(int64_t n, char *err, size_t err_cap);
int64_t fnl_get_num_threads(void);

/* Writes OpenBLAS's configuration and selected kernel family ("Haswell", ...) into buf. */
int32_t fnl_blas_info(char *config, size_t config_cap, char *core, size_t core_cap);

#include "fnl_factorized.h"
#include "fnl_conv.h"
#include "fnl_optim.h"
#include "fnl_nn.h"

#ifdef __cplusplus
}
#endif
#endif /* FNL_ENGINE_H */
