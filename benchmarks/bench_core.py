"""dense: mlxnote vs ``x @ W + b`` in raw MLX vs Keras Dense (tf.function); dropout in
training mode (rate 0.1, 8x8x256x256: attention weights' size): mlxnote (the C++ kernel),
mlxnote-noext (``mx.random.bernoulli`` and a multiply), ``mlx`` (``mlx.nn.Dropout``, the
same composition) and Keras ``Dropout(training=True)``; fwd+bwd: the input's gradient for
a random cotangent, a fresh mask per call in every column."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench, tf_timers, without_extension


def benches(quick: bool) -> list[Bench]:
    return [_dense(quick), _dropout(quick)]


def _dense(quick: bool) -> Bench:
    import tensorflow as tf

    from mlxnote import nn

    b, i, o = (64, 256, 256) if quick else (512, 1024, 1024)
    x_np = np.random.default_rng(0).standard_normal((b, i)).astype(np.float32)
    layer = nn.dense(o, i, activation="relu")
    w, bias = layer.weight, layer.bias
    x = mx.array(x_np)
    raw = lambda x: mnn.relu(mx.addmm(bias, x, w))  # noqa: E731

    def ours_loss(params, x):
        layer.update(params)
        return layer(x).sum()

    def raw_loss(params, x):
        return mnn.relu(mx.addmm(params["b"], x, params["w"])).sum()

    g_ours = mx.value_and_grad(ours_loss)
    g_raw = mx.value_and_grad(raw_loss)
    params = layer.trainable_parameters()
    rparams = {"w": w, "b": bias}

    k = tf.keras.layers.Dense(o, activation="relu")
    k.build((None, i))
    tf_fwd, tf_bwd = tf_timers(k, k.trainable_variables, x_np, wrt_input=False)

    return Bench("core", f"dense {b}x{i}->{o} relu",
                  fwd={"mlxnote": lambda: mx.eval(layer(x)), "mlx": lambda: mx.eval(raw(x)),
                       "tf": tf_fwd},
                  bwd={"mlxnote": lambda: mx.eval(g_ours(params, x)),
                       "mlx": lambda: mx.eval(g_raw(rparams, x)),
                       "tf": tf_bwd})


def _dropout(quick: bool) -> Bench:
    import keras

    from mlxnote import nn

    shape = (2, 4, 64, 64) if quick else (8, 8, 256, 256)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape).astype(np.float32)
    ct_np = rng.standard_normal(shape).astype(np.float32)
    x, ct = mx.array(x_np), mx.array(ct_np)
    layer, ref = nn.dropout(0.1), mnn.Dropout(0.1)

    def ours():
        mx.eval(layer(x, train_flag=True))

    def ours_bwd():
        mx.eval(mx.vjp(lambda x: layer(x, train_flag=True), [x], [ct]))

    k = keras.layers.Dropout(0.1)
    tf_fwd, tf_bwd = tf_timers(lambda t: k(t, training=True), [], x_np, cotangent=ct_np)
    return Bench("core", f"dropout {'x'.join(map(str, shape))} rate 0.1 train",
                 fwd={"mlxnote": ours, "mlxnote-noext": without_extension(ours),
                      "mlx": lambda: mx.eval(ref(x)), "tf": tf_fwd},
                 bwd={"mlxnote": ours_bwd, "mlxnote-noext": without_extension(ours_bwd),
                      "mlx": lambda: mx.eval(mx.vjp(ref, [x], [ct])), "tf": tf_bwd},
                 interleaved=True, repeat=3 if quick else 9)
