"""Policy in one place: the dtype tables, the reduced dtypes, the device check that picks
each kernel's formulation, and the dtype a layer computes in.

Every "is this the CPU?" question a layer or kernel asks to choose a formulation goes
through :func:`cpu_formulation`, so that one switch changes them all: the environment
variable ``MLXNOTE_FORMULATION`` (``auto``, ``cpu`` or ``gpu``) or, inside a process, the
:func:`formulation` context manager. ``gpu`` makes every layer and kernel take exactly the
branch it takes on Metal or CUDA whatever device runs it (the ``mx.fast`` operations have
CPU implementations), which is how the conformance suite proves the GPU formulations on a
CPU (``python -m conformance --formulation gpu``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import numpy as np

DTYPES: dict[str, mx.Dtype] = {"float32": mx.float32, "float16": mx.float16,
                               "bfloat16": mx.bfloat16}
DTYPE_NAMES: dict[mx.Dtype, str] = {v: k for k, v in DTYPES.items()}
REDUCED: tuple[mx.Dtype, ...] = (mx.float16, mx.bfloat16)


def dtype_name(dtype: mx.Dtype) -> str:
    """``mx.bfloat16`` -> ``'bfloat16'`` (other dtypes: ``str(dtype)``)."""
    return DTYPE_NAMES.get(dtype, str(dtype))


def parse_dtype(value: Any) -> mx.Dtype | None:
    """A layer dtype from ``'float32'``, ``mx.float16``, ``np.float32``, ...; ``None`` if
    ``value`` names none of :data:`DTYPES`."""
    if isinstance(value, mx.Dtype):
        return value if value in DTYPE_NAMES else None
    if isinstance(value, (type, np.dtype)):
        try:
            value = str(np.dtype(value))
        except TypeError:
            return None
    return DTYPES.get(value) if isinstance(value, str) else None


def is_reduced(dtype: mx.Dtype) -> bool:
    """float16 or bfloat16."""
    return dtype in REDUCED


ENV_FORMULATION = "MLXNOTE_FORMULATION"
FORMULATIONS = ("auto", "cpu", "gpu")
# The in-process override (formulation()); None: the environment decides.
_OVERRIDE: list[str | None] = [None]


def _check_formulation(value: str, source: str) -> str:
    name = value.strip().lower()
    if name not in FORMULATIONS:
        raise ValueError(f"{source} got {value!r}; allowed: {', '.join(FORMULATIONS)}")
    return name


def formulation_setting() -> str:
    """The switch as set: ``'auto'`` (the default device decides), ``'cpu'`` or ``'gpu'``;
    the :func:`formulation` override first, then ``MLXNOTE_FORMULATION``."""
    if _OVERRIDE[0] is not None:
        return _OVERRIDE[0]
    env = os.environ.get(ENV_FORMULATION, "")
    return _check_formulation(env, ENV_FORMULATION) if env.strip() else "auto"


def formulation_name() -> str:
    """The formulation layers and kernels take now: ``'cpu'`` or ``'gpu'``."""
    return "cpu" if cpu_formulation() else "gpu"


def cpu_formulation() -> bool:
    """Do layers and kernels take their CPU formulation?

    Metal and CUDA take MLX's fused kernels; the CPU takes mlxnote's formulations. Under
    ``auto`` (the default) the default device decides; ``MLXNOTE_FORMULATION=gpu`` or
    ``cpu`` (or :func:`formulation`) forces one on every device."""
    setting = formulation_setting()
    if setting == "auto":
        return mx.default_device().type == mx.DeviceType.cpu
    return setting == "cpu"


@contextlib.contextmanager
def formulation(name: str) -> Iterator[None]:
    """Inside this block, layers and kernels take the ``name`` formulation (``'auto'``,
    ``'cpu'`` or ``'gpu'``), whatever ``MLXNOTE_FORMULATION`` says; process-wide, for tests
    and the conformance harness. Layers read it when they run (and a few choices, such as
    a dropout sublayer's dtype, when they are built): build and run inside the block."""
    new = _check_formulation(name, "formulation()")
    old = _OVERRIDE[0]
    _OVERRIDE[0] = new
    try:
        yield
    finally:
        _OVERRIDE[0] = old


def compute_dtype(dtype: mx.Dtype) -> mx.Dtype:
    """The dtype a layer of ``dtype`` computes in: float32 for 16-bit layers in the CPU
    formulation (MLX's 16-bit CPU matmul is a slow loop that also rounds every
    intermediate; results are rounded once, at the layer's output), else ``dtype``."""
    return mx.float32 if dtype in REDUCED and cpu_formulation() else dtype


def to_float32(a: mx.array) -> mx.array:
    """``a`` in float32 (unchanged when it already is)."""
    return a if a.dtype == mx.float32 else a.astype(mx.float32)
