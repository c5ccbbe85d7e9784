"""The dense product ``x @ W + b`` behind ``nn.dense`` and every projection built on it
(attention, Transformer feed-forward blocks, Linformer), with one gradient formulation.

The forward is :func:`addmm` (one fused call on a GPU; the product, then the bias, on the
CPU). The bias gradient sums the cotangent's rows pairwise (O(log n) roundings, where MLX's
sequential sum has O(n)); the input and weight gradients are the products MLX's own
autodiff forms.
"""

from __future__ import annotations

import mlx.core as mx

from .._config import cpu_formulation


def addmm(c: mx.array, a: mx.array, b: mx.array) -> mx.array:
    """``a (M, K) @ b (K, N) + c`` for a bias row ``c (N,)``: MLX's ``addmm`` on a GPU (the
    bias fused into the product); in the CPU formulation the product, then the add, as
    TensorFlow's dense does. MLX's CPU ``addmm`` first copies the broadcast bias into the
    output with its generic strided copy, on one thread: 2048x256 @ 256x1024 took 6.4-6.7
    ms against 5.3-5.7 as product and add (``docs/performance.md``)."""
    return a @ b + c if cpu_formulation() else mx.addmm(c, a, b)


def pairwise_rows(g: mx.array) -> mx.array:
    """Sum of the rows of ``g (n, d)`` by halving."""
    while g.shape[0] > 1:
        h = g.shape[0] // 2
        s = g[:h] + g[h:2 * h]
        g = mx.concatenate([s, g[2 * h:]]) if g.shape[0] % 2 else s
    return g[0]


ROW_BLOCKS = 16


def row_block_product(a_t: mx.array, g: mx.array) -> mx.array:
    """``a_t (k, M) @ g (M, n)`` (a reduction over the long axis M: a weight gradient) as a
    sum of up to ``ROW_BLOCKS`` partial products of row blocks, so float32 rounding grows
    like a pairwise sum rather than a sequential one."""
    m = g.shape[0]
    c = m // ROW_BLOCKS
    if c < 4:
        return a_t @ g
    main = c * ROW_BLOCKS
    a3 = a_t[:, :main].reshape(a_t.shape[0], ROW_BLOCKS, c).transpose(1, 0, 2)
    out = (a3 @ g[:main].reshape(ROW_BLOCKS, c, g.shape[1])).sum(axis=0)
    return out if main == m else out + a_t[:, main:] @ g[main:]


@mx.custom_function
def _affine(x: mx.array, w: mx.array, b: mx.array) -> mx.array:
    lead = x.shape[:-1]
    return addmm(b, x.reshape(-1, x.shape[-1]), w).reshape(*lead, w.shape[-1])


@_affine.vjp
def _affine_vjp(primals, cotangent, output):
    x, w, _ = primals
    g = cotangent
    dw = mx.matmul(x.swapaxes(-1, -2), g)
    if dw.ndim > 2:  # as MLX's matmul gradient: one product per batch entry, then the sum
        dw = dw.sum(axis=tuple(range(dw.ndim - 2)))
    return g @ w.T, dw, pairwise_rows(g.reshape(-1, g.shape[-1]))


def linear(x: mx.array, w: mx.array, b: mx.array | None = None) -> mx.array:
    """``x @ w + b`` over the last axis.

    Args:
        x: ``(..., in)``. w: ``(in, out)``. b: ``(out,)`` or ``None``.

    Returns: ``(..., out)``, in the inputs' dtype.
    """
    if b is None:
        return x @ w
    if x.size == 0:
        return mx.zeros((*x.shape[:-1], w.shape[-1]), x.dtype) + b
    return _affine(x, w, b)
