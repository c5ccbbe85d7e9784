"""conv family, interleaved min of N: mlxnote with its C++ extension (``mlxnote``) and
without it (``mlxnote-noext``: ``extension.enabled(False)``, the pure-MLX formulations),
the plain ``mx.conv_general`` composition of the same math (``mlx``), Keras
(``tf.function``, TensorFlow's defaults in this process: oneDNN on, every core) and
PyTorch CPU (``torch``, NCHW, eager, one intra-op thread per core; the column is left out
when ``import torch`` fails: it is a benchmark-only peer, never a dependency).

Forward and forward+backward (the gradients of ``sum(y)`` with respect to the input and
every weight, in every column). The ``@busy`` columns time mlxnote, TF and PyTorch again
while one process per core spins (``harness.busy_cores``). The note column names the
formulation ``mlxnote.kernels.conv.choose`` picks, with the extension / without it when
they differ.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .harness import Bench, tf_timers, torch_timers, without_extension

REPEAT, QUICK_REPEAT, BURST = 9, 3, 2
TITLE = (f"conv: interleaved min of {REPEAT} rounds x {BURST} calls (ms; --quick: "
         f"{QUICK_REPEAT} rounds)")
NOTES = True


def _chosen(*convs) -> str:
    """The formulations ``choose`` picks for each conv (``+``-joined), with the extension
    and, when different, without it."""
    from mlxnote.kernels import conv as kconv
    from mlxnote.kernels import extension

    def pick():
        return "+".join(kconv.choose(*c) for c in convs)

    on = pick()
    with extension.enabled(False):
        off = pick()
    return on if on == off else f"{on} / {off}"


def _torch_module(kind: str, n: int, weights: list, stride: int = 1):
    """A torch ``Conv{n}d``/``ConvTranspose{n}d`` (or depthwise + pointwise for
    ``'separable'``) holding the Keras-layout ``weights`` of the mlxnote layer, SAME
    padding for an odd kernel; ``None`` without torch."""
    try:
        import torch
    except ImportError:
        return None
    tn = torch.nn
    perm = (n + 1, n, *range(n))  # [*k, a, b] -> [b, a, *k]
    w = weights[0]
    k, pad = w.shape[0], w.shape[0] // 2
    conv = getattr(tn, f"Conv{n}d")
    if kind == "conv":
        mods = [conv(w.shape[-2], w.shape[-1], k, padding=pad)]
        ws = [w.transpose(perm), weights[1]]
    elif kind == "transpose":  # Keras [*k, out, in] -> torch [in, out, *k]
        mods = [getattr(tn, f"ConvTranspose{n}d")(w.shape[-1], w.shape[-2], k, stride,
                                                   padding=pad, output_padding=stride - 1)]
        ws = [w.transpose(perm), weights[1]]
    else:  # depthwise [*k, in, dm] -> [in*dm, 1, *k] (output channel c*dm + m)
        c, dm = w.shape[-2:]
        dw = np.moveaxis(w.reshape(*w.shape[:-2], c * dm), -1, 0)[:, None]
        mods = [conv(c, c * dm, k, padding=pad, groups=c, bias=kind == "depthwise")]
        ws = [dw]
        if kind == "depthwise":
            ws.append(weights[1])
        else:  # separable: then the pointwise [1, .., in*dm, out] with the bias
            mods.append(conv(c * dm, weights[1].shape[-1], 1))
            ws += [weights[1].transpose(perm), weights[2]]
    mod = tn.Sequential(*mods) if len(mods) > 1 else mods[0]
    with torch.no_grad():
        for p, v in zip(mod.parameters(), ws, strict=True):
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    return mod


def _case(name, layer, shape, raw_fwd, keras_layer, kind, note="", stride=1, quick=False):
    """One Bench: ``raw_fwd(x, *weights)`` is the plain-MLX composition, ``kind`` the torch
    module's (see :func:`_torch_module`)."""

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

    fwd = {"mlxnote": lambda: mx.eval(layer(x)),
           "mlxnote-noext": without_extension(lambda: mx.eval(layer(x))),
           "mlx": lambda: mx.eval(raw_fwd(x, *weights)),
           "tf": tf_fwd}
    bwd = {"mlxnote": lambda: mx.eval(g_ours(params, x)),
           "mlxnote-noext": without_extension(lambda: mx.eval(g_ours(params, x))),
           "mlx": lambda: mx.eval(g_raw(x, *weights)),
           "tf": tf_bwd}
    module = _torch_module(kind, len(shape) - 2, layer.get_weights(), stride)
    if module is not None:
        fwd["torch"], bwd["torch"] = torch_timers(module, np.moveaxis(x_np, -1, 1))
    return Bench("conv", name, fwd=fwd, bwd=bwd, note=note, interleaved=True,
                 repeat=QUICK_REPEAT if quick else REPEAT, burst=BURST,
                 busy=("mlxnote", "tf", "torch"))


