"""Linear-cost attention layers: FAVOR_attention (Performer random features, through
:func:`mlxnote.kernels.attention.linear_attention`) and Linformer_self_attention (keys and
values projected along the sequence, then :func:`mlxnote.kernels.attention.attention`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from .._config import compute_dtype
from .._validation import MAX_SEED
from ..kernels import attention as K
from . import core
from .attention import _broadcastable, _dropout_fn
from .layer import Desc, Layer, materialize, shape_desc
from .typing import Activation, ActivationFn, ArrayLike, DTypeLike


# -- FAVOR_attention -----------------------------------------------------------------------
def _accepts_key(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        return "key" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn is mx.random.normal or fn is mx.random.uniform


class FAVOR_attention(Layer):
    """FAVOR (Performer) attention with positive random features, Note's math.

    Args:
        key_dim (int): channels of keys and queries.
        orthonormal (bool): orthonormalize the ``m`` features by QR (needs
            ``m <= key_dim``).
        causal (bool): position ``i`` attends to ``j <= i`` (inclusive prefix sums;
            needs as many query as key locations), by a chunked scan.
        m (int): number of random features.
        redraw (bool): draw new features on every call (default); ``False`` draws once,
            at construction.
        h (callable, optional): ``h(x)`` on ``(B, n, key_dim)`` scales the features
            (a scalar or ``(B, n, 1)``); default ``sqrt(m)``.
        f (list, optional): feature functions (names or callables), default ``['relu']``;
            their outputs are concatenated.
        randomizer (callable, optional): ``randomizer(shape, dtype=...)`` draws the
            ``(key_dim, m)`` matrix; default ``mx.random.normal``.
        eps (float): the normalizer ``d`` becomes ``d + 2 eps`` where ``|d| <= eps``.
        kernel_eps (float): added to every feature.
        dtype (str): computation.
        seed (int, optional): draw features from the layer's own key (the default
            randomizer, or any that takes ``key=``).
        chunk_size (int): chunk length of the causal scan (memory ``O(L * chunk)``).

    Feature map: ``phi(x) = concat_j f_j(x @ W^T) * h(x) / sqrt(m) + kernel_eps`` with
    ``W = features (m, key_dim)``. Output: ``phi(q) (phi(k)^T v) / (phi(q) sum phi(k))``.

    Call: ``(keys, values, queries)``, channels first: ``keys (B, key_dim, *Lk)``,
    ``values (B, dv, *Lk)``, ``queries (B, key_dim, *Lq)`` -> ``(B, dv, *Lq)``.
    ``layer.features`` ``(m, key_dim)`` holds the features of the last call; it is a
    non-trainable weight, so ``get_weights()`` returns it and ``set_weights()`` fixes it
    (with ``redraw=False``).
    """

    size_args = ("m", "key_dim")

    def __init__(self, key_dim: int, orthonormal: bool = True, causal: bool = False,
                 m: int = 128, redraw: bool = True,
                 h: Callable[[mx.array], ArrayLike] | None = None,
                 f: str | ActivationFn | Sequence[Activation] | None = None,
                 randomizer: Callable[..., ArrayLike] | None = None, eps: float = 0.0,
                 kernel_eps: float = 0.001, dtype: DTypeLike = "float32",
                 seed: int | None = None, chunk_size: int = 128) -> None:
        super().__init__(dtype=dtype)
        key_dim = self.check_int("key_dim", key_dim)
        m = self.check_int("m", m)
        orthonormal = self.check_bool("orthonormal", orthonormal)
        if orthonormal and m > key_dim:
            raise self.error("m", m, f"m <= key_dim={key_dim} when orthonormal=True")
        if h is not None and not callable(h):
            raise self.error("h", h, "None or a callable h(x)", TypeError)
        if randomizer is not None and not callable(randomizer):
            raise self.error("randomizer", randomizer, "None or a callable(shape, dtype)",
                             TypeError)
        fs = ["relu"] if f is None else f
        if callable(fs) or isinstance(fs, str):
            fs = [fs]
        if not isinstance(fs, Sequence) or len(fs) == 0:
            raise self.error("f", f, "a non-empty list of activation names or callables",
                             TypeError)
        funcs = [self.check_activation(g, "f") for g in fs]
        eps = self.check_float("eps", eps, 0.0, math.inf)
        kernel_eps = self.check_float("kernel_eps", kernel_eps, -math.inf, math.inf)
        self.config(key_dim=key_dim, orthonormal=orthonormal,
                    causal=self.check_bool("causal", causal), m=m,
                    redraw=self.check_bool("redraw", redraw), h=h, f=f,
                    randomizer=randomizer, eps=eps, kernel_eps=kernel_eps,
                    seed=self.check_int("seed", seed, low=0, allow_none=True, high=MAX_SEED),
                    chunk_size=self.check_int("chunk_size", chunk_size))
        self._set("_funcs", funcs)
        if self.seed is not None:
            self._key = mx.random.key(self.seed)
            materialize(self._key)
        # Not trainable, but a weight: get_weights()/set_weights() read and fix the features.
        self.add_weight("features", (m, key_dim), self.draw_features(), "randomizer",
                        trainable=False)
        self._set("built", True)

    def draw_features(self) -> mx.array:
        """A fresh ``(m, key_dim)`` feature matrix (orthonormal rows when asked)."""
        shape = (self.key_dim, self.m)
        rnd = self.randomizer or mx.random.normal
        kw: dict[str, Any] = {}
        if self.seed is not None and _accepts_key(rnd):
            self._key, kw["key"] = mx.random.split(self._key)
            materialize(self._key, wait=False)  # any thread can draw the next ones
        try:
            g = rnd(shape, dtype=mx.float32, **kw)
        except TypeError as e:  # a signature that does not fit: name the argument
            raise self.error("randomizer", self.randomizer, "a callable randomizer(shape, "
                             f"dtype=...) (calling it raised TypeError: {e})",
                             TypeError) from e
        g = mx.array(g).astype(mx.float32)
        if tuple(g.shape) != shape:
            raise self.error("randomizer", self.randomizer, f"a callable returning shape "
                             f"{shape}; it returned {tuple(g.shape)}")
        if self.orthonormal:
            g, _ = mx.linalg.qr(g, stream=mx.cpu)
        return g.T.astype(self.dtype)

    def feature_map(self, x: mx.array, w: mx.array) -> mx.array:
        """``phi(x)`` for ``x (B, n, key_dim)`` -> ``(B, n, m * len(f))``."""
        xw = x @ w.T
        parts = [fn(xw) for fn in self._funcs]
        phi = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=-1)
        hx = self.h(x) if self.h is not None else math.sqrt(self.m)
        if not isinstance(hx, (int, float)):
            hx = mx.array(hx)
            want = (*x.shape[:-1], 1)
            if not _broadcastable(hx.shape, want):
                raise self.error("h", Desc(f"a callable returning shape {tuple(hx.shape)}"),
                                 f"a scalar or an array broadcastable to {want} (B, n, 1)")
            hx = hx.astype(self.dtype)
        return phi * (hx * (1.0 / math.sqrt(self.m))) + self.kernel_eps

    def __call__(self, keys: ArrayLike, values: ArrayLike, queries: ArrayLike) -> mx.array:
        k = self.as_input(keys, "keys", min_ndim=3)
        v = self.as_input(values, "values", min_ndim=3)
        q = self.as_input(queries, "queries", min_ndim=3)
        for arg, t in (("keys", k), ("queries", q)):
            if t.shape[1] != self.key_dim:
                raise self.error(arg, Desc(f"an array of shape {tuple(t.shape)}"),
                                 f"key_dim={self.key_dim} channels on axis 1 (channels first)")
        if v.shape[0] != k.shape[0] or v.shape[2:] != k.shape[2:] or q.shape[0] != k.shape[0]:
            raise self.error("values", Desc(f"an array of shape {tuple(v.shape)}"),
                             f"batch {k.shape[0]} and the keys' locations {tuple(k.shape[2:])}")
        b, dv = k.shape[0], v.shape[1]
        lq = q.shape[2:]
        nk, nq = math.prod(k.shape[2:]), math.prod(lq)
        if self.causal and nk != nq:
            raise self.error("queries", Desc(f"an array of shape {tuple(q.shape)}"),
                             f"as many locations as the keys ({nk}) when causal=True")
        nf = self.m * len(self._funcs)
        for arg, t, n in (("keys", k, nk), ("queries", q, nq)):
            self.check_output_size(arg, shape_desc(t), (b, n, nf), compute_dtype(self.dtype),
                                   "features")
        if self.redraw:
            self.features = self.draw_features()
            materialize(self.features, wait=False)
        if nk == 0 or b * dv * nq == 0:  # empty, or no keys (zeros, as softmax attention
            # without keys): zeros, with no graph (MLX's CPU sum over an empty axis can
            # loop forever)
            return mx.zeros((b, dv, *lq), self.dtype)
        w = self.features
        kf = k.reshape(b, self.key_dim, nk).swapaxes(1, 2)
        vf = v.reshape(b, dv, nk).swapaxes(1, 2)
        qf = q.reshape(b, self.key_dim, nq).swapaxes(1, 2)
        num, den = K.linear_attention(self.feature_map(qf, w), self.feature_map(kf, w), vf,
                                      causal=self.causal, chunk=self.chunk_size)
        if self.eps > 0:
            den = den + mx.where(mx.abs(den) <= self.eps, 2.0 * self.eps, 0.0).astype(den.dtype)
        # num and den are float32 for 16-bit inputs (the gradient of the division squares
        # the normalizer, which would overflow float16).
        out = (num / den).astype(self.dtype)
        return out.swapaxes(1, 2).reshape(b, dv, *lq)


# -- Linformer_self_attention --------------------------------------------------------------
class Linformer_self_attention(Layer):
    """Linformer attention: keys and values projected along the sequence to ``k`` rows,
    so the cost is linear in the sequence length.

    Args:
        dim (int): model width.
        seq_len (int): key/value length (of ``x``, or of ``context``).
        k (int): projected length.
        heads (int): query heads.
        dim_head (int, optional): per-head width, default ``dim // heads``.
        one_kv_head (bool): one key/value head shared by all query heads.
        share_kv (bool): values reuse the key projection and ``proj_k``.
        dropout (float): on the attention weights (training only).
        dtype (str): weights and computation.

    Call: ``(x, context=None, train_flag=None)``: ``x (B, n, dim)``; keys and values come
    from ``context (B, seq_len, dim)`` or from ``x`` (then ``n == seq_len``). Returns
    ``(B, n, dim)``.

    Weights, in order: ``to_q`` (dense, no bias), ``to_k`` (no bias), ``proj_k
    [seq_len, k]`` (U(+-1/sqrt(k))), ``to_v`` and ``proj_v`` (unless ``share_kv``),
    ``to_out`` (with bias).
    """

    size_args = ("dim", "seq_len", "k", "heads", "dim_head")

    def __init__(self, dim: int, seq_len: int, k: int = 256, heads: int = 8,
                 dim_head: int | None = None, one_kv_head: bool = False, share_kv: bool = False,
                 dropout: float = 0.0, dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        dim = self.check_int("dim", dim)
        heads = self.check_int("heads", heads)
        dim_head = self.check_int("dim_head", dim_head, allow_none=True)
        if dim_head is None and dim % heads:
            raise self.error("heads", heads, f"a divisor of dim={dim} (or give dim_head)")
        self.config(dim=dim, seq_len=self.check_int("seq_len", seq_len),
                    k=self.check_int("k", k), heads=heads, dim_head=dim_head,
                    one_kv_head=self.check_bool("one_kv_head", one_kv_head),
                    share_kv=self.check_bool("share_kv", share_kv),
                    dropout=self.check_float("dropout", dropout, 0.0, 1.0))
        dh = dim_head or dim // heads
        self._set("dh", dh)
        kv_dim = dh if self.one_kv_head else heads * dh
        lim = 1.0 / math.sqrt(self.k)
        proj_init: list[str | float] = ["uniform", -lim, lim]
        kw = dict(use_bias=False, dtype=self.dtype)
        with self.owns():  # their errors name this layer
            self.add_sublayer("to_q", core.dense(heads * dh, dim, **kw))
            self.add_sublayer("to_k", core.dense(kv_dim, dim, **kw))
            self.add_weight("proj_k", (self.seq_len, self.k), proj_init, "k")
            if not self.share_kv:
                self.add_sublayer("to_v", core.dense(kv_dim, dim, **kw))
                self.add_weight("proj_v", (self.seq_len, self.k), proj_init, "k")
            self.add_sublayer("to_out", core.dense(dim, heads * dh, dtype=self.dtype))
            self.attn_drop = core.dropout(self.dropout, dtype=compute_dtype(self.dtype))
        self._set("input_size", dim)
        self._set("output_size", dim)
        self._set("built", True)

    def __call__(self, x: ArrayLike, context: ArrayLike | None = None,
                 train_flag: bool | None = None, training: bool | None = None) -> mx.array:
        x = self.as_input(x, "x", ndim=3)
        ctx = x if context is None else self.as_input(context, "context", ndim=3)
        train = self.mode(train_flag, training)
        for arg, t in (("x", x), ("context", ctx)):
            if t.shape[-1] != self.dim:
                raise self.error(arg, Desc(f"an array of shape {tuple(t.shape)}"),
                                 f"dim={self.dim} features on the last axis")
        if ctx.shape[1] != self.seq_len or ctx.shape[0] != x.shape[0]:
            arg = "x" if context is None else "context"
            raise self.error(arg, Desc(f"an array of shape {tuple(ctx.shape)}"),
                             f"batch {x.shape[0]} and seq_len={self.seq_len} positions")
        b, n = x.shape[:2]
        h, dh = self.heads, self.dh
        kvh = 1 if self.one_kv_head else h
        cdt = compute_dtype(self.dtype)
        self.check_output_size("x", shape_desc(x), (b, h, n, max(self.k, dh)), cdt,
                               "attention logits")
        if b * n == 0:  # the empty result, with no graph (MLX's CPU sum over an empty
            # axis, a gradient, can loop forever)
            return mx.zeros((b, n, self.dim), self.dtype)
        q = self.to_q.project(x).reshape(b, n, h, dh).transpose(0, 2, 1, 3)
        kp = mx.matmul(self.proj_k.T.astype(cdt), self.to_k.project(ctx))  # (b, k, kv)
        if self.share_kv:
            vp = kp
        else:
            vp = mx.matmul(self.proj_v.T.astype(cdt), self.to_v.project(ctx))
        kp = kp.reshape(b, self.k, kvh, dh).transpose(0, 2, 1, 3)
        vp = vp.reshape(b, self.k, kvh, dh).transpose(0, 2, 1, 3)
        drop = _dropout_fn(self, self.attn_drop, train)
        out = K.attention(q, kp, vp, 1.0 / math.sqrt(dh), dropout=drop).astype(cdt)
        out = out.transpose(0, 2, 1, 3).reshape(b, n, h * dh)
        return self.to_out.project(out).astype(self.dtype)


__all__ = ["FAVOR_attention", "Linformer_self_attention"]
