"""One step/scan core for the recurrent layers (RNN, GRU, LSTM and their cells).

The layers compute the input projection of every timestep in one matmul,
``xp = x @ kernel + bias`` of shape ``(B, T, k*H)``, and hand it to :func:`scan`, which runs
the recurrence

* ``'rnn'``  (Keras ``SimpleRNN``): ``h = act(xp_t + h @ U)``;
* ``'gru'``  (Keras ``GRU(reset_after=False)``, gate blocks ``r, z, h`` in Note's order):
  ``r, z = ract(xp_rz + h @ U_rz)``, ``hh = act(xp_h + (r * h) @ U_h)``,
  ``h = z * h + (1 - z) * hh``; with ``reset_after=True`` (Keras 3's default GRU), the
  reset gate applies after the recurrent matmul, which has its own bias ``b_U``:
  ``u = h @ U + b_U``, ``r, z = ract(xp_rz + u_rz)``, ``hh = act(xp_h + r * u_h)``;
* ``'lstm'`` (Keras ``LSTM``, gate blocks ``i, f, o, c`` in Note's order):
  ``i, f, o = ract(xp_ifo + h @ U_ifo)``, ``cc = act(xp_c + h @ U_c)``,
  ``c = f * c + i * cc``, ``h = o * act(c)``.

A ``mask (B, T)`` (Keras's semantics) skips the masked steps: there the states (``h``, and
``c``) carry over unchanged.

The fused path (the default) is an :func:`mx.custom_function`: the forward loop does one
matmul per step (two for the GRU without ``reset_after``) and keeps the activated gates;
the backward loop does the elementwise chain rule and the same matmuls, and the recurrent
weight gradient is one product over all timesteps at the end, as cuDNN does (in row
blocks: :func:`kernels.linear.row_block_product`), instead of one per step plus a running
sum. A masked step passes the state gradients through and gives no input gradient.
``fused=False`` is the plain MLX loop differentiated by MLX's autodiff: the fused path's
test oracle.

Sigmoid, tanh, relu and linear gates differentiate from their outputs; any other
activation (a name or a callable) is applied per gate block and differentiated with
:func:`mx.vjp` at the saved pre-activation, so every activation works on both paths.
In float16/bfloat16 the forward rounds like TensorFlow's separate ops (product, then sum)
and the backward recurrence runs in float32, rounded once at the end.

The C++ extension (``_core.rnn_scan``, :func:`_native`) runs the whole sequence as one
primitive, forward and backward, wherever it can: the CPU formulation, float32, tanh
gates with sigmoid recurrent gates (Keras's defaults), any mask and both GRU variants;
per step one GEMM through the fast BLAS (two for the GRU without ``reset_after``) and the
gate arithmetic fused and multi-threaded. It has no second-order gradients (an error names
``MLXNOTE_EXT=0``). Elsewhere the MLX paths below run.

Compilation (:func:`policy`): untraced float32 calls on the CPU run a compiled forward loop
with the fast activations of :mod:`mlxnote.kernels.fastmath`; inside ``mx.grad``, MLX's
own ops uncompiled (a compiled function retraces on every call there); inside an outer
``mx.compile`` (a compiled training step), the fast activations, which that compile fuses.
The measurements behind it are in ``docs/performance.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import mlx.core as mx

from .._config import REDUCED
from . import extension
from .fastmath import FAST, FROM_OUTPUT
from .linear import row_block_product
from .trace_policy import policy, tracing

KINDS = {"rnn": 1, "gru": 3, "lstm": 4}  # gate blocks per kind


class Act:
    """An activation applied to ``n`` equal gate blocks along the last axis."""

    def __init__(self, fn: Callable, fast: bool = False):
        self.known = fn in FROM_OUTPUT
        self.dout = FROM_OUTPUT.get(fn)
        self.fn = FAST.get(fn, fn) if fast else fn

    def __call__(self, z: mx.array, n: int = 1) -> mx.array:
        if self.known or n == 1:
            return self.fn(z)
        return mx.concatenate([self.fn(p) for p in mx.split(z, n, axis=-1)], axis=-1)

    def grad(self, z: mx.array | None, y: mx.array, g: mx.array, n: int = 1) -> mx.array:
        """``g * act'(z)``; ``z`` (the pre-activation) is needed only when not ``known``."""
        if self.known:
            return g if self.dout is None else g * self.dout(y).astype(g.dtype)
        return mx.vjp(lambda a: self(a, n), [z], [g])[1][0]


