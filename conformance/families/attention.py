"""Attention family: attention, multihead_attention, talking_heads_attention,
FAVOR_attention and Linformer_self_attention (the Transformer has its own family module).

Inputs are routed to call arguments by the call keyword ``inputs`` (a tuple of argument
names, one per case input), which both sides read; ``mask_form`` says how a mask input is
given (see :func:`mx_mask`). Dropout in training mode is checked numerically: the mlxnote
side records its Bernoulli masks and the reference applies them where the documentation
puts dropout (``reference.dropout.record_masks``).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..arrays import np32
from ..case import Case, Fn, Input, LayerSpec, Trial, grid
from ..compare import Check, compare, exact
from ..reference import attention as ref
from ..reference.dropout import record_masks


def mx_mask(m: mx.array, form: str | None) -> mx.array:
    """The mask given to mlxnote: 'bool' as drawn, '-inf' additive 0/-inf from a boolean
    draw, 'additive' a float input used as it is."""
    if form in (None, "bool", "additive"):
        return m
    if form == "-inf":
        return mx.where(m, mx.array(0.0), mx.array(-np.inf))
    raise ValueError(form)


def _routed(ins, kw, default):
    kw = dict(kw)
    names = kw.pop("inputs", default)
    form = kw.pop("mask_form", None)
    args = dict(zip(names, ins))
    if "mask" in args:
        args["mask"] = mx_mask(args["mask"], form)
    return args, kw


def _with_masks(call):
    """Record the dropout masks of the call (for training-mode references)."""
    def hook(layer, ins, kw):
        with record_masks():
            return call(layer, ins, kw)
    return hook


def first_key_visible(m):
    """Keras requires a visible key in every row: value masks keep key 0."""
    return mx.concatenate([mx.ones_like(m[:, :1]), m[:, 1:]], axis=1)


def call_attention(layer, ins, kw):
    a, kw = _routed(ins, kw, ("query", "value"))
    if "value_mask" in a:
        a["value_mask"] = first_key_visible(a["value_mask"])
    mask = None
    if "query_mask" in a or "value_mask" in a:
        mask = [a.get("query_mask"), a.get("value_mask")]
    return layer(a["query"], a["value"], a.get("key"), mask=mask, **kw)


def hidden_logits(qk, mask):
    """Boolean mask -> where ``qk`` is hidden (False = hidden), per decision 24's shapes."""
    if mask.ndim == 2:
        mask = mask[: qk.shape[-2], : qk.shape[-1]]
    elif mask.ndim == 3:
        mask = mask[:, None]
    return mx.broadcast_to(mx.logical_not(mask), qk.shape)


def call_mha(layer, ins, kw):
    """``(output, qk)``. With a boolean mask, the documented rule for hidden logits is that
    the softmax ignores them: they must be at most -1e4 (exp underflows to 0 in every
    dtype). Their exact value is the implementation's choice, so both sides compare ``qk``
    with hidden entries set to 0 (see ``reference.multihead_attention``)."""
    a, kw = _routed(ins, kw, ("x",))
    xa = (a["xk"], a["xv"]) if "xk" in a else a.get("xa")
    mask = a.get("mask")
    out, qk = layer(a["x"], xa, mask, **kw)
    if mask is not None and mask.dtype == mx.bool_:
        hidden = hidden_logits(qk, mask)
        worst = mx.max(mx.where(hidden, qk.astype(mx.float32), -mx.inf)).item()
        if worst > -1e4:
            raise AssertionError(f"a hidden logit of qk is {worst}: the softmax would not "
                                 "ignore it")
        qk = mx.where(hidden, mx.zeros_like(qk), qk)
    return out, qk


def call_positional(layer, ins, kw):
    return layer(*ins, **kw)


# -- attention -----------------------------------------------------------------------------
def _att_inputs(tq=5, tv=6, d=4, dv=4, key=False, masks=()):
    ins = [Input((2, tq, d), name="query"), Input((2, tv, dv), name="value")]
    names = ["query", "value"]
    if key:
        ins.append(Input((2, tv, d), name="key"))
        names.append("key")
    for which in masks:
        ins.append(Input((2, tq if which == "query_mask" else tv), "mask", name="mask"))
        names.append(which)
    return ins, tuple(names)


ATT_KW = [dict(), dict(use_scale=True), dict(score_mode="concat"),
          dict(use_scale=True, score_mode="concat")]
