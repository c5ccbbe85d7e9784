"""Normalization kernels: batch-norm training statistics and normalization, layer norm
over trailing axes, and the distributed sum the synchronized batch norm reduces with.

* :func:`batch_norm_train`: training-mode batch norm with a closed-form VJP (channels last
  in float32: the C++ extension's, one pass per statistic, multi-threaded);
* :func:`moments`: (masked, optionally all-reduced) mean and biased variance;
* :func:`normalize`: ``(x - mean) * rsqrt(var + eps) * gamma + beta`` as one
  multiply-add;
* :func:`group_norm`: statistics per sample and group of channels (masked or not); channels
  last in float32 on the C++ extension's kernel (the batch norm's, per sample);
* :func:`layer_norm`: over the last axis; ``mx.fast.layer_norm`` (fused) on a GPU, on the
  CPU the C++ extension's (one pass per row forward and backward, multi-threaded) or else
  an MLX kernel with its own VJP (``impl='plain'``: the autodiff oracle).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import mlx.core as mx

from .._config import cpu_formulation, to_float32
from . import extension

MASK_EPSILON = 1e-7  # Keras's backend epsilon in the masked moments' denominators


@functools.lru_cache(maxsize=256)
def _bn_train_kernel(red: tuple[int, ...], eps: float):
    """Training-mode batch norm over the axes ``red`` with a hand-written VJP.

    ``f(x, g, b) -> (y, mean, var)`` with ``g``, ``b``, ``mean``, ``var`` of the
    keepdims shape. The forward is two-pass (centred variance, as ``tf.nn.moments``); the
    backward is the closed form ``dx = a (dy - mean(dy) - xhat mean(dy xhat))``: two
    reductions and one fused-in-place pass for ``dx`` (autodiff of the same two-pass
    composition took twice as long on the CPU here). ``mean``/``var`` are for the moving
    statistics only and are used under ``stop_gradient``.
    """

    @mx.custom_function
    def f(x, g, b):
        m = mx.mean(x, red, keepdims=True)
        v = mx.mean(mx.square(x - m), red, keepdims=True)
        a = g * mx.rsqrt(v + eps)
        return x * a + (b - m * a), m, v

    @f.vjp
    def f_vjp(primals, cotangents, outputs):
        x, g, _ = primals
        dy = cotangents[0]
        _, m, v = outputs
        n = x.size // m.size
        r = mx.rsqrt(v + eps)
        xc = x - m
        db = mx.sum(dy, red, keepdims=True)
        dg = mx.sum(dy * xc, red, keepdims=True) * r  # sum(dy * xhat)
        a = g * r
        # dx = a * (dy - db/n - xhat * dg/n), xhat = xc * r
        dx = dy * a + xc * (-(a * r * dg) / n) + (-(a * db) / n)
        return dx, dg, db

    return f


def _row_mean(a: mx.array, d: int) -> mx.array:
    """Mean over the last axis (of size ``d``), keepdims, as the sum of ``(d / m, m)`` blocks:
    on the CPU, MLX reduces a middle axis with a short contiguous inner axis faster than a
    long contiguous row (``docs/performance.md``)."""
    m = next((m for m in (64, 32, 16) if d % m == 0 and d // m >= 8), None)
    if m is None:
        return mx.mean(a, -1, keepdims=True)
    return a.reshape(*a.shape[:-1], d // m, m).sum(-2).sum(-1, keepdims=True) * (1.0 / d)


@functools.lru_cache(maxsize=256)
def _ln_cpu_kernel(d: int, eps: float, has_g: bool, has_b: bool):
    """Layer norm over the last axis (size ``d``) for the CPU, with a hand-written VJP.

    On the CPU ``mx.fast.layer_norm`` is a plain composition (its fused kernels are GPU
    only); this one uses :func:`_row_mean` and keeps the row mean and ``rsqrt(var + eps)``
    for the backward pass instead of recomputing them. ``f(x, g, b) -> (y, mean, rstd)``;
    ``g``/``b`` are ignored (any array) when ``has_g``/``has_b`` is False.
    """

    @mx.custom_function
    def f(x, g, b):
        mu = _row_mean(x, d)
        xc = x - mu
        r = mx.rsqrt(_row_mean(mx.square(xc), d) + eps)
        y = xc * r
        if has_g:
            y = y * g
        if has_b:
            y = y + b
        return y, mu, r

    @f.vjp
    def f_vjp(primals, cotangents, outputs):
        x, g, b = primals
        dy = cotangents[0]
        _, mu, r = outputs
        red = tuple(range(x.ndim - 1))
        xhat = (x - mu) * r
        db = mx.sum(dy, red) if has_b else mx.zeros_like(b)
        if has_g:
            p = dy * xhat
            dg = mx.sum(p, red)
            gdy, s2 = dy * g, _row_mean(p * g, d)
        else:
            dg, gdy = mx.zeros_like(g), dy
            s2 = _row_mean(dy * xhat, d)
        dx = (gdy - _row_mean(gdy, d) - xhat * s2) * r
        return dx, dg, db

    return f


@mx.custom_function
def all_sum(x):
    """``all_sum`` over the global group whose VJP all-sums the cotangent, so that every
    rank gets the gradient of the whole (concatenated) batch's loss."""
    return mx.distributed.all_sum(x)


