"""The Transformer, with PyTorch ``nn.Transformer`` semantics (batch first).

Built from mlxnote layers: :class:`~mlxnote.nn.attention.multihead_attention` (its
attention kernel), ``dense``, ``layer_norm`` and ``dropout``. Masks follow PyTorch: an
attention mask is ``(L, S)`` or ``(B * nhead, L, S)``, a key-padding mask ``(B, S)``;
a boolean mask is ``True`` where attending is NOT allowed, a float mask is added to the
logits (``-inf`` hides).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import mlx.core as mx
import mlx.nn as mnn

from .. import _validation as V
from .._config import compute_dtype
from .._validation import is_bool, owned_by
from ..kernels import attention as K
from . import activations, core
from .attention import multihead_attention
from .layer import Desc, Layer, arguments, shape_desc
from .norm import layer_norm
from .typing import Activation, ArrayLike, DeviceLike, DTypeLike, DTypeName, MaskLike


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
                   names: tuple[str, str] = ("mask", "key_padding_mask")) -> mx.array | None:
    """Merge PyTorch's attention mask, key-padding mask and causal flag into one mask
    broadcastable to ``(B, nhead, L, S)``."""
    a = _pt_attend(layer, attn_mask, names[0], ((tq, tk), (b * nhead, tq, tk)),
                   lambda m: m if m.ndim == 2 else m.reshape(b, nhead, tq, tk), layer.dtype)
    p = _pt_attend(layer, key_padding_mask, names[1], ((b, tk),),
                   lambda m: m[:, None, None, :], layer.dtype)
    m = K.merge_masks(a, p, layer.dtype)
    if causal_flag(layer, "is_causal", is_causal):
        m = K.merge_masks(m, K.causal_mask(tq, tk), layer.dtype)
    return m


def _call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Call a (custom) encoder/decoder with the keywords it takes: the masks that are
    given, and ``train_flag`` when it accepts it."""
    kw = {k: v for k, v in kw.items()
          if v is not None and not (k.endswith("is_causal") and v is False)}
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()) and \
                "train_flag" not in params:
            kw.pop("train_flag", None)
    except (TypeError, ValueError):
        pass
    return fn(*args, **kw)


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
                            tl, tl, ("tgt_mask", "tgt_key_padding_mask"))
        mm = attention_mask(self, memory_mask, memory_key_padding_mask, memory_is_causal, b,
                            self.nhead, tl, sl, ("memory_mask", "memory_key_padding_mask"))
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
        layers = [layer] + [type(layer)(**layer._config, dtype=layer.dtype)
                            for _ in range(num_layers - 1)] if num_layers else []
        self.config(num_layers=num_layers)
        self._set("dtype", layer.dtype)
        self.add_sublayer("layers", layers)
        if norm is not None:
            self.add_sublayer("norm", norm)
        else:
            self._set("norm", None)
        self._set("built", True)

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


def _device(layer: Layer, device: DeviceLike | None) -> mx.Device | None:
    if device is None:
        return None
    if isinstance(device, mx.Device):
        dev = device
    elif isinstance(device, mx.DeviceType):
        dev = mx.Device(device)
    elif isinstance(device, str) and device.lower().split(":")[0] in ("cpu", "gpu", "cuda",
                                                                      "mps", "metal"):
        kind, _, idx = device.lower().partition(":")
        dev = mx.Device(mx.cpu if kind == "cpu" else mx.gpu, int(idx) if idx else 0)
    else:
        raise layer.error("device", device, "None, 'cpu', 'gpu' (or 'cuda'/'mps') or an "
                          "mx.Device", TypeError)
    if not mx.is_available(dev):
        raise layer.error("device", device, "a device this MLX build can use (no GPU here)")
    return dev