def _mm_add(x: mx.array, h: mx.array, w: mx.array) -> mx.array:
    """``x + h @ w``: one fused op in float32; in float16/bfloat16 the product is rounded
    before the sum, as TensorFlow's separate ops do, which keeps long reduced-precision
    recurrences on TensorFlow's trajectory."""
    if x.dtype == mx.float32:
        return mx.addmm(x, h, w)
    return x + h @ w


def _gru_after(x: mx.array, h: mx.array, wh: mx.array, bh: mx.array, ract: Act):
    """A reset-after GRU step's gates: ``(u = h @ U + b_U, a = xp_rz + u_rz, ract(a))``,
    in Keras's order of operations (product, then the recurrent bias, then the input)."""
    hsz = h.shape[-1]
    u = _mm_add(bh, h, wh)
    a = x[:, :2 * hsz] + u[:, :2 * hsz]
    return u, a, ract(a, 2)


# -- plain MLX: the oracle -------------------------------------------------------------
def _plain(kind: str, xp, wh, h0, c0, act: Act, ract: Act, mask=None, bh=None):
    hsz = h0.shape[-1]
    h, c, hs = h0, c0, []
    for t in range(xp.shape[1]):
        x = xp[:, t]
        cn = c
        if kind == "rnn":
            hn = act(_mm_add(x, h, wh))
        elif kind == "gru":
            if bh is not None:  # reset_after
                u, _, rz = _gru_after(x, h, wh, bh, ract)
                hh = act(x[:, 2 * hsz:] + rz[:, :hsz] * u[:, 2 * hsz:])
            else:
                rz = ract(_mm_add(x[:, :2 * hsz], h, wh[:, :2 * hsz]), 2)
                hh = act(_mm_add(x[:, 2 * hsz:], rz[:, :hsz] * h, wh[:, 2 * hsz:]))
            z = rz[:, hsz:]
            hn = z * h + (1 - z) * hh
        else:
            g = _mm_add(x, h, wh)
            s = ract(g[:, :3 * hsz], 3)
            i, f, o = s[:, :hsz], s[:, hsz:2 * hsz], s[:, 2 * hsz:]
            cn = f * c + i * act(g[:, 3 * hsz:])
            hn = o * act(cn)
        if mask is not None:  # a masked step carries the states over
            hn = mx.where(mask[:, t, None], hn, h)
            cn = cn if kind != "lstm" else mx.where(mask[:, t, None], cn, c)
        h, c = hn, cn
        hs.append(h)
    return hs, c


def _transposed(w):
    """The recurrent weights (an array, or a tuple of them) transposed, row-contiguous."""
    if isinstance(w, (tuple, list)):
        return type(w)(mx.contiguous(a.T) for a in w)
    return mx.contiguous(w.T)


