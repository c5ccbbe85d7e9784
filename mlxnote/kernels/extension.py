"""Loading mlxnote's C++ primitives (``mlxnote/_ext``), once, with a clean fallback.

:func:`get` returns the extension module, or ``None`` when the kernels should use their
pure-MLX formulations: the extension was not built (no compiler at install time), fails to
load, was built against another MLX version than the one imported (a warning says so,
once), ``MLXNOTE_EXT=0`` turns it off, or the formulation is not the CPU's (Metal and CUDA
keep MLX's kernels). ``MLXNOTE_THREADS`` caps its thread pool (default: the usable CPUs).

oneDNN (the ``cpu`` extra on Linux x86-64) is opened next, from the Python environment's
``lib`` folder, with mlxnote's kernels on it (``libmlxnote_dnnl.so``, built when oneDNN's
headers were there): ``dnnl_conv`` joins ``KERNELS`` when both load; ``MLXNOTE_ONEDNN=0``
turns it off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx

from .._config import cpu_formulation

ENV = "MLXNOTE_EXT"
ENV_THREADS = "MLXNOTE_THREADS"
ENV_ONEDNN = "MLXNOTE_ONEDNN"
OFF = {"0", "off", "false", "no"}


class ExtensionWarning(RuntimeWarning):
    """The C++ extension is not used (mlxnote runs its pure-MLX formulations)."""


_STATE: dict[str, Any] = {"loaded": False, "module": None, "reason": "", "override": None,
                          "onednn": "", "override_onednn": None}


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(ENV, "").strip().lower() in OFF:
        return None, f"turned off by {ENV}=0"
    try:
        from .._ext import _core
    except ImportError as e:
        return None, f"not built or not loadable ({e}); reinstall with a C++ compiler and cmake"
    built, running = _core.MLX_VERSION, mx.__version__.split(".dev")[0]
    if built != running or _core.mlx_runtime_version().split(".dev")[0] != running:
        return None, f"built against MLX {built}, running MLX {running}: reinstall mlxnote"
    from .. import _platform

    threads = os.environ.get(ENV_THREADS, "").strip()
    _core.set_threads(int(threads) if threads.isdigit() and int(threads) > 0
                      else _platform.usable_cpus())
    _STATE["onednn"] = _load_onednn(_core)
    return _core, ""


def _load_onednn(core: ModuleType) -> str:
    """Opens oneDNN and mlxnote's kernels on it: '' when loaded, else why not."""
    if os.environ.get(ENV_ONEDNN, "").strip().lower() in OFF:
        return f"turned off by {ENV_ONEDNN}=0"
    if not hasattr(core, "dnnl_load"):
        return "this build of the extension has no oneDNN kernels"
    impl = Path(core.__file__).with_name("libmlxnote_dnnl.so")
    lib = Path(sys.prefix) / "lib" / "libdnnl.so.3"
    if not impl.exists() or not lib.exists():
        missing = impl if not impl.exists() else lib
        return f"not installed ({missing} missing: pip install 'mlxnote[cpu]', then rebuild)"
    return core.dnnl_load(str(lib), str(impl))


def module() -> ModuleType | None:
    """The loaded extension (whatever the device), or ``None`` with :func:`reason` set."""
    if not _STATE["loaded"]:
        mod, reason = _load()
        _STATE.update(loaded=True, module=mod, reason=reason)
        if mod is None and not reason.startswith("turned off"):
            warnings.warn(f"mlxnote: the C++ extension is not used: {reason}. mlxnote runs its "
                          f"pure-MLX formulations (set {ENV}=0 to silence this).",
                          ExtensionWarning, stacklevel=3)
    return _STATE["module"]


def get() -> ModuleType | None:
    """The extension when the kernels should use it now: loaded, not overridden off, in
    the CPU formulation and on the CPU device (its primitives have no GPU implementation:
    ``MLXNOTE_FORMULATION=cpu`` on a GPU runs the pure-MLX CPU formulations)."""
    if _STATE["override"] is False or not cpu_formulation() or \
            mx.default_device().type != mx.DeviceType.cpu:
        return None
    return module()


def kernel(name: str) -> Any:
    """The extension's function ``name`` when :func:`get` allows the extension and this
    build has it (an older build without it: ``None``, the pure-MLX formulation)."""
    mod = get()
    if name.startswith("dnnl_") and _STATE["override_onednn"] is False:
        return None
    if mod is not None and name.startswith("dnnl_") and "dnnl_conv" in mod.KERNELS:
        return getattr(mod, name, None)  # dnnl_conv's companions load with it
    return getattr(mod, name) if mod is not None and name in mod.KERNELS else None


def reason() -> str:
    """Why :func:`module` is ``None`` ('' when it is loaded)."""
    module()
    return _STATE["reason"]


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Use the extension (if loaded) or not, inside this block: tests run both ways."""
    old = _STATE["override"]
    _STATE["override"] = bool(on)
    try:
        yield
    finally:
        _STATE["override"] = old


@contextlib.contextmanager
def onednn_enabled(on: bool) -> Iterator[None]:
    """Use oneDNN's kernels (if loaded) or not, inside this block (the rest of the
    extension stays as it is)."""
    old = _STATE["override_onednn"]
    _STATE["override_onednn"] = bool(on)
    try:
        yield
    finally:
        _STATE["override_onednn"] = old


def status() -> dict[str, Any]:
    """For ``python -m mlxnote info``."""
    mod = module()
    if mod is None:
        return {"loaded": False, "reason": _STATE["reason"], "kernels": []}
    return {"loaded": True, "reason": "", "kernels": list(mod.KERNELS), "isa": mod.isa(),
            "threads": mod.threads(), "mlx_built": mod.MLX_VERSION,
            "onednn": mod.dnnl_version() if "dnnl_conv" in mod.KERNELS else
            f"not used: {_STATE['onednn']}"}
