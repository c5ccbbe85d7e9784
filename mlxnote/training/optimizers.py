"""Optimizers with Keras's update rules and defaults, and the by-name table.

``mlx.optimizers`` differs from Keras in defaults and in details of the updates (Adam's
``eps`` and bias correction): the classes here follow Keras, so that ``'adam'`` trains as
it does in Keras. Any ``mlx.optimizers.Optimizer`` can be given instead.

Every class here takes Keras's gradient clipping keywords (:class:`Clipping`):
``clipnorm`` (each gradient to that L2 norm), ``global_clipnorm`` (all gradients together
to that norm) or ``clipvalue`` (each element to ``[-v, v]``); at most one of them. As in
Keras the gradients are clipped first (after :class:`~.mixed_precision.LossScaleOptimizer`
unscales them), then weight decay (AdamW) and the update use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from .._validation import Desc, error, is_real

__all__ = ["Adam", "AdamW", "Adamax", "RMSprop", "Adagrad", "SGD", "Adadelta", "Lion",
           "Clipping", "clip_gradients", "get_optimizer", "OPTIMIZERS"]

CLIP_ARGS = ("clipnorm", "clipvalue", "global_clipnorm")


def _clip_by_norm(g: mx.array, clipnorm: float) -> mx.array:
    """Keras's ``_clip_by_norm``: ``g * c / max(||g||, c)`` (a zero gradient stays zero)."""
    norm = mx.sqrt(mx.sum(mx.square(g.astype(mx.float32))))
    return (g * (clipnorm / mx.maximum(norm, clipnorm))).astype(g.dtype)


def _global_scale(grads: list[mx.array], clipnorm: float) -> mx.array:
    """Keras's ``clip_by_global_norm`` factor ``c / max(n, c)``, ``n`` the norm of all the
    gradients together; an inf or NaN norm gives NaN (every gradient NaN, as in Keras)."""
    n = mx.sqrt(sum(mx.sum(mx.square(g.astype(mx.float32))) for g in grads))
    return clipnorm * mx.minimum(1.0 / n, 1.0 / clipnorm) + (n - n)


def clip_gradients(gradients: Any, clipnorm: float | None = None,
                   clipvalue: float | None = None,
                   global_clipnorm: float | None = None) -> Any:
    """A gradient tree clipped as Keras's ``_clip_gradients`` does (``None`` or ``0``:
    that option is off; Keras checks them in the order clipnorm, global_clipnorm,
    clipvalue)."""
    if clipnorm:
        return tree_map(lambda g: _clip_by_norm(g, clipnorm), gradients)
    if global_clipnorm:
        scale = _global_scale([g for _, g in tree_flatten(gradients)], global_clipnorm)
        return tree_map(lambda g: (g * scale).astype(g.dtype), gradients)
    if clipvalue:
        return tree_map(lambda g: mx.clip(g, -clipvalue, clipvalue), gradients)
    return gradients


class Clipping:
    """Keras's ``clipnorm``, ``clipvalue`` and ``global_clipnorm`` for an
    ``mlx.optimizers.Optimizer`` subclass (put it first among the bases): the gradients
    are clipped in :meth:`apply_gradients`, before the update (inside the compiled train
    step, after the gradients are averaged over the ranks). Each is ``None`` (off) or a
    number >= 0 (0 is off, as in Keras); giving more than one is a ``ValueError``, as in
    Keras; a negative one is refused (Keras ignores it)."""

    clipnorm = clipvalue = global_clipnorm = None

    def _set_clipping(self, clipnorm: Any, clipvalue: Any, global_clipnorm: Any) -> None:
        owner = type(self).__name__
        given = {"clipnorm": clipnorm, "clipvalue": clipvalue,
                 "global_clipnorm": global_clipnorm}
        for arg, v in given.items():
            if v is not None and (not is_real(v) or not v >= 0 or math.isinf(v)):
                raise error(owner, arg, v, "None or a finite number >= 0",
                            ValueError if is_real(v) else TypeError)
        on = [k for k, v in given.items() if v is not None]
        if len(on) > 1:
            raise error(owner, on[1], Desc(f"{on[1]}={given[on[1]]!r} with "
                                           f"{on[0]}={given[on[0]]!r}"),
                        "only one of clipnorm, clipvalue and global_clipnorm (as in Keras)")
        for k, v in given.items():
            setattr(self, k, None if v is None else float(v))

    def apply_gradients(self, gradients: dict, parameters: dict) -> dict:
        """Clip ``gradients`` (see the class), then the optimizer's update."""
        gradients = clip_gradients(gradients, self.clipnorm, self.clipvalue,
                                   self.global_clipnorm)
        return super().apply_gradients(gradients, parameters)


class Adam(Clipping, optim.Adam):
    """Keras's Adam: ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

    Defaults are Keras's (``learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7``); ``mlx.optimizers.Adam`` differs in ``eps`` and bias correction.
    ``clipnorm``, ``clipvalue``, ``global_clipnorm``: see :class:`Clipping`.
    """

    def __init__(self, learning_rate: float | Callable = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, *, clipnorm: float | None = None,
                 clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, betas=[beta_1, beta_2], eps=epsilon)
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)

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
    """Keras's AdamW: decay ``w -= w * weight_decay * lr`` first, then Keras's Adam (with
    the clipped gradients: the decay does not go through them, as in Keras).

    Defaults: ``learning_rate=1e-3, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7``.
    """

    def __init__(self, learning_rate: float | Callable = 1e-3, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 **clipping: float | None) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **clipping)
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


