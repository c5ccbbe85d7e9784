"""ModelCheckpoint: a checkpoint after each epoch."""

from __future__ import annotations

import math
from typing import Any

from .. import checkpoint
from .base import Callback, mode_sign

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Save a checkpoint (:meth:`Model.save`) after each epoch, on rank 0 only.

    Args:
        path (str): the checkpoint file (safetensors); ``{epoch}`` in it is formatted.
        monitor (str): the log watched when ``save_best_only``.
        save_best_only (bool): save only when ``monitor`` improves.
        mode (str): ``'min'``, ``'max'`` or ``'auto'`` (max for accuracies).
    """

    def __init__(self, path: Any, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto") -> None:
        self.path, self.monitor, self.save_best_only = str(path), monitor, save_best_only
        self.sign = mode_sign("ModelCheckpoint", mode, monitor)
        self.best = math.inf

    def on_train_begin(self, logs=None):
        """Remove the temporary files of earlier writers of this path that died mid-save
        (each as large as a checkpoint; on the writing rank)."""
        if self.model._writes_checkpoints():
            checkpoint.clean_stale_like(self.path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                return
            value = self.sign * logs[self.monitor]
            if value >= self.best:
                return
            self.best = value
        self.model.save(self.path.format(epoch=epoch + 1))
