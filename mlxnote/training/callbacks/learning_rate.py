"""The learning rate of an optimizer, read and set between steps.

``mlx.optimizers`` keeps the learning rate in the optimizer's state
(``state['learning_rate']``, a scalar array), which the compiled train step takes as an
input: setting a new scalar of the same dtype changes the rate of the next step without
a new trace.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from ..._validation import Desc, error

__all__ = ["target", "get_learning_rate", "set_learning_rate", "as_rate"]


def target(optimizer: Any) -> Any:
    """The optimizer that holds the rate (the inner one of a wrapper such as a loss
    scale optimizer, which has ``inner_optimizer``)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def get_learning_rate(optimizer: Any, owner: str) -> float:
    """The current learning rate as a float (Keras's ``float(optimizer.learning_rate)``)."""
    opt = target(optimizer)
    state = getattr(opt, "state", None)
    if not isinstance(state, dict) or "learning_rate" not in state:
        raise error(owner, "model.optimizer", Desc(type(optimizer).__name__),
                    "an optimizer with a learning rate (compile the model first)", TypeError)
    return float(np.asarray(state["learning_rate"]))


def set_learning_rate(optimizer: Any, value: float, owner: str) -> None:
    """Set the rate used from the next step on (same dtype, so no new trace). A rate
    given as a schedule cannot be set (as in Keras): a ``TypeError``."""
    opt = target(optimizer)
    old = opt.state["learning_rate"]
    if "learning_rate" in getattr(opt, "_schedulers", {}):
        raise error(owner, "model.optimizer", Desc(f"{type(opt).__name__} with a scheduled "
                                                    "learning rate"),
                    "an optimizer created with a float learning rate (a schedule's rate "
                    "is not settable, as in Keras)", TypeError)
    opt.state["learning_rate"] = mx.array(value, dtype=old.dtype)
    mx.eval(opt.state["learning_rate"])


def as_rate(owner: str, value: Any) -> float:
    """A schedule's output as a float: a Python or NumPy float (or int), or a scalar
    array; anything else is a ``ValueError`` naming ``owner``, as in Keras."""
    if isinstance(value, (mx.array, np.ndarray)) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise error(owner, "schedule", Desc(f"a function returning {value!r}"),
                    "a schedule returning a float", ValueError)
    return float(value)
