"""attention, multihead_attention, talking_heads_attention, FAVOR_attention and
Linformer_self_attention (decisions.md items 23-27): arguments, widths, masks, ranks."""

from __future__ import annotations

import mlx.core as mx

from .rows import BASE, Accept, Arr, Oversize, Refuse, Row

T, V = TypeError, ValueError
BASE.update(multihead_attention=dict(n_head=2), FAVOR_attention=dict(key_dim=4, m=3),
            Linformer_self_attention=dict(dim=8, seq_len=6, k=3, heads=2))


def _bad_randomizer(shape, dtype=mx.float32):
    return mx.zeros((shape[0] + 1, shape[1]), dtype)


def _uniform(shape, dtype=mx.float32):
    return mx.random.uniform(-1.0, 1.0, shape, dtype)


def _no_dtype(shape):  # a randomizer without the documented dtype= keyword
    return mx.random.normal(shape)


def _h_row(x):  # h(x) of shape (B, n, 1)
    return mx.ones((*x.shape[:-1], 1))


def _h_wide(x):  # h(x) of shape (B, n, 2): not a per-location scale
    return mx.ones((*x.shape[:-1], 2))


Q, KV = (2, 5, 4), (2, 6, 4)
ATTENTION: list[Row] = [
    Refuse("attention", dict(use_scale=1), "use_scale", T),
    Refuse("attention", dict(score_mode="add"), "score_mode"),
    Refuse("attention", dict(score_mode=None), "score_mode", T),
    Refuse("attention", dict(dtype="int32"), "dtype", T),
    Refuse("attention", {}, "query", inputs=((5, 4), KV), words=("rank 3",)),
    Refuse("attention", {}, "value", inputs=(Q, (6, 4)), words=("rank 3",)),
    Refuse("attention", {}, "key", inputs=(Q, KV, (2, 6)), words=("rank 3",)),
    Refuse("attention", {}, "key", inputs=(Q, KV, (2, 6, 3))),
    Refuse("attention", {}, "value", inputs=(Q, KV, (2, 7, 4))),
    Refuse("attention", {}, "value", inputs=(Q, (3, 6, 4))),
    Refuse("attention", {}, "mask", T, inputs=(Q, KV), call=dict(mask=Arr((2, 6), "bool"))),
    Refuse("attention", {}, "mask", inputs=(Q, KV), call=dict(mask=[None, Arr((2, 5), "bool")])),
    Refuse("attention", {}, "mask", inputs=(Q, KV), call=dict(mask=[Arr((2, 6), "bool"), None])),
    Refuse("attention", {}, "use_causal_mask", T, inputs=(Q, KV), call=dict(use_causal_mask=1)),
    Refuse("attention", {}, "return_attention_scores", T, inputs=(Q, KV),
           call=dict(return_attention_scores="yes")),
    Oversize("attention", dict(score_mode="concat"), (Q, KV), "query", "scores",
             limit=2 * 5 * 6 * 4 * 4 - 4),
    Accept("attention", {}, (Q, (2, 6, 3), KV), (2, 5, 3)),
    Accept("attention", {}, (Q, KV), (2, 5, 4), call=dict(mask=[None, Arr((2, 6), "bool")])),
    Accept("attention", {}, (Q, KV), (2, 5, 4),
           call=dict(mask=[[[True] * 5] * 2, [[1, 1, 1, 0, 0, 0]] * 2])),  # lists
    Accept("attention", dict(use_scale=True, score_mode="concat"), (Q, KV), [(2, 5, 4),
                                                                            (2, 5, 6)],
           call=dict(return_attention_scores=True, use_causal_mask=True,
                     mask=[Arr((2, 5), "bool"), Arr((2, 6), "bool")])),
    Accept("attention", dict(use_scale=True, dtype="float16"), (Q, KV), (2, 5, 4)),
]

