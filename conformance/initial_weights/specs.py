"""The layers with weights, each with its weights as the documentation gives them: Note's
shape and creation order, the fans of ``note-semantics.md`` §0.4 ("Fans of the documented
kernels", computed here from the layer's arguments) and the argument whose initializer draws
each one, with the documented defaults. Sizes give thousands of elements per weight."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .dists import Dist

W_INIT, B_INIT = "weight_initializer", "bias_initializer"
CONV = {W_INIT: "Xavier", B_INIT: "zeros"}
NORM = {"beta_initializer": "zeros", "gamma_initializer": "ones"}


@dataclass(frozen=True)
class W:
    """A documented weight: Note's ``shape``, its ``fans`` (by default the table's rank <= 2
    rule: ``[a, b]`` -> ``(a, b)``, ``[n]`` -> ``(n, n)``, ``[]`` -> ``(1, 1)``) and ``arg``."""

    shape: tuple[int, ...]
    arg: str = W_INIT
    fans_: tuple[int, int] | None = None

    @property
    def fans(self) -> tuple[int, int]:
        if self.fans_ is not None:
            return self.fans_
        s = self.shape
        return (1, 1) if not s else (s[0], s[0]) if len(s) == 1 else (s[0], s[1])


@dataclass(frozen=True)
class Spec:
    """``make(**kw)`` builds the layer (``dtype`` and the initializer arguments in ``args``
    as keywords); ``defaults`` gives every ``arg`` of ``weights`` its documented default
    (some are fixed, not arguments: Linformer's projections, attention's scalars)."""

    name: str
    make: Callable[..., Any]
    weights: tuple[W, ...]
    defaults: dict[str, Any]
    args: tuple[str, ...] = (W_INIT, B_INIT)
    own_seed: bool = False  # ``make(seed=...)`` seeds it (else ``mx.random.seed``)


def conv(k: tuple[int, ...], cin: int, f: int, g: int = 1) -> W:
    """conv ``[k..., in/g, F]``: fans ``(prod(k) in/g, prod(k) F)``."""
    rf = math.prod(k)
    return W((*k, cin // g, f), fans_=(rf * cin // g, rf * f))


def transpose(k: tuple[int, ...], cin: int, f: int) -> W:
    """transposed ``[k..., F, in]``: fans ``(prod(k) F, prod(k) in)``."""
    rf = math.prod(k)
    return W((*k, f, cin), fans_=(rf * f, rf * cin))


def depthwise(k: tuple[int, ...], cin: int, dm: int) -> W:
    """depthwise ``[k..., in, dm]``: fans ``(prod(k) in, prod(k) dm)``."""
    rf = math.prod(k)
    return W((*k, cin, dm), fans_=(rf * cin, rf * dm))


def pointwise(rank: int, cin: int, dm: int, f: int) -> W:
    """separable pointwise ``[1..., in dm, F]``: fans ``(in dm, F)``."""
    return W((1,) * rank + (cin * dm, f), fans_=(cin * dm, f))


def bias(n: int, *rows: int) -> W:
    return W((*rows, n), B_INIT)


def dense_w(i: int, o: int, use_bias: bool = True) -> tuple[W, ...]:
    return (W((i, o)), bias(o)) if use_bias else (W((i, o)),)


def gates(i: int, h: int, names: str, rows: tuple[int, ...] = ()) -> tuple[W, ...]:
    """A sequence layer's per-gate ``[in, H]``, ``[H, H]`` pairs, then the gate biases."""
    return tuple(w for _ in names for w in (W((i, h)), W((h, h)))) + \
        tuple(bias(h, *rows) for _ in names)


def mha(d: int, kdim: int | None = None, vdim: int | None = None) -> tuple[W, ...]:
    """query ``[d, d]``, key ``[kdim, d]``, value ``[vdim, d]``, out ``[d, d]``, each with a
    bias ``[d]``."""
    return (*dense_w(d, d), *dense_w(kdim or d, d), *dense_w(vdim or d, d), *dense_w(d, d))


def norm(d: int) -> tuple[W, ...]:
    return W((d,), "beta_initializer"), W((d,), "gamma_initializer")


def encoder_layer(d: int, ff: int) -> tuple[W, ...]:
    return (*mha(d), *dense_w(d, ff), *dense_w(ff, d), *norm(d), *norm(d))


def decoder_layer(d: int, ff: int) -> tuple[W, ...]:
    return (*mha(d), *mha(d), *dense_w(d, ff), *dense_w(ff, d), *norm(d), *norm(d), *norm(d))


