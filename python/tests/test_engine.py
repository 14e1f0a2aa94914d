"""The engine library and its ABI: exported symbols, linkage, rpath, version, BLAS kernels."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fnl
import references as ref
from conftest import assert_close
from fnl import _engine, _native

ROOT = Path(__file__).resolve().parents[2]
HEADERS = ROOT / "Sources" / "CFNLEngine" / "include"
PKG = Path(fnl.__file__).resolve().parent
ENGINE = PKG / "libFNLEngine.so"

# Libraries the engine may depend on: OpenBLAS/LAPACK(E) and the C/C++ runtime. Never the
# Swift runtime (libswiftCore, libFoundation, libdispatch, libBlocksRuntime ...).
SYSTEM_LIBS = re.compile(r"^(libopenblas|liblapacke|liblapack|libblas|libgfortran|libquadmath|libm|libc|"
                         r"libstdc\+\+|libgcc_s|ld-linux|libpthread|libdl|librt|libtmglib|libz)[.\-]")

needs_source = pytest.mark.skipif(not HEADERS.is_dir(), reason="the source tree (headers) is not available")
needs_binutils = pytest.mark.skipif(not (shutil.which("nm") and shutil.which("readelf")), reason="binutils missing")


def header_text() -> str:
    text = "\n".join(p.read_text() for p in sorted(HEADERS.glob("*.h")))
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def declared_functions() -> set[str]:
    return set(re.findall(r"\b(fnl_\w+)\s*\(", header_text()))


def exported_functions() -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(ENGINE)], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()[-2:-1] == ["T"]
            and line.split()[-1].startswith("fnl_")}


def dynamic_section(path: Path) -> str:
    return subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True).stdout


# ------------------------------------------------------------------------ symbols


def test_engine_library_is_installed_next_to_the_extension():
    assert ENGINE.is_file()
    assert Path(_native.__file__).resolve().parent == PKG


@needs_source
@needs_binutils
def test_every_header_function_is_exported():
    declared = declared_functions()
    assert len(declared) >= 13, declared
    missing = declared - exported_functions()
    assert not missing, f"declared in the header but not exported by {ENGINE.name}: {sorted(missing)}"


@needs_source
@needs_binutils
def test_every_exported_function_is_declared():
    extra = exported_functions() - declared_functions()
    assert not extra, f"exported but not declared in the header: {sorted(extra)}"


@needs_source
def test_header_functions_follow_the_status_convention():
    """Every function returns int32_t (status) or a documented scalar, and those that can fail
    end with (char *err, size_t err_cap)."""
    text = header_text()
    decls = re.findall(r"(\w+)\s+(fnl_\w+)\s*\(([^;]*?)\)\s*;", text, flags=re.S)
    assert len(decls) == len(declared_functions())
    exceptions = {"fnl_abi_version", "fnl_get_num_threads", "fnl_blas_info"}
    for ret, name, params in decls:
        assert ret in ("int32_t", "int64_t"), f"{name} returns {ret}"
        if name in exceptions:
            continue
        assert ret == "int32_t", name
        assert re.search(r"char\s*\*\s*err\s*,\s*size_t\s+err_cap\s*$", params.strip()), f"{name}({params})"


# ---------------------------------------------------------------- ABI version


@needs_source
def test_abi_version_constant():
    m = re.search(r"#define\s+FNL_ABI_VERSION\s+(\d+)", (HEADERS / "fnl_engine.h").read_text())
    assert m
    version = int(m.group(1))
    assert _native.ABI_VERSION == version
    lib = ctypes.CDLL(str(ENGINE))
    lib.fnl_abi_version.restype = ctypes.c_int32
    assert lib.fnl_abi_version() == version


def test_status_and_message_through_ctypes():
    lib = ctypes.CDLL(str(ENGINE))
    f = lib.fnl_set_num_threads
    f.restype = ctypes.c_int32
    f.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_size_t]
    buf = ctypes.create_string_buffer(256)
    assert f(0, buf, 256) == 1
    assert buf.value == b"n must be in 1..1024, got 0"
    small = ctypes.create_string_buffer(10)
    ctypes.memset(small, 0xFF, 10)
    assert f(-5, small, 8) == 1
    assert small.raw == b"n must \x00\xff\xff"  # cap - 1 bytes and a NUL; nothing beyond cap
    assert f(0, None, 0) == 1  # no buffer: status only
    g = lib.fnl_conv_to_matrix
    g.restype = ctypes.c_int32
    assert g(None, 1, 1, 1, 1, None, buf, 256) == 1
    assert buf.value == b"K is a null pointer"


# ------------------------------------------------------------------- linkage


@needs_binutils
def test_engine_depends_only_on_system_libraries():
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic_section(ENGINE))
    assert needed
    for lib in needed:
        assert SYSTEM_LIBS.match(lib), f"unexpected dependency {lib} (the Swift runtime must be linked statically)"
    assert not any(re.search(r"swift|Foundation|dispatch|BlocksRuntime", lib, re.I) for lib in needed)


@pytest.mark.skipif(not shutil.which("ldd"), reason="ldd missing")
def test_engine_dependencies_resolve_without_the_toolchain():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run(["ldd", str(ENGINE)], check=True, capture_output=True, text=True, env=env).stdout
    assert "not found" not in out, out
    assert not re.search(r"swift", out, re.I), out


@needs_binutils
def test_extension_has_origin_rpath():
    dyn = dynamic_section(Path(_native.__file__))
    assert re.search(r"\[libFNLEngine\.so\]", dyn)
    paths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", dyn)
    assert paths and any("$ORIGIN" in p.split(":") for p in paths), dyn


def test_import_from_another_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    code = ("import fnl, numpy as np; "
            "W = fnl.compose(np.ones((2, 1)), np.ones((3, 1))); "
            "print(fnl.__file__, float(W.sum()), fnl.blas_info()['corename'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "6.0"


# ------------------------------------------------------------------------ BLAS


def test_blas_info_reports_a_specific_kernel_family():
    info = fnl.blas_info()
    assert set(info) >= {"config", "corename", "requested", "preloaded"}
    assert "OpenBLAS" in info["config"]
    core = info["corename"].lower()
    assert core and core not in _engine.GENERIC_CORES, info
    if info["requested"] and not info["preloaded"]:
        assert core == info["requested"].lower(), info


@pytest.mark.parametrize("m,n,r", [(256, 200, 64), (513, 129, 33), (64, 1024, 17)])
def test_sgemm_results_match_numpy(m, n, r):
    rng = np.random.default_rng(m)
    U = rng.standard_normal((m, r)).astype(np.float32)
    V = rng.standard_normal((n, r)).astype(np.float32)
    M = rng.standard_normal((r, r)).astype(np.float32) / np.sqrt(r)
    for mids in ([], [M]):
        expected = ref.compose(U, V, mids)
        assert_close(fnl.compose(U, V, mids or None), expected, rtol=1e-5, atol=2e-6 * np.abs(expected).max(),
                     what="compose vs NumPy float64")
    np.testing.assert_allclose(fnl.compose(U, V), U @ V.T, rtol=1e-4, atol=1e-4 * np.abs(U @ V.T).max())


FLAGS_AVX512 = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


@pytest.mark.parametrize("flags,expected", [
    (FLAGS_AVX512, "SkylakeX"),
    (FLAGS_AVX512 | {"avx512_bf16", "avx512_vnni"}, "SkylakeX"),
    (FLAGS_AVX512 - {"avx512bw"}, "Haswell"),       # Knights Landing-like: no BW/VL
    ({"sse4_2", "avx", "avx2", "fma"}, "Haswell"),
    ({"sse4_2", "avx", "avx2"}, "SandyBridge"),     # AVX2 without FMA
    ({"sse4_2", "avx"}, "SandyBridge"),
    ({"sse4_2", "sse2"}, None),
    (set(), None),
])
def test_choose_coretype(flags, expected):
    assert _engine.choose_coretype(flags) == expected


def test_cpu_flags_is_a_set():
    flags = _engine.cpu_flags()
    assert isinstance(flags, set)
    if Path("/proc/cpuinfo").exists() and flags:
        assert "fpu" in flags or "sse2" in flags


def test_select_respects_the_users_choice(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")
    assert _engine.select_openblas_kernels() == "Zen"
    assert os.environ["OPENBLAS_CORETYPE"] == "Zen"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(_engine, "cpu_flags", lambda: {"avx", "avx2", "fma"})
    assert _engine.select_openblas_kernels() == "Haswell"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(_engine, "cpu_flags", lambda: set())
    assert _engine.select_openblas_kernels() is None
    assert "OPENBLAS_CORETYPE" not in os.environ


def run_fnl(code, env_extra=None, tmp_path=None):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_kernel_selection_at_import(tmp_path):
    out = run_fnl("import os, fnl; i = fnl.blas_info(); print(os.environ.get('OPENBLAS_CORETYPE'), i['corename'], "
                  "i['requested'])", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    env_core, core, requested = out.stdout.split()
    expected = _engine.choose_coretype(_engine.cpu_flags())
    assert requested == str(expected) and env_core == str(expected)
    if expected:
        assert core.lower() == expected.lower()


def test_users_coretype_wins(tmp_path):
    out = run_fnl("import fnl; i = fnl.blas_info(); print(i['corename'], i['requested'])",
                  {"OPENBLAS_CORETYPE": "Haswell"}, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Haswell", "Haswell"]
