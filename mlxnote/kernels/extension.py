"""Loading mlxnote's C++ primitives (``mlxnote/_ext``), once, with a clean fallback.

:func:`get` returns the extension module, or ``None`` when the kernels should use their
pure-MLX formulations: the extension was not built (no compiler at install time), fails to
load, was built against another MLX version than the one imported (a warning says so,
once), ``MLXNOTE_EXT=0`` turns it off, or the formulation is not the CPU's (Metal and CUDA
keep MLX's kernels). ``MLXNOTE_THREADS`` caps its thread pool (default: the usable CPUs).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import mlx.core as mx

from .._config import cpu_formulation

ENV = "MLXNOTE_EXT"
ENV_THREADS = "MLXNOTE_THREADS"
OFF = {"0", "off", "false", "no"}


class ExtensionWarning(RuntimeWarning):
    """The C++ extension is not used (mlxnote runs its pure-MLX formulations)."""


_STATE: dict[str, Any] = {"loaded": False, "module": None, "reason": "", "override": None}


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
    return _core, ""


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


def status() -> dict[str, Any]:
    """For ``python -m mlxnote info``."""
    mod = module()
    if mod is None:
        return {"loaded": False, "reason": _STATE["reason"], "kernels": []}
    return {"loaded": True, "reason": "", "kernels": list(mod.KERNELS), "isa": mod.isa(),
            "threads": mod.threads(), "mlx_built": mod.MLX_VERSION}
