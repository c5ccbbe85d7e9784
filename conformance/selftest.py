"""The harness proves it can fail: planted errors must be reported as failures.

Each mutant is a deliberately wrong layer run through the same engine as the real one, or
(:func:`gpu_mutants`) a deliberately wrong GPU-only branch of a kernel, patched in for the
run: those are part of the self-test when the suite runs the GPU formulation
(``--formulation gpu``, or Metal/CUDA), the only one that takes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import mlx.core as mx

from .case import Case, Input


def _mutants():
    from mlxnote import nn

    class BiasSignFlip(nn.dense):
        """Forward error: subtracts the bias."""

        def __call__(self, data):
            return super().__call__(data) - 2 * self.bias

    @mx.custom_function
    def flip_grad(w):
        return w

    @flip_grad.vjp
    def _flip(primals, cotangent, output):
        return (-cotangent,)

    class WeightGradSignFlip(nn.dense):
        """Gradient error: the weight's gradient has the wrong sign."""

        def __call__(self, data):
            x = self.as_input(data)
            return x @ flip_grad(self.weight) + self.bias

    class TransposedWeight(nn.dense):
        """Layout error: uses the weight transposed (square weight, so shapes still fit)."""

        def __call__(self, data):
            x = self.as_input(data)
            return x @ self.weight.T + self.bias

    class TinyForwardError(nn.dense):
        """A relative error of 1e-4 in float32: above tolerance, below eyeballing."""

        def __call__(self, data):
            return super().__call__(data) * (1 + 1e-4)

    class DropoutWrongScale(nn.dropout):
        """Random-layer error: scales kept units by 1/rate instead of 1/(1 - rate)."""

        def __call__(self, data, train_flag=None, training=None):
            y = super().__call__(data, train_flag, training)
            return y * ((1 - self.rate) / self.rate) if self.mode(train_flag, training) else y

    class DepthPerElement(nn.dropout):
        """Structure error: stochastic depth that drops elements, not whole samples."""

        def __init__(self, drop_path_rate, noise_shape=None, seed=None, dtype="float32"):
            super().__init__(drop_path_rate, noise_shape, seed, dtype)

    class Float32Output(nn.dense):
        """Dtype error: a 16-bit layer returns its (exact) result in float32."""

        def __call__(self, data):
            return super().__call__(data).astype(mx.float32)

    class SetWeightsIgnored(nn.dense):
        """Weight-contract error: set_weights accepts the arrays and changes nothing."""

        def set_weights(self, weights, layout="note"):
            pass

    class ConfigLosesActivation(nn.dense):
        """Config error: get_config records no activation (a rebuilt layer is linear)."""

        def get_config(self):
            return {**super().get_config(), "activation": None}

    class OutputSizeOfInput(nn.dense):
        """Attribute error: output_size says the input's size."""

        def build(self, input_size):
            super().build(input_size)
            self._set("output_size", input_size)

    dense = dict(output_size=6, input_size=6, bias_initializer="normal")
    x = (Input((4, 6)),)
    drop_in = (Input((64, 32), "positive"),)
    return [
        ("float32 output of a bfloat16 layer (dtype)", Float32Output,
         Case("dense", dense, x, "bfloat16")),
        ("set_weights ignored", SetWeightsIgnored, Case("dense", dense, x)),
        ("get_config without the activation", ConfigLosesActivation,
         Case("dense", {**dense, "activation": "tanh"}, x)),
        ("output_size of the input", OutputSizeOfInput,
         Case("dense", {**dense, "output_size": 5}, x)),
        ("bias sign flip (forward)", BiasSignFlip, Case("dense", dense, x)),
        ("weight gradient sign flip", WeightGradSignFlip, Case("dense", dense, x)),
        ("transposed weight", TransposedWeight, Case("dense", dense, x)),
        ("1e-4 relative forward error", TinyForwardError, Case("dense", dense, x)),
        ("dropout scale 1/rate", DropoutWrongScale, Case("dropout", dict(rate=0.3), drop_in)),
        ("stochastic depth per element", DepthPerElement,
         Case("stochastic_depth", dict(drop_path_rate=0.3), drop_in)),
    ]


