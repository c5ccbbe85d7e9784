"""talking_heads_attention: softmax attention whose heads talk (TF Model Garden's
``TalkingHeadsAttention``), through :func:`mlxnote.kernels.attention.attention` like the
layers of :mod:`mlxnote.nn.attention`."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from .._config import compute_dtype
from .._validation import is_int, is_sequence
from ..kernels import attention as K
from . import core
from .attention import _array, _broadcastable, _dropout_fn
from .layer import Desc, Layer, shape_desc
from .typing import ArrayLike, DTypeLike, Initializer, IntOrSeq, MaskLike


class talking_heads_attention(Layer):
    """Talking-heads attention (TF Model Garden ``TalkingHeadsAttention``) on projected
    ``q, k, v``: logits ``q k^T / sqrt(H)``, a learned ``N x N`` head mix before the softmax
    and another after it, dropout on the mixed weights.

    Args:
        qkv_rank (int, optional): rank of ``q, k, v`` ``[batch..., T..., N, H]`` (>= 4);
            checked against the inputs, inferred when ``None``.
        attention_axes (int or tuple, optional): the ``T`` axes attended over jointly;
            default ``range(1, qkv_rank - 2)``; negative axes count from the end of
            ``[batch..., T..., dim]`` as in Keras. Other leading axes are batch axes.
        dropout_rate (float): dropout on the mixed attention weights (training only).
        initializer: of the two ``[N, N]`` mixing weights (default ``'Xavier'``).
        dtype (str): weights and computation.
        num_heads (int, optional): ``N``, to build at construction; else from the
            first query (``query.shape[-2]``).

    Call: ``(query_tensor, key_tensor, value_tensor, attention_mask=None,
    train_flag=None)``: ``query [batch..., Tq..., N, H]``, ``key [batch..., Tk..., N, H]``,
    ``value [batch..., Tk..., N, Hv]``; ``attention_mask`` boolean or 0/1 (1 = attend),
    ``[batch..., Tq..., Tk...]`` or broadcastable to it; masked logits get ``-1e9``
    (float16: its lowest value) added.

    Returns ``(output [batch..., Tq..., N, Hv], scores [batch..., N, Tq..., Tk...])``;
    ``scores`` are the post-mix weights before dropout.
    Weights: ``pre_softmax_weight``, ``post_softmax_weight``, ``[N, N]``.
    """

    size_args = ("num_heads",)

    def __init__(self, qkv_rank: int | None = None, attention_axes: IntOrSeq | None = None,
                 dropout_rate: float = 0.0, initializer: Initializer = "Xavier",
                 dtype: DTypeLike = "float32", num_heads: int | None = None) -> None:
        super().__init__(dtype=dtype)
        qkv_rank = self.check_int("qkv_rank", qkv_rank, low=4, allow_none=True)
        if attention_axes is not None:
            if is_int(attention_axes):
                attention_axes = (int(attention_axes),)
            ok = is_sequence(attention_axes) and len(attention_axes) > 0 and all(
                is_int(a) for a in attention_axes)
            if not ok:
                raise self.error("attention_axes", attention_axes,
                                 "None, an int or a non-empty tuple of ints", TypeError)
            attention_axes = tuple(int(a) for a in attention_axes)
            if qkv_rank is not None:
                self._axes(attention_axes, qkv_rank)
        self.config(qkv_rank=qkv_rank, attention_axes=attention_axes,
                    dropout_rate=self.check_float("dropout_rate", dropout_rate, 0.0, 1.0),
                    num_heads=self.check_int("num_heads", num_heads, allow_none=True))
        self._set("initializer", self.check_initializer("initializer", initializer, rank=2))
        with self.owns():
            self.attn_drop = core.dropout(self.dropout_rate, dtype=compute_dtype(self.dtype))
        if num_heads is not None:
            self.build(self.num_heads)

    def _axes(self, axes: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
        """Normalized attention axes for inputs of ``rank``; each in ``[0, rank - 3]``."""
        if axes is None:
            return tuple(range(1, rank - 2))
        out = tuple((rank - 1) + a if a < 0 else a for a in axes)  # Keras: as on (B, T.., dim)
        if any(a < 0 or a > rank - 3 for a in out) or len(set(out)) != len(out):
            raise self.error("attention_axes", axes,
                             f"distinct axes in [0, {rank - 3}] for inputs of rank {rank} "
                             "(the last two axes are heads and channels)")
        return tuple(sorted(out))

    def build(self, num_heads: int) -> None:
        self._set("num_heads", num_heads)
        self.add_weight("pre_softmax_weight", (num_heads, num_heads), self.initializer,
                        "initializer")
        self.add_weight("post_softmax_weight", (num_heads, num_heads), self.initializer,
                        "initializer")
        self._set("built", True)

    def __call__(self, query_tensor: ArrayLike, key_tensor: ArrayLike,
                 value_tensor: ArrayLike, attention_mask: MaskLike | None = None,
                 train_flag: bool | None = None,
                 training: bool | None = None) -> tuple[mx.array, mx.array]:
        q = self.as_input(query_tensor, "query_tensor", min_ndim=4)
        k = self.as_input(key_tensor, "key_tensor", min_ndim=4)
        v = self.as_input(value_tensor, "value_tensor", min_ndim=4)
        train = self.mode(train_flag, training)
        rank = q.ndim
        if self.qkv_rank is not None and rank != self.qkv_rank:
            raise self.error("query_tensor", Desc(f"an array of shape {tuple(q.shape)}"),
                             f"rank {self.qkv_rank} (qkv_rank)")
        for arg, t in (("key_tensor", k), ("value_tensor", v)):
            if t.ndim != rank:
                raise self.error(arg, shape_desc(t), f"rank {rank}, as the query")
        axes = self._axes(self.attention_axes, rank)
        batch = tuple(a for a in range(rank - 2) if a not in axes)
        n = q.shape[-2]
        for arg, t in (("query_tensor", q), ("key_tensor", k)):
            if 0 in t.shape[-2:]:
                raise self.error(arg, shape_desc(t), "at least one head and one channel on "
                                 "the last two axes")
        if not self.built:
            self.build(n)
        for arg, t in (("query_tensor", q), ("key_tensor", k), ("value_tensor", v)):
            if t.shape[-2] != self.num_heads:
                raise self.error(arg, Desc(f"an array of shape {tuple(t.shape)}"),
                                 f"{self.num_heads} heads on axis -2 (num_heads)")
        if k.shape[-1] != q.shape[-1] or k.shape[:-1] != v.shape[:-1] or any(
                q.shape[a] != k.shape[a] for a in batch):
            raise self.error("key_tensor", f"key {tuple(k.shape)} / value {tuple(v.shape)}",
                             f"key and value sharing their leading axes, the query's batch "
                             f"axes {batch} and the key its channels {q.shape[-1]}")
        bshape = tuple(q.shape[a] for a in batch)
        tq = tuple(q.shape[a] for a in axes)
        tk = tuple(k.shape[a] for a in axes)
        perm = (*batch, rank - 2, *axes, rank - 1)
        bf, nq, nk = math.prod(bshape), math.prod(tq), math.prod(tk)
        self.check_output_size("query_tensor", shape_desc(q), (bf, n, nq, nk),
                               compute_dtype(self.dtype), "attention scores")
        if 0 in (bf, nq, nk):  # empty: the empty result; no keys: zeros (as Keras)
            if attention_mask is not None:
                self._adder(attention_mask, bshape, tq, tk)  # (checked all the same)
            return (mx.zeros((*bshape, n, *tq, v.shape[-1]), self.dtype)
                    .transpose(np.argsort(perm).tolist()),
                    mx.zeros((*bshape, n, *tq, *tk), self.dtype))
        qf = q.transpose(perm).reshape(bf, n, nq, q.shape[-1])
        kf = k.transpose(perm).reshape(bf, n, nk, k.shape[-1])
        vf = v.transpose(perm).reshape(bf, n, nk, v.shape[-1])
        adder = None
        if attention_mask is not None:
            adder = self._adder(attention_mask, bshape, tq, tk).reshape(bf, 1, nq, nk)
        drop = _dropout_fn(self, self.attn_drop, train)
        out, probs = K.attention(qf, kf, vf, 1.0 / math.sqrt(q.shape[-1]), adder,
                                 dropout=drop, pre_mix=self.pre_softmax_weight,
                                 post_mix=self.post_softmax_weight, return_probs=True)
        out = out.reshape(*bshape, n, *tq, v.shape[-1])
        out = out.transpose(np.argsort(perm).tolist())
        return out, probs.reshape(*bshape, n, *tq, *tk)

    def _adder(self, mask: MaskLike, bshape: tuple[int, ...], tq: tuple[int, ...],
               tk: tuple[int, ...]) -> mx.array:
        """``(1 - mask) * big_negative`` in the scores layout without heads."""
        m = _array(self, mask, "attention_mask")
        target = (*bshape, *tq, *tk)
        if not _broadcastable(m.shape, target):
            raise self.error("attention_mask", Desc(f"an array of shape {tuple(m.shape)}"),
                             f"a shape broadcastable to {target} (batch..., Tq..., Tk...)")
        big = float(mx.finfo(mx.float16).min) if self.dtype == mx.float16 else -1e9
        adder = (1.0 - m.astype(self.dtype)) * mx.array(big, self.dtype)
        return mx.broadcast_to(adder, target)


__all__ = ["talking_heads_attention"]
