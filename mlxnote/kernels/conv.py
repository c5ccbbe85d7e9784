"""One N-d convolution entry point, :func:`conv`, behind every mlxnote conv layer.

It computes exactly what ``mx.conv_general`` computes (channels-last input
``(N, *spatial, C_in)``, weight ``(C_out, *kernel, C_in // groups)``, strides, explicit
``(lo, hi)`` padding, kernel and input dilation, groups, flip), plus ``groups`` on 3-D
inputs, and picks the fastest formulation for the device it runs on:

* ``'mlx'``: ``mx.conv_general`` (groups on 3-D split per group), the oracle every other
  formulation is tested against.
* ``'mlx-fast'`` (Metal and CUDA): ``'mlx'`` arranged to meet MLX's GPU depthwise kernels'
  conditions: a depthwise conv with ``depth_multiplier > 1`` runs on the input's channels
  repeated (``c*dm + m`` order) with one filter per channel, and a padded 1-D depthwise
  conv pads the input first (the 1-D kernel takes no padding).
* ``'mlx+gemmw'`` / ``'mlx+gemm'``: ``mx.conv_general``'s forward (on the CPU an explicit
  im2col + GEMM when undilated and ungrouped) with, respectively, the weight gradient or
  both gradients of ``'gemm'``.
* ``'gemm'``: im2col (one strided copy) and one GEMM, so the work goes through BLAS;
  grouped convs run one GEMM per group; the weight gradient sums the batch in chunks.
* ``'col2im'``: input-dilated (transposed) convolutions as one GEMM of the input with the
  kernel, then col2im: the taps are summed per stride phase on the input grid and the
  phases interleaved, so no zero of the dilated input is ever multiplied.
* ``'shift'``: depthwise convs (``groups == C_in``) as shifted multiply-adds, one per tap,
  with a gradient written the same way.

:func:`choose` holds the CPU rules, each from a measurement (``benchmarks/bench_conv.py``):
ungrouped undilated convs keep MLX's own forward (an explicit im2col + GEMM) and take
our chunked weight gradient (and, at stride > 1, our input gradient: MLX's runs on naive
loops there); dilated, grouped and 1x1 convs go to ``'gemm'``; depthwise to ``'shift'``;
input-dilated (transposed) to ``'col2im'``. Batches whose column buffer would pass
:data:`COLS_BUDGET` run in chunks chained by ``mx.depends`` (MLX's own CPU conv has no such
bound and runs out of memory on the documented conv3d_transpose example).

On the CPU the GEMM-based forms run in float32 for float16/bfloat16 inputs (MLX's CPU
matmul has no reduced-precision BLAS; float32 accumulation is also the accurate choice)
and cast the result back.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence

import mlx.core as mx

METHODS = ("auto", "mlx", "mlx-fast", "gemm", "col2im", "shift", "mlx+gemm", "mlx+gemmw")
_REDUCED = (mx.float16, mx.bfloat16)


def _tuple(v, n: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    if len(v) != n:
        raise ValueError(f"conv: {name} {v} must have {n} entries")
    return v


def _pairs(padding, n: int) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, int):
        return ((padding, padding),) * n
    if (isinstance(padding, Sequence) and len(padding) == 2 and n != 2
            and all(isinstance(p, Sequence) and len(p) == n for p in padding)):
        return tuple(zip(padding[0], padding[1]))  # mx.conv_general's (lo, hi) form
    out = []
    for p in padding:
        out.append((int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])))
    if len(out) != n:
        raise ValueError(f"conv: padding {padding} must have {n} entries")
    return tuple(out)


def on_cpu() -> bool:
    return mx.default_device().type == mx.DeviceType.cpu


def choose(x_shape, w_shape, strides, dilations, groups, input_dilation) -> str:
    """The formulation :func:`conv` uses for these arguments on the default device.

    ``MLXNOTE_CONV_METHOD=mlx`` or ``mlx-fast`` forces that (general) formulation, e.g. to
    run the GPU formulation's conformance on a CPU."""
    forced = os.environ.get("MLXNOTE_CONV_METHOD")
    if forced in ("mlx", "mlx-fast"):
        return forced
    if not on_cpu():
        return "mlx-fast"
    cin = x_shape[-1]
    if groups == cin and cin > 1 and w_shape[-1] == 1 and all(s == 1 for s in input_dilation):
        return "shift"
    if any(s != 1 for s in input_dilation):
        return "col2im" if groups == 1 and all(s == 1 for s in strides) else "mlx"
    if all(k == 1 for k in w_shape[1:-1]) and all(s == 1 for s in strides):
        return "gemm"  # 1x1: a plain GEMM on the input itself, no column buffer at all
    if groups == 1 and all(d == 1 for d in dilations):
        # MLX's CPU kernel is an explicit im2col + GEMM here, in every dtype; so is its
        # input gradient at stride 1. Its weight gradient sums over the whole batch in one
        # sequential BLAS reduction (2-3x TF's float32 error with the reference BLAS): ours
        # sums chunks. At stride > 1 its input gradient runs input-dilated convolutions on
        # its naive loops (10x slower): keep only its forward.
        return "mlx+gemmw" if all(s == 1 for s in strides) else "mlx+gemm"
    return "gemm"


