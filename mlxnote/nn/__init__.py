"""The documented Note layers on MLX: ``from mlxnote import nn``.

Each family lives in its own module and lists its layers in ``__all__``.
"""

from . import activations, attention, conv, core, initializers, norm, recurrent, transformer  # noqa: E402, I001
from .attention import *  # noqa: F403
from .conv import *  # noqa: F403
from .core import *  # noqa: F403
from .layer import Layer
from .norm import *  # noqa: F403
from .recurrent import *  # noqa: F403
from .transformer import *  # noqa: F403

__all__ = ["Layer", "activations", "initializers"] + [
    name for mod in (core, conv, norm, recurrent, attention, transformer) for name in mod.__all__
]
