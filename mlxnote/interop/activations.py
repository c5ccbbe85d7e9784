"""Activations by name across: Keras's names and mlxnote's table (decisions.md, item 4),
where both compute the same function (tests/test_interop.py checks each pair)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlx.core as mx

from .._validation import error
from ..nn import activations as A

if TYPE_CHECKING:
    from ..nn.layer import Layer
    from .layers import Options


def keras_hard_sigmoid(x: Any) -> Any:
    """Keras 3's ``hard_sigmoid``: ``relu6(x + 3) / 6`` (Note's is ``0.2 x + 0.5``)."""
    return mx.clip(x / 6.0 + 0.5, 0.0, 1.0)


#: Keras's activation names -> mlxnote's (the same functions; tests/test_interop.py).
FROM_KERAS_ACT: dict[str, Any] = {n: n for n in (
    "relu", "relu6", "elu", "selu", "celu", "gelu", "sigmoid", "tanh", "softmax",
    "log_softmax", "softplus", "softsign", "silu", "swish", "mish", "exponential", "glu",
    "leaky_relu")}
FROM_KERAS_ACT.update(linear=None, log_sigmoid="logsigmoid", tanh_shrink="tanhshrink",
                      hard_silu="hardswish", hard_swish="hardswish",
                      hard_sigmoid=keras_hard_sigmoid)
_TO_KERAS_ACT = {"logsigmoid": "log_sigmoid", "tanhshrink": "tanh_shrink",
                 "hardswish": "hard_silu", "linear": "linear"}


def act_from_keras(o: Options, key: str = "activation") -> Any:
    value = o[key]
    if isinstance(value, str) and value in FROM_KERAS_ACT:
        return FROM_KERAS_ACT[value]
    raise error(o.where, key, value, f"one of Keras's activations {sorted(FROM_KERAS_ACT)} "
                "(a custom function has no known mlxnote equivalent)")


def act_to_keras(layer: Layer, key: str = "activation") -> str:
    value = layer._config.get(key)
    if value is None:
        return "linear"
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            tuple(value) in (("leaky_relu", 0.2), ("gelu", False)):
        value = value[0]
    if value is keras_hard_sigmoid:
        return "hard_sigmoid"
    if callable(value) and not isinstance(value, str):
        names = [n for n, f in A.TABLE.items() if f is value]
        value = names[0] if names else value
    if isinstance(value, str) and value.lower() in A.TABLE and \
            value.lower() not in ("hard_sigmoid", "crelu"):
        v = value.lower()
        return _TO_KERAS_ACT.get(v, v)
    raise error(f"to_keras ({layer.name})", key, value, "an activation Keras has with the "
                "same math: a name of mlxnote's table but 'hard_sigmoid' (Keras 3's is "
                "relu6(x + 3) / 6) and 'crelu', ['leaky_relu', 0.2], ['gelu', False] or None")