def out_size(length: int, k: int, stride: int, dilation: int, lo: int, hi: int,
             input_dilation: int = 1) -> int:
    """Output length of one spatial dimension."""
    ld = (length - 1) * input_dilation + 1
    return (ld + lo + hi - (k - 1) * dilation - 1) // stride + 1


def conv(x: mx.array, w: mx.array, strides=1, padding=0, dilations=1, groups: int = 1,
         input_dilation=1, flip: bool = False, bias: mx.array | None = None,
         method: str = "auto", keep_float32: bool = False) -> mx.array:
    """Convolution of channels-last ``x`` with ``w``, as ``mx.conv_general`` defines it.

    Args:
        x: ``(N, *spatial, C_in)``.
        w: ``(C_out, *kernel, C_in // groups)``.
        strides, dilations, input_dilation: an int or one int per spatial dimension.
        padding: an int, one int or ``(lo, hi)`` pair per dimension, or ``(lo_list,
            hi_list)`` as ``mx.conv_general`` takes it; all >= 0.
        groups: channel groups (any rank).
        flip: convolution (kernel flipped) instead of cross-correlation.
        bias: optional ``(C_out,)`` added to the result (fused into the GEMM when it can).
        method: ``'auto'`` (fastest for the device) or one of :data:`METHODS`.
        keep_float32: for float16/bfloat16 inputs, return the float32 result of the CPU
            formulations as it is (the caller rounds once, after its own epilogue).

    Returns: ``(N, *out, C_out)``, in ``x.dtype`` (or float32, see ``keep_float32``).
    """
    n = x.ndim - 2
    if n < 1 or w.ndim != x.ndim:
        raise ValueError(f"conv: input {x.shape} and weight {w.shape} ranks do not match")
    strides = _tuple(strides, n, "strides")
    dilations = _tuple(dilations, n, "dilations")
    input_dilation = _tuple(input_dilation, n, "input_dilation")
    pads = _pairs(padding, n)
    if any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"conv: padding {pads} must be >= 0")
    cin, cout = x.shape[-1], w.shape[0]
    if cin % groups or cout % groups or w.shape[-1] * groups != cin:
        raise ValueError(f"conv: {cin} input channels, weight {w.shape} and groups={groups} "
                         "do not match")
    if method == "auto":
        method = choose(x.shape, w.shape, strides, dilations, groups, input_dilation)
    if method not in METHODS[1:]:
        raise ValueError(f"conv: method {method!r} not in {METHODS}")
    if method in ("mlx", "mlx-fast", "mlx+gemm", "mlx+gemmw"):
        if method == "mlx":
            y = _conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)
        elif method == "mlx-fast":
            y = _conv_mlx_fast(x, w, strides, pads, dilations, groups, input_dilation, flip)
        elif any(s != 1 for s in input_dilation):
            raise ValueError(f"conv: method {method!r} needs input_dilation 1")
        else:
            y = _mlx_forward_gemm_backward(x, w, strides, pads, dilations, groups, flip,
                                           method == "mlx+gemmw")
        if keep_float32 and y.dtype in _REDUCED and on_cpu():
            y = y.astype(mx.float32)  # MLX's CPU GEMM computed it in float32 anyway
            bias = None if bias is None else bias.astype(mx.float32)
        return y if bias is None else y + bias
    nb = x.shape[0]
    per_sample = _cols_per_sample(method, x.shape, w.shape, strides, pads, dilations,
                                  input_dilation)
    if nb > 1 and per_sample * nb > COLS_BUDGET:
        # Bound the column buffer: the batch in chunks, each made to wait for the previous
        # one (mx.depends), since MLX would otherwise evaluate independent chunks together.
        step = max(1, COLS_BUDGET // max(per_sample, 1))
        outs = []
        for i in range(0, nb, step):
            xi = x[i:i + step]
            if outs:
                xi = mx.depends(xi, outs[-1])
            outs.append(conv(xi, w, strides, pads, dilations, groups, input_dilation, flip,
                             bias, method, keep_float32))
        return mx.concatenate(outs, axis=0)
    dtype = x.dtype
    if dtype in _REDUCED:  # CPU formulations accumulate in float32
        x, w = x.astype(mx.float32), w.astype(mx.float32)
        bias = None if bias is None else bias.astype(mx.float32)
    if method == "gemm":
        if any(s != 1 for s in input_dilation):
            raise ValueError("conv: method 'gemm' needs input_dilation 1")
        y = _conv_gemm(x, w, strides, pads, dilations, groups, flip, bias)
    elif method == "col2im":
        if groups != 1 or any(s != 1 for s in strides):
            raise ValueError("conv: method 'col2im' needs groups 1 and strides 1")
        y = _conv_col2im(x, w, pads, dilations, input_dilation, flip, bias)
    else:
        if groups != cin or w.shape[-1] != 1 or any(s != 1 for s in input_dilation):
            raise ValueError("conv: method 'shift' needs a depthwise conv (groups == C_in)")
        y = _conv_shift(x, w, strides, pads, dilations, flip, bias)
    return y.astype(dtype) if y.dtype != dtype and not keep_float32 else y


# Largest im2col/col2im buffer built at once, in float32 elements (256 MiB); larger
# batches run in chunks. (mx.conv_general's CPU kernel builds its own im2col buffer with no
# such bound: 1.1 GB per sample for the documented conv3d_transpose example.)
COLS_BUDGET = 1 << 26


def _cols_per_sample(method, x_shape, w_shape, strides, pads, dilations, input_dilation):
    """Elements of the column buffer one sample needs (0 for formulations without one)."""
    taps = math.prod(w_shape[1:-1])
    if method == "gemm":
        out = [out_size(L, k, s, d, lo, hi) for L, k, s, d, (lo, hi) in
               zip(x_shape[1:-1], w_shape[1:-1], strides, dilations, pads)]
        return math.prod(max(o, 0) for o in out) * taps * x_shape[-1]
    if method == "col2im":
        return math.prod(x_shape[1:-1]) * taps * w_shape[0]
    return 0


# -- GEMM with an accurate weight gradient -----------------------------------------------
_CHUNKS = 16


def _sum_rows(a_t, g):
    """``a_t @ g`` (reduction over the long axis M) as a sum of up to ``_CHUNKS`` partial
    products, so float32 rounding grows like a pairwise sum rather than a sequential one."""
    m = g.shape[0]
    c = m // _CHUNKS
    if c < 4:
        return a_t @ g
    main = c * _CHUNKS
    a3 = a_t[:, :main].reshape(a_t.shape[0], _CHUNKS, c).transpose(1, 0, 2)
    out = (a3 @ g[:main].reshape(_CHUNKS, c, g.shape[1])).sum(axis=0)
    return out if main == m else out + a_t[:, main:] @ g[main:]


def _sum_cols(g):
    m = g.shape[0]
    c = m // _CHUNKS
    if c < 4:
        return g.sum(axis=0)
    main = c * _CHUNKS
    out = g[:main].reshape(_CHUNKS, c, g.shape[1]).sum(axis=1).sum(axis=0)
    return out if main == m else out + g[main:].sum(axis=0)


@mx.custom_function
def gemm(a, b):
    """``a @ b`` for ``a (M, K)`` activations and ``b (K, O)`` weights."""
    return a @ b


@gemm.vjp
def _gemm_vjp(primals, cotangent, output):
    a, b = primals
    return cotangent @ b.T, _sum_rows(a.T, cotangent)


@mx.custom_function
def gemm_bias(a, b, c):
    """``a @ b + c`` (``c`` a bias row), fused in BLAS."""
    return mx.addmm(c, a, b)


@gemm_bias.vjp
def _gemm_bias_vjp(primals, cotangent, output):
    a, b, _ = primals
    g = cotangent
    return g @ b.T, _sum_rows(a.T, g), _sum_cols(g)


# -- mx.conv_general (the oracle) --------------------------------------------------------
def _conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip):
    # mx.conv_general's input gradient has the wrong shape when an input-dilated conv is
    # padded by more than the dilated kernel's reach ((K-1)*d): those outputs only see
    # zeros, so pad less and zero-extend the result instead (stride-1 dimensions).
    ext = []
    for i, (lo_, hi_) in enumerate(pads):
        reach = (w.shape[1 + i] - 1) * dilations[i]
        if input_dilation[i] > 1 and strides[i] == 1:
            ext.append((max(lo_ - reach, 0), max(hi_ - reach, 0)))
        else:
            ext.append((0, 0))
    if any(e for pair in ext for e in pair):
        pads = [(lo_ - e0, hi_ - e1) for (lo_, hi_), (e0, e1) in zip(pads, ext)]
        y = _conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)
        return _pad(y, ext)
    lo = [p[0] for p in pads]
    hi = [p[1] for p in pads]

    def one(xg, wg, g):
        return mx.conv_general(xg, wg, stride=list(strides), padding=(lo, hi),
                               kernel_dilation=list(dilations),
                               input_dilation=list(input_dilation), groups=g, flip=flip)

    if groups == 1 or x.ndim < 5:
        return one(x, w, groups)
    # MLX's 3-D convolution has no groups: one convolution per group.
    cg, og = x.shape[-1] // groups, w.shape[0] // groups
    return mx.concatenate([one(x[..., g * cg:(g + 1) * cg], w[g * og:(g + 1) * og], 1)
                           for g in range(groups)], axis=-1)


