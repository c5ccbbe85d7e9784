"""Fused ops behind one function each, with a plain-MLX path that is also their oracle."""
