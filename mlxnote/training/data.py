"""Data adapters and the epoch iterator of ``fit``/``evaluate``/``predict``.

Two adapters give batches ``(xs, y, sw)`` (``xs`` a tuple: one array per model input,
``y`` ``None`` when there are no labels, ``sw`` the batch's sample weights ``[b]`` or
``None``; see :mod:`.weighting` for Keras's semantics):

* :class:`ArrayAdapter`: in-memory NumPy/MLX arrays (a tuple of arrays for several
  inputs) and optional sample weights, sliced into ``batch_size`` rows, from one permuted
  copy per epoch when shuffling; :meth:`ArrayAdapter.split` holds out the last fraction
  (``validation_split``, the sample weights with it), :meth:`ArrayAdapter.weigh_classes`
  turns a ``class_weight`` into sample weights;
* :class:`BatchAdapter`: an iterable of ``(x, y)`` or ``(x, y, sample_weight)`` batches
  re-iterated every epoch, a callable returning one, or a one-shot iterator (one epoch
  only); a ``class_weight`` weighs each batch.

:class:`EpochIterator` (as Keras's ``trainers/epoch_iterator.py``) runs an adapter for
one epoch and gives each step this rank's shard of the batch with per-sample weights
(0 on the padding that equalizes the ranks' shapes; see :func:`shard`) and the sample
weights (the same, times the batch's ``sample_weight`` when there is one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import mlx.core as mx
import numpy as np

from .._validation import Desc, error
from . import distributed as dist
from . import labels, weighting

__all__ = ["ArrayAdapter", "BatchAdapter", "EpochIterator", "adapter", "fit_adapters",
           "validation_adapter", "shard", "shard_weighted", "collate"]

Batch = tuple[tuple[mx.array, ...], mx.array | None, mx.array | None]


def is_arraylike(a: Any) -> bool:
    return isinstance(a, (mx.array, np.ndarray))


def to_mx(a: Any, owner: str = "Model", arg: str = "x") -> mx.array:
    """``a`` as an ``mx.array`` of numbers; float64 becomes float32 and int64 int32."""
    if isinstance(a, mx.array):
        return a
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise error(owner, arg, Desc(f"an array of dtype {arr.dtype}"), "numbers", TypeError)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return mx.array(arr)


def _several(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and bool(x) and all(is_arraylike(e) for e in x)


def inputs(x: Any, owner: str, arg: str = "x") -> tuple[mx.array, ...]:
    """One array, or a tuple/list of arrays (several inputs), as a tuple of arrays."""
    if _several(x):
        return tuple(to_mx(e, owner, arg) for e in x)
    return (to_mx(x, owner, arg),)


class ArrayAdapter:
    """In-memory arrays ``x`` (``[N, ...]``, or a tuple of them), ``y`` (``[N, ...]`` or
    ``None``) and ``sample_weight`` (``[N]`` or ``[N, 1]``, or ``None``; named
    ``sw_arg`` in errors), ``ceil(N / batch_size)`` batches; the last may be short."""

    def __init__(self, x: Any, y: Any, batch_size: int, owner: str, arg: str = "y",
                 sample_weight: Any = None, sw_arg: str = "sample_weight") -> None:
        self.arg = arg  # the argument the labels came in (named in label errors)
        self.x = inputs(x, owner)
        self.y = None if y is None else to_mx(y, owner, "y")
        self.n = self.x[0].shape[0]
        self.sw = None if sample_weight is None else \
            weighting.check_sample_weight(owner, sw_arg, sample_weight, self.n)
        self.batch_size, self.owner = batch_size, owner
        for a in self.x[1:] + ((self.y,) if self.y is not None else ()):
            if a.shape[0] != self.n:
                raise error(owner, "y" if a is self.y else "x",
                            Desc(f"arrays with {a.shape[0]} and {self.n} samples"),
                            "the same number of samples (first axis) in every array")
        if self.n == 0:
            raise error(owner, "x", Desc("an empty array"), "at least one sample")

    @property
    def num_batches(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def first(self) -> tuple[mx.array, ...]:
        b = min(self.batch_size, self.n)
        return tuple(a[:b] for a in self.x)

    def split(self, fraction: float) -> tuple[ArrayAdapter, ArrayAdapter]:
        """``(first 1 - fraction of the rows, the rest)``, as Keras's validation_split."""
        cut = int(self.n * (1 - fraction))
        y, sw = self.y, self.sw

        def part(s: slice) -> ArrayAdapter:
            return ArrayAdapter(tuple(a[s] for a in self.x), None if y is None else y[s],
                                self.batch_size, self.owner, self.arg,
                                None if sw is None else sw[s])

        return part(slice(None, cut)), part(slice(cut, None))

    def weigh_classes(self, class_weight: dict[int, float] | None) -> None:
        """Set the sample weights from ``class_weight`` (checked by
        :func:`~.weighting.check_class_weight`; ``None``: nothing)."""
        if class_weight is None:
            return
        if self.y is None:
            raise error(self.owner, "class_weight", class_weight, "None when there are no "
                        "labels y")
        self.sw = weighting.class_weight_to_sample_weights(self.owner, self.y, class_weight)

    def batches(self, perm: np.ndarray | None = None) -> Iterator[Batch]:
        """The batches in order, or in the order ``perm`` (a permutation of the rows)."""
        xs, y, sw = self.x, self.y, self.sw
        if perm is not None:
            idx = mx.array(perm.astype(np.int32))
            xs = tuple(a[idx] for a in xs)
            y = None if y is None else y[idx]
            sw = None if sw is None else sw[idx]
        for i in range(0, self.n, self.batch_size):
            j = min(i + self.batch_size, self.n)
            yield (tuple(a[i:j] for a in xs), None if y is None else y[i:j],
                   None if sw is None else sw[i:j])


