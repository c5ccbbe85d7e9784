"""LSTM and GRU: mlxnote vs raw MLX (three forms) vs Keras (tf.function).

Shapes (the issue's): batch 32, 64 steps, 128 inputs, 256 units, float32; the loss is the
sum of the last hidden state, and fwd+bwd takes the gradients of every weight.

Columns:

* ``mlxnote``: ``nn.LSTM`` / ``nn.GRU`` (the fused scan core, default policy);
* ``mlx``: a hand-written MLX loop of the same equations (one input matmul, ``addmm`` and
  ``split`` per step), differentiated by MLX's autodiff;
* ``mlx.compile``: the same loop (and its gradient) under ``mx.compile``;
* ``mlx.nn``: ``mlx.nn.LSTM`` / ``mlx.nn.GRU`` (its GRU is PyTorch's ``reset_after=True``
  variant: same cost class, different math);
* ``tf``: ``keras.layers.LSTM`` / ``GRU(reset_after=False)`` under ``tf.function``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench, tf_timers


def _raw_lstm(wx, wh, b, x):
    bsz, steps, i = x.shape
    hsz = wh.shape[0]
    xp = mx.addmm(b, x.reshape(-1, i), wx).reshape(bsz, steps, -1)
    h = c = mx.zeros((bsz, hsz), x.dtype)
    for t in range(steps):
        gi, gf, gc, go = mx.split(mx.addmm(xp[:, t], h, wh), 4, axis=-1)
        c = mx.sigmoid(gf) * c + mx.sigmoid(gi) * mx.tanh(gc)
        h = mx.sigmoid(go) * mx.tanh(c)
    return h


def _raw_gru(wx, wh, b, x):
    bsz, steps, i = x.shape
    hsz = wh.shape[0]
    xp = mx.addmm(b, x.reshape(-1, i), wx).reshape(bsz, steps, -1)
    w_rz, w_h = wh[:, :2 * hsz], wh[:, 2 * hsz:]
    h = mx.zeros((bsz, hsz), x.dtype)
    for t in range(steps):
        r, z = mx.split(mx.sigmoid(mx.addmm(xp[:, t, :2 * hsz], h, w_rz)), 2, axis=-1)
        hh = mx.tanh(mx.addmm(xp[:, t, 2 * hsz:], r * h, w_h))
        h = z * h + (1 - z) * hh
    return h


def _bench(kind: str, b: int, t: int, i: int, h: int, repeat: int) -> Bench:
    import keras

    from mlxnote import nn

    x_np = np.random.default_rng(0).standard_normal((b, t, i)).astype(np.float32)
    x = mx.array(x_np)
    mx.random.seed(0)

    # mlxnote
    layer = (nn.LSTM if kind == "LSTM" else nn.GRU)(h, i)
    ours_vg = mnn.value_and_grad(layer, lambda m, x: m(x).sum())

    # hand-written MLX, on the same stored weights
    raw = _raw_lstm if kind == "LSTM" else _raw_gru
    rparams = [layer.kernel, layer.recurrent_kernel, layer.bias]
    raw_vg = mx.value_and_grad(lambda p, x: raw(*p, x).sum())
    raw_fwd_c = mx.compile(lambda p, x: raw(*p, x))
    raw_vg_c = mx.compile(raw_vg)

    # mlx.nn
    ref = (mnn.LSTM if kind == "LSTM" else mnn.GRU)(i, h)
    ref_vg = mnn.value_and_grad(ref, lambda m, x: m(x)[0][:, -1].sum() if kind == "LSTM"
                                else m(x)[:, -1].sum())

    def ref_fwd():
        out = ref(x)
        mx.eval(out[0][:, -1] if kind == "LSTM" else out[:, -1])

    # Keras
    if kind == "LSTM":
        k = keras.layers.LSTM(h, unit_forget_bias=False)
    else:
        k = keras.layers.GRU(h, reset_after=False)
    k.build((None, t, i))
    tf_fwd, tf_bwd = tf_timers(k, k.trainable_variables, x_np, wrt_input=False)

    name = f"{kind} b{b} T{t} {i}->{h}"
    return Bench(
        "recurrent", name,
        fwd={"mlxnote": lambda: mx.eval(layer(x)),
             "mlx": lambda: mx.eval(raw(*rparams, x)),
             "mlx.compile": lambda: mx.eval(raw_fwd_c(rparams, x)),
             "mlx.nn": ref_fwd,
             "tf": tf_fwd},
        bwd={"mlxnote": lambda: mx.eval(ours_vg(layer, x)),
             "mlx": lambda: mx.eval(raw_vg(rparams, x)),
             "mlx.compile": lambda: mx.eval(raw_vg_c(rparams, x)),
             "mlx.nn": lambda: mx.eval(ref_vg(ref, x)),
             "tf": tf_bwd},
        note="loss: sum of the last h; fwd+bwd: gradients of every weight",
        repeat=repeat)


def benches(quick: bool) -> list[Bench]:
    shape = (8, 16, 32, 64) if quick else (32, 64, 128, 256)
    repeat = 3 if quick else 7
    return [_bench("LSTM", *shape, repeat), _bench("GRU", *shape, repeat)]
