"""Integer class labels: checked against the number of classes before MLX sees them.

A sparse loss or metric gathers ``y_pred[..., y_true]``: a label outside ``[0, classes)``
would read (forward) and write (backward) out of bounds, giving garbage or a segfault.
So, as Keras does,

* :class:`~.losses.SparseCategoricalCrossentropy` and the sparse accuracy, called on
  concrete arrays, raise at once (:func:`check_concrete`); inside a trace (``mx.compile``,
  ``vmap``) they cannot look at the values, and a bad label gives NaN (never an
  out-of-bounds access);
* ``fit`` and ``evaluate`` check the labels before the first step is evaluated: once per
  run for in-memory arrays (all rows: one min and one max), every batch for iterables
  (:class:`~.data.EpochIterator`), with the classes the compiled step's trace saw.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._validation import Desc, error

__all__ = ["label_range", "check_range", "check_concrete", "users", "takes_indices"]

_IN_TRANSFORM = ("[eval] Attempting to eval an array during function transformations",
                 "[async_eval] Not allowed inside a graph transformation")


def label_range(y: Any) -> tuple[int, int] | None:
    """``(min, max)`` of the labels as the losses use them (cast to int32), one
    evaluation; ``None`` for no labels."""
    if y.size == 0:
        return None
    yi = y.astype(mx.int32) if y.dtype != mx.int32 else y
    lo, hi = mx.min(yi), mx.max(yi)
    mx.eval(lo, hi)
    return int(lo.item()), int(hi.item())


def check_range(owner: str, arg: str, span: tuple[int, int] | None, classes: int) -> None:
    """``ValueError`` naming ``owner``, the first bad label and the allowed range unless
    every label in ``span`` (:func:`label_range`) lies in ``[0, classes)``."""
    if span is None:
        return
    lo, hi = span
    if lo < 0 or hi >= classes:
        bad = lo if lo < 0 else hi
        raise error(owner, arg, Desc(f"a label {bad}"),
                    f"class indices in [0, {classes}), since the predictions have "
                    f"{classes} classes")


def check_concrete(owner: str, y_true: mx.array, classes: int) -> None:
    """:func:`check_range` when ``y_true`` can be evaluated (not inside a trace)."""
    try:
        span = label_range(y_true)
    except ValueError as e:
        if str(e).startswith(_IN_TRANSFORM):
            return  # traced: the loss gives NaN for a bad label instead
        raise
    check_range(owner, "y_true", span, classes)


def takes_indices(fn: Any, y_true: mx.array, y_pred: mx.array) -> bool:
    """Whether loss or metric ``fn`` reads ``y_true`` as class indices into the last axis
    of ``y_pred`` (its ``takes_class_indices``; shapes only, so it works on tracers)."""
    probe = getattr(fn, "takes_class_indices", None)
    return bool(probe is not None and probe(y_true, y_pred))


def users(loss: Any, metrics: list[tuple[str, Any]], y_true: mx.array,
          y_pred: mx.array) -> list[str]:
    """The names of the loss and metrics that take class indices (the loss by its
    ``error_name`` or class name, metrics by their log names)."""
    name = getattr(loss, "error_name", type(loss).__name__)
    out = [name] if takes_indices(loss, y_true, y_pred) else []
    return out + [name for name, f in metrics if takes_indices(f, y_true, y_pred)]
