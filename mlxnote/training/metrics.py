"""Metrics by Keras name, and the running totals the loops turn into logs.

A metric, like a loss, maps ``(y_true, y_pred)`` to one value per sample ``[B]``; the
compiled steps return the weighted sums of the loss and of every metric, and
:class:`Totals` adds them up over the batches and divides by the samples seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from .._validation import error
from .losses import (
    BinaryCrossentropy,
    FnLoss,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    class_indices,
    per_sample,
)

__all__ = ["get_metric", "accuracy", "Accuracy", "accuracy_kind", "METRICS", "Totals"]

#: Keras names; the accuracies map to their kind (``None``: resolved from the loss).
METRICS: dict[str, str | None] = {
    "accuracy": None, "acc": None,
    "sparse_categorical_accuracy": "sparse", "categorical_accuracy": "categorical",
    "binary_accuracy": "binary",
    "mae": "mae", "mean_absolute_error": "mae", "mse": "mse", "mean_squared_error": "mse",
}


def accuracy_kind(loss: Any, y_true: mx.array, y_pred: mx.array) -> str:
    """Keras's resolution of ``'accuracy'`` from the loss and the shapes: ``'binary'``,
    ``'sparse'`` or ``'categorical'``."""
    if isinstance(loss, BinaryCrossentropy) or (y_pred.ndim >= 1 and y_pred.shape[-1] == 1):
        return "binary"
    if isinstance(loss, SparseCategoricalCrossentropy) or y_true.ndim < y_pred.ndim:
        return "sparse"
    return "categorical"


def accuracy(kind: str, loss: Any, y_true: mx.array, y_pred: mx.array) -> mx.array:
    """1.0 per sample whose prediction is right, else 0.0 (``[B]``).

    ``binary`` thresholds at 0.5 (at 0 for a loss ``from_logits``); ``sparse`` compares
    the argmax with integer labels (a label outside ``[0, classes)`` raises a
    ``ValueError`` when concrete, as the sparse loss does); ``categorical`` with the
    labels' argmax.
    """
    if kind == "binary":
        thr = 0.0 if getattr(loss, "from_logits", False) else 0.5
        hit = (y_pred > thr) == (y_true.reshape(y_pred.shape) > 0.5)
    elif kind == "sparse":
        y = class_indices("sparse_categorical_accuracy", y_true, y_pred)
        hit = mx.argmax(y_pred, axis=-1) == y
    else:
        hit = mx.argmax(y_pred, axis=-1) == mx.argmax(y_true, axis=-1)
    return per_sample(hit)


class Accuracy:
    """An accuracy metric of ``kind`` (``None``: resolved from the loss and the shapes by
    :func:`accuracy_kind`, as Keras's ``'accuracy'``)."""

    def __init__(self, kind: str | None, loss: Any) -> None:
        self.kind, self.loss = kind, loss

    def resolve(self, y_true: mx.array, y_pred: mx.array) -> str:
        return self.kind or accuracy_kind(self.loss, y_true, y_pred)

    def takes_class_indices(self, y_true: mx.array, y_pred: mx.array) -> bool:
        return self.resolve(y_true, y_pred) == "sparse"

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        return accuracy(self.resolve(y_true, y_pred), self.loss, y_true, y_pred)


def get_metric(spec: Any, loss: Any, where: str = "Model") -> tuple[str, Callable]:
    """``(log name, fn(y_true, y_pred) -> [B])`` for a Keras name or a callable.

    ``loss`` is the compiled loss (``'accuracy'`` resolves its kind from it); ``where``
    is the owner named in the error for anything else.
    """
    if isinstance(spec, str) and spec.lower() in METRICS:
        name = spec.lower()
        kind = METRICS[name]
        name = "accuracy" if name == "acc" else name
        if kind == "mae":
            return name, MeanAbsoluteError()
        if kind == "mse":
            return name, MeanSquaredError()
        return name, Accuracy(kind, loss)
    if callable(spec) and not isinstance(spec, str):
        f = spec if isinstance(spec, Loss) else FnLoss(spec)
        return getattr(f, "name", "metric"), f
    allowed = ("names among " + ", ".join(repr(k) for k in METRICS)
               + " or callables(y_true, y_pred)")
    raise error(where, "metrics", spec, allowed,
                ValueError if isinstance(spec, str) else TypeError)


class Totals:
    """Running sums over batches of ``[loss, *metrics, weight]`` (a step's stats).

    ``logs(prefix)`` gives the means (each sum over the total weight), keyed ``loss``
    and the metrics' names, with ``prefix`` (``'val_'``) prepended.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = ["loss", *names]
        self.sums: list[float] | None = None
        self.batches = 0

    def add(self, stats: mx.array) -> None:
        s = stats.tolist()
        self.sums = s if self.sums is None else [a + b for a, b in zip(self.sums, s)]
        self.batches += 1

    def logs(self, prefix: str = "") -> dict[str, float]:
        count = max(self.sums[-1], 1e-12)
        return {prefix + k: v / count for k, v in zip(self.names, self.sums[:-1])}
