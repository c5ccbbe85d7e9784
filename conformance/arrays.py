"""Pure array helpers both sides of a comparison share: seeded inputs, rounding to a case's
dtype, and conversion between NumPy (float64) and mx arrays."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .case import Input

MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """Values of ``a`` rounded to ``dtype`` (and back to float64), as both sides see them."""
    return np.array(mx.array(a.astype(np.float32)).astype(MX_DTYPES[dtype]).astype(mx.float32),
                    dtype=np.float64)


def make_input(spec: Input, rng: np.random.Generator, dtype: str) -> np.ndarray:
    """Seeded values for one :class:`Input`, rounded to ``dtype`` when differentiable."""
    if spec.kind == "normal":
        return round_to(rng.standard_normal(spec.shape), dtype)
    if spec.kind == "uniform":
        return round_to(rng.uniform(-1, 1, spec.shape), dtype)
    if spec.kind == "positive":
        return round_to(rng.uniform(0.5, 1.5, spec.shape), dtype)
    if spec.kind == "zero_rows":  # N(0, 1) with every other row all zeros: a dense layer's
        # pre-activation is then exactly its bias there (a kink of relu & co. at bias 0)
        a = rng.standard_normal(spec.shape)
        a.reshape(-1, spec.shape[-1])[::2] = 0.0
        return round_to(a, dtype)
    if spec.kind == "mask":
        return rng.uniform(size=spec.shape) < 0.7
    if spec.kind == "int":
        return rng.integers(0, 4, spec.shape)
    raise ValueError(f"unknown input kind {spec.kind!r}")


def nudge(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 values of ``a`` each moved by -1, 0 or +1 unit in the last place (zeros stay
    0): a nearby problem, as exactly representable as the first."""
    a32 = np.asarray(a, np.float32)
    step = rng.integers(-1, 2, a32.shape)
    moved = np.where(step > 0, np.nextafter(a32, np.float32(np.inf)),
                     np.nextafter(a32, np.float32(-np.inf)))
    return np.where((step == 0) | (a32 == 0), a32, moved).astype(np.asarray(a).dtype)


def to_mx(a: np.ndarray, spec: Input, dtype: str) -> mx.array:
    """An input as mlxnote gets it: differentiable ones in ``dtype`` (or the dtype the input
    is ``given`` in), the rest as drawn."""
    if spec.differentiable:
        return mx.array(a.astype(np.float32)).astype(MX_DTYPES[spec.given or dtype])
    return mx.array(a)


def np32(a: mx.array) -> np.ndarray:
    """An mx array as float64 NumPy (16-bit values through float32, exactly)."""
    return np.array(a.astype(mx.float32) if a.dtype in (mx.bfloat16, mx.float16) else a,
                    dtype=np.float64)
