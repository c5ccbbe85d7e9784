"""Confusion-matrix metrics with Keras 3's semantics: :class:`Precision`, :class:`Recall`
and :class:`AUC`.

Each is a stateful metric (:class:`~.metrics.Metric`): the compiled step returns the
weighted true/false positive/negative counts at every threshold (``[4, T]`` or
``[4, T, L]`` flattened), ``fit``/``evaluate`` add them up over the batches (and ranks),
and :meth:`result` turns the totals into the value, as Keras's metric variables do.

A prediction is positive at threshold ``t`` when ``y_pred > t``, a label when it is
nonzero. Thresholds evenly spaced over ``[0, 1]`` (AUC's default: 0, 1/(T-1), ..., 1,
the ends moved out by 1e-7) are counted as Keras counts them: the predictions clipped to
``[0, 1]`` and put in bucket ``ceil(p (T - 1)) - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from .._validation import check_bool, check_choice, check_int, error, is_real, is_sequence
from .metrics import Metric

__all__ = ["Precision", "Recall", "AUC", "confusion_counts", "evenly_spaced"]

EPSILON = 1e-7  # Keras's backend.epsilon()
NEG_INF = -1e10  # Keras's metrics_utils.NEG_INF (predictions outside top_k)


def evenly_spaced(thresholds: Sequence[float]) -> bool:
    """Keras's ``is_evenly_distributed_thresholds``: 3 or more thresholds equal to
    ``arange(T) / (T - 1)`` within 1e-7."""
    t = len(thresholds)
    return t >= 3 and bool(np.allclose(thresholds, np.arange(t, dtype=np.float32) / (t - 1),
                                       atol=EPSILON))


def _same_rank(a: mx.array, b: mx.array) -> tuple[mx.array, mx.array]:
    """Keras's ``squeeze_or_expand_to_same_rank(a, b)``: a trailing axis of 1 of the one
    with one axis more is dropped (or the rank-1 one expanded)."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 else (a.squeeze(-1), b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 else (a, b.squeeze(-1))
    return a, b


def _top_k_only(x: mx.array, k: int) -> mx.array:
    """``x`` with every entry outside the ``k`` largest of its last axis set to -1e10
    (ties go to the lower index, as ``top_k`` does; MLX's CPU argsort is stable)."""
    idx = mx.argsort(-x, axis=-1)[..., :k]
    mask = mx.put_along_axis(mx.zeros(x.shape, mx.float32), idx,
                             mx.ones(idx.shape, mx.float32), axis=-1)
    return x * mask + NEG_INF * (1 - mask)


def _reverse_cumsum(x: mx.array) -> mx.array:
    return mx.cumsum(x, axis=0, reverse=True)


