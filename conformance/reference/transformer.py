"""The Transformer's reference: TF from PyTorch's ``nn.Transformer`` equations (batch
first), with the dropout masks mlxnote drew applied where PyTorch puts dropout
(:mod:`conformance.reference.dropout`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..case import Reference
from .activations import tf_activation
from .dropout import Dropper


def _var(w, dtype):
    return tf.Variable(tf.constant(np.asarray(w), dtype=dtype))


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
    act = tf_activation(kw.get("activation", "relu"))
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
        drop = Dropper(training, dtype)
        sm = float_mask(a.get("src_mask"), b, s_len, s_len, flags.get("src_is_causal"),
                        a.get("src_key_padding_mask"))
        tm = float_mask(a.get("tgt_mask"), b, t_len, t_len, flags.get("tgt_is_causal"),
                        a.get("tgt_key_padding_mask"))
        mm = float_mask(a.get("memory_mask"), b, t_len, s_len, flags.get("memory_is_causal"),
                        a.get("memory_key_padding_mask"))
        if custom_enc is not None:
            x = custom_enc.tf(src)
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
            return custom_dec.tf(tgt, memory)
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