class BatchAdapter:
    """An iterable of ``(x, y)`` or ``(x, y, sample_weight)`` batches (or ``x`` alone /
    ``(x,)`` for predict), or a callable returning one; re-iterated every epoch. A
    one-shot iterator (a generator) gives one epoch: ``one_shot`` says so.
    ``class_weight`` (set by :meth:`weigh_classes`) weighs each batch by its labels."""

    def __init__(self, data: Any, owner: str, arg: str = "x") -> None:
        self.data, self.owner, self.arg = data, owner, arg
        self._peek = None
        self.class_weight: dict[int, float] | None = None
        src = data() if callable(data) else data
        if not isinstance(src, Iterable):
            raise error(owner, arg, Desc(type(data).__name__),
                        "a NumPy/MLX array (with y), an iterable of (x, y) batches, or a "
                        "callable returning one", TypeError)
        self.one_shot = not callable(data) and iter(src) is src
        if self.one_shot:
            self._src = src

    @property
    def num_batches(self) -> int | None:
        """``len`` of the iterable, ``None`` when it has none."""
        try:
            return len(self.data)
        except TypeError:
            return None

    def weigh_classes(self, class_weight: dict[int, float] | None) -> None:
        self.class_weight = class_weight

    def _split(self, item: Any) -> Batch:
        if is_arraylike(item):
            return (to_mx(item, self.owner),), None, None
        if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
            x = inputs(item[0], self.owner)
            y = to_mx(item[1], self.owner, "y") if len(item) >= 2 else None
            sw = None
            if len(item) == 3 and item[2] is not None:
                if self.class_weight is not None:
                    raise error(self.owner, "class_weight", self.class_weight,
                                "None when the batches carry sample weights (as in Keras)")
                sw = weighting.check_sample_weight(self.owner, "sample_weight", item[2],
                                                   x[0].shape[0])
            elif self.class_weight is not None and y is not None:
                sw = weighting.class_weight_to_sample_weights(self.owner, y,
                                                              self.class_weight)
            return x, y, sw
        raise error(self.owner, self.arg, Desc(f"a batch of type {type(item).__name__}"),
                    "(x, y) pairs or (x, y, sample_weight) triples of arrays (x may be a "
                    "tuple of arrays)", TypeError)

    def first(self) -> tuple[mx.array, ...]:
        """The inputs of the first batch (kept for :meth:`batches` if one-shot)."""
        if self.one_shot:
            self._peek = next(self._src)
            return self._split(self._peek)[0]
        src = self.data() if callable(self.data) else self.data
        return self._split(next(iter(src)))[0]

    def batches(self, perm: None = None) -> Iterator[Batch]:
        if self.one_shot:
            src = self._src
            if self._peek is not None:
                yield self._split(self._peek)
                self._peek = None
        else:
            src = self.data() if callable(self.data) else self.data
        for item in src:
            yield self._split(item)


