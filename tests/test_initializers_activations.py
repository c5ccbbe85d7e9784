"""The shared tables: initializers (Note's names and fan rules, seeded) and activations."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from mlxnote.nn import activations, initializers
from mlxnote.nn.initializers import compute_fans, initialize


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((3, 5), (3, 5)), ((3, 4, 6), (12, 18)),
    ((3, 3, 8, 16), (72, 144)), ((2, 2, 2, 4, 6), (32, 48)),
])
def test_fans_follow_note(shape, fans):
    assert compute_fans(shape) == fans


def _draw(name, shape=(64, 128, 4)):
    mx.random.seed(0)
    return np.array(initialize(name, shape, mx.float32))


@pytest.mark.parametrize("name, kind, scale, mode", [
    ("Xavier", "uniform", 1.0, "avg"), ("Xavier_normal", "trunc", 1.0, "avg"),
    ("He", "trunc", 2.0, "in"), ("He_normal", "trunc", 2.0, "in"),
    ("He_uniform", "uniform", 2.0, "in"), ("Lecun", "trunc", 1.0, "in"),
    ("Lecun_uniform", "uniform", 1.0, "in"), ("glorot_uniform", "uniform", 1.0, "avg"),
])
def test_variance_scaling_bounds_and_std(name, kind, scale, mode):
    shape = (64, 128, 4)
    fan_in, fan_out = compute_fans(shape)
    fan = {"in": fan_in, "avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / fan)
    w = _draw(name, shape)
    if kind == "uniform":
        limit = math.sqrt(3) * std
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    else:  # truncated at 2 (rescaled) std, overall std as Keras' VarianceScaling
        assert np.abs(w).max() <= 2 * std / initializers.TRUNC_STD + 1e-6
    assert abs(w.std() / std - 1) < 0.03


def test_named_constants_and_ranges():
    assert np.all(_draw("zeros") == 0) and np.all(_draw("ones") == 1)
    u = _draw("uniform")
    assert u.min() >= -0.05 and u.max() <= 0.05
    n = _draw("normal")
    assert abs(n.std() - 1) < 0.02 and abs(n.mean()) < 0.02


def test_orthogonal():
    for shape in [(6, 10), (10, 6), (3, 3, 4, 8)]:
        w = _draw("Orthogonal", shape).reshape(-1, shape[-1])
        small = min(w.shape)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)
    w = np.array(initialize(["Orthogonal", 2.0], (8, 8), mx.float32))
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(8), atol=1e-4)


def test_list_forms_array_callable_and_seed():
    assert abs(np.array(initialize(["normal", 3.0, 0.1], (4000,), mx.float32)).mean() - 3) < 0.01
    u = np.array(initialize(["uniform", 2, 3], (1000,), mx.float32))
    assert u.min() >= 2 and u.max() <= 3
    t = np.array(initialize(["truncated_normal", 0.5], (1000,), mx.float32))
    assert np.abs(t).max() <= 1.0
    v = np.array(initialize(["VarianceScaling", 2.0, "fan_out", "uniform"], (10, 20), mx.float32))
    assert np.abs(v).max() <= math.sqrt(6 / 20)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(np.array(initialize(a, (2, 3), mx.float32)), a)
    c = initialize(lambda shape, dtype: mx.full(shape, 7.0), (2,), mx.bfloat16)
    assert c.dtype == mx.bfloat16 and c.tolist() == [7.0, 7.0]
    assert np.array_equal(_draw("Xavier"), _draw("Xavier"))  # seeded


@pytest.mark.parametrize("bad, exc", [("bogus", ValueError), (["normal", 1.0], ValueError),
                                      (["VarianceScaling", 1, "fan_x", "uniform"], ValueError),
                                      (3, TypeError)])
def test_initializer_errors(bad, exc):
    with pytest.raises(exc, match="conv9: argument 'weight_initializer' got"):
        initialize(bad, (2, 2), mx.float32, "conv9")
    with pytest.raises(exc, match="allowed"):
        initializers.validate(bad, "conv9")


# -- activations ---------------------------------------------------------------------------
X = np.linspace(-4, 4, 33).astype(np.float32)


@pytest.mark.parametrize("name, ref", [
    ("relu", lambda x: np.maximum(x, 0)), ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("logsigmoid", lambda x: -np.log1p(np.exp(-x))), ("leaky_relu", lambda x: np.where(
        x > 0, x, 0.2 * x)), ("hard_sigmoid", lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    ("tanhshrink", lambda x: x - np.tanh(x)), ("linear", lambda x: x),
])
def test_activation_values(name, ref):
    np.testing.assert_allclose(np.array(activations.get(name)(mx.array(X))), ref(X), rtol=1e-5,
                               atol=1e-6)


def test_activation_forms():
    assert activations.get(None)(mx.array(X)).tolist() == mx.array(X).tolist()
    assert np.array(activations.get("logsigmoid")(mx.array(X))).max() < 0  # correct sign
    lr = np.array(activations.get(["leaky_relu", 0.1])(mx.array(X)))
    np.testing.assert_allclose(lr, np.where(X > 0, X, 0.1 * X), rtol=1e-6)
    assert activations.get(mx.square)(mx.array(3.0)).item() == 9.0
    assert activations.get("ReLU") is activations.get("relu")
    assert activations.get("glu")(mx.ones((2, 6))).shape == (2, 3)
    assert activations.get("crelu")(mx.ones((2, 3))).shape == (2, 6)
    with pytest.raises(ValueError, match="dense: argument 'activation' got 'swishy'.*'relu'"):
        activations.get("swishy", "dense")
    with pytest.raises(ValueError, match="argument 'activation'"):
        activations.get(["gelu", "yes"])
    with pytest.raises(TypeError, match="argument 'activation'"):
        activations.get(3)