# -- fused: forward steps keep what the backward steps need ----------------------------
def _steps(kind: str, act: Act, ract: Act, reset_after: bool = False):
    """(forward step, backward step) for one kind and pair of activations."""
    if kind == "rnn":
        def fwd(x, h, c, wh):
            z = _mm_add(x, h, wh)
            y = act(z)
            return y, c, {} if act.known else {"z": z}

        def bwd(dh, dc, h_prev, c_prev, h, c, saved, wt):
            dz = act.grad(saved.get("z"), h, dh)
            return dz, dz @ wt, dc

        return fwd, bwd

    if kind == "gru" and reset_after:
        return _gru_after_steps(act, ract)

    if kind == "gru":
        def fwd(x, h, c, wh):
            hsz = h.shape[-1]
            a = _mm_add(x[:, :2 * hsz], h, wh[0])
            rz = ract(a, 2)
            rh = rz[:, :hsz] * h
            b = _mm_add(x[:, 2 * hsz:], rh, wh[1])
            hh = act(b)
            z = rz[:, hsz:]
            hn = z * h + (1 - z) * hh  # Keras's order of operations (fp16 rounding)
            saved = {"rz": rz, "rh": rh, "hh": hh}
            if not ract.known:
                saved["a"] = a
            if not act.known:
                saved["b"] = b
            return hn, c, saved

        def bwd(dh, dc, h_prev, c_prev, h, c, saved, wt):
            rz, hh = saved["rz"], saved["hh"]
            a, b = saved.get("a"), saved.get("b")
            hsz = h.shape[-1]
            r, z = rz[:, :hsz], rz[:, hsz:]
            db = act.grad(b, hh, dh * (1 - z))
            drh = db @ wt[1]
            dz = dh * (h_prev - hh)
            da = ract.grad(a, rz, mx.concatenate([drh * h_prev, dz], axis=-1), 2)
            dh_prev = dh * z + drh * r + da @ wt[0]
            return mx.concatenate([da, db], axis=-1), dh_prev, dc

        return fwd, bwd

    def fwd(x, h, c, wh):
        hsz = h.shape[-1]
        g = _mm_add(x, h, wh)
        zs, zc = g[:, :3 * hsz], g[:, 3 * hsz:]
        s = ract(zs, 3)
        cc = act(zc)
        cn = s[:, hsz:2 * hsz] * c + s[:, :hsz] * cc
        tc = act(cn)
        saved = {"s": s, "cc": cc, "tc": tc}
        if not ract.known:
            saved["zs"] = zs
        if not act.known:
            saved["zc"] = zc
        return s[:, 2 * hsz:] * tc, cn, saved

    def bwd(dh, dc, h_prev, c_prev, h, c, saved, wt):
        s, cc, tc = saved["s"], saved["cc"], saved["tc"]
        zs, zc = saved.get("zs"), saved.get("zc")
        hsz = h.shape[-1]
        i, f, o = s[:, :hsz], s[:, hsz:2 * hsz], s[:, 2 * hsz:]
        dc = dc + act.grad(c, tc, dh * o)
        dzs = ract.grad(zs, s, mx.concatenate([dc * cc, dc * c_prev, dh * tc], axis=-1), 3)
        dzc = act.grad(zc, cc, dc * i)
        dg = mx.concatenate([dzs, dzc], axis=-1)
        return dg, dg @ wt, dc * f

    return fwd, bwd


def _gru_after_steps(act: Act, ract: Act):
    """The reset-after GRU's steps; ``w`` is ``(U, b_U)``. The backward step returns the
    input-projection gradient; the recurrent one is that with its ``h`` block times ``r``."""
    def fwd(x, h, c, w):
        hsz = h.shape[-1]
        u, a, rz = _gru_after(x, h, w[0], w[1], ract)
        uh = u[:, 2 * hsz:]
        b = x[:, 2 * hsz:] + rz[:, :hsz] * uh
        hh = act(b)
        z = rz[:, hsz:]
        saved = {"rz": rz, "uh": uh, "hh": hh}
        if not ract.known:
            saved["a"] = a
        if not act.known:
            saved["b"] = b
        return z * h + (1 - z) * hh, c, saved

    def bwd(dh, dc, h_prev, c_prev, h, c, saved, wt):
        rz, uh, hh = saved["rz"], saved["uh"], saved["hh"]
        hsz = h.shape[-1]
        r, z = rz[:, :hsz], rz[:, hsz:]
        db = act.grad(saved.get("b"), hh, dh * (1 - z))
        dz = dh * (h_prev - hh)
        da = ract.grad(saved.get("a"), rz, mx.concatenate([db * uh, dz], axis=-1), 2)
        du = mx.concatenate([da, db * r], axis=-1)
        return mx.concatenate([da, db], axis=-1), dh * z + du @ wt[0], dc

    return fwd, bwd


def _split_wh(kind: str, reset_after: bool, wh: mx.array, extra: tuple):
    """The recurrent weights as the steps take them: ``(U, b_U)`` for a reset-after GRU,
    ``(U_rz, U_h)`` for the other GRU, ``U`` otherwise."""
    if reset_after:
        return (wh, extra[0])
    if kind != "gru":
        return wh
    hsz = wh.shape[0]
    return (mx.contiguous(wh[:, :2 * hsz]), mx.contiguous(wh[:, 2 * hsz:]))


