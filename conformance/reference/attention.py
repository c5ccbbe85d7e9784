"""References for the attention family.

* ``attention``: Keras ``Attention`` itself.
* ``multihead_attention``: TF written from decisions.md item 24 (and cross-checked once
  against ``keras.layers.MultiHeadAttention`` in tests/test_attention.py).
* ``talking_heads_attention``: TF Model Garden's ``TalkingHeadsAttention._compute_attention``
  (Keras' einsum equations, the talking-heads equation, ``MaskedSoftmax``).
* ``FAVOR_attention``: TF from note-semantics.md section 13 (causal by an explicit
  ``cumsum`` of the ``(B, L, r, dv)`` outer products: the naive formula, on small shapes).
* ``Linformer_self_attention``: TF from decisions.md item 27 / note-semantics.md section 20.
* ``Transformer``: TF from PyTorch's ``nn.Transformer`` equations (batch first).

Dropout in training mode: the mlxnote side records the Bernoulli masks its dropout layers
draw (``record_masks``); the references apply the same masks at the places the
documentation puts dropout, in the documented order, so a misplaced dropout is caught.
"""

from __future__ import annotations

import contextlib
import math
import string

import keras
import numpy as np
import tensorflow as tf

from ..engine import Reference
from .activations import TF_ACTIVATIONS

# -- recorded dropout masks ---------------------------------------------------------------
MASKS: list[np.ndarray] = []


@contextlib.contextmanager
def record_masks():
    """Record every ``mx.random.bernoulli`` draw (the dropout masks) made inside."""
    import mlx.core as mx

    orig = mx.random.bernoulli
    MASKS.clear()
    drawn = []

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        drawn.append(out)
        return out

    mx.random.bernoulli = spy
    try:
        yield
    finally:
        mx.random.bernoulli = orig
        MASKS.extend(drawn)


class _Dropper:
    """Applies the recorded masks, in order, as ``x * mask / keep``."""

    def __init__(self, training: bool, dtype: tf.DType):
        self.training = training
        self.dtype = dtype
        self.i = 0

    def __call__(self, x, rate):
        if not self.training or rate == 0.0:
            return x
        import mlx.core as mx

        if self.i >= len(MASKS):
            raise AssertionError(f"mlxnote drew {len(MASKS)} dropout masks; the reference "
                                 f"needs more (dropout #{self.i + 1})")
        m = np.array(MASKS[self.i].astype(mx.float32))
        self.i += 1
        if m.shape != tuple(x.shape):
            raise AssertionError(f"dropout #{self.i}: mlxnote's mask has shape {m.shape}, "
                                 f"the documented place has {tuple(x.shape)}")
        return x * tf.constant(m, self.dtype) * tf.cast(1.0 / (1.0 - rate), self.dtype)


CASE_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}


def _np(dtype: tf.DType):
    return np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype


def _var(w, dtype):
    return tf.Variable(tf.constant(np.asarray(w), dtype=dtype))


# -- attention -----------------------------------------------------------------------------
def attention(case, weights, dtype):
    kw = case.kwargs
    layer = keras.layers.Attention(use_scale=kw.get("use_scale", False),
                                   score_mode=kw.get("score_mode", "dot"), dtype=dtype.name)
    layer.build([(None, None, 1), (None, None, 1)])
    if weights:
        layer.set_weights([np.asarray(w, _np(dtype)) for w in weights])
    variables = [v.value for v in layer.trainable_variables]

    def fn(*xs, training, inputs=("query", "value"), mask_form=None,
           return_attention_scores=False, use_causal_mask=False):
        args = dict(zip(inputs, xs))
        ins = [args["query"], args["value"]] + ([args["key"]] if "key" in args else [])
        mask = None
        if "value_mask" in args:  # as the case gives it: key 0 always visible
            vm = args["value_mask"]
            args["value_mask"] = tf.concat([tf.ones_like(vm[:, :1]), vm[:, 1:]], axis=1)
        if "query_mask" in args or "value_mask" in args:
            mask = [args.get("query_mask"), args.get("value_mask")]
        return layer(ins, mask=mask, return_attention_scores=return_attention_scores,
                     use_causal_mask=use_causal_mask)

    return Reference(fn, variables)


