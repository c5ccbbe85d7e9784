"""The Transformer's public blocks on their own: ``TransformerEncoderLayer``,
``TransformerDecoderLayer``, ``TransformerEncoder`` and ``TransformerDecoder``, against TF
written from PyTorch's equations and defaults (``reference/transformer.py``, the same block
equations as the whole Transformer's reference, independent of mlxnote's code).

Cases leave PyTorch's defaults out on purpose (``is_causal=False`` for the layers,
``None`` for the stacks, ``memory_is_causal=False``; ``dim_feedforward=2048``, ``dropout=0.1``
in eval mode, ``activation='relu'``, ``layer_norm_eps=1e-5``, post-norm, biases), so a
flipped default fails. A stack case describes its layer by the layer's keyword arguments:
``{'encoder_layer': {...}, 'num_layers': n, 'norm': None or layer_norm's kwargs}``
(:func:`build_stack`). Inputs are routed by the call keyword ``inputs``; boolean masks reach
both sides in PyTorch's convention (True = hidden); ``'subsequent'`` as a mask keyword means
``Transformer.generate_square_subsequent_mask``.
"""

from __future__ import annotations

import mlx.core as mx

from ..case import Case, Input, LayerSpec, grid
from ..reference import transformer as ref
from ..reference.dropout import record_masks
from .transformer import mx_pt_bool

MASK_KEYS = ("src_mask", "tgt_mask", "memory_mask", "mask")


def call_block(default):
    def call(layer, ins, kw):
        kw = dict(kw)
        names = kw.pop("inputs", default)
        a = {k: mx_pt_bool(v) if v.dtype == mx.bool_ else v for k, v in zip(names, ins)}
        for k in MASK_KEYS:
            if kw.get(k) == "subsequent":
                n = (a.get("tgt", a.get("src"))).shape[1]
                from mlxnote import nn

                kw[k] = nn.Transformer.generate_square_subsequent_mask(n)
        with record_masks():
            return layer(**a, **kw)

    return call


def build_stack(kind: str):
    """``TransformerEncoder``/``TransformerDecoder`` from a case's data: the layer of
    ``kwargs[kind + '_layer']`` in the case's dtype, ``num_layers``, and ``norm`` (a
    ``layer_norm`` over ``d_model`` with those kwargs, or None)."""
    def build(kw, dtype):
        from mlxnote import nn

        lk = kw[f"{kind}_layer"]
        block = getattr(nn, f"Transformer{kind.title()}Layer")(**lk, dtype=dtype)
        norm = kw.get("norm")
        if norm is not None:
            norm = nn.layer_norm(lk["d_model"], dtype=dtype, **norm)
        return getattr(nn, f"Transformer{kind.title()}")(block, kw["num_layers"], norm)

    return build


# Widths of 32 and silu in 16 bits: see families/transformer.py (relu's kink; LayerNorm of
# narrow rows). PyTorch's defaults (relu, 2048 wide) run in float32.
B = dict(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, activation="silu")
DEFAULT = dict(d_model=32, nhead=4)
VARIANTS = [B, dict(B, norm_first=True), dict(B, bias=False, activation="tanh",
                                              layer_norm_eps=1e-3)]
_S, _T = (2, 8, 32), (2, 6, 32)
SRC, TGT, MEM = Input(_S, name="src"), Input(_T, name="tgt"), Input(_S, name="memory")

CASES: list[Case] = []
# -- TransformerEncoderLayer -------------------------------------------------------------
_enc_masks = [
    ([], {}),
    ([Input((8, 8), "mask", name="src_mask"), Input((2, 8), "mask",
                                                    name="src_key_padding_mask")], {}),
    ([Input((8, 8, 8), "normal", name="src_mask")], {"is_causal": True}),
    ([Input((2, 8), "normal", name="src_key_padding_mask")], {"src_mask": "subsequent",
                                                              "is_causal": False}),
]
for extra, ck in _enc_masks:
    names = ("src",) + tuple(i.name for i in extra)
    CASES += grid("TransformerEncoderLayer", VARIANTS, [SRC, *extra],
                  call_kwargs=[{"inputs": names, **ck}], smoke=1 if not extra else 0)
CASES += grid("TransformerEncoderLayer", [DEFAULT, dict(DEFAULT, norm_first=True)], [SRC],
              call_kwargs=[{"inputs": ("src",)}], dtypes=("float32",), modes=("eval",))
CASES += grid("TransformerEncoderLayer", [dict(B, dropout=0.25),
                                          dict(B, dropout=0.25, norm_first=True)],
              [SRC, Input((8, 8), "mask", name="src_mask")],
              call_kwargs=[{"inputs": ("src", "src_mask")},
                           {"inputs": ("src", "src_mask"), "train_flag": False}],
              modes=("train", "eval"))
