"""The attention kernels every mlxnote attention layer calls.

:func:`attention` is softmax attention, ``softmax(scale * q @ k^T [mixed] + mask) @ v``.
Where the math allows it (no scores to return, no dropout on the weights, no head mixing)
it runs, on the CPU, through the C++ extension's fused attention (float32: one head per
thread, the logits never written to memory, the backward recomputing the weights from the
softmax statistics) and elsewhere through ``mx.fast.scaled_dot_product_attention``; else
through the plain matmul-softmax composition, which is also the oracle of the tests
(``impl='plain'``).

:func:`linear_attention` is the kernelized (FAVOR) attention
``phi_q @ (phi_k^T @ v)`` with its normalizer, non-causal in O(L) and causal as a chunked
prefix scan whose memory is O(L * m + m * d) per batch row: no ``(B, L, m, d)`` tensor.

Shapes: ``q [B, H, Tq, D]``, ``k [B, Hk, Tk, D]``, ``v [B, Hk, Tk, Dv]`` with ``H % Hk == 0``
(``Hk < H`` is grouped/multi-query attention). A mask is boolean (``True`` = attend) or
additive (float, ``0`` = attend, ``-inf`` or a large negative = masked), broadcastable to
``[B, H, Tq, Tk]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import mlx.core as mx

from .._config import REDUCED, compute_dtype, cpu_formulation
from . import extension
from .fastmath import fast_exp

IMPLS = ("auto", "fast", "plain")


def neg_large(dtype: mx.Dtype) -> float:
    """The value a boolean mask puts on masked logits: the dtype's lowest finite value
    (as ``mx.fast.scaled_dot_product_attention`` does), so a fully masked row gives
    uniform weights instead of NaN."""
    return float(mx.finfo(dtype).min)


def causal_mask(tq: int, tk: int) -> mx.array:
    """Boolean ``[tq, tk]`` mask, ``True`` where key ``j <= i`` (top-left aligned)."""
    return mx.arange(tq)[:, None] >= mx.arange(tk)[None, :]


def merge_masks(mask: mx.array | None, other: mx.array | None,
                dtype: mx.Dtype) -> mx.array | None:
    """Combine two masks (each None, boolean or additive) into one: boolean when both
    are boolean, else additive in ``dtype`` (a boolean one becomes 0 / -inf)."""
    if mask is None:
        return other
    if other is None:
        return mask
    if mask.dtype == mx.bool_ and other.dtype == mx.bool_:
        return mx.logical_and(mask, other)
    if mask.dtype == mx.bool_:
        mask, other = other, mask
    mask = mask.astype(dtype)
    if other.dtype == mx.bool_:
        return mx.where(other, mask, mx.array(-float("inf"), dtype))
    return mask + other.astype(dtype)


# -- softmax -------------------------------------------------------------------------------
# The exponentials of the logits are most of an attention forward pass on a CPU: off macOS
# the softmax runs on kernels.fastmath.fast_exp (exactly 0 for masked logits), and its
# gradient needs no exp (a custom VJP from the output).
# fast_exp holds three arrays the size of its input at once (MLX's softmax one): above this
# many logits, the memory-lean softmax is used.
FAST_EXP_MAX = 1 << 24


def _use_fast_exp(x: mx.array, size: int | None = None) -> bool:
    return (x.dtype == mx.float32 and cpu_formulation()
            and sys.platform != "darwin" and (size or x.size) <= FAST_EXP_MAX)


@mx.custom_function
def _softmax_fast(x):
    e = fast_exp(x, mx.max(x, axis=-1, keepdims=True))
    return e * mx.reciprocal(mx.sum(e, axis=-1, keepdims=True))


@_softmax_fast.vjp
def _softmax_fast_vjp(primals, cotangent, output):
    g = output * (cotangent - mx.sum(cotangent * output, axis=-1, keepdims=True))
    # centred as the C++ kernels do: each row sums to 0, and its rounding along that
    # direction is the gradient a bias on every logit of the row (a key's bias in
    # attention, 0 in theory) would get: 1.07e-6 against TF's 3.6e-7 in a conformance case
    return (g - output * mx.sum(g, axis=-1, keepdims=True),)


def _fused_softmax(x: mx.array):
    """The C++ masked softmax (one multi-threaded pass per row, the mask and the causal
    triangle applied inside) when it can take ``x``: float32, in the CPU formulation."""
    if x.dtype != mx.float32 or x.size == 0:
        return None
    return extension.kernel("masked_softmax")


def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis (the C++ kernel, else ``fast_exp`` on a non-Apple CPU
    for float32 inputs of at most ``FAST_EXP_MAX`` values)."""
    fused = _fused_softmax(x)
    if fused is not None:
        return fused(x)
    if _use_fast_exp(x):
        return _softmax_fast(x)
    return mx.softmax(x, axis=-1, precise=True)