def specs() -> list[Spec]:
    from mlxnote import nn

    gru, lstm = gates(96, 48, "rzh"), gates(96, 48, "ifoc")
    lim = 1 / math.sqrt(64)
    linformer_w = (W((64, 128)), W((64, 128)), W((256, 64), "proj"), W((64, 128)),
                   W((256, 64), "proj"), *dense_w(128, 64))
    tf_defaults = {**CONV, **NORM}
    bn = ("moving_mean_initializer", "moving_variance_initializer", "beta_initializer",
          "gamma_initializer")
    return [
        Spec("dense", lambda **kw: nn.dense(128, 96, **kw), dense_w(96, 128), CONV),
        Spec("conv1d", lambda **kw: nn.conv1d(64, 5, 48, groups=2, **kw),
             (conv((5,), 48, 64, 2), bias(64)), CONV),
        Spec("conv2d", lambda **kw: nn.conv2d(48, 3, 64, groups=4, **kw),
             (conv((3, 3), 64, 48, 4), bias(48)), CONV),
        Spec("conv3d", lambda **kw: nn.conv3d(16, 3, 12, **kw),
             (conv((3, 3, 3), 12, 16), bias(16)), CONV),
        Spec("conv1d_transpose", lambda **kw: nn.conv1d_transpose(40, 5, 48, **kw),
             (transpose((5,), 48, 40), bias(40)), CONV),
        Spec("conv2d_transpose", lambda **kw: nn.conv2d_transpose(24, 3, 32, **kw),
             (transpose((3, 3), 32, 24), bias(24)), CONV),
        Spec("conv3d_transpose", lambda **kw: nn.conv3d_transpose(12, 3, 16, **kw),
             (transpose((3, 3, 3), 16, 12), bias(12)), CONV),
        Spec("depthwise_conv1d", lambda **kw: nn.depthwise_conv1d(5, 4, 256, **kw),
             (depthwise((5,), 256, 4), bias(1024)), CONV),
        Spec("depthwise_conv2d", lambda **kw: nn.depthwise_conv2d(3, 3, 256, **kw),
             (depthwise((3, 3), 256, 3), bias(768)), CONV),
        Spec("separable_conv1d", lambda **kw: nn.separable_conv1d(16, 5, 2, 512, **kw),
             (depthwise((5,), 512, 2), pointwise(1, 512, 2, 16), bias(16)), CONV),
        Spec("separable_conv2d", lambda **kw: nn.separable_conv2d(16, 3, 2, 256, **kw),
             (depthwise((3, 3), 256, 2), pointwise(2, 256, 2, 16), bias(16)), CONV),
        Spec("batch_norm", lambda **kw: nn.batch_norm(8192, **kw),
             tuple(W((8192,), a) for a in bn),
             {**NORM, "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones"},
             bn),
        Spec("group_norm", lambda **kw: nn.group_norm(16, 8192, **kw),
             norm(8192)[::-1], NORM, tuple(NORM)),
        Spec("layer_norm", lambda **kw: nn.layer_norm(8192, **kw), norm(8192), NORM,
             tuple(NORM)),
        Spec("RNN", lambda **kw: nn.RNN(64, 96, **kw), gates(96, 64, "r"), CONV),
        Spec("GRU", lambda **kw: nn.GRU(48, 96, **kw), gru, CONV),
        Spec("GRU reset_after", lambda **kw: nn.GRU(48, 96, reset_after=True, **kw),
             gates(96, 48, "rzh", (2,)), CONV),
        Spec("LSTM", lambda **kw: nn.LSTM(48, 96, **kw), lstm, CONV),
        Spec("RNNCell", lambda **kw: nn.RNNCell([96, 64], **kw), gates(96, 64, "r"), CONV),
        Spec("GRUCell", lambda **kw: nn.GRUCell([96, 48], **kw), dense_w(144, 144), CONV),
        Spec("LSTMCell", lambda **kw: nn.LSTMCell([96, 48], **kw), dense_w(144, 192), CONV),
        Spec("Bidirectional(GRU)", lambda **kw: nn.Bidirectional(nn.GRU(48, 96, **kw)),
             gru + gru, CONV),
        Spec("attention", lambda **kw: nn.attention(True, "concat", **kw),
             (W((), "scale"), W((), "scale")), {"scale": "ones"}, ()),
        Spec("multihead_attention",
             lambda **kw: nn.multihead_attention(4, 64, kdim=48, vdim=32, **kw),
             mha(64, 48, 32), CONV),
        Spec("talking_heads_attention",
             lambda **kw: nn.talking_heads_attention(num_heads=64, **kw),
             (W((64, 64), "initializer"),) * 2, {"initializer": "Xavier"}, ("initializer",)),
        Spec("FAVOR_attention", lambda seed=3, **kw: nn.FAVOR_attention(
            64, orthonormal=False, m=128, seed=seed, **kw),
             (W((128, 64), "randomizer"),), {"randomizer": "normal"}, (), True),
        Spec("FAVOR_attention orthonormal", lambda seed=3, **kw: nn.FAVOR_attention(
            64, m=32, seed=seed, **kw),
             (W((32, 64), "randomizer"),),
             {"randomizer": Dist("orth", 1.0, signs=False)}, (), True),  # QR, no sign fix
        Spec("Linformer_self_attention", lambda **kw: nn.Linformer_self_attention(
            64, 256, k=64, heads=4, dim_head=32, **kw), linformer_w,
             {**CONV, "proj": ["uniform", -lim, lim]}, ()),
        Spec("TransformerEncoderLayer", lambda **kw: nn.TransformerEncoderLayer(
            64, 4, 128, **kw), encoder_layer(64, 128), tf_defaults, ()),
        Spec("TransformerDecoderLayer", lambda **kw: nn.TransformerDecoderLayer(
            64, 4, 128, **kw), decoder_layer(64, 128), tf_defaults, ()),
        Spec("TransformerEncoder", lambda dtype="float32": nn.TransformerEncoder(
            nn.TransformerEncoderLayer(64, 4, 128, dtype=dtype), 2,
            nn.layer_norm(64, dtype=dtype)), (*encoder_layer(64, 128) * 2, *norm(64)),
             tf_defaults, ()),
        Spec("TransformerDecoder", lambda dtype="float32": nn.TransformerDecoder(
            nn.TransformerDecoderLayer(64, 4, 128, dtype=dtype), 2,
            nn.layer_norm(64, dtype=dtype)), (*decoder_layer(64, 128) * 2, *norm(64)),
             tf_defaults, ()),
        Spec("Transformer", lambda **kw: nn.Transformer(64, 4, 1, 1, 128, **kw),
             (*encoder_layer(64, 128), *norm(64), *decoder_layer(64, 128), *norm(64)),
             tf_defaults, ()),
    ]
