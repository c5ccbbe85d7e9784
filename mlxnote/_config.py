"""Policy in one place: the dtype tables, the reduced dtypes, the device check that picks
each kernel's formulation, and the dtype a layer computes in.

Every "is this the CPU?" question a layer or kernel asks to choose a formulation goes
through :func:`cpu_formulation`, so that one switch changes them all.
"""

from __future__ import annotations

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


def cpu_formulation() -> bool:
    """Do layers and kernels take their CPU formulation (the default device is the CPU)?

    Metal and CUDA take MLX's fused kernels; the CPU takes mlxnote's formulations."""
    return mx.default_device().type == mx.DeviceType.cpu


def compute_dtype(dtype: mx.Dtype) -> mx.Dtype:
    """The dtype a layer of ``dtype`` computes in: float32 for 16-bit layers in the CPU
    formulation (MLX's 16-bit CPU matmul is a slow loop that also rounds every
    intermediate; results are rounded once, at the layer's output), else ``dtype``."""
    return mx.float32 if dtype in REDUCED and cpu_formulation() else dtype


def to_float32(a: mx.array) -> mx.array:
    """``a`` in float32 (unchanged when it already is)."""
    return a if a.dtype == mx.float32 else a.astype(mx.float32)
