"""TerminateOnNaN: stop training at a NaN or infinite loss."""

from __future__ import annotations

import math

from ..._validation import check_bool
from .base import Callback

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Keras's ``TerminateOnNaN(raise_error=False)``: after a training batch whose
    running loss is NaN or infinite, training stops (``model.stop_training``: that epoch
    ends after the batch, its logs and callbacks' ``on_epoch_end`` and
    ``on_train_end`` still run), printing ``Batch <i>: Invalid loss, terminating
    training``; with ``raise_error=True`` a ``RuntimeError`` is raised at once instead
    (no ``on_train_end``: backups stay)."""

    def __init__(self, raise_error: bool = False) -> None:
        self.raise_error = check_bool("TerminateOnNaN", "raise_error", raise_error)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"TerminateOnNaN: NaN or Inf loss encountered at batch {batch}. "
                               f"Loss value: {loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
        self.model.stop_training = True