@all_sum.vjp
def _all_sum_vjp(primals, cotangent, output):
    return mx.distributed.all_sum(cotangent)




def batch_norm_train(x: mx.array, g: mx.array, b: mx.array, red: tuple[int, ...],
                     eps: float) -> tuple[mx.array, mx.array, mx.array]:
    """Training-mode batch norm over the axes ``red``: ``(y, mean, var)`` with ``g``,
    ``b``, ``mean``, ``var`` of the keepdims shape (``mean``/``var`` for the moving
    statistics: use them under ``stop_gradient``). Channels last (``red`` every axis
    but the last) in float32 runs the C++ kernel where the extension is on."""
    fused = extension.kernel("batch_norm_train")
    if fused is not None and tuple(red) == tuple(range(x.ndim - 1)) and x.size and \
            all(a.dtype == mx.float32 for a in (x, g, b)):
        c = x.shape[-1]
        y, mean, var = fused(x, g.reshape(c), b.reshape(c), float(eps))
        return y, mean.reshape(g.shape), var.reshape(g.shape)
    return _bn_train_kernel(tuple(red), float(eps))(x, g, b)


def group_norm(x: mx.array, groups: int, axis: int, eps: float, g: mx.array | None = None,
               b: mx.array | None = None, mask: mx.array | None = None) -> mx.array:
    """Group norm of float32 ``x (N, ..., C, ...)`` whose channel axis ``axis`` (> 0) holds
    ``groups`` groups of adjacent channels: per sample and group, the mean and biased
    variance over the group's channels and every other non-batch axis (weighted by
    ``mask``, broadcastable to ``x``: a group with no weight gives 0), then ``* g + b``
    (each ``(C,)`` or ``None``). Channels last and unmasked runs the C++ kernel where the
    extension is on."""
    c = x.shape[axis]
    fused = extension.kernel("group_norm")
    if fused is not None and mask is None and axis == x.ndim - 1 and x.size:
        one = mx.ones((c,), mx.float32)
        return fused(x, one if g is None else to_float32(g),
                     mx.zeros((c,), mx.float32) if b is None else to_float32(b),
                     int(groups), float(eps))[0]
    gshape = list(x.shape[:axis]) + [groups, c // groups] + list(x.shape[axis + 1:])
    xg = x.reshape(gshape)
    red = tuple(i for i in range(1, xg.ndim) if i != axis)
    if mask is None:
        mean = mx.mean(xg, red, keepdims=True)
        var = mx.mean(mx.square(xg - mean), red, keepdims=True)
    else:
        w = mx.broadcast_to(to_float32(mask), x.shape).reshape(gshape)
        sw = mx.sum(w, red, keepdims=True)
        empty = sw == 0
        safe = mx.where(empty, 1.0, sw)
        mean = mx.where(empty, 0.0, mx.sum(w * xg, red, keepdims=True) / safe)
        var = mx.where(empty, 0.0, mx.sum(w * mx.square(xg - mean), red, keepdims=True) / safe)
    pshape = [1] * xg.ndim
    pshape[axis], pshape[axis + 1] = groups, c // groups
    return normalize(xg, mean, var, eps, None if g is None else to_float32(g).reshape(pshape),
                     None if b is None else to_float32(b).reshape(pshape)).reshape(x.shape)


def moments(x: mx.array, red: tuple[int, ...], mask: mx.array | None = None,
            reduce: Callable[[mx.array], mx.array] | None = None) -> tuple[mx.array, mx.array]:
    """Mean and biased variance (keepdims) over ``red``: weighted by ``mask`` (the
    documented masked moments: ``sum(w x) / (sum(w) + 1e-7)``, ``sum(w (w x - mean)^2) /
    (sum(w) + 1e-7)``) and/or with every sum passed through ``reduce`` (e.g. :func:`all_sum`
    to combine the ranks of a distributed group)."""
    reduce = reduce or (lambda t: t)
    if mask is None:
        s = mx.sum(x, red, keepdims=True)
        n = mx.full(s.shape, x.size // s.size, mx.float32)
        s, n = reduce(mx.stack([s, n]))
        mean = s / n
        var = reduce(mx.sum(mx.square(x - mean), red, keepdims=True)) / n
        return mean, var
    w = mx.broadcast_to(to_float32(mask), x.shape)
    wx = w * x
    s, sw = reduce(mx.stack([mx.sum(wx, red, keepdims=True), mx.sum(w, red, keepdims=True)]))
    den = sw + MASK_EPSILON
    mean = s / den
    var = reduce(mx.sum(w * mx.square(wx - mean), red, keepdims=True)) / den
    return mean, var


def normalize(x: mx.array, mean: mx.array, var: mx.array, eps: float,
              g: mx.array | None = None, b: mx.array | None = None) -> mx.array:
    """``(x - mean) * rsqrt(var + eps) * g + b`` (``g``/``b`` optional) as ``x * a + c``."""
    a = mx.rsqrt(var + eps)
    if g is not None:
        a = a * g
    c = -mean * a
    if b is not None:
        c = c + b
    return x * a + c


def layer_norm(x: mx.array, g: mx.array | None, b: mx.array | None, eps: float,
               impl: str = "auto") -> mx.array:
    """Layer norm of ``x (..., d)`` over its last axis, then ``* g + b`` (each ``(d,)`` or
    ``None``). The CPU formulation computes in float32 (cast the input); ``impl='plain'``
    is the composition MLX's autodiff differentiates (the oracle)."""
    if impl == "plain":
        mu = mx.mean(x, -1, keepdims=True)
        xc = x - mu
        y = xc * mx.rsqrt(mx.mean(mx.square(xc), -1, keepdims=True) + eps)
        y = y if g is None else y * g
        return y if b is None else y + b
    if not cpu_formulation():
        return mx.fast.layer_norm(x, g, b, eps)  # one fused kernel, forward and backward
    fused = extension.kernel("layer_norm")
    if fused is not None and x.size:
        return fused(to_float32(x), None if g is None else to_float32(g),
                     None if b is None else to_float32(b), float(eps))
    one = mx.array(1.0)
    f = _ln_cpu_kernel(x.shape[-1], float(eps), g is not None, b is not None)
    return f(to_float32(x), one if g is None else g, one if b is None else b)[0]