@mx.custom_function
def _logsumexp_fast(x):
    top = mx.max(x, axis=-1, keepdims=True)
    m = mx.where(mx.isfinite(top), top, mx.array(0.0, x.dtype))  # rows of -inf, or an inf
    lse = mx.log(mx.sum(fast_exp(x, m), axis=-1, keepdims=True)) + m
    return mx.where(top == mx.inf, top, lse).squeeze(-1)  # fast_exp stops at exp(88)


@_logsumexp_fast.vjp
def _logsumexp_fast_vjp(x, cotangent, output):  # one input: x is the array itself
    return (softmax(x) * cotangent[..., None],)


def logsumexp(x: mx.array) -> mx.array:
    """``log(sum(exp(x)))`` over the last axis: on a non-Apple CPU for float32 inputs of at
    most ``FAST_EXP_MAX`` values, the row max plus the log of a :func:`fast_exp` sum, its
    gradient :func:`softmax` (the C++ kernel where loaded); else ``mx.logsumexp``, whose
    CPU exp is a scalar loop (``docs/performance.md``: the cross-entropy over 2048 x 1000
    logits of a Transformer LM's training step)."""
    if _use_fast_exp(x) and x.shape[-1]:
        return _logsumexp_fast(x)
    return mx.logsumexp(x, axis=-1)


def masked_softmax(logits: mx.array, mask: mx.array | None = None,
                   causal: bool = False) -> mx.array:
    """``softmax(logits masked)`` over the last axis: a boolean ``mask`` (True = attend)
    writes the dtype's lowest value into masked logits, an additive one is added; causal
    masks keys ``j > i``. Masked logits get no gradient. One C++ pass where it can."""
    fused = _fused_softmax(logits)
    if fused is not None and (mask is None or mask.dtype in (mx.bool_, mx.float32)):
        return fused(logits, mask, causal)
    if causal:
        mask = merge_masks(mask, causal_mask(logits.shape[-2], logits.shape[-1]),
                           logits.dtype)
    if mask is not None:
        if mask.dtype == mx.bool_:
            logits = mx.where(mask, logits, mx.array(neg_large(logits.dtype), logits.dtype))
        else:
            logits = logits + mask.astype(logits.dtype)
    return softmax(logits)