# -- multihead_attention -------------------------------------------------------------------
def mask_value(m, form: str | None, dtype):
    """The mask as the case gives it to both sides (see ``cases.attention.mask_form``)."""
    if form in (None, "bool"):
        return m
    if form == "-inf":  # boolean input -> additive 0 / -inf
        return tf.where(m, tf.zeros([], dtype), tf.constant(-np.inf, dtype))
    if form == "additive":  # float input used as it is
        return tf.cast(m, dtype)
    raise ValueError(form)


def multihead_attention(case, weights, dtype):
    kw = case.kwargs
    h = kw["n_head"]
    use_bias = kw.get("use_bias", True)
    ws = [_var(w, dtype) for w in weights]
    if use_bias:
        wq, bq, wk, bk, wv, bv, wo, bo = ws
    else:
        (wq, wk, wv, wo), bq = ws, None
        bk = bv = bo = None
    rate = kw.get("dropout", 0.0)

    def proj(x, w, b):
        y = tf.matmul(x, w)
        return y + b if b is not None else y

    def fn(*xs, training, inputs=("x",), mask_form=None):
        args = dict(zip(inputs, xs))
        x = args["x"]
        xk = args.get("xk", args.get("xa", x))
        xv = args.get("xv", args.get("xa", x))
        drop = _Dropper(training, dtype)
        b, tq = tf.shape(x)[0], x.shape[1]
        tk = xk.shape[1]
        d = wq.shape[1]
        dh = d // h

        def heads(t, n):
            return tf.transpose(tf.reshape(t, [b, n, h, dh]), [0, 2, 1, 3])

        q = heads(proj(x, wq, bq), tq)
        k = heads(proj(xk, wk, bk), tk)
        v = heads(proj(xv, wv, bv), tk)
        qk = tf.matmul(q, k, transpose_b=True) * tf.cast(1.0 / math.sqrt(dh), dtype)
        if "mask" in args:
            m = mask_value(args["mask"], mask_form, dtype)
            if len(m.shape) == 2:
                m = m[:tq, :tk]
            elif len(m.shape) == 3:
                m = m[:, None]
            if m.dtype == tf.bool:
                # Hidden logits must get no weight; a row with every key hidden is not
                # defined by the ruling, so use the case dtype's lowest value (uniform
                # weights there) rather than -inf (NaN). The returned qk has hidden entries
                # set to 0 on both sides: their value is not documented (cases.attention).
                hidden = tf.broadcast_to(tf.logical_not(m), tf.shape(qk))
                w = tf.nn.softmax(tf.where(hidden, tf.constant(CASE_DTYPES[case.dtype].min,
                                                               dtype), qk), axis=-1)
                qk = tf.where(hidden, tf.zeros_like(qk), qk)
            else:
                qk = qk + tf.cast(m, dtype)
                w = tf.nn.softmax(qk, axis=-1)
        else:
            w = tf.nn.softmax(qk, axis=-1)
        w = drop(w, rate)
        o = tf.reshape(tf.transpose(tf.matmul(w, v), [0, 2, 1, 3]), [b, tq, d])
        return proj(o, wo, bo), qk

    return Reference(fn, ws)


# -- talking_heads_attention ---------------------------------------------------------------
def talking_heads_attention(case, weights, dtype):
    from keras.src.layers.attention.multi_head_attention import _build_attention_equation

    kw = case.kwargs
    pre, post = (_var(w, dtype) for w in weights)
    rate = kw.get("dropout_rate", 0.0)

    def fn(q, k, v, *rest, training):
        rank = len(q.shape)
        axes = kw.get("attention_axes")
        if axes is None:
            axes = tuple(range(1, rank - 2))
        elif isinstance(axes, int):
            axes = (axes,)
        axes = tuple(a if a >= 0 else (rank - 1) + a for a in axes)
        dot_eq, combine_eq, scores_rank = _build_attention_equation(rank, attn_axes=axes)
        # Model Garden's talking-heads equation.
        chars = string.ascii_lowercase
        nb = rank - len(axes) - 2
        sn = chars[:scores_rank]
        pn = sn[nb] + chars[scores_rank]
        psn = sn[:nb] + chars[scores_rank] + sn[nb + 1:]
        th_eq = f"{sn},{pn}->{psn}"
        s = tf.einsum(dot_eq, k, q) * tf.cast(1.0 / math.sqrt(float(q.shape[-1])), dtype)
        s = tf.einsum(th_eq, s, pre)
        if rest:  # MaskedSoftmax: (1 - mask) * large negative, mask expanded at -2A-1
            m = rest[0]
            for _ in range(len(s.shape) - len(m.shape)):
                m = tf.expand_dims(m, axis=-len(axes) * 2 - 1)
            big = tf.float16.min if dtype == tf.float16 else -1e9
            s = s + (1.0 - tf.cast(m, dtype)) * tf.cast(big, dtype)
        norm = tuple(range(scores_rank - len(axes), scores_rank))
        if len(norm) == 1:
            p = tf.nn.softmax(s, axis=norm[0])
        else:
            p = tf.exp(s - tf.reduce_logsumexp(s, axis=norm, keepdims=True))
        p = tf.einsum(th_eq, p, post)
        pd = _Dropper(training, dtype)(p, rate)
        return tf.einsum(combine_eq, pd, v), p

    return Reference(fn, [pre, post])


