"""The Transformer's references: TF from PyTorch's ``nn.Transformer`` equations (batch
first), with the dropout masks mlxnote drew applied where PyTorch puts dropout
(:mod:`conformance.reference.dropout`). The whole ``Transformer`` (:func:`transformer`)
and its public blocks on their own (:func:`encoder_layer`, :func:`decoder_layer`,
:func:`encoder`, :func:`decoder`) share the block equations below (:class:`Blocks`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..case import Reference
from .activations import tf_activation
from .dropout import Dropper

# PyTorch's defaults (TransformerEncoderLayer / DecoderLayer / Transformer).
DEFAULTS = dict(d_model=512, nhead=8, dim_feedforward=2048, dropout=0.1, activation="relu",
                layer_norm_eps=1e-5, norm_first=False, bias=True)


def _var(w, dtype):
    return tf.Variable(tf.constant(np.asarray(w), dtype=dtype))


def pt_bool(m):
    """A drawn boolean mask as the cases give it in PyTorch's convention (True = hidden):
    the complement of the draw, with key 0 always visible."""
    m = tf.logical_not(m)
    return tf.concat([tf.zeros_like(m[..., :1]), m[..., 1:]], axis=-1)


class Blocks:
    """PyTorch's encoder and decoder layer equations for one configuration ``kw`` (the
    layer's constructor arguments, PyTorch's defaults for the rest) in ``dtype``; weights
    are read in Note's creation order from ``it`` (an iterator of tf.Variables)."""

    def __init__(self, kw: dict, dtype, it):
        kw = {**DEFAULTS, **kw}
        self.d, self.nh, self.bias = kw["d_model"], kw["nhead"], kw["bias"]
        self.norm_first, self.eps, self.rate = kw["norm_first"], kw["layer_norm_eps"], \
            kw["dropout"]
        self.act = tf_activation(kw["activation"])
        self.dtype, self.it = dtype, it

    # -- weights, in creation order --
    def lin(self):
        return (next(self.it), next(self.it) if self.bias else None)

    def mha_w(self):
        return [self.lin() for _ in range(4)]  # q, k, v, out

    def ln(self, center=None, eps=None):
        center = self.bias if center is None else center
        beta = next(self.it) if center else None
        return (beta, next(self.it), self.eps if eps is None else eps)

    def enc_params(self):
        return dict(sa=self.mha_w(), l1=self.lin(), l2=self.lin(), n1=self.ln(), n2=self.ln())

    def dec_params(self):
        return dict(sa=self.mha_w(), ca=self.mha_w(), l1=self.lin(), l2=self.lin(),
                    n1=self.ln(), n2=self.ln(), n3=self.ln())

    # -- equations --
    @staticmethod
    def linear(x, wb):
        y = tf.matmul(x, wb[0])
        return y + wb[1] if wb[1] is not None else y

    def layer_norm(self, x, p):
        dtype = self.dtype
        x32 = tf.cast(x, tf.float32) if dtype in (tf.float16, tf.bfloat16) else x
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = tf.cast((x32 - mean) * tf.math.rsqrt(var + p[2]), dtype) * p[1]
        return y + p[0] if p[0] is not None else y

    def attn(self, xq, xkv, w, mask, drop):
        d, nh, dtype = self.d, self.nh, self.dtype
        b, lq, lk = tf.shape(xq)[0], xq.shape[1], xkv.shape[1]
        dh = d // nh

        def heads(t, n):
            return tf.transpose(tf.reshape(t, [b, n, nh, dh]), [0, 2, 1, 3])

        q, k, v = heads(self.linear(xq, w[0]), lq), heads(self.linear(xkv, w[1]), lk), \
            heads(self.linear(xkv, w[2]), lk)
        s = tf.matmul(q, k, transpose_b=True) / tf.cast(np.sqrt(dh), dtype)
        if mask is not None:
            s = s + mask
        p = drop(tf.nn.softmax(s, axis=-1), self.rate)
        o = tf.reshape(tf.transpose(tf.matmul(p, v), [0, 2, 1, 3]), [b, lq, d])
        return self.linear(o, w[3])

    def float_mask(self, m, b, lq, lk, causal, padding=None):
        """PyTorch's merged float mask (-inf hides), broadcastable to (B, H, Lq, Lk)."""
        dtype, nh = self.dtype, self.nh
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

    def ff(self, x, p, drop):
        return self.linear(drop(self.act(self.linear(x, p["l1"])), self.rate), p["l2"])

    def encode(self, x, p, sm, drop):
        """One ``TransformerEncoderLayer``."""
        ln, rate = self.layer_norm, self.rate
        if self.norm_first:
            x = x + drop(self.attn(ln(x, p["n1"]), ln(x, p["n1"]), p["sa"], sm, drop), rate)
            return x + drop(self.ff(ln(x, p["n2"]), p, drop), rate)
        x = ln(x + drop(self.attn(x, x, p["sa"], sm, drop), rate), p["n1"])
        return ln(x + drop(self.ff(x, p, drop), rate), p["n2"])

    def decode(self, y, memory, p, tm, mm, drop):
        """One ``TransformerDecoderLayer``."""
        ln, rate = self.layer_norm, self.rate
        if self.norm_first:
            z = ln(y, p["n1"])
            y = y + drop(self.attn(z, z, p["sa"], tm, drop), rate)
            y = y + drop(self.attn(ln(y, p["n2"]), memory, p["ca"], mm, drop), rate)
            return y + drop(self.ff(ln(y, p["n3"]), p, drop), rate)
        y = ln(y + drop(self.attn(y, y, p["sa"], tm, drop), rate), p["n1"])
        y = ln(y + drop(self.attn(y, memory, p["ca"], mm, drop), rate), p["n2"])
        return ln(y + drop(self.ff(y, p, drop), rate), p["n3"])


