"""Argument checks and shape helpers shared by the normalization layers
(:mod:`mlxnote.nn.norm`): axes, ``input_size`` per axis, masks, broadcast shapes, and the
lazy build from the normalized axes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from .._validation import is_int as _is_int
from .layer import Desc, Layer

if TYPE_CHECKING:
    from .norm import batch_norm, layer_norm

def check_axis(layer: Layer, axis: Any) -> int | tuple[int, ...]:
    """``axis``: an int or a non-empty list of distinct ints (validated, not yet resolved)."""
    if _is_int(axis):
        return int(axis)
    allowed = "an int or a non-empty list of distinct ints"
    if (not isinstance(axis, Sequence) or isinstance(axis, str) or not axis
            or not all(_is_int(a) for a in axis)):
        raise layer.error("axis", axis, allowed, TypeError)
    if len(set(int(a) for a in axis)) != len(axis):
        raise layer.error("axis", axis, allowed)
    return tuple(int(a) for a in axis)


def resolve_axes(layer: Layer, axis: int | tuple[int, ...], x: mx.array) -> tuple[int, ...]:
    """Sorted non-negative axes of ``x`` (an error names the input's rank)."""
    axes = (axis,) if isinstance(axis, int) else axis
    nd = x.ndim
    if any(a < -nd or a >= nd for a in axes):
        raise layer.error("data", Desc(f"an array of shape {tuple(x.shape)}"),
                          f"an array with axis {layer.axis} (rank >= "
                          f"{max(a + 1 if a >= 0 else -a for a in axes)})")
    out = tuple(sorted(a % nd for a in axes))
    if len(set(out)) != len(out):
        raise layer.error("axis", layer.axis, f"distinct axes of a rank-{nd} input")
    return out


def check_input_size(layer: Layer, input_size: Any,
                      axis: int | tuple[int, ...]) -> int | tuple[int, ...] | None:
    """``input_size``: None, an int (one normalized axis) or a list with one int per axis."""
    n = 1 if isinstance(axis, int) else len(axis)
    if input_size is None:
        return None
    if n > 1 and any(a < 0 for a in axis) and any(a >= 0 for a in axis):
        # the weights follow the sorted axes, whose order depends on the input's rank
        raise layer.error("axis", list(axis), "axes of one sign when input_size is given "
                          "(or input_size=None: the sizes are then read from the input)")
    if _is_int(input_size) and n == 1:
        return layer.check_int("input_size", input_size)
    allowed = ("None or an int >= 1" if n == 1 else
               f"None or a list of {n} ints >= 1 (the sizes of axes {list(axis)})")
    if not (isinstance(input_size, Sequence) and not isinstance(input_size, str) and
            len(input_size) == n and all(_is_int(v) for v in input_size)):
        raise layer.error("input_size", input_size, allowed,
                          ValueError if _is_int(input_size) else TypeError)
    if any(v < 1 for v in input_size):
        raise layer.error("input_size", input_size, allowed)
    sizes = tuple(layer.check_int("input_size", v) for v in input_size)  # (<= 2^31 - 1)
    return sizes if n > 1 else sizes[0]


def sorted_axes(axis: int | tuple[int, ...], input_size: Any) -> tuple[Any, Any]:
    """A list ``axis`` of one sign in increasing order, ``input_size`` (one size per axis,
    in the order given) permuted with it: the weights are stored in the order of the
    sorted axes, which is how they broadcast (Keras sorts them too)."""
    if isinstance(axis, int) or not (all(a >= 0 for a in axis) or all(a < 0 for a in axis)):
        return axis, input_size
    order = sorted(range(len(axis)), key=lambda i: axis[i])
    if isinstance(input_size, tuple):
        input_size = tuple(input_size[i] for i in order)
    return tuple(axis[i] for i in order), input_size


def weight_shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    return (size,) if isinstance(size, int) else tuple(size)


def broadcast_shape(x: mx.array, axes: tuple[int, ...]) -> list[int]:
    """Broadcast shape of a per-channel statistic: the input's size on ``axes``, else 1."""
    return [x.shape[i] if i in axes else 1 for i in range(x.ndim)]


def check_mask(layer: Layer, mask: Any, shape: tuple[int, ...], expand: bool) -> mx.array:
    """A mask as an ``mx.array`` broadcastable to ``shape`` (after ``[..., None]`` when
    ``expand``: batch_norm's mask has the input's shape without the last axis)."""
    if not isinstance(mask, mx.array):
        arr = np.asarray(mask)
        if arr.dtype.kind not in "biuf":
            raise layer.error("mask", Desc(f"an array of dtype {arr.dtype}"),
                              "a bool or numeric array", TypeError)
        mask = mx.array(arr)
    elif mask.dtype in (mx.complex64,):
        raise layer.error("mask", Desc(f"an array of dtype {mask.dtype}"),
                          "a bool or numeric array", TypeError)
    want = ("the input's shape without the last axis " if expand else "") + \
        f"(broadcastable to {tuple(shape)})"
    if expand:
        if mask.ndim != len(shape) - 1:
            raise layer.error("mask", Desc(f"an array of shape {tuple(mask.shape)}"), want)
        mask = mask[..., None]
    try:
        ok = mask.ndim <= len(shape) and np.broadcast_shapes(tuple(mask.shape),
                                                             tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise layer.error("mask", Desc(f"an array of shape {tuple(mask.shape)}"), want)
    return mask


def build_from(layer: batch_norm | layer_norm, x: mx.array, axes: tuple[int, ...]) -> None:
    """Build from the sizes of ``x`` on the normalized ``axes`` (an int ``axis``: one size),
    or check them against ``input_size``."""
    sizes = tuple(x.shape[a] for a in axes)
    size = sizes[0] if isinstance(layer.axis, int) else sizes
    if not layer.built:
        layer.build(size)
    elif weight_shape(size) != weight_shape(layer.input_size):  # axis=[1]: 3 or [3]
        raise layer.error("data", Desc(f"an array of shape {tuple(x.shape)}"),
                          f"size {layer.input_size} on axis {layer.axis} (input_size)")