X, XA = (2, 5, 8), (2, 6, 8)
MULTIHEAD: list[Row] = [
    Refuse("multihead_attention", dict(n_head=0), "n_head"),
    Refuse("multihead_attention", dict(n_head="2"), "n_head", T),
    Refuse("multihead_attention", dict(input_size=0), "input_size"),
    Refuse("multihead_attention", dict(input_size=7), "input_size"),
    Refuse("multihead_attention", dict(kdim=0), "kdim"),
    Refuse("multihead_attention", dict(vdim=1.5), "vdim", T),
    Refuse("multihead_attention", dict(dropout="0.1"), "dropout", T),
    Refuse("multihead_attention", dict(weight_initializer="nope"), "weight_initializer"),
    Refuse("multihead_attention", dict(bias_initializer="nope"), "bias_initializer"),
    Refuse("multihead_attention", dict(bias_initializer="Orthogonal"), "bias_initializer"),
    Refuse("multihead_attention", dict(use_bias=None), "use_bias", T),
    Refuse("multihead_attention", dict(dtype="int8"), "dtype", T),
    Refuse("multihead_attention", {}, "x", inputs=((5, 8),), words=("rank 3",)),
    Refuse("multihead_attention", {}, "x", inputs=((2, 5, 7),)),  # lazy: width % n_head
    Refuse("multihead_attention", {}, "x", inputs=((2, 5, 0),)),
    Refuse("multihead_attention", dict(input_size=8), "x", inputs=((2, 5, 6),)),
    Refuse("multihead_attention", dict(input_size=8), "xa", inputs=(X, (2, 6, 6))),
    Refuse("multihead_attention", dict(input_size=8, kdim=6), "xa", inputs=(X, XA)),
    Refuse("multihead_attention", {}, "xa", inputs=(X, (6, 8)), words=("rank 3",)),
    Refuse("multihead_attention", {}, "xa", inputs=(X, (3, 6, 8))),
    Refuse("multihead_attention", {}, "xa", T, inputs=(X, [XA, XA, XA])),
    Refuse("multihead_attention", {}, "xa", inputs=(X, [XA, (2, 7, 8)])),
    Refuse("multihead_attention", {}, "mask", T, inputs=(X,), call=dict(mask=Arr((5, 5),
                                                                                "int32"))),
    Refuse("multihead_attention", {}, "mask", inputs=(X,), call=dict(mask=Arr((4, 5), "bool"))),
    Refuse("multihead_attention", {}, "mask", inputs=(X,), call=dict(mask=Arr((2, 5, 4)))),
    Refuse("multihead_attention", {}, "mask", inputs=(X,),
           call=dict(mask=Arr((2, 3, 5, 5), "bool"))),
    Refuse("multihead_attention", {}, "train_flag", T, inputs=(X,), call=dict(train_flag=0)),
    Refuse("multihead_attention", {}, "training", T, inputs=(X,), call=dict(training="no")),
    Oversize("multihead_attention", dict(input_size=8), (X, (2, 64, 8)), "x",
             "attention logits", limit=2 * 64 * 8 * 4 + 8),
    Accept("multihead_attention", dict(input_size=8), (X,), [(2, 5, 8), (2, 2, 5, 5)]),
    Accept("multihead_attention", dict(n_head=4, weight_initializer="Orthogonal"), (X,),
           [(2, 5, 8), (2, 4, 5, 5)], call=dict(mask=Arr((2, 5, 5)))),  # (B, Tq, Tk), B != H
    Accept("multihead_attention", dict(kdim=6, vdim=3), (X, [(2, 6, 6), (2, 6, 3)]),
           [(2, 5, 8), (2, 2, 5, 6)]),
    Accept("multihead_attention", {}, (X, XA), [(2, 5, 8), (2, 2, 5, 6)],
           call=dict(mask=Arr((9, 9), "bool"), train_flag=True)),
    Accept("multihead_attention", dict(dropout=0.999, use_bias=False), (X,),
           [(2, 5, 8), (2, 2, 5, 5)], call=dict(mask=Arr((2, 5, 5)), training=True)),
    Accept("multihead_attention", dict(weight_initializer="He_normal",
                                       bias_initializer="ones", dtype="float16"), (X,),
           [(2, 5, 8), (2, 2, 5, 5)], call=dict(mask=Arr((2, 1, 1, 5), "bool"))),
]

