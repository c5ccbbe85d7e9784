"""im2col + GEMM and GEMM + col2im convolutions, with an accurate weight gradient."""

from __future__ import annotations

import itertools
import math

import mlx.core as mx

from .. import extension
from ..linear import ROW_BLOCKS, addmm, row_block_product
from ._common import kernel_taps, out_size, out_sizes, pad, tap_view

# -- GEMM with an accurate weight gradient -----------------------------------------------
_CHUNKS = ROW_BLOCKS
CACHE_COLS = 1 << 22  # float32 columns (16 MiB) a GEMM + col2im chunk keeps in cache


_sum_rows = row_block_product  # the precision check patches it here


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
    """``a @ b + c`` (``c`` a bias row): :func:`kernels.linear.addmm`."""
    return addmm(c, a, b)


@gemm_bias.vjp
def _gemm_bias_vjp(primals, cotangent, output):
    a, b, _ = primals
    g = cotangent
    return g @ b.T, _sum_rows(a.T, g), _sum_cols(g)


# -- im2col + GEMM -----------------------------------------------------------------------
def _im2col(xp, kernel, out, strides, dilations, flip, c0, cg):
    """Columns ``(N*prod(out), prod(kernel)*cg)`` of channels ``[c0, c0+cg)`` of the padded
    input: one strided copy (as MLX's own im2col). Its gradient is the col2im of the
    equivalent per-tap slices (the strided view's own gradient is a slow scatter)."""
    nb = xp.shape[0]
    taps = kernel_taps(kernel)
    offs = [tuple(k - 1 - i for k, i in zip(kernel, t)) for t in taps] if flip else taps

    def by_slices(a):
        vs = [tap_view(a, o, out, strides, dilations)[..., c0:c0 + cg] for o in offs]
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


def conv_gemm(x, w, strides, pads, dilations, groups, flip, bias):
    kernel = w.shape[1:-1]
    out = out_sizes(x.shape, kernel, strides, pads, dilations)
    ext = extension.get()
    if ext is not None and flip:  # a flipped kernel is the mirrored one, unflipped
        w, flip = w[(slice(None), *[slice(None, None, -1)] * len(kernel))], False
    xp = x if ext is not None else pad(x, pads)
    nb, cout = x.shape[0], w.shape[0]
    cg, og = x.shape[-1] // groups, cout // groups

    def cols_of(c0):
        if ext is None:
            return _im2col(xp, kernel, out, strides, dilations, flip, c0, cg)
        # The C++ im2col: multi-threaded, padding on the fly (no padded copy).
        cols = ext.im2col(x, out, list(kernel), list(strides), list(dilations),
                          [lo for lo, _ in pads], c0, cg)
        return cols.reshape(nb * math.prod(out), -1)

    def one_group(g):
        cols = cols_of(g * cg)
        wg = w if groups == 1 else w[g * og:(g + 1) * og]
        wm = wg.reshape(wg.shape[0], -1).T
        if bias is None:
            return gemm(cols, wm)
        return gemm_bias(cols, wm, bias if groups == 1 else bias[g * og:(g + 1) * og])

    y = one_group(0) if groups == 1 else mx.concatenate(
        [one_group(g) for g in range(groups)], axis=-1)
    return y.reshape(nb, *out, cout)


# -- GEMM + col2im (input-dilated, i.e. transposed, convolutions) ------------------------
def conv_col2im(x, w, pads, dilations, input_dilation, flip, bias):
    ext = extension.get()
    if ext is not None:
        return _col2im_ext(ext, x, w, pads, dilations, input_dilation, flip, bias)
    nb, *length, cin = x.shape
    cout, kernel = w.shape[0], w.shape[1:-1]
    n = len(length)
    s, d = input_dilation, dilations
    # full[t*s + p*d] += x[t] . w[tap(p)] (tap(p) = p for flip, else mirrored). With
    # p*d = q*s + r, tap p lands in stride phase r at offset q of the input grid: sum the
    # taps per phase on the input grid, then interleave the phases. One GEMM per tap keeps
    # every product contiguous (a single GEMM would leave each tap's slice strided).
    x2 = x.reshape(-1, cin)
    w3 = w.reshape(cout, -1, cin)
    grid = [L + ((k - 1) * dd) // ss for L, k, dd, ss in zip(length, kernel, d, s)]
    phases: dict[tuple[int, ...], mx.array] = {}
    taps = kernel_taps(kernel)
    for j, p in enumerate(taps):
        tap = j if flip else len(taps) - 1 - j
        piece = gemm(x2, w3[:, tap, :].T).reshape(nb, *length, cout)
        q = [pi * dd // ss for pi, dd, ss in zip(p, d, s)]
        r = tuple(pi * dd % ss for pi, dd, ss in zip(p, d, s))
        piece = pad(piece, [(qi, g - L - qi) for qi, g, L in zip(q, grid, length)])
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
    full = pad(full, ext)
    y = full[(slice(None), *crop)]
    return y if bias is None else y + bias


def _col2im_ext(ext, x, w, pads, dilations, input_dilation, flip, bias):
    """The same input-dilated convolution as one GEMM and the C++ col2im: with taps
    numbered p (row-major over the kernel), output o receives x[t] . w[tap(p)] for every
    t, p with ``o = t*s + p*d - ((K-1)*d - lo)``, where tap(p) = p for a flipped kernel
    and the mirrored tap otherwise: a col2im with that geometry."""
    nb, *length, cin = x.shape
    cout, kernel = w.shape[0], w.shape[1:-1]
    s, d = input_dilation, dilations
    taps = math.prod(kernel)
    w3 = w.reshape(cout, taps, cin)
    if not flip:
        w3 = w3[:, ::-1]
    wcat = w3.transpose(2, 1, 0).reshape(cin, taps * cout)  # column block p: w[tap(p)]
    out = [out_size(L, k, 1, dd, lo, hi, ss)
           for L, k, dd, (lo, hi), ss in zip(length, kernel, d, pads, s)]
    start = [(k - 1) * dd - lo for k, dd, (lo, _) in zip(kernel, d, pads)]

    def one(xi):
        cols = gemm(xi.reshape(-1, cin), wcat).reshape(xi.shape[0], *length, *kernel, cout)
        return ext.col2im(cols, out, list(kernel), list(s), list(d), start)

    # Samples in chunks whose columns stay in the last-level cache between the GEMM that
    # writes them and the col2im that reads them.
    step = max(1, CACHE_COLS // max(1, math.prod(length) * taps * cout))
    ys = [one(x[i:i + step]) for i in range(0, nb, step)]
    y = ys[0] if len(ys) == 1 else mx.concatenate(ys, axis=0)
    return y if bias is None else y + bias


