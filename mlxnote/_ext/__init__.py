"""mlxnote's C++ MLX primitives (sources in ``src/``), built by ``pip install`` into
``_core``; :mod:`mlxnote.kernels._ext` loads them (or falls back to pure MLX)."""