def _conv_mlx_fast(x, w, strides, pads, dilations, groups, input_dilation, flip):
    cin, cout = x.shape[-1], w.shape[0]
    depthwise = groups == cin and cin > 1 and w.shape[-1] == 1 and all(
        s == 1 for s in input_dilation)
    if depthwise and cout > cin:  # one filter per (repeated) channel: c*dm + m
        x = mx.repeat(x, cout // cin, axis=-1)
        groups = cout
    if depthwise and x.ndim == 3 and any(p for pair in pads for p in pair):
        x, pads = _pad(x, pads), ((0, 0),)
    return _conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)


def _mlx_forward_gemm_backward(x, w, strides, pads, dilations, groups, flip,
                               mlx_input_grad=False):
    """mx.conv_general's forward with the gradient of the 'gemm' formulation (with
    ``mlx_input_grad``, only the weight gradient: the input one stays mx.conv_general's)."""
    ones = (1,) * len(strides)

    @mx.custom_function
    def f(x, w):
        return _conv_mlx(x, w, strides, pads, dilations, groups, ones, flip)

    @f.vjp
    def f_vjp(primals, cotangent, output):
        def g(x, w):
            xf, wf = (x.astype(mx.float32), w.astype(mx.float32)) if x.dtype in _REDUCED \
                else (x, w)
            return _conv_gemm(xf, wf, strides, pads, dilations, groups, flip, None)

        # Only the gradients are evaluated: the GEMM of this forward is never computed.
        ct = cotangent.astype(mx.float32) if cotangent.dtype in _REDUCED else cotangent
        xx, ww = primals
        if mlx_input_grad:
            _, (dx,) = mx.vjp(lambda x_: _conv_mlx(x_, ww, strides, pads, dilations, groups,
                                                   ones, flip), [xx], [cotangent])
            _, (dw,) = mx.vjp(lambda w_: g(xx, w_), [ww], [ct])
            grads = (dx, dw)
        else:
            _, grads = mx.vjp(g, list(primals), [ct])
        return tuple(gr.astype(p.dtype) for gr, p in zip(grads, primals))

    return f(x, w)