# -- FAVOR_attention -----------------------------------------------------------------------
TF_FNS = {
    "square": tf.square,
    "sin": tf.sin,
    "favor_h": lambda x: tf.exp(-0.5 * tf.reduce_sum(x * x, axis=-1, keepdims=True) / 8.0)
    * 8.0,
}


def favor_fn(case, features: np.ndarray, dtype):
    """The FAVOR formulas of note-semantics.md section 13 with the given features."""
    kw = case.kwargs
    m = kw.get("m", 128)
    fs = kw.get("f") or ["relu"]
    fs = [TF_FNS[g.name] if hasattr(g, "name") else TF_ACTIVATIONS[g] for g in fs]
    h = kw.get("h")
    h = TF_FNS[h.name] if h is not None else (lambda x: math.sqrt(m))
    eps, keps = kw.get("eps", 0.0), kw.get("kernel_eps", 0.001)
    causal = kw.get("causal", False)
    w = tf.constant(np.asarray(features), dtype)

    def phi(x):
        xw = tf.matmul(x, w, transpose_b=True)
        f = tf.concat([g(xw) for g in fs], axis=-1)
        hx = h(x)
        return f * tf.cast(hx, dtype) * tf.cast(1.0 / math.sqrt(m), dtype) + tf.cast(keps,
                                                                                     dtype)

    def fn(keys, values, queries, training=False):
        b, dk = tf.shape(keys)[0], keys.shape[1]
        dv = values.shape[1]
        lq = queries.shape[2:]
        kf = tf.transpose(tf.reshape(keys, [b, dk, -1]), [0, 2, 1])
        vf = tf.transpose(tf.reshape(values, [b, dv, -1]), [0, 2, 1])
        qf = tf.transpose(tf.reshape(queries, [b, dk, -1]), [0, 2, 1])
        pq, pk = phi(qf), phi(kf)
        if causal:
            kv = tf.cumsum(pk[:, :, :, None] * vf[:, :, None, :], axis=1)  # (B, L, r, dv)
            out = tf.einsum("blr,blrd->bld", pq, kv)
            norm = tf.reduce_sum(pq * tf.cumsum(pk, axis=1), axis=-1, keepdims=True)
        else:
            out = tf.matmul(pq, tf.matmul(pk, vf, transpose_a=True))
            norm = tf.matmul(pq, tf.reduce_sum(pk, axis=1, keepdims=True), transpose_b=True)
        norm = norm + 2.0 * eps * tf.cast(tf.abs(norm) <= eps, dtype)
        out = out / norm
        return tf.reshape(tf.transpose(out, [0, 2, 1]), [b, dv, *lq])

    return fn


def FAVOR_attention(case, weights, dtype):
    return Reference(favor_fn(case, weights[0], dtype))


