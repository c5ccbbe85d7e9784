"""Softmax attention layers: attention and multihead_attention (talking_heads_attention is in
:mod:`mlxnote.nn.talking_heads`).

Every softmax attention goes through :func:`mlxnote.kernels.attention.attention`
(``mx.fast.scaled_dot_product_attention`` where the math allows it); the linear-cost
layers (FAVOR, Linformer) are in :mod:`mlxnote.nn.linear_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import mlx.core as mx

from .._config import compute_dtype
from .._validation import check_choice
from ..kernels import attention as K
from . import core
from .layer import Desc, Layer, shape_desc
from .typing import ArrayLike, ArrayOrSeq, DTypeLike, Initializer, MaskLike


def _array(layer: Layer, value: Any, arg: str) -> mx.array:
    """``value`` as an ``mx.array`` without a cast (masks keep bool/int/float)."""
    return layer.as_input(value, arg, cast=False)


def _broadcastable(shape: Sequence[int], target: Sequence[int]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _dropout_fn(layer: Layer, drop: core.dropout | None,
                training: bool) -> Callable[[mx.array], mx.array] | None:
    """The attention-weight dropout of this call, or None (identity)."""
    if drop is None or not training or drop.rate == 0.0:
        return None
    return lambda p: drop(p, train_flag=True)


# -- attention (Keras Attention) -----------------------------------------------------------
class attention(Layer):
    """Dot-product or additive ('concat') attention, as Keras ``Attention``.

    Args:
        use_scale (bool): learn a scalar ``scale`` (init 1) multiplying the scores
            (``'dot'``) or the pre-tanh sum (``'concat'``). ``False``: no scaling.
        score_mode (str): ``'dot'``: ``scores = q @ k^T``; ``'concat'``:
            ``scores[i, j] = w * sum_d tanh(q[i, d] + k[j, d])`` with a learned scalar
            ``concat_score_weight`` ``w`` (init 1).
        dtype (str): weights and computation.

    Call: ``(query, value, key=None, mask=None, return_attention_scores=False,
    use_causal_mask=False)``; ``query (B, Tq, dim)``, ``value (B, Tv, dv)``, ``key (B, Tv,
    dim)`` (defaults to ``value``). ``mask=[query_mask, value_mask]``, boolean ``(B, Tq)``
    and ``(B, Tv)`` (either may be ``None``): ``value_mask`` hides keys, ``query_mask`` zeroes
    output rows. ``use_causal_mask`` hides keys ``j > i``.

    Returns ``(B, Tq, dv)``, and the weights ``(B, Tq, Tv)`` with
    ``return_attention_scores``. Weights: ``scale`` then ``concat_score_weight``, both
    ``()``, in both layouts (Note's and ``layout="keras"``).
    """

    def __init__(self, use_scale: bool = False, score_mode: Literal["dot", "concat"] = "dot",
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        use_scale = self.check_bool("use_scale", use_scale)
        check_choice(self.error_name, "score_mode", score_mode, ("dot", "concat"))
        self.config(use_scale=use_scale, score_mode=score_mode)
        if use_scale:
            self.add_weight("scale", (), "ones", "use_scale")
        if score_mode == "concat":
            self.add_weight("concat_score_weight", (), "ones", "score_mode")
        self._set("built", True)

    def __call__(self, query: ArrayLike, value: ArrayLike, key: ArrayLike | None = None,
                 mask: Sequence[MaskLike | None] | None = None,
                 return_attention_scores: bool = False, use_causal_mask: bool = False
                 ) -> mx.array | tuple[mx.array, mx.array]:
        q = self.as_input(query, "query", ndim=3)
        v = self.as_input(value, "value", ndim=3)
        k = v if key is None else self.as_input(key, "key", ndim=3)
        if k.shape[-1] != q.shape[-1]:
            raise self.error("key", Desc(f"an array of shape {tuple(k.shape)}"),
                             f"the query's feature size {q.shape[-1]} on the last axis")
        if k.shape[:2] != v.shape[:2] or q.shape[0] != v.shape[0]:
            raise self.error("value", Desc(f"an array of shape {tuple(v.shape)}"),
                             f"batch {q.shape[0]} and length {k.shape[1]} (as query/key)")
        b, tq, tv = q.shape[0], q.shape[1], k.shape[1]
        q_mask, v_mask = self._masks(mask, b, tq, tv)
        smask = None if v_mask is None else v_mask[:, None, None, :]
        causal = self.check_bool("use_causal_mask", use_causal_mask)
        want = self.check_bool("return_attention_scores", return_attention_scores)
        scores = (b, tq, tv, q.shape[-1]) if self.score_mode == "concat" else (b, tq, tv)
        self.check_output_size("query", shape_desc(q), scores, mx.float32, "scores")
        if 0 in (b, tq, tv, q.shape[-1]):
            # Empty, or no keys (Keras: zeros): zeros, with no graph (MLX's CPU sum over an
            # empty axis, e.g. the scale's gradient, can loop forever). No query features:
            # the scores are zeros, the weights uniform. (No value features is the general
            # path: an empty output, but the scores are still Keras's.)
            if tv and q.shape[-1] == 0 and b * tq * v.shape[-1]:
                s = mx.zeros((b, 1, tq, tv), mx.float32)
                res = K.attend(s, v[:, None], smask, causal=causal, return_probs=want)
                out, probs = (res[0][:, 0], res[1][:, 0]) if want else (res[:, 0], None)
                if q_mask is not None:
                    out = mx.where(q_mask[..., None], out, mx.array(0, out.dtype))
                return (out, probs) if want else out
            out = mx.zeros((b, tq, v.shape[-1]), self.dtype)
            return (out, mx.zeros((b, tq, tv), self.dtype)) if want else out
        # The learned scalars act in float32: their gradients are sums over every score,
        # which a 16-bit accumulation would swamp.
        f32 = mx.float32
        if self.score_mode == "dot" and not self.use_scale:
            res = K.attention(q[:, None], k[:, None], v[:, None], 1.0, smask, causal=causal,
                              return_probs=want)
        elif self.score_mode == "dot":
            cdt = compute_dtype(q.dtype)
            s = (q.astype(cdt) @ k.astype(cdt).swapaxes(-1, -2)).astype(q.dtype).astype(f32) \
                * self.scale.astype(f32)
            res = K.attend(s[:, None], v[:, None], smask, causal=causal, return_probs=want)
        else:
            x = q.astype(f32)[:, :, None, :] + k.astype(f32)[:, None, :, :]
            if self.use_scale:
                x = self.scale.astype(f32) * x
            s = self.concat_score_weight.astype(f32) * mx.sum(mx.tanh(x), axis=-1)
            res = K.attend(s[:, None], v[:, None], smask, causal=causal, return_probs=want)
        out, probs = (res[0][:, 0], res[1][:, 0]) if want else (res[:, 0], None)
        if q_mask is not None:
            out = mx.where(q_mask[..., None], out, mx.array(0, out.dtype))
        return (out, probs) if want else out

    def _masks(self, mask: Sequence[MaskLike | None] | None, b: int, tq: int,
               tv: int) -> tuple[mx.array | None, ...]:
        if mask is None:
            return None, None
        if not isinstance(mask, (list, tuple)) or len(mask) != 2:
            raise self.error("mask", mask, "[query_mask, value_mask] (each None or boolean)",
                             TypeError)
        out: list[mx.array | None] = []
        for name, m, t in (("query_mask", mask[0], tq), ("value_mask", mask[1], tv)):
            if m is None:
                out.append(None)
                continue
            m = _array(self, m, f"mask ({name})")
            if tuple(m.shape) != (b, t):
                raise self.error("mask", f"{name} of shape {tuple(m.shape)}",
                                 f"shape {(b, t)} (batch, length)")
            out.append(m.astype(mx.bool_))
        return tuple(out)


# -- multihead_attention -------------------------------------------------------------------
class multihead_attention(Layer):
    """Multi-head scaled dot-product attention with query/key/value/output projections.

    Args:
        n_head (int): heads; ``input_size`` must be divisible by it.
        input_size (int, optional): model width ``n_state`` (query features, and the
            width of every projection); built from the first ``x`` if ``None``.
        kdim, vdim (int, optional): key / value input features. Default ``input_size``;
            when the layer builds lazily, the key / value input's features.
        dropout (float): dropout on the attention weights (training mode only).
        weight_initializer, bias_initializer: initializers of the four dense layers.
        use_bias (bool): biases on the four projections.
        dtype (str): weights and computation.

    Call: ``(x, xa=None, mask=None, train_flag=None)``. ``x (B, Tq, input_size)``;
    ``xa (B, Tk, kdim)`` gives keys and values (cross-attention), or a pair
    ``(key_input, value_input)`` when ``kdim != vdim``; ``None`` is self-attention.
    ``mask`` is boolean (True = attend) or additive float, shaped ``(Tq, Tk)`` (a larger
    2-D mask is sliced ``[:Tq, :Tk]``), ``(B, Tq, Tk)``, or broadcastable to
    ``(B, n_head, Tq, Tk)``.

    Returns ``(output (B, Tq, input_size), qk (B, n_head, Tq, Tk))``: ``qk`` are the
    logits ``q k^T / sqrt(d_head)`` plus the mask (a boolean mask puts the dtype's lowest
    value on hidden positions), before the softmax. ``qk`` is lazy: unused, it costs
    nothing on a GPU.

    Weights: ``query``, ``key``, ``value``, ``out`` (dense: ``weight [in, out]``, ``bias``).
    """

    size_args = ("input_size", "kdim", "vdim")

    def __init__(self, n_head: int, input_size: int | None = None, kdim: int | None = None,
                 vdim: int | None = None, dropout: float = 0.0,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", use_bias: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        self.config(n_head=self.check_int("n_head", n_head),
                    input_size=self.check_int("input_size", input_size, allow_none=True),
                    kdim=self.check_int("kdim", kdim, allow_none=True),
                    vdim=self.check_int("vdim", vdim, allow_none=True),
                    dropout=self.check_float("dropout", dropout, 0.0, 1.0),
                    use_bias=self.check_bool("use_bias", use_bias))
        self._set("weight_initializer", self.check_initializer(
            "weight_initializer", weight_initializer, rank=2))
        self._set("bias_initializer", self.check_initializer(
            "bias_initializer", bias_initializer, rank=1))
        if input_size is not None:
            self._check_width(self.input_size, "input_size", input_size)
            self.build(self.input_size)

    def _check_width(self, width: int, arg: str, given: Any) -> None:
        if width % self.n_head:
            raise self.error(arg, given, f"a multiple of n_head={self.n_head}")

    def build(self, input_size: int, kdim: int | None = None, vdim: int | None = None) -> None:
        kdim = self.kdim or kdim or input_size
        vdim = self.vdim or vdim or input_size
        self._set("input_size", input_size)
        self._set("kdim", kdim)
        self._set("vdim", vdim)
        kw = dict(weight_initializer=self.weight_initializer,
                  bias_initializer=self.bias_initializer, use_bias=self.use_bias,
                  dtype=self.dtype)
        with self.owns():  # their errors name this layer
            self.add_sublayer("query", core.dense(input_size, input_size, **kw))
            self.add_sublayer("key", core.dense(input_size, kdim, **kw))
            self.add_sublayer("value", core.dense(input_size, vdim, **kw))
            self.add_sublayer("out", core.dense(input_size, input_size, **kw))
            self.attn_drop = core.dropout(self.dropout, dtype=compute_dtype(self.dtype))
        self._set("output_size", input_size)
        self._set("built", True)

    def __call__(self, x: ArrayLike, xa: ArrayOrSeq | None = None,
                 mask: MaskLike | None = None, train_flag: bool | None = None,
                 training: bool | None = None) -> tuple[mx.array, mx.array]:
        x = self.as_input(x, "x", ndim=3)
        train = self.mode(train_flag, training)
        if xa is None:
            xk = xv = x
        elif isinstance(xa, (tuple, list)):
            if len(xa) != 2:
                raise self.error("xa", f"a sequence of {len(xa)} arrays",
                                 "an array, or a pair (key_input, value_input)", TypeError)
            xk = self.as_input(xa[0], "xa", ndim=3)
            xv = self.as_input(xa[1], "xa", ndim=3)
        else:
            xk = xv = self.as_input(xa, "xa", ndim=3)
        if not self.built:
            for arg, t in (("x", x), ("xa", xk), ("xa", xv)):
                if t.shape[-1] == 0:
                    raise self.error(arg, shape_desc(t), "at least one feature on the last "
                                     "axis (the projections are built from it)")
            self._check_width(x.shape[-1], "x", f"an array of shape {tuple(x.shape)}")
            self.build(x.shape[-1], xk.shape[-1], xv.shape[-1])
        for arg, arr, want in (("x", x, self.input_size), ("xa", xk, self.kdim),
                               ("xa", xv, self.vdim)):
            if arr.shape[-1] != want:
                what = {"x": "input_size", "xa": "kdim/vdim"}[arg]
                raise self.error(arg, Desc(f"an array of shape {tuple(arr.shape)}"),
                                 f"{want} features on the last axis ({what})")
        if xk.shape[:2] != xv.shape[:2] or xk.shape[0] != x.shape[0]:
            raise self.error("xa", f"arrays of shapes {tuple(xk.shape)}, {tuple(xv.shape)}",
                             f"batch {x.shape[0]} and one length for keys and values")
        b, tq, tk = x.shape[0], x.shape[1], xk.shape[1]
        h = self.n_head
        dh = self.input_size // h
        m = self.attention_mask(mask, b, tq, tk)
        cdt = compute_dtype(self.dtype)
        for arg, t in (("x", x), ("xa", xk)):
            self.check_output_size(arg, shape_desc(t), (*t.shape[:2], self.input_size), cdt,
                                   "projection")
        self.check_output_size("x", shape_desc(x), (b, h, tq, tk), cdt, "attention logits")
        if b * tq == 0:  # the empty result, with no graph (MLX's CPU sum over an empty
            # axis, a bias gradient, can loop forever)
            return (mx.zeros((b, tq, self.input_size), self.dtype),
                    mx.zeros((b, h, tq, tk), self.dtype))
        if tk == 0:  # no keys: the attention gives zeros (Keras), the output the bias
            out = mx.zeros((b, tq, self.input_size), cdt)
            return self.out.project(out).astype(self.dtype), mx.zeros((b, h, tq, 0),
                                                                      self.dtype)
        # Three projections, not one fused (in, 3 * in) matmul: as fast here, and the
        # gradient of x then sums three short products instead of one long one (half the
        # rounding error, measured against a float64 oracle).
        q, k, v = (d.project(t) for t, d in ((x, self.query), (xk, self.key),
                                              (xv, self.value)))
        q = q.reshape(b, tq, h, dh).transpose(0, 2, 1, 3)
        k = k.reshape(b, tk, h, dh).transpose(0, 2, 1, 3)
        v = v.reshape(b, tk, h, dh).transpose(0, 2, 1, 3)
        drop = _dropout_fn(self, self.attn_drop, train)
        out, qk = K.attention(q, k, v, 1.0 / math.sqrt(dh), m, dropout=drop,
                              return_logits=True, dtype=self.dtype)
        out = out.astype(cdt).transpose(0, 2, 1, 3).reshape(b, tq, self.input_size)
        return self.out.project(out).astype(self.dtype), qk

    def attention_mask(self, mask: MaskLike | None, b: int, tq: int,
                       tk: int) -> mx.array | None:
        """The documented mask forms, as an array broadcastable to ``(B, H, Tq, Tk)``."""
        if mask is None:
            return None
        m = _array(self, mask, "mask")
        if m.dtype != mx.bool_ and not mx.issubdtype(m.dtype, mx.floating):
            raise self.error("mask", Desc(f"an array of dtype {m.dtype}"),
                             "boolean (True = attend) or float (additive)", TypeError)
        full = (b, self.n_head, tq, tk)
        if m.ndim == 2:
            m = m[:tq, :tk]
            ok = _broadcastable(m.shape, (tq, tk))
        elif m.ndim == 3:
            ok = _broadcastable(m.shape, (b, tq, tk))
            m = m[:, None]
        else:
            ok = _broadcastable(m.shape, full)
        if not ok:
            raise self.error("mask", Desc(f"an array of shape {tuple(m.shape)}"),
                             f"(Tq, Tk) = {(tq, tk)} (or larger, sliced), (B, Tq, Tk) = "
                             f"{(b, tq, tk)}, or a shape broadcastable to {full}")
        return m if m.dtype == mx.bool_ else m.astype(self.dtype)


__all__ = ["attention", "multihead_attention"]