class Transformer(Layer):
    """PyTorch ``nn.Transformer`` (batch first): an encoder stack and a decoder stack, each
    followed by a LayerNorm.

    Args:
        d_model (int): model width. nhead (int): attention heads (divides d_model).
        num_encoder_layers, num_decoder_layers (int): stack depths.
        dim_feedforward (int): feed-forward width. dropout (float): on attention weights,
            after each sub-block and inside the feed-forward block (training only).
        activation: feed-forward activation (a name or a callable), default ``'relu'``.
        custom_encoder, custom_decoder: replace a stack; called as PyTorch calls them
            (``encoder(src, mask=, src_key_padding_mask=, is_causal=)``, ``decoder(tgt,
            memory, tgt_mask=, memory_mask=, ...)``), with ``train_flag=`` if they take it.
        layer_norm_eps (float): LayerNorm epsilon. norm_first (bool): pre-norm blocks.
        bias (bool): biases in the linear layers, attention projections and LayerNorms.
        device: ``None``, ``'cpu'``, ``'gpu'`` or an ``mx.Device``: where calls run.
        dtype (str): weights and computation.

    Inputs with no positions (``S`` or ``T`` of 0) or no samples give the empty result, or
    the feed-forward of zeros: attention over no keys gives zeros (as Keras's).

    Call: ``(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, train_flag=None, *,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)``. ``src (B, S,
    d_model)``, ``tgt (B, T, d_model)`` -> ``(B, T, d_model)``. Attention masks ``(L, S)`` or
    ``(B * nhead, L, S)``, key-padding masks ``(B, S)``: boolean ``True`` = not allowed, or
    float (added). ``*_is_causal=True`` hides future positions (with or without a mask).
    """

    size_args = ("d_model", "dim_feedforward", "nhead", "num_encoder_layers",
                 "num_decoder_layers")

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Activation = "relu",
                 custom_encoder: Callable[..., mx.array] | None = None,
                 custom_decoder: Callable[..., mx.array] | None = None,
                 layer_norm_eps: float = 1e-5, norm_first: bool = False, bias: bool = True,
                 device: DeviceLike | None = None, dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        n_enc = self.check_int("num_encoder_layers", num_encoder_layers, low=0)
        n_dec = self.check_int("num_decoder_layers", num_decoder_layers, low=0)
        for arg, c in (("custom_encoder", custom_encoder), ("custom_decoder", custom_decoder)):
            if c is not None and not callable(c):
                raise self.error(arg, c, "None or a callable (e.g. a TransformerEncoder)",
                                 TypeError)
        kw = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward,
                  dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                  norm_first=norm_first, bias=bias, dtype=dtype)
        blocks = (TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
                  TransformerDecoder)
        # recorded first: an error for a weight too large names the largest of these
        self.config(d_model=d_model, nhead=nhead, num_encoder_layers=n_enc,
                    num_decoder_layers=n_dec, dim_feedforward=dim_feedforward)
        with owned_by(self, blocks):  # the blocks' errors name the Transformer
            self._build(kw, n_enc, n_dec, custom_encoder, custom_decoder, device)

    def _build(self, kw: dict[str, Any], n_enc: int, n_dec: int,
               custom_encoder: Callable[..., mx.array] | None,
               custom_decoder: Callable[..., mx.array] | None,
               device: DeviceLike | None) -> None:
        enc_layer = TransformerEncoderLayer(**kw)  # checks every shared argument
        self.config(d_model=kw["d_model"], nhead=kw["nhead"], num_encoder_layers=n_enc,
                    num_decoder_layers=n_dec, dim_feedforward=kw["dim_feedforward"],
                    dropout=enc_layer.dropout, activation=kw["activation"],
                    custom_encoder=custom_encoder, custom_decoder=custom_decoder,
                    layer_norm_eps=kw["layer_norm_eps"], norm_first=kw["norm_first"],
                    bias=kw["bias"], device=device)
        self._set("_device", _device(self, device))
        if custom_encoder is not None:
            self._register("encoder", custom_encoder)
        else:
            self.add_sublayer("encoder", TransformerEncoder(enc_layer, n_enc,
                                                            enc_layer._norm()))
        if custom_decoder is not None:
            self._register("decoder", custom_decoder)
        else:
            dec_layer = TransformerDecoderLayer(**kw)
            self.add_sublayer("decoder", TransformerDecoder(dec_layer, n_dec,
                                                            dec_layer._norm()))
        self._set("input_size", kw["d_model"])
        self._set("output_size", kw["d_model"])
        self._set("built", True)

    def _register(self, name: str, obj: Callable[..., mx.array]) -> None:
        if isinstance(obj, Layer):
            self.add_sublayer(name, obj)
        elif isinstance(obj, mx.array):
            raise self.error(f"custom_{name}", "an array", "a callable", TypeError)
        else:
            setattr(self, name, obj)  # an mlx.nn.Module joins the parameter tree

    def _check_masks(self, src: mx.array, tgt: mx.array, *masks: MaskLike | None) -> None:
        """Every mask the built-in stacks take, checked before anything runs (a stack of no
        layers would never look at them); a custom encoder/decoder reads its own."""
        src_mask, tgt_mask, memory_mask, src_kpm, tgt_kpm, memory_kpm = masks
        (b, s), t, h = src.shape[:2], tgt.shape[1], self.nhead
        if self.custom_encoder is None:
            attention_mask(self, src_mask, src_kpm, None, b, h, s, s,
                           ("src_mask", "src_key_padding_mask"))
        if self.custom_decoder is None:
            attention_mask(self, tgt_mask, tgt_kpm, None, b, h, t, t,
                           ("tgt_mask", "tgt_key_padding_mask"))
            if self.custom_encoder is None:  # (else the memory's length is the encoder's)
                attention_mask(self, memory_mask, memory_kpm, None, b, h, t, s,
                               ("memory_mask", "memory_key_padding_mask"))

    @staticmethod
    def generate_square_subsequent_mask(sz: int,
                                        dtype: DTypeName | mx.Dtype = "float32") -> mx.array:
        """``(sz, sz)`` float mask: ``-inf`` above the diagonal, ``0`` elsewhere."""
        name = "Transformer.generate_square_subsequent_mask"
        sz = V.check_int(name, "sz", sz, low=0, high=V.MAX_DIM)
        dt = V.check_dtype(name, dtype)
        V.check_fits(name, "sz", sz, (sz, sz), dt, "mask")
        return mx.where(K.causal_mask(sz, sz), mx.array(0.0, dt), mx.array(-float("inf"), dt))

    def __call__(self, src: ArrayLike, tgt: ArrayLike, src_mask: MaskLike | None = None,
                 tgt_mask: MaskLike | None = None, memory_mask: MaskLike | None = None,
                 train_flag: bool | None = None, *,
                 src_key_padding_mask: MaskLike | None = None,
                 tgt_key_padding_mask: MaskLike | None = None,
                 memory_key_padding_mask: MaskLike | None = None,
                 src_is_causal: bool | None = None, tgt_is_causal: bool | None = None,
                 memory_is_causal: bool | None = False,
                 training: bool | None = None) -> mx.array:
        src = self.as_input(src, "src", ndim=3)
        tgt = self.as_input(tgt, "tgt", ndim=3)
        if src.shape[0] != tgt.shape[0]:
            raise self.error("tgt", Desc(f"an array of shape {tuple(tgt.shape)}"),
                             f"the batch size of src ({src.shape[0]})")
        for arg, x in (("src", src), ("tgt", tgt)):
            if x.shape[-1] != self.d_model:
                raise self.error(arg, Desc(f"an array of shape {tuple(x.shape)}"),
                                 f"d_model={self.d_model} features on the last axis")
        t = self.mode(train_flag, training)
        ctx = mx.stream(self._device) if self._device is not None else nullcontext()
        with ctx:
            flags = {a: causal_flag(self, a, v) for a, v in (
                ("src_is_causal", src_is_causal), ("tgt_is_causal", tgt_is_causal),
                ("memory_is_causal", memory_is_causal))}
            self._check_masks(src, tgt, src_mask, tgt_mask, memory_mask, src_key_padding_mask,
                              tgt_key_padding_mask, memory_key_padding_mask)
            memory = _call(self.encoder, src, mask=src_mask,
                           src_key_padding_mask=src_key_padding_mask,
                           is_causal=flags["src_is_causal"], train_flag=t)
            return _call(self.decoder, tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask,
                         tgt_is_causal=flags["tgt_is_causal"],
                         memory_is_causal=flags["memory_is_causal"], train_flag=t)


__all__ = ["Transformer", "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
           "TransformerDecoderLayer"]