# -- shared helpers ----------------------------------------------------------------------
def _pad(x, pads):
    if any(p for pair in pads for p in pair):
        return mx.pad(x, [(0, 0), *pads, (0, 0)])
    return x


def _taps(kernel):
    return list(itertools.product(*[range(k) for k in kernel]))


def _out_sizes(x_shape, kernel, strides, pads, dilations):
    out = []
    for length, k, s, (lo, hi), d in zip(x_shape[1:-1], kernel, strides, pads, dilations):
        o = out_size(length, k, s, d, lo, hi)
        if o < 1:
            raise ValueError(f"conv: input {tuple(x_shape)} is smaller than the dilated kernel "
                             f"{tuple(kernel)} (dilations {dilations}, padding {pads})")
        out.append(o)
    return out


def _tap_view(xp, tap, out, strides, dilations):
    idx = tuple(slice(i * d, i * d + (o - 1) * s + 1, s)
                for i, o, s, d in zip(tap, out, strides, dilations))
    return xp[(slice(None), *idx)]


# -- im2col + GEMM -----------------------------------------------------------------------
def _im2col(xp, kernel, out, strides, dilations, flip, c0, cg):
    """Columns ``(N*prod(out), prod(kernel)*cg)`` of channels ``[c0, c0+cg)`` of the padded
    input: one strided copy (as MLX's own im2col). Its gradient is the col2im of the
    equivalent per-tap slices (the strided view's own gradient is a slow scatter)."""
    nb = xp.shape[0]
    taps = _taps(kernel)
    offs = [tuple(k - 1 - i for k, i in zip(kernel, t)) for t in taps] if flip else taps

    def by_slices(a):
        vs = [_tap_view(a, o, out, strides, dilations)[..., c0:c0 + cg] for o in offs]
        cols = vs[0] if len(vs) == 1 else mx.concatenate(vs, axis=-1)
        return cols.reshape(nb * math.prod(out), -1)

    if flip or len(taps) == 1:
        return by_slices(xp)

    @mx.custom_function
    def cols(a):
        a = mx.contiguous(a)
        el = [math.prod(a.shape[i + 1:]) for i in range(a.ndim)]  # element strides
        sp = el[1:-1]
        view = mx.as_strided(
            a, (nb, *out, *kernel, cg),
            (el[0], *[e * s for e, s in zip(sp, strides)],
             *[e * d for e, d in zip(sp, dilations)], 1), c0)
        return view.reshape(nb * math.prod(out), -1)

    @cols.vjp
    def cols_vjp(primals, cotangent, output):
        a = primals if isinstance(primals, mx.array) else primals[0]
        return mx.vjp(by_slices, [a], [cotangent])[1][0]

    return cols(xp)


