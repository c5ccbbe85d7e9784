"""References for the attention family.

* ``attention``: Keras ``Attention`` itself.
* ``multihead_attention``: TF written from decisions.md item 24 (and cross-checked once
  against ``keras.layers.MultiHeadAttention`` in tests/test_attention.py).
* ``talking_heads_attention``: TF Model Garden's ``TalkingHeadsAttention._compute_attention``
  (Keras' einsum equations, the talking-heads equation, ``MaskedSoftmax``).
* ``FAVOR_attention``: TF from note-semantics.md section 13 (causal by an explicit
  ``cumsum`` of the ``(B, L, r, dv)`` outer products: the naive formula, on small shapes).
* ``Linformer_self_attention``: TF from decisions.md item 27 / note-semantics.md section 20.

Dropout in training mode: the references apply the masks mlxnote drew
(:mod:`conformance.reference.dropout`) where the documentation puts dropout.
"""

from __future__ import annotations

import math
import string

import keras
import numpy as np
import tensorflow as tf

from ..case import Reference
from .activations import tf_activation
from .dropout import Dropper

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
    """The mask as the case gives it to both sides (see ``families.attention.mx_mask``)."""
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
        drop = Dropper(training, dtype)
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
                # set to 0 on both sides: their value is not documented (families.attention).
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
        pd = Dropper(training, dtype)(p, rate)
        return tf.einsum(combine_eq, pd, v), p

    return Reference(fn, [pre, post])


# -- FAVOR_attention -----------------------------------------------------------------------


def favor_fn(case, features: np.ndarray, dtype):
    """The FAVOR formulas of note-semantics.md section 13 with the given features."""
    kw = case.kwargs
    m = kw.get("m", 128)
    fs = kw.get("f") or ["relu"]
    fs = [tf_activation(g) for g in fs]
    h = kw.get("h")
    h = h.tf if h is not None else (lambda x: math.sqrt(m))
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
        if kf.shape[1] == 0:  # no keys: zeros, as softmax attention over no keys
            return tf.zeros([b, dv, *lq], dtype)
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
        attn = Dropper(training, dtype)(attn, rate)
        out = tf.reshape(tf.transpose(tf.matmul(attn, vals), [0, 2, 1, 3]), [b, n, heads * dh])
        return tf.matmul(out, wo) + bo

    return Reference(fn, ws)
