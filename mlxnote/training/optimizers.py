"""Optimizers with Keras's update rules and defaults, and the by-name table.

``mlx.optimizers`` differs from Keras in defaults and in details of the updates (Adam's
``eps`` and bias correction): the classes here follow Keras, so that ``'adam'`` trains as
it does in Keras. Any ``mlx.optimizers.Optimizer`` can be given instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from .._validation import error

__all__ = ["Adam", "AdamW", "Adamax", "RMSprop", "Adagrad", "get_optimizer", "OPTIMIZERS"]


class Adam(optim.Adam):
    """Keras's Adam: ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

    Defaults are Keras's (``learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7``); ``mlx.optimizers.Adam`` differs in ``eps`` and bias correction.
    """

    def __init__(self, learning_rate: float | Callable = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate, betas=[beta_1, beta_2], eps=epsilon)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
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

    def __init__(self, learning_rate: float | Callable = 1e-3, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = weight_decay

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        lr = self.learning_rate.astype(parameter.dtype)
        parameter = parameter - parameter * self.weight_decay * lr
        return super().apply_single(gradient, parameter, state)


class Adamax(Adam):
    """Keras's Adamax: ``u = max(b2 u, |g|)``, ``w -= lr m / ((1 - b1^t)(u + eps))``
    (Adam's arguments and defaults)."""

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
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

    def __init__(self, learning_rate: float | Callable = 1e-3, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False) -> None:
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.rho, self.momentum, self.eps, self.centered = rho, momentum, epsilon, centered

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["v"] = mx.zeros_like(parameter)
        if self.momentum > 0:
            state["mom"] = mx.zeros_like(parameter)
        if self.centered:
            state["mg"] = mx.zeros_like(parameter)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
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

    def __init__(self, learning_rate: float | Callable = 1e-3,
                 initial_accumulator_value: float = 0.1, epsilon: float = 1e-7) -> None:
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.initial_accumulator_value, self.eps = initial_accumulator_value, epsilon

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["a"] = mx.full(parameter.shape, self.initial_accumulator_value, parameter.dtype)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        lr = self.learning_rate.astype(gradient.dtype)
        a = state["a"] + mx.square(gradient)
        state["a"] = a
        return parameter - lr * gradient / mx.sqrt(a + self.eps)


#: Keras names and the optimizer each builds, with Keras's defaults.
OPTIMIZERS: dict[str, Callable[[], optim.Optimizer]] = {
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
    """An optimizer from a Keras name (Keras defaults) or an ``mlx.optimizers`` object.

    ``where`` is the owner named in the error for anything else.
    """
    if isinstance(spec, optim.Optimizer):
        return spec
    if isinstance(spec, str) and spec.lower() in OPTIMIZERS:
        return OPTIMIZERS[spec.lower()]()
    allowed = ("one of " + ", ".join(repr(k) for k in OPTIMIZERS)
               + " or an mlx.optimizers.Optimizer")
    raise error(where, "optimizer", spec, allowed,
                ValueError if isinstance(spec, str) else TypeError)
