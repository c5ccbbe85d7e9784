"""Max and average pooling over any set of axes, with TensorFlow's semantics
(``tf.nn.max_pool`` / ``tf.nn.avg_pool``).

``pads`` are TensorFlow's SAME padding (or none): padded positions never win a max and are
not counted by an average. Explicit zero padding (Note's integer ``padding``) is the
caller's: pad with zeros, then pool with no padding.

The default path is separable: a box max or sum is one 1-D pass per pooled axis, each the
``k`` strided slices of that axis combined elementwise (``k1 + k2 + ...`` passes over
outputs instead of ``k1 * k2 * ...``, and no window tensor). A max keeps the first of equal
values (``where(v > acc, v, acc)``), and the passes run from the last pooled axis to the
first, so its gradient goes to the first maximum of each window in row-major order, as
TensorFlow's ``MaxPoolGrad`` does (MLX's own ``max`` splits it between ties). An average is
summed in ``compute_dtype`` (float32 for 16-bit inputs on the CPU) and divided once by the
window's count of valid positions. ``separable=False`` is the plain N-d path, every window
offset stacked and reduced at once (``argmax`` + ``take_along_axis`` for the max, a count
obtained by pooling ones for the average), differentiated by MLX's autodiff: the oracle.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from .._config import compute_dtype

OPS = ("max", "avg")


def out_length(length: int, k: int, s: int, pad: tuple[int, int]) -> int:
    """The output length of one pooled axis."""
    return (length + pad[0] + pad[1] - k) // s + 1


def _pad(x: mx.array, axes: Sequence[int], pads: Sequence[tuple[int, int]],
         fill: float) -> mx.array:
    if not any(lo or hi for lo, hi in pads):
        return x
    widths = [(0, 0)] * x.ndim
    for a, p in zip(axes, pads):
        widths[a] = tuple(p)
    return mx.pad(x, widths, constant_values=fill)


def _window_slice(x: mx.array, axes: Sequence[int], starts: Sequence[int],
                  strides: Sequence[int], outs: Sequence[int]) -> mx.array:
    """The values at ``start + o * stride`` for ``o < out`` along each of ``axes``."""
    index = [slice(None)] * x.ndim
    for a, j, s, o in zip(axes, starts, strides, outs):
        index[a] = slice(j, j + (o - 1) * s + 1, s)
    return x[tuple(index)]


def _counts(shape: Sequence[int], axes: Sequence[int], window: Sequence[int],
            strides: Sequence[int], pads: Sequence[tuple[int, int]],
            outs: Sequence[int], ndim: int) -> np.ndarray:
    """Valid positions per window: the product of each axis's count, broadcastable."""
    count = np.ones([1] * ndim, np.float64)
    for a, k, s, (lo, _), o in zip(axes, window, strides, pads, outs):
        start = np.arange(o) * s - lo
        n = np.minimum(start + k, shape[a]) - np.maximum(start, 0)
        count = count * n.reshape([-1 if i == a else 1 for i in range(ndim)])
    return count


def _separable(x: mx.array, op: str, axes, window, strides, pads, outs) -> mx.array:
    fill = -float("inf") if op == "max" else 0.0
    y = x
    for i in reversed(range(len(axes))):  # last axis first: row-major first maxima
        a, k, s, o = axes[i], window[i], strides[i], outs[i]
        y = _pad(y, [a], [pads[i]], fill)
        acc = None
        for j in range(k):
            v = _window_slice(y, [a], [j], [s], [o])
            if acc is None:
                acc = v
            elif op == "max":
                acc = mx.where(v > acc, v, acc)
            else:
                acc = acc + v
        y = acc
    return y


def _plain(x: mx.array, op: str, axes, window, strides, pads, outs) -> mx.array:
    fill = -float("inf") if op == "max" else 0.0
    xp = _pad(x, axes, pads, fill)
    offsets = list(itertools.product(*[range(k) for k in window]))  # row-major
    stacked = mx.stack([_window_slice(xp, axes, j, strides, outs) for j in offsets], axis=-1)
    if op == "max":
        idx = mx.stop_gradient(mx.argmax(stacked, axis=-1, keepdims=True))  # the first max
        return mx.take_along_axis(stacked, idx, axis=-1)[..., 0]
    ones = _pad(mx.ones(x.shape, x.dtype), axes, pads, 0.0)
    count = mx.stack([_window_slice(ones, axes, j, strides, outs) for j in offsets],
                     axis=-1).sum(axis=-1)
    return stacked.sum(axis=-1) / count


def pool(x: mx.array, op: str, window: Sequence[int], strides: Sequence[int],
         pads: Sequence[tuple[int, int]], axes: Sequence[int],
         separable: bool = True) -> mx.array:
    """Pool ``x`` over ``axes``.

    Args:
        x: any array; ``axes`` are the pooled axes, one per entry of ``window``.
        op: ``'max'`` or ``'avg'``.
        window, strides: per pooled axis.
        pads: per pooled axis ``(before, after)``: TensorFlow's SAME padding, ignored by
            the reduction (never a maximum, not counted in an average).
        separable: the per-axis passes (default) or the plain N-d path (the oracle).

    Returns:
        ``x`` with each pooled axis of length ``(L + before + after - k) // s + 1``, in
        ``x``'s dtype.
    """
    if op not in OPS:
        raise ValueError(f"pool: op {op!r}; allowed: {OPS}")
    axes = [a % x.ndim for a in axes]
    outs = [out_length(x.shape[a], k, s, p) for a, k, s, p in zip(axes, window, strides, pads)]
    dtype = x.dtype
    if op == "avg":
        x = x.astype(compute_dtype(dtype))
    if not separable:
        return _plain(x, op, axes, window, strides, pads, outs).astype(dtype)
    y = _separable(x, op, axes, window, strides, pads, outs)
    if op == "avg":
        count = _counts(x.shape, axes, window, strides, pads, outs, x.ndim)
        if count.min() == count.max():
            y = y / float(count.flat[0])
        else:
            y = y / mx.array(count.astype(np.float32)).astype(y.dtype)
    return y.astype(dtype)
