"""Keras-style callbacks: the hooks, History, EarlyStopping, ModelCheckpoint and the
progress bar (:class:`ProgbarLogger`).

``fit`` runs ``[History, ProgbarLogger, *callbacks]``, ``evaluate`` and ``predict``
``[ProgbarLogger, *callbacks]``, through a :class:`CallbackList`. Logs are dicts of
floats: the running means of the loss and metrics after each batch, the epoch's means
(and the ``val_`` ones) at the end of an epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._validation import error
from . import checkpoint
from .display import Display, style_for

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

__all__ = ["Callback", "CallbackList", "History", "ModelCheckpoint", "EarlyStopping",
           "ProgbarLogger"]


class Callback:
    """Keras-style hooks; ``self.model`` and ``self.params`` (``epochs``, ``steps``: the
    batches per run or ``None`` if unknown, ``verbose``) are set before the run."""

    model: Model | None = None
    params: dict[str, Any] = {}

    def set_model(self, model: Model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...
    def on_predict_end(self, logs=None): ...

    def close(self) -> None:
        """Called when the run ends, also when it raised: release what is held (a live
        progress bar)."""


class CallbackList:
    """Calls each hook on every callback in order; :meth:`close` on all at the end."""

    def __init__(self, callbacks: Iterable[Callback], model: Model,
                 params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook: str):
        """``on_*``: a function calling that hook of every callback (bound once)."""
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        fns = [getattr(cb, hook) for cb in self.callbacks]

        def call(*args: Any) -> None:
            for fn in fns:
                fn(*args)

        setattr(self, hook, call)  # later lookups skip __getattr__
        return call

    def close(self) -> None:
        for cb in self.callbacks:
            cb.close()


class History(Callback):
    """Per-epoch numbers: ``history['loss']``, ``history['val_accuracy']``, ...;
    ``epoch`` lists the epoch indices run and ``times`` the seconds each took (from its
    ``on_epoch_begin`` to its ``on_epoch_end``, validation included)."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.times: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t0)
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"


def _mode_sign(owner: str, mode: str, monitor: str) -> float:
    """+1 when smaller is better, -1 when larger is (``'auto'``: accuracies, AUC)."""
    if mode == "auto":
        return -1.0 if ("acc" in monitor or monitor.endswith("auc")) else 1.0
    if mode in ("min", "max"):
        return 1.0 if mode == "min" else -1.0
    raise error(owner, "mode", mode, "'auto', 'min' or 'max'")


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
        self.sign = _mode_sign("ModelCheckpoint", mode, monitor)
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


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    ``restore_best_weights`` puts back the weights of the best epoch."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.sign = _mode_sign("EarlyStopping", mode, monitor)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights, self.stopped_epoch = math.inf, 0, None, None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            return
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.model.stop_training = True
            self.stopped_epoch = epoch
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)


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
