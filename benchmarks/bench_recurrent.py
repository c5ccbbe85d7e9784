"""LSTM and GRU, interleaved min of N: mlxnote with its C++ extension (``mlxnote``: the
fused ``rnn_scan``) and without it (``mlxnote-noext``: ``extension.enabled(False)``, the
pure-MLX scan), raw MLX in three forms, Keras (``tf.function``) and PyTorch CPU
(``torch.nn.LSTM``/``GRU``, eager, one intra-op thread per core; the column is left out
when ``import torch`` fails: a benchmark-only peer, never a dependency), float32, every
implementation on the mlxnote layer's weights.

Rows: the first issue's shapes (batch 32, 64 steps, 128 inputs, 256 units; LSTM and
``GRU(reset_after=False)``, Keras's ``reset_after=False``), and issue 17's second set:
LSTM b16 T100 64->128 and ``GRU(reset_after=True)`` b32 T64 128->256 (Keras 3's default
GRU, and PyTorch's: ``torch.nn.GRU`` is the reset-after variant, so the reset-before row
has no torch column). The loss is the sum of the last hidden state; fwd+bwd takes the
gradients of every weight (not the input) in every column.

Columns:

* ``mlxnote``, ``mlxnote-noext``: ``nn.LSTM`` / ``nn.GRU`` (default policy);
* ``mlx``: a hand-written MLX loop of the same equations (one input matmul, ``addmm`` and
  ``split`` per step), differentiated by MLX's autodiff;
* ``mlx.compile``: the same loop (and its gradient) under ``mx.compile``;
* ``mlx.nn``: ``mlx.nn.LSTM`` / ``mlx.nn.GRU`` (its GRU is the reset-after variant: in the
  reset-before row the same cost class, different math);
* ``tf``: ``keras.layers.LSTM(unit_forget_bias=False)`` / ``GRU(reset_after=...)``;
* ``torch``: ``torch.nn.LSTM`` / ``torch.nn.GRU`` (batch first).

The ``@busy`` columns time mlxnote, TF and PyTorch again while one process per core spins
(``harness.busy_cores``).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench, tf_timers, torch_timers, without_extension

REPEAT, QUICK_REPEAT, BURST = 9, 3, 2
TITLE = (f"recurrent: interleaved min of {REPEAT} rounds x {BURST} calls (ms; --quick: "
         f"{QUICK_REPEAT} rounds)")
NOTES = True


def _raw_lstm(wx, wh, b, x):
    bsz, steps, i = x.shape
    hsz = wh.shape[0]
    xp = mx.addmm(b, x.reshape(-1, i), wx).reshape(bsz, steps, -1)
    h = c = mx.zeros((bsz, hsz), x.dtype)
    for t in range(steps):
        gi, gf, go, gc = mx.split(mx.addmm(xp[:, t], h, wh), 4, axis=-1)  # Note: i, f, o, c
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


def _raw_gru_after(wx, wh, b, x):
    """Reset-after GRU: ``b`` is ``[2, 3H]`` (input bias, recurrent bias), gates r, z, h."""
    bsz, steps, i = x.shape
    hsz = wh.shape[0]
    xp = mx.addmm(b[0], x.reshape(-1, i), wx).reshape(bsz, steps, -1)
    h = mx.zeros((bsz, hsz), x.dtype)
    for t in range(steps):
        xr, xz, xh = mx.split(xp[:, t], 3, axis=-1)
        hr, hz, hh = mx.split(mx.addmm(b[1], h, wh), 3, axis=-1)
        r, z = mx.sigmoid(xr + hr), mx.sigmoid(xz + hz)
        h = z * h + (1 - z) * mx.tanh(xh + r * hh)
    return h


def _torch_module(kind: str, keras_weights: list, h: int):
    """``torch.nn.LSTM``/``GRU`` (batch first) holding the Keras-layout weights (Keras's
    gate order: LSTM i, f, c, o as torch's i, f, g, o; GRU z, r, h -> torch's r, z, n);
    ``None`` without torch."""
    try:
        import torch
    except ImportError:
        return None
    kernel, rkernel, bias = keras_weights
    if kind == "LSTM":
        perm = np.arange(4 * h)
        b_ih, b_hh = bias, np.zeros_like(bias)
        mod = torch.nn.LSTM(kernel.shape[0], h, batch_first=True)
    else:
        perm = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
        b_ih, b_hh = bias[0], bias[1]
        mod = torch.nn.GRU(kernel.shape[0], h, batch_first=True)
    with torch.no_grad():
        for name, v in (("weight_ih_l0", kernel[:, perm].T), ("weight_hh_l0", rkernel[:, perm].T),
                        ("bias_ih_l0", b_ih[perm]), ("bias_hh_l0", b_hh[perm])):
            getattr(mod, name).copy_(torch.from_numpy(np.ascontiguousarray(v, np.float32)))
    return mod


def _bench(kind: str, b: int, t: int, i: int, h: int, repeat: int,
           reset_after: bool = False) -> Bench:
    import keras

    from mlxnote import nn

    x_np = np.random.default_rng(0).standard_normal((b, t, i)).astype(np.float32)
    x = mx.array(x_np)
    mx.random.seed(0)

    # mlxnote
    if kind == "LSTM":
        layer = nn.LSTM(h, i)
    else:
        layer = nn.GRU(h, i, reset_after=reset_after)
    ours_vg = mnn.value_and_grad(layer, lambda m, x: m(x).sum())

    # hand-written MLX, on the same stored weights
    raw = _raw_lstm if kind == "LSTM" else _raw_gru_after if reset_after else _raw_gru
    rparams = [layer.kernel, layer.recurrent_kernel, layer.bias]
    raw_vg = mx.value_and_grad(lambda p, x: raw(*p, x).sum())
    raw_fwd_c = mx.compile(lambda p, x: raw(*p, x))
    raw_vg_c = mx.compile(raw_vg)

    # mlx.nn (its own initial weights: the timing does not depend on them)
    ref = (mnn.LSTM if kind == "LSTM" else mnn.GRU)(i, h)
    ref_vg = mnn.value_and_grad(ref, lambda m, x: m(x)[0][:, -1].sum() if kind == "LSTM"
                                else m(x)[:, -1].sum())

    def ref_fwd():
        out = ref(x)
        mx.eval(out[0][:, -1] if kind == "LSTM" else out[:, -1])

    # Keras, on the mlxnote weights
    if kind == "LSTM":
        k = keras.layers.LSTM(h, unit_forget_bias=False)
    else:
        k = keras.layers.GRU(h, reset_after=reset_after)
    k.build((None, t, i))
    kw = layer.get_weights(layout="keras")
    k.set_weights(kw)
    tf_fwd, tf_bwd = tf_timers(k, k.trainable_variables, x_np, wrt_input=False)

    fwd = {"mlxnote": lambda: mx.eval(layer(x)),
           "mlxnote-noext": without_extension(lambda: mx.eval(layer(x))),
           "mlx": lambda: mx.eval(raw(*rparams, x)),
           "mlx.compile": lambda: mx.eval(raw_fwd_c(rparams, x)),
           "mlx.nn": ref_fwd,
           "tf": tf_fwd}
    bwd = {"mlxnote": lambda: mx.eval(ours_vg(layer, x)),
           "mlxnote-noext": without_extension(lambda: mx.eval(ours_vg(layer, x))),
           "mlx": lambda: mx.eval(raw_vg(rparams, x)),
           "mlx.compile": lambda: mx.eval(raw_vg_c(rparams, x)),
           "mlx.nn": lambda: mx.eval(ref_vg(ref, x)),
           "tf": tf_bwd}
    note = "loss: sum of the last h; fwd+bwd: gradients of every weight"
    if kind == "GRU" and not reset_after:
        note += "; no torch (torch.nn.GRU is reset-after: see that row)"
    else:
        module = _torch_module(kind, kw, h)
        if module is not None:
            fwd["torch"], bwd["torch"] = torch_timers(
                module, x_np, call=lambda x: module(x)[1][0][-1] if kind == "LSTM"
                else module(x)[1][-1], wrt_input=False)
    name = f"{kind}{' reset_after' if reset_after else ''} b{b} T{t} {i}->{h}"
    return Bench("recurrent", name, fwd=fwd, bwd=bwd, note=note, interleaved=True,
                 repeat=repeat, burst=BURST, busy=("mlxnote", "tf", "torch"))


def benches(quick: bool) -> list[Bench]:
    repeat = QUICK_REPEAT if quick else REPEAT
    first = (8, 16, 32, 64) if quick else (32, 64, 128, 256)
    second = (4, 20, 16, 32) if quick else (16, 100, 64, 128)
    return [_bench("LSTM", *first, repeat), _bench("GRU", *first, repeat),
            _bench("LSTM", *second, repeat), _bench("GRU", *first, repeat, reset_after=True)]