QT, KT = (2, 5, 3, 4), (2, 6, 3, 4)  # [B, T, N, H]
TALKING: list[Row] = [
    Refuse("talking_heads_attention", dict(qkv_rank=3), "qkv_rank"),
    Refuse("talking_heads_attention", dict(qkv_rank=4.0), "qkv_rank", T),
    Refuse("talking_heads_attention", dict(attention_axes="1"), "attention_axes", T),
    Refuse("talking_heads_attention", dict(attention_axes=()), "attention_axes", T),
    Refuse("talking_heads_attention", dict(qkv_rank=4, attention_axes=(2,)), "attention_axes",
           words=("[0, 1]",)),
    Refuse("talking_heads_attention", dict(qkv_rank=5, attention_axes=(1, 1)),
           "attention_axes"),
    Refuse("talking_heads_attention", dict(dropout_rate="0"), "dropout_rate", T),
    Refuse("talking_heads_attention", dict(initializer="nope"), "initializer"),
    Refuse("talking_heads_attention", dict(num_heads=0), "num_heads"),
    Refuse("talking_heads_attention", dict(dtype="int16"), "dtype", T),
    Refuse("talking_heads_attention", {}, "query_tensor", inputs=((2, 5, 4), KT, KT),
           words=("rank >= 4",)),
    Refuse("talking_heads_attention", {}, "key_tensor", inputs=(QT, (2, 6, 4), KT),
           words=("rank >= 4",)),
    Refuse("talking_heads_attention", {}, "value_tensor", inputs=(QT, KT, (2, 6, 4)),
           words=("rank >= 4",)),
    Refuse("talking_heads_attention", dict(qkv_rank=5), "query_tensor", inputs=(QT, KT, KT)),
    Refuse("talking_heads_attention", {}, "key_tensor", inputs=(QT, (2, 1, 6, 3, 4), KT)),
    Refuse("talking_heads_attention", {}, "value_tensor", inputs=(QT, KT, (2, 1, 6, 3, 4))),
    Refuse("talking_heads_attention", dict(attention_axes=(-4,)), "attention_axes",
           inputs=(QT, KT, KT)),
    Refuse("talking_heads_attention", dict(attention_axes=(3,)), "attention_axes",
           inputs=(QT, KT, KT)),
    Refuse("talking_heads_attention", dict(num_heads=2), "query_tensor", inputs=(QT, KT, KT)),
    Refuse("talking_heads_attention", {}, "key_tensor", inputs=(QT, (2, 6, 3, 5), KT)),
    Refuse("talking_heads_attention", {}, "key_tensor", inputs=(QT, KT, (2, 7, 3, 4))),
    Refuse("talking_heads_attention", {}, "key_tensor", inputs=(QT, (3, 6, 3, 4),
                                                                (3, 6, 3, 4))),
    Refuse("talking_heads_attention", {}, "value_tensor", inputs=(QT, KT, (2, 6, 2, 4))),
    Refuse("talking_heads_attention", {}, "query_tensor", inputs=((2, 5, 0, 4), KT, KT)),
    Refuse("talking_heads_attention", {}, "attention_mask", inputs=(QT, KT, KT),
           call=dict(attention_mask=Arr((2, 5, 5)))),
    Refuse("talking_heads_attention", {}, "train_flag", T, inputs=(QT, KT, KT),
           call=dict(train_flag="no")),
    Oversize("talking_heads_attention", dict(num_heads=3), (QT, (2, 64, 3, 4), (2, 64, 3, 4)),
             "query_tensor", "attention scores", limit=2 * 3 * 5 * 64 * 4 - 4),
    Accept("talking_heads_attention", {}, (QT, KT, (2, 6, 3, 2)), [(2, 5, 3, 2), (2, 3, 5, 6)]),
    Accept("talking_heads_attention", dict(attention_axes=(0,), initializer="Orthogonal"),
           (QT, (3, 5, 3, 4), (3, 5, 3, 4)), [(2, 5, 3, 4), (5, 3, 2, 3)]),  # axes [0, rank-3]
    Accept("talking_heads_attention", dict(qkv_rank=4, attention_axes=-2, num_heads=3,
                                           dropout_rate=0.999, initializer="He"),
           (QT, KT, KT), [(2, 5, 3, 4), (2, 3, 5, 6)],
           call=dict(attention_mask=Arr((2, 1, 6), "bool"), train_flag=True)),
    Accept("talking_heads_attention", dict(attention_axes=(1, 2)),
           ((2, 2, 3, 3, 4), (2, 2, 4, 3, 4), (2, 2, 4, 3, 4)),
           [(2, 2, 3, 3, 4), (2, 3, 2, 3, 2, 4)]),
    Accept("talking_heads_attention", dict(attention_axes=(2,), dtype="float16"),
           ((2, 4, 5, 3, 4), (2, 4, 6, 3, 4), (2, 4, 6, 3, 4)),
           [(2, 4, 5, 3, 4), (2, 4, 3, 5, 6)], call=dict(attention_mask=Arr((2, 4, 5, 6),
                                                                            fill=1.0))),
]

