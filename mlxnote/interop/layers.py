"""One Keras layer <-> one mlxnote layer: the pairs, their configs both ways.

:data:`PAIRS` lists every mlxnote layer with a Keras counterpart of the same math
(:mod:`mlxnote.nn.layouts` holds their weight layouts). A Keras config is read key by key
(:class:`Options`); every key not read must hold Keras's default, so an option mlxnote does
not have (a regularizer, ``return_state``, ``renorm``, ...) is an error naming it, never
dropped. Initializers are not options here: the weights are copied.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn
from .._validation import Desc, error
from ..nn import weights
from .activations import act_from_keras, act_to_keras

#: Keras config keys with no effect on the math of a layer whose weights are copied.
IGNORED = {"name", "trainable", "dtype", "unroll", "seed", "unit_forget_bias",
           "implementation", "use_cudnn", "renorm_momentum"}


class Options:
    """A Keras layer's config, read key by key; :meth:`finish` refuses what was not read
    unless it holds Keras's default (or is in ``allow``: set by a wrapper)."""

    def __init__(self, klayer: Any, allow: tuple[str, ...] = ()) -> None:
        self.layer, self.cfg, self.read = klayer, klayer.get_config(), {*IGNORED, *allow}
        self.where = f"from_keras ({klayer.name}: {type(klayer).__name__})"

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self.cfg[key]

    def uses(self, *keys: str) -> None:
        """Mark ``keys`` read (a wrapper converts them from the live layer)."""
        self.read.update(keys)

    def only(self, key: str, allowed: tuple[Any, ...], why: str) -> Any:
        value = self[key]
        if value not in allowed:
            raise error(self.where, key, value, f"{' or '.join(map(repr, allowed))} ({why})")
        return value

    def finish(self) -> None:
        params = inspect.signature(type(self.layer).__init__).parameters
        for key, value in self.cfg.items():
            if key in self.read or key.endswith("_initializer") or key not in params:
                continue
            default = params[key].default
            if default is not inspect.Parameter.empty and value != default:
                raise error(self.where, key, value, f"{default!r} (mlxnote's counterpart "
                            f"of {type(self.layer).__name__} has no such option)")
        if getattr(self.layer, "activity_regularizer", None) is not None:
            raise error(self.where, "activity_regularizer", self.layer.activity_regularizer,
                        "None (mlxnote layers have no regularizers)")


