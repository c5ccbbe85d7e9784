"""Sample and class weights with Keras's semantics (``fit``/``evaluate``'s
``sample_weight``, ``fit``'s ``class_weight``, ``compile``'s ``weighted_metrics``).

* The loss of a batch of ``B`` samples is Keras's ``sum_over_batch_size``:
  ``sum(loss_i * w_i) / B`` (not over the sum of the weights), its gradient what the
  optimizer follows; the logged loss is its mean over the batches weighted by their
  sizes, so ``sum(loss_i * w_i) / N`` over an epoch of ``N`` samples.
* ``class_weight`` ``{class: weight}`` becomes per-sample weights as Keras's
  ``class_weight_to_sample_weights``: the class of a row is its label (rounded) for
  integer labels ``[N]``/``[N, 1]``, the argmax for one-hot labels ``[N, C]``; a class
  not in the dict weighs 1. It applies to the training data only, and not with
  ``sample_weight`` (a ``ValueError``, as in Keras).
* ``metrics`` are not weighted (Keras: "sample weighting does not apply to metrics
  specified via the metrics argument"); ``weighted_metrics`` are, each the weighted mean
  ``sum(m_i * w_i) / sum(w_i)`` (:class:`WeightedMean`); a name taken by ``metrics`` gets
  the prefix ``weighted_``, as in Keras.

Sample weights are one per sample, ``[N]`` or ``[N, 1]`` (Keras's per-timestep ``[N, T]``
weights are refused: the losses here give one value per sample).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from .._validation import Desc, error, is_int, is_real
from .metrics import Metric, weighted_sums

__all__ = ["check_sample_weight", "check_class_weight", "class_weight_to_sample_weights",
           "WeightedMean", "weighted_specs"]


def check_sample_weight(owner: str, arg: str, sw: Any, n: int) -> mx.array:
    """``sw`` as float32 ``[n]``: numbers, one per sample (``[n]`` or ``[n, 1]``)."""
    from .data import to_mx  # data imports this module

    a = to_mx(sw, owner, arg)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise error(owner, arg, Desc(f"an array of shape {tuple(a.shape)}"),
                    f"one weight per sample: shape ({n},) or ({n}, 1)")
    if a.shape[0] != n:
        raise error(owner, arg, Desc(f"{a.shape[0]} weights for {n} samples"),
                    "one weight per sample (the first axis of x)")
    return a.astype(mx.float32)


def check_class_weight(owner: str, class_weight: Any) -> dict[int, float]:
    """``{class index: weight}`` with int keys >= 0 and real weights."""
    if not isinstance(class_weight, dict):
        raise error(owner, "class_weight", Desc(type(class_weight).__name__),
                    "a dict {class index: weight}", TypeError)
    out = {}
    for k, v in class_weight.items():
        if not is_int(k):
            raise error(owner, "class_weight", Desc(f"a key {k!r}"),
                        "integer class indices as keys", TypeError)
        if k < 0:
            raise error(owner, "class_weight", Desc(f"a key {k}"), "class indices >= 0")
        if not is_real(v) or not np.isfinite(v):
            raise error(owner, "class_weight", Desc(f"a weight {v!r} for class {k}"),
                        "finite numbers as weights", TypeError if not is_real(v) else
                        ValueError)
        out[int(k)] = float(v)
    return out


def class_weight_to_sample_weights(owner: str, y: mx.array,
                                   class_weight: dict[int, float]) -> mx.array:
    """Keras's mapping of labels ``y`` (``[N]``, ``[N, 1]`` or one-hot ``[N, C]``) to
    ``[N]`` float32 weights; a class not in ``class_weight`` weighs 1. One-hot labels
    with fewer classes than a key are refused (the key can be no class)."""
    if y.ndim > 2:
        raise error(owner, "class_weight", Desc(f"labels of shape {tuple(y.shape)}"),
                    "labels of shape (N,), (N, 1) or one-hot (N, C)")
    if y.ndim == 2 and y.shape[1] != 1:
        if class_weight and max(class_weight) >= y.shape[1]:
            raise error(owner, "class_weight", Desc(f"a key {max(class_weight)}"),
                        f"class indices in [0, {y.shape[1]}) for one-hot labels of "
                        f"{y.shape[1]} classes")
        cls = mx.argmax(y, axis=-1)
    else:
        cls = mx.round(y.reshape(-1).astype(mx.float32)).astype(mx.int32)
    if not class_weight:
        return mx.ones(cls.shape, mx.float32)
    top = max(max(class_weight) + 1, 1)
    table = mx.array([class_weight.get(c, 1.0) for c in range(top)], mx.float32)
    inside = (cls >= 0) & (cls < top)
    return mx.where(inside, table[mx.clip(cls, 0, top - 1)], 1.0)


class WeightedMean(Metric):
    """A per-sample metric ``fn`` as a weighted mean: sums ``[sum(fn * w), sum(w)]``,
    result their ratio (0 when the weights sum to 0, as Keras's ``Mean``)."""

    size = 2

    def __init__(self, fn: Any, name: str) -> None:
        self.fn, self.name = fn, name

    def takes_class_indices(self, y_true: mx.array, y_pred: mx.array) -> bool:
        probe = getattr(self.fn, "takes_class_indices", None)
        return bool(probe is not None and probe(y_true, y_pred))

    def sums(self, y_true: mx.array, y_pred: mx.array, w: mx.array) -> mx.array:
        return mx.concatenate([weighted_sums(self.fn, y_true, y_pred, w), w.sum().reshape(1)])

    def result(self, sums: np.ndarray, weight: float) -> float:
        return float(sums[0] / sums[1]) if sums[1] else 0.0


def weighted_specs(specs: list[tuple[str, Any]], taken: list[str]) -> list[tuple[str, Any]]:
    """``compile``'s weighted metrics ``(name, fn)``: a per-sample ``fn`` becomes a
    :class:`WeightedMean` (a :class:`~.metrics.Metric` takes the weights in its sums);
    a name in ``taken`` (the unweighted metrics') gets the prefix ``weighted_``."""
    out = []
    names = set(taken)
    for name, fn in specs:
        if name in names:
            name = f"weighted_{name}"
        names.add(name)
        out.append((name, fn if isinstance(fn, Metric) else WeightedMean(fn, name)))
    return out
