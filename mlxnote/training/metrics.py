"""Metrics by Keras name or as objects, and the running totals the loops turn into logs.

Two kinds, both accumulated over the batches of a run (and its ranks) as Keras's
stateful metrics are:

* mean metrics: like a loss, ``fn(y_true, y_pred)`` gives one value per sample ``[B]``;
  the compiled steps return the weighted sum, and the log is the sum over the total
  weight (the accuracies, :class:`SparseTopKCategoricalAccuracy`,
  :class:`TopKCategoricalAccuracy`, :class:`MeanSquaredError`,
  :class:`MeanAbsoluteError`, any callable);
* :class:`Metric` objects: the step returns a vector of weighted sums
  (:meth:`Metric.sums`, e.g. the confusion counts of :class:`~.confusion.Precision`,
  :class:`~.confusion.Recall`, :class:`~.confusion.AUC`) and the log is
  :meth:`Metric.result` of their totals.

:class:`Totals` adds up a step's stats over the batches and gives the logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from .._validation import check_bool, check_int, error
from . import losses
from .losses import (
    BinaryCrossentropy,
    FnLoss,
    Loss,
    SparseCategoricalCrossentropy,
    class_indices,
    per_sample,
)

__all__ = ["get_metric", "get_metrics", "accuracy", "Accuracy", "accuracy_kind", "METRICS",
           "Totals", "Metric", "weighted_sums", "in_top_k", "SparseTopKCategoricalAccuracy",
           "TopKCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError",
           "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"]


class Metric:
    """A metric kept as sums over the batches (Keras's metric variables).

    ``size`` sums per step; ``sums(y_true, y_pred, w)`` gives them (``[size]`` float32,
    ``w`` ``[B]`` the samples' weights, 0 on padding); ``result(sums, weight)`` turns
    their totals (NumPy, float64) and the total weight into the logged value. ``name`` is
    the log key.
    """

    name = "metric"
    size = 1

    def sums(self, y_true: mx.array, y_pred: mx.array, w: mx.array) -> mx.array:
        raise NotImplementedError  # pragma: no cover

    def result(self, sums: np.ndarray, weight: float) -> Any:
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def weighted_sums(fn: Any, y_true: mx.array, y_pred: mx.array, w: mx.array) -> mx.array:
    """A metric's sums for one batch: :meth:`Metric.sums`, or ``[sum(fn * w)]`` for a
    per-sample ``fn``."""
    if isinstance(fn, Metric):
        return fn.sums(y_true, y_pred, w)
    return mx.sum(fn(y_true, y_pred) * w).reshape(1)


def in_top_k(targets: mx.array, predictions: mx.array, k: int) -> mx.array:
    """``tf.math.in_top_k``: whether ``predictions[i, targets[i]]`` is among the ``k``
    largest of row ``i`` (ties count in: fewer than ``k`` entries are larger); ``False``
    for a row with a non-finite entry or a target outside ``[0, C)``. ``[N]`` bool."""
    c = predictions.shape[-1]
    valid = (targets >= 0) & (targets < c)
    picked = mx.take_along_axis(predictions, mx.clip(targets, 0, c - 1)[:, None], axis=-1)
    larger = mx.sum(predictions > picked, axis=-1)
    finite = mx.all(mx.isfinite(predictions), axis=-1)
    return valid & finite & (larger < k)


def _top_k_hits(y: mx.array, y_pred: mx.array, k: int) -> mx.array:
    """``in_top_k`` over the flattened leading axes, back in ``y``'s shape."""
    hit = in_top_k(y.reshape(-1), y_pred.reshape(-1, y_pred.shape[-1]), k)
    return per_sample(hit.reshape(y.shape))


def sparse_top_k_categorical_accuracy(y_true: mx.array, y_pred: mx.array, k: int = 5,
                                      from_sorted_ids: bool = False) -> mx.array:
    """1.0 per sample whose integer label is among the ``k`` highest scores (Keras's
    function; ``from_sorted_ids``: ``y_pred`` holds class ids, best first). ``[B]``
    (the mean over further axes)."""
    if from_sorted_ids:
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        hit = mx.any(y_true.astype(y_pred.dtype)[..., None] == y_pred[..., :k], axis=-1)
        return per_sample(hit)
    y = class_indices("sparse_top_k_categorical_accuracy", y_true, y_pred)
    return _top_k_hits(y, y_pred, k)


def top_k_categorical_accuracy(y_true: mx.array, y_pred: mx.array, k: int = 5) -> mx.array:
    """1.0 per sample whose one-hot label's class (its argmax) is among the ``k``
    highest scores (Keras's function). ``[B]``."""
    return _top_k_hits(mx.argmax(y_true, axis=-1), y_pred, k)


class SparseTopKCategoricalAccuracy:
    """Keras's ``SparseTopKCategoricalAccuracy(k=5, name=..., from_sorted_ids=False)``:
    integer labels ``[B, ...]`` against scores ``[B, ..., C]``; a mean metric."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy",
                 from_sorted_ids: bool = False) -> None:
        owner = type(self).__name__
        self.k = check_int(owner, "k", k, 1)
        self.from_sorted_ids = check_bool(owner, "from_sorted_ids", from_sorted_ids)
        self.name = name

    def takes_class_indices(self, y_true: mx.array, y_pred: mx.array) -> bool:
        return not self.from_sorted_ids

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        return sparse_top_k_categorical_accuracy(y_true, y_pred, self.k, self.from_sorted_ids)


class TopKCategoricalAccuracy:
    """Keras's ``TopKCategoricalAccuracy(k=5, name=...)``: one-hot labels
    ``[B, ..., C]``; a mean metric."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy") -> None:
        self.k = check_int(type(self).__name__, "k", k, 1)
        self.name = name

    def __call__(self, y_true: mx.array, y_pred: mx.array) -> mx.array:
        return top_k_categorical_accuracy(y_true, y_pred, self.k)


class MeanSquaredError(losses.MeanSquaredError):
    """Keras's metric ``MeanSquaredError(name='mean_squared_error')``: the mean of
    ``(y_pred - y_true)^2``, a mean metric."""

    def __init__(self, name: str = "mean_squared_error") -> None:
        self.name = name


class MeanAbsoluteError(losses.MeanAbsoluteError):
    """Keras's metric ``MeanAbsoluteError(name='mean_absolute_error')``: the mean of
    ``|y_pred - y_true|``, a mean metric."""

    def __init__(self, name: str = "mean_absolute_error") -> None:
        self.name = name


#: Keras names; the accuracies map to their kind (``None``: resolved from the loss), the
#: other names to the metric they build (Keras's defaults: k=5, threshold 0.5, 200
#: thresholds).
METRICS: dict[str, Any] = {
    "accuracy": None, "acc": None,
    "sparse_categorical_accuracy": "sparse", "categorical_accuracy": "categorical",
    "binary_accuracy": "binary",
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "precision": "Precision", "recall": "Recall", "auc": "AUC",
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
    """``(log name, metric)`` for a Keras name, a :class:`Metric` or a callable.

    A name's metric has Keras's defaults and logs under that name (``'mse'`` logs
    ``mse``, as in Keras); an object logs under its ``name``. The metric is a
    :class:`Metric` or a per-sample ``fn(y_true, y_pred) -> [B]``. ``loss`` is the
    compiled loss (``'accuracy'`` resolves its kind from it); ``where`` is the owner
    named in the error for anything else.
    """
    if isinstance(spec, str) and spec.lower() in METRICS:
        name = spec.lower()
        kind = METRICS[name]
        name = "accuracy" if name == "acc" else name
        if isinstance(kind, str) and kind[0].isupper():
            from . import confusion  # noqa: PLC0415  (confusion imports this module)
            return name, getattr(confusion, kind)(name=name)
        if isinstance(kind, type):
            return name, kind(name=name)
        return name, Accuracy(kind, loss)
    if isinstance(spec, Metric):
        return spec.name, spec
    if callable(spec) and not isinstance(spec, str):
        f = spec if isinstance(spec, Loss) or hasattr(spec, "takes_class_indices") \
            else FnLoss(spec)
        return getattr(f, "name", "metric"), f
    allowed = ("names among " + ", ".join(repr(k) for k in METRICS)
               + ", Metric objects or callables(y_true, y_pred)")
    raise error(where, "metrics", spec, allowed,
                ValueError if isinstance(spec, str) else TypeError)


def get_metrics(specs: Sequence[Any], loss: Any, where: str = "Model"
                ) -> list[tuple[str, Callable]]:
    """:func:`get_metric` of each; a log name seen before gets ``_1``, ``_2``, ... (as
    Keras names two AUCs ``auc`` and ``auc_1``)."""
    out: list[tuple[str, Callable]] = []
    seen: set[str] = set()
    for spec in specs:
        name, fn = get_metric(spec, loss, where)
        base, i = name, 0
        while name in seen or name == "loss":
            i += 1
            name = f"{base}_{i}"
        seen.add(name)
        out.append((name, fn))
    return out


class Totals:
    """Running sums over batches of a step's stats ``[loss, *metric sums, weight]``.

    ``metrics``: the ``(name, metric)`` pairs (or plain names, for mean metrics).
    ``logs(prefix)`` gives the loss and the mean metrics as their sums over the total
    weight and each :class:`Metric` as its ``result``, keyed ``loss`` and the metrics'
    names with ``prefix`` (``'val_'``) prepended.
    """

    def __init__(self, metrics: Sequence[Any]) -> None:
        pairs = [(m, None) if isinstance(m, str) else tuple(m) for m in metrics]
        self.names = ["loss", *(n for n, _ in pairs)]
        self.fns = [None, *(f for _, f in pairs)]
        self.sums: list[float] | None = None  # Python floats (doubles): cheap per batch
        self.batches = 0

    def add(self, stats: mx.array) -> None:
        s = stats.tolist()
        self.sums = s if self.sums is None else [a + b for a, b in zip(self.sums, s)]
        self.batches += 1

    def logs(self, prefix: str = "") -> dict[str, Any]:
        weight = self.sums[-1]
        count = max(weight, 1e-12)
        out, i = {}, 0
        for name, fn in zip(self.names, self.fns):
            if isinstance(fn, Metric):
                out[prefix + name] = fn.result(np.array(self.sums[i:i + fn.size]), weight)
                i += fn.size
            else:
                out[prefix + name] = self.sums[i] / count
                i += 1
        return out
