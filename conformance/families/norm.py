"""Normalization: batch_norm (outputs, gradients and moving statistics after several steps,
in training and inference, with masks), group_norm and layer_norm, against Keras
(``conformance/reference/norm.py`` says where the documentation is the reference)."""

from __future__ import annotations

import numpy as np

from ..arrays import np32
from ..case import Case, Input, LayerSpec, grid
from ..reference import norm as ref


def _call_with_mask(layer, ins, kw):
    """Inputs are (data[, mask]); the mask goes by keyword (batch_norm's second positional
    argument is ``train_flag``)."""
    if len(ins) > 1:
        return layer(ins[0], mask=ins[1], **kw)
    return layer(ins[0], **kw)


def _bn_state(layer) -> dict[str, np.ndarray]:
    return {"moving_mean": np32(layer.moving_mean),
            "moving_variance": np32(layer.moving_variance)}


# -- batch_norm ----------------------------------------------------------------------------
# Moving statistics far from their defaults, so that inference outputs are informative.
MOVING = dict(moving_mean_initializer="normal",
              moving_variance_initializer=["uniform", 0.5, 2.0])
BN = [  # (kwargs, input shape)
    (dict(input_size=6), (8, 6)),
    (dict(), (4, 3, 5)),  # lazy build
    (dict(axis=1, **MOVING), (4, 3, 5)),
    (dict(input_size=4, momentum=0.9, epsilon=1e-5, beta_initializer="normal",
          gamma_initializer=["uniform", 0.5, 1.5]), (2, 3, 3, 4)),
    (dict(center=False, **MOVING), (6, 5)),
    (dict(scale=False, gamma_initializer="normal", beta_initializer="uniform"), (6, 5)),
    (dict(center=False, scale=False), (2, 3, 4)),
    (dict(axis=[1, 3], **MOVING), (2, 3, 4, 5)),
    (dict(axis=[-2, -1], input_size=[3, 4], beta_initializer="normal"), (5, 3, 4)),
    (dict(axis=-2, momentum=0.5), (3, 4, 2, 3, 2)),  # rank 5
    (dict(synchronized=True, gamma_initializer="normal"), (8, 6)),
    (dict(trainable=False, **MOVING), (8, 6)),
    (dict(input_size=3, momentum=0.0, epsilon=0.1), (5, 3)),
]
CASES: list[Case] = []
for i, (kw, shape) in enumerate(BN):
    # Moving statistics after 3 training steps (the compared call is the third).
    CASES += grid("batch_norm", [kw], [shape], modes=("train", "eval"),
                  smoke=1 if i < 2 else 0, steps=3)
# Per-call flags override the module's mode.
CASES += grid("batch_norm", [dict(**MOVING)], [(6, 4)], dtypes=("float32", "bfloat16"),
              modes=("train", "eval"), steps=2,
              call_kwargs=[{"train_flag": False}, {"train_flag": True}, {"training": False},
                           {"training": True}])
# Masked moments: a 0/1 mask (Keras) and fractional weights (the documented formula).
BN_MASK = [(dict(), (4, 5, 6)), (dict(axis=1, **MOVING), (3, 4, 5)),
           (dict(axis=[1, 2]), (3, 4, 5, 2)), (dict(center=False, momentum=0.8), (3, 2, 3, 4))]
for kind in ("mask", "positive"):
    for j, (kw, shape) in enumerate(BN_MASK):
        CASES += grid("batch_norm", [kw], [shape, Input(shape[:-1], kind, "mask")],
                      modes=("train", "eval"), smoke=1 if kind == "mask" and j == 0 else 0,
                      steps=2)
CASES += grid("batch_norm", [dict(synchronized=True)],
              [(4, 5, 6), Input((4, 5), "positive", "mask")], dtypes=("float32",), steps=2)

