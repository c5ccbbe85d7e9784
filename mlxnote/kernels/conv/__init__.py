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
* ``'onednn'`` (CPU, when oneDNN is installed: the ``cpu`` extra): oneDNN's direct
  convolution and its two gradients (``_core.dnnl_conv``, float32; a flip reverses the
  taps first).
* ``'shift'``: depthwise convs (``groups == C_in``) as shifted multiply-adds, one per tap,
  with a gradient written the same way.

:func:`choose` holds the CPU rules, each from a measurement (``benchmarks/bench_conv.py``):
ungrouped undilated convs keep MLX's own forward (an explicit im2col + GEMM) and take
our chunked weight gradient (and, at stride > 1, our input gradient: MLX's runs on naive
loops there); dilated, grouped and 1x1 convs go to ``'gemm'``; depthwise to ``'shift'``;
input-dilated (transposed) to ``'col2im'``; with oneDNN loaded, every other conv (dense,
grouped, strided, dilated, 1x1, depthwise 3-D and 2-D with a depth multiplier, and transposed
where its padding is within the kernel's reach) goes to ``'onednn'``; depthwise 1-D and 2-D
otherwise run on the extension's kernels (``'ext'``). Batches whose column buffer would pass
:data:`COLS_BUDGET` run in chunks chained by ``mx.depends`` (MLX's own CPU conv has no such
bound and runs out of memory on the documented conv3d_transpose example).

On the CPU the GEMM-based forms run in float32 for float16/bfloat16 inputs (MLX's CPU
matmul has no reduced-precision BLAS; float32 accumulation is also the accurate choice)
and cast the result back.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..._config import REDUCED as _REDUCED
from ..._config import cpu_formulation as on_cpu
from .. import extension
from ._common import as_pairs, as_tuple, out_size
from ._gemm import conv_col2im, conv_gemm
from ._mlx import conv_mlx, conv_mlx_fast, mlx_forward_gemm_backward
from ._shift import conv_shift

__all__ = ["METHODS", "COLS_BUDGET", "choose", "conv", "out_size"]

METHODS = ("auto", "mlx", "mlx-fast", "gemm", "col2im", "shift", "mlx+gemm", "mlx+gemmw",
           "ext", "onednn")


def choose(x_shape, w_shape, strides, dilations, groups, input_dilation,
           pads=None) -> str:
    """The formulation :func:`conv` uses for these arguments in the current formulation
    (``pads``: the ``(lo, hi)`` padding, which the memory rule needs): ``'mlx-fast'`` in
    the GPU one (``MLXNOTE_FORMULATION=gpu`` forces it on any device), else the CPU rules."""
    if not on_cpu():
        return "mlx-fast"
    cin = x_shape[-1]
    if groups == cin and cin > 1 and w_shape[-1] == 1 and all(s == 1 for s in input_dilation):
        ours = len(x_shape) in (3, 4) and extension.get() is not None
        if ours and (w_shape[0] == cin or len(x_shape) == 3):
            # mlxnote's C++ kernels: with one filter per channel register-blocked, the
            # backward one pass for dx, dw and the bias. 16x64x64x64 3x3 (+ bias) fwd+bwd
            # 10.3 vs oneDNN 13.6 ms, 16x1024x64 k3 1.9 vs 7.0 (benchmarks/bench_conv.py).
            return "ext"
        if len(x_shape) != 3 and extension.kernel("dnnl_conv") is not None:
            return "onednn"  # 2-D with a depth multiplier > 1, 3-D
        return "ext" if ours else "shift"  # else shifted multiply-adds
    if any(s != 1 for s in input_dilation):
        if (groups == 1 and all(s == 1 for s in strides) and pads is not None
                and transposed_pads(w_shape, dilations, pads) is not None
                and extension.kernel("dnnl_conv_input_grad") is not None):
            return "onednn"  # a strided conv's input gradient on oneDNN
        return "col2im" if groups == 1 and all(s == 1 for s in strides) else "mlx"
    if extension.kernel("dnnl_conv") is not None:
        # oneDNN's direct kernels: 3x3 conv2d 16x64x64 32->64 fwd+bwd 24 ms vs TF 21 ms vs
        # our im2col + OpenBLAS 2.7-8x TF (benchmarks/bench_conv.py).
        return "onednn"
    if all(k == 1 for k in w_shape[1:-1]) and all(s == 1 for s in strides):
        return "gemm"  # 1x1: a plain GEMM on the input itself, no column buffer at all
    if groups == 1 and pads is not None and all(s == 1 for s in strides):
        bounded = _bounded(x_shape, w_shape, dilations, pads)
        if bounded is not None:
            return bounded
    if groups == 1 and all(d == 1 for d in dilations):
        # MLX's CPU kernel is an explicit im2col + GEMM here, in every dtype; so is its
        # input gradient at stride 1. Its weight gradient sums over the whole batch in one
        # sequential BLAS reduction (2-3x TF's float32 error with the reference BLAS): ours
        # sums chunks. At stride > 1 its input gradient runs input-dilated convolutions on
        # its naive loops (docs/performance.md): keep only its forward.
        return "mlx+gemmw" if all(s == 1 for s in strides) else "mlx+gemm"
    return "gemm"


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
    strides = as_tuple(strides, n, "strides")
    dilations = as_tuple(dilations, n, "dilations")
    input_dilation = as_tuple(input_dilation, n, "input_dilation")
    pads = as_pairs(padding, n)
    if any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"conv: padding {pads} must be >= 0")
    cin, cout = x.shape[-1], w.shape[0]
    if cin % groups or cout % groups or w.shape[-1] * groups != cin:
        raise ValueError(f"conv: {cin} input channels, weight {w.shape} and groups={groups} "
                         "do not match")
    if method == "auto":
        method = choose(x.shape, w.shape, strides, dilations, groups, input_dilation, pads)
    if method not in METHODS[1:]:
        raise ValueError(f"conv: method {method!r} not in {METHODS}")
    if method in ("mlx", "mlx-fast", "mlx+gemm", "mlx+gemmw"):
        if method == "mlx":
            y = conv_mlx(x, w, strides, pads, dilations, groups, input_dilation, flip)
        elif method == "mlx-fast":
            y = conv_mlx_fast(x, w, strides, pads, dilations, groups, input_dilation, flip)
        elif any(s != 1 for s in input_dilation):
            raise ValueError(f"conv: method {method!r} needs input_dilation 1")
        else:
            y = mlx_forward_gemm_backward(x, w, strides, pads, dilations, groups, flip,
                                           method == "mlx+gemmw")
        if keep_float32 and y.dtype in _REDUCED and on_cpu():
            y = y.astype(mx.float32)  # MLX's CPU GEMM computed it in float32 anyway
            bias = None if bias is None else bias.astype(mx.float32)
        return y if bias is None else y + bias
    nb = x.shape[0]
    per_sample = cols_per_sample(method, x.shape, w.shape, strides, pads, dilations,
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
    if method == "onednn":
        y = conv_onednn(x, w, strides, pads, dilations, groups, input_dilation, flip, bias)
    elif method == "gemm":
        if any(s != 1 for s in input_dilation):
            raise ValueError("conv: method 'gemm' needs input_dilation 1")
        y = conv_gemm(x, w, strides, pads, dilations, groups, flip, bias)
    elif method == "col2im":
        if groups != 1 or any(s != 1 for s in strides):
            raise ValueError("conv: method 'col2im' needs groups 1 and strides 1")
        y = conv_col2im(x, w, pads, dilations, input_dilation, flip, bias)
    else:
        if groups != cin or w.shape[-1] != 1 or any(s != 1 for s in input_dilation):
            raise ValueError(f"conv: method {method!r} needs a depthwise conv (groups == C_in)")
        if method == "ext":
            y = conv_ext_depthwise(x, w, strides, pads, dilations, flip, bias)
        else:
            y = conv_shift(x, w, strides, pads, dilations, flip, bias)
    return y.astype(dtype) if y.dtype != dtype and not keep_float32 else y


def _bounded(x_shape, w_shape, dilations, pads) -> str | None:
    """When MLX's own forward would build a column buffer over the budget for the whole
    batch (it has no bound: 35 GB for the documented conv3d_transpose example), the
    formulation whose per-sample buffer is smaller: im2col ('gemm', taps x C_in per output
    position) or GEMM + col2im ('col2im', taps x C_out per input position); both run the
    batch in chunks under :data:`COLS_BUDGET`. ``None`` while MLX's is affordable."""
    taps = math.prod(w_shape[1:-1])
    out = [out_size(L, k, 1, d, lo, hi) for L, k, d, (lo, hi) in
           zip(x_shape[1:-1], w_shape[1:-1], dilations, pads)]
    per_out = math.prod(out) * taps * x_shape[-1]
    if x_shape[0] * per_out <= COLS_BUDGET:
        return None
    per_in = math.prod(x_shape[1:-1]) * taps * w_shape[0]
    return "col2im" if per_in < per_out else "gemm"


def transposed_pads(w_shape, dilations, pads):
    """For an input-dilated conv, the padding of the strided conv whose input gradient it
    is: ``(k - 1) * d - lo`` and ``- hi`` per dimension (``None`` where one is negative:
    padding beyond the kernel's reach)."""
    tp = [((k - 1) * d - lo, (k - 1) * d - hi)
          for k, d, (lo, hi) in zip(w_shape[1:-1], dilations, pads)]
    return None if any(p < 0 for pair in tp for p in pair) else tp


def conv_onednn(x, w, strides, pads, dilations, groups, input_dilation, flip, bias):
    """oneDNN's convolution (float32, 1-3 spatial dimensions). An input-dilated
    (transposed) conv, groups 1 and strides 1, is the input gradient of the conv with
    stride ``input_dilation``, padding :func:`transposed_pads` and ``w`` with its channel
    axes swapped and, unless ``flip``, its taps reversed."""
    dilated = any(s != 1 for s in input_dilation)
    kind = "dnnl_conv_input_grad" if dilated else "dnnl_conv"
    fn = extension.kernel(kind)
    tp = transposed_pads(w.shape, dilations, pads) if dilated else None
    if fn is None or x.ndim > 5 or (dilated and (groups != 1 or any(s != 1 for s in strides)
                                                 or tp is None)):
        why = extension.status().get("onednn", extension.reason())
        raise ValueError("conv: method 'onednn' needs oneDNN loaded and 1-3 spatial "
                         "dimensions; with input_dilation, groups 1, strides 1 and padding "
                         f"within the kernel's reach (oneDNN: {why})")
    taps = (slice(None),) + (slice(None, None, -1),) * (w.ndim - 2)
    if dilated:
        w = mx.swapaxes(w, 0, -1)
        w = w if flip else w[taps]
        length = [(n - 1) * s + 1 + lo + hi - (k - 1) * d for n, s, k, d, (lo, hi) in
                  zip(x.shape[1:-1], input_dilation, w.shape[1:-1], dilations, pads)]
        # the bias added in the same primitive, on the pool (MLX's one-threaded y + b: 2.1 ms
        # for a 16 MB y), its gradient the column sum
        return fn(x, w, length, list(input_dilation), tp, list(dilations), bias)
    # the bias added by oneDNN (one pass less: 16x64x64x64 y + b took 0.7 ms), its gradient
    # the chunked column sum
    return fn(x, w[taps] if flip else w, list(strides), [tuple(p) for p in pads],
              list(dilations), groups, bias)


def conv_ext_depthwise(x, w, strides, pads, dilations, flip, bias):
    """The C++ depthwise primitive (float32; 1-D or 2-D)."""
    ext = extension.module()
    if ext is None or x.ndim not in (3, 4):
        raise ValueError(f"conv: method 'ext' needs mlxnote's C++ extension and a 1-D or 2-D "
                         f"input ({extension.reason() or 'rank ' + str(x.ndim - 2)})")
    # the bias added in the kernel and its gradient from the fused backward (one pass over
    # x and dy for dx, dw and db)
    return ext.depthwise_conv(x, w, list(strides), [tuple(p) for p in pads], list(dilations),
                              flip, bias)


# Largest im2col/col2im buffer built at once, in float32 elements (256 MiB); larger
# batches run in chunks. (mx.conv_general's CPU kernel builds its own im2col buffer with no
# such bound: 1.1 GB per sample for the documented conv3d_transpose example.)
COLS_BUDGET = 1 << 26


def cols_per_sample(method, x_shape, w_shape, strides, pads, dilations, input_dilation):
    """Elements of the column buffer one sample needs (0 for formulations without one)."""
    taps = math.prod(w_shape[1:-1])
    if method == "gemm":
        out = [out_size(L, k, s, d, lo, hi) for L, k, s, d, (lo, hi) in
               zip(x_shape[1:-1], w_shape[1:-1], strides, dilations, pads)]
        return math.prod(max(o, 0) for o in out) * taps * x_shape[-1]
    if method == "col2im":
        return math.prod(x_shape[1:-1]) * taps * w_shape[0]
    return 0