# -- the pairs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """An mlxnote class and its Keras counterpart ``keras`` (a ``keras.layers`` name).

    ``from_keras(options) -> mlxnote kwargs``; ``sizes(keras_weights, kwargs) -> mlxnote
    kwargs`` that build it; ``to_keras(layer) -> Keras kwargs``; ``shape(layer)``: the
    input shape (batch included) that builds the Keras layer, or ``None`` when it needs the
    input's rank (``to_keras(..., input_shape=...)``: ``BatchNormalization``, which fixes
    its reduction axes when built)."""

    note: type
    keras: str
    from_keras: Callable[[Options], dict[str, Any]]
    to_keras: Callable[[Any], dict[str, Any]]
    sizes: Callable[[list[np.ndarray], dict[str, Any]], dict[str, Any]] = lambda w, kw: {}
    shape: Callable[[Any], Any] = lambda layer: None


def _spatial(layer: Any, c: int) -> tuple[Any, ...]:
    n = layer.rank
    return (None, c, *[None] * n) if layer.channels_first else (None, *[None] * n, c)


def _conv_from(o: Options, kind: str) -> dict[str, Any]:
    k, d = list(o["kernel_size"]), list(o["dilation_rate"])
    pad = o["padding"]
    kw: dict[str, Any] = dict(kernel_size=k, strides=list(o["strides"]), dilations=d,
                              data_format=o["data_format"], use_bias=o["use_bias"],
                              activation=act_from_keras(o),
                              padding=[((k[0] - 1) * d[0], 0)] if pad == "causal"
                              else pad.upper())
    if kind != "depthwise":
        kw["filters"] = o["filters"]
    if kind == "conv":
        kw["groups"] = o["groups"]
    if kind == "transpose":
        op = o["output_padding"]
        kw["output_padding"] = None if op is None else list(op)
    if kind in ("depthwise", "separable"):
        kw["depth_multiplier"] = o["depth_multiplier"]
    return kw


def _conv_padding(layer: Any) -> str:
    if isinstance(layer.padding, str):
        return layer.padding.lower()
    d = (layer.dilations or (1,))[0]
    if layer.rank == 1 and layer.kind == "conv" and \
            tuple(layer.padding) == (((layer.kernel_size[0] - 1) * d, 0),):
        return "causal"
    raise error(f"to_keras ({layer.name})", "padding", layer.padding, "'SAME' or 'VALID' "
                "(Keras's convolutions have no explicit padding; a 1-D conv also "
                "[((k - 1) * d, 0)], Keras's 'causal')")


def _conv_to(layer: Any) -> dict[str, Any]:
    n = layer.rank
    kw: dict[str, Any] = dict(kernel_size=tuple(layer.kernel_size),
                              strides=tuple(layer.strides), padding=_conv_padding(layer),
                              data_format="channels_first" if layer.channels_first
                              else "channels_last",
                              dilation_rate=tuple(layer.dilations or (1,) * n),
                              activation=act_to_keras(layer), use_bias=layer.use_bias)
    if layer.kind != "depthwise":
        kw["filters"] = layer.filters
    if layer.kind == "conv":
        kw["groups"] = layer.groups
    if layer.kind == "transpose":
        op = layer.output_padding
        kw["output_padding"] = None if op is None else tuple(op)
    if layer.kind in ("depthwise", "separable"):
        kw["depth_multiplier"] = layer.depth_multiplier
    return kw


def _conv_pairs() -> list[Pair]:
    names = {"conv": "Conv{}D", "transpose": "Conv{}DTranspose",
             "depthwise": "DepthwiseConv{}D", "separable": "SeparableConv{}D"}
    out = []
    for name in nn.conv.__all__:
        cls = getattr(nn.conv, name)
        kind = cls.kind

        def sizes(w: list[np.ndarray], kw: dict[str, Any], kind: str = kind) -> dict[str, Any]:
            if kind == "transpose":
                return {"input_size": w[0].shape[-1]}
            return {"input_size": w[0].shape[-2] * kw.get("groups", 1)}

        def from_keras(o: Options, kind: str = kind) -> dict[str, Any]:
            return _conv_from(o, kind)

        out.append(Pair(cls, names[kind].format(cls.rank), from_keras, _conv_to, sizes,
                        lambda layer: _spatial(layer, layer.input_size)))
    return out


def _dense_from(o: Options) -> dict[str, Any]:
    return dict(output_size=o["units"], activation=act_from_keras(o), use_bias=o["use_bias"])


def _dense_to(layer: Any) -> dict[str, Any]:
    kw = dict(units=layer.output_size, activation=act_to_keras(layer),
              use_bias=layer.use_bias)
    if "layer_name" in layer._config:
        kw["name"] = layer.layer_name
    return kw


def _norm_from(o: Options, *keys: str) -> dict[str, Any]:
    kw = {k: o[k] for k in ("epsilon", "center", "scale", *keys)}
    axis = o["axis"]
    if isinstance(axis, (list, tuple)):  # Keras's LayerNormalization keeps a list
        axis = axis[0] if len(axis) == 1 else list(axis)
    kw["axis"] = axis
    return kw


def _norm_to(layer: Any, *keys: str) -> dict[str, Any]:
    kw = {k: getattr(layer, k) for k in ("epsilon", "center", "scale", *keys)}
    kw["axis"] = list(layer.axis) if isinstance(layer.axis, tuple) else layer.axis
    return kw


def _bn_to(layer: Any) -> dict[str, Any]:
    if not isinstance(layer.axis, int):
        raise error(f"to_keras ({layer.name})", "axis", list(layer.axis),
                    "an int (Keras's BatchNormalization normalizes one axis)")
    return _norm_to(layer, "momentum", "synchronized")


def _gn_to(layer: Any) -> dict[str, Any]:
    if layer.mask is not None:
        raise error(f"to_keras ({layer.name})", "mask", Desc("a mask"),
                    "None (Keras's GroupNormalization has no frequency weights)")
    return {**_norm_to(layer), "groups": layer.groups}


def _axes_shape(layer: Any) -> tuple[Any, ...]:
    """The smallest input shape (batch included) with the layer's sizes on its axes."""
    axes = (layer.axis,) if isinstance(layer.axis, int) else layer.axis
    sizes = weights.collect(layer)[0].note_shape
    rank = max(2, max(a + 1 for a in axes), max(-a for a in axes) + 1)
    shape: list[Any] = [None] * rank
    for a, s in zip(axes, sizes):
        shape[a] = s
    return tuple(shape)