def _dense_cases(keras, nn, b: int, hw: int, quick: bool) -> list[Bench]:
    """conv1d, conv2d, conv3d (stride 1, SAME)."""
    length = 256 if quick else 1024
    b3, d3 = (2, 8) if quick else (4, 16)
    out = []
    for n, shape, cin, cout in ((1, (b, length, 64), 64, 64), (2, (b, hw, hw, 32), 32, 64),
                                (3, (b3, d3, d3, d3, 32), 32, 32)):
        k = "k3" if n == 1 else "x".join(["3"] * n)
        dims = "x".join(map(str, shape[:-1])) if n < 3 else f"{b3}x{d3}^3"
        layer = getattr(nn, f"conv{n}d")(cout, 3, cin, padding="SAME")
        out.append(_case(
            f"conv{n}d {dims} {cin}->{cout} {k}", layer, shape,
            lambda x, w, bias: mx.conv_general(x, w, padding=1) + bias,
            getattr(keras.layers, f"Conv{n}D")(cout, 3, padding="same"), "conv",
            _chosen((shape, (cout, *[3] * n, cin), (1,) * n, (1,) * n, 1, (1,) * n)),
            quick=quick))
    return out


def _depthwise_cases(keras, nn, b: int, hw: int, quick: bool) -> list[Bench]:
    """depthwise_conv1d, depthwise_conv2d, separable_conv2d (3x3 depthwise, dm 1)."""
    length = 256 if quick else 1024
    out = []
    for n, shape in ((1, (b, length, 64)), (2, (b, hw, hw, 64))):
        layer = getattr(nn, f"depthwise_conv{n}d")(3, 1, 64, padding="SAME")
        out.append(_case(
            f"depthwise_conv{n}d {'x'.join(map(str, shape))} {'k3' if n == 1 else '3x3'}",
            layer, shape,
            lambda x, w, bias: mx.conv_general(x, w, padding=1, groups=64) + bias,
            getattr(keras.layers, f"DepthwiseConv{n}D")(3, padding="same"), "depthwise",
            _chosen((shape, (64, *[3] * n, 1), (1,) * n, (1,) * n, 64, (1,) * n)),
            quick=quick))
    shape = (b, hw, hw, 32)
    layer = nn.separable_conv2d(64, 3, 1, 32, padding="SAME")
    out.append(_case(
        f"separable_conv2d {b}x{hw}x{hw} 32->64 3x3", layer, shape,
        lambda x, dw, pw, bias: mx.conv_general(
            mx.conv_general(x, dw, padding=1, groups=32), pw) + bias,
        keras.layers.SeparableConv2D(64, 3, padding="same"), "separable",
        _chosen((shape, (32, 3, 3, 1), (1, 1), (1, 1), 32, (1, 1)),
                (shape, (64, 1, 1, 32), (1, 1), (1, 1), 1, (1, 1))), quick=quick))
    return out


def _transpose_cases(keras, nn, b: int, hw: int, quick: bool) -> list[Bench]:
    """conv2d_transpose and conv3d_transpose, stride 2, 3x3(x3), SAME (L -> 2L)."""
    h2 = hw // 2
    b3, d3 = (2, 4) if quick else (4, 8)
    out = []
    for n, shape, c in ((2, (b, h2, h2, 64), 64), (3, (b3, d3, d3, d3, 32), 32)):
        layer = getattr(nn, f"conv{n}d_transpose")(c, 3, c, strides=2, padding="SAME")
        dims = f"{b}x{h2}x{h2}" if n == 2 else f"{b3}x{d3}^3"
        # Keras SAME: out 2L; TF pads the forward conv by 0 before -> (lo, hi) = (2, 1)
        out.append(_case(
            f"conv{n}d_transpose s2 {dims} {c}->{c} {'x'.join(['3'] * n)}", layer, shape,
            lambda x, w, bias, n=n: mx.conv_general(x, w, padding=([2] * n, [1] * n),
                                                    input_dilation=2, flip=True) + bias,
            getattr(keras.layers, f"Conv{n}DTranspose")(c, 3, strides=2, padding="same"),
            "transpose",
            _chosen((shape, (c, *[3] * n, c), (1,) * n, (1,) * n, 1, (2,) * n, [(2, 1)] * n)),
            stride=2, quick=quick))
    return out


def benches(quick: bool) -> list[Bench]:
    import keras

    from mlxnote import nn

    b = 4 if quick else 16
    hw = 32 if quick else 64
    return [*_dense_cases(keras, nn, b, hw, quick), *_depthwise_cases(keras, nn, b, hw, quick),
            *_transpose_cases(keras, nn, b, hw, quick)]