CASES: list[Case] = []
_i, _n = _att_inputs()
CASES += grid("attention", ATT_KW, _i, call_kwargs=[{"inputs": _n}], smoke=2)
for extra in (dict(key=True, dv=3), dict(masks=("value_mask",)),
              dict(masks=("query_mask", "value_mask")), dict(key=True, masks=("query_mask",))):
    _i, _n = _att_inputs(**extra)
    CASES += grid("attention", ATT_KW, _i, call_kwargs=[{"inputs": _n}])
_i, _n = _att_inputs(tq=6, masks=("value_mask",))
CASES += grid("attention", ATT_KW[:2] + ATT_KW[3:], _i,
              call_kwargs=[{"inputs": _n, "use_causal_mask": True},
                           {"inputs": _n, "return_attention_scores": True}])
# No value features: an empty output, but the scores are Keras's (and the scale and
# query still get gradients through them).
_i, _n = _att_inputs(key=True, dv=0, masks=("value_mask",))
CASES += grid("attention", ATT_KW, _i,
              call_kwargs=[{"inputs": _n}, {"inputs": _n, "return_attention_scores": True}],
              dtypes=("float32",))
_i, _n = _att_inputs(tq=4)
CASES += grid("attention", [dict(use_scale=True)], _i,
              call_kwargs=[{"inputs": _n, "use_causal_mask": True,
                            "return_attention_scores": True}])


# -- multihead_attention -------------------------------------------------------------------
def _x(b=2, t=5, c=8):
    return Input((b, t, c), name="x")


MHA_SELF = [
    dict(n_head=2, input_size=8),
    dict(n_head=2),  # lazy build
    dict(n_head=4, input_size=8, use_bias=False, weight_initializer="He"),
    dict(n_head=1, input_size=8, bias_initializer="normal", weight_initializer="Lecun"),
    dict(n_head=8, input_size=8, bias_initializer="uniform"),
]
CASES += grid("multihead_attention", MHA_SELF, [_x()], call_kwargs=[{"inputs": ("x",)}],
              smoke=2)
# 16-bit layers given float32 queries and keys: cast to the layer's dtype (decisions.md 3)
CASES += grid("multihead_attention", [dict(n_head=2, input_size=8)],
              [Input((2, 5, 8), name="x", given="float32"),
               Input((2, 6, 8), name="xa", given="float32")],
              call_kwargs=[{"inputs": ("x", "xa")}], dtypes=("float16", "bfloat16"))
# cross-attention, kdim / vdim, lazy kdim/vdim
CASES += grid("multihead_attention",
              [dict(n_head=2, input_size=8, kdim=6, vdim=6), dict(n_head=2)],
              [_x(), Input((2, 7, 6), name="xa")], call_kwargs=[{"inputs": ("x", "xa")}])
CASES += grid("multihead_attention",
              [dict(n_head=2, input_size=8, kdim=6, vdim=5), dict(n_head=4, kdim=6)],
              [_x(), Input((2, 7, 6), name="xa"), Input((2, 7, 5), name="xa")],
              call_kwargs=[{"inputs": ("x", "xk", "xv")}])
# every mask form: (Tq, Tk) sliced from larger, (B, Tq, Tk), broadcastable 4-D, additive
_MASKS = [
    ((9, 9), "mask", "bool"), ((5, 5), "normal", "additive"), ((9, 9), "mask", "-inf"),
    ((2, 5, 5), "mask", "bool"), ((2, 5, 5), "uniform", "additive"),
    ((2, 1, 1, 5), "mask", "bool"), ((1, 2, 5, 5), "normal", "additive"), ((5,), "mask", "bool"),
]
for shape, kind, form in _MASKS:
    CASES += grid("multihead_attention", [dict(n_head=2, input_size=8)],
                  [_x(), Input(shape, kind, name="mask")],
                  call_kwargs=[{"inputs": ("x", "mask"), "mask_form": form}],
                  smoke=1 if form == "bool" and len(shape) == 2 else 0)
CASES += grid("multihead_attention", [dict(n_head=2, input_size=8, kdim=6, vdim=6)],
              [_x(), Input((2, 7, 6), name="xa"), Input((6, 8), "mask", name="mask")],
              call_kwargs=[{"inputs": ("x", "xa", "mask"), "mask_form": "bool"}])