def _conv_gemm(x, w, strides, pads, dilations, groups, flip, bias):
    kernel = w.shape[1:-1]
    out = _out_sizes(x.shape, kernel, strides, pads, dilations)
    xp = _pad(x, pads)
    nb, cout = x.shape[0], w.shape[0]
    cg, og = x.shape[-1] // groups, cout // groups

    def one_group(g):
        cols = _im2col(xp, kernel, out, strides, dilations, flip, g * cg, cg)
        wg = w if groups == 1 else w[g * og:(g + 1) * og]
        wm = wg.reshape(wg.shape[0], -1).T
        if bias is None:
            return gemm(cols, wm)
        return gemm_bias(cols, wm, bias if groups == 1 else bias[g * og:(g + 1) * og])

    y = one_group(0) if groups == 1 else mx.concatenate(
        [one_group(g) for g in range(groups)], axis=-1)
    return y.reshape(nb, *out, cout)


# -- GEMM + col2im (input-dilated, i.e. transposed, convolutions) ------------------------
def _conv_col2im(x, w, pads, dilations, input_dilation, flip, bias):
    nb, *length, cin = x.shape
    n = len(length)
    cout, kernel = w.shape[0], w.shape[1:-1]
    s, d = input_dilation, dilations
    # full[t*s + p*d] += x[t] . w[tap(p)] (tap(p) = p for flip, else mirrored). With
    # p*d = q*s + r, tap p lands in stride phase r at offset q of the input grid: sum the
    # taps per phase on the input grid, then interleave the phases. One GEMM per tap keeps
    # every product contiguous (a single GEMM would leave each tap's slice strided).
    x2 = x.reshape(-1, cin)
    w3 = w.reshape(cout, -1, cin)
    grid = [L + ((k - 1) * dd) // ss for L, k, dd, ss in zip(length, kernel, d, s)]
    phases: dict[tuple[int, ...], mx.array] = {}
    taps = _taps(kernel)
    for j, p in enumerate(taps):
        tap = j if flip else len(taps) - 1 - j
        piece = gemm(x2, w3[:, tap, :].T).reshape(nb, *length, cout)
        q = [pi * dd // ss for pi, dd, ss in zip(p, d, s)]
        r = tuple(pi * dd % ss for pi, dd, ss in zip(p, d, s))
        piece = _pad(piece, [(qi, g - L - qi) for qi, g, L in zip(q, grid, length)])
        phases[r] = piece if r not in phases else phases[r] + piece
    if all(ss == 1 for ss in s):
        full = phases[(0,) * n]
    else:
        zero = None
        stack = []
        for r in itertools.product(*[range(ss) for ss in s]):
            if r not in phases:
                if zero is None:
                    zero = mx.zeros((nb, *grid, cout), dtype=x.dtype)
                phases[r] = zero
            stack.append(phases[r])
        full = mx.stack(stack).reshape(*s, nb, *grid, cout)
        # (*s, N, *grid, C) -> (N, grid_0, s_0, grid_1, s_1, ..., C)
        perm = [n] + [a for i in range(n) for a in (n + 1 + i, i)] + [2 * n + 1]
        full = full.transpose(perm).reshape(nb, *[g * ss for g, ss in zip(grid, s)], cout)
    # Crop (or zero-extend) to the conv_general window: start c0 = (K-1)*d - lo.
    crop, ext = [], []
    for i in range(n):
        c0 = (kernel[i] - 1) * d[i] - pads[i][0]
        size = out_size(length[i], kernel[i], 1, d[i], *pads[i], s[i])
        avail = full.shape[1 + i]
        ext.append((max(-c0, 0), max(c0 + size - avail, 0)))
        crop.append(slice(max(c0, 0), max(c0, 0) + size))
    full = _pad(full, ext)
    y = full[(slice(None), *crop)]
    return y if bias is None else y + bias


# -- depthwise: shifted multiply-adds ----------------------------------------------------
def _shift_forward(x, w, strides, pads, dilations, flip):
    kernel = w.shape[1:-1]
    out = _out_sizes(x.shape, kernel, strides, pads, dilations)
    xp = _pad(x, pads)
    nb, c = x.shape[0], x.shape[-1]
    dm = w.shape[0] // c
    wt = w.reshape(w.shape[0], -1)  # (C*dm, taps), contiguous
    y = None
    for j, t in enumerate(_taps(kernel)):
        off = tuple(k - 1 - i for k, i in zip(kernel, t)) if flip else t
        v = _tap_view(xp, off, out, strides, dilations)
        term = v * wt[:, j] if dm == 1 else v[..., None] * wt[:, j].reshape(c, dm)
        y = term if y is None else y + term
    return y.reshape(nb, *out, c * dm) if dm > 1 else y


def _conv_shift(x, w, strides, pads, dilations, flip, bias):
    """Depthwise conv as shifted multiply-adds, with a gradient written the same way: the
    input gradient is the shift-conv of the padded cotangent with the mirrored taps (stride
    1), the weight gradient one product-and-sum per tap."""
    kernel = w.shape[1:-1]
    reach = [(k - 1) * d for k, d in zip(kernel, dilations)]
    direct = all(s == 1 for s in strides) and all(
        lo <= r and hi <= r for (lo, hi), r in zip(pads, reach))

    @mx.custom_function
    def f(x, w):
        return _shift_forward(x, w, strides, pads, dilations, flip)

    @f.vjp
    def f_vjp(primals, g, output):
        x, w = primals
        c = x.shape[-1]
        dm = w.shape[0] // c
        n = x.ndim - 2
        out = g.shape[1:-1]
        gm = g.reshape(*g.shape[:-1], c, dm) if dm > 1 else g
        xp = _pad(x, pads)
        taps = _taps(kernel)
        axes = tuple(range(n + 1))
        dws = []
        for t in taps:
            off = tuple(k - 1 - i for k, i in zip(kernel, t)) if flip else t
            v = _tap_view(xp, off, out, strides, dilations)
            dws.append((v[..., None] * gm).sum(axis=axes) if dm > 1 else
                       (v * g).sum(axis=axes))
        dw = mx.stack(dws, axis=-1).reshape(w.shape)
        if not direct:
            dx = mx.vjp(lambda x_: _shift_forward(x_, w, strides, pads, dilations, flip),
                        [x], [g])[1][0]
            return dx, dw
        # dx[q] = sum_t g[q + lo - off_t] w_t: views of g padded by (reach - lo, reach - hi)
        gp = _pad(gm, [(r - lo, r - hi) for r, (lo, hi) in zip(reach, pads)]) if dm == 1 \
            else mx.pad(gm, [(0, 0), *[(r - lo, r - hi) for r, (lo, hi) in zip(reach, pads)],
                             (0, 0), (0, 0)])
        wt = w.reshape(w.shape[0], -1)
        length = x.shape[1:-1]
        acc = None
        for j, t in enumerate(taps):
            off = tuple(k - 1 - i for k, i in zip(kernel, t)) if flip else t
            start = [r - o * d for r, o, d in zip(reach, off, dilations)]
            idx = tuple(slice(s0, s0 + L) for s0, L in zip(start, length))
            v = gp[(slice(None), *idx)]
            term = v * wt[:, j] if dm == 1 else v * wt[:, j].reshape(c, dm)
            acc = term if acc is None else acc + term
        dx = acc.sum(axis=-1) if dm > 1 else acc
        return dx, dw

    y = f(x, w)
    return y if bias is None else y + bias
