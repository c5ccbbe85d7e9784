"""The callback hooks, the list that calls them, and :class:`History`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..._validation import error

if TYPE_CHECKING:  # pragma: no cover
    from ..model import Model

__all__ = ["Callback", "CallbackList", "History", "mode_sign"]


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


_LARGER_IS_BETTER = re.compile(r"(acc|auc|precision|recall)(_\d+)?$")


def mode_sign(owner: str, mode: str, monitor: str) -> float:
    """+1 when smaller is better, -1 when larger is (``'auto'``: larger for the
    accuracies, AUC, precision and recall, Keras's metrics whose direction is up;
    smaller otherwise)."""
    if mode == "auto":
        name = monitor.removeprefix("val_")
        return -1.0 if ("acc" in name or _LARGER_IS_BETTER.search(name)) else 1.0
    if mode in ("min", "max"):
        return 1.0 if mode == "min" else -1.0
    raise error(owner, "mode", mode, "'auto', 'min' or 'max'")
