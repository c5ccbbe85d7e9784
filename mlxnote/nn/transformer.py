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

from .. import _validation as V
from .._validation import owned_by
from ..kernels import attention as K
from .layer import Desc, Layer
from .transformer_blocks import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    attention_mask,
    causal_flag,
)
from .typing import Activation, ArrayLike, DeviceLike, DTypeLike, DTypeName, MaskLike


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
