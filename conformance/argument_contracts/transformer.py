"""Transformer (decisions.md item 28), its encoder/decoder layers and stacks: PyTorch's
argument ranges (0 layers allowed), masks ``(L, S)`` / ``(B * nhead, L, S)`` / ``(B, S)``,
and the errors of the blocks a Transformer builds naming the Transformer."""

from __future__ import annotations

import mlx.core as mx

from .rows import BASE, Accept, Arr, Oversize, Reads, Refuse, Row, Special, build, new

T, V = TypeError, ValueError
D, NH, FF = 8, 2, 16
B, S, TL = 2, 5, 4  # batch, source length, target length
SRC, TGT = (B, S, D), (B, TL, D)
_small = dict(d_model=D, nhead=NH, dim_feedforward=FF)
BASE.update(Transformer=dict(_small, num_encoder_layers=1, num_decoder_layers=1),
            TransformerEncoderLayer=dict(_small), TransformerDecoderLayer=dict(_small),
            TransformerEncoder=dict(encoder_layer=new("TransformerEncoderLayer"), num_layers=2),
            TransformerDecoder=dict(decoder_layer=new("TransformerDecoderLayer"), num_layers=2))


def _block_args(layer: str) -> list[Row]:
    """The arguments the Transformer and its layers share (a Transformer's errors name it)."""
    return [
        Refuse(layer, dict(d_model=0), "d_model"), Refuse(layer, dict(d_model=8.0), "d_model", T),
        Refuse(layer, dict(nhead=0), "nhead"), Refuse(layer, dict(nhead=3), "nhead"),
        Refuse(layer, dict(dim_feedforward=0), "dim_feedforward"),
        Refuse(layer, dict(dim_feedforward="16"), "dim_feedforward", T),
        Refuse(layer, dict(dropout=1.0), "dropout"), Refuse(layer, dict(dropout=-0.1), "dropout"),
        Refuse(layer, dict(activation="nope"), "activation"),
        Refuse(layer, dict(activation=2), "activation", T),
        Refuse(layer, dict(layer_norm_eps=-1e-5), "layer_norm_eps"),
        Refuse(layer, dict(layer_norm_eps="1e-5"), "layer_norm_eps", T),
        Refuse(layer, dict(norm_first=1), "norm_first", T),
        Refuse(layer, dict(bias="no"), "bias", T),
        Refuse(layer, dict(dtype="float64"), "dtype", T)]


def _masks(layer: str, inputs: tuple, prefix: str, length: int, keys: int) -> list[Row]:
    """An attention mask of the wrong shape or dtype, a key-padding mask of the wrong shape."""
    m = f"{prefix}_mask" if prefix else "mask"
    kpm = f"{prefix}_key_padding_mask" if prefix != "memory" else "memory_key_padding_mask"
    return [
        Refuse(layer, {}, m, inputs=inputs, call={m: Arr((length, keys + 1), "bool")}),
        Refuse(layer, {}, m, inputs=inputs, call={m: Arr((B, length, keys), "bool")}),
        Refuse(layer, {}, m, T, inputs=inputs, call={m: Arr((length, keys), "int32")}),
        Refuse(layer, {}, kpm, inputs=inputs, call={kpm: Arr((B, keys + 1), "bool")}),
        Refuse(layer, {}, kpm, inputs=inputs, call={kpm: Arr((keys,), "bool")})]


