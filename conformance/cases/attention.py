"""Attention family: attention, multihead_attention, talking_heads_attention,
FAVOR_attention, Linformer_self_attention and Transformer.

Inputs are routed to call arguments by the call keyword ``inputs`` (a tuple of argument
names, one per case input), which both sides read; ``mask_form`` says how a mask input is
given (see :func:`mx_mask`). Dropout in training mode is checked numerically: the mlxnote
side records its Bernoulli masks and the reference applies them where the documentation
puts dropout (``reference.attention.record_masks``).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..case import Case, Fn, Input, LayerSpec, grid
from ..compare import compare, exact
from ..engine import MX_FNS, build_layer, make_input, np32, to_mx
from ..reference import attention as ref

# Callables the FAVOR cases name (mlxnote side; the reference has its own table).
MX_FNS.setdefault(
    "favor_h", lambda x: mx.exp(-0.5 * mx.sum(x * x, axis=-1, keepdims=True) / 8.0) * 8.0)
MX_FNS.setdefault("uniform_randomizer",
                  lambda shape, dtype=mx.float32: mx.random.uniform(-1.0, 1.0, shape, dtype))


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
        with ref.record_masks():
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


def check_favor(case: Case, build=None) -> list:
    """redraw=False: the numeric engine (features are a weight). redraw=True: each call
    draws new features, and each call's output is the reference with those features."""
    from ..engine import numeric

    if case.kwargs.get("redraw", True) is False:
        return numeric(case, SPEC_BY_NAME["FAVOR_attention"], build)
    import tensorflow as tf

    rng = np.random.default_rng(case.seed)
    mx.random.seed(case.seed)
    layer = (build or build_layer)(case, SPEC_BY_NAME["FAVOR_attention"])
    xs_np = [make_input(i, rng, case.dtype) for i in case.inputs]
    xs = [to_mx(a, i, case.dtype) for a, i in zip(xs_np, case.inputs)]
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
        a, b = ((build or build_layer)(case, SPEC_BY_NAME["FAVOR_attention"])
                for _ in range(2))
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

# -- Transformer ---------------------------------------------------------------------------
MX_FNS.setdefault("identity_encoder", lambda src, **kw: src)
MX_FNS.setdefault("memory_mean_decoder",
                  lambda tgt, memory, **kw: tgt + mx.mean(memory, axis=1, keepdims=True))


def mx_pt_bool(m: mx.array) -> mx.array:
    """As ``reference.attention.pt_bool``: PyTorch convention (True = hidden), key 0
    always visible."""
    m = mx.logical_not(m)
    return mx.concatenate([mx.zeros_like(m[..., :1]), m[..., 1:]], axis=-1)


def call_transformer(layer, ins, kw):
    kw = dict(kw)
    names = kw.pop("inputs", ("src", "tgt"))
    a = {k: mx_pt_bool(v) if v.dtype == mx.bool_ else v for k, v in zip(names, ins)}
    for k in ("src_mask", "tgt_mask", "memory_mask"):
        if kw.get(k) == "subsequent":
            n = (a["tgt"] if k != "src_mask" else a["src"]).shape[1]
            kw[k] = layer.generate_square_subsequent_mask(n)
    with ref.record_masks():
        return layer(**a, **kw)


# relu (the default) has a kink at 0: a pre-activation within rounding of 0 takes another
# branch in 16-bit arithmetic than in the float64 oracle, and its gradient is then not
# comparable (seen here: 8% errors in float16 from one flipped unit, 0.08% with a smooth
# activation). So relu runs in float32 and the 16-bit cases use silu, whose MLX gradient is
# as accurate as TensorFlow's (MLX's gelu, through its erf, has twice TF's error).
# Widths of 32: in 8-wide layers a row's LayerNorm variance is often tiny, and its 1/sigma
# amplifies single roundings so that which of two correct implementations lands closer to
# the float64 oracle becomes a coin toss (measured over 10 seeds: a gradient more than 2x
# TensorFlow's error in 8 of 10 float32 cases at width 8, median ratio 0.96; 4 of 10 at
# width 32, and 0 of 10 in float16).
T = dict(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64,
         dropout=0.0, activation="silu")
TRANSFORMER = [
    T,
    dict(T, norm_first=True),
    dict(T, bias=False, activation="tanh", layer_norm_eps=1e-3),
    dict(T, num_encoder_layers=2, num_decoder_layers=2, nhead=8, device="cpu"),
    dict(T, norm_first=True, bias=False, num_encoder_layers=0),
    dict(T, custom_encoder=Fn("identity_encoder")),
    dict(T, custom_decoder=Fn("memory_mean_decoder"), activation=Fn("sin")),
]
RELU = {k: v for k, v in T.items() if k != "activation"}  # the default activation
_S, _T = (2, 8, 32), (2, 6, 32)
_src_tgt = [Input(_S, name="src"), Input(_T, name="tgt")]
CASES += grid("Transformer", TRANSFORMER, _src_tgt, call_kwargs=[{"inputs": ("src", "tgt")}],
              smoke=1)
