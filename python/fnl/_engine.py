"""Loads the Swift engine (through fnl._native) after choosing OpenBLAS's kernel family.

Debian's OpenBLAS 0.3.21 can misdetect recent CPUs and silently fall back to generic kernels
(about 5x slower sgemm). Unless the user set OPENBLAS_CORETYPE, fnl sets it from the CPU's
instruction-set flags before the engine library (and with it OpenBLAS) is loaded. When
OpenBLAS was already loaded by another module (e.g. Debian's NumPy), its choice stands;
`blas_info()` reports what is in use.
"""
from __future__ import annotations

import os
import warnings

GENERIC_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "barcelona", "generic", "unknown"}


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_coretype(flags: set[str]) -> str | None:
    """The OpenBLAS kernel family for a CPU with these flags, or None to let OpenBLAS decide."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    if "avx" in flags:
        return "SandyBridge"
    return None


def select_openblas_kernels() -> str | None:
    """Sets OPENBLAS_CORETYPE unless the user chose one; returns the value in force."""
    chosen = os.environ.get("OPENBLAS_CORETYPE")
    if chosen:
        return chosen
    core = choose_coretype(cpu_flags())
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core
    return core


requested_coretype = select_openblas_kernels()

# OpenBLAS worker threads spin for about 2**28 cycles after each call before sleeping. In a
# training loop the engine's OpenBLAS, NumPy's own OpenBLAS copy and the engine's loops take
# turns, so spinning workers steal the cores the next call needs (measured: a digits training
# run 2.5x slower with 2 threads on a loaded 2-core machine). A short timeout makes idle
# workers sleep at once; the user's own setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")



def openblas_loaded() -> bool:
    """Whether a libopenblas is mapped into this process (Linux; False where unknown)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            return any("libopenblas" in line for line in f)
    except OSError:
        return False


# True when another module (e.g. Debian's NumPy) loaded the system OpenBLAS before fnl: its
# kernel choice was made then and fnl's request could not take effect.
preloaded = openblas_loaded()

from . import _native  # noqa: E402  (must follow the kernel selection)


def blas_info() -> dict:
    """OpenBLAS as loaded in this process: its build configuration, the kernel family in use
    ("corename"), the one fnl requested (None when left to OpenBLAS) and whether OpenBLAS had
    been loaded before fnl ("preloaded", in which case the request could not apply)."""
    info = dict(_native.blas_info())
    info["requested"] = requested_coretype
    info["preloaded"] = preloaded
    return info


def check_kernels() -> None:
    core = _native.blas_info()["corename"].lower()
    if core in GENERIC_CORES and requested_coretype and requested_coretype.lower() not in GENERIC_CORES:
        warnings.warn(
            f"fnl: OpenBLAS runs generic '{core}' kernels although this CPU supports "
            f"'{requested_coretype}' (OpenBLAS was loaded before fnl could choose); "
            f"set OPENBLAS_CORETYPE={requested_coretype} in the environment or import fnl first",
            RuntimeWarning,
            stacklevel=3,
        )


check_kernels()


def set_num_threads(n: int) -> None:
    """Sets the number of threads the engine and its OpenBLAS may use (1..1024)."""
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the engine and its OpenBLAS may use."""
    return _native.get_num_threads()


def set_output_cache(max_bytes: int) -> int:
    """Sets how many bytes of free memory fnl may keep for reuse as large outputs; returns
    the previous limit.

    Outputs of at least 1 MiB (y, dx, dU, ... of the convolutions and the other kernels) are
    taken from a cache of blocks that arrays released earlier: the next output of exactly the
    same size reuses one. In a training loop this avoids the page faults (and the kernel's
    zeroing of fresh pages) that a newly allocated 5-16 MiB array costs on every call. The cost
    is memory: up to `max_bytes` bytes (and at most 32 blocks) of free memory stay held by fnl
    instead of returning to the system; blocks in use by arrays are not counted. The default
    is 256 MiB; 0 disables the cache (outputs come from NumPy again) and frees every cached
    block. `max_bytes` must be an int >= 0.
    """
    return _native.set_output_cache(max_bytes)


def output_cache_info() -> dict:
    """The state of the output buffer cache (see `set_output_cache`): "limit" (the most free
    bytes it may keep), "cached_bytes" and "cached_blocks" (the free memory it holds now),
    "hits" and "misses" (large outputs that reused a cached block or needed a new one, since
    the process started)."""
    return _native.output_cache_info()
