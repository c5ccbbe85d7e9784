import os
import random
import zlib

import pytest

os.environ.setdefault("MLX_ENABLE_TF32", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import mlxnote  # noqa: E402, F401  before any test imports mlx.core: the fast BLAS on Linux


@pytest.fixture(autouse=True)
def _seeded(request):
    """Every test starts from the same random state, whatever ran before it: MLX's global
    generator, NumPy's legacy one and ``random`` are seeded from the test's id (tests that
    draw without a key or a seeded generator get the same values every run and alone)."""
    import mlx.core as mx
    import numpy as np

    seed = zlib.crc32(request.node.nodeid.encode())
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)