# -- Linformer_self_attention --------------------------------------------------------------
def Linformer_self_attention(case, weights, dtype):
    kw = case.kwargs
    heads = kw.get("heads", 8)
    dim = kw["dim"]
    dh = kw.get("dim_head") or dim // heads
    kk = kw.get("k", 256)
    share, one = kw.get("share_kv", False), kw.get("one_kv_head", False)
    rate = kw.get("dropout", 0.0)
    ws = [_var(w, dtype) for w in weights]
    if share:
        wq, wk, pk, wo, bo = ws
        wv, pv = wk, pk
    else:
        wq, wk, pk, wv, pv, wo, bo = ws

    def fn(x, *ctx, training):
        c = ctx[0] if ctx else x
        b, n = tf.shape(x)[0], x.shape[1]
        kvh = 1 if one else heads
        q = tf.transpose(tf.reshape(tf.matmul(x, wq), [b, n, heads, dh]), [0, 2, 1, 3])
        keys = tf.einsum("bnd,nk->bkd", tf.matmul(c, wk), pk)
        vals = tf.einsum("bnd,nk->bkd", tf.matmul(c, wv), pv)
        keys = tf.transpose(tf.reshape(keys, [b, kk, kvh, dh]), [0, 2, 1, 3])
        vals = tf.transpose(tf.reshape(vals, [b, kk, kvh, dh]), [0, 2, 1, 3])
        if one:  # one key/value head broadcast to every query head
            keys = tf.repeat(keys, heads, axis=1)
            vals = tf.repeat(vals, heads, axis=1)
        attn = tf.nn.softmax(tf.matmul(q, keys, transpose_b=True)
                             * tf.cast(dh ** -0.5, dtype), axis=-1)
        attn = _Dropper(training, dtype)(attn, rate)
        out = tf.reshape(tf.transpose(tf.matmul(attn, vals), [0, 2, 1, 3]), [b, n, heads * dh])
        return tf.matmul(out, wo) + bo

    return Reference(fn, ws)


# -- Transformer ---------------------------------------------------------------------------
TF_FNS["identity_encoder"] = lambda src, **kw: src
TF_FNS["memory_mean_decoder"] = lambda tgt, memory, **kw: tgt + tf.reduce_mean(
    memory, axis=1, keepdims=True)


def pt_bool(m):
    """A drawn boolean mask as the cases give it in PyTorch's convention (True = hidden):
    the complement of the draw, with key 0 always visible."""
    m = tf.logical_not(m)
    return tf.concat([tf.zeros_like(m[..., :1]), m[..., 1:]], axis=-1)


