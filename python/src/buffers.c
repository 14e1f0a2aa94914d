/* The output buffer cache: memory of the large output arrays (y, dx, dU, ...).
 *
 * In a training loop every call returns fresh outputs of the same few sizes (5-16 MiB). Taken
 * from malloc, each one is mmapped (or the heap grown) anew, because glibc gave the previous
 * one back to the kernel, so every call page-faults and the kernel zeroes the pages again.
 * Here an output of at least FNL_CACHE_MIN_BYTES lives on a block of this cache instead: the
 * array's base is a capsule whose destructor hands the block back when the last array or view
 * using it dies, and the next output of exactly the same byte size reuses it. The cache keeps
 * at most `limit` bytes (and FNL_CACHE_MAX_BLOCKS blocks) of free memory, evicting the blocks
 * returned longest ago; a block that is in use is never in the cache.
 *
 * Concurrency: every function here runs with the GIL held (fnl_output_array from the calls
 * that allocate outputs, before they release the GIL; the capsule destructor from object
 * deallocation; the configuration functions from Python), which serializes all bookkeeping.
 * The module does not declare free-threading support, so free-threaded CPython re-enables the
 * GIL when it is imported. There is no lock, so a fork()ed child inherits a consistent cache.
 *
 * Memory accounting: like NumPy's own data, a block is traced by tracemalloc in NumPy's domain
 * while an array uses it; free blocks held by the cache are not traced. */
#include "fnl_native.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* NumPy's tracemalloc domain (numpy.lib.tracemalloc_domain); its NPY_TRACE_DOMAIN is only in
 * NumPy's private headers. */
#define FNL_NPY_TRACE_DOMAIN 389047
#define FNL_CACHE_MAX_BLOCKS 32
#define FNL_CACHE_DEFAULT_LIMIT ((size_t)256 << 20)
/* Blocks of at least this size are 2 MiB-aligned and advised for transparent huge pages. */
#define FNL_HUGE_BYTES ((size_t)4 << 20)
#define FNL_HUGE_ALIGN ((size_t)2 << 20)
#define FNL_BLOCK_ALIGN 64

static const char *const capsule_name = "fnl.output_block";

typedef struct {
    void *ptr;
    size_t size;
} block_t;

/* The free blocks, returned longest ago first. */
static block_t free_blocks[FNL_CACHE_MAX_BLOCKS];
static int free_count;
static size_t free_bytes;
static size_t limit = FNL_CACHE_DEFAULT_LIMIT;
static unsigned long long hits, misses;

/* A new block of `size` bytes, or NULL. */
static void *block_alloc(size_t size) {
    int huge = size >= FNL_HUGE_BYTES;
    void *ptr = NULL;
    if (posix_memalign(&ptr, huge ? FNL_HUGE_ALIGN : FNL_BLOCK_ALIGN, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (huge) madvise(ptr, size, MADV_HUGEPAGE); /* advice only: its failure changes nothing */
#endif
    return ptr;
}

/* Removes free block i from the cache and returns it. */
static block_t take_free(int i) {
    block_t b = free_blocks[i];
    free_count--;
    for (int j = i; j < free_count; j++) free_blocks[j] = free_blocks[j + 1];
    free_bytes -= b.size;
    return b;
}

/* Frees the free blocks returned longest ago until at most `bytes` bytes and `blocks` blocks
 * remain. */
static void evict_to(size_t bytes, int blocks) {
    while (free_count > 0 && (free_bytes > bytes || free_count > blocks)) free(take_free(0).ptr);
}

/* Takes a block of exactly `size` bytes: the free one returned last, else a new one. */
static void *block_take(size_t size) {
    for (int i = free_count - 1; i >= 0; i--) {
        if (free_blocks[i].size == size) {
            hits++;
            return take_free(i).ptr;
        }
    }
    misses++;
    void *ptr = block_alloc(size);
    if (!ptr && free_count > 0) {
        evict_to(0, 0); /* the free blocks may be what stands in the way */
        ptr = block_alloc(size);
    }
    return ptr;
}

/* Keeps a block that no array uses any more, or frees it when it does not fit the limits. */
static void block_give_back(void *ptr, size_t size) {
    if (size > limit) {
        free(ptr);
        return;
    }
    evict_to(limit - size, FNL_CACHE_MAX_BLOCKS - 1);
    free_blocks[free_count++] = (block_t){ptr, size};
    free_bytes += size;
}

/* The capsule's destructor: the last array or view on the block is gone. */
static void capsule_release(PyObject *capsule) {
    void *ptr = PyCapsule_GetPointer(capsule, capsule_name);
    size_t size = (size_t)(uintptr_t)PyCapsule_GetContext(capsule);
    PyTraceMalloc_Untrack(FNL_NPY_TRACE_DOMAIN, (uintptr_t)ptr);
    block_give_back(ptr, size);
}

/* A float32 array of `shape` (nbytes in all) on a block of the cache, its base a capsule that
 * owns the block. NULL with an exception (when one could be set) on failure. */
static PyArrayObject *cached_array(int nd, const npy_intp *shape, size_t nbytes) {
    void *ptr = block_take(nbytes);
    if (!ptr) return NULL;
    PyObject *capsule = PyCapsule_New(ptr, capsule_name, NULL);
    if (!capsule || PyCapsule_SetContext(capsule, (void *)(uintptr_t)nbytes) < 0 ||
        PyCapsule_SetDestructor(capsule, capsule_release) < 0) {
        Py_XDECREF(capsule);
        block_give_back(ptr, nbytes);
        return NULL;
    }
    PyTraceMalloc_Track(FNL_NPY_TRACE_DOMAIN, (uintptr_t)ptr, nbytes);
    /* From here on the capsule owns the block: dropping it gives the block back. */
    PyArrayObject *out = (PyArrayObject *)PyArray_NewFromDescr(
        &PyArray_Type, PyArray_DescrFromType(NPY_FLOAT32), nd, (npy_intp *)shape, NULL, ptr, NPY_ARRAY_CARRAY, NULL);
    if (!out) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (PyArray_SetBaseObject(out, capsule) < 0) { /* steals the capsule even on failure */
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

PyArrayObject *fnl_output_array(int nd, const npy_intp *shape, size_t nbytes) {
    if (nbytes >= FNL_CACHE_MIN_BYTES && limit > 0) return cached_array(nd, shape, nbytes);
    return (PyArrayObject *)PyArray_EMPTY(nd, (npy_intp *)shape, NPY_FLOAT32, 0);
}

size_t fnl_output_cache_set_limit(size_t max_bytes) {
    size_t previous = limit;
    limit = max_bytes;
    evict_to(limit, FNL_CACHE_MAX_BLOCKS);
    return previous;
}

fnl_output_cache_info_t fnl_output_cache_info(void) {
    return (fnl_output_cache_info_t){limit, free_bytes, (size_t)free_count, hits, misses};
}
