"""The Transformer's blocks, with PyTorch semantics (batch first): the encoder and decoder
layers, their stacks, and PyTorch's masks (an attention mask ``(L, S)`` or ``(B * nhead, L,
S)``, a key-padding mask ``(B, S)``; a boolean mask is ``True`` where attending is NOT
allowed, a float mask is added to the logits). :mod:`mlxnote.nn.transformer` builds the
whole ``Transformer`` from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as mnn

from .._config import compute_dtype
from .._validation import is_bool
from ..kernels import attention as K
from . import activations, core
from .attention import multihead_attention
from .layer import Desc, Layer, arguments, shape_desc
from .norm import layer_norm
from .typing import Activation, ArrayLike, DTypeLike, MaskLike


def _pt_attend(layer: Layer, mask: MaskLike | None, arg: str,
               shape: tuple[tuple[int, ...], ...], to4: Callable[[mx.array], mx.array],
               dtype: mx.Dtype) -> mx.array | None:
    """A PyTorch-style mask as an mlxnote attention mask (True = attend, or additive)."""
    if mask is None:
        return None
    m = layer.as_input(mask, arg, cast=False)
    if m.dtype != mx.bool_ and not mx.issubdtype(m.dtype, mx.floating):
        raise layer.error(arg, Desc(f"an array of dtype {m.dtype}"),
                          "boolean (True = not allowed) or float (added to the logits)",
                          TypeError)
    if tuple(m.shape) not in shape:
        allowed = " or ".join(str(s) for s in shape)
        raise layer.error(arg, Desc(f"an array of shape {tuple(m.shape)}"), f"shape {allowed}")
    m = to4(m)
    return mx.logical_not(m) if m.dtype == mx.bool_ else m.astype(dtype)


def causal_flag(layer: Layer, arg: str, value: bool | None) -> bool:
    """``*_is_causal``: None (False), True or False."""
    if value is None:
        return False
    if not is_bool(value):
        raise layer.error(arg, value, "None, True or False", TypeError)
    return bool(value)


def attention_mask(layer: Layer, attn_mask: MaskLike | None,
                   key_padding_mask: MaskLike | None, is_causal: bool | None, b: int,
                   nhead: int, tq: int, tk: int,
                   names: tuple[str, ...] = ("mask", "key_padding_mask")) -> mx.array | None:
    """Merge PyTorch's attention mask, key-padding mask and causal flag into one mask
    broadcastable to ``(B, nhead, L, S)``; ``names`` are the caller's names of the masks
    (and of the causal flag, ``'is_causal'`` unless a third is given)."""
    a = _pt_attend(layer, attn_mask, names[0], ((tq, tk), (b * nhead, tq, tk)),
                   lambda m: m if m.ndim == 2 else m.reshape(b, nhead, tq, tk), layer.dtype)
    p = _pt_attend(layer, key_padding_mask, names[1], ((b, tk),),
                   lambda m: m[:, None, None, :], layer.dtype)
    m = K.merge_masks(a, p, layer.dtype)
    if causal_flag(layer, names[2] if len(names) > 2 else "is_causal", is_causal):
        m = K.merge_masks(m, K.causal_mask(tq, tk), layer.dtype)
    return m


class _Block(Layer):
    """Shared by the encoder and decoder layers: feed-forward and residual wiring."""

    attentions: tuple[str, ...] = ("self_attn",)  # then the feed-forward block and norms
    size_args = ("d_model", "dim_feedforward", "nhead")

    def __init__(self, *, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
                 activation: Activation, layer_norm_eps: float, norm_first: bool, bias: bool,
                 dtype: DTypeLike) -> None:
        super().__init__(dtype=dtype)
        self.config(d_model=self.check_int("d_model", d_model),
                    nhead=self.check_int("nhead", nhead),
                    dim_feedforward=self.check_int("dim_feedforward", dim_feedforward),
                    dropout=self.check_float("dropout", dropout, 0.0, 1.0),
                    activation=activation,
                    layer_norm_eps=self.check_float("layer_norm_eps", layer_norm_eps, 0.0,
                                                    float("inf")),
                    norm_first=self.check_bool("norm_first", norm_first),
                    bias=self.check_bool("bias", bias))
        if d_model % nhead:
            raise self.error("nhead", nhead, f"a divisor of d_model={d_model}")
        self._set("act", activations.get(activation, self.error_name))
        self._set("input_size", d_model)
        self._set("output_size", d_model)
        with self.owns():  # the sublayers' errors name this block (or its Transformer)
            for name in self.attentions:
                self.add_sublayer(name, self._attn(nhead))
            self._ff_layers()
            n = len(self.attentions) + 1
            for i in range(1, n + 1):
                self.add_sublayer(f"norm{i}", self._norm())
            self.ff_dropout = self._drop()
            for i in range(1, n + 1):
                setattr(self, f"dropout{i}", self._drop())
        self._set("built", True)

    def _attn(self, nhead: int) -> multihead_attention:
        return multihead_attention(nhead, self.d_model, dropout=self.dropout,
                                   use_bias=self.bias, dtype=self.dtype)

    def _norm(self) -> layer_norm:
        return layer_norm(self.d_model, epsilon=self.layer_norm_eps, center=self.bias,
                          dtype=self.dtype)

    def _ff_layers(self) -> None:
        self.add_sublayer("linear1", core.dense(self.dim_feedforward, self.d_model,
                                                use_bias=self.bias, dtype=self.dtype))
        self.add_sublayer("linear2", core.dense(self.d_model, self.dim_feedforward,
                                                use_bias=self.bias, dtype=self.dtype))

    def _drop(self) -> core.dropout:
        # In the compute dtype (float32 for 16-bit layers on the CPU): no extra rounding.
        return core.dropout(self.dropout, dtype=compute_dtype(self.dtype))

    def _dropped(self, drop: core.dropout, x: mx.array, t: bool) -> mx.array:
        """``drop(x)`` in training mode with a rate > 0, else ``x``."""
        return drop(x, t) if t and self.dropout > 0 else x

    def _ff(self, x: mx.array, t: bool, out_drop: core.dropout) -> mx.array:
        """``out_drop(linear2(ff_dropout(activation(linear1(x)))))``, computed in
        ``compute_dtype`` and rounded once to the layer's dtype."""
        h = self._dropped(self.ff_dropout, self.act(self.linear1.project(x)), t)
        return self._dropped(out_drop, self.linear2.project(h), t).astype(self.dtype)

    def _check(self, x: ArrayLike, arg: str) -> mx.array:
        x = self.as_input(x, arg, ndim=3)
        if x.shape[-1] != self.d_model:
            raise self.error(arg, Desc(f"an array of shape {tuple(x.shape)}"),
                             f"(batch, length, d_model={self.d_model})")
        return x

    def _check_sizes(self, arg: str, x: mx.array, keys: int) -> None:
        """Refuse an input whose attention logits ``(B, nhead, L, keys)`` or feed-forward
        activations ``(B, L, dim_feedforward)`` MLX cannot hold (before any compute)."""
        b, length = x.shape[:2]
        cdt = compute_dtype(self.dtype)
        self.check_output_size(arg, shape_desc(x), (b, self.nhead, length, keys), cdt,
                               "attention logits")
        self.check_output_size(arg, shape_desc(x), (b, length, self.dim_feedforward), cdt,
                               "feed-forward activations")


