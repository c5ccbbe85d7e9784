"""Side-by-side timings: mlxnote vs the best raw-MLX composition vs TensorFlow, in one run.

Each ``bench_*.py`` module defines ``benches(quick: bool) -> list[Bench]``.
``python -m benchmarks`` (``make bench``) times them all and prints the ratios.
"""

import mlxnote  # noqa: F401  before any bench imports mlx.core: the fast BLAS on Linux
