"""dense: mlxnote vs ``x @ W + b`` in raw MLX vs Keras Dense (tf.function)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench


def benches(quick: bool) -> list[Bench]:
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
    xt = tf.constant(x_np)
    k.build((None, i))

    @tf.function
    def tf_fwd(x):
        return k(x)

    @tf.function
    def tf_bwd(x):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(k(x))
        return tape.gradient(y, k.trainable_variables)

    return [Bench("core", f"dense {b}x{i}->{o} relu",
                  fwd={"mlxnote": lambda: mx.eval(layer(x)), "mlx": lambda: mx.eval(raw(x)),
                       "tf": lambda: tf_fwd(xt).numpy()},
                  bwd={"mlxnote": lambda: mx.eval(g_ours(params, x)),
                       "mlx": lambda: mx.eval(g_raw(rparams, x)),
                       "tf": lambda: [g.numpy() for g in tf_bwd(xt)]})]