class TransformerEncoderLayer(_Block):
    """PyTorch ``TransformerEncoderLayer`` (batch first): self-attention and a
    feed-forward block, each with dropout and a residual, post-norm by default.

    Call: ``(src, src_mask=None, src_key_padding_mask=None, is_causal=False,
    train_flag=None)``, ``src (B, S, d_model)``. Weights: ``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Activation = "relu",
                 layer_norm_eps: float = 1e-5, norm_first: bool = False, bias: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))

    def _sa(self, x: mx.array, mask: mx.array | None, t: bool) -> mx.array:
        out = self.self_attn(x, None, mask, train_flag=t)[0]
        return self._dropped(self.dropout1, out, t).astype(self.dtype)

    def __call__(self, src: ArrayLike, src_mask: MaskLike | None = None,
                 src_key_padding_mask: MaskLike | None = None, is_causal: bool | None = False,
                 train_flag: bool | None = None, training: bool | None = None) -> mx.array:
        x = self._check(src, "src")
        t = self.mode(train_flag, training)
        b, s = x.shape[:2]
        self._check_sizes("src", x, s)
        m = attention_mask(self, src_mask, src_key_padding_mask, is_causal, b, self.nhead, s,
                           s, ("src_mask", "src_key_padding_mask"))
        if x.size == 0:  # the empty result, with no graph (MLX's CPU sum over an empty
            # axis, a bias gradient, can loop forever)
            return mx.zeros(x.shape, self.dtype)
        if self.norm_first:
            x = x + self._sa(self.norm1(x), m, t)
            return x + self._ff(self.norm2(x), t, self.dropout2)
        x = self.norm1(x + self._sa(x, m, t))
        return self.norm2(x + self._ff(x, t, self.dropout2))


class TransformerDecoderLayer(_Block):
    """PyTorch ``TransformerDecoderLayer`` (batch first): self-attention, cross-attention
    on ``memory`` and a feed-forward block, post-norm by default.

    Call: ``(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
    train_flag=None)``. Weights: ``self_attn``, ``multihead_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``, ``norm3``.
    """

    attentions = ("self_attn", "multihead_attn")

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Activation = "relu",
                 layer_norm_eps: float = 1e-5, norm_first: bool = False, bias: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))

    def __call__(self, tgt: ArrayLike, memory: ArrayLike, tgt_mask: MaskLike | None = None,
                 memory_mask: MaskLike | None = None,
                 tgt_key_padding_mask: MaskLike | None = None,
                 memory_key_padding_mask: MaskLike | None = None,
                 tgt_is_causal: bool | None = False, memory_is_causal: bool | None = False,
                 train_flag: bool | None = None, training: bool | None = None) -> mx.array:
        x = self._check(tgt, "tgt")
        mem = self._check(memory, "memory")
        if mem.shape[0] != x.shape[0]:
            raise self.error("memory", Desc(f"an array of shape {tuple(mem.shape)}"),
                             f"the target's batch size {x.shape[0]}")
        t = self.mode(train_flag, training)
        b, tl, sl = x.shape[0], x.shape[1], mem.shape[1]
        self._check_sizes("tgt", x, max(tl, sl))
        sm = attention_mask(self, tgt_mask, tgt_key_padding_mask, tgt_is_causal, b, self.nhead,
                            tl, tl, ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"))
        mm = attention_mask(self, memory_mask, memory_key_padding_mask, memory_is_causal, b,
                            self.nhead, tl, sl, ("memory_mask", "memory_key_padding_mask",
                                                 "memory_is_causal"))
        if x.size == 0:  # the empty result, with no graph (see the encoder layer)
            return mx.zeros(x.shape, self.dtype)

        def sa(y: mx.array) -> mx.array:
            out = self.self_attn(y, None, sm, train_flag=t)[0]
            return self._dropped(self.dropout1, out, t).astype(self.dtype)

        def ca(y: mx.array) -> mx.array:
            out = self.multihead_attn(y, mem, mm, train_flag=t)[0]
            return self._dropped(self.dropout2, out, t).astype(self.dtype)

        if self.norm_first:
            x = x + sa(self.norm1(x))
            x = x + ca(self.norm2(x))
            return x + self._ff(self.norm3(x), t, self.dropout3)
        x = self.norm1(x + sa(x))
        x = self.norm2(x + ca(x))
        return self.norm3(x + self._ff(x, t, self.dropout3))


class _Stack(Layer):
    """``num_layers`` fresh layers configured like ``layer``, then an optional norm."""

    def _stack(self, layer: _Block, num_layers: int, norm: mnn.Module | None) -> None:
        if not isinstance(layer, self.layer_type):
            raise self.error(self.layer_arg, type(layer).__name__,
                             f"a {self.layer_type.__name__}", TypeError)
        num_layers = self.check_int("num_layers", num_layers, low=0)
        if norm is not None and not callable(norm):
            raise self.error("norm", norm, "None or a layer (e.g. a layer_norm)", TypeError)
        layers = [layer] + [type(layer).from_config(layer.get_config())
                            for _ in range(num_layers - 1)] if num_layers else []
        self.config(num_layers=num_layers)
        self._set("_template", layer)
        self._set("dtype", layer.dtype)
        self.add_sublayer("layers", layers)
        if norm is not None:
            self.add_sublayer("norm", norm)
        else:
            self._set("norm", None)
        self._set("built", True)

    def _held_arguments(self) -> dict[str, Any]:
        return {self.layer_arg: self._template, "norm": self.norm}

    def _run(self, x: ArrayLike, arg: str,
             step: Callable[[Layer, mx.array], mx.array]) -> mx.array:
        """``step`` through every layer, then the norm (if any)."""
        x = self.as_input(x, arg, ndim=3)
        for lyr in self.layers:
            x = step(lyr, x)
        return self.norm(x) if self.norm is not None else x


class TransformerEncoder(_Stack):
    """PyTorch ``TransformerEncoder``: ``encoder_layer`` and ``num_layers - 1`` fresh layers
    of the same configuration, then ``norm`` (a layer, optional).

    Call: ``(src, mask=None, src_key_padding_mask=None, is_causal=None, train_flag=None)``.
    """

    layer_type, layer_arg = TransformerEncoderLayer, "encoder_layer"

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int,
                 norm: mnn.Module | None = None) -> None:
        super().__init__(dtype=getattr(encoder_layer, "dtype", "float32"))
        self._stack(encoder_layer, num_layers, norm)

    def __call__(self, src: ArrayLike, mask: MaskLike | None = None,
                 src_key_padding_mask: MaskLike | None = None, is_causal: bool | None = None,
                 train_flag: bool | None = None, training: bool | None = None) -> mx.array:
        t = self.mode(train_flag, training)
        causal = causal_flag(self, "is_causal", is_causal)
        return self._run(src, "src", lambda lyr, x: lyr(x, mask, src_key_padding_mask, causal,
                                                        train_flag=t))


class TransformerDecoder(_Stack):
    """PyTorch ``TransformerDecoder``: ``decoder_layer`` and ``num_layers - 1`` fresh layers
    of the same configuration, then ``norm`` (optional).

    Call: ``(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False,
    train_flag=None)``.
    """

    layer_type, layer_arg = TransformerDecoderLayer, "decoder_layer"

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int,
                 norm: mnn.Module | None = None) -> None:
        super().__init__(dtype=getattr(decoder_layer, "dtype", "float32"))
        self._stack(decoder_layer, num_layers, norm)

    def __call__(self, tgt: ArrayLike, memory: ArrayLike, tgt_mask: MaskLike | None = None,
                 memory_mask: MaskLike | None = None,
                 tgt_key_padding_mask: MaskLike | None = None,
                 memory_key_padding_mask: MaskLike | None = None,
                 tgt_is_causal: bool | None = None, memory_is_causal: bool | None = False,
                 train_flag: bool | None = None, training: bool | None = None) -> mx.array:
        t = self.mode(train_flag, training)
        flags = (causal_flag(self, "tgt_is_causal", tgt_is_causal),
                 causal_flag(self, "memory_is_causal", memory_is_causal))
        return self._run(tgt, "tgt", lambda lyr, x: lyr(
            x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
            *flags, train_flag=t))