Adapter = ArrayAdapter | BatchAdapter


def adapter(x: Any, y: Any, batch_size: int, owner: str,
            sample_weight: Any = None) -> Adapter:
    """Arrays: an array, a tuple of arrays (several inputs), or a list of arrays when
    ``y`` is given. Anything else (a list of batches, a generator, ...) is batches."""
    if is_arraylike(x) or (_several(x) and (isinstance(x, tuple) or y is not None)):
        return ArrayAdapter(x, y, batch_size, owner, sample_weight=sample_weight)
    if y is not None:
        raise error(owner, "y", Desc("an array with x given as batches"),
                    "y=None when x is an iterable of (x, y) batches", TypeError)
    if sample_weight is not None:
        raise error(owner, "sample_weight", Desc("weights with x given as batches"),
                    "None when x is an iterable of batches (give (x, y, sample_weight) "
                    "batches, as in Keras)", TypeError)
    return BatchAdapter(x, owner)


def validation_adapter(data: Any, batch_size: int, owner: str) -> Adapter | None:
    """``validation_data``: ``(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``
    arrays, or an iterable of batches."""
    if data is None:
        return None
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and is_arraylike(data[1]):
        sw = data[2] if len(data) == 3 else None
        return ArrayAdapter(data[0], data[1], batch_size, owner, "validation_data", sw,
                            "validation_data")
    return BatchAdapter(data, owner, "validation_data")


def fit_adapters(x: Any, y: Any, batch_size: int, validation_data: Any,
                 validation_split: float, epochs: int, owner: str,
                 sample_weight: Any = None, class_weight: Any = None
                 ) -> tuple[Adapter, Adapter | None]:
    """The training and validation adapters of ``fit`` (``epochs``: the epochs to run).
    ``class_weight`` weighs the training data only (after ``validation_split``)."""
    if class_weight is not None:
        if sample_weight is not None:
            raise error(owner, "class_weight", class_weight,
                        "None when sample_weight is given (as in Keras)")
        class_weight = weighting.check_class_weight(owner, class_weight)
    train = adapter(x, y, batch_size, owner, sample_weight)
    train, val = _split(train, validation_data, validation_split, epochs, batch_size, owner)
    train.weigh_classes(class_weight)
    return train, val


def _split(train: Adapter, validation_data: Any, validation_split: float, epochs: int,
           batch_size: int, owner: str) -> tuple[Adapter, Adapter | None]:
    """``validation_split`` held out of ``train`` (arrays only), or ``validation_data``'s
    adapter; a one-shot iterator is refused for more than one epoch."""
    if validation_split:
        if not isinstance(train, ArrayAdapter):
            raise error(owner, "validation_split", validation_split,
                        "0 when x is an iterable of batches (give validation_data)")
        train, val = train.split(validation_split)
        return train, val
    if isinstance(train, BatchAdapter) and train.one_shot and epochs > 1:
        raise error(owner, "x", Desc("a one-shot iterator with epochs > 1"),
                    "a list or re-iterable of batches, or a callable returning a fresh "
                    "iterator each epoch", TypeError)
    return train, validation_adapter(validation_data, batch_size, owner)


@lru_cache(maxsize=64)
def _ones(n: int) -> mx.array:
    # from data, not lazy: the cache is shared by every thread (MLX 0.32 cannot evaluate
    # a lazy array in another thread than its creator's)
    return mx.array(np.ones(n, np.float32))


def shard(x: tuple[mx.array, ...], y: mx.array | None, rank: int, size: int
          ) -> tuple[tuple[mx.array, ...], mx.array | None, mx.array, int]:
    """This rank's rows of a batch of ``n`` rows: ``(x, y, w, n)``.

    Every rank gets ``ceil(n / size)`` rows (:func:`~.distributed.shard_bounds`): the
    short shards are padded with copies of row 0, and ``w`` (``[rows]`` float32) is 1 on
    real rows and 0 on padding, so the weighted sums over all ranks are the full batch's.
    """
    n = x[0].shape[0]
    if size == 1:
        return x, y, _ones(n), n
    start, stop, pad = dist.shard_bounds(n, rank, size)
    if pad:
        pos = mx.array(list(range(start, stop)) + [0] * pad, dtype=mx.int32)
        x = tuple(a[pos] for a in x)
        y = None if y is None else y[pos]
    else:
        x = tuple(a[start:stop] for a in x)
        y = None if y is None else y[start:stop]
    w = mx.array([1.0] * (stop - start) + [0.0] * pad, dtype=mx.float32)
    return x, y, w, n