# -- group_norm ----------------------------------------------------------------------------
GN_MASK = [[[1.0], [0.0], [1.0], [1.0]], [[1.0], [1.0], [0.0], [1.0]]]  # (2, 4, 1)
GN = [  # (kwargs, input shape)
    (dict(groups=2, input_size=6), (2, 4, 6)),
    (dict(groups=3), (2, 5, 6)),  # lazy build
    (dict(groups=-1, gamma_initializer="normal", beta_initializer="normal"), (2, 3, 4)),
    (dict(groups=1, epsilon=1e-5), (3, 8)),
    (dict(groups=2, axis=1, gamma_initializer="Xavier", beta_initializer="uniform"),
     (2, 4, 3, 3)),
    (dict(groups=3, axis=-2, input_size=6, center=False), (2, 6, 5)),
    (dict(groups=2, scale=False, beta_initializer=["uniform", -1.0, 1.0]), (2, 3, 2, 4)),
    (dict(groups=4, center=False, scale=False), (2, 3, 2, 2, 8)),
    (dict(groups=2, mask=GN_MASK, gamma_initializer="normal"), (2, 4, 6)),
    (dict(groups=2, axis=1, mask=[[1.0, 0.5, 2.0, 1.0]]), (2, 4, 4)),
]
for i, (kw, shape) in enumerate(GN):
    CASES += grid("group_norm", [kw], [shape], smoke=1 if i < 2 else 0)
CASES += grid("group_norm", [dict(groups=2)], [(3, 4, 6), Input((3, 4, 1), "mask", "mask")])
CASES += grid("group_normalization", [dict(input_size=8, groups=4, axis=-1)], [(4, 3, 8)])

# -- layer_norm ----------------------------------------------------------------------------
LN = [  # (kwargs, input shape)
    (dict(input_size=6), (4, 6)),
    (dict(), (2, 3, 5)),  # lazy build
    (dict(axis=[1, 2], gamma_initializer="normal", beta_initializer="normal"), (2, 3, 4)),
    (dict(axis=1, beta_initializer="uniform"), (2, 3, 4)),  # not trailing: no fast path
    (dict(axis=[-2, -1], input_size=[3, 4], epsilon=1e-5), (2, 3, 4)),
    (dict(axis=[1, 3], gamma_initializer="Xavier"), (2, 3, 2, 4)),
    (dict(center=False, momentum=0.5), (3, 5)),
    (dict(scale=False, beta_initializer="normal"), (3, 5)),
    (dict(center=False, scale=False, epsilon=0.1), (3, 5)),
    (dict(rms_scaling=True, gamma_initializer="normal"), (3, 5)),
    (dict(rms_scaling=True, scale=False, axis=[1, 2]), (2, 3, 4)),
    (dict(axis=0), (4, 3)),
]
for i, (kw, shape) in enumerate(LN):
    CASES += grid("layer_norm", [kw], [shape], smoke=1 if i < 3 else 0)
CASES += grid("layer_normalization", [dict(input_size=8, axis=-1)], [(4, 8)])

SPECS = [
    LayerSpec("batch_norm", ["input_size", "axis", "momentum", "epsilon", "center", "scale",
                             "beta_initializer", "gamma_initializer", "moving_mean_initializer",
                             "moving_variance_initializer", "synchronized", "trainable",
                             "dtype"], ["data", "train_flag", "mask"],
              reference=ref.batch_norm, state=_bn_state, call=_call_with_mask),
    LayerSpec("group_norm", ["groups", "input_size", "axis", "epsilon", "center", "scale",
                             "beta_initializer", "gamma_initializer", "mask", "dtype"],
              ["data", "mask"], reference=ref.group_norm, call=_call_with_mask),
    LayerSpec("layer_norm", ["input_size", "axis", "momentum", "epsilon", "center", "scale",
                             "rms_scaling", "beta_initializer", "gamma_initializer", "dtype"],
              reference=ref.layer_norm),
    # The aliases the documentation's examples use, with the examples' arguments.
    LayerSpec("group_normalization", ["input_size", "groups", "axis"], alias_of="group_norm",
              reference=ref.group_norm),
    LayerSpec("layer_normalization", ["input_size", "axis"], alias_of="layer_norm",
              reference=ref.layer_norm),
]
