"""Losses with Keras semantics, and the by-name table.

Every loss maps ``(y_true, y_pred)`` to one float32 value per sample, shape ``[B]``
(the mean over any further axes): the training loop weights and sums these, so that an
epoch's loss is the mean over its samples, also with a short last batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as mnn

from .._validation import Desc, error
from ..kernels.attention import logsumexp
from . import labels

__all__ = [
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "Huber", "FnLoss", "get_loss", "LOSSES",
    "per_sample", "class_indices",
]

EPSILON = 1e-7  # Keras's backend.epsilon(): probabilities are clipped to [eps, 1 - eps]


def per_sample(v: mx.array) -> mx.array:
    """``[B, ...] -> [B]`` in float32: the mean over every axis but the first."""
    v = v.astype(mx.float32)
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim > 1 else v


class Loss:
    """Base class: ``loss(y_true, y_pred) -> [B]`` per-sample values; ``name`` is the log
    key of a loss given as a metric."""

    name = "loss"

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class SparseCategoricalCrossentropy(Loss):
    """Integer labels ``[B, ...]`` (or ``[B, ..., 1]``) against class scores ``[B, ..., C]``
    (probabilities, clipped to ``[1e-7, 1 - 1e-7]`` as Keras does, or logits with
    ``from_logits``).

    A label outside ``[0, C)`` raises a ``ValueError`` (naming the loss, the label and the
    range) when the labels are concrete; inside a trace (``mx.compile``), where values
    cannot be looked at, its loss is NaN (``fit`` checks the labels before its compiled
    step runs: :mod:`~mlxnote.training.labels`). Labels of another shape (one-hot ones)
    raise a ``ValueError`` naming :class:`CategoricalCrossentropy`.
    """

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits

    def takes_class_indices(self, y_true: mx.array, y_pred: mx.array) -> bool:
        return True

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        y_pred = y_pred.astype(mx.float32)
        y = class_indices(type(self).__name__, y_true, y_pred)
        classes = y_pred.shape[-1]
        logits = y_pred if self.from_logits else mx.log(mx.clip(y_pred, EPSILON, 1 - EPSILON))
        picked = mx.take_along_axis(logits, mx.clip(y, 0, classes - 1)[..., None], axis=-1)
        v = logsumexp(logits) - picked.squeeze(-1)
        return per_sample(mx.where((y >= 0) & (y < classes), v, math.nan))


def class_indices(owner: str, y_true: mx.array, y_pred: mx.array) -> mx.array:
    """``y_true`` as int32 class indices of the shape of ``y_pred`` without its class
    axis (a trailing axis of 1 is dropped); checked against the classes when concrete."""
    if y_true.ndim == y_pred.ndim and y_true.ndim and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    if tuple(y_true.shape) != tuple(y_pred.shape[:-1]):
        raise error(owner, "y_true", Desc(f"labels of shape {tuple(y_true.shape)} for "
                                          f"predictions of shape {tuple(y_pred.shape)}"),
                    f"integer class indices of shape {tuple(y_pred.shape[:-1])} (one-hot "
                    "labels go with CategoricalCrossentropy)")
    y = y_true.astype(mx.int32) if y_true.dtype != mx.int32 else y_true
    labels.check_concrete(owner, y, y_pred.shape[-1])
    return y


class CategoricalCrossentropy(Loss):
    """One-hot (or soft) labels ``[B, ..., C]``; probabilities (renormalized and clipped,
    as Keras does) or logits; ``label_smoothing`` as in Keras."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        y_pred = y_pred.astype(mx.float32)
        y_true = y_true.astype(mx.float32)
        if self.label_smoothing:
            c = y_pred.shape[-1]
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / c
        if self.from_logits:
            logp = y_pred - logsumexp(y_pred)[..., None]
        else:
            p = y_pred / y_pred.sum(axis=-1, keepdims=True)
            logp = mx.log(mx.clip(p, EPSILON, 1 - EPSILON))
        return per_sample(-(y_true * logp).sum(axis=-1))


class BinaryCrossentropy(Loss):
    """Labels in [0, 1] against probabilities (clipped) or logits, of the same shape;
    the mean over the last axis as in Keras."""

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        y_pred = y_pred.astype(mx.float32)
        y_true = y_true.astype(mx.float32).reshape(y_pred.shape)
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            v = mx.maximum(y_pred, 0) - y_pred * y_true + mx.log1p(mx.exp(-mx.abs(y_pred)))
        else:
            p = mx.clip(y_pred, EPSILON, 1 - EPSILON)
            v = -(y_true * mx.log(p) + (1 - y_true) * mx.log(1 - p))
        return per_sample(v)


def _error(y_true: mx.array, y_pred: mx.array) -> mx.array:
    return y_pred.astype(mx.float32) - y_true.astype(mx.float32).reshape(y_pred.shape)


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)^2)`` per sample."""

    name = "mean_squared_error"

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        return per_sample(mx.square(_error(y_true, y_pred)))


class MeanAbsoluteError(Loss):
    """``mean(|y_pred - y_true|)`` per sample."""

    name = "mean_absolute_error"

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        return per_sample(mx.abs(_error(y_true, y_pred)))


class Huber(Loss):
    """``e^2 / 2`` for ``|e| <= delta``, else ``delta |e| - delta^2 / 2``; mean per sample."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = delta

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        e = mx.abs(_error(y_true, y_pred))
        d = self.delta
        return per_sample(mx.where(e <= d, 0.5 * e * e, d * e - 0.5 * d * d))


#: Keras names (and short aliases) and the loss class each builds.
LOSSES: dict[str, type[Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber,
}


class FnLoss(Loss):
    """A callable loss. ``mlx.nn.losses`` functions take ``(predictions, targets)`` and
    are called with ``reduction='none'``; any other callable takes Keras's
    ``(y_true, y_pred)`` and returns per-sample values or a batch mean (broadcast to
    every sample)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.mlx = getattr(fn, "__module__", "") == mnn.losses.__name__

    @property
    def error_name(self) -> str:
        return self.name

    def takes_class_indices(self, y_true: mx.array, y_pred: mx.array) -> bool:
        """``mlx.nn.losses.cross_entropy``/``nll_loss`` with integer targets (``fit``
        checks them against the classes)."""
        return (self.mlx and self.name in ("cross_entropy", "nll_loss")
                and y_true.ndim == y_pred.ndim - 1)

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        v = self.fn(y_pred, y_true, reduction="none") if self.mlx else self.fn(y_true, y_pred)
        if v.ndim == 0:
            return mx.broadcast_to(v.astype(mx.float32), (y_pred.shape[0],))
        return per_sample(v)


def get_loss(spec: Any, where: str = "Model") -> Loss:
    """A loss from a Keras name, a :class:`Loss` or a callable (see :class:`FnLoss`).

    ``where`` is the owner named in the error for anything else.
    """
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in LOSSES:
        return LOSSES[spec.lower()]()
    if callable(spec) and not isinstance(spec, str):
        return FnLoss(spec)
    allowed = "one of " + ", ".join(repr(k) for k in LOSSES) + " or a callable(y_true, y_pred)"
    raise error(where, "loss", spec, allowed, ValueError if isinstance(spec, str) else TypeError)
