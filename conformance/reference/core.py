"""References for the core layers: Keras ``Dense``, ``Identity``, ``ZeroPadding1D/2D/3D``
and ``Dropout`` (also the reference for stochastic depth, with noise shape (B, 1, ..., 1))."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..case import Reference
from .activations import tf_activation


def _np(dtype: tf.DType):
    return np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype


def dense(case, weights, dtype):
    kw = case.kwargs
    layer = keras.layers.Dense(kw["output_size"], use_bias=kw.get("use_bias", True),
                               activation=tf_activation(kw.get("activation")),
                               trainable=kw.get("trainable", True), dtype=dtype.name)
    layer.build((None, weights[0].shape[0]))
    layer.set_weights([w.astype(_np(dtype)) for w in weights])
    variables = [v.value for v in layer.trainable_variables]
    return Reference(lambda x, training: layer(x), variables)


def identity(case, weights, dtype):
    layer = keras.layers.Identity()
    return Reference(lambda x, training: layer(x))


def _padding(value, n):
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)


def zeropadding(n):
    cls = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D,
           3: keras.layers.ZeroPadding3D}[n]
    default = {1: 1, 2: (1, 1), 3: (1, 1, 1)}[n]

    def ref(case, weights, dtype):
        ctor = case.kwargs.get("padding", default if n != 3 else (1, 1, 1))
        call = case.call_kwargs.get("padding")
        pad = _padding(call if call is not None else (ctor if ctor is not None else default), n)
        layer = cls(padding=pad)
        return Reference(lambda x, training, padding=None: layer(x))

    return ref


def keras_dropout(rate, noise_shape=None, seed=None):
    """A Keras Dropout layer (the random layers' reference)."""
    return keras.layers.Dropout(rate, noise_shape=noise_shape, seed=seed)


def run_keras_dropout(x: np.ndarray, rate: float, noise_shape, training: bool,
                      dtype: str, seed: int = 1234) -> np.ndarray:
    layer = keras_dropout(rate, noise_shape, seed)
    tf_dtype = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}[dtype]
    y = layer(tf.constant(x, dtype=tf_dtype), training=training)
    return np.asarray(tf.cast(y, tf.float64))


def documented_dropout_grad(x: np.ndarray, mask: np.ndarray, keep: float, ct: np.ndarray,
                            dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """d/dx of the documented ``y = x * mask / keep`` for a given mask, by GradientTape,
    in ``dtype`` and in float64."""
    out = []
    for dt in ({"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}[dtype],
               tf.float64):
        xt = tf.constant(x, dtype=dt)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = xt * tf.cast(mask, dt) * tf.cast(1.0 / keep, dt)
        g = tape.gradient(y, xt, output_gradients=tf.constant(ct, dtype=dt))
        out.append(np.asarray(tf.cast(g, tf.float64)))
    return out[0], out[1]