# attention-weight dropout: training (recorded masks) and inference
CASES += grid("multihead_attention", [dict(n_head=2, input_size=8, dropout=0.3)],
              [_x(), Input((5, 5), "mask", name="mask")],
              call_kwargs=[{"inputs": ("x", "mask"), "mask_form": "bool"},
                           {"inputs": ("x", "mask"), "mask_form": "bool",
                            "train_flag": False}],
              modes=("train", "eval"))

# -- talking_heads_attention ---------------------------------------------------------------
def _th(q, k, v, mask=None):
    ins = [Input(q, name="query_tensor"), Input(k, name="key_tensor"),
           Input(v, name="value_tensor")]
    if mask is not None:
        ins.append(Input(mask, "mask", name="attention_mask"))
    return ins


CASES += grid("talking_heads_attention",
              [dict(qkv_rank=4, attention_axes=(1,)), dict(), dict(initializer="He",
                                                                  num_heads=3)],
              _th((2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 5)), smoke=2)
CASES += grid("talking_heads_attention", [dict(qkv_rank=4), dict(attention_axes=-2)],
              _th((2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4), mask=(2, 5, 6)))
CASES += grid("talking_heads_attention", [dict(initializer="Orthogonal")],
              _th((2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4), mask=(2, 1, 6)))
CASES += grid("talking_heads_attention",
              [dict(qkv_rank=5, attention_axes=(1, 2)), dict(attention_axes=(1, 2))],
              _th((2, 3, 2, 2, 4), (2, 2, 3, 2, 4), (2, 2, 3, 2, 3), mask=(2, 3, 2, 2, 3)))
CASES += grid("talking_heads_attention", [dict(qkv_rank=5, attention_axes=(2,))],
              _th((2, 3, 4, 2, 4), (2, 3, 5, 2, 4), (2, 3, 5, 2, 4), mask=(2, 3, 4, 5)))
CASES += grid("talking_heads_attention", [dict(dropout_rate=0.25)],
              _th((2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4), mask=(2, 5, 6)),
              call_kwargs=[{}, {"train_flag": False}], modes=("train", "eval"))

# -- FAVOR_attention -----------------------------------------------------------------------
def _fav(lk=(6,), lq=(5,), dk=8, dv=3, b=2):
    return [Input((b, dk, *lk), name="keys"), Input((b, dv, *lk), name="values"),
            Input((b, dk, *lq), name="queries")]


FAVOR = [
    dict(key_dim=8, m=4, redraw=False),
    dict(key_dim=8, m=8, redraw=False, orthonormal=True, kernel_eps=0.01),
    dict(key_dim=4, m=6, orthonormal=False, redraw=False, randomizer=Fn("uniform_randomizer")),
    dict(key_dim=8, m=4, redraw=False, f=["relu", Fn("square")], h=Fn("favor_h")),
    dict(key_dim=8, m=4, redraw=False, f=["exponential"], kernel_eps=0.0, seed=3),
]
CASES += grid("FAVOR_attention", [dict(FAVOR[0], key_dim=4)], _fav(dk=4), smoke=1)
CASES += grid("FAVOR_attention", FAVOR, lambda kw: _fav(dk=kw["key_dim"]))
CASES += grid("FAVOR_attention", [dict(key_dim=8, m=4, redraw=False)],
              _fav(lk=(3, 4), lq=(2, 5)))  # several location axes
CASES += grid("FAVOR_attention",
              [dict(key_dim=8, m=4, redraw=False, causal=True),
               dict(key_dim=8, m=4, redraw=False, causal=True, chunk_size=4),
               dict(key_dim=8, m=4, redraw=False, causal=True, chunk_size=3,
                    f=["relu", Fn("square")])],
              _fav(lk=(10,), lq=(10,)), smoke=1)
CASES += grid("FAVOR_attention", [dict(key_dim=8, m=4, redraw=False, causal=True,
                                       chunk_size=2)], _fav(lk=(2, 3), lq=(3, 2)))
# No keys: zeros, as softmax attention without keys (and no graph: MLX's sum over an empty
# axis must not run).
CASES += grid("FAVOR_attention", [dict(key_dim=8, m=4, redraw=False)], _fav(lk=(0,)),
              dtypes=("float32",))
# eps: a sign-changing feature map makes |normalizer| <= eps happen (float32: the
# threshold is a discontinuity).
CASES += grid("FAVOR_attention", [dict(key_dim=8, m=4, redraw=False, f=[Fn("sin")],
                                       kernel_eps=0.0, eps=1.0)], _fav(),
              dtypes=("float32",))
