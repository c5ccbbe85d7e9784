"""Core layers: dense, identity, zeropadding1d/2d/3d (numeric, against Keras), dropout and
stochastic_depth (random: what is deterministic is compared exactly, the rest statistically,
against Keras ``Dropout``)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..arrays import np32, round_to
from ..case import Case, Fn, Input, LayerSpec, Trial, grid
from ..compare import Check, compare, exact
from ..reference import core as ref

# -- numeric layers --------------------------------------------------------------------
ACTIVATIONS = ["sigmoid", "tanh", "relu", "relu6", "elu", "selu", "celu", "leaky_relu", "gelu",
               "softmax", "log_softmax", "softplus", "softsign", "swish", "silu", "logsigmoid",
               "hard_sigmoid", "hardswish", "mish", "tanhshrink", "exponential", "glu", "crelu",
               "linear"]

DENSE = [
    dict(output_size=8, input_size=6),
    dict(output_size=8),  # lazy build
    dict(output_size=5, input_size=6, activation="relu", use_bias=False),
    dict(output_size=8, input_size=6, activation="sigmoid", weight_initializer="He",
         bias_initializer="normal"),
    dict(output_size=8, input_size=6, activation="tanh", trainable=False),
    dict(output_size=8, input_size=6, activation=Fn("square"), name="fc"),
    dict(output_size=8, input_size=6, activation=["leaky_relu", 0.1],
         weight_initializer="Orthogonal", bias_initializer="uniform"),
    dict(output_size=8, input_size=6, activation=["gelu", True],
         weight_initializer=["normal", 0.0, 0.3], bias_initializer="ones"),
    dict(output_size=4, input_size=6, activation="softmax", weight_initializer="Lecun"),
]

ZP = {
    1: [dict(padding=2), dict(padding=(1, 3)), dict(input_size=4, padding=0), dict()],
    2: [dict(padding=2), dict(padding=((1, 0), (2, 3))), dict(padding=(1, 2)),
        dict(input_size=4)],
    3: [dict(padding=2), dict(padding=((1, 0), 2, (0, 3))), dict(), dict(input_size=4)],
}
ZP_SHAPES = {1: (2, 5, 4), 2: (2, 5, 6, 4), 3: (2, 3, 4, 5, 4)}
ZP_CALL = {1: [{}, {"padding": (2, 0)}], 2: [{}, {"padding": 1}],
           3: [{}, {"padding": (1, (0, 2), 1)}]}

CASES: list[Case] = []
CASES += grid("dense", DENSE, [(4, 6)], smoke=3)
CASES += grid("dense", [dict(output_size=8, input_size=6, activation="gelu")], [(2, 3, 6)])
CASES += grid("dense", [dict(output_size=3, input_size=1), dict(output_size=1)], [(1, 1)],
              dtypes=("float32",))  # an input of one value
CASES += grid("dense", [dict(output_size=6, input_size=6, activation=a) for a in ACTIVATIONS],
              [(4, 6)], dtypes=("float32",))
# Activations at their kink: zero input rows give a pre-activation of exactly the (zero)
# bias, where the gradient is a convention (TF: relu'(0) = 0, leaky_relu'(0) = alpha).
KINKED = ["relu", "relu6", "leaky_relu", ["leaky_relu", 1.5], "elu", "celu", "selu", "crelu",
          "hardswish", "linear"]
CASES += grid("dense", [dict(output_size=6, input_size=6, activation=a) for a in KINKED],
              [Input((4, 6), "zero_rows")], dtypes=("float32",))
CASES += grid("identity", [dict(), dict(input_size=6)], [(4, 3, 6)], smoke=1)
for n in (1, 2, 3):
    CASES += grid(f"zeropadding{n}d", ZP[n], [ZP_SHAPES[n]], call_kwargs=ZP_CALL[n], smoke=1)


# -- random layers ---------------------------------------------------------------------
def binomial_ok(dropped: int, n: int, rate: float, z: float = 6.0) -> tuple[bool, str]:
    """Is ``dropped`` out of ``n`` plausible for Binomial(n, rate)? (6 sigma, +1 slack)."""
    mean, sd = n * rate, math.sqrt(n * rate * (1 - rate))
    ok = abs(dropped - mean) <= z * sd + 1
    return ok, f"dropped {dropped}/{n}, expected {mean:.1f} +- {z:g}*{sd:.2f}"


def _rate(case: Case) -> float:
    return case.kwargs.get("rate", case.kwargs.get("drop_path_rate"))


def _noise_shape(case: Case, shape) -> tuple[int, ...]:
    ns = case.kwargs.get("noise_shape")
    if ns is None:
        return tuple(shape) if case.layer == "dropout" else (shape[0],) + (1,) * (len(shape) - 1)
    return tuple(s if d is None else d for d, s in zip(ns, shape))


def check_random(trial: Trial) -> list[Check]:
    """Dropout-like layers: inference is the identity; in training, kept entries are scaled
    by exactly Keras's factor, the mask has the documented structure, the drop count is
    binomial, the input gradient is the documented ``cotangent * mask / keep`` and a seed
    makes the mask reproducible."""
    case, layer, rng = trial.case, trial.layer, trial.rng
    shape = case.inputs[0].shape
    x_np, x = trial.inputs[0], trial.xs[0]  # 'positive': no zeros, so y != 0 <=> kept
    kw = trial.call_kwargs
    rate = _rate(case)
    keep = 1.0 - rate
    training = case.training
    ns = case.kwargs.get("noise_shape")
    if case.layer == "stochastic_depth" and ns is None:
        ns = (shape[0],) + (1,) * (len(shape) - 1)

    ct = round_to(rng.standard_normal(shape), case.dtype)
    ct_mx = mx.array(ct.astype(np.float32)).astype(x.dtype)

    def forward(x_):
        y_ = layer(x_, **kw)
        return mx.sum(y_ * ct_mx), y_

    # One call draws one mask: the output and its input gradient share it.
    (_, y_mx), g_mx = mx.value_and_grad(forward)(x)
    y, g_ours = np32(y_mx), np32(g_mx)
    checks = []
    k_y = ref.run_keras_dropout(x_np, rate, ns, training, case.dtype)
    if not training or rate == 0.0:
        checks.append(compare("output (identity)", y, k_y, None, case.dtype))
        checks.append(exact("output == input", np.array_equal(y, x_np)))
        return checks

    mask = y != 0
    k_mask = k_y != 0
    # 1. scale: every kept entry is x times one factor, and that factor is Keras's.
    ours_scale = round_to(np.array([1.0 / keep]), case.dtype)[0]
    expect = np.where(mask, x_np * ours_scale, 0.0)
    k_factor = np.unique(np.round(k_y[k_mask] / x_np[k_mask], 2))
    checks.append(compare("kept entries = x / keep", y, round_to(expect, case.dtype), None,
                          case.dtype))
    checks.append(exact("scale equals Keras's", np.allclose(k_factor, round(1.0 / keep, 2),
                                                               atol=0.011),
                        f"Keras scale(s) {k_factor}, ours 1/keep = {1.0 / keep:.4f}"))
    # 2. structure: the mask is constant along the broadcast axes of the noise shape.
    nshape = _noise_shape(case, shape)
    sl = tuple(slice(0, d) for d in nshape)
    units = mask[sl]
    rebuilt = np.broadcast_to(units, shape)
    checks.append(exact("mask follows noise_shape", np.array_equal(rebuilt, mask),
                        f"noise shape {nshape}"))
    # 3. rate: the number of dropped units is binomial, for ours and for Keras.
    n = int(np.prod(nshape))
    ok, msg = binomial_ok(int(n - units.sum()), n, rate)
    checks.append(exact("drop count is binomial", ok, msg))
    k_ok, k_msg = binomial_ok(int(n - k_mask[sl].sum()), n, rate)
    checks.append(exact("Keras drop count is binomial (reference sanity)", k_ok, k_msg))
    # 4. gradient: the documented y = x * mask / keep, differentiated by TF with our mask.
    g_tf, g_oracle = ref.documented_dropout_grad(x_np, mask, keep, ct, case.dtype)
    checks.append(compare("grad:data", g_ours, g_tf, g_oracle, case.dtype))
    # 5. seed: same seed, same mask; a second call draws a new mask.
    if case.kwargs.get("seed") is not None:
        twin = trial.build()
        checks.append(exact("same seed, same mask", np.array_equal(np32(twin(x, **kw)), y)))
    y2 = np32(layer(x, **kw))
    if n >= 64:
        checks.append(exact("next call draws a new mask", not np.array_equal(y2 != 0, mask)))
    return checks


DROPOUT = [
    dict(rate=0.5), dict(rate=0.3, seed=7), dict(rate=0.2, noise_shape=[64, 1]),
    dict(rate=0.4, noise_shape=[None, 1], seed=3), dict(rate=0.0),
]
DEPTH = [dict(drop_path_rate=0.5), dict(drop_path_rate=0.25, seed=11),
         dict(drop_path_rate=0.3, noise_shape=[64, 1, None])]
CASES += grid("dropout", DROPOUT, [Input((64, 32), "positive")], modes=("train", "eval"),
              smoke=2)
CASES += grid("dropout", [dict(rate=0.5)], [Input((64, 32), "positive")], dtypes=("float32",),
              call_kwargs=[{"train_flag": False}, {"train_flag": True}], modes=("eval",))
CASES += grid("stochastic_depth", DEPTH[:2], [Input((64, 32), "positive")],
              modes=("train", "eval"), smoke=1)
CASES += grid("stochastic_depth", DEPTH[2:], [Input((64, 3, 8), "positive")])
CASES += grid("stochastic_depth", [dict(drop_path_rate=0.5)], [Input((64, 32), "positive")],
              dtypes=("float32",), call_kwargs=[{"train_flag": False}, {"train_flag": True}],
              modes=("train", "eval"))

SPECS = [
    LayerSpec("dense", ["output_size", "input_size", "weight_initializer", "bias_initializer",
                        "activation", "use_bias", "trainable", "dtype", "name"],
              reference=ref.dense),
    LayerSpec("identity", ["input_size"], reference=ref.identity, has_dtype=False),
    *[LayerSpec(f"zeropadding{n}d", ["input_size", "padding"], ["data", "padding"],
                reference=ref.zeropadding(n), has_dtype=False) for n in (1, 2, 3)],
    LayerSpec("dropout", ["rate", "noise_shape", "seed", "dtype"], ["data", "train_flag"],
              check=check_random),
    LayerSpec("stochastic_depth", ["drop_path_rate", "noise_shape", "seed", "dtype"],
              ["data", "train_flag"], check=check_random),
]
