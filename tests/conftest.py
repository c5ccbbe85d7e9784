import os

os.environ.setdefault("MLX_ENABLE_TF32", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import mlxnote  # noqa: E402, F401  before any test imports mlx.core: the fast BLAS on Linux
