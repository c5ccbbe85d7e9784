"""Depthwise convolutions as shifted multiply-adds, with a gradient written the same way."""

from __future__ import annotations

import mlx.core as mx

from ._common import kernel_taps, out_sizes, pad, tap_view


# -- depthwise: shifted multiply-adds ----------------------------------------------------
def shift_forward(x, w, strides, pads, dilations, flip):
    kernel = w.shape[1:-1]
    out = out_sizes(x.shape, kernel, strides, pads, dilations)
    xp = pad(x, pads)
    nb, c = x.shape[0], x.shape[-1]
    dm = w.shape[0] // c
    wt = w.reshape(w.shape[0], -1)  # (C*dm, taps), contiguous
    y = None
    for j, t in enumerate(kernel_taps(kernel)):
        off = tuple(k - 1 - i for k, i in zip(kernel, t)) if flip else t
        v = tap_view(xp, off, out, strides, dilations)
        term = v * wt[:, j] if dm == 1 else v[..., None] * wt[:, j].reshape(c, dm)
        y = term if y is None else y + term
    return y.reshape(nb, *out, c * dm) if dm > 1 else y


def conv_shift(x, w, strides, pads, dilations, flip, bias):
    """Depthwise conv as shifted multiply-adds, with a gradient written the same way: the
    input gradient is the shift-conv of the padded cotangent with the mirrored taps (stride
    1), the weight gradient one product-and-sum per tap."""
    kernel = w.shape[1:-1]
    reach = [(k - 1) * d for k, d in zip(kernel, dilations)]
    direct = all(s == 1 for s in strides) and all(
        lo <= r and hi <= r for (lo, hi), r in zip(pads, reach))

    @mx.custom_function
    def f(x, w):
        return shift_forward(x, w, strides, pads, dilations, flip)

    @f.vjp
    def f_vjp(primals, g, output):
        x, w = primals
        c = x.shape[-1]
        dm = w.shape[0] // c
        n = x.ndim - 2
        out = g.shape[1:-1]
        gm = g.reshape(*g.shape[:-1], c, dm) if dm > 1 else g
        xp = pad(x, pads)
        taps = kernel_taps(kernel)
        axes = tuple(range(n + 1))
        dws = []
        for t in taps:
            off = tuple(k - 1 - i for k, i in zip(kernel, t)) if flip else t
            v = tap_view(xp, off, out, strides, dilations)
            dws.append((v[..., None] * gm).sum(axis=axes) if dm > 1 else
                       (v * g).sum(axis=axes))
        dw = mx.stack(dws, axis=-1).reshape(w.shape)
        if not direct:
            dx = mx.vjp(lambda x_: shift_forward(x_, w, strides, pads, dilations, flip),
                        [x], [g])[1][0]
            return dx, dw
        # dx[q] = sum_t g[q + lo - off_t] w_t: views of g padded by (reach - lo, reach - hi)
        gp = pad(gm, [(r - lo, r - hi) for r, (lo, hi) in zip(reach, pads)]) if dm == 1 \
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
