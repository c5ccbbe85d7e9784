"""The documented Note layers on MLX: ``from mlxnote import nn``.

Each family lives in its own module and lists its layers in ``__all__``.
"""

import sys

from . import (  # noqa: F401  (the family modules)
    activations,
    attention,
    conv,
    core,
    initializers,
    linear_attention,
    norm,
    recurrent,
    talking_heads,
    transformer,
    weights,
)
from .attention import *  # noqa: F403
from .bidirectional import *  # noqa: F403  (beyond the 32 documented layers: not in __all__)
from .containers import *  # noqa: F403  (flatten, Layers: as bidirectional)
from .conv import *  # noqa: F403
from .core import *  # noqa: F403
from .layer import Layer
from .linear_attention import *  # noqa: F403
from .norm import *  # noqa: F403
from .pooling import *  # noqa: F403  (as bidirectional)
from .recurrent import *  # noqa: F403
from .talking_heads import *  # noqa: F403
from .transformer import *  # noqa: F403

# The modules of the documented layers (by module path: after the star imports, `attention`
# names the layer, not its module).
FAMILIES = ("core", "conv", "norm", "recurrent", "attention", "talking_heads",
            "linear_attention", "transformer")
__all__ = ["Layer", "activations", "initializers"] + [
    name for mod in FAMILIES for name in sys.modules[f"{__name__}.{mod}"].__all__
]
from ..training import Model, Sequential  # noqa: E402, F401, I001
