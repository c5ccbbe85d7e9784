"""Dropout in training mode, checked numerically: the mlxnote side records the Bernoulli
masks its dropout layers draw (:func:`record_masks`); the references apply the same masks
(:class:`Dropper`) at the places the documentation puts dropout, in the documented order,
so a misplaced dropout is caught."""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

MASKS: list[np.ndarray] = []


@contextlib.contextmanager
def record_masks():
    """Record the mask of every dropout draw (``mlxnote.kernels.dropout.apply``) made inside:
    each drawn again from its seed by ``keep_mask``, a separate call, so a kernel that
    applies another mask than the one it draws is caught."""
    from mlxnote.kernels import dropout as kernels

    orig = kernels.apply
    MASKS.clear()
    drawn = []

    def spy(x, keep, shape, seed):
        drawn.append(kernels.keep_mask(shape, keep, seed))
        return orig(x, keep, shape, seed)

    kernels.apply = spy
    try:
        yield
    finally:
        kernels.apply = orig
        MASKS.extend(drawn)


class Dropper:
    """Applies the recorded masks, in order, as ``x * mask / keep``."""

    def __init__(self, training: bool, dtype: tf.DType):
        self.training = training
        self.dtype = dtype
        self.i = 0

    def __call__(self, x, rate):
        if not self.training or rate == 0.0:
            return x
        import mlx.core as mx

        if self.i >= len(MASKS):
            raise AssertionError(f"mlxnote drew {len(MASKS)} dropout masks; the reference "
                                 f"needs more (dropout #{self.i + 1})")
        m = np.array(MASKS[self.i].astype(mx.float32))
        self.i += 1
        if m.shape != tuple(x.shape):
            raise AssertionError(f"dropout #{self.i}: mlxnote's mask has shape {m.shape}, "
                                 f"the documented place has {tuple(x.shape)}")
        return x * tf.constant(m, self.dtype) * tf.cast(1.0 / (1.0 - rate), self.dtype)