# redraw=True: checked per call against the features it drew (see check_favor).
FAVOR_REDRAW = [dict(key_dim=8, m=4), dict(key_dim=8, m=4, causal=True, chunk_size=4),
                dict(key_dim=8, m=8, orthonormal=False, seed=5)]
CASES += grid("FAVOR_attention", FAVOR_REDRAW, lambda kw: _fav(lk=(7,), lq=(7,)),
              dtypes=("float32", "bfloat16"))


def check_favor(trial: Trial) -> list[Check]:
    """redraw=False: the engine's comparison (features are a weight). redraw=True: each call
    draws new features, and each call's output is the reference with those features."""
    case = trial.case
    if case.kwargs.get("redraw", True) is False:
        return trial.numeric()
    import tensorflow as tf

    layer, xs_np, xs = trial.layer, trial.inputs, trial.xs
    tf_dt = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
    checks, feats = [], []
    for call in range(2):
        y = np32(layer(*xs))
        w = np32(layer.features)
        feats.append(w)
        outs = [np.asarray(tf.cast(ref.favor_fn(case, w, dt)(
            *[tf.constant(a, dt) for a in xs_np]), tf.float64))
            for dt in (tf_dt[case.dtype], tf.float64)]
        checks.append(compare(f"output (call {call + 1})", y, outs[0], outs[1], case.dtype))
    checks.append(exact("features redrawn per call", not np.array_equal(*feats)))
    if case.kwargs.get("orthonormal", True):
        gram = feats[0] @ feats[0].T
        tol = 1e-5 if case.dtype == "float32" else 2e-2
        checks.append(exact("orthonormal rows", np.allclose(gram, np.eye(len(gram)),
                                                            atol=tol)))
    if case.kwargs.get("seed") is not None:
        a, b = (trial.build() for _ in range(2))
        checks.append(exact("same seed, same features",
                            np.array_equal(np32(a.features), np32(b.features))))
    return checks


# -- Linformer_self_attention --------------------------------------------------------------
LIN = [
    dict(dim=8, seq_len=6, k=3, heads=2),
    dict(dim=8, seq_len=6, k=4, heads=2, dim_head=3),
    dict(dim=8, seq_len=6, k=3, heads=4, one_kv_head=True),
    dict(dim=8, seq_len=6, k=3, heads=2, share_kv=True),
    dict(dim=8, seq_len=6, k=2, heads=2, one_kv_head=True, share_kv=True),
]
CASES += grid("Linformer_self_attention", LIN, [Input((2, 6, 8), name="x")], smoke=1)
CASES += grid("Linformer_self_attention", LIN[:1] + LIN[3:4],
              [Input((2, 4, 8), name="x"), Input((2, 6, 8), name="context")])
CASES += grid("Linformer_self_attention", [dict(dim=8, seq_len=6, k=3, heads=2, dropout=0.25)],
              [Input((2, 6, 8), name="x")], call_kwargs=[{}, {"train_flag": False}],
              modes=("train", "eval"))

SPECS = [
    LayerSpec("attention", ["use_scale", "score_mode", "dtype"],
              ["query", "value", "key", "mask", "use_causal_mask", "return_attention_scores"],
              reference=ref.attention, call=call_attention),
    LayerSpec("multihead_attention", ["n_head", "input_size", "kdim", "vdim", "dropout",
                                      "weight_initializer", "bias_initializer", "use_bias",
                                      "dtype"], ["x", "xa", "mask", "train_flag"],
              reference=ref.multihead_attention, call=_with_masks(call_mha)),
    LayerSpec("talking_heads_attention", ["qkv_rank", "attention_axes", "dropout_rate",
                                          "initializer", "dtype", "num_heads"],
              ["query_tensor", "key_tensor", "value_tensor", "attention_mask", "train_flag"],
              reference=ref.talking_heads_attention, call=_with_masks(call_positional)),
    LayerSpec("FAVOR_attention", ["key_dim", "orthonormal", "causal", "m", "redraw", "h", "f",
                                  "randomizer", "eps", "kernel_eps", "dtype", "seed",
                                  "chunk_size"], ["keys", "values", "queries"],
              reference=ref.FAVOR_attention, check=check_favor),
    LayerSpec("Linformer_self_attention", ["dim", "seq_len", "k", "heads", "dim_head",
                                           "one_kv_head", "share_kv", "dropout", "dtype"],
              ["x", "context", "train_flag"],
              reference=ref.Linformer_self_attention, call=_with_masks(call_positional)),
]
