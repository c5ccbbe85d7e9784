"""LearningRateScheduler: a learning rate per epoch from a function."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..._validation import check_int, error
from .base import Callback
from .learning_rate import as_rate, get_learning_rate, set_learning_rate

__all__ = ["LearningRateScheduler"]


def _takes_rate(fn: Callable) -> bool | None:
    """Whether ``fn`` takes ``(epoch, lr)`` (``None``: its signature cannot be read)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(0, 0.0)
    except TypeError:
        return False
    return True


class LearningRateScheduler(Callback):
    """Keras's ``LearningRateScheduler(schedule, verbose=0)``: at the start of every
    epoch the optimizer's learning rate becomes ``schedule(epoch, lr)`` (``epoch`` from
    0, ``lr`` the current rate as a float; or ``schedule(epoch)``), which must return a
    float. ``verbose=1`` prints each change. The rate is logged as ``learning_rate`` at
    the end of each epoch (in the History).

    The rate lives in the optimizer's state, an input of the compiled step: changing it
    does not trace the step again. An optimizer whose rate is a schedule is refused (a
    ``TypeError``), as in Keras.
    """

    def __init__(self, schedule: Callable, verbose: int = 0) -> None:
        if not callable(schedule):
            raise error("LearningRateScheduler", "schedule", schedule,
                        "a function schedule(epoch, lr) or schedule(epoch)", TypeError)
        self.schedule = schedule
        self.verbose = check_int("LearningRateScheduler", "verbose", verbose, 0)
        self._two = _takes_rate(schedule)

    def _next(self, epoch: int, lr: float) -> Any:
        if self._two is None:  # as Keras: the new form, then the old on a TypeError
            try:
                return self.schedule(epoch, lr)
            except TypeError:
                return self.schedule(epoch)
        return self.schedule(epoch, lr) if self._two else self.schedule(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        owner = "LearningRateScheduler"
        opt = self.model.optimizer
        lr = as_rate(owner, self._next(epoch, get_learning_rate(opt, owner)))
        set_learning_rate(opt, lr, owner)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{lr}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(self.model.optimizer,
                                                      "LearningRateScheduler")
