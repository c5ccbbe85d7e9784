"""The documented Note layers on MLX: ``from mlxnote import nn``."""

from . import activations, initializers
from .core import (
    dense,
    dropout,
    identity,
    stochastic_depth,
    zeropadding1d,
    zeropadding2d,
    zeropadding3d,
)
from .layer import Layer

__all__ = [
    "Layer", "activations", "initializers",
    "dense", "dropout", "identity", "stochastic_depth",
    "zeropadding1d", "zeropadding2d", "zeropadding3d",
]