def _mix_heads(s: mx.array, w: mx.array) -> mx.array:
    """``s'[b, m, ...] = sum_n s[b, n, ...] w[n, m]`` (talking-heads projection)."""
    b, n = s.shape[:2]
    out = mx.matmul(w.T, s.reshape(b, n, -1))
    return out.reshape(b, w.shape[1], *s.shape[2:])


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float | mx.array,
              mask: mx.array | None = None, *, causal: bool = False,
              dropout: Callable[[mx.array], mx.array] | None = None,
              pre_mix: mx.array | None = None, post_mix: mx.array | None = None,
              return_logits: bool = False, return_probs: bool = False,
              impl: str = "auto", dtype: mx.Dtype | None = None):
    """Softmax attention over the last two axes.

    Args:
        q, k, v: ``[B, H, Tq, D]``, ``[B, Hk, Tk, D]``, ``[B, Hk, Tk, Dv]``, one dtype.
        scale: multiplies the logits (a float, or a scalar array for a learned scale).
        mask: ``None``, boolean (True = attend) or additive, broadcastable to
            ``[B, H, Tq, Tk]``. Additive masks are cast to the q dtype.
        causal: also mask keys ``j > i`` (top-left aligned).
        dropout: applied to the attention weights before they meet ``v`` (e.g. a bound
            dropout layer); forces the plain path.
        pre_mix, post_mix: ``[H, H]`` talking-heads projections of the logits before the
            mask and softmax and of the weights after it; force the plain path.
        return_logits: also return the scaled (pre-mixed) masked logits ``[B, H, Tq, Tk]``.
        return_probs: also return the (post-mixed) weights before dropout.
        impl: ``'auto'`` (fast path when allowed), ``'fast'`` or ``'plain'``.
        dtype: the dtype of the results, and whose lowest value a boolean mask writes
            into the logits (default q's; a layer computing in float32 for a 16-bit dtype
            passes its own).

    Returns:
        ``out [B, H, Tq, Dv]``, or a tuple ``(out, logits?, probs?)`` with what was asked.

    ``impl='auto'`` takes the fused or fast path when nothing forces the plain one; with
    ``return_logits`` the output still takes it and the logits are a separate lazy
    product, computed only if used. On the CPU the fused C++ kernel takes float32 inputs
    (the extension loaded); otherwise, where the fast op is the same matmul-softmax
    composition, the plain path is taken for ``return_logits`` (sharing the logits), for
    16-bit inputs (its softmax runs in float32, backward too) and off macOS (its softmax
    uses :func:`fast_exp`, faster and more accurate than MLX's CPU exp there:
    ``docs/performance.md``).
    """
    if impl not in IMPLS:
        raise ValueError(f"attention: impl got {impl!r}; allowed: {IMPLS}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention: q, k, v must be rank 4 [B, H, T, D]; got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    h, hk = q.shape[1], k.shape[1]
    if h % hk or v.shape[1] != hk:
        raise ValueError(f"attention: heads q={h}, k={hk}, v={v.shape[1]}: k and v need "
                         f"the same number of heads, dividing q's")
    if mask is not None and mask.dtype != mx.bool_ and mask.dtype != q.dtype:
        mask = mask.astype(q.dtype)
    needs_plain = dropout is not None or pre_mix is not None or post_mix is not None \
        or return_probs
    if impl == "fast" and needs_plain:
        raise ValueError("attention: impl='fast' cannot apply dropout, head mixing or return "
                         "the weights")
    on_cpu = cpu_formulation()
    if impl == "auto" and on_cpu and not needs_plain:
        out = _fused(q, k, v, scale, mask, causal)
        if out is not None:
            # The logits are a separate lazy product, computed only if used.
            out = out.astype(dtype or q.dtype)
            return (out, _logits(q, k, scale, mask, causal, None, dtype or q.dtype)
                    .astype(dtype or q.dtype)) if return_logits else out
    use_fast = impl == "fast" or (impl == "auto" and not needs_plain and not (
        # On the CPU the fast op is the same composition (MLX's exp, its softmax gradient
        # in the input dtype): the plain path shares the logits, keeps 16-bit gradients
        # exact and, off macOS, runs its softmax on fast_exp.
        on_cpu and (return_logits or q.dtype != mx.float32 or _use_fast_exp(
            q, q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]))))
    if use_fast and not isinstance(scale, (int, float)):
        q, scale = q * scale.astype(q.dtype), 1.0
    dtype = dtype or q.dtype
    if use_fast:
        out = _fast(q, k, v, float(scale), mask, causal).astype(dtype)
        if not return_logits:
            return out
        return out, _logits(q, k, scale, mask, causal, None, dtype).astype(dtype)
    return _plain(q, k, v, scale, mask, causal, dropout, pre_mix, post_mix, return_logits,
                  return_probs, dtype)


