"""Note-style models with a Keras-style training loop on MLX.

:class:`Model` is an :class:`mlx.nn.Module`: layers assigned in ``__init__`` (mlxnote
layers, plain ``mlx.nn`` modules, or lists of them) register themselves in assignment
order, and ``__call__`` defines the forward pass. On top of that it gives

* ``param`` / ``get_weights`` / ``set_weights`` in Note's layout and creation order;
* ``compile`` / ``fit`` / ``evaluate`` / ``predict`` with compiled train and eval steps
  (the model state, the optimizer state and ``mx.random.state`` are captured), a rich
  progress bar (terminal and Jupyter) and a :class:`History`;
* ``save`` / ``load``: atomic, strictly checked safetensors checkpoints holding the
  weights, the optimizer state and the epoch; ``fit(..., resume=path)`` continues;
* data-parallel training when the process runs in an ``mx.distributed`` group of
  more than one rank (``mlx.launch``).

Optimizers, losses and metrics by name follow Keras: ``'adam'`` is Keras's Adam
(learning rate 1e-3, betas 0.9/0.999, epsilon 1e-7, Keras's update rule), ``'sgd'`` has
learning rate 0.01, ``'sparse_categorical_crossentropy'`` expects probabilities unless
``SparseCategoricalCrossentropy(from_logits=True)`` is given.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from . import distributed as dist
from .nn.layer import Layer

__all__ = [
    "Model", "Sequential", "History", "Callback", "ModelCheckpoint", "EarlyStopping",
    "Adam", "AdamW", "Adamax", "RMSprop", "Adagrad", "get_optimizer",
    "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "Huber", "get_loss",
    "CheckpointError",
]

EPSILON = 1e-7  # Keras's backend.epsilon()
FORMAT = "mlxnote-checkpoint/1"


def _err(where: str, arg: str, given: Any, allowed: str, exc: type = ValueError):
    return exc(f"{where}: argument '{arg}' got {given!r}; allowed: {allowed}.")


# ---------------------------------------------------------------------------------
# Optimizers with Keras's update rules and defaults
# ---------------------------------------------------------------------------------
class Adam(optim.Adam):
    """Keras's Adam: ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

    Defaults are Keras's (``learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7``); ``mlx.optimizers.Adam`` differs in ``eps`` and bias correction.
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, betas=[beta_1, beta_2], eps=epsilon)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(mx.float32)
        b1, b2 = self.betas
        t = self.step.astype(mx.float32)
        m = state["m"] + (gradient - state["m"]) * (1 - b1)
        v = state["v"] + (mx.square(gradient) - state["v"]) * (1 - b2)
        state["m"], state["v"] = m, v
        alpha = (lr * mx.sqrt(1 - b2**t) / (1 - b1**t)).astype(gradient.dtype)
        return parameter - (m * alpha) / (mx.sqrt(v) + self.eps)


