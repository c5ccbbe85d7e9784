"""The documented activation names, in TensorFlow (decisions.md, item 4).

Written from the documentation and tf.nn/keras built-ins, not from mlxnote's table.
"""

from __future__ import annotations

import tensorflow as tf


def _glu(x):
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


TF_ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "celu": lambda x: tf.maximum(x, 0.0) + tf.minimum(0.0, tf.exp(x) - 1.0),
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, alpha=0.2),
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "softmax": lambda x: tf.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    "softplus": tf.nn.softplus,
    "softsign": tf.nn.softsign,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "logsigmoid": tf.math.log_sigmoid,
    "hard_sigmoid": lambda x: tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0),
    "hardswish": lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
    "mish": lambda x: x * tf.tanh(tf.nn.softplus(x)),
    "tanhshrink": lambda x: x - tf.tanh(x),
    "exponential": tf.exp,
    "glu": _glu,
    "crelu": tf.nn.crelu,
}

def tf_activation(act):
    """TF function for a case's ``activation`` value (a name, a list form or an Fn)."""
    from ..case import Fn

    if isinstance(act, Fn):
        return act.tf
    if isinstance(act, (list, tuple)):
        kind, p = act
        if kind == "leaky_relu":
            return lambda x: tf.nn.leaky_relu(x, alpha=p)
        if kind == "gelu":
            return lambda x: tf.nn.gelu(x, approximate=p)
    return TF_ACTIVATIONS[act.lower() if isinstance(act, str) else act]