def routed(xs, inputs, flags):
    """Inputs by their call names, boolean masks in PyTorch's convention, 'subsequent'
    masks marked."""
    a = {k: pt_bool(v) if v.dtype == tf.bool else v for k, v in zip(inputs, xs)}
    for k in ("src_mask", "tgt_mask", "memory_mask", "mask"):
        if flags.get(k) == "subsequent":
            a[k] = "subsequent"
    return a


def transformer(case, weights, dtype):
    """PyTorch ``nn.Transformer`` forward (batch first), from its documented equations."""
    kw = case.kwargs
    ne, nd = kw.get("num_encoder_layers", 6), kw.get("num_decoder_layers", 6)
    custom_enc, custom_dec = kw.get("custom_encoder"), kw.get("custom_decoder")
    variables = [_var(w, dtype) for w in weights]
    blk = Blocks({k: v for k, v in kw.items() if k in DEFAULTS}, dtype, iter(variables))
    enc = []
    if custom_enc is None:
        enc = [blk.enc_params() for _ in range(ne)]
        enc_norm = blk.ln()
    dec = []
    if custom_dec is None:
        dec = [blk.dec_params() for _ in range(nd)]
        dec_norm = blk.ln()

    def fn(*xs, training, inputs=("src", "tgt"), **flags):
        a = routed(xs, inputs, flags)
        src, tgt = a["src"], a["tgt"]
        b, s_len, t_len = tf.shape(src)[0], src.shape[1], tgt.shape[1]
        drop = Dropper(training, dtype)
        sm = blk.float_mask(a.get("src_mask"), b, s_len, s_len, flags.get("src_is_causal"),
                            a.get("src_key_padding_mask"))
        tm = blk.float_mask(a.get("tgt_mask"), b, t_len, t_len, flags.get("tgt_is_causal"),
                            a.get("tgt_key_padding_mask"))
        mm = blk.float_mask(a.get("memory_mask"), b, t_len, s_len,
                            flags.get("memory_is_causal"), a.get("memory_key_padding_mask"))
        if custom_enc is not None:
            x = custom_enc.tf(src)
        else:
            x = src
            for p in enc:
                x = blk.encode(x, p, sm, drop)
            x = blk.layer_norm(x, enc_norm)
        memory = x
        if custom_dec is not None:
            return custom_dec.tf(tgt, memory)
        y = tgt
        for p in dec:
            y = blk.decode(y, memory, p, tm, mm, drop)
        return blk.layer_norm(y, dec_norm)

    return Reference(fn, variables)