class AdamW(Adam):
    """Keras's AdamW: decay ``w -= w * weight_decay * lr`` first, then Keras's Adam.

    Defaults: ``learning_rate=1e-3, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7``.
    """

    def __init__(self, learning_rate=1e-3, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = weight_decay

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(parameter.dtype)
        parameter = parameter - parameter * self.weight_decay * lr
        return super().apply_single(gradient, parameter, state)


class Adamax(optim.Adam):
    """Keras's Adamax: ``u = max(b2 u, |g|)``, ``w -= lr m / ((1 - b1^t)(u + eps))``."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, betas=[beta_1, beta_2], eps=epsilon)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        t = self.step.astype(mx.float32)
        m = state["m"] + (gradient - state["m"]) * (1 - b1)
        u = mx.maximum(b2 * state["v"], mx.abs(gradient))
        state["m"], state["v"] = m, u
        return parameter - lr * m / ((1 - b1**t).astype(gradient.dtype) * (u + self.eps))


class RMSprop(optim.Optimizer):
    """Keras's RMSprop: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / sqrt(v + eps)``
    (``centered`` subtracts the squared mean gradient; ``momentum`` accumulates).

    Defaults: ``learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False``.
    """

    def __init__(self, learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.rho, self.momentum, self.eps, self.centered = rho, momentum, epsilon, centered

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)
        if self.momentum > 0:
            state["mom"] = mx.zeros_like(parameter)
        if self.centered:
            state["mg"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        v = self.rho * state["v"] + (1 - self.rho) * mx.square(gradient)
        state["v"] = v
        if self.centered:
            mg = self.rho * state["mg"] + (1 - self.rho) * gradient
            state["mg"] = mg
            denom = v - mx.square(mg) + self.eps
        else:
            denom = v + self.eps
        inc = lr * gradient / mx.sqrt(denom)
        if self.momentum > 0:
            inc = self.momentum * state["mom"] + inc
            state["mom"] = inc
        return parameter - inc


class Adagrad(optim.Optimizer):
    """Keras's Adagrad: ``a += g^2`` (from ``initial_accumulator_value``),
    ``w -= lr g / sqrt(a + eps)``. Defaults: ``1e-3, 0.1, 1e-7``."""

    def __init__(self, learning_rate=1e-3, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.initial_accumulator_value, self.eps = initial_accumulator_value, epsilon

    def init_single(self, parameter, state):
        state["a"] = mx.full(parameter.shape, self.initial_accumulator_value, parameter.dtype)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        a = state["a"] + mx.square(gradient)
        state["a"] = a
        return parameter - lr * gradient / mx.sqrt(a + self.eps)


_OPTIMIZERS: dict[str, Callable[[], optim.Optimizer]] = {
    "adam": Adam,
    "adamw": AdamW,
    "adamax": Adamax,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": lambda: optim.AdaDelta(1e-3, rho=0.95, eps=1e-7),
    "sgd": lambda: optim.SGD(0.01),
    "lion": lambda: optim.Lion(1e-3, betas=[0.9, 0.99]),
}


def get_optimizer(spec: Any, where: str = "Model") -> optim.Optimizer:
    """An optimizer from a Keras name (Keras defaults) or an ``mlx.optimizers`` object."""
    if isinstance(spec, optim.Optimizer):
        return spec
    if isinstance(spec, str) and spec.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[spec.lower()]()
    raise _err(where, "optimizer", spec, "one of " + ", ".join(repr(k) for k in _OPTIMIZERS)
               + " or an mlx.optimizers.Optimizer", TypeError if not isinstance(spec, str)
               else ValueError)


# ---------------------------------------------------------------------------------
# Losses (Keras semantics) and metrics; each returns one value per sample
# ---------------------------------------------------------------------------------
def _per_sample(v: mx.array) -> mx.array:
    v = v.astype(mx.float32)
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim > 1 else v


class _Loss:
    name = "loss"

    def __call__(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class SparseCategoricalCrossentropy(_Loss):
    """Integer labels ``[B, ...]`` against class scores ``[B, ..., C]`` (probabilities,
    clipped to ``[1e-7, 1 - 1e-7]`` as Keras does, or logits with ``from_logits``)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits

    def __call__(self, y_true, y_pred):
        y_pred = y_pred.astype(mx.float32)
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        logits = y_pred if self.from_logits else mx.log(mx.clip(y_pred, EPSILON, 1 - EPSILON))
        picked = mx.take_along_axis(logits, y_true.astype(mx.int32)[..., None], axis=-1)
        return _per_sample(mx.logsumexp(logits, axis=-1) - picked.squeeze(-1))


class CategoricalCrossentropy(_Loss):
    """One-hot (or soft) labels ``[B, ..., C]``; probabilities (renormalized and clipped,
    as Keras does) or logits; ``label_smoothing`` as in Keras."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def __call__(self, y_true, y_pred):
        y_pred = y_pred.astype(mx.float32)
        y_true = y_true.astype(mx.float32)
        if self.label_smoothing:
            c = y_pred.shape[-1]
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / c
        if self.from_logits:
            logp = y_pred - mx.logsumexp(y_pred, axis=-1, keepdims=True)
        else:
            p = y_pred / y_pred.sum(axis=-1, keepdims=True)
            logp = mx.log(mx.clip(p, EPSILON, 1 - EPSILON))
        return _per_sample(-(y_true * logp).sum(axis=-1))


class BinaryCrossentropy(_Loss):
    """Labels in [0, 1] against probabilities (clipped) or logits; mean over the last
    axis as in Keras."""

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def __call__(self, y_true, y_pred):
        y_pred = y_pred.astype(mx.float32)
        y_true = y_true.astype(mx.float32).reshape(y_pred.shape)
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            v = mx.maximum(y_pred, 0) - y_pred * y_true + mx.log1p(mx.exp(-mx.abs(y_pred)))
        else:
            p = mx.clip(y_pred, EPSILON, 1 - EPSILON)
            v = -(y_true * mx.log(p) + (1 - y_true) * mx.log(1 - p))
        return _per_sample(v)


class MeanSquaredError(_Loss):
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        return _per_sample(mx.square(y_pred.astype(mx.float32)
                                     - y_true.astype(mx.float32).reshape(y_pred.shape)))


class MeanAbsoluteError(_Loss):
    name = "mean_absolute_error"

    def __call__(self, y_true, y_pred):
        return _per_sample(mx.abs(y_pred.astype(mx.float32)
                                  - y_true.astype(mx.float32).reshape(y_pred.shape)))


class Huber(_Loss):
    name = "huber"

    def __init__(self, delta: float = 1.0):
        self.delta = delta

    def __call__(self, y_true, y_pred):
        e = mx.abs(y_pred.astype(mx.float32) - y_true.astype(mx.float32).reshape(y_pred.shape))
        d = self.delta
        return _per_sample(mx.where(e <= d, 0.5 * e * e, d * e - 0.5 * d * d))


_LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber,
}


class _FnLoss(_Loss):
    """A callable loss. ``mlx.nn.losses`` functions take ``(predictions, targets)`` and
    are called with ``reduction='none'``; any other callable takes Keras's
    ``(y_true, y_pred)`` and returns per-sample values or a batch mean."""

    def __init__(self, fn):
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.mlx = getattr(fn, "__module__", "") == mnn.losses.__name__

    def __call__(self, y_true, y_pred):
        v = self.fn(y_pred, y_true, reduction="none") if self.mlx else self.fn(y_true, y_pred)
        if v.ndim == 0:
            return mx.broadcast_to(v.astype(mx.float32), (y_pred.shape[0],))
        return _per_sample(v)


def get_loss(spec: Any, where: str = "Model") -> Callable:
    """A loss from a Keras name or a callable (see :class:`_FnLoss`)."""
    if isinstance(spec, _Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in _LOSSES:
        return _LOSSES[spec.lower()]()
    if callable(spec) and not isinstance(spec, str):
        return _FnLoss(spec)
    raise _err(where, "loss", spec, "one of " + ", ".join(repr(k) for k in _LOSSES)
               + " or a callable(y_true, y_pred)",
               ValueError if isinstance(spec, str) else TypeError)


def _acc_kind(loss, y_true, y_pred) -> str:
    """Keras's resolution of 'accuracy' from the loss and the shapes."""
    if isinstance(loss, BinaryCrossentropy) or (y_pred.ndim >= 1 and y_pred.shape[-1] == 1):
        return "binary"
    if isinstance(loss, SparseCategoricalCrossentropy) or y_true.ndim < y_pred.ndim:
        return "sparse"
    return "categorical"


def _accuracy(kind: str, loss: Any, y_true, y_pred):
    if kind == "binary":
        thr = 0.0 if getattr(loss, "from_logits", False) else 0.5
        hit = (y_pred > thr) == (y_true.reshape(y_pred.shape) > 0.5)
    elif kind == "sparse":
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        hit = mx.argmax(y_pred, axis=-1) == y_true.astype(mx.int32)
    else:
        hit = mx.argmax(y_pred, axis=-1) == mx.argmax(y_true, axis=-1)
    return _per_sample(hit)


_METRICS = {
    "accuracy": None, "acc": None,
    "sparse_categorical_accuracy": "sparse", "categorical_accuracy": "categorical",
    "binary_accuracy": "binary",
    "mae": "mae", "mean_absolute_error": "mae", "mse": "mse", "mean_squared_error": "mse",
}


def _get_metric(spec: Any, loss: Any, where: str = "Model") -> tuple[str, Callable]:
    if isinstance(spec, str) and spec.lower() in _METRICS:
        name = spec.lower()
        kind = _METRICS[name]
        name = "accuracy" if name == "acc" else name
        if kind == "mae":
            return name, MeanAbsoluteError()
        if kind == "mse":
            return name, MeanSquaredError()
        if kind is None:
            return name, lambda yt, yp: _accuracy(_acc_kind(loss, yt, yp), loss, yt, yp)
        return name, partial(_accuracy, kind, loss)
    if callable(spec) and not isinstance(spec, str):
        f = spec if isinstance(spec, _Loss) else _FnLoss(spec)
        return getattr(f, "name", "metric"), f
    raise _err(where, "metrics", spec, "names among " + ", ".join(repr(k) for k in _METRICS)
               + " or callables(y_true, y_pred)",
               ValueError if isinstance(spec, str) else TypeError)


# ---------------------------------------------------------------------------------
# Callbacks and history
# ---------------------------------------------------------------------------------
class Callback:
    """Keras-style hooks; ``self.model`` is set by ``fit``. ``logs`` hold floats."""

    model: Model | None = None

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Per-epoch numbers: ``history['loss']``, ``history['val_accuracy']``, ...;
    ``epoch`` lists the epoch indices run and ``times`` the seconds each took."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.times: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"


class ModelCheckpoint(Callback):
    """Save a checkpoint (:meth:`Model.save`) after each epoch, on rank 0 only.

    Args:
        path (str): the checkpoint file (safetensors); ``{epoch}`` in it is formatted.
        monitor (str): the log watched when ``save_best_only``.
        save_best_only (bool): save only when ``monitor`` improves.
        mode (str): ``'min'``, ``'max'`` or ``'auto'`` (max for accuracies).
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path, self.monitor, self.save_best_only = str(path), monitor, save_best_only
        self.sign = _mode_sign(mode, monitor)
        self.best = math.inf

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

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.sign = _mode_sign(mode, monitor)
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


def _mode_sign(mode: str, monitor: str) -> float:
    if mode == "auto":
        return -1.0 if ("acc" in monitor or monitor.endswith("auc")) else 1.0
    if mode in ("min", "max"):
        return 1.0 if mode == "min" else -1.0
    raise _err("callback", "mode", mode, "'auto', 'min' or 'max'")


# ---------------------------------------------------------------------------------
# Progress display: rich bar in a terminal, HTML updates in Jupyter, lines otherwise
# ---------------------------------------------------------------------------------
def _in_jupyter() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _fmt_logs(logs: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


class _Display:
    """One progress line per epoch. ``style``: 'bar' (rich Live), 'jupyter' (an HTML
    display updated in place), 'lines' (a plain line per epoch) or 'none'."""

    interval = {"bar": 0.1, "jupyter": 0.25}

    def __init__(self, verbose: Any, title: str = "Epoch"):
        if verbose in (0, False):
            style = "none"
        elif verbose == 2:
            style = "lines"
        elif verbose in (1, True, "auto"):
            style = "jupyter" if _in_jupyter() else ("bar" if sys.stdout.isatty() else "lines")
        else:
            raise _err("Model", "verbose", verbose, "'auto', 0, 1 or 2")
        self.style, self.title = style, title
        self.progress = self.handle = self.task = None
        self.last = 0.0

    def _progress(self, console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=30),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[logs]}"), console=console,
                        auto_refresh=False, transient=False)

    def begin(self, label: str, total: int | None) -> None:
        self.label, self.t0 = f"{self.title} {label}".strip(), time.perf_counter()
        if self.style == "bar":
            from rich.console import Console

            self.progress = self._progress(Console(file=sys.stdout))
            self.progress.start()
        elif self.style == "jupyter":
            from IPython.display import HTML, display
            from rich.console import Console

            self.console = Console(file=io.StringIO(), record=True, width=120,
                                   force_terminal=True, force_jupyter=False,
                                   color_system="truecolor")
            self.progress = self._progress(self.console)
            self.handle = display(HTML(""), display_id=True)
        if self.progress is not None:
            self.task = self.progress.add_task(self.label, total=total, logs="")

    def _render(self):
        if self.style == "bar":
            self.progress.refresh()
        else:
            from IPython.display import HTML

            self.console.print(self.progress.get_renderable())
            html = self.console.export_html(inline_styles=True, code_format=(
                "<pre style=\"white-space:pre;line-height:normal;font-family:Menlo,"
                "'DejaVu Sans Mono',consolas,monospace\">{code}</pre>"))
            self.handle.update(HTML(html))

    def step(self, done: int, logs: dict[str, float]) -> None:
        if self.progress is None:
            return
        self.progress.update(self.task, completed=done, logs=_fmt_logs(logs))
        now = time.perf_counter()
        if now - self.last >= self.interval[self.style]:
            self.last = now
            self._render()

    def end(self, done: int, logs: dict[str, float]) -> None:
        if self.style == "none":
            return
        if self.style == "lines":
            dt = time.perf_counter() - self.t0
            print(f"{self.label}: {done} steps, {dt:.1f}s  {_fmt_logs(logs)}", flush=True)
            return
        self.progress.update(self.task, completed=done, total=done, logs=_fmt_logs(logs))
        self._render()
        self.close()

    def close(self) -> None:
        """Stop a live bar (also when training raised)."""
        if self.style == "bar" and self.progress is not None:
            self.progress.stop()
        self.progress = None


# ---------------------------------------------------------------------------------
# Data: arrays (NumPy / MLX / tuples of them for several inputs) or iterables of batches
# ---------------------------------------------------------------------------------
def _is_arraylike(a: Any) -> bool:
    return isinstance(a, (mx.array, np.ndarray))


def _to_mx(a: Any, where: str = "Model", arg: str = "x") -> mx.array:
    if isinstance(a, mx.array):
        return a
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise _err(where, arg, f"an array of dtype {arr.dtype}", "numbers", TypeError)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return mx.array(arr)


def _inputs(x: Any, where: str, arg: str = "x") -> tuple[mx.array, ...]:
    if isinstance(x, (tuple, list)) and x and all(_is_arraylike(e) for e in x):
        return tuple(_to_mx(e, where, arg) for e in x)
    return (_to_mx(x, where, arg),)


class _Arrays:
    """In-memory arrays; one permuted copy per epoch when shuffling, then slices."""

    def __init__(self, x, y, batch_size, where):
        self.x = _inputs(x, where)
        self.y = None if y is None else _to_mx(y, where, "y")
        self.n = self.x[0].shape[0]
        for a in self.x[1:] + ((self.y,) if self.y is not None else ()):
            if a.shape[0] != self.n:
                raise _err(where, "y" if a is self.y else "x",
                           f"arrays with {a.shape[0]} and {self.n} samples",
                           "the same number of samples (first axis) in every array")
        if self.n == 0:
            raise _err(where, "x", "an empty array", "at least one sample")
        self.batch_size = batch_size

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def first(self):
        b = min(self.batch_size, self.n)
        return tuple(a[:b] for a in self.x)

    def batches(self, perm: np.ndarray | None = None):
        xs, y = self.x, self.y
        if perm is not None:
            idx = mx.array(perm.astype(np.int32))
            xs = tuple(a[idx] for a in xs)
            y = None if y is None else y[idx]
        for i in range(0, self.n, self.batch_size):
            j = min(i + self.batch_size, self.n)
            yield tuple(a[i:j] for a in xs), (None if y is None else y[i:j])


class _Batches:
    """An iterable of ``(x, y)`` batches (or ``x`` alone / ``(x,)`` for predict), or a
    callable returning one; re-iterated every epoch."""

    def __init__(self, data, where, arg="x"):
        self.data, self.where, self.arg = data, where, arg
        self._peek = None
        src = data() if callable(data) else data
        if not isinstance(src, Iterable):
            raise _err(where, arg, type(data).__name__,
                       "a NumPy/MLX array (with y), an iterable of (x, y) batches, or a "
                       "callable returning one", TypeError)
        self.one_shot = not callable(data) and iter(src) is src
        if self.one_shot:
            self._src = src

    def __len__(self):
        return len(self.data)

    def has_len(self) -> bool:
        try:
            len(self.data)
            return True
        except TypeError:
            return False

    def _split(self, item):
        if _is_arraylike(item):
            return (_to_mx(item, self.where),), None
        if isinstance(item, (tuple, list)) and 1 <= len(item) <= 2:
            x = _inputs(item[0], self.where)
            y = _to_mx(item[1], self.where, "y") if len(item) == 2 else None
            return x, y
        raise _err(self.where, self.arg, f"a batch of type {type(item).__name__}",
                   "(x, y) pairs of arrays (x may be a tuple of arrays)", TypeError)

    def first(self):
        if self.one_shot:
            self._peek = next(self._src)
            return self._split(self._peek)[0]
        src = self.data() if callable(self.data) else self.data
        return self._split(next(iter(src)))[0]

    def batches(self, perm=None):
        if self.one_shot:
            src = self._src
            if self._peek is not None:
                yield self._split(self._peek)
                self._peek = None
        else:
            src = self.data() if callable(self.data) else self.data
        for item in src:
            yield self._split(item)


def _data(x, y, batch_size, where):
    """Arrays: an array, a tuple of arrays (several inputs), or a list of arrays when
    ``y`` is given. Anything else (a list of batches, a generator, ...) is batches."""
    several = isinstance(x, (tuple, list)) and x and all(_is_arraylike(e) for e in x)
    if _is_arraylike(x) or (several and (isinstance(x, tuple) or y is not None)):
        return _Arrays(x, y, batch_size, where)
    if y is not None:
        raise _err(where, "y", "an array with x given as batches",
                   "y=None when x is an iterable of (x, y) batches", TypeError)
    return _Batches(x, where)


# ---------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint that does not match the model (every offending key is named)."""


class Model(mnn.Module):
    """Base class for models: assign layers in ``__init__``, define ``__call__``.

    Example::

        class MLP(Model):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.dense(64, activation='relu')
                self.drop = nn.dropout(0.2)
                self.fc2 = nn.dense(10)

            def __call__(self, x):
                return self.fc2(self.drop(self.fc1(x)))

        model = MLP()
        model.compile('adam', SparseCategoricalCrossentropy(from_logits=True),
                      metrics=['accuracy'])
        history = model.fit(x, y, epochs=5, batch_size=32, validation_data=(xv, yv))

    Layers may be mlxnote layers, plain ``mlx.nn`` modules, other Models, or lists and
    dicts of them. ``train()`` / ``eval()`` reach every layer.
    """

    def __init__(self):
        super().__init__()
        self._set("optimizer", None)
        self._set("loss", None)
        self._set("metric_specs", [])
        self._set("_metric_raw", [])
        self._set("history", None)
        self._set("stop_training", False)
        self._set("epoch", 0)
        self._set("_seed", None)
        self._set("_pending_opt", None)
        self._set("_group", None)
        self._set("_steps", {})

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- registry ------------------------------------------------------------------
    def _entries(self):
        """(path, Layer) or (path, (owner, key)) in registration order."""

        def walk(node, prefix):
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in items:
                if isinstance(k, str) and k.startswith("_"):
                    continue
                p = f"{prefix}{k}"
                if isinstance(v, Layer):
                    yield p, v
                elif isinstance(v, mx.array):
                    yield p, (node, k)
                elif isinstance(v, (dict, list)):
                    yield from walk(v, p + ".")

        return list(walk(self, ""))

    def unbuilt(self) -> list[str]:
        return [p for p, e in self._entries() if isinstance(e, Layer) and not e.built]

    def _check_built(self, what: str) -> None:
        missing = self.unbuilt()
        if missing:
            raise RuntimeError(f"{self.name}: {what} needs built layers; unbuilt: {missing}. "
                               "Give input_size or run the model once on a batch.")

    @property
    def weight_names(self) -> list[str]:
        """Every weight's path, in registration order then each layer's Note order."""
        out = []
        for p, e in self._entries():
            out += [f"{p}.{n}" for n in e.weight_names] if isinstance(e, Layer) else [p]
        return out

    @property
    def param_names(self) -> list[str]:
        out = []
        for p, e in self._entries():
            if isinstance(e, Layer):
                out += [f"{p}.{n}" for n in e.param_names]
            elif not isinstance(e[0], mnn.Module) or e[1] not in e[0]._no_grad:
                out.append(p)
        return out

    @property
    def param(self) -> list[mx.array]:
        """The trainable arrays: each layer's ``param`` in registration order."""
        out = []
        for _, e in self._entries():
            if isinstance(e, Layer):
                out += e.param
            elif not isinstance(e[0], mnn.Module) or e[1] not in e[0]._no_grad:
                out.append(e[0][e[1]])
        return out

    def get_weights(self) -> list[np.ndarray]:
        """Every weight as NumPy, concatenating the layers' ``get_weights`` lists (Note's
        layout) in registration order; plain MLX modules' arrays as stored."""
        self._check_built("get_weights")
        out = []
        for _, e in self._entries():
            if isinstance(e, Layer):
                out += e.get_weights()
            else:
                v = e[0][e[1]]
                out.append(np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v))
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load a list as :meth:`get_weights` gives it (checked before anything changes)."""
        self._check_built("set_weights")
        names = self.weight_names
        if len(weights) != len(names):
            raise _err(self.name, "weights", f"{len(weights)} arrays",
                       f"{len(names)} arrays in the order {names}")
        plan, i = [], 0
        for p, e in self._entries():
            if isinstance(e, Layer):
                k = len(e.weight_names)
                part = list(weights[i:i + k])
                for n, w in zip(e.weight_names, part):
                    want = tuple(e.note_value(n).shape)
                    if tuple(np.shape(w)) != want:
                        raise _err(self.name, "weights", f"shape {tuple(np.shape(w))} for "
                                   f"'{p}.{n}'", f"shape {want} (Note's layout)")
                plan.append((e, part))
                i += k
            else:
                cur = e[0][e[1]]
                w = weights[i]
                w = w if isinstance(w, mx.array) else mx.array(np.asarray(w, np.float32))
                if tuple(w.shape) != tuple(cur.shape):
                    raise _err(self.name, "weights", f"shape {tuple(w.shape)} for '{p}'",
                               f"shape {tuple(cur.shape)}")
                plan.append((e, w.astype(cur.dtype)))
                i += 1
        for e, w in plan:  # everything checked: now assign
            if isinstance(e, Layer):
                e.set_weights(w)
            else:
                e[0][e[1]] = w

    def count_params(self) -> int:
        return sum(int(np.prod(v.shape)) for _, v in tree_flatten(self.parameters()))

    def summary(self, print_fn: Callable | None = None) -> None:
        """A table of the layers (path, type, weights, parameter count)."""
        from rich.console import Console

        t = self._summary_table()
        if print_fn is not None:
            c = Console(file=io.StringIO(), width=120)
            c.print(t)
            print_fn(c.file.getvalue())
        else:
            Console().print(t)

    def _repr_html_(self) -> str:
        """Jupyter display: the summary table."""
        from rich.console import Console

        c = Console(file=io.StringIO(), record=True, width=120)
        c.print(self._summary_table())
        return c.export_html(inline_styles=True, code_format="<pre style='font-size:12px'>"
                             "{code}</pre>")

    def _summary_table(self):
        from rich.table import Table

        t = Table(title=f"{self.name}", title_justify="left")
        for c in ("layer", "type", "weights", "params"):
            t.add_column(c, justify="right" if c == "params" else "left")
        seen = {}
        for p, e in self._entries():
            if isinstance(e, Layer):
                shapes = [tuple(e.note_value(n).shape) for n in e.weight_names]
                t.add_row(p, type(e).__name__, " ".join(str(s) for s in shapes) or "-",
                          f"{e.count_params():,}" if e.built else "unbuilt")
            else:
                owner = p.rsplit(".", 1)[0]
                seen.setdefault(owner, (type(e[0]).__name__, []))[1].append(e[0][e[1]].shape)
        for owner, (typ, shapes) in seen.items():
            n = sum(int(np.prod(s)) for s in shapes)
            t.add_row(owner, typ, " ".join(str(tuple(s)) for s in shapes), f"{n:,}")
        trainable = sum(int(np.prod(v.shape)) for _, v in
                        tree_flatten(self.trainable_parameters()))
        t.caption = f"total {self.count_params():,} params, {trainable:,} trainable"
        return t

    # -- configuration -------------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None) -> None:
        """Set the optimizer (name or object), the loss and the metrics (Keras-style).

        Args:
            optimizer: a Keras name (``'adam'``, ``'sgd'``, ``'rmsprop'``, ``'adamw'``,
                ``'adagrad'``, ``'adamax'``, ``'adadelta'``, ``'lion'``; Keras defaults)
                or an ``mlx.optimizers.Optimizer``.
            loss: a Keras name (``'sparse_categorical_crossentropy'``, ``'mse'``, ...),
                a loss object (``SparseCategoricalCrossentropy(from_logits=True)``), an
                ``mlx.nn.losses`` function, or ``fn(y_true, y_pred)``.
            metrics: a list of names (``'accuracy'``, ``'mae'``, ...) or callables.
        """
        self._set("optimizer", get_optimizer(optimizer, self.name))
        self._set("loss", None if loss is None else get_loss(loss, self.name))
        if metrics is None:
            metrics = []
        if isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        self._set("metric_specs", [_get_metric(m, self.loss, self.name) for m in metrics])
        self._set("_metric_raw", list(metrics))
        self._steps.clear()

    def _configure(self, optimizer, loss, metrics) -> None:
        if optimizer is None and loss is None and metrics is None \
                and self.optimizer is not None:
            return
        self.compile(optimizer if optimizer is not None else (self.optimizer or "adam"),
                     loss if loss is not None else self.loss,
                     metrics if metrics is not None else self._metric_raw)

    def _build(self, first: tuple[mx.array, ...]) -> None:
        """Build lazy layers with one forward pass (in eval mode) before compiling."""
        if not self.unbuilt():
            return
        mode = self.training
        self.eval()
        try:
            mx.eval(self(*first))
        finally:
            self.train(mode)
        self._check_built("compiling")

    def _init_optimizer(self) -> None:
        opt = self.optimizer
        params = self.trainable_parameters()
        keys = {k for k, _ in tree_flatten(params)}
        have = {k.rsplit(".", 1)[0] for k, _ in tree_flatten(opt.state)
                if k not in ("step", "learning_rate")}
        if not opt._initialized or not keys <= have:
            opt.init(params)
        if self._pending_opt is not None:
            pending, path = self._pending_opt
            self._set("_pending_opt", None)
            self._assign(tree_flatten(opt.state), pending, "optimizer.", path)
        mx.eval(opt.state)

    # -- compiled steps ------------------------------------------------------------
    def _stats(self, y, pred, w):
        per = self.loss(y, pred)
        vals = [mx.sum(per * w)]
        for _, f in self.metric_specs:
            vals.append(mx.sum(f(y, pred) * w))
        return vals

    def _cached(self, kind: str, group):
        """The compiled step for ``kind``, traced once per configuration and reused by
        later ``fit``/``evaluate`` calls (``compile`` clears the cache). A change of
        the weights' structure (a new or rebuilt layer) is a new key too."""
        sig = tuple((k, v.shape, v.dtype) for k, v in tree_flatten(self.parameters()))
        key = (kind, id(self.optimizer), id(group), sig)
        if key not in self._steps:
            make = {"train": self._train_step, "eval": self._eval_step,
                    "predict": self._predict_step}[kind]
            self._steps[key] = make(group)
        return self._steps[key]

    def _train_step(self, group):
        opt = self.optimizer
        state = [self.state, opt.state, mx.random.state]

        def loss_fn(x, y, w, scale):
            pred = self(*x)
            vals = self._stats(y, pred, w)
            return vals[0] * scale, vals

        vg = mnn.value_and_grad(self, loss_fn)

        @partial(mx.compile, inputs=state, outputs=state)
        def step(x, y, w, scale):
            (_, vals), grads = vg(x, y, w, scale)
            if group is not None:
                grads = mnn.average_gradients(grads, group=group)
            opt.update(self, grads)
            stats = mx.stack(vals + [w.sum()])
            if group is not None:
                stats = mx.distributed.all_sum(stats, group=group)
            return stats

        return step

    def _eval_step(self, group):
        state = [self.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(x, y, w):
            pred = self(*x)
            stats = mx.stack(self._stats(y, pred, w) + [w.sum()])
            if group is not None:
                stats = mx.distributed.all_sum(stats, group=group)
            return stats

        return step

    def _predict_step(self, group):
        state = [self.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(*xs):
            return self(*xs)

        return step

    @staticmethod
    def _local(x, y, rank, size):
        """This rank's rows of a batch, padded to equal shapes; weights 0 on padding."""
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

    def _logs(self, sums: list[float], prefix: str = "") -> dict[str, float]:
        count = max(sums[-1], 1e-12)
        names = ["loss"] + [n for n, _ in self.metric_specs]
        return {prefix + k: v / count for k, v in zip(names, sums[:-1])}

    def _world(self, group):
        if group is None:
            group = dist.world()
        if group is not None and group.size() == 1:
            group = None
        return group

    # -- training ------------------------------------------------------------------
    def fit(self, x=None, y=None, epochs: int = 1, batch_size: int = 32,
            validation_data=None, shuffle: bool = True, callbacks=None, verbose="auto",
            validation_split: float = 0.0, initial_epoch: int = 0, resume=None,
            optimizer=None, loss=None, metrics=None, group=None) -> History:
        """Train for ``epochs`` epochs; returns a :class:`History` of per-epoch numbers.

        Args:
            x, y: arrays (NumPy or MLX; ``x`` may be a tuple of arrays for several
                inputs), or ``x`` an iterable of ``(x, y)`` batches (a list, a re-iterable,
                or a callable returning an iterator; a one-shot generator allows one epoch)
                with ``y=None``.
            epochs (int): train until this epoch count (Keras's ``epochs``).
            batch_size (int): rows per step for array inputs (32).
            validation_data: ``(x_val, y_val)`` arrays or an iterable of batches;
                evaluated after every epoch (``val_`` logs).
            shuffle (bool): reshuffle array inputs every epoch.

                Randomness is reproducible and resumable: a base seed is drawn from
                MLX's global generator when ``fit`` starts (so ``mx.random.seed`` fixes
                it; it is saved in checkpoints), and every epoch reseeds the global
                generator from (base seed, epoch, rank) and shuffles from (base seed,
                epoch).
            callbacks (list): :class:`Callback` objects (:class:`ModelCheckpoint`,
                :class:`EarlyStopping`, ...).
            verbose: ``'auto'``/1 a progress bar (terminal or Jupyter; a line per epoch
                when the output is not a terminal), 2 a line per epoch, 0 silent.
            validation_split (float): hold out this last fraction of array inputs.
            initial_epoch (int): the epoch to start at.
            resume (str): a checkpoint written by :meth:`save` (or ModelCheckpoint):
                restores the weights, the optimizer state, the epoch and the base seed,
                and continues from there (the same result as an uninterrupted run,
                except for dropout layers given their own ``seed``, whose keys are not
                saved).
            optimizer, loss, metrics: as in :meth:`compile` (override it).
            group: an ``mx.distributed`` group; by default ``mx.distributed.init()``.
                With more than one rank, each rank trains on its shard of every batch,
                gradients are averaged, and only rank 0 prints and writes checkpoints.
        """
        where = f"{self.name}.fit"
        self._configure(optimizer, loss, metrics)
        if self.loss is None:
            raise _err(where, "loss", None, "a loss name, object or callable (compile(loss="
                       "...) or fit(loss=...))")
        epochs = _check_int(where, "epochs", epochs, 0)
        batch_size = _check_int(where, "batch_size", batch_size, 1)
        initial_epoch = _check_int(where, "initial_epoch", initial_epoch, 0)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise _err(where, "shuffle", shuffle, "True or False", TypeError)
        if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
            raise _err(where, "validation_split", validation_split, "a float in [0, 1)")
        group = self._world(group)
        rank, size = (0, 1) if group is None else (group.rank(), group.size())
        if rank != 0:
            verbose = 0
        disp = _Display(verbose)  # validates verbose

        data = _data(x, y, batch_size, where)
        if validation_split:
            if not isinstance(data, _Arrays):
                raise _err(where, "validation_split", validation_split,
                           "0 when x is an iterable of batches (give validation_data)")
            cut = int(data.n * (1 - validation_split))
            validation_data = (tuple(a[cut:] for a in data.x), data.y[cut:])
            data = _Arrays(tuple(a[:cut] for a in data.x), data.y[:cut], batch_size, where)
        if data.__class__ is _Batches and data.one_shot and epochs - initial_epoch > 1:
            raise _err(where, "x", "a one-shot iterator with epochs > 1",
                       "a list or re-iterable of batches, or a callable returning a fresh "
                       "iterator each epoch", TypeError)
        val = None
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2 \
                    and _is_arraylike(validation_data[1]):
                val = _Arrays(validation_data[0], validation_data[1], batch_size, where)
            else:
                val = _Batches(validation_data, where, "validation_data")

        self._build(data.first())
        self._init_optimizer()
        if resume is not None:
            info = self.load(resume)
            initial_epoch = info["epoch"]
        if group is not None:
            self.update(dist.broadcast(self.parameters(), group))
        if self._seed is None or resume is None:
            seed = int(mx.random.randint(0, 2**31 - 1, ()).item())
            if group is not None:
                seed = dist.all_sum_ints([seed if rank == 0 else 0], group)[0]
            self._set("_seed", seed)

        step = self._cached("train", group)
        vstep = self._cached("eval", group) if val is not None else None
        history = History()
        callbacks = [history] + list(callbacks or [])
        for cb in callbacks:
            cb.model = self
        self._set("history", history)
        self._set("stop_training", False)
        self._set("_group", group)
        mode = self.training
        total = len(data) if isinstance(data, _Arrays) or data.has_len() else None
        try:
            for cb in callbacks:
                cb.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                t0 = time.perf_counter()
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                mx.random.seed(_epoch_seed(self._seed, epoch, rank))
                perm = None
                if shuffle and isinstance(data, _Arrays):
                    perm = np.random.default_rng([self._seed, epoch]).permutation(
                        data.n)
                disp.begin(f"{epoch + 1}/{epochs}", total)
                sums, done = None, 0
                self.train()
                for xb, yb in data.batches(perm):
                    if yb is None:
                        raise _err(where, "x", "a batch without labels", "(x, y) batches",
                                   TypeError)
                    xl, yl, w, n = self._local(xb, yb, rank, size)
                    stats = step(xl, yl, w, _scale(size, n))
                    mx.eval(stats, self.state, self.optimizer.state)
                    s = stats.tolist()
                    sums = s if sums is None else [a + b for a, b in zip(sums, s)]
                    done += 1
                    logs = self._logs(sums)
                    for cb in callbacks:
                        cb.on_train_batch_end(done - 1, logs)
                    disp.step(done, logs)
                if sums is None:
                    raise _err(where, "x", "no batches", "at least one batch per epoch")
                logs = self._logs(sums)
                if val is not None:
                    self.eval()
                    logs.update(self._logs(self._run_eval(vstep, val, rank, size)[0], "val_"))
                self.train(mode)
                self._set("epoch", epoch + 1)
                history.times.append(time.perf_counter() - t0)
                disp.end(done, logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            for cb in callbacks:
                cb.on_train_end()
        finally:
            disp.close()
            self.train(mode)
            self._set("_group", None)
        return history

    def _run_eval(self, vstep, data, rank, size, disp=None) -> tuple[list[float], int]:
        sums, done = None, 0
        for xb, yb in data.batches():
            if yb is None:
                raise _err(self.name, "y", "a batch without labels", "(x, y) batches",
                           TypeError)
            xl, yl, w, _ = self._local(xb, yb, rank, size)
            stats = vstep(xl, yl, w)
            mx.eval(stats)
            s = stats.tolist()
            sums = s if sums is None else [a + b for a, b in zip(sums, s)]
            done += 1
            if disp is not None:
                disp.step(done, self._logs(sums))
        if sums is None:
            raise _err(self.name, "x", "no batches", "at least one batch")
        return sums, done

    def evaluate(self, x=None, y=None, batch_size: int = 32, verbose="auto",
                 return_dict: bool = False, group=None):
        """Loss and metrics in eval mode: a float (no metrics), ``[loss, *metrics]``,
        or a dict with ``return_dict``. Distributed: each rank evaluates its shard and
        the sums are combined, so every rank gets the full-data numbers."""
        where = f"{self.name}.evaluate"
        if self.loss is None:
            raise _err(where, "loss", None, "a compiled loss (compile(loss=...) or fit)")
        batch_size = _check_int(where, "batch_size", batch_size, 1)
        group = self._world(group)
        rank, size = (0, 1) if group is None else (group.rank(), group.size())
        disp = _Display(0 if rank else verbose, title="Evaluate")
        data = _data(x, y, batch_size, where)
        self._build(data.first())
        mode = self.training
        self.eval()
        try:
            disp.begin("", len(data) if isinstance(data, _Arrays) or data.has_len() else None)
            sums, done = self._run_eval(self._cached("eval", group), data, rank, size, disp)
        except BaseException:
            disp.close()
            raise
        finally:
            self.train(mode)
        logs = self._logs(sums)
        disp.end(done, logs)
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def predict(self, x, batch_size: int = 32, verbose=0):
        """Outputs in eval mode, batch by batch (compiled), concatenated on axis 0.

        Returns NumPy when ``x`` is NumPy (bfloat16 as float32), MLX otherwise.
        """
        where = f"{self.name}.predict"
        batch_size = _check_int(where, "batch_size", batch_size, 1)
        data = _data(x, None, batch_size, where)
        self._build(data.first())
        fwd = self._cached("predict", None)
        mode = self.training
        self.eval()
        disp = _Display(verbose, title="Predict")
        outs = []
        try:
            disp.begin("", len(data) if isinstance(data, _Arrays) or data.has_len() else None)
            for xb, _ in data.batches():
                out = fwd(*xb)
                mx.eval(out)
                outs.append(out)
                disp.step(len(outs), {})
        except BaseException:
            disp.close()
            raise
        finally:
            self.train(mode)
        disp.end(len(outs), {})
        out = mx.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]
        as_np = isinstance(x, np.ndarray) or (isinstance(x, (tuple, list)) and x
                                              and isinstance(x[0], np.ndarray))
        if as_np:
            return np.array(out.astype(mx.float32) if out.dtype == mx.bfloat16 else out)
        return out

    # -- checkpoints ---------------------------------------------------------------
    def _checkpoint_arrays(self) -> tuple[dict[str, mx.array], dict[str, str]]:
        arrays = {f"model.{k}": v for k, v in tree_flatten(self.parameters())}
        if self.optimizer is not None and self.optimizer._initialized:
            arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(self.optimizer.state)})
        meta = {"format": FORMAT, "epoch": str(self.epoch),
                "model": self.name,
                "optimizer": type(self.optimizer).__name__ if self.optimizer else ""}
        if self._seed is not None:
            meta["seed"] = str(self._seed)
        return arrays, meta

    def save(self, path: str | os.PathLike, all_ranks: bool = False) -> None:
        """Write a safetensors checkpoint: every weight (``model.<path>``, as stored),
        the optimizer state (``optimizer.<path>``); metadata: the epoch and fit's seed.

        The write is atomic: a temporary file in the same directory, flushed to disk,
        then ``os.replace``: a process killed mid-save leaves the previous file intact.
        In a distributed run only rank 0 writes (unless ``all_ranks``).
        """
        group = self._group if self._group is not None else self._world(None)
        if group is not None and group.rank() != 0 and not all_ranks:
            return
        path = os.fspath(path)
        arrays, meta = self._checkpoint_arrays()
        mx.eval(list(arrays.values()))
        d = os.path.dirname(os.path.abspath(path))
        base = os.path.basename(path)
        _clean_stale(d, base)
        tmp = os.path.join(d, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.safetensors")
        try:
            mx.save_safetensors(tmp, arrays, metadata=meta)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        try:
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - directories cannot be fsynced everywhere
            pass

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a checkpoint written by :meth:`save`, strictly.

        Every weight must be present with the same shape and dtype, and nothing extra:
        otherwise a :class:`CheckpointError` names every missing, unexpected and
        mismatched key and nothing is changed. The optimizer state is restored when the
        checkpoint has one (applied when the optimizer is created, if it is not yet).
        Returns ``{'epoch': int, ...metadata}``; ``self.epoch`` is set.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.name}.load: no checkpoint at {path!r}")
        self._check_built("load")
        try:
            arrays, meta = mx.load(path, format="safetensors", return_metadata=True)
        except Exception as e:
            raise CheckpointError(f"{self.name}.load: {path!r} is not a readable safetensors "
                                  f"file ({e})") from e
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.name}.load: {path!r} is not an mlxnote checkpoint "
                                  f"(metadata format {meta.get('format')!r}, expected "
                                  f"{FORMAT!r}); use load_weights for plain weight files")
        model_part = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        opt_part = {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer.")}
        current = tree_flatten(self.parameters())
        problems = _compare(current, model_part, "model.")
        opt = self.optimizer
        opt_ready = opt is not None and opt._initialized
        if opt_part and opt_ready:
            problems += _compare(tree_flatten(opt.state), opt_part, "optimizer.")
        if problems:
            raise CheckpointError(f"{self.name}.load: {path!r} does not match the model:\n  "
                                  + "\n  ".join(problems))
        self._assign(current, model_part, "model.", path)
        if opt_part:
            if opt_ready:
                self._assign(tree_flatten(opt.state), opt_part, "optimizer.", path)
            else:
                self._set("_pending_opt", (opt_part, path))
        self._set("epoch", int(meta.get("epoch", 0)))
        if "seed" in meta:
            self._set("_seed", int(meta["seed"]))
        return {**meta, "epoch": self.epoch}

    def _assign(self, current, values, prefix, path):
        """Set every array of ``current`` (a flattened live tree) from ``values``."""
        problems = _compare(current, values, prefix)
        if problems:
            raise CheckpointError(f"{self.name}.load: {path!r} does not match the "
                                  "optimizer:\n  " + "\n  ".join(problems))
        root = self if prefix == "model." else self.optimizer.state
        for k, _ in current:
            *head, leaf = k.split(".")
            node = root
            for p in head:
                node = node[int(p)] if isinstance(node, list) else node[p]
            if isinstance(node, list):
                node[int(leaf)] = values[k]
            else:
                node[leaf] = values[k]
        mx.eval(list(values.values()))


def _compare(current, saved: dict[str, mx.array], prefix: str) -> list[str]:
    cur = dict(current)
    out = []
    missing = [k for k in cur if k not in saved]
    extra = [k for k in saved if k not in cur]
    if missing:
        out.append("missing from the checkpoint: " + ", ".join(prefix + k for k in missing))
    if extra:
        out.append("not in the model: " + ", ".join(prefix + k for k in extra))
    for k, v in cur.items():
        if k in saved:
            s = saved[k]
            if tuple(s.shape) != tuple(v.shape):
                out.append(f"{prefix}{k}: shape {tuple(s.shape)} in the checkpoint, "
                           f"{tuple(v.shape)} in the model")
            elif s.dtype != v.dtype:
                out.append(f"{prefix}{k}: dtype {s.dtype} in the checkpoint, {v.dtype} in "
                           "the model")
    return out


def _clean_stale(d: str, base: str) -> None:
    """Remove temporary files of earlier saves of ``base`` whose writer has died."""
    prefix = f".{base}."
    try:
        names = os.listdir(d)
    except OSError:  # pragma: no cover
        return
    for n in names:
        if not (n.startswith(prefix) and n.endswith(".tmp.safetensors")):
            continue
        try:
            pid = int(n[len(prefix):].split(".")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                os.remove(os.path.join(d, n))
            except OSError:  # pragma: no cover
                pass
        except PermissionError:  # pragma: no cover - another user's live process
            pass


@lru_cache(maxsize=64)
def _ones(n: int) -> mx.array:
    return mx.ones((n,), mx.float32)


@lru_cache(maxsize=64)
def _scale(size: int, n: int) -> mx.array:
    return mx.array(size / n, mx.float32)


def _epoch_seed(base: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([base, epoch, rank]).generate_state(1)[0])


def _check_int(where, arg, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _err(where, arg, value, f"an int >= {low}", TypeError)
    if value < low:
        raise _err(where, arg, value, f"an int >= {low}")
    return int(value)


class Sequential(Model):
    """Layers applied in order: ``Sequential([nn.dense(64, activation='relu'),
    nn.dense(10)])`` (or ``Sequential(layer1, layer2)``; ``add`` appends)."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, l in enumerate(layers):
            if not callable(l):
                raise _err("Sequential", "layers", f"{type(l).__name__} at position {i}",
                           "mlxnote layers, mlx.nn modules or callables", TypeError)
        self.layers = list(layers)

    def add(self, layer) -> None:
        if not callable(layer):
            raise _err("Sequential", "layer", type(layer).__name__,
                       "an mlxnote layer, an mlx.nn module or a callable", TypeError)
        self.layers.append(layer)

    def __call__(self, x):
        for l in self.layers:
            x = l(x)
        return x
