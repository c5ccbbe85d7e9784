"""Old import path of :mod:`mlxnote.training.distributed` (kept as a thin re-export)."""

from .training.distributed import *  # noqa: F403
from .training.distributed import __all__  # noqa: F401