def confusion_counts(y_true: mx.array, y_pred: mx.array, w: mx.array,
                     thresholds: np.ndarray, multi_label: bool = False,
                     label_weights: mx.array | None = None) -> mx.array:
    """``[4, T]`` (``[4, T, L]`` with ``multi_label``) float32: the weighted true
    positives, false positives, true negatives and false negatives of ``y_pred`` against
    ``y_true`` at each threshold; ``w`` ``[B]`` weighs each sample (every element of it),
    ``label_weights`` ``[L]`` each entry of the last axis."""
    y_pred = y_pred.astype(mx.float32)
    label = (y_true != 0).astype(mx.float32)
    label, y_pred = _same_rank(label, y_pred)
    label = mx.broadcast_to(label, y_pred.shape)
    weight = mx.broadcast_to(w.astype(mx.float32).reshape(-1, *([1] * (y_pred.ndim - 1))),
                             y_pred.shape)
    if label_weights is not None:
        weight = weight * label_weights
    if not multi_label:
        label, y_pred, weight = label.reshape(-1), y_pred.reshape(-1), weight.reshape(-1)
    pos, neg = label * weight, (1 - label) * weight
    t = len(thresholds)
    if evenly_spaced(np.clip(thresholds, 0.0, 1.0)):
        # Keras's bucketed count (metrics_utils._update_confusion_matrix_variables_optimized)
        bucket = mx.ceil(mx.clip(y_pred, 0.0, 1.0) * (t - 1)) - 1
        if thresholds[0] < 0 or thresholds[-1] > 1:
            bucket = mx.maximum(bucket, 0)
        keep = bucket >= 0  # Keras's segment_sum drops bucket -1 (p == 0, no epsilon)
        bucket = mx.where(keep, bucket, 0).astype(mx.int32)
        shape = (t, *y_pred.shape[1:])
        cols = [] if not multi_label else [mx.broadcast_to(mx.arange(y_pred.shape[1]),
                                                           y_pred.shape)]
        tp = _reverse_cumsum(mx.zeros(shape).at[(bucket, *cols)].add(mx.where(keep, pos, 0)))
        fp = _reverse_cumsum(mx.zeros(shape).at[(bucket, *cols)].add(mx.where(keep, neg, 0)))
    else:
        thr = mx.array(np.asarray(thresholds, np.float32)).reshape(t, *([1] * y_pred.ndim))
        above = (y_pred[None] > thr).astype(mx.float32)
        tp, fp = (above * pos).sum(axis=1), (above * neg).sum(axis=1)
    tn, fn = neg.sum(axis=0) - fp, pos.sum(axis=0) - tp
    return mx.stack([tp, fp, tn, fn])


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, 0 where ``b`` is 0 (Keras's ``divide_no_nan``)."""
    b = np.asarray(b, np.float64)
    return np.where(b == 0, 0.0, np.asarray(a, np.float64) / np.where(b == 0, 1.0, b))


def _thresholds(owner: str, thresholds: Any, default: float) -> list[float]:
    """Keras's ``parse_init_thresholds``: a float or a list of floats in [0, 1]."""
    if thresholds is None:
        return [default]
    vals = list(thresholds) if is_sequence(thresholds) else [thresholds]
    if not vals or not all(is_real(v) and 0 <= v <= 1 for v in vals):
        raise error(owner, "thresholds", thresholds,
                    "None, a float in [0, 1] or a non-empty list of them",
                    ValueError if all(is_real(v) for v in vals) else TypeError)
    return [float(v) for v in vals]


class _PrecisionRecall(Metric):
    """Precision and Recall: ``thresholds`` (None: 0.5, or no threshold with
    ``top_k``), ``top_k`` (only the ``k`` largest predictions of the last axis count as
    positive), ``class_id`` (only that entry of the last axis is looked at)."""

    direction = "up"

    def __init__(self, thresholds: Any = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None) -> None:
        owner = type(self).__name__
        self.top_k = check_int(owner, "top_k", top_k, 1, allow_none=True)
        self.class_id = check_int(owner, "class_id", class_id, 0, allow_none=True)
        self.init_thresholds = thresholds
        self.thresholds = _thresholds(owner, thresholds, 0.5 if top_k is None else NEG_INF)
        self.name = name or owner.lower()
        self.size = 4 * len(self.thresholds)

    def sums(self, y_true: mx.array, y_pred: mx.array, w: mx.array) -> mx.array:
        y_pred, y_true = _same_rank(y_pred, y_true)
        if self.top_k is not None:
            y_pred = _top_k_only(y_pred.astype(mx.float32), self.top_k)
        if self.class_id is not None:
            if y_pred.ndim < 2:
                raise error(type(self).__name__, "class_id", self.class_id,
                            "None for predictions of rank 1 (class_id needs y_pred of "
                            "shape (batch, classes))")
            y_true = y_true[..., self.class_id, None]
            y_pred = y_pred[..., self.class_id, None]
        return confusion_counts(y_true, y_pred, w, np.array(self.thresholds)).reshape(-1)

    def _value(self, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def result(self, sums: np.ndarray, weight: float) -> Any:
        tp, fp, _, fn = np.asarray(sums, np.float64).reshape(4, -1)
        v = self._value(tp, fp, fn)
        return float(v[0]) if len(self.thresholds) == 1 else v


class Precision(_PrecisionRecall):
    """``tp / (tp + fp)`` over all batches (0 when nothing is predicted positive);
    Keras's ``keras.metrics.Precision`` (arguments as :class:`_PrecisionRecall`). A list
    of thresholds gives an array of values."""

    def _value(self, tp, fp, fn):
        return _div(tp, tp + fp)


class Recall(_PrecisionRecall):
    """``tp / (tp + fn)`` over all batches (0 when there are no positives); Keras's
    ``keras.metrics.Recall`` (arguments as :class:`_PrecisionRecall`)."""

    def _value(self, tp, fp, fn):
        return _div(tp, tp + fn)


class AUC(Metric):
    """The area under the ROC (or precision-recall) curve from counts at thresholds,
    Keras's ``keras.metrics.AUC``.

    Args:
        num_thresholds (int): 200: thresholds ``i / (num_thresholds - 1)``, the first and
            last moved out by 1e-7.
        curve (str): ``'ROC'`` (default), ``'PR'`` or ``'PRGAIN'``.
        summation_method (str): ``'interpolation'`` (trapezoids; for PR, Davis &
            Goadrich's interpolation), ``'minoring'`` or ``'majoring'``.
        thresholds (list): the thresholds in [0, 1] instead (0 - 1e-7 and 1 + 1e-7 are
            added).
        multi_label (bool): ``y_pred`` ``[B, L]``: one curve per label, their AUCs
            averaged (weighted by ``label_weights``); otherwise every entry is one
            prediction.
        num_labels (int): with ``multi_label``, the labels (checked against ``y_pred``).
        label_weights (list): ``[L]`` weights of the labels.
        from_logits (bool): apply a sigmoid to ``y_pred`` first.
    """

    direction = "up"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 thresholds: Any = None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights: Any = None,
                 from_logits: bool = False) -> None:
        owner = "AUC"
        self.curve = check_choice(owner, "curve", str(curve).upper() if isinstance(
            curve, str) else curve, ("ROC", "PR", "PRGAIN"))
        self.summation_method = check_choice(
            owner, "summation_method", summation_method.lower() if isinstance(
                summation_method, str) else summation_method,
            ("interpolation", "majoring", "minoring"))
        if thresholds is not None:
            inner = sorted(_thresholds(owner, thresholds, 0.5))
        else:
            num_thresholds = check_int(owner, "num_thresholds", num_thresholds, 2)
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.num_thresholds = len(self._thresholds)
        self.multi_label = check_bool(owner, "multi_label", multi_label)
        self.from_logits = check_bool(owner, "from_logits", from_logits)
        self.num_labels = check_int(owner, "num_labels", num_labels, 1, allow_none=True)
        if num_labels is not None and not multi_label:
            raise error(owner, "num_labels", num_labels,
                        "None unless multi_label=True (num_labels is for multi_label)")
        self.label_weights = (None if label_weights is None
                              else np.asarray(label_weights, np.float32).reshape(-1))
        self.name = name or "auc"
        self.size = 4 * self.num_thresholds * (self.num_labels or 1)
        self._labels = self.num_labels

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def sums(self, y_true: mx.array, y_pred: mx.array, w: mx.array) -> mx.array:
        if self.from_logits:
            y_pred = mx.sigmoid(y_pred.astype(mx.float32))
        if self.multi_label:
            if y_pred.ndim != 2:
                raise error("AUC", "y_pred", f"rank {y_pred.ndim}",
                            "rank 2 (batch, labels) when multi_label=True")
            if self._labels is None:
                self._labels = y_pred.shape[1]
                self.size = 4 * self.num_thresholds * self._labels
            elif y_pred.shape[1] != self._labels:
                raise error("AUC", "y_pred", f"{y_pred.shape[1]} labels",
                            f"{self._labels} labels (num_labels or the first batch's)")
        lw = None
        if self.label_weights is not None and not self.multi_label:
            lw = mx.array(self.label_weights)
        return confusion_counts(y_true, y_pred, w, self._thresholds, self.multi_label,
                                lw).reshape(-1)

    def result(self, sums: np.ndarray, weight: float) -> float:
        tp, fp, tn, fn = np.asarray(sums, np.float64).reshape(4, self.num_thresholds, -1)
        if self.curve == "PR" and self.summation_method == "interpolation":
            terms = self._interpolate_pr(tp, fp, fn)
        else:
            x, y = self._curve(tp, fp, tn, fn)
            a, b = y[:-1], y[1:]
            heights = {"interpolation": (a + b) / 2, "minoring": np.minimum(a, b),
                       "majoring": np.maximum(a, b)}[self.summation_method]
            terms = (x[:-1] - x[1:]) * heights
        by_label = terms.sum(axis=0)
        if not self.multi_label:
            return float(by_label[0])
        if self.label_weights is None:
            return float(by_label.mean())
        return float(_div(np.sum(by_label * self.label_weights), np.sum(self.label_weights)))

    def _curve(self, tp, fp, tn, fn) -> tuple[np.ndarray, np.ndarray]:
        recall = _div(tp, tp + fn)
        if self.curve == "ROC":
            return _div(fp, fp + tn), recall
        if self.curve == "PR":
            return recall, _div(tp, tp + fp)
        scale = _div(tp + fn, tn + fp)  # PRGAIN
        recall_gain = np.where(tp == 0, 0.0, 1.0 - scale * _div(fn, tp))
        precision_gain = np.where(tp == 0, 1.0, 1.0 - scale * _div(fp, tp))
        return np.maximum(recall_gain, 0.0), precision_gain

    @staticmethod
    def _interpolate_pr(tp, fp, fn) -> np.ndarray:
        """Keras's ``interpolate_pr_auc`` (Davis & Goadrich 2006), term by term."""
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _div(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return _div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