@contextlib.contextmanager
def inverted_fast_mask(calls: list | None = None) -> Iterator[None]:
    """GPU-branch error: the boolean mask handed to ``mx.fast.scaled_dot_product_attention``
    (``kernels.attention._fast``) has its sense inverted (True = hidden, PyTorch's
    convention), an additive one its sign. ``calls`` (if given) counts the patched calls."""
    from mlxnote.kernels import attention as K

    original = K._fast

    def planted(q, k, v, scale, mask, causal):
        if calls is not None:
            calls.append(1)
        if mask is not None:
            mask = mx.logical_not(mask) if mask.dtype == mx.bool_ else -mask
        return original(q, k, v, scale, mask, causal)

    K._fast = planted
    try:
        yield
    finally:
        K._fast = original


@contextlib.contextmanager
def uncast_feed_forward() -> Iterator[None]:
    """Dtype error in a 16-bit Transformer: the feed-forward block's result is not cast to
    the layer's dtype (float32 on the CPU: the residual sum leaves the dtype)."""
    from mlxnote.nn import transformer_blocks as TB

    original = TB._Block._ff

    def planted(self, x, t, out_drop):
        h = self._dropped(self.ff_dropout, self.act(self.linear1.project(x)), t)
        return self._dropped(out_drop, self.linear2.project(h), t)

    TB._Block._ff = planted
    try:
        yield
    finally:
        TB._Block._ff = original


def patch_mutants() -> list[tuple[str, Callable[..., contextlib.AbstractContextManager], Case]]:
    """``[(name, patch, case)]``: planted errors patched into mlxnote's code for the run."""
    from .families.transformer_blocks import B

    enc = Case("TransformerEncoderLayer", dict(B, norm_first=True),
               (Input((2, 8, 32), name="src"),), "bfloat16", call_kwargs={"inputs": ("src",)})
    return [("feed-forward not cast to a bfloat16 Transformer layer's dtype",
             uncast_feed_forward, enc)]


def precision_loss() -> tuple[str, bool, str]:
    """Accuracy error: the dense bias gradient's pairwise sum made MLX's sequential one
    (patched into the code); the precision check must fail."""
    from . import precision

    check = next(p for p in precision.LAYER_CHECKS if p.plain is precision.plain_bias_rows)
    with precision.plain_bias_rows():
        row = precision.run_layer(check)
    return ("sequential bias-gradient sum (precision)", not row.passed,
            row.detail or f"not caught: {row.ours:.3g} <= {row.bound:.3g}")


def gpu_mutants() -> list[tuple[str, Callable[..., contextlib.AbstractContextManager], Case]]:
    """``[(name, patch, case)]``: planted errors in branches only the GPU formulation takes."""
    mha = Case("multihead_attention", dict(n_head=2, input_size=8),
               (Input((2, 5, 8), name="x"), Input((5, 5), "mask", name="mask")),
               call_kwargs={"inputs": ("x", "mask"), "mask_form": "bool"})
    return [("mx.fast attention mask inverted (GPU branch)", inverted_fast_mask, mha)]


def _result(name: str, res) -> tuple[str, bool, str]:
    failed = [c.name for c in res.checks if not c.passed]
    caught = not res.passed and res.error is None
    by = ", ".join(failed) if failed else (res.error or "").strip().splitlines()[-1:]
    return name, caught, str(by)


def run() -> list[tuple[str, bool, str]]:
    """``[(planted error, caught?, which checks caught it)]``; the GPU-branch mutants too
    when the layers take the GPU formulation."""
    from mlxnote._config import cpu_formulation

    from . import families
    from .engine import run_case

    specs = families.load().specs
    out = [_result(name, run_case(case, specs[case.layer], cls=cls))
           for name, cls, case in _mutants()]
    if cpu_formulation():  # the GPU formulation computes 16-bit layers in 16 bits: the
        # uncast block is then in the layer's dtype already (nothing to catch)
        for name, patch, case in patch_mutants():
            with patch():
                out.append(_result(name, run_case(case, specs[case.layer])))
    out.append(precision_loss())
    if not cpu_formulation():
        for name, patch, case in gpu_mutants():
            with patch():
                out.append(_result(name, run_case(case, specs[case.layer])))
    return out
