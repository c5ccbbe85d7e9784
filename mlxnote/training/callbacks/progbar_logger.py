"""ProgbarLogger: the progress display of fit, evaluate and predict."""

from __future__ import annotations

from typing import Any

from ..display import Display, style_for
from .base import Callback

__all__ = ["ProgbarLogger"]


class ProgbarLogger(Callback):
    """The progress display (see :mod:`mlxnote.training.display`) of a fit, an
    evaluation or a prediction.

    ``verbose``: ``'auto'``/1 a rich bar in a terminal (an HTML bar updated in place in
    Jupyter; a line per epoch when the output is not a terminal), 2 a line per epoch,
    0 nothing. ``owner`` is named in the error for any other value.
    """

    def __init__(self, verbose: Any = "auto", owner: str = "Model") -> None:
        self.display = Display(style_for(verbose, owner))
        self.seen = 0

    def _begin(self, label: str) -> None:
        self.seen = 0
        self.display.begin(label, self.params.get("steps"))

    def _step(self, batch: int, logs: dict[str, float] | None) -> None:
        self.seen = batch + 1
        self.display.step(self.seen, logs or {})

    def on_epoch_begin(self, epoch, logs=None):
        self._begin(f"Epoch {epoch + 1}/{self.params['epochs']}")

    def _end(self, logs=None) -> None:
        self.display.end(self.seen, logs or {})

    def on_train_batch_end(self, batch, logs=None):
        self._step(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._end(logs)

    def on_test_begin(self, logs=None):
        self._begin("Evaluate")

    def on_predict_begin(self, logs=None):
        self._begin("Predict")

    on_test_batch_end = on_predict_batch_end = on_train_batch_end
    on_test_end = on_predict_end = _end

    def close(self) -> None:
        self.display.close()
