"""The conformance harness: every mlxnote layer against an independent TensorFlow reference.

    from conformance import run
    outcome = run("smoke")      # or "full"; outcome.results, outcome.ok
"""

import os

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # float32 matmuls at full precision
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's plain Eigen kernels as the reference: deterministic, the same on every CPU
# (oneDNN changes accumulation order by ISA, and logs on import).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import mlxnote  # noqa: E402, F401  before anything imports mlx.core: the fast BLAS on Linux


def run(*args, **kwargs):
    from .suite import run as _run

    return _run(*args, **kwargs)
