"""Dropout's Bernoulli masks: ``x * mask / keep`` with ``mask ~ Bernoulli(keep)`` of a
(broadcastable) noise shape, drawn from a seed.

* :func:`draw_seed`: the seed of one draw, a uint32 ``(2,)`` array: a layer's own key
  (split off by the caller) or 64 bits from MLX's global generator (``mx.random.seed``
  makes it reproducible; under ``mx.compile`` the generator's state is captured as usual);
* :func:`keep_mask`: the boolean mask of a shape for a seed;
* :func:`apply`: ``x * keep_mask / keep``.

With the C++ extension the mask is a counter-based hash of the seed and each element's
index (``_core.dropout``: the mask applied in one multi-threaded pass, its gradient the
same pass on the cotangent; ``_core.dropout_mask`` draws the same mask alone); without
it, ``mx.random.bernoulli`` with the seed as its key. The two draw different masks from
one seed; each is reproducible.
"""

from __future__ import annotations

import mlx.core as mx

from . import extension


def draw_seed(key: mx.array | None = None) -> mx.array:
    """``key`` itself (an MLX random key, already split off by the caller), or a fresh
    uint32 ``(2,)`` seed of 64 random bits from MLX's global generator (four 16-bit
    ``randint`` draws: exact, as randint scales a 23-bit uniform)."""
    if key is not None:
        return key
    w = mx.random.randint(0, 1 << 16, (2, 2), dtype=mx.uint32)
    return w[:, 0] | (w[:, 1] << 16)


def keep_mask(shape: tuple[int, ...], keep: float, seed: mx.array) -> mx.array:
    """The boolean ``mask ~ Bernoulli(keep)`` of ``shape`` that :func:`apply` uses for
    ``seed``."""
    fused = extension.kernel("dropout_mask")
    if fused is not None:
        return fused(seed, list(shape), float(keep))
    return mx.random.bernoulli(keep, tuple(shape), key=seed)


def apply(x: mx.array, keep: float, shape: tuple[int, ...], seed: mx.array) -> mx.array:
    """``x * keep_mask(shape, keep, seed) / keep`` (``shape`` broadcastable to ``x``'s);
    one pass of the C++ kernel for float32 ``x`` when ``shape`` is ``x``'s."""
    fused = extension.kernel("dropout")
    if fused is not None and x.dtype == mx.float32 and tuple(shape) == tuple(x.shape):
        return fused(x, seed, float(keep))
    mask = keep_mask(shape, keep, seed)
    return x * (mask.astype(x.dtype) * mx.array(1.0 / keep, dtype=x.dtype))
