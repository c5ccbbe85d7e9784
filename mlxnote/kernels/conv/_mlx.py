"""``mx.conv_general`` (the oracle), its GPU arrangement, and its forward with the GEMM
formulation's gradients."""

from __future__ import annotations

import mlx.core as mx

from ..._config import REDUCED
from ._common import pad
from ._gemm import conv_gemm


# -- mx.conv_general (the oracle) --------------------------------------------------------
def conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip):
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
        y = conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)
        return pad(y, ext)
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


def conv_mlx_fast(x, w, strides, pads, dilations, groups, input_dilation, flip):
    cin, cout = x.shape[-1], w.shape[0]
    depthwise = groups == cin and cin > 1 and w.shape[-1] == 1 and all(
        s == 1 for s in input_dilation)
    if depthwise and cout > cin:  # one filter per (repeated) channel: c*dm + m
        x = mx.repeat(x, cout // cin, axis=-1)
        groups = cout
    if depthwise and x.ndim == 3 and any(p for pair in pads for p in pair):
        x, pads = pad(x, pads), ((0, 0),)
    return conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)


def mlx_forward_gemm_backward(x, w, strides, pads, dilations, groups, flip,
                               mlx_input_grad=False):
    """mx.conv_general's forward with the gradient of the 'gemm' formulation (with
    ``mlx_input_grad``, only the weight gradient: the input one stays mx.conv_general's)."""
    ones = (1,) * len(strides)

    @mx.custom_function
    def f(x, w):
        return conv_mlx(x, w, strides, pads, dilations, groups, ones, flip)

    @f.vjp
    def f_vjp(primals, cotangent, output):
        def g(x, w):
            xf, wf = (x.astype(mx.float32), w.astype(mx.float32)) if x.dtype in REDUCED \
                else (x, w)
            return conv_gemm(xf, wf, strides, pads, dilations, groups, flip, None)

        # Only the gradients are evaluated: the GEMM of this forward is never computed.
        ct = cotangent.astype(mx.float32) if cotangent.dtype in REDUCED else cotangent
        xx, ww = primals
        if mlx_input_grad:
            _, (dx,) = mx.vjp(lambda x_: conv_mlx(x_, ww, strides, pads, dilations, groups,
                                                   ones, flip), [xx], [cotangent])
            _, (dw,) = mx.vjp(lambda w_: g(xx, w_), [ww], [ct])
            grads = (dx, dw)
        else:
            _, grads = mx.vjp(g, list(primals), [ct])
        return tuple(gr.astype(p.dtype) for gr, p in zip(grads, primals))

    return f(x, w)