def _fused(q, k, v, scale, mask, causal):
    """The C++ fused attention (one head per thread, the logits only in its cache) when it
    can take these: float32, not empty, a boolean or float32 mask; else ``None``."""
    fused = extension.kernel("attention")
    if fused is None or q.dtype != mx.float32 or k.dtype != mx.float32 \
            or v.dtype != mx.float32 or 0 in (q.size, k.size, v.size) \
            or not (mask is None or mask.dtype in (mx.bool_, mx.float32)):
        return None
    h, hk = q.shape[1], k.shape[1]
    if hk < h:
        k, v = mx.repeat(k, h // hk, axis=1), mx.repeat(v, h // hk, axis=1)
    if not isinstance(scale, (int, float)):
        q, scale = q * scale.astype(q.dtype), 1.0
    return fused(q, k, v, float(scale), mask, causal)[0]


def _fast(q, k, v, scale, mask, causal):
    tq, tk = q.shape[2], k.shape[2]
    if causal and mask is None and tq == tk:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal")
    if causal:
        mask = merge_masks(mask, causal_mask(tq, tk), q.dtype)
    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


def _logits(q, k, scale, mask, causal, pre_mix, low_dtype=None):
    """Scaled (pre-mixed) masked logits; a boolean mask writes ``low_dtype``'s lowest
    value (default q's dtype)."""
    low_dtype = low_dtype or q.dtype
    h, hk = q.shape[1], k.shape[1]
    if 1 < hk < h:
        k = mx.repeat(k, h // hk, axis=1)
    if isinstance(scale, (int, float)):
        s = (q * mx.array(scale, q.dtype)) @ k.swapaxes(-1, -2) if scale != 1.0 \
            else q @ k.swapaxes(-1, -2)
    else:
        s = (q @ k.swapaxes(-1, -2)) * scale.astype(q.dtype)
    if pre_mix is not None:
        s = _mix_heads(s, pre_mix.astype(s.dtype))
    if causal:
        mask = merge_masks(mask, causal_mask(q.shape[2], k.shape[2]), q.dtype)
    if mask is not None:
        if mask.dtype == mx.bool_:
            s = mx.where(mask, s, mx.array(neg_large(low_dtype), s.dtype))
        else:
            s = s + mask.astype(s.dtype)
    return s


def _plain(q, k, v, scale, mask, causal, dropout, pre_mix, post_mix, return_logits,
           return_probs, dtype):
    cdt = compute_dtype(q.dtype)
    if cdt != q.dtype:
        q, k, v = q.astype(cdt), k.astype(cdt), v.astype(cdt)
    # Unless the masked logits are returned, the mask goes into the softmax (one pass).
    inner = not return_logits
    s = _logits(q, k, scale, None if inner else mask, causal and not inner, pre_mix,
                low_dtype=dtype)
    h, hk = q.shape[1], v.shape[1]
    if 1 < hk < h:
        v = mx.repeat(v, h // hk, axis=1)
    res = attend(s, v, mask if inner else None, causal=causal and inner, dropout=dropout,
                 post_mix=post_mix, return_probs=return_probs)
    out, p = res if return_probs else (res, None)
    out = out.astype(dtype)
    if not (return_logits or return_probs):
        return out
    return (out,) + ((s.astype(dtype),) if return_logits else ()) + (
        (p.astype(dtype),) if return_probs else ())


def attend(logits: mx.array, v: mx.array, mask: mx.array | None = None, *,
           causal: bool = False, dropout: Callable[[mx.array], mx.array] | None = None,
           post_mix: mx.array | None = None, return_probs: bool = False):
    """The plain path from given logits ``[B, H, Tq, Tk]`` (e.g. additive 'concat'
    scores): mask, softmax, optional post-mix and dropout, then ``@ v [B, H|1, Tk, Dv]``.
    The softmax runs in float32; the weights and output come back in ``v``'s dtype (the
    products run in :func:`compute_dtype`).

    Returns ``out``, or ``(out, probs)`` (probs before dropout) with ``return_probs``.
    """
    dtype = v.dtype
    v = v.astype(compute_dtype(dtype))
    if logits.dtype in REDUCED:
        # The softmax runs in float32 forward and backward (the gradient of the logits is
        # a difference of nearly equal sums, which 16-bit arithmetic loses).
        logits = logits.astype(mx.float32)
    if mask is not None and mask.dtype != mx.bool_:
        mask = mask.astype(logits.dtype)
    p = masked_softmax(logits, mask, causal).astype(v.dtype)
    if post_mix is not None:
        p = _mix_heads(p, post_mix.astype(p.dtype))
    w = dropout(p) if dropout is not None else p
    out = (w.astype(v.dtype) @ v).astype(dtype)
    return (out, p.astype(dtype)) if return_probs else out


# -- linear (kernelized) attention --------------------------------------------------------
def linear_attention(phi_q: mx.array, phi_k: mx.array, v: mx.array, causal: bool = False,
                     chunk: int | None = None) -> tuple[mx.array, mx.array]:
    """Numerator and normalizer of kernelized attention.

    Args:
        phi_q ``[B, Lq, r]``, phi_k ``[B, Lk, r]``: feature maps of queries and keys.
        v ``[B, Lk, dv]``: values.
        causal: inclusive prefix sums over positions (needs ``Lq == Lk``).
        chunk: chunk length of the causal scan (default ``min(L, 128)``).

    Returns:
        ``(num [B, Lq, dv], den [B, Lq, 1])`` with, non-causal,
        ``num = phi_q @ (phi_k^T @ v)`` and ``den = phi_q @ sum_j phi_k[j]``; causal,
        ``num_i = phi_q[i] . sum_{j<=i} phi_k[j] (x) v[j]`` and
        ``den_i = phi_q[i] . sum_{j<=i} phi_k[j]``.

    The causal scan works chunk by chunk: inside a chunk, a masked ``C x C`` product;
    across chunks, the exclusive prefix sum of per-chunk ``r x dv`` states. Memory is
    ``O(L * C + (L / C) * r * dv)`` per batch row.

    16-bit inputs are accumulated in float32 (the results are float32): each output is a
    long chain of sums, and rounding every partial one loses several bits.
    """
    if phi_q.dtype in REDUCED:
        phi_q, phi_k, v = (t.astype(mx.float32) for t in (phi_q, phi_k, v))
    if not causal:
        kv = phi_k.swapaxes(-1, -2) @ v  # [B, r, dv]
        num = phi_q @ kv
        den = phi_q @ mx.sum(phi_k, axis=1, keepdims=True).swapaxes(-1, -2)
        return num, den
    b, length, r = phi_q.shape
    dv = v.shape[-1]
    c = max(1, min(length, chunk or 128))
    n = -(-length // c)
    pad = n * c - length
    vv = mx.concatenate([v, mx.ones((*v.shape[:-1], 1), v.dtype)], axis=-1)  # den as a column
    if pad:
        widths = [(0, 0), (0, pad), (0, 0)]
        phi_q, phi_k, vv = mx.pad(phi_q, widths), mx.pad(phi_k, widths), mx.pad(vv, widths)
    qc = phi_q.reshape(b, n, c, r)
    kc = phi_k.reshape(b, n, c, r)
    vc = vv.reshape(b, n, c, dv + 1)
    # Inside each chunk: (phi_q phi_k^T masked to j <= i) @ [v, 1].
    tri = causal_mask(c, c)
    intra = mx.where(tri, qc @ kc.swapaxes(-1, -2), mx.array(0, qc.dtype)) @ vc
    # Across chunks: exclusive prefix sum of the per-chunk states phi_k^T [v, 1].
    states = kc.swapaxes(-1, -2) @ vc  # [B, n, r, dv + 1]
    prev = mx.cumsum(states, axis=1, reverse=False, inclusive=False)
    out = (intra + qc @ prev).reshape(b, n * c, dv + 1)[:, :length]
    return out[..., :dv], out[..., dv:]
