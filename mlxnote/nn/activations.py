"""One activation table for every layer (decisions.md, item 4).

``get(activation)`` accepts a name from :data:`NAMES`, a list form
(``['leaky_relu', alpha]``, ``['gelu', approximate]``), ``None`` (linear) or any
callable. Softmax-like activations act on the last axis. ``logsigmoid`` is the usual
``log(sigmoid(x))`` (Note's sign bug is not reproduced).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn

from .._validation import error
from ..kernels.fastmath import identity as linear
from .typing import Activation, ActivationFn


def _leaky_relu(alpha: float = 0.2) -> ActivationFn:
    return lambda x: mx.maximum(x, alpha * x) if alpha <= 1 else mx.where(x > 0, x, alpha * x)


def _gelu(approximate: bool = False) -> ActivationFn:
    return mnn.gelu_approx if approximate else mnn.gelu


def _glu(x: mx.array) -> mx.array:
    a, b = mx.split(x, 2, axis=-1)
    return a * mx.sigmoid(b)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _selu(x: mx.array) -> mx.array:
    # mlx.nn.selu rounds the constants to 6 digits (a 1e-4 gradient error, caught by the
    # conformance suite); these are the exact ones. At 0 the slope is TF's: scale (the
    # linear branch), not scale * alpha.
    return _SELU_SCALE * mx.where(x >= 0, x, _SELU_ALPHA * (mx.exp(x) - 1))


def _crelu(x: mx.array) -> mx.array:
    return mx.concatenate([mx.maximum(x, 0), mx.maximum(-x, 0)], axis=-1)


def _celu(x: mx.array, alpha: float = 1.0) -> mx.array:
    return mx.maximum(x, 0) + mx.minimum(0, alpha * (mx.exp(x / alpha) - 1))


TABLE: dict[str, ActivationFn] = {
    "linear": linear,
    "sigmoid": mx.sigmoid,
    "tanh": mx.tanh,
    "relu": mnn.relu,
    "relu6": mnn.relu6,
    "elu": mnn.elu,
    "selu": _selu,
    "celu": _celu,
    "leaky_relu": _leaky_relu(0.2),
    "gelu": _gelu(False),
    "softmax": lambda x: mx.softmax(x, axis=-1, precise=True),
    "log_softmax": lambda x: x - mx.logsumexp(x, axis=-1, keepdims=True),
    "softplus": mnn.softplus,
    "softsign": mnn.softsign,
    "swish": mnn.silu,
    "silu": mnn.silu,
    "logsigmoid": mnn.log_sigmoid,
    "hard_sigmoid": lambda x: mx.clip(0.2 * x + 0.5, 0.0, 1.0),
    "hardswish": mnn.hardswish,
    "mish": mnn.mish,
    "tanhshrink": lambda x: x - mx.tanh(x),
    "exponential": mx.exp,
    "glu": _glu,
    "crelu": _crelu,
}
NAMES = tuple(sorted(TABLE))


def get(activation: Activation, layer: str = "layer", arg: str = "activation") -> ActivationFn:
    """Resolve ``activation`` to a function ``mx.array -> mx.array``."""
    allowed = (f"None, a callable, ['leaky_relu', alpha], ['gelu', approximate] "
               f"or one of {list(NAMES)}")
    if activation is None:
        return linear
    if isinstance(activation, str):
        fn = TABLE.get(activation.lower())
        if fn is None:
            raise error(layer, arg, activation, allowed)
        return fn
    if isinstance(activation, (list, tuple)) and len(activation) == 2:
        kind, p = activation
        if kind == "leaky_relu" and isinstance(p, (int, float)):
            return _leaky_relu(float(p))
        if kind == "gelu" and isinstance(p, bool):
            return _gelu(p)
        raise error(layer, arg, activation, allowed)
    if callable(activation):
        return activation
    raise error(layer, arg, activation, allowed, TypeError)