FK, FV, FQ = (2, 4, 6), (2, 3, 6), (2, 4, 5)  # channels first: (B, dim, L)
FAVOR: list[Row] = [
    Refuse("FAVOR_attention", dict(key_dim=0), "key_dim"),
    Refuse("FAVOR_attention", dict(m=0), "m"),
    Refuse("FAVOR_attention", dict(m=5), "m"),  # orthonormal: m <= key_dim
    Refuse("FAVOR_attention", dict(orthonormal=1), "orthonormal", T),
    Refuse("FAVOR_attention", dict(causal="no"), "causal", T),
    Refuse("FAVOR_attention", dict(redraw=0), "redraw", T),
    Refuse("FAVOR_attention", dict(h=2.0), "h", T),
    Refuse("FAVOR_attention", dict(f=[]), "f", T),
    Refuse("FAVOR_attention", dict(f=["nope"]), "f"),
    Refuse("FAVOR_attention", dict(f=3), "f", T),
    Refuse("FAVOR_attention", dict(randomizer="normal"), "randomizer", T),
    Refuse("FAVOR_attention", dict(randomizer=_bad_randomizer), "randomizer"),
    Refuse("FAVOR_attention", dict(randomizer=_no_dtype), "randomizer", T),
    Refuse("FAVOR_attention", dict(h=_h_wide), "h", inputs=(FK, FV, FQ)),
    Refuse("FAVOR_attention", dict(eps=-0.1), "eps"),
    Refuse("FAVOR_attention", dict(kernel_eps="0"), "kernel_eps", T),
    Refuse("FAVOR_attention", dict(seed=-1), "seed"),
    Refuse("FAVOR_attention", dict(seed=2**64), "seed"),
    Refuse("FAVOR_attention", dict(kernel_eps=float("nan")), "kernel_eps"),
    Refuse("FAVOR_attention", dict(chunk_size=0), "chunk_size"),
    Refuse("FAVOR_attention", dict(dtype="int32"), "dtype", T),
    Refuse("FAVOR_attention", {}, "keys", inputs=((2, 4), FV, FQ), words=("rank >= 3",)),
    Refuse("FAVOR_attention", {}, "values", inputs=(FK, (2, 3), FQ), words=("rank >= 3",)),
    Refuse("FAVOR_attention", {}, "queries", inputs=(FK, FV, (2, 4)), words=("rank >= 3",)),
    Refuse("FAVOR_attention", {}, "keys", inputs=((2, 5, 6), FV, FQ)),
    Refuse("FAVOR_attention", {}, "queries", inputs=(FK, FV, (2, 3, 5))),
    Refuse("FAVOR_attention", {}, "values", inputs=(FK, (2, 3, 7), FQ)),
    Refuse("FAVOR_attention", {}, "values", inputs=(FK, (1, 3, 6), FQ)),
    Refuse("FAVOR_attention", dict(causal=True), "queries", inputs=(FK, FV, FQ)),
    Oversize("FAVOR_attention", {}, ((2, 4, 64), (2, 3, 64), FQ), "keys", "features",
             limit=2 * 64 * 3 * 4 - 4),
    Accept("FAVOR_attention", {}, (FK, FV, FQ), (2, 3, 5)),
    Accept("FAVOR_attention", dict(causal=True, redraw=False, chunk_size=2, seed=1),
           (FK, FV, (2, 4, 6)), (2, 3, 6)),
    Accept("FAVOR_attention", dict(orthonormal=False, m=9, f=["relu", "exponential"],
                                   h=lambda x: 2.0, eps=0.1, kernel_eps=0.0,
                                   randomizer=_uniform),
           ((2, 4, 2, 3), (2, 3, 2, 3), (2, 4, 5)), (2, 3, 5)),
    Accept("FAVOR_attention", dict(f="softplus", dtype="float16"), (FK, FV, FQ), (2, 3, 5)),
    Accept("FAVOR_attention", dict(h=_h_row), (FK, FV, FQ), (2, 3, 5)),
    Accept("FAVOR_attention", dict(m=4), (FK, FV, FQ), (2, 3, 5)),  # orthonormal: m = key_dim
    Accept("FAVOR_attention", dict(seed=0, kernel_eps=-0.5, redraw=False), (FK, FV, FQ),
           (2, 3, 5)),
]

