"""Data-parallel helpers on ``mx.distributed`` (used by :meth:`mlxnote.training.Model.fit`).

Launch a training script on 2 local processes with the ring backend::

    mlx.launch --backend ring -n 2 --python .venv/bin/python train.py

``mlx.launch`` exits 0 even when a rank fails: check every rank's result.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

__all__ = ["world", "rank", "size", "shard_bounds", "broadcast", "all_sum_ints", "resolve",
           "rank_and_size", "agree"]


def world() -> mx.distributed.Group | None:
    """The global group (``mx.distributed.init()``), or ``None`` without distributed support.

    In a process not started by ``mlx.launch`` this is a group of size 1.
    """
    if not mx.distributed.is_available():
        return None
    return mx.distributed.init()


def rank(group: mx.distributed.Group | None = None) -> int:
    group = group if group is not None else world()
    return 0 if group is None else group.rank()


def size(group: mx.distributed.Group | None = None) -> int:
    group = group if group is not None else world()
    return 1 if group is None else group.size()


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int, int]:
    """Rank ``rank``'s part of ``n`` rows split over ``size`` ranks.

    Every rank gets ``ceil(n / size)`` rows so that all ranks run the same shapes (and
    so the same compiled step and the same collectives): ``(start, stop, pad)`` where
    rows ``start:stop`` are real and ``pad`` filler rows (weight 0) complete the shard.
    """
    per = math.ceil(n / size)
    start = min(rank * per, n)
    stop = min(start + per, n)
    return start, stop, per - (stop - start)


def broadcast(tree: Any, group: mx.distributed.Group) -> Any:
    """Rank 0's values of every array in ``tree``, on every rank (a sum with zeros)."""
    flat = tree_flatten(tree)
    first = group.rank() == 0
    out = [(k, mx.distributed.all_sum(v if first else mx.zeros_like(v), group=group))
           for k, v in flat]
    mx.eval([v for _, v in out])
    return tree_unflatten(out)


def all_sum_ints(values: list[int], group: mx.distributed.Group) -> list[int]:
    """Sum small Python ints over the group (e.g. to agree on a seed or a count)."""
    arr = mx.distributed.all_sum(mx.array(values, dtype=mx.int64), group=group)
    return [int(v) for v in arr.tolist()]


def resolve(group: mx.distributed.Group | None = None) -> mx.distributed.Group | None:
    """``group``, or by default :func:`world`; ``None`` when it has a single rank (no
    collectives are traced then)."""
    if group is None:
        group = world()
    if group is not None and group.size() == 1:
        group = None
    return group


def rank_and_size(group: mx.distributed.Group | None) -> tuple[int, int]:
    """``(rank, size)`` of ``group``; ``(0, 1)`` for ``None``."""
    return (0, 1) if group is None else (group.rank(), group.size())


def agree(value: int, group: mx.distributed.Group | None) -> int:
    """Rank 0's ``value`` on every rank (e.g. a random seed); ``value`` without a group."""
    if group is None:
        return value
    return all_sum_ints([value if group.rank() == 0 else 0], group)[0]
