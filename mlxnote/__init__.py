"""mlxnote: the Note layer library on MLX, proven against TensorFlow."""

from . import _platform  # noqa: F401, I001  first: fast BLAS + CPU cache, before mlx.core
from . import nn

__version__ = "0.1.0"
__all__ = ["nn", "Model", "Sequential", "from_keras", "to_keras", "__version__"]
from .training import Model, Sequential  # noqa: E402, F401, I001
from .interop import from_keras, to_keras  # noqa: E402, F401, I001
