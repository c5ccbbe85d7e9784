"""Fused ops behind one entry point each, below the layers (nothing here imports
``mlxnote.nn``): :mod:`.conv` (every convolution), :mod:`.scan` (the recurrences),
:mod:`.attention` (softmax and linear attention), :mod:`.norm` (batch, group and layer
normalization), :mod:`.dropout` (Bernoulli masks), :mod:`.linear` (the dense product) and
:mod:`.fastmath` (fast float32 exp/sigmoid/tanh). Each picks its formulation for the device
(``mlxnote._config``) and keeps a plain-MLX path that is also its test oracle."""

from .._config import compute_dtype  # noqa: F401  (kept for ``mlxnote.kernels.compute_dtype``)