TRANSFORMER: list[Row] = [
    *_block_args("Transformer"),
    Refuse("Transformer", dict(num_encoder_layers=-1), "num_encoder_layers"),
    Refuse("Transformer", dict(num_decoder_layers=-1), "num_decoder_layers"),
    Refuse("Transformer", dict(num_decoder_layers=1.0), "num_decoder_layers", T),
    Refuse("Transformer", dict(custom_encoder=3), "custom_encoder", T),
    Refuse("Transformer", dict(custom_decoder="decoder"), "custom_decoder", T),
    Refuse("Transformer", dict(device="tpu"), "device", T),
    Refuse("Transformer", dict(device=0), "device", T),
    Refuse("Transformer", {}, "src", inputs=((S, D), TGT), words=("rank 3",)),
    Refuse("Transformer", {}, "tgt", inputs=(SRC, (TL, D))),
    Refuse("Transformer", {}, "src", inputs=((B, S, D + 1), TGT)),
    Refuse("Transformer", {}, "tgt", inputs=(SRC, (B, TL, D - 1))),
    Refuse("Transformer", {}, "tgt", inputs=(SRC, (B + 1, TL, D))),
    *_masks("Transformer", (SRC, TGT), "src", S, S),
    *_masks("Transformer", (SRC, TGT), "tgt", TL, TL),
    *_masks("Transformer", (SRC, TGT), "memory", TL, S),
    *[Refuse("Transformer", dict(num_encoder_layers=0, num_decoder_layers=0), m,
             inputs=(SRC, TGT), call={m: Arr(shape, "bool")})  # checked with no layers too
      for m, shape in (("src_mask", (S, S + 1)), ("tgt_mask", (TL, TL + 1)),
                       ("memory_mask", (TL, S + 1)), ("memory_key_padding_mask", (B, TL)))],
    Refuse("Transformer", {}, "src_is_causal", T, inputs=(SRC, TGT), call=dict(src_is_causal=1)),
    Refuse("Transformer", {}, "tgt_is_causal", T, inputs=(SRC, TGT),
           call=dict(tgt_is_causal="yes")),
    Refuse("Transformer", {}, "train_flag", T, inputs=(SRC, TGT), call=dict(train_flag=1)),
    Refuse("Transformer", {}, "training", T, inputs=(SRC, TGT), call=dict(training="no")),
    Refuse("Transformer", {}, "memory_is_causal", T, inputs=(SRC, TGT),
           call=dict(memory_is_causal=1)),
    Oversize("Transformer", {}, (SRC, TGT), "src", "attention logits",
             limit=B * S * D * 4 + 8),  # logits (B, nhead, S, S): 400 bytes
    Oversize("Transformer", {}, (SRC, TGT), "src", "feed-forward activations",
             limit=500),  # (B, S, dim_feedforward): 640 bytes
    Accept("Transformer", {}, (SRC, TGT), TGT),
    *[Accept("Transformer", dict(device=d), (SRC, TGT), TGT)
      for d in ("cpu:0", "CPU", mx.cpu, mx.Device(mx.cpu))],
    Accept("Transformer", dict(num_encoder_layers=0, num_decoder_layers=0), (SRC, TGT), TGT),
    Accept("Transformer", dict(num_decoder_layers=0, dropout=0.999, norm_first=True,
                               bias=False, activation="gelu", layer_norm_eps=0.0),
           (SRC, TGT), TGT, call=dict(train_flag=True)),
    Accept("Transformer", dict(custom_encoder=new("TransformerEncoder", num_layers=0),
                               device="cpu"), (SRC, TGT), TGT),
    Accept("Transformer", dict(dtype="float16"), (SRC, TGT), TGT,
           call=dict(src_mask=Arr((S, S), "bool", 0), tgt_mask=Arr((B * NH, TL, TL)),
                     memory_mask=Arr((TL, S), fill=0.0),
                     src_key_padding_mask=Arr((B, S), "bool", 0),
                     tgt_key_padding_mask=Arr((B, TL), fill=0.0),
                     memory_key_padding_mask=Arr((B, S), "bool", 0),
                     src_is_causal=True, tgt_is_causal=True, memory_is_causal=False)),
]

ENCODER_LAYER: list[Row] = [
    *_block_args("TransformerEncoderLayer"),
    Refuse("TransformerEncoderLayer", {}, "src", inputs=((S, D),), words=("rank 3",)),
    Refuse("TransformerEncoderLayer", {}, "src", inputs=((B, S, D + 2),)),
    *_masks("TransformerEncoderLayer", (SRC,), "src", S, S),
    Refuse("TransformerEncoderLayer", {}, "is_causal", T, inputs=(SRC,),
           call=dict(is_causal="no")),
    Oversize("TransformerEncoderLayer", {}, (SRC,), "src", "attention logits",
             limit=B * S * D * 4 + 8),  # logits (B, nhead, S, S): 400 bytes
    Oversize("TransformerEncoderLayer", {}, (SRC,), "src", "feed-forward activations",
             limit=500),  # (B, S, dim_feedforward): 640 bytes
    Accept("TransformerEncoderLayer", {}, (SRC,), SRC),
    Accept("TransformerEncoderLayer", dict(norm_first=True, dropout=0.0), (SRC,), SRC,
           call=dict(src_mask=Arr((S, S)), src_key_padding_mask=Arr((B, S), "bool", 0),
                     is_causal=True, train_flag=True)),
]

