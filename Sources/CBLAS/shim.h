// OpenBLAS (cblas) and LAPACKE as seen from Swift.
// Debian puts cblas.h under the multiarch include folder and lapacke.h in the standard one.
#ifndef FNL_CBLAS_SHIM_H
#define FNL_CBLAS_SHIM_H
#if __has_include(<x86_64-linux-gnu/cblas.h>)
#include <x86_64-linux-gnu/cblas.h>
#elif __has_include(<aarch64-linux-gnu/cblas.h>)
#include <aarch64-linux-gnu/cblas.h>
#else
#include <cblas.h>
#endif
#include <lapacke.h>
#endif
