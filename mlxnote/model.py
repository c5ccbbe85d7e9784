"""Old import path of :mod:`mlxnote.training` (kept as a thin re-export).

``from mlxnote.model import Model, Adam, ModelCheckpoint, ...`` keeps working; new code
imports from ``mlxnote.training``.
"""

from .training import *  # noqa: F403
from .training import __all__ as _training_all
from .training.checkpoint import FORMAT  # noqa: F401
from .training.losses import EPSILON  # noqa: F401

__all__ = [n for n in _training_all if n not in (
    "callbacks", "checkpoint", "data", "display", "distributed", "losses", "metrics",
    "optimizers", "steps")]