def _stack_config(case):
    """``(the layer's kwargs, num_layers, the norm's kwargs or None)`` of a stack case:
    ``kwargs = {'encoder_layer' or 'decoder_layer': {...}, 'num_layers': n, 'norm':
    None or {'epsilon': e, 'center': c}}``."""
    kw = case.kwargs
    layer = kw.get("encoder_layer", kw.get("decoder_layer"))
    return layer, kw["num_layers"], kw.get("norm")


def _blocks(case, weights, dtype, stack: bool):
    variables = [_var(w, dtype) for w in weights]
    if stack:
        kw, n, norm = _stack_config(case)
    else:
        kw, n, norm = case.kwargs, 1, None
    return Blocks(kw, dtype, iter(variables)), variables, n, norm


def _norm_params(blk, norm):
    if norm is None:
        return None
    return blk.ln(center=norm.get("center", True), eps=norm.get("epsilon", 1e-3))


def encoder_layer(case, weights, dtype, stack: bool = False):
    """PyTorch ``TransformerEncoderLayer`` (``stack``: ``TransformerEncoder``, whose call
    names the attention mask ``mask``)."""
    blk, variables, n, norm = _blocks(case, weights, dtype, stack)
    params = [blk.enc_params() for _ in range(n)]
    norm_p = _norm_params(blk, norm)
    mask_name = "mask" if stack else "src_mask"

    def fn(*xs, training, inputs=("src",), **flags):
        a = routed(xs, inputs, flags)
        x = a["src"]
        s_len = x.shape[1]
        drop = Dropper(training, dtype)
        sm = blk.float_mask(a.get(mask_name), tf.shape(x)[0], s_len, s_len,
                            flags.get("is_causal"), a.get("src_key_padding_mask"))
        for p in params:
            x = blk.encode(x, p, sm, drop)
        return blk.layer_norm(x, norm_p) if norm_p is not None else x

    return Reference(fn, variables)


def decoder_layer(case, weights, dtype, stack: bool = False):
    """PyTorch ``TransformerDecoderLayer`` (``stack``: ``TransformerDecoder``)."""
    blk, variables, n, norm = _blocks(case, weights, dtype, stack)
    params = [blk.dec_params() for _ in range(n)]
    norm_p = _norm_params(blk, norm)

    def fn(*xs, training, inputs=("tgt", "memory"), **flags):
        a = routed(xs, inputs, flags)
        y, memory = a["tgt"], a["memory"]
        b, t_len, s_len = tf.shape(y)[0], y.shape[1], memory.shape[1]
        drop = Dropper(training, dtype)
        tm = blk.float_mask(a.get("tgt_mask"), b, t_len, t_len, flags.get("tgt_is_causal"),
                            a.get("tgt_key_padding_mask"))
        mm = blk.float_mask(a.get("memory_mask"), b, t_len, s_len,
                            flags.get("memory_is_causal"), a.get("memory_key_padding_mask"))
        for p in params:
            y = blk.decode(y, memory, p, tm, mm, drop)
        return blk.layer_norm(y, norm_p) if norm_p is not None else y

    return Reference(fn, variables)


def encoder(case, weights, dtype):
    return encoder_layer(case, weights, dtype, stack=True)


def decoder(case, weights, dtype):
    return decoder_layer(case, weights, dtype, stack=True)
