"""dense: mlxnote vs ``x @ W + b`` in raw MLX vs Keras Dense (tf.function)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench, tf_timers


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
    k.build((None, i))
    tf_fwd, tf_bwd = tf_timers(k, k.trainable_variables, x_np, wrt_input=False)

    return [Bench("core", f"dense {b}x{i}->{o} relu",
                  fwd={"mlxnote": lambda: mx.eval(layer(x)), "mlx": lambda: mx.eval(raw(x)),
                       "tf": tf_fwd},
                  bwd={"mlxnote": lambda: mx.eval(g_ours(params, x)),
                       "mlx": lambda: mx.eval(g_raw(rparams, x)),
                       "tf": tf_bwd})]