DECODER_LAYER: list[Row] = [
    *_block_args("TransformerDecoderLayer"),
    Refuse("TransformerDecoderLayer", {}, "tgt", inputs=((TL, D), SRC), words=("rank 3",)),
    Refuse("TransformerDecoderLayer", {}, "memory", inputs=(TGT, (S, D)), words=("rank 3",)),
    Refuse("TransformerDecoderLayer", {}, "memory", inputs=(TGT, (B, S, D + 1))),
    Refuse("TransformerDecoderLayer", {}, "memory", inputs=(TGT, (B + 1, S, D))),
    *_masks("TransformerDecoderLayer", (TGT, SRC), "tgt", TL, TL),
    *_masks("TransformerDecoderLayer", (TGT, SRC), "memory", TL, S),
    Refuse("TransformerDecoderLayer", {}, "memory_is_causal", T, inputs=(TGT, SRC),
           call=dict(memory_is_causal=2)),
    Refuse("TransformerDecoderLayer", {}, "tgt_is_causal", T, inputs=(TGT, SRC),
           call=dict(tgt_is_causal="yes")),
    Accept("TransformerDecoderLayer", {}, (TGT, SRC), TGT),
    Accept("TransformerDecoderLayer", dict(norm_first=True), (TGT, (B, TL, D)), TGT,
           call=dict(tgt_is_causal=True, memory_is_causal=True, training=True)),
]

STACKS: list[Row] = [
    Refuse("TransformerEncoder", dict(encoder_layer=new("TransformerDecoderLayer")),
           "encoder_layer", T),
    Refuse("TransformerEncoder", dict(encoder_layer=new("dense", output_size=D)),
           "encoder_layer", T),
    Refuse("TransformerEncoder", dict(num_layers=-1), "num_layers"),
    Refuse("TransformerEncoder", dict(num_layers="2"), "num_layers", T),
    Refuse("TransformerEncoder", dict(norm=3), "norm", T),
    Refuse("TransformerDecoder", dict(norm="layer_norm"), "norm", T),
    Refuse("TransformerEncoder", {}, "src", inputs=((S, D),), words=("rank 3",)),
    Refuse("TransformerEncoder", {}, "is_causal", T, inputs=(SRC,), call=dict(is_causal=1)),
    Refuse("TransformerEncoder", {}, "src_mask", owner="TransformerEncoderLayer",
           inputs=(SRC,), call=dict(mask=Arr((S, S + 1), "bool"))),
    Refuse("TransformerDecoder", dict(decoder_layer=new("TransformerEncoderLayer")),
           "decoder_layer", T),
    Refuse("TransformerDecoder", dict(num_layers=-2), "num_layers"),
    Refuse("TransformerDecoder", {}, "tgt", inputs=((TL, D), SRC), words=("rank 3",)),
    Refuse("TransformerDecoder", {}, "tgt_is_causal", T, inputs=(TGT, SRC),
           call=dict(tgt_is_causal="yes")),
    Refuse("TransformerDecoder", {}, "memory_is_causal", T, inputs=(TGT, SRC),
           call=dict(memory_is_causal=1)),
    Accept("TransformerEncoder", {}, (SRC,), SRC),
    Reads("TransformerEncoder", dict(num_layers=3), dict(num_layers=3,
                                                         layers=lambda ls: len(ls) == 3)),
    Accept("TransformerEncoder", dict(num_layers=0, norm=new("layer_norm", input_size=D)),
           (SRC,), SRC),
    Accept("TransformerEncoder", dict(num_layers=1), (SRC,), SRC,
           call=dict(mask=Arr((S, S), "bool", 0), is_causal=True, train_flag=False)),
    Accept("TransformerDecoder", {}, (TGT, SRC), TGT),
    Accept("TransformerDecoder", dict(num_layers=0), (TGT, SRC), TGT),
    # norm: any layer, applied last (one that changes the width shows it ran)
    Accept("TransformerEncoder", dict(norm=new("dense", output_size=3)), (SRC,), (B, S, 3)),
    Accept("TransformerDecoder", dict(norm=new("dense", output_size=3)), (TGT, SRC),
           (B, TL, 3)),
]

def _gpu() -> str:
    """``device='gpu'``: where calls run when this MLX has a GPU, else refused naming it."""
    if mx.is_available(mx.gpu):
        t = build("Transformer", dict(device="gpu"))
        out = t(mx.ones(SRC), mx.ones(TGT))
        return "" if tuple(out.shape) == TGT else f"output shape {tuple(out.shape)}"
    from ..contracts import _raises

    return _raises(lambda: build("Transformer", dict(device="gpu")), ValueError,
                   "Transformer:", "'device'")


TRANSFORMER.append(Special("Transformer(device='gpu'): runs there, or refused without a GPU",
                           _gpu))

ROWS: list[Row] = [*TRANSFORMER, *ENCODER_LAYER, *DECODER_LAYER, *STACKS]