LX, LC = (2, 6, 8), (2, 6, 8)
LINFORMER: list[Row] = [
    Refuse("Linformer_self_attention", dict(dim=0), "dim"),
    Refuse("Linformer_self_attention", dict(seq_len=0), "seq_len"),
    Refuse("Linformer_self_attention", dict(seq_len=6.0), "seq_len", T),
    Refuse("Linformer_self_attention", dict(k=0), "k"),
    Refuse("Linformer_self_attention", dict(heads=0), "heads"),
    Refuse("Linformer_self_attention", dict(heads=3), "heads"),
    Refuse("Linformer_self_attention", dict(dim_head=0), "dim_head"),
    Refuse("Linformer_self_attention", dict(one_kv_head=1), "one_kv_head", T),
    Refuse("Linformer_self_attention", dict(share_kv="yes"), "share_kv", T),
    Refuse("Linformer_self_attention", dict(dropout=1.0), "dropout"),
    Refuse("Linformer_self_attention", dict(dropout=-0.5), "dropout"),
    Refuse("Linformer_self_attention", dict(dtype="int8"), "dtype", T),
    Refuse("Linformer_self_attention", {}, "x", inputs=((6, 8),), words=("rank 3",)),
    Refuse("Linformer_self_attention", {}, "x", inputs=((2, 6, 7),)),
    Refuse("Linformer_self_attention", {}, "x", inputs=((2, 5, 8),)),
    Refuse("Linformer_self_attention", {}, "context", inputs=((2, 4, 8), (2, 6, 7))),
    Refuse("Linformer_self_attention", {}, "context", inputs=((2, 4, 8), (2, 5, 8))),
    Refuse("Linformer_self_attention", {}, "context", inputs=((2, 4, 8), (3, 6, 8))),
    Refuse("Linformer_self_attention", {}, "context", inputs=((2, 4, 8), (6, 8)),
           words=("rank 3",)),
    Refuse("Linformer_self_attention", {}, "train_flag", T, inputs=(LX,),
           call=dict(train_flag=1.0)),
    Oversize("Linformer_self_attention", dict(heads=4), ((2, 6, 8),), "x", "attention logits",
             limit=2 * 6 * 8 * 4 + 8),  # logits (2, 4, 6, 3): 576 bytes
    Accept("Linformer_self_attention", {}, (LX,), (2, 6, 8)),
    Accept("Linformer_self_attention", dict(heads=3, dim_head=2, one_kv_head=True,
                                            share_kv=True, dropout=0.999),
           ((2, 4, 8), LC), (2, 4, 8), call=dict(train_flag=True)),
    Accept("Linformer_self_attention", dict(dtype="float16"), ((2, 3, 8),), (2, 3, 8),
           call=dict(context=Arr(LC), training=False)),
]

ROWS: list[Row] = [*ATTENTION, *MULTIHEAD, *TALKING, *FAVOR, *LINFORMER]
