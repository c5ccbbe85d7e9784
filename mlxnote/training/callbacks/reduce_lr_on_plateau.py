"""ReduceLROnPlateau: a smaller learning rate when the monitored log stops improving."""

from __future__ import annotations

import warnings

import numpy as np

from ..._validation import check_float, check_int, error, is_real
from .base import Callback, mode_sign
from .learning_rate import get_learning_rate, set_learning_rate

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(Callback):
    """Keras's ``ReduceLROnPlateau``: after ``patience`` epochs without an improvement
    of ``monitor``, the learning rate becomes ``max(lr * factor, min_lr)`` (if above
    ``min_lr``), then ``cooldown`` epochs pass before counting again.

    Args:
        monitor (str): the log watched (``'val_loss'``); a missing one warns.
        factor (float): in ``(0, 1)``, 0.1.
        patience (int): epochs without improvement before reducing, 10.
        verbose (int): 1 prints each reduction.
        mode (str): ``'auto'`` (larger is better for accuracies, AUC, precision, recall;
            smaller otherwise), ``'min'`` or ``'max'``.
        min_delta (float): an improvement is a change of more than this, 1e-4.
        cooldown (int): epochs after a reduction with no counting, 0.
        min_lr (float): the lower bound, 0.

    The rate is logged as ``learning_rate`` at the end of each epoch (as Keras does).
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        owner = "ReduceLROnPlateau"
        if not is_real(factor) or not factor < 1.0:
            raise error(owner, "factor", factor, "a float < 1.0 (new_lr = lr * factor)",
                        ValueError if is_real(factor) else TypeError)
        self.monitor, self.factor = monitor, float(factor)
        self.patience = check_int(owner, "patience", patience, 0)
        self.verbose = check_int(owner, "verbose", verbose, 0)
        self.cooldown = check_int(owner, "cooldown", cooldown, 0)
        self.min_delta = abs(check_float(owner, "min_delta", min_delta, -np.inf, np.inf))
        self.min_lr = check_float(owner, "min_lr", min_lr, 0.0, np.inf)
        self.sign = mode_sign(owner, mode, monitor)
        self._reset()

    def _reset(self) -> None:
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _improved(self, current: float) -> bool:
        """Keras's ``monitor_op(current -/+ min_delta, best)``."""
        return self.best is None or self.sign * current + self.min_delta < self.sign * self.best

    def _reduce(self, epoch: int) -> bool:
        opt = self.model.optimizer
        old = get_learning_rate(opt, "ReduceLROnPlateau")
        if not old > np.float32(self.min_lr):
            return False
        new = max(old * self.factor, self.min_lr)
        set_learning_rate(opt, new, "ReduceLROnPlateau")
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.",
                  flush=True)
        return True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = get_learning_rate(self.model.optimizer, "ReduceLROnPlateau")
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau: learning rate reduction is conditioned on "
                          f"'{self.monitor}', which is not in the logs (available: "
                          f"{', '.join(logs)})", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0
