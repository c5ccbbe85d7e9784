"""The harness proves it can fail: planted errors must be reported as failures.

Each mutant is a deliberately wrong layer run through the same engine as the real one.
"""

from __future__ import annotations

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

    dense = dict(output_size=6, input_size=6, bias_initializer="normal")
    x = (Input((4, 6)),)
    drop_in = (Input((64, 32), "positive"),)
    return [
        ("bias sign flip (forward)", BiasSignFlip, Case("dense", dense, x)),
        ("weight gradient sign flip", WeightGradSignFlip, Case("dense", dense, x)),
        ("transposed weight", TransposedWeight, Case("dense", dense, x)),
        ("1e-4 relative forward error", TinyForwardError, Case("dense", dense, x)),
        ("dropout scale 1/rate", DropoutWrongScale, Case("dropout", dict(rate=0.3), drop_in)),
        ("stochastic depth per element", DepthPerElement,
         Case("stochastic_depth", dict(drop_path_rate=0.3), drop_in)),
    ]


def run() -> list[tuple[str, bool, str]]:
    """``[(planted error, caught?, which checks caught it)]``."""
    from . import families
    from .engine import run_case

    specs = families.load().specs
    out = []
    for name, cls, case in _mutants():
        res = run_case(case, specs[case.layer], cls=cls)
        failed = [c.name for c in res.checks if not c.passed]
        caught = not res.passed and res.error is None
        by = ", ".join(failed) if failed else (res.error or "").strip().splitlines()[-1:]
        out.append((name, caught, str(by)))
    return out
