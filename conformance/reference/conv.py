"""TensorFlow references for the conv family, written from the documentation
(``decisions.md`` items 8-15) on TF's own ops:

* conv1d/2d: ``tf.nn.convolution``; conv3d: ``tf.nn.conv3d``;
* transposed convs: ``tf.nn.conv_transpose`` with the output shape Keras's
  ``Conv{1,2,3}DTranspose.compute_output_shape`` gives;
* depthwise: ``tf.nn.depthwise_conv2d``; separable: ``tf.nn.separable_conv2d``; the 1-D
  layers run the 2-D op on an added axis of size 1 (as Note does).

Where TensorFlow's CPU kernels cannot run a documented case, the reference computes the
same mathematics another TF way, never by transliterating mlxnote:

* channels-first: TF's CPU convolutions are NHWC-only, so the input is transposed to
  channels-last, convolved, and the result transposed back;
* explicit padding: ``tf.pad`` with zeros, then VALID (decision 8);
* groups: TF's CPU kernels have no gradient for grouped convolutions (and no float64 or
  float16 forward), so the input channels and the kernel's output axis are split into
  ``groups`` blocks, convolved, and concatenated (the definition of a grouped conv);
* dilations that TF's CPU kernels or ``tf.nn.convolution`` reject (any dilated 3-D conv,
  dilation together with stride > 1, dilated transposed convs, whose CPU backprop-input
  kernel rejects dilation in float64/float16 -- done this way in every dtype): the kernel
  is dilated explicitly (zeros inserted between taps, the definition of a dilated kernel)
  and the op runs undilated.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..case import Reference
from .activations import tf_activation


def _tuple(v, n):
    if v is None:
        return (1,) * n
    if isinstance(v, int):
        return (v,) * n
    v = list(v)
    if len(v) == n + 2:
        return tuple(v[1:-1])
    if n == 1 and len(v) == 2:
        return (v[1],)
    return tuple(v)


def _channels_first(fmt) -> bool:
    return fmt in ("NCW", "NCHW", "NCDHW", "channels_first")


def dilate_kernel(w, dilations, n):
    """Insert ``d - 1`` zeros between the taps of the first ``n`` (spatial) axes."""
    for i, d in enumerate(dilations):
        if d == 1:
            continue
        k = w.shape[i]
        parts = [w] + [tf.zeros_like(w)] * (d - 1)
        stacked = tf.stack(parts, axis=i + 1)
        shape = list(w.shape)
        shape[i] = k * d
        w = tf.reshape(stacked, shape)
        w = tf.gather(w, tf.range((k - 1) * d + 1), axis=i)
    return w


def _explicit(padding, n):
    """Explicit padding as Note defines it: an int, or per dim an int or a pair."""
    if isinstance(padding, int):
        return [(padding, padding)] * n
    if n == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _pad_input(x, padding, n):
    """Returns (x, tf_padding): explicit zero padding by tf.pad, then 'VALID'."""
    if isinstance(padding, str):
        return x, padding.upper()
    pads = _explicit(padding, n)
    return tf.pad(x, [(0, 0), *pads, (0, 0)]), "VALID"


def _conv_nd(x, w, strides, padding, dilations, n, groups=1):
    """Channels-last forward convolution with TF's ops (see the module notes)."""
    if groups > 1:
        cin = x.shape[-1] // groups
        cout = w.shape[-1] // groups
        return tf.concat([_conv_nd(x[..., g * cin:(g + 1) * cin],
                                   w[..., g * cout:(g + 1) * cout], strides, padding,
                                   dilations, n) for g in range(groups)], axis=-1)
    s, d = list(strides), list(dilations)
    native = all(v == 1 for v in d) or (n < 3 and all(v == 1 for v in s))
    if not native:
        w, d = dilate_kernel(w, d, n), [1] * n
    if n == 3:
        return tf.nn.conv3d(x, w, [1, *s, 1], padding, dilations=[1, *d, 1])
    return tf.nn.convolution(x, w, strides=s, padding=padding, dilations=d)


