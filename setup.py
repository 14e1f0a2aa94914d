"""Build of fnl: the Swift engine (SwiftPM, release) and the CPython extension fnl._native.

`pip install .` and `pip install -e .` both run `swift build -c release` for the FNLEngine
product with the Swift standard library linked statically, copy libFNLEngine.so next to the
extension, and link the extension to it through an $ORIGIN rpath, so the installed package
needs neither the Swift toolchain nor LD_LIBRARY_PATH at run time.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
ENGINE = "libFNLEngine.so"


class BuildWithSwiftEngine(build_ext):
    """Builds the Swift engine first, then the extension against it."""

    def run(self):
        engine = self.build_engine()
        import numpy

        for ext in self.extensions:
            ext.include_dirs += [numpy.get_include(), str(ROOT / "Sources/CFNLEngine/include")]
            ext.library_dirs += [str(engine.parent)]
        super().run()
        for ext in self.extensions:
            target = Path(self.get_ext_fullpath(ext.name)).parent
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(engine, target / ENGINE)

    def build_engine(self) -> Path:
        swift = shutil.which("swift") or "/opt/swift/usr/bin/swift"
        cmd = [swift, "build", "-c", "release", "--product", "FNLEngine", "-Xswiftc", "-static-stdlib"]
        print("building the Swift engine:", " ".join(cmd), flush=True)
        try:
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=sys.stderr)
        except FileNotFoundError:
            sys.exit("fnl needs the Swift toolchain (swift) on PATH to build its engine")
        out = subprocess.run(cmd + ["--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True)
        engine = Path(out.stdout.strip().splitlines()[-1]) / ENGINE
        if not engine.exists():
            sys.exit(f"swift build did not produce {engine}")
        return engine


native = Extension(
    "fnl._native",
    sources=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "python/src").glob("*.c")),
    depends=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "Sources/CFNLEngine/include").glob("*.h"))
    + ["python/src/fnl_native.h"],
    libraries=["FNLEngine"],
    runtime_library_dirs=["$ORIGIN"],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
)

setup(
    packages=find_packages("python", exclude=["tests", "tests.*"]),
    package_dir={"": "python"},
    ext_modules=[native],
    cmdclass={"build_ext": BuildWithSwiftEngine},
)