@lru_cache(maxsize=64)  # keyed by the activation functions
def _fused(kind: str, act_fn: Callable, ract_fn: Callable, compiled: bool, fast: bool,
           reset_after: bool = False, masked: bool = False):
    """The custom-VJP core ``(xp, wh, h0, c0[, b_U][, mask]) -> (hs, c, cs, saved)``."""
    act, ract = Act(act_fn, fast), Act(ract_fn, fast)
    fwd, bwd = _steps(kind, act, ract, reset_after)
    lstm = kind == "lstm"

    def split_wh(wh, extra):
        return _split_wh(kind, reset_after, wh, extra)

    def forward(xp, wh, h0, c0, *extra):
        w = split_wh(wh, extra)
        h, c = h0, c0
        hs, cs, saved = [], [], []
        for t in range(xp.shape[1]):
            hn, cn, sv = fwd(xp[:, t], h, c, w)
            if masked:  # a masked step carries the states over
                m = extra[-1][:, t, None]
                hn = mx.where(m, hn, h)
                cn = mx.where(m, cn, c) if lstm else cn
            h, c = hn, cn
            hs.append(h)
            cs.append(c)
            saved.append(sv)
        stacked = {k: mx.stack([sv[k] for sv in saved], axis=1) for k in saved[0]}
        cseq = mx.stack(cs, axis=1) if lstm else c
        return mx.stack(hs, axis=1), c, cseq, stacked

    def backward(wh, h0, c0, dhseq, dc_last, hseq, cseq, saved, extra):
        # float16/bfloat16: the backward recurrence runs in float32 (MLX's matmuls and sums
        # accumulate in float32 too); the gradients are rounded once at the end.
        dtype = wh.dtype
        mask = extra[-1] if masked else None
        extra = extra[:-1] if masked else extra
        if dtype in REDUCED:
            f32 = mx.float32
            wh, h0, c0, dhseq, dc_last, hseq, cseq = (
                a.astype(f32) for a in (wh, h0, c0, dhseq, dc_last, hseq, cseq))
            saved = {k: v.astype(f32) for k, v in saved.items()}
            extra = tuple(a.astype(f32) for a in extra)
        # Each step's state gradient multiplies by the recurrent weights transposed: copied
        # once, so no step's product has a transposed operand (oneDNN ran 32x256x1024 3-4x
        # faster so: docs/performance.md).
        wt = _transposed(split_wh(wh, extra))
        steps = hseq.shape[1]
        dgs = [None] * steps
        dh, dc = dhseq[:, -1], dc_last
        for t in range(steps - 1, -1, -1):
            h_prev = hseq[:, t - 1] if t else h0
            c_prev = (cseq[:, t - 1] if t else c0) if lstm else c0
            c_t = cseq[:, t] if lstm else c0
            sv = {k: v[:, t] for k, v in saved.items()}
            if masked:  # a masked step: the state gradients pass through, no gate gradient
                m, dh_in, dc_in = mask[:, t, None], dh, dc
                dh = mx.where(m, dh, 0)
                dc = mx.where(m, dc, 0) if lstm else dc
            dgs[t], dh_prev, dc = bwd(dh, dc, h_prev, c_prev, hseq[:, t], c_t, sv, wt)
            if masked:
                dh_prev = mx.where(m, dh_prev, dh_in)
                dc = mx.where(m, dc, dc_in) if lstm else dc
            dh = dh_prev + dhseq[:, t - 1] if t else dh_prev
        dxp = mx.stack(dgs, axis=1)
        hsz = h0.shape[-1]
        flat = dxp.reshape(-1, dxp.shape[-1])
        hprev = mx.concatenate([h0[:, None], hseq[:, :-1]], axis=1).reshape(-1, hsz)
        grads = []
        if reset_after:  # du: the input-projection gradient, its h block times r
            r = saved["rz"][..., :hsz].reshape(-1, hsz)
            du = mx.concatenate([flat[:, :2 * hsz], flat[:, 2 * hsz:] * r], axis=1)
            dwh = row_block_product(hprev.T, du)
            grads.append(du.sum(axis=0))
        elif kind == "gru":
            rh = saved["rh"].reshape(-1, hsz)
            dwh = mx.concatenate([row_block_product(hprev.T, flat[:, :2 * hsz]),
                                  row_block_product(rh.T, flat[:, 2 * hsz:])], axis=1)
        else:
            dwh = row_block_product(hprev.T, flat)
        out = tuple(a.astype(dtype) for a in (dxp, dwh, dh, dc, *grads))
        return out + ((mx.zeros_like(mask),) if masked else ())

    if compiled:
        forward = mx.compile(forward)
    core = mx.custom_function(forward)

    @core.vjp
    def core_vjp(primals, cotangents, outputs):
        xp, wh, h0, c0, *extra = primals
        dhseq, dc_last, _, _ = cotangents
        hseq, _, cseq, saved = outputs
        return backward(wh, h0, c0, dhseq, dc_last, hseq, cseq, saved, tuple(extra))

    return core