# -- TransformerDecoderLayer -------------------------------------------------------------
_dec_masks = [
    ([], {}),
    ([Input((6, 6), "mask", name="tgt_mask"), Input((6, 8), "normal", name="memory_mask"),
      Input((2, 6), "mask", name="tgt_key_padding_mask"),
      Input((2, 8), "mask", name="memory_key_padding_mask")], {}),
    ([Input((8, 6, 6), "normal", name="tgt_mask")], {"tgt_is_causal": True}),
    ([Input((2, 8), "normal", name="memory_key_padding_mask")],
     {"memory_is_causal": True, "tgt_mask": "subsequent"}),
    ([], {"tgt_is_causal": False, "memory_is_causal": False}),
]
for extra, ck in _dec_masks:
    names = ("tgt", "memory") + tuple(i.name for i in extra)
    CASES += grid("TransformerDecoderLayer", VARIANTS, [TGT, MEM, *extra],
                  call_kwargs=[{"inputs": names, **ck}], smoke=1 if not extra and not ck else 0)
CASES += grid("TransformerDecoderLayer", [DEFAULT, dict(DEFAULT, norm_first=True)],
              [TGT, MEM], call_kwargs=[{"inputs": ("tgt", "memory")}], dtypes=("float32",),
              modes=("eval",))
CASES += grid("TransformerDecoderLayer", [dict(B, dropout=0.25, norm_first=True)],
              [TGT, MEM, Input((2, 6), "mask", name="tgt_key_padding_mask")],
              call_kwargs=[{"inputs": ("tgt", "memory", "tgt_key_padding_mask")},
                           {"inputs": ("tgt", "memory", "tgt_key_padding_mask"),
                            "train_flag": False}], modes=("train", "eval"))
# -- the stacks ----------------------------------------------------------------------------
NORMS = [None, dict(epsilon=1e-5), dict(epsilon=1e-3, center=False)]
for kind, ins, names, masks in (
        ("encoder", [SRC], ("src",),
         [([Input((8, 8), "mask", name="mask"), Input((2, 8), "mask",
                                                      name="src_key_padding_mask")], {}),
          ([], {"is_causal": True}), ([], {"is_causal": None})]),
        ("decoder", [TGT, MEM], ("tgt", "memory"),
         [([Input((6, 6), "normal", name="tgt_mask"), Input((6, 8), "mask",
                                                           name="memory_mask"),
            Input((2, 6), "mask", name="tgt_key_padding_mask"),
            Input((2, 8), "normal", name="memory_key_padding_mask")], {}),
          ([], {"tgt_is_causal": True, "memory_is_causal": True}),
          ([], {"tgt_is_causal": None, "memory_is_causal": False})])):
    layer = f"Transformer{kind.title()}"
    args = [{f"{kind}_layer": v, "num_layers": n, "norm": norm}
            for v, n, norm in ((B, 2, NORMS[1]), (dict(B, norm_first=True), 1, NORMS[2]),
                               (dict(B, bias=False, activation="tanh"), 2, NORMS[0]))]
    CASES += grid(layer, args, ins, call_kwargs=[{"inputs": names}], smoke=1)
    for extra, ck in masks:
        CASES += grid(layer, args[:1], [*ins, *extra],
                      call_kwargs=[{"inputs": names + tuple(i.name for i in extra), **ck}])
    CASES += grid(layer, [{f"{kind}_layer": DEFAULT, "num_layers": 2, "norm": NORMS[1]},
                          {f"{kind}_layer": DEFAULT, "num_layers": 0, "norm": NORMS[2]}],
                  ins, call_kwargs=[{"inputs": names}], dtypes=("float32",), modes=("eval",))
    CASES += grid(layer, [{f"{kind}_layer": dict(B, dropout=0.25), "num_layers": 2,
                           "norm": NORMS[1]}], ins,
                  call_kwargs=[{"inputs": names}, {"inputs": names, "train_flag": False}],
                  dtypes=("float32", "bfloat16"), modes=("train", "eval"))

_LAYER_ARGS = ["d_model", "nhead", "dim_feedforward", "dropout", "activation",
               "layer_norm_eps", "norm_first", "bias", "dtype"]
SPECS = [
    LayerSpec("TransformerEncoderLayer", _LAYER_ARGS,
              ["src", "src_mask", "src_key_padding_mask", "is_causal", "train_flag"],
              reference=ref.encoder_layer, call=call_block(("src",))),
    LayerSpec("TransformerDecoderLayer", _LAYER_ARGS,
              ["tgt", "memory", "tgt_mask", "memory_mask", "tgt_key_padding_mask",
               "memory_key_padding_mask", "tgt_is_causal", "memory_is_causal", "train_flag"],
              reference=ref.decoder_layer, call=call_block(("tgt", "memory"))),
    LayerSpec("TransformerEncoder", ["encoder_layer", "num_layers", "norm"],
              ["src", "mask", "src_key_padding_mask", "is_causal", "train_flag"],
              reference=ref.encoder, call=call_block(("src",)), has_dtype=False,
              build=build_stack("encoder")),
    LayerSpec("TransformerDecoder", ["decoder_layer", "num_layers", "norm"],
              ["tgt", "memory", "tgt_mask", "memory_mask", "tgt_key_padding_mask",
               "memory_key_padding_mask", "tgt_is_causal", "memory_is_causal", "train_flag"],
              reference=ref.decoder, call=call_block(("tgt", "memory")), has_dtype=False,
              build=build_stack("decoder")),
]
EXPECTED = []
