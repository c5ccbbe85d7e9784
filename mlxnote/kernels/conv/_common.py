"""Shapes, padding and tap helpers shared by the convolution formulations."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import mlx.core as mx


def as_tuple(v, n: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    if len(v) != n:
        raise ValueError(f"conv: {name} {v} must have {n} entries")
    return v


def as_pairs(padding, n: int) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, int):
        return ((padding, padding),) * n
    if (isinstance(padding, Sequence) and len(padding) == 2 and n != 2
            and all(isinstance(p, Sequence) and len(p) == n for p in padding)):
        return tuple(zip(padding[0], padding[1]))  # mx.conv_general's (lo, hi) form
    out = []
    for p in padding:
        if not isinstance(p, int) and (not isinstance(p, Sequence) or len(p) != 2):
            raise ValueError(f"conv: padding {padding}: each entry an int or a (lo, hi) "
                             f"pair, or ((lo...), (hi...)) with {n} of each")
        out.append((int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])))
    if len(out) != n:
        raise ValueError(f"conv: padding {padding} must have {n} entries")
    return tuple(out)


def out_size(length: int, k: int, stride: int, dilation: int, lo: int, hi: int,
             input_dilation: int = 1) -> int:
    """Output length of one spatial dimension."""
    ld = (length - 1) * input_dilation + 1
    return (ld + lo + hi - (k - 1) * dilation - 1) // stride + 1


def pad(x, pads):
    if any(p for pair in pads for p in pair):
        return mx.pad(x, [(0, 0), *pads, (0, 0)])
    return x


def kernel_taps(kernel):
    return list(itertools.product(*[range(k) for k in kernel]))


def out_sizes(x_shape, kernel, strides, pads, dilations):
    out = []
    for length, k, s, (lo, hi), d in zip(x_shape[1:-1], kernel, strides, pads, dilations):
        o = out_size(length, k, s, d, lo, hi)
        if o < 1:
            raise ValueError(f"conv: input {tuple(x_shape)} is smaller than the dilated kernel "
                             f"{tuple(kernel)} (dilations {dilations}, padding {pads})")
        out.append(o)
    return out


def tap_view(xp, tap, out, strides, dilations):
    idx = tuple(slice(i * d, i * d + (o - 1) * s + 1, s)
                for i, o, s, d in zip(tap, out, strides, dilations))
    return xp[(slice(None), *idx)]