def _native(kind, xp, wh, h0, c0, act, ract, mask, bh):
    """``(hseq, c)`` from the C++ kernel, or ``None`` where it does not apply."""
    run = extension.kernel("rnn_scan")
    arrays = [a for a in (xp, wh, h0, c0, bh) if a is not None]
    if run is None or act is not mx.tanh or (kind != "rnn" and ract is not mx.sigmoid) \
            or any(a.dtype != mx.float32 for a in arrays) or 0 in xp.shape or 0 in wh.shape:
        return None
    name = "gru_after" if bh is not None else kind
    outs = run(name, xp, wh, h0, c0 if kind == "lstm" else bh, mask)
    return outs[0], outs[1][:, -1] if kind == "lstm" else None


def scan(kind: str, xp: mx.array, wh: mx.array, h0: mx.array, c0: mx.array | None = None,
         activation: Callable = mx.tanh, recurrent_activation: Callable = mx.sigmoid,
         fused: bool = True, compiled: bool | None = None, fast: bool | None = None, *,
         mask: mx.array | None = None, reset_after: bool = False,
         recurrent_bias: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
    """Run a recurrence over precomputed input projections.

    Args:
        kind: ``'rnn'``, ``'gru'`` or ``'lstm'``.
        xp: ``(B, T, k*H)`` input projections (bias included), gate blocks in Note's order
            (GRU ``r, z, h``; LSTM ``i, f, o, c``).
        wh: ``(H, k*H)`` recurrent kernel, same block order.
        h0: ``(B, H)`` initial state; ``c0``: ``(B, H)`` initial cell state (LSTM).
        activation, recurrent_activation: functions ``mx.array -> mx.array``.
        fused: the custom-VJP core (default) or the plain autodiff loop (the oracle).
        compiled: compile the fused forward loop with :func:`mx.compile`; ``None``
            chooses (:func:`policy`).
        fast: use ``fastmath.fast_tanh``/``fast_sigmoid`` for tanh/sigmoid gates;
            ``None`` chooses (:func:`policy`).
        mask: ``(B, T)`` boolean, False where a step is skipped (its states carry over).
        reset_after: GRU only: the reset gate applies after the recurrent matmul (Keras
            3's default GRU), whose bias is ``recurrent_bias (k*H,)`` (``None``: none).

    Returns:
        ``(hs, c)``: the states ``(B, T, H)`` after each step and the last cell state
        (LSTM) or ``None``.
    """
    if kind not in KINDS:
        raise ValueError(f"scan: kind {kind!r}; allowed: {sorted(KINDS)}")
    if reset_after and kind != "gru":
        raise ValueError(f"scan: reset_after=True for kind {kind!r}; allowed: only 'gru'")
    lstm = kind == "lstm"
    bh = None
    if reset_after:
        bh = recurrent_bias if recurrent_bias is not None else mx.zeros((wh.shape[1],),
                                                                          wh.dtype)
    if mask is not None:
        mask = mask.astype(mx.bool_)
    if not fused:
        hs, c = _plain(kind, xp, wh, h0, c0, Act(activation), Act(recurrent_activation),
                       mask, bh)
        return mx.stack(hs, axis=1), c if lstm else None
    if compiled is None and fast is None:
        native = _native(kind, xp, wh, h0, c0, activation, recurrent_activation, mask, bh)
        if native is not None:
            return native
    if c0 is None:
        c0 = mx.zeros((1,), h0.dtype)  # unused by rnn/gru; keeps the signature fixed
    if compiled is None or fast is None:
        auto_compiled, auto_fast = policy(xp.dtype, tracing(xp, wh, h0, c0))
        compiled = auto_compiled if compiled is None else compiled
        fast = auto_fast if fast is None else fast
    core = _fused(kind, activation, recurrent_activation, bool(compiled), bool(fast),
                  reset_after, mask is not None)
    extra = ([bh] if reset_after else []) + ([mask] if mask is not None else [])
    hseq, c, _, _ = core(xp, wh, h0, c0, *extra)
    return hseq, c if lstm else None
