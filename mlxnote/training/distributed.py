"""Data-parallel helpers on ``mx.distributed`` (used by :meth:`mlxnote.training.Model.fit`).

Launch a training script on 2 local processes with the ring backend::

    python -m mlxnote.launch --backend ring -n 2 train.py

:mod:`mlxnote.launch` is ``mlx.launch`` that exits non-zero as soon as a rank fails and
ends the others (``mlx.launch`` itself exits 0). A rank that hangs is caught by the
collective timeout (:class:`Watchdog`: ``fit(collective_timeout=...)`` or
``MLXNOTE_COLLECTIVE_TIMEOUT``): the ranks waiting for it end with an error naming their
rank and the step.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from .._validation import error, is_real

__all__ = ["world", "rank", "size", "shard_bounds", "broadcast", "all_sum_ints", "resolve",
           "rank_and_size", "agree", "TIMEOUT_ENV", "TIMEOUT_EXIT", "collective_timeout",
           "Watchdog", "watchdog"]

TIMEOUT_ENV = "MLXNOTE_COLLECTIVE_TIMEOUT"
TIMEOUT_EXIT = 124  # the exit status of a rank the watchdog ends (as timeout(1)'s)
_IDLE = 60.0  # seconds without a guarded block after which the watchdog's thread ends


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


def collective_timeout(value: Any, owner: str) -> float | None:
    """Seconds a step of a distributed run may take (``fit``'s ``collective_timeout``;
    when ``None``, ``$MLXNOTE_COLLECTIVE_TIMEOUT``; unset, empty or 0: no limit)."""
    if value is None:
        env = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            value = float(env) if env else 0.0
        except ValueError:
            raise error(owner, TIMEOUT_ENV, env, "a number of seconds (0: no limit)") from None
        if not math.isfinite(value) or value < 0:
            raise error(owner, TIMEOUT_ENV, env, "a number of seconds >= 0 (0: no limit)")
        return value or None
    if not is_real(value):
        raise error(owner, "collective_timeout", value, "None or a number of seconds > 0",
                    TypeError)
    if not math.isfinite(value) or value <= 0:
        raise error(owner, "collective_timeout", value, "None or a number of seconds > 0")
    return float(value)


def _abort(message: str) -> None:
    """Print ``message`` and end the process at once: the main thread is blocked in a
    collective that will not return, so no exception could reach it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        os.write(2, ("\n" + message + "\n").encode())
    os._exit(TIMEOUT_EXIT)


class Watchdog:
    """Ends this rank when a guarded block (a step's evaluation, where the rank waits in
    the group's collectives) runs over ``timeout`` seconds: a peer that hangs would
    otherwise keep every other rank waiting forever.

    One daemon thread per watchdog sleeps until the current block's deadline; at the
    deadline it calls ``on_timeout(message)`` (by default: print the message, naming the
    rank and the step, and ``os._exit(124)``). ``context`` (``'epoch 2/3'``) is added to
    the step's name. The timeout must exceed the slowest step, the first one (which
    compiles) and what other ranks do between steps (rank 0 writing a checkpoint).
    """

    def __init__(self, timeout: float, rank: int, size: int, owner: str,
                 on_timeout: Callable[[str], None] = _abort) -> None:
        self.timeout, self.rank, self.size, self.owner = timeout, rank, size, owner
        self.on_timeout = on_timeout
        self.context = ""
        self._cond = threading.Condition()
        self._block: tuple[float, str] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def message(self, what: str) -> str:
        where = f"{what} of {self.context}" if self.context else what
        return (f"{self.owner}: rank {self.rank} of {self.size}: collective timeout: {where} "
                f"did not finish within {self.timeout:g} s (collective_timeout / "
                f"{TIMEOUT_ENV}): another rank has hung or died; ending rank {self.rank}")

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        with self._cond:
            self._block = (time.monotonic() + self.timeout, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True,
                                                name="mlxnote-collective-watchdog")
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._block = None
                self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._block is None:
                    if not self._cond.wait(_IDLE) and self._block is None:
                        break  # idle (a run that ended without close): the thread ends
                    continue
                deadline, what = self._block
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._block = None
                self.on_timeout(self.message(what))
            self._thread = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


def watchdog(timeout: float | None, group: Any, owner: str,
             on_timeout: Callable[[str], None] = _abort) -> Watchdog | None:
    """A :class:`Watchdog` for a run in ``group`` (``None`` without a group or a limit)."""
    if group is None or timeout is None:
        return None
    return Watchdog(timeout, group.rank(), group.size(), owner, on_timeout)
