"""References for the pooling family: ``tf.nn.max_pool{1,2,3}d``/``tf.nn.avg_pool{1,2,3}d``
and ``keras.layers.Flatten``.

Written from TensorFlow's documentation and Note's: ``kernel_size``/``strides`` are TF's
``ksize`` forms (an int, one per spatial axis, a list of 1, or ``n + 2`` entries with 1 for
the batch and channel axes); ``'SAME'``/``'VALID'`` go to TF as they are; Note's explicit
padding is ``tf.pad`` with zeros, then ``'VALID'``. Channels-first inputs are transposed
to channels-last around the op (TF's CPU pooling kernels are channels-last).

TensorFlow's CPU ``MaxPool3D``/``AvgPool3D`` exist in float32 only, and the float32
``MaxPool3DGrad`` gives the whole gradient to every tied maximum of a window (the 1-D and
2-D ops, and mlxnote, give it to the first in row-major order: decisions.md, item 35). So
a 3-D case runs TF's 3-D op in float32 (normal inputs: no ties), and in float16, bfloat16
and the float64 oracle, where values can tie or the op is missing, the same box as two
passes of TF's 2-D op: over ``(H, W)``, then over ``D`` (a box max or average is
separable, its count too, and the passes keep the 2-D op's first-maximum gradient).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..case import Reference


def _spatial(value, n: int, channels_first: bool) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    v = list(value)
    if len(v) == 1:
        return v * n
    if len(v) == n + 2:
        c = 1 if channels_first else n + 1
        return [a for i, a in enumerate(v) if i not in (0, c)]
    return v


def _pairs(padding, n: int) -> list[list[int]]:
    if isinstance(padding, int):
        return [[padding, padding]] * n
    p = list(padding)
    if n == 1 and len(p) == 2 and all(isinstance(a, int) for a in p):
        return [p]
    return [[a, a] if isinstance(a, int) else list(a) for a in p]


def _separable3d(x, op: str, k, s, padding):
    fn = _OPS[op, 2]
    b, d, h, w, c = x.shape
    y = fn(tf.reshape(x, (b * d, h, w, c)), k[1:], s[1:], padding)
    h2, w2 = y.shape[1], y.shape[2]
    y = fn(tf.reshape(y, (b, d, h2 * w2, c)), [k[0], 1], [s[0], 1], padding)
    return tf.reshape(y, (b, y.shape[1], h2, w2, c))


_OPS = {("max", 1): tf.nn.max_pool1d, ("max", 2): tf.nn.max_pool2d,
        ("max", 3): tf.nn.max_pool3d, ("avg", 1): tf.nn.avg_pool1d,
        ("avg", 2): tf.nn.avg_pool2d, ("avg", 3): tf.nn.avg_pool3d}


def _pool(x, op: str, n: int, k, s, padding):
    # tf.nn.max_pool/avg_pool of each rank (the rank-generic op's 3-D gradient fails on
    # its unset data_format in TF 2.21)
    if n == 3 and x.dtype != tf.float32:  # see the module's docstring
        return _separable3d(x, op, k, s, padding)
    return _OPS[op, n](x, k, s, padding)


def pooling(n: int, op: str):
    """The reference of ``{op}_pool{n}d``."""
    default = 2 if op == "max" else None

    def ref(case, weights, dtype):
        kw = case.kwargs
        fmt = kw.get("data_format", "channels_last")
        cf = fmt == "channels_first" or (len(fmt) > 2 and fmt[1] == "C")
        k = _spatial(kw.get("kernel_size", default), n, cf)
        strides = kw.get("strides")
        s = k if strides is None else _spatial(strides, n, cf)
        padding = kw.get("padding", 0)
        last = [0, *range(2, n + 2), 1]  # NC... -> N...C
        first = [0, n + 1, *range(1, n + 1)]

        def fn(x, training):
            if cf:
                x = tf.transpose(x, last)
            if isinstance(padding, str):
                y = _pool(x, op, n, k, s, padding.upper())
            else:
                x = tf.pad(x, [[0, 0], *_pairs(padding, n), [0, 0]])
                y = _pool(x, op, n, k, s, "VALID")
            return tf.transpose(y, first) if cf else y

        return Reference(fn)

    return ref


def flatten(case, weights, dtype):
    layer = keras.layers.Flatten(dtype=dtype.name)
    return Reference(lambda x, training: layer(x))