def transformer(case, weights, dtype):
    """PyTorch ``nn.Transformer`` forward (batch first), from its documented equations."""
    kw = case.kwargs
    d, nh = kw.get("d_model", 512), kw.get("nhead", 8)
    ne, nd = kw.get("num_encoder_layers", 6), kw.get("num_decoder_layers", 6)
    bias, norm_first = kw.get("bias", True), kw.get("norm_first", False)
    eps, rate = kw.get("layer_norm_eps", 1e-5), kw.get("dropout", 0.1)
    act = kw.get("activation", "relu")
    act = TF_FNS[act.name] if hasattr(act, "name") else TF_ACTIVATIONS[act]
    custom_enc, custom_dec = kw.get("custom_encoder"), kw.get("custom_decoder")
    variables = [_var(w, dtype) for w in weights]
    it = iter(variables)

    def lin():
        return (next(it), next(it) if bias else None)

    def mha_w():
        return [lin() for _ in range(4)]  # q, k, v, out

    def ln():
        beta = next(it) if bias else None
        return (beta, next(it))

    enc = []
    if custom_enc is None:
        enc = [dict(sa=mha_w(), l1=lin(), l2=lin(), n1=ln(), n2=ln()) for _ in range(ne)]
        enc_norm = ln()
    dec = []
    if custom_dec is None:
        dec = [dict(sa=mha_w(), ca=mha_w(), l1=lin(), l2=lin(), n1=ln(), n2=ln(), n3=ln())
               for _ in range(nd)]
        dec_norm = ln()

    def linear(x, wb):
        y = tf.matmul(x, wb[0])
        return y + wb[1] if wb[1] is not None else y

    def layer_norm(x, p):
        x32 = tf.cast(x, tf.float32) if dtype in (tf.float16, tf.bfloat16) else x
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = tf.cast((x32 - mean) * tf.math.rsqrt(var + eps), dtype) * p[1]
        return y + p[0] if p[0] is not None else y

    def attn(xq, xkv, w, mask, drop):
        b, lq, lk = tf.shape(xq)[0], xq.shape[1], xkv.shape[1]
        dh = d // nh

        def heads(t, n):
            return tf.transpose(tf.reshape(t, [b, n, nh, dh]), [0, 2, 1, 3])

        q, k, v = heads(linear(xq, w[0]), lq), heads(linear(xkv, w[1]), lk), \
            heads(linear(xkv, w[2]), lk)
        s = tf.matmul(q, k, transpose_b=True) / tf.cast(np.sqrt(dh), dtype)
        if mask is not None:
            s = s + mask
        p = drop(tf.nn.softmax(s, axis=-1), rate)
        o = tf.reshape(tf.transpose(tf.matmul(p, v), [0, 2, 1, 3]), [b, lq, d])
        return linear(o, w[3])

    def float_mask(m, b, lq, lk, causal, padding=None):
        """PyTorch's merged float mask (-inf hides), broadcastable to (B, H, Lq, Lk)."""
        total = tf.zeros([1, 1, lq, lk], dtype)
        if isinstance(m, str):  # 'subsequent': generate_square_subsequent_mask
            m = tf.linalg.band_part(tf.ones([lq, lk]), -1, 0) < 0.5
        if m is not None:
            m = tf.where(m, tf.constant(-np.inf, dtype), tf.zeros([], dtype)) \
                if m.dtype == tf.bool else tf.cast(m, dtype)
            m = tf.reshape(m, [b, nh, lq, lk]) if len(m.shape) == 3 else m
            total = total + m
        if padding is not None:
            p = tf.where(padding, tf.constant(-np.inf, dtype), tf.zeros([], dtype)) \
                if padding.dtype == tf.bool else tf.cast(padding, dtype)
            total = total + p[:, None, None, :]
        if causal:
            tri = tf.linalg.band_part(tf.ones([lq, lk]), -1, 0) > 0.5
            total = total + tf.where(tri, tf.zeros([], dtype), tf.constant(-np.inf, dtype))
        return total

    def ff(x, p, drop):
        return linear(drop(act(linear(x, p["l1"])), rate), p["l2"])

    def fn(*xs, training, inputs=("src", "tgt"), **flags):
        a = dict(zip(inputs, xs))
        a = {k: pt_bool(v) if v.dtype == tf.bool else v for k, v in a.items()}
        for k in ("src_mask", "tgt_mask", "memory_mask"):
            if flags.get(k) == "subsequent":
                a[k] = "subsequent"
        src, tgt = a["src"], a["tgt"]
        b, s_len, t_len = tf.shape(src)[0], src.shape[1], tgt.shape[1]
        drop = _Dropper(training, dtype)
        sm = float_mask(a.get("src_mask"), b, s_len, s_len, flags.get("src_is_causal"),
                        a.get("src_key_padding_mask"))
        tm = float_mask(a.get("tgt_mask"), b, t_len, t_len, flags.get("tgt_is_causal"),
                        a.get("tgt_key_padding_mask"))
        mm = float_mask(a.get("memory_mask"), b, t_len, s_len, flags.get("memory_is_causal"),
                        a.get("memory_key_padding_mask"))
        if custom_enc is not None:
            x = TF_FNS[custom_enc.name](src)
        else:
            x = src
            for p in enc:
                if norm_first:
                    x = x + drop(attn(layer_norm(x, p["n1"]), layer_norm(x, p["n1"]), p["sa"],
                                      sm, drop), rate)
                    x = x + drop(ff(layer_norm(x, p["n2"]), p, drop), rate)
                else:
                    x = layer_norm(x + drop(attn(x, x, p["sa"], sm, drop), rate), p["n1"])
                    x = layer_norm(x + drop(ff(x, p, drop), rate), p["n2"])
            x = layer_norm(x, enc_norm)
        memory = x
        if custom_dec is not None:
            return TF_FNS[custom_dec.name](tgt, memory)
        y = tgt
        for p in dec:
            if norm_first:
                z = layer_norm(y, p["n1"])
                y = y + drop(attn(z, z, p["sa"], tm, drop), rate)
                y = y + drop(attn(layer_norm(y, p["n2"]), memory, p["ca"], mm, drop), rate)
                y = y + drop(ff(layer_norm(y, p["n3"]), p, drop), rate)
            else:
                y = layer_norm(y + drop(attn(y, y, p["sa"], tm, drop), rate), p["n1"])
                y = layer_norm(y + drop(attn(y, memory, p["ca"], mm, drop), rate), p["n2"])
                y = layer_norm(y + drop(ff(y, p, drop), rate), p["n3"])
        return layer_norm(y, dec_norm)

    return Reference(fn, variables)
