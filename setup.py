"""Builds mlxnote's optional C++ extension (``mlxnote/_ext``) with CMake during ``pip
install``; everything else is in pyproject.toml.

The extension is optional: when CMake, a C++ compiler, nanobind or MLX's CMake config is
missing, or the build fails, the install goes on without it (with a warning) and mlxnote
runs its pure-MLX formulations. ``MLXNOTE_BUILD_EXT=0`` skips the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "mlxnote" / "_ext"


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class OptionalCMakeBuild(build_ext):
    """Configure and build with CMake; on any failure warn and build nothing."""

    _failed: list[Extension] = []

    # Nothing to copy or install for an extension that was not built.
    def copy_extensions_to_source(self) -> None:
        built = [e for e in self.extensions if e not in self._failed]
        self.extensions, every = built, self.extensions
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every

    def get_outputs(self) -> list[str]:
        return [o for o in super().get_outputs() if os.path.exists(o)]

    def get_output_mapping(self) -> dict[str, str]:
        return {k: v for k, v in super().get_output_mapping().items() if os.path.exists(v)}

    def build_extension(self, ext: Extension) -> None:
        if os.environ.get("MLXNOTE_BUILD_EXT", "").strip().lower() in ("0", "off", "no"):
            self.announce("mlxnote: MLXNOTE_BUILD_EXT=0: the C++ extension is not built", 2)
            self._failed.append(ext)
            return
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        build = Path(self.build_temp).resolve() / "mlxnote_ext"
        try:
            self._cmake(build, target)
        except Exception as e:  # the extension is optional
            msg = (f"mlxnote: the C++ extension was not built ({e}); mlxnote will run its "
                   "pure-MLX formulations. Set MLXNOTE_BUILD_EXT=0 to skip this step.")
            print(msg, file=sys.stderr)
            self.warn(msg)
            self._failed.append(ext)

    def _cmake(self, build: Path, target: Path) -> None:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake not found")
        build.mkdir(parents=True, exist_ok=True)
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        jobs = str(max(1, os.cpu_count() or 1))
        subprocess.run([cmake, "-S", str(SOURCE), "-B", str(build), *gen,
                        f"-DPython_EXECUTABLE={sys.executable}",
                        "-DCMAKE_BUILD_TYPE=Release"], check=True)
        subprocess.run([cmake, "--build", str(build), "--parallel", jobs], check=True)
        built = sorted(build.glob("_core*.so")) + sorted(build.glob("_core*.pyd"))
        if not built:
            raise RuntimeError(f"no _core module in {build}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)
        # The oneDNN wrapper (built when oneDNN's headers were found) sits next to _core,
        # in the build tree (wheels) and the sources (editable installs): _core opens it.
        for lib in build.glob("libmlxnote_dnnl.so"):
            shutil.copy2(lib, target.parent / lib.name)
            shutil.copy2(lib, SOURCE / lib.name)


setup(ext_modules=[CMakeExtension("mlxnote._ext._core")],
      cmdclass={"build_ext": OptionalCMakeBuild})
