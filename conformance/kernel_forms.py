"""The kernels' public forms against MLX's own ops (the oracles the kernels document).

:func:`mlxnote.kernels.conv.conv` promises exactly what ``mx.conv_general`` computes (plus
groups on 3-D inputs), for every padding form it accepts (an int, one int or ``(lo, hi)``
pair per dimension, ``mx.conv_general``'s ``((lo...), (hi...))``), strides, kernel and input
dilation, groups, flip, a bias and each formulation (``method``); the attention kernels
promise ``mx.fast.scaled_dot_product_attention`` (every ``impl``, boolean/additive/causal
masks, grouped heads) and ``mx.softmax``; the layer norm kernel ``mx.fast.layer_norm``.
Each form is compared forward and backward (a seeded cotangent; gradients of every float
argument) in float32, scale-aware: ``max |ours - oracle| <= 1e-5 max |oracle| + 1e-6``;
its result's dtype must be the documented one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import mlx.core as mx
import numpy as np

RTOL, ATOL = 1e-5, 1e-6


@dataclass
class FormRow:
    name: str
    passed: bool
    err: float  # worst (max |ours - oracle| / max |oracle|) over the output and gradients
    detail: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _arrays(rng, *shapes, dtype=mx.float32):
    return [mx.array(rng.standard_normal(s).astype(np.float32)).astype(dtype) for s in shapes]


def agree(name: str, fn: Callable, oracle: Callable, args: list, diff: tuple[int, ...],
          dtype: mx.Dtype | None = None, seed: int = 0) -> FormRow:
    """``fn(*args)`` against ``oracle(*args)``: the output and the gradients with respect to
    ``args[i]`` for ``i in diff`` under one seeded cotangent; the output's dtype must be
    ``dtype`` (default the oracle's)."""
    try:
        rng = np.random.default_rng(seed)
        ours, want = fn(*args), oracle(*args)
        ct = mx.array(rng.standard_normal(want.shape).astype(np.float32)).astype(want.dtype)

        def grads(f):
            def loss(*d):
                a = list(args)
                for i, v in zip(diff, d):
                    a[i] = v
                return mx.sum(f(*a).astype(mx.float32) * ct.astype(mx.float32))
            return mx.grad(loss, argnums=list(range(len(diff))))(*[args[i] for i in diff]) \
                if diff else []

        g_ours, g_want = grads(fn), grads(oracle)
        g_ours = list(g_ours) if isinstance(g_ours, (list, tuple)) else [g_ours]
        g_want = list(g_want) if isinstance(g_want, (list, tuple)) else [g_want]
        worst, bad = 0.0, []
        expected = dtype or want.dtype
        if ours.dtype != expected:
            bad.append(f"output dtype {ours.dtype}, documented {expected}")
        for label, a, b in [("output", ours, want)] + [
                (f"grad[{i}]", x, y) for i, x, y in zip(diff, g_ours, g_want)]:
            a64 = np.array(a.astype(mx.float32), np.float64)
            b64 = np.array(b.astype(mx.float32), np.float64)
            if a64.shape != b64.shape:
                bad.append(f"{label} shape {a64.shape} != {b64.shape}")
                continue
            scale = float(np.abs(b64).max()) if b64.size else 0.0
            err = float(np.abs(a64 - b64).max()) if b64.size else 0.0
            worst = max(worst, err / (scale or 1.0))
            if err > RTOL * scale + ATOL:
                bad.append(f"{label}: max err {err:.3g} (scale {scale:.3g})")
        return FormRow(name, not bad, worst, "; ".join(bad))
    except Exception as e:  # the report shows it; the run fails
        return FormRow(name, False, float("nan"), f"{type(e).__name__}: {e}")


# -- conv ------------------------------------------------------------------------------------
def _conv_oracle(strides, pads, dilations, groups, input_dilation, flip, with_bias):
    """``mx.conv_general`` (3-D groups as one conv per group) plus the bias."""
    lo, hi = [p[0] for p in pads], [p[1] for p in pads]

    def one(x, w, g):
        return mx.conv_general(x, w, stride=list(strides), padding=(lo, hi),
                               kernel_dilation=list(dilations),
                               input_dilation=list(input_dilation), groups=g, flip=flip)

    def oracle(x, w, b=None):
        if groups > 1 and x.ndim == 5:
            cg, og = x.shape[-1] // groups, w.shape[0] // groups
            y = mx.concatenate([one(x[..., i * cg:(i + 1) * cg], w[i * og:(i + 1) * og], 1)
                                for i in range(groups)], axis=-1)
        else:
            y = one(x, w, groups)
        return y + b if with_bias else y

    return oracle


# (label, n, x spatial, C_in, C_out, kernel, strides, padding as given, padding as (lo, hi)
#  pairs, dilations, groups, input_dilation, flip, bias, methods)
CONV_FORMS = [
    ("1-D int padding", 1, (11,), 4, 6, (3,), 1, 1, ((1, 1),), 1, 1, 1, False, True,
     ("auto", "mlx", "mlx-fast", "gemm", "mlx+gemm", "mlx+gemmw")),
    ("1-D ((lo,), (hi,)) padding, strided", 1, (11,), 4, 6, (3,), 2, ((2,), (0,)),
     ((2, 0),), 1, 1, 1, False, True, ("auto", "mlx", "gemm", "mlx+gemm")),
    ("1-D bare (lo, hi) pair padding, dilated", 1, (12,), 4, 6, (3,), 1, [(1, 2)],
     ((1, 2),), 2, 1, 1, False, False, ("auto", "mlx", "gemm")),
    ("2-D per-dimension ints", 2, (7, 6), 4, 6, (3, 2), (1, 2), [1, 0], ((1, 1), (0, 0)),
     1, 1, 1, False, True, ("auto", "mlx", "mlx-fast", "gemm", "mlx+gemm", "mlx+gemmw")),
    ("2-D per-dimension pairs, grouped", 2, (7, 6), 4, 6, (3, 3), 1, [(1, 0), (2, 1)],
     ((1, 0), (2, 1)), 1, 2, 1, False, True, ("auto", "mlx", "gemm")),
    ("2-D depthwise, flipped", 2, (7, 6), 4, 8, (3, 3), 1, 1, ((1, 1), (1, 1)), 1, 4, 1,
     True, True, ("auto", "mlx", "mlx-fast", "gemm", "shift", "ext")),
    ("1-D depthwise, strided", 1, (13,), 4, 4, (3,), 2, 1, ((1, 1),), 1, 4, 1, False, False,
     ("auto", "mlx", "mlx-fast", "shift", "ext")),
    ("2-D input-dilated (transposed)", 2, (5, 4), 4, 6, (3, 3), 1, [(2, 2), (2, 1)],
     ((2, 2), (2, 1)), 1, 1, (2, 2), True, True, ("auto", "mlx", "col2im")),
    ("3-D ((lo...), (hi...)) padding", 3, (5, 4, 6), 4, 6, (3, 2, 3), 1,
     ((1, 0, 2), (0, 1, 1)), ((1, 0), (0, 1), (2, 1)), 1, 1, 1, False, True,
     ("auto", "mlx", "gemm", "mlx+gemm", "mlx+gemmw")),
    ("3-D grouped (conv_general has no 3-D groups)", 3, (5, 4, 6), 4, 6, (3, 3, 3), 1, 1,
     ((1, 1),) * 3, 1, 2, 1, False, True, ("auto", "mlx", "gemm")),
    # (a padding beyond the dilated kernel's reach would meet mx.conv_general's wrong
    # input-gradient shape there, which kernels.conv works around: kernels/conv/_mlx.py)
    ("3-D input-dilated, kernel-dilated", 3, (4, 3, 4), 4, 5, (3, 2, 3), 1, 1,
     ((1, 1),) * 3, (2, 1, 2), 1, (2, 2, 1), True, False, ("auto", "mlx", "col2im")),
]


def _per_dim(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _conv_ours(conv, strides, padding, dil, groups, idil, flip, method, x, w, b=None):
    """``kernels.conv.conv`` called with the arguments as the form spells them."""
    return conv(x, w, strides, padding, dil, groups, idil, flip, b, method)


def conv_rows() -> list[FormRow]:
    from mlxnote.kernels import conv as kconv
    from mlxnote.kernels import extension

    rows = []
    rng = np.random.default_rng(3)
    for (label, n, spatial, cin, cout, kernel, strides, padding, pairs, dil, groups, idil,
         flip, with_bias, methods) in CONV_FORMS:
        x, w, b = _arrays(rng, (2, *spatial, cin), (cout, *kernel, cin // groups), (cout,))
        oracle = _conv_oracle(_per_dim(strides, n), pairs, _per_dim(dil, n), groups,
                              _per_dim(idil, n), flip, with_bias)
        args = [x, w, b] if with_bias else [x, w]
        dilated = any(s != 1 for s in _per_dim(idil, n))
        if extension.kernel("dnnl_conv") is not None and (not dilated or (
                groups == 1 and all(s == 1 for s in _per_dim(strides, n))
                and kconv.transposed_pads(w.shape, _per_dim(dil, n), pairs) is not None)):
            methods = (*methods, "onednn")  # oneDNN's kernels, where loaded and applicable
        for method in methods:
            if method == "ext" and extension.get() is None:
                continue
            ours = functools.partial(_conv_ours, kconv.conv, strides, padding, dil, groups,
                                     idil, flip, method)
            rows.append(agree(f"conv {label}, method={method!r}", ours, oracle, args,
                              tuple(range(len(args)))))
    rows += chunked_rows(kconv, rng)
    # 16-bit inputs: the result in the input's dtype, or float32 with keep_float32
    xb, wb = _arrays(rng, (2, 9, 4), (6, 3, 4), dtype=mx.bfloat16)
    o16 = _conv_oracle((1,), ((1, 1),), (1,), 1, (1,), False, False)
    rows.append(agree("conv bfloat16 input: result in bfloat16", lambda x, w: kconv.conv(
        x, w, 1, 1), lambda x, w: o16(x.astype(mx.float32), w.astype(mx.float32)).astype(
        mx.bfloat16), [xb, wb], (), dtype=mx.bfloat16))
    rows[-1] = _loose(rows[-1], 1e-2)
    rows.append(agree("conv bfloat16 input, keep_float32: result in float32",
                      lambda x, w: kconv.conv(x, w, 1, 1, keep_float32=True),
                      lambda x, w: o16(x.astype(mx.float32), w.astype(mx.float32)),
                      [xb, wb], (), dtype=mx.float32
                      if kconv_cpu() else mx.bfloat16))
    rows[-1] = _loose(rows[-1], 1e-2)
    return rows


def chunked_rows(kconv, rng) -> list[FormRow]:
    """Batches whose column buffer is over ``COLS_BUDGET`` run in chunks (patched to 1
    value here, so that every batch is over it): batches of 3 (one sample a chunk) and 1
    (no chunking) are still ``mx.conv_general``'s convolution, forward and backward."""
    rows = []
    w, b = _arrays(rng, (5, 3, 3, 4), (5,))
    oracle = _conv_oracle((2, 1), ((1, 1), (0, 2)), (1, 1), 1, (1, 1), False, True)
    saved = kconv.COLS_BUDGET
    kconv.COLS_BUDGET = 1
    try:
        for nb in (3, 1):
            (x,) = _arrays(rng, (nb, 6, 7, 4))
            for method in ("gemm", "onednn"):
                ours = functools.partial(_conv_ours, kconv.conv, (2, 1), ((1, 1), (0, 2)), 1,
                                         1, 1, False, method)
                if method == "onednn" and kconv.extension.kernel("dnnl_conv") is None:
                    continue
                rows.append(agree(f"conv, batch {nb} over the column budget (chunked), "
                                  f"method={method!r}", ours, oracle, [x, w, b], (0, 1, 2)))
    finally:
        kconv.COLS_BUDGET = saved
    return rows


def kconv_cpu() -> bool:
    from mlxnote._config import cpu_formulation

    return cpu_formulation()


def _loose(row: FormRow, rtol: float) -> FormRow:
    """A 16-bit form: judged at ``rtol`` of the scale (one rounding), dtypes exactly."""
    if not row.passed and all("max err" not in d or row.err <= rtol
                              for d in row.detail.split("; ")):
        return FormRow(row.name, True, row.err, "")
    return row


# -- attention, softmax, layer norm ------------------------------------------------------------
def _sdpa_oracle(scale, causal):
    def oracle(q, k, v, mask=None):
        if causal:
            tri = mx.tril(mx.ones((q.shape[2], k.shape[2]), mx.bool_))
            mask = tri if mask is None else (mx.logical_and(mask, tri) if mask.dtype ==
                                             mx.bool_ else mask + mx.where(tri, 0.0, -mx.inf))
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    return oracle


def attention_rows() -> list[FormRow]:
    from mlxnote.kernels import attention as KA
    from mlxnote.kernels import norm as KN

    rng = np.random.default_rng(5)
    rows = []
    q, k, v = _arrays(rng, (2, 4, 6, 8), (2, 2, 7, 8), (2, 2, 7, 5))
    bool_mask = mx.array(rng.uniform(size=(2, 1, 6, 7)) < 0.7)
    bool_mask = mx.concatenate([mx.ones_like(bool_mask[..., :1]), bool_mask[..., 1:]], -1)
    add_mask = mx.array(rng.standard_normal((6, 7)).astype(np.float32))
    for mname, mask in (("no mask", None), ("boolean mask", bool_mask),
                        ("additive mask", add_mask)):
        for causal in (False, True):
            for impl in ("auto", "plain", "fast"):
                def ours(q, k, v, m=None, causal=causal, impl=impl):
                    return KA.attention(q, k, v, 0.35, m, causal=causal, impl=impl)
                args = [q, k, v] + ([mask] if mask is not None else [])
                rows.append(agree(f"attention grouped heads, {mname}, causal={causal}, "
                                  f"impl={impl!r}", ours, _sdpa_oracle(0.35, causal), args,
                                  (0, 1, 2)))
    s = _arrays(rng, (3, 5, 9))[0]
    rows.append(agree("softmax", KA.softmax, lambda x: mx.softmax(x, axis=-1, precise=True),
                      [s], (0,)))
    m = mx.array(rng.uniform(size=(3, 5, 9)) < 0.7)
    m = mx.concatenate([mx.ones_like(m[..., :1]), m[..., 1:]], -1)
    rows.append(agree("masked_softmax, boolean mask", KA.masked_softmax,
                      lambda x, mk: mx.softmax(mx.where(mk, x, -1e30), axis=-1, precise=True),
                      [s, m], (0,)))
    tri = mx.tril(mx.ones((5, 9), mx.bool_))
    rows.append(agree("masked_softmax, causal", lambda x: KA.masked_softmax(x, None, True),
                      lambda x: mx.softmax(mx.where(tri, x, -1e30), axis=-1, precise=True),
                      [s], (0,)))
    x, g, b = _arrays(rng, (4, 6, 16), (16,), (16,))
    for impl in ("auto", "plain"):
        rows.append(agree(f"layer_norm kernel, gamma and beta, impl={impl!r}",
                          lambda x, g, b, impl=impl: KN.layer_norm(x, g, b, 1e-5, impl),
                          lambda x, g, b: mx.fast.layer_norm(x, g, b, 1e-5), [x, g, b],
                          (0, 1, 2)))
        rows.append(agree(f"layer_norm kernel, no gamma/beta, impl={impl!r}",
                          lambda x, impl=impl: KN.layer_norm(x, None, None, 1e-3, impl),
                          lambda x: mx.fast.layer_norm(x, None, None, 1e-3), [x], (0,)))
    return rows


def run() -> list[FormRow]:
    return conv_rows() + attention_rows()


if __name__ == "__main__":
    import mlxnote  # noqa: F401  (before mlx.core's first use: the fast BLAS)

    for r in run():
        print(f"{'ok  ' if r.passed else 'FAIL'} {r.name}: {r.err:.2e} {r.detail}")