def _norm_sizes(w: list[np.ndarray], kw: dict[str, Any], list_axis: bool = False
                ) -> dict[str, Any]:
    if not w:
        return {}
    return {"input_size": list(w[0].shape) if list_axis else w[0].shape[0]}


def _rnn_from(o: Options, gated: bool, cell: bool) -> dict[str, Any]:
    kw: dict[str, Any] = dict(activation=act_from_keras(o), use_bias=o["use_bias"])
    if gated:
        kw["recurrent_activation"] = act_from_keras(o, "recurrent_activation")
    if type(o.layer).__name__.startswith("GRU"):
        kw["reset_after"] = o["reset_after"]
    if not cell:
        kw.update(output_size=o["units"], return_sequence=o["return_sequences"],
                  go_backwards=o["go_backwards"])
    return kw


def _rnn_to(layer: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(units=layer.output_size, activation=act_to_keras(layer),
                              use_bias=layer.use_bias)
    if layer.kind != "rnn":
        kw["recurrent_activation"] = act_to_keras(layer, "recurrent_activation")
    if layer.kind == "gru":
        kw["reset_after"] = layer.reset_after
    if not layer.is_cell:
        kw.update(return_sequences=layer.return_sequence, go_backwards=layer.go_backwards)
    return kw


def _rnn_pairs() -> list[Pair]:
    r = nn.recurrent
    out = []
    for cls, name in ((r.RNN, "SimpleRNN"), (r.GRU, "GRU"), (r.LSTM, "LSTM")):
        out.append(Pair(cls, name, lambda o, g=cls is not r.RNN: _rnn_from(o, g, False),
                        _rnn_to, lambda w, kw: {"input_size": w[0].shape[0]},
                        lambda layer: (None, None, layer.input_size)))
    for cls, name in ((r.RNNCell, "SimpleRNNCell"), (r.GRUCell, "GRUCell"),
                      (r.LSTMCell, "LSTMCell")):
        def cell_from(o: Options, g: bool = cls is not r.RNNCell) -> dict[str, Any]:
            if not o.layer.built:
                raise error(o.where, "obj", Desc("an unbuilt cell"), "a built cell (call it "
                            "or build it once: mlxnote's cells take weight_shape=[in, H])")
            units = o["units"]
            return {**_rnn_from(o, g, True), "weight_shape": [o.layer.kernel.shape[0], units]}
        out.append(Pair(cls, name, cell_from, _rnn_to,
                        shape=lambda layer: (None, layer.input_size)))
    return out


def _pad_pairs(layer: Any) -> tuple[tuple[int, int], ...]:
    pad = layer._pad if layer._pad is not None else \
        layer.check_pad_pairs("padding", layer.default, layer.n)
    return tuple(tuple(p) for p in pad)


def _pad_from(o: Options) -> dict[str, Any]:
    o.only("data_format", ("channels_last",), "mlxnote's zero padding is channels-last")
    p = o["padding"]
    return {"padding": list(p) if isinstance(p[0], int) else [list(q) for q in p]}


def _pad_to(layer: Any) -> dict[str, Any]:
    pad = _pad_pairs(layer)
    return {"padding": pad[0] if layer.n == 1 else pad}


def _dropout_from(o: Options) -> dict[str, Any]:
    ns = o["noise_shape"]
    return dict(rate=o["rate"], seed=o["seed"], noise_shape=None if ns is None else list(ns))


def _dropout_to(layer: Any) -> dict[str, Any]:
    ns = layer.noise_shape
    return dict(rate=layer.rate, seed=layer.seed, noise_shape=None if ns is None else list(ns))


def _bidi_from(o: Options) -> dict[str, Any]:
    from .convert import layer_from_keras

    o.uses("layer", "backward_layer")  # converted from the live layers
    k, zero = o.layer, ("zero_output_for_mask",)  # Keras sets it on the wrapped layers
    return dict(layer=layer_from_keras(k.forward_layer, zero), merge_mode=o["merge_mode"],
                backward_layer=layer_from_keras(k.backward_layer, zero))


def _bidi_to(layer: Any) -> dict[str, Any]:
    from .convert import layer_to_keras

    return dict(layer=layer_to_keras(layer.forward_layer), merge_mode=layer.merge_mode,
                backward_layer=layer_to_keras(layer.backward_layer))


def _pool_from(o: Options) -> dict[str, Any]:
    return dict(kernel_size=list(o["pool_size"]), strides=list(o["strides"]),
                padding=o["padding"].upper(), data_format=o["data_format"])


def _pool_to(layer: Any) -> dict[str, Any]:
    pad = layer.padding
    if not isinstance(pad, str):
        if any(p for pair in pad for p in pair):
            raise error(f"to_keras ({layer.name})", "padding", pad, "'SAME', 'VALID' or 0 "
                        "(Keras's pooling has no explicit zero padding)")
        pad = "VALID"  # Note's default, no padding
    return dict(pool_size=tuple(layer.kernel_size), strides=tuple(layer.strides),
                padding=pad.lower(), data_format="channels_first"
                if layer.channels_first else "channels_last")


def _flatten_from(o: Options) -> dict[str, Any]:
    o.only("data_format", ("channels_last",), "mlxnote's flatten keeps the input's order")
    return {}


def _pairs() -> list[Pair]:
    core, norm = nn.core, nn.norm
    out = [Pair(core.dense, "Dense", _dense_from, _dense_to,
                lambda w, kw: {"input_size": w[0].shape[0]},
                lambda layer: (None, layer.input_size)),
           Pair(core.identity, "Identity", lambda o: {}, lambda layer: {}),
           Pair(core.dropout, "Dropout", _dropout_from, _dropout_to),
           Pair(norm.batch_norm, "BatchNormalization",
                lambda o: _norm_from(o, "momentum", "synchronized"), _bn_to, _norm_sizes),
           Pair(norm.layer_norm, "LayerNormalization", lambda o: _norm_from(o, "rms_scaling"),
                lambda layer: _norm_to(layer, "rms_scaling"),
                lambda w, kw: _norm_sizes(w, kw, isinstance(kw["axis"], list)), _axes_shape),
           Pair(norm.group_norm, "GroupNormalization", lambda o: _norm_from(o, "groups"),
                _gn_to, _norm_sizes, _axes_shape),
           Pair(nn.attention, "Attention",
                lambda o: dict(use_scale=o["use_scale"], score_mode=o["score_mode"]),
                lambda layer: dict(use_scale=layer.use_scale, score_mode=layer.score_mode),
                shape=lambda layer: [(None, None, 1), (None, None, 1)]),
           Pair(nn.Bidirectional, "Bidirectional", _bidi_from, _bidi_to,
                shape=lambda layer: (None, None, layer.forward_layer.input_size))]
    for n in (1, 2, 3):
        out.append(Pair(getattr(core, f"zeropadding{n}d"), f"ZeroPadding{n}D", _pad_from,
                        _pad_to))
        for op, name in (("max", "MaxPooling"), ("avg", "AveragePooling")):
            out.append(Pair(getattr(nn, f"{op}_pool{n}d"), f"{name}{n}D", _pool_from, _pool_to))
    out.append(Pair(nn.flatten, "Flatten", _flatten_from, lambda layer: {}))
    return out + _conv_pairs() + _rnn_pairs()


PAIRS: list[Pair] = _pairs()
BY_NOTE: dict[type, Pair] = {p.note: p for p in PAIRS}
BY_KERAS: dict[str, Pair] = {p.keras: p for p in PAIRS}