class _Ref:
    """Holds the TF variables (Note's layout) and the layer's configuration."""

    def __init__(self, case, weights, dtype, n):
        kw = case.kwargs
        self.n = n
        self.kw = kw
        self.dtype = dtype
        self.cf = _channels_first(kw.get("data_format"))
        self.act = tf_activation(kw.get("activation"))
        self.vars = [tf.Variable(np.asarray(w), dtype=dtype) for w in weights]
        self.use_bias = kw.get("use_bias", True)
        self.trainable = kw.get("trainable", True)

    def dil(self, call_dilations):
        return _tuple(call_dilations if call_dilations is not None else self.kw.get("dilations"),
                      self.n)

    def finish(self, y_last, bias):
        if self.use_bias:
            y_last = y_last + bias
        y = self.to_format(y_last)
        return self.act(y)

    def to_last(self, x):
        return tf.transpose(x, [0, *range(2, self.n + 2), 1]) if self.cf else x

    def to_format(self, y):
        return tf.transpose(y, [0, self.n + 1, *range(1, self.n + 1)]) if self.cf else y

    def reference(self, fn):
        return Reference(fn, self.vars if self.trainable else [])


def conv(n):
    def ref(case, weights, dtype):
        r = _Ref(case, weights, dtype, n)
        kw = case.kwargs
        strides = _tuple(kw.get("strides"), n)
        groups = kw.get("groups", 1)

        def fn(x, training, dilations=None):
            x = r.to_last(x)
            x, pad = _pad_input(x, kw.get("padding", "VALID"), n)
            y = _conv_nd(x, r.vars[0], strides, pad, r.dil(dilations), n, groups)
            return r.finish(y, r.vars[1] if r.use_bias else None)

        return r.reference(fn)

    return ref


def conv_transpose(n):
    cls = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose,
           3: keras.layers.Conv3DTranspose}[n]

    def ref(case, weights, dtype):
        r = _Ref(case, weights, dtype, n)
        kw = case.kwargs
        strides = _tuple(kw.get("strides"), n)
        ksize = _tuple(kw["kernel_size"], n)
        op = kw.get("output_padding")
        op = None if op is None else _tuple(op, n)

        def fn(x, training, dilations=None):
            x = r.to_last(x)
            d = r.dil(dilations)
            shape = cls(kw["filters"], ksize, strides=strides, padding=kw.get("padding",
                        "VALID").lower(), output_padding=op, dilation_rate=d
                        ).compute_output_shape(tuple(x.shape))
            w = r.vars[0]
            if any(v > 1 for v in d):  # CPU backprop-input kernels reject dilations
                w, d = dilate_kernel(w, d, n), (1,) * n
            y = tf.nn.conv_transpose(x, w, [x.shape[0], *shape[1:]], strides=list(strides),
                                     padding=kw.get("padding", "VALID").upper(),
                                     dilations=list(d))
            return r.finish(y, r.vars[1] if r.use_bias else None)

        return r.reference(fn)

    return ref


def _depthwise_2d(x, w, strides, padding, dilations):
    """tf.nn.depthwise_conv2d (equal strides, as TF requires; dilation with stride > 1 via
    an explicitly dilated kernel)."""
    if any(v > 1 for v in dilations) and any(v > 1 for v in strides):
        w, dilations = dilate_kernel(w, dilations, 2), (1, 1)
    return tf.nn.depthwise_conv2d(x, w, [1, *strides, 1], padding, dilations=list(dilations))


def depthwise(n, separable=False):
    def ref(case, weights, dtype):
        r = _Ref(case, weights, dtype, n)
        kw = case.kwargs
        strides = _tuple(kw.get("strides"), n)

        def fn(x, training, dilations=None):
            x = r.to_last(x)
            x, pad = _pad_input(x, kw.get("padding", "VALID"), n)
            d = r.dil(dilations)
            dw = r.vars[0]
            s2 = strides
            if n == 1:  # the 2-D op on an added axis: x (N, 1, L, C), kernel (1, k, C, dm)
                x, dw = x[:, None], dw[None]
                s2, d = (strides[0], strides[0]), (1, d[0])
            if separable:
                pw = r.vars[1][None] if n == 1 else r.vars[1]
                if any(v > 1 for v in d) and any(v > 1 for v in s2):
                    dw, d = dilate_kernel(dw, d, 2), (1, 1)
                y = tf.nn.separable_conv2d(x, dw, pw, [1, *s2, 1], pad, dilations=list(d))
            else:
                y = _depthwise_2d(x, dw, s2, pad, d)
            if n == 1:
                y = y[:, 0]
            bias = r.vars[-1] if r.use_bias else None
            return r.finish(y, bias)

        return r.reference(fn)

    return ref
