"""Sequential: a :class:`~mlxnote.training.model.Model` of layers applied in order."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._validation import Desc, error
from .model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """Layers applied in order: ``Sequential([nn.dense(64, activation='relu'),
    nn.dense(10)])`` (or ``Sequential(layer1, layer2)``; ``add`` appends)."""

    def __init__(self, *layers: Any) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, l in enumerate(layers):
            if not callable(l):
                raise error("Sequential", "layers", Desc(f"{type(l).__name__} at position {i}"),
                            "mlxnote layers, mlx.nn modules or callables", TypeError)
        self.layers = list(layers)

    def add(self, layer: Any) -> None:
        if not callable(layer):
            raise error("Sequential", "layer", Desc(type(layer).__name__),
                        "an mlxnote layer, an mlx.nn module or a callable", TypeError)
        self.layers.append(layer)

    def __call__(self, x: mx.array) -> mx.array:
        for l in self.layers:
            x = l(x)
        return x
