"""Fused ops behind one function each, with a plain-MLX path that is also their oracle."""

import mlx.core as mx

HALF = (mx.float16, mx.bfloat16)


def compute_dtype(dtype: mx.Dtype) -> mx.Dtype:
    """The dtype a layer computes in: float32 for 16-bit layers on the CPU, where MLX's
    16-bit matmul is a slow loop (measured: a (512, 1024) x (1024, 1024) matmul took 211 ms
    in float16 and 158 ms in bfloat16, against 6.6 and 9.0 ms upcast to float32) and rounds
    every intermediate; the layer's dtype elsewhere. Results are rounded once, at the
    layer's output."""
    return mx.float32 if dtype in HALF and mx.default_device() == mx.cpu else dtype
