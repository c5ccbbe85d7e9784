"""Fast float32 exp, sigmoid and tanh for the CPU formulations, and the activations
whose derivative is a function of their output.

On a non-Apple CPU, MLX's exp is a scalar polynomial (about 9 ns a value here, 1.6e-6
relative error) and its sigmoid/tanh are built on it. :func:`fast_exp` is Cephes' expf
(Cody-Waite reduction, a degree-6 polynomial, ``2^n`` built in the exponent bits) written
without floor or int casts, so that MLX's CPU compiler fuses it into one vectorizable
float kernel plus a two-op int kernel and a multiply (``docs/performance.md``): about 4x
faster than MLX's exp and 20x more accurate (8e-8 relative). :func:`fast_sigmoid` and
:func:`fast_tanh` are built on it and are as accurate as MLX's own (within 1.2e-7
absolute over [-90, 90]).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as mnn


def identity(x: mx.array) -> mx.array:
    """The linear activation."""
    return x


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_ROUND = 12582912.0  # 1.5 * 2^23: adding it rounds to an integer kept in the low bits
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
             1.6666665459e-1, 5.0000001201e-1)


def _exp_float_part(x, shift):
    """``exp(x - shift) = p * 2^n``: returns ``p`` and ``n + 1.5 * 2^23`` (float)."""
    x = mx.minimum(mx.maximum(x - shift, -88.0), 88.0)  # at -88, n = -127: 2^n is exactly 0
    t = x * _LOG2E + _ROUND
    n = t - _ROUND
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _EXP_POLY[0]
    for c in _EXP_POLY[1:]:
        p = p * r + c
    return p * (r * r) + r + 1.0, t


def _exp_int_part(t_bits):
    """The float32 bits of ``2^n`` from the bits of ``n + 1.5 * 2^23``."""
    return mx.left_shift(t_bits - (0x4B400000 - 127), 23)


_EXP_IMPL: dict = {}


def fast_exp(x: mx.array, shift: mx.array | float = 0.0) -> mx.array:
    """``exp(x - shift)`` for float32, ``x - shift`` clipped to ``[-88, 88]`` (softmax:
    ``shift`` is the row max). Exactly 0 below about -87.7; NaN stays NaN."""
    if not _EXP_IMPL:
        try:
            f, i = mx.compile(_exp_float_part), mx.compile(_exp_int_part)
            mx.eval(f(mx.zeros((2,)), 0.0), i(mx.zeros((2,), mx.int32)))
        except Exception:  # no C++ compiler for MLX's CPU JIT: the same math, unfused
            f, i = _exp_float_part, _exp_int_part
        _EXP_IMPL.update(f=f, i=i)
    p, t = _EXP_IMPL["f"](x, shift)
    return p * _EXP_IMPL["i"](t.view(mx.int32)).view(mx.float32)


def fast_sigmoid(x: mx.array) -> mx.array:
    """``1 / (1 + exp(-x))`` with :func:`fast_exp`."""
    return 1.0 / (1.0 + fast_exp(-x))


# tanh on |x| <= 0.55 as x - x * D(x^2) / Q(x^2): Eigen's 13/6 rational tanh p/q rewritten
# with D = Q - p/x, so that rounding only touches the small correction term.
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
           1.19825839466702e-06)
_TANH_D = (6.2662599e-10, 1.63117270356356e-03, 1.03677482115e-04, 1.14703542e-06,
           8.60467152213735e-11, -2.00018790482477e-13, 2.76076847742355e-16)


def _horner(x2: mx.array, coeffs) -> mx.array:
    acc = x2 * coeffs[-1] + coeffs[-2]
    for c in coeffs[-3::-1]:
        acc = acc * x2 + c
    return acc


def fast_tanh(x: mx.array) -> mx.array:
    """``tanh``: a rational function for ``|x| < 0.55``, else ``(1 - e) / (1 + e)`` with
    ``e = exp(-2|x|)`` from :func:`fast_exp` (no cancellation on either side)."""
    ax = mx.abs(x)
    e = fast_exp(-2.0 * ax)
    big = (1.0 - e) / (1.0 + e)
    s = mx.clip(x, -0.55, 0.55)
    s2 = s * s
    small = s - s * (_horner(s2, _TANH_D) / _horner(s2, _TANH_Q))
    return mx.where(ax < 0.55, small, mx.where(x < 0, -big, big))


# MLX's activations and their fast float32 replacements.
FAST: dict[Callable, Callable] = {mx.tanh: fast_tanh, mx.sigmoid: fast_sigmoid}


def _relu_grad(y: mx.array) -> mx.array:
    return y > 0


# Elementwise activations whose derivative is a function of their output (None: 1).
FROM_OUTPUT: dict[Callable, Callable | None] = {
    mx.sigmoid: lambda y: y * (1 - y),
    mx.tanh: lambda y: 1 - y * y,
    identity: None,
    mnn.relu: _relu_grad,
}