def shard_weighted(x: tuple[mx.array, ...], y: mx.array | None, sw: mx.array | None,
                   rank: int, size: int
                   ) -> tuple[tuple[mx.array, ...], mx.array | None, mx.array, mx.array, int]:
    """:func:`shard` with the batch's sample weights ``sw`` (``[b]`` or ``None``):
    ``(x, y, w, sw, n)``, ``sw`` this rank's weights times ``w`` (``w`` itself when
    ``None``)."""
    if sw is None:
        x, y, w, n = shard(x, y, rank, size)
        return x, y, w, w, n
    xs, y, w, n = shard((*x, sw), y, rank, size)
    return xs[:-1], y, w, xs[-1] * w, n


class EpochIterator:
    """One adapter's batches, epoch after epoch, sharded for ``rank`` of ``size``.

    ``labels``: the argument named in the error when a batch has no ``y`` (``None``:
    labels are not needed, as in predict). ``num_batches`` is ``None`` when unknown.
    """

    def __init__(self, data: Adapter, owner: str, rank: int = 0, size: int = 1,
                 labels: str | None = "x") -> None:
        self.data, self.owner, self.rank, self.size = data, owner, rank, size
        self.labels = labels
        self.batch_y: mx.array | None = None  # the current batch's labels, all ranks'
        self._labels_checked = False

    @property
    def num_batches(self) -> int | None:
        return self.data.num_batches

    def enumerate_epoch(self, shuffle_seed: Any = None
                        ) -> Iterator[tuple[int, tuple[Any, Any, mx.array, mx.array, int]]]:
        """``(step, (x, y, w, sw, n))`` for each batch of one epoch (see
        :func:`shard_weighted`).

        With ``shuffle_seed``, array data is permuted by
        ``np.random.default_rng(shuffle_seed)`` first (batches are taken as they come).
        """
        perm = None
        if shuffle_seed is not None and isinstance(self.data, ArrayAdapter):
            perm = np.random.default_rng(shuffle_seed).permutation(self.data.n)
        for step, (xb, yb, swb) in enumerate(self.data.batches(perm)):
            if yb is None and self.labels is not None:
                raise error(self.owner, self.labels, Desc("a batch without labels"),
                            "(x, y) batches", TypeError)
            self.batch_y = yb
            yield step, shard_weighted(xb, yb, swb, self.rank, self.size)

    def check_labels(self, info: dict[str, Any]) -> None:
        """The labels against the classes a step's trace saw (``info``: see
        :class:`~.steps.Step`), when its loss or a metric takes class indices: all the
        rows of in-memory arrays once (one min and one max), else every batch (whole,
        before sharding, so that every rank raises alike). A ``ValueError`` names the
        run, the loss or metric, the bad label and the allowed range."""
        names = info.get("sparse")
        if not names or self._labels_checked or self.batch_y is None:
            return
        whole = isinstance(self.data, ArrayAdapter)
        span = labels.label_range(self.data.y if whole else self.batch_y)
        labels.check_range(f"{self.owner}: {names[0]}", self.data.arg, span, info["classes"])
        self._labels_checked = whole


def collate(outs: list[mx.array], x: Any, owner: str) -> Any:
    """Predict's batch outputs concatenated on axis 0: NumPy when ``x`` was NumPy (a
    bfloat16 result as float32), MLX otherwise."""
    if not outs:
        raise error(owner, "x", Desc("no batches"), "at least one batch")
    out = mx.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]
    mx.eval(out)  # any thread can use it (MLX 0.32 evaluates lazy arrays in their creator's)
    as_np = isinstance(x, np.ndarray) or (isinstance(x, (tuple, list)) and bool(x)
                                          and isinstance(x[0], np.ndarray))
    if as_np:
        return np.array(out.astype(mx.float32) if out.dtype == mx.bfloat16 else out)
    return out