CASES += grid("Transformer", [RELU, dict(RELU, norm_first=True, activation="relu"),
                              dict(RELU, num_encoder_layers=2, num_decoder_layers=2),
                              dict(T, activation="gelu")],
              _src_tgt, call_kwargs=[{"inputs": ("src", "tgt")}], dtypes=("float32",))
_MASK_SETS = [  # (inputs after src, tgt) + call keywords
    ([Input((8, 8), "mask", name="src_mask"), Input((6, 6), "normal", name="tgt_mask"),
      Input((6, 8), "mask", name="memory_mask")], {}),
    ([Input((8, 8, 8), "mask", name="src_mask"), Input((2, 6), "mask",
                                                      name="tgt_key_padding_mask")],
     {"tgt_mask": "subsequent"}),
    ([Input((2, 8), "mask", name="src_key_padding_mask"),
      Input((2, 8), "normal", name="memory_key_padding_mask")], {"tgt_is_causal": True}),
    ([Input((8, 6, 6), "normal", name="tgt_mask"),
      Input((2, 8), "normal", name="src_key_padding_mask"),
      Input((2, 8), "mask", name="memory_key_padding_mask")],
     {"src_is_causal": True, "memory_is_causal": True}),
]
for extra, ck in _MASK_SETS:
    names = ("src", "tgt") + tuple(i.name for i in extra)
    CASES += grid("Transformer", [T, dict(T, norm_first=True)], _src_tgt + extra,
                  call_kwargs=[{"inputs": names, **ck}])
    CASES += grid("Transformer", [RELU], _src_tgt + extra,
                  call_kwargs=[{"inputs": names, **ck}], dtypes=("float32",))
# dropout everywhere PyTorch puts it (attention weights, after each block, inside the
# feed-forward block): training mode with recorded masks, and inference.
_drop = [Input((8, 8), "mask", name="src_mask"), Input((2, 6), "mask",
                                                     name="tgt_key_padding_mask")]
_dnames = ("src", "tgt", "src_mask", "tgt_key_padding_mask")
CASES += grid("Transformer", [dict(T, dropout=0.25), dict(T, dropout=0.25, norm_first=True)],
              _src_tgt + _drop,
              call_kwargs=[{"inputs": _dnames}, {"inputs": _dnames, "train_flag": False}],
              modes=("train", "eval"))
CASES += grid("Transformer", [dict(RELU, dropout=0.25)], _src_tgt + _drop,
              call_kwargs=[{"inputs": _dnames}], dtypes=("float32",))

SPECS = [
    LayerSpec("attention", ["use_scale", "score_mode", "dtype", "query", "value", "key",
                            "mask", "use_causal_mask", "return_attention_scores"],
              reference=ref.attention, call=call_attention),
    LayerSpec("multihead_attention", ["n_head", "input_size", "kdim", "vdim", "dropout",
                                      "weight_initializer", "bias_initializer", "use_bias",
                                      "dtype", "x", "xa", "mask", "train_flag"],
              reference=ref.multihead_attention, call=_with_masks(call_mha)),
    LayerSpec("talking_heads_attention", ["qkv_rank", "attention_axes", "dropout_rate",
                                          "initializer", "dtype", "num_heads", "query_tensor",
                                          "key_tensor", "value_tensor", "attention_mask",
                                          "train_flag"],
              reference=ref.talking_heads_attention, call=_with_masks(call_positional)),
    LayerSpec("FAVOR_attention", ["key_dim", "orthonormal", "causal", "m", "redraw", "h", "f",
                                  "randomizer", "eps", "kernel_eps", "dtype", "seed",
                                  "chunk_size", "keys", "values", "queries"],
              reference=ref.FAVOR_attention, check=check_favor),
    LayerSpec("Transformer", ["d_model", "nhead", "num_encoder_layers", "num_decoder_layers",
                              "dim_feedforward", "dropout", "activation", "custom_encoder",
                              "custom_decoder", "layer_norm_eps", "norm_first", "bias",
                              "device", "dtype", "src", "tgt", "src_mask", "tgt_mask",
                              "memory_mask", "train_flag", "src_key_padding_mask",
                              "tgt_key_padding_mask", "memory_key_padding_mask",
                              "src_is_causal", "tgt_is_causal", "memory_is_causal"],
              reference=ref.transformer, call=call_transformer),
    LayerSpec("Linformer_self_attention", ["dim", "seq_len", "k", "heads", "dim_head",
                                           "one_kv_head", "share_kv", "dropout", "dtype", "x",
                                           "context", "train_flag"],
              reference=ref.Linformer_self_attention, call=_with_masks(call_positional)),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}
