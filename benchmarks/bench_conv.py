"""conv family: mlxnote vs the plain ``mx.conv_general`` composition of the same math vs
Keras (``tf.function``), forward and forward+backward (gradients w.r.t. the input and every
weight). The note column names the formulation ``mlxnote.kernels.conv`` chose."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .harness import Bench, tf_timers


def _case(name, layer, shape, raw_fwd, keras_layer, note=""):
    """One Bench: ``raw_fwd(x, *weights)`` is the plain-MLX composition."""

    x_np = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = mx.array(x_np)
    layer(x)  # build
    weights = [p for p in layer.param]
    mx.eval(x, weights)

    def ours_loss(params, x):
        layer.update(params)
        return layer(x).sum()

    g_ours = mx.value_and_grad(ours_loss, argnums=(0, 1))
    params = layer.trainable_parameters()
    g_raw = mx.value_and_grad(lambda x, *w: raw_fwd(x, *w).sum(),
                              argnums=tuple(range(len(weights) + 1)))

    keras_layer.build(shape)
    keras_layer.set_weights(layer.get_weights())
    tf_fwd, tf_bwd = tf_timers(keras_layer, keras_layer.trainable_variables, x_np)

    return Bench("conv", name,
                 fwd={"mlxnote": lambda: mx.eval(layer(x)),
                      "mlx": lambda: mx.eval(raw_fwd(x, *weights)),
                      "tf": tf_fwd},
                 bwd={"mlxnote": lambda: mx.eval(g_ours(params, x)),
                      "mlx": lambda: mx.eval(g_raw(x, *weights)),
                      "tf": tf_bwd},
                 note=note)


def benches(quick: bool) -> list[Bench]:
    import keras

    from mlxnote import nn
    from mlxnote.kernels import conv as kconv

    b = 4 if quick else 16
    hw = 32 if quick else 64
    out = []

    # conv2d: batch 16, 64x64, 32 -> 64, 3x3, SAME
    layer = nn.conv2d(64, 3, 32, padding="SAME")
    out.append(_case(
        f"conv2d {b}x{hw}x{hw} 32->64 3x3", layer, (b, hw, hw, 32),
        lambda x, w, bias: mx.conv_general(x, w, padding=1) + bias,
        keras.layers.Conv2D(64, 3, padding="same"),
        kconv.choose((b, hw, hw, 32), (64, 3, 3, 32), (1, 1), (1, 1), 1, (1, 1))))

    # depthwise_conv2d: 3x3 on 64 channels
    layer = nn.depthwise_conv2d(3, 1, 64, padding="SAME")
    out.append(_case(
        f"depthwise_conv2d {b}x{hw}x{hw}x64 3x3", layer, (b, hw, hw, 64),
        lambda x, w, bias: mx.conv_general(x, w, padding=1, groups=64) + bias,
        keras.layers.DepthwiseConv2D(3, padding="same"),
        kconv.choose((b, hw, hw, 64), (64, 3, 3, 1), (1, 1), (1, 1), 64, (1, 1))))

    # conv2d_transpose: stride 2, 3x3, SAME (32x32 -> 64x64), 64 -> 64
    h2 = hw // 2
    layer = nn.conv2d_transpose(64, 3, 64, strides=2, padding="SAME")
    # Keras SAME: out 2L, TF pads the forward conv by 0 before -> (lo, hi) = (2, 1)
    out.append(_case(
        f"conv2d_transpose s2 {b}x{h2}x{h2} 64->64 3x3", layer, (b, h2, h2, 64),
        lambda x, w, bias: mx.conv_general(x, w, padding=([2, 2], [1, 1]),
                                           input_dilation=2, flip=True) + bias,
        keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same"),
        kconv.choose((b, h2, h2, 64), (64, 3, 3, 64), (1, 1), (1, 1), 1, (2, 2))))

    # conv1d: batch 16, length 1024, 64 -> 64, k=3, SAME
    length = 256 if quick else 1024
    layer = nn.conv1d(64, 3, 64, padding="SAME")
    out.append(_case(
        f"conv1d {b}x{length} 64->64 k3", layer, (b, length, 64),
        lambda x, w, bias: mx.conv_general(x, w, padding=1) + bias,
        keras.layers.Conv1D(64, 3, padding="same"),
        kconv.choose((b, length, 64), (64, 3, 64), (1,), (1,), 1, (1,))))

    # separable_conv2d: 3x3 depthwise (dm 1) then 1x1, 32 -> 64
    layer = nn.separable_conv2d(64, 3, 1, 32, padding="SAME")
    out.append(_case(
        f"separable_conv2d {b}x{hw}x{hw} 32->64 3x3", layer, (b, hw, hw, 32),
        lambda x, dw, pw, bias: mx.conv_general(
            mx.conv_general(x, dw, padding=1, groups=32), pw) + bias,
        keras.layers.SeparableConv2D(64, 3, padding="same"),
        "shift + gemm"))

    # conv3d: batch 4, 16^3, 32 -> 32, 3x3x3, SAME
    b3, d3 = (2, 8) if quick else (4, 16)
    layer = nn.conv3d(32, 3, 32, padding="SAME")
    out.append(_case(
        f"conv3d {b3}x{d3}^3 32->32 3x3x3", layer, (b3, d3, d3, d3, 32),
        lambda x, w, bias: mx.conv_general(x, w, padding=1) + bias,
        keras.layers.Conv3D(32, 3, padding="same"),
        kconv.choose((b3, d3, d3, d3, 32), (32, 3, 3, 3, 32), (1,) * 3, (1,) * 3, 1,
                     (1,) * 3)))
    return out


def interleaved_min(impls: dict, repeat: int = 9, warmup: int = 2) -> dict[str, float]:
    """Min wall time (ms) per implementation, taking them in turn on every repeat, so that a
    burst of background load hits every implementation alike (this machine is shared)."""
    import time

    for _ in range(warmup):
        for fn in impls.values():
            fn()
    best = {k: float("inf") for k in impls}
    for _ in range(repeat):
        for k, fn in impls.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], 1e3 * (time.perf_counter() - t0))
    return best


def extra(console, quick: bool) -> None:
    """A second table: the same benches, interleaved, min of 9 (the ratios to trust when
    other processes share the CPU)."""
    from rich.table import Table

    t = Table(title="bench_conv, interleaved min of 9 (ms)", title_justify="left")
    for col in ("benchmark", "pass", "chosen", "mlxnote", "mlx", "tf", "ours/mlx", "ours/tf"):
        t.add_column(col, justify="left" if col in ("benchmark", "pass", "chosen") else "right")
    for b in benches(quick):
        for pass_, impls in (("fwd", b.fwd), ("fwd+bwd", b.bwd)):
            ms = interleaved_min(impls, 5 if quick else 9)
            rm, rt = ms["mlxnote"] / ms["mlx"], ms["mlxnote"] / ms["tf"]
            t.add_row(b.name, pass_, b.note, *[f"{ms[k]:.2f}" for k in ("mlxnote", "mlx", "tf")],
                      f"[{'green' if rm <= 1.05 else 'red'}]{rm:.2f}x",
                      f"[{'green' if rt <= 1.0 else 'red'}]{rt:.2f}x")
    console.print(t)