class RMSprop(Clipping, optim.Optimizer):
    """Keras's RMSprop: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / sqrt(v + eps)``
    (``centered`` subtracts the squared mean gradient; ``momentum`` accumulates).

    Defaults: ``learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False``; clipping: see :class:`Clipping`.
    """

    def __init__(self, learning_rate: float | Callable = 1e-3, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False, *,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__()
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)
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


class Adagrad(Clipping, optim.Optimizer):
    """Keras's Adagrad: ``a += g^2`` (from ``initial_accumulator_value``),
    ``w -= lr g / sqrt(a + eps)``. Defaults: ``1e-3, 0.1, 1e-7``; clipping: see
    :class:`Clipping`."""

    def __init__(self, learning_rate: float | Callable = 1e-3,
                 initial_accumulator_value: float = 0.1, epsilon: float = 1e-7, *,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__()
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)
        self._maybe_schedule("learning_rate", learning_rate)
        self.initial_accumulator_value, self.eps = initial_accumulator_value, epsilon

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["a"] = mx.full(parameter.shape, self.initial_accumulator_value, parameter.dtype)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        lr = self.learning_rate.astype(gradient.dtype)
        a = state["a"] + mx.square(gradient)
        state["a"] = a
        return parameter - lr * gradient / mx.sqrt(a + self.eps)


class SGD(Clipping, optim.SGD):
    """Keras's SGD (``learning_rate=0.01, momentum=0.0, nesterov=False``): MLX's update,
    which is Keras's for a constant learning rate; clipping: see :class:`Clipping`."""

    def __init__(self, learning_rate: float | Callable = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov)
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)


class Adadelta(Clipping, optim.AdaDelta):
    """Keras's Adadelta (``learning_rate=1e-3, rho=0.95, epsilon=1e-7``): MLX's update,
    which is Keras's; clipping: see :class:`Clipping`."""

    def __init__(self, learning_rate: float | Callable = 1e-3, rho: float = 0.95,
                 epsilon: float = 1e-7, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, rho=rho, eps=epsilon)
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)


class Lion(Clipping, optim.Lion):
    """Keras's Lion (``learning_rate=1e-3, beta_1=0.9, beta_2=0.99``): MLX's update,
    which is Keras's; clipping: see :class:`Clipping`."""

    def __init__(self, learning_rate: float | Callable = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.99, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, betas=[beta_1, beta_2])
        self._set_clipping(clipnorm, clipvalue, global_clipnorm)


#: Keras names and the optimizer each builds, with Keras's defaults.
OPTIMIZERS: dict[str, Callable[[], optim.Optimizer]] = {
    "adam": Adam,
    "adamw": AdamW,
    "adamax": Adamax,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "sgd": SGD,
    "lion": Lion,
}


#: Keras's base-optimizer options at the values that change nothing (as in a Keras
#: ``get_config``): dropped from a config; any other value is refused.
KERAS_NEUTRAL = {"name": None, "weight_decay": None, "use_ema": False, "ema_momentum": 0.99,
                 "ema_overwrite_frequency": None, "loss_scale_factor": None,
                 "gradient_accumulation_steps": None, "amsgrad": False}


def _from_config(spec: dict, where: str) -> optim.Optimizer:
    """Keras's ``{'class_name': ..., 'config': {...}}`` (``keras.optimizers.serialize``'s
    ``module``/``registered_name`` ignored): the config's arguments, Keras's neutral
    options (:data:`KERAS_NEUTRAL`; any ``name``) dropped."""
    name = spec["class_name"].lower()
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise error(where, "optimizer", spec, "a 'config' dict of keyword arguments",
                    TypeError)

    def neutral(k: str, v: Any) -> bool:
        if k == "name":
            return True
        if k == "weight_decay" and name == "adamw":  # AdamW's own argument
            return False
        return k in KERAS_NEUTRAL and v == KERAS_NEUTRAL[k]

    keep = {k: v for k, v in config.items() if not neutral(k, v)}
    try:
        return OPTIMIZERS[name](**keep)
    except TypeError as e:
        raise error(where, "optimizer", Desc(f"a config of {spec['class_name']}"),
                    f"the arguments of {spec['class_name']} here ({e})", TypeError) from None


def get_optimizer(spec: Any, where: str = "Model") -> optim.Optimizer:
    """An optimizer from a Keras name (Keras defaults), Keras's config form
    ``{'class_name': 'Adam', 'config': {'learning_rate': 1e-3, 'clipnorm': 1.0}}`` (as
    ``keras.optimizers.get``; ``keras.optimizers.serialize(opt)`` works), or an
    ``mlx.optimizers`` object.

    ``where`` is the owner named in the error for anything else.
    """
    if isinstance(spec, optim.Optimizer):
        return spec
    if isinstance(spec, str) and spec.lower() in OPTIMIZERS:
        return OPTIMIZERS[spec.lower()]()
    if isinstance(spec, dict) and set(spec) <= {"class_name", "config", "module",
                                                "registered_name"} \
            and str(spec.get("class_name", "")).lower() in OPTIMIZERS:
        return _from_config(spec, where)
    allowed = ("one of " + ", ".join(repr(k) for k in OPTIMIZERS)
               + ", {'class_name': name, 'config': {...}} or an mlx.optimizers.Optimizer")
    raise error(where, "optimizer", spec, allowed,
                ValueError if isinstance(spec, str) else TypeError)
