"""The core layers: dense, identity, dropout, stochastic_depth and zero padding. Every
documented example runs with its documented shape; the layer contract runs through
tests/layer_contract.py; the rest is what is particular to each layer."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params

from mlxnote import nn


# -- documented examples ------------------------------------------------------------------
def test_documented_examples():
    assert nn.dense(32, 16, activation="sigmoid")(data=mx.random.normal((64, 16))).shape == (
        64, 32)
    x = mx.random.normal((32, 96, 100))
    assert nn.identity(input_size=100)(x) is x
    assert nn.dropout(rate=0.5)(mx.random.normal((32, 100))).shape == (32, 100)
    assert nn.stochastic_depth(drop_path_rate=0.2)(mx.random.normal((32, 100))).shape == (32, 100)
    assert nn.zeropadding1d(padding=2)(mx.zeros((32, 96, 100))).shape == (32, 100, 100)
    assert nn.zeropadding2d(padding=2)(mx.zeros((32, 96, 100, 3))).shape == (32, 100, 104, 3)
    assert nn.zeropadding3d(padding=2)(mx.zeros((4, 96, 100, 100, 3))).shape == (
        4, 100, 104, 104, 3)


# -- the layer contract (tests/layer_contract.py) ------------------------------------------
CONTRACTS = [
    Contract(nn.dense, dict(output_size=3, input_size=4, activation="tanh"), (2, 4),
             lazy=dict(input_size=None), weights={"weight": (4, 3), "bias": (3,)},
             bad_args=[(dict(output_size=0), ValueError, "output_size"),
                       (dict(output_size=2.5), TypeError, "output_size"),
                       (dict(input_size=-1), ValueError, "input_size"),
                       (dict(bias_initializer=np.zeros(5)), ValueError, "bias_initializer"),
                       (dict(use_bias="yes"), TypeError, "use_bias")],
             bad_inputs=[((2, 5), ValueError, "data"), ((), ValueError, "data"),
                         (mx.zeros((2, 4), dtype=mx.complex64), TypeError, "data")]),
    Contract(nn.identity, dict(input_size=3), (2, 3), weights={},
             bad_args=[(dict(input_size="3"), TypeError, "input_size")],
             bad_inputs=[((2, 4), ValueError, "data"), ((), ValueError, "data")]),
    Contract(nn.dropout, dict(rate=0.5), (4, 6), weights={}, random=dict(rate=0.0),
             bad_args=[(dict(rate=1.0), ValueError, "rate"), (dict(rate=-0.1), ValueError, "rate"),
                       (dict(rate="0.5"), TypeError, "rate"), (dict(seed=-1), ValueError, "seed"),
                       (dict(noise_shape=5), TypeError, "noise_shape")],
),
    Contract(nn.stochastic_depth, dict(drop_path_rate=0.5), (8, 3, 2), weights={},
             random=dict(drop_path_rate=0.0),
             bad_args=[(dict(drop_path_rate=1.5), ValueError, "drop_path_rate"),
                       (dict(noise_shape=[0]), TypeError, "noise_shape")]),
    Contract(nn.zeropadding1d, dict(input_size=3, padding=(1, 2)), (2, 4, 3), weights={},
             bad_args=[(dict(padding=-1), ValueError, "padding"),
                       (dict(padding=(1, 2, 3)), ValueError, "padding")],
             bad_inputs=[((2, 4, 5), ValueError, "data"), ((4, 3), ValueError, "data")]),
    Contract(nn.zeropadding2d, dict(input_size=3, padding=((1, 0), (2, 1))), (2, 3, 4, 3),
             weights={},
             bad_args=[(dict(padding=(1, 2, 3)), ValueError, "padding"),
                       (dict(padding="same"), TypeError, "padding"),
                       (dict(padding=1.5), TypeError, "padding")],
             bad_inputs=[((2, 3, 4, 5), ValueError, "data"), ((2, 3, 4), ValueError, "data")]),
    Contract(nn.zeropadding3d, dict(input_size=2, padding=((1, 0), 2, (0, 1))),
             (1, 2, 3, 2, 2), weights={},
             bad_args=[(dict(padding=((1, 2, 3), 1, 1)), ValueError, "padding")],
             bad_inputs=[((1, 2, 3, 2, 3), ValueError, "data"),
                         ((1, 2, 3, 2), ValueError, "data")]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- dense --------------------------------------------------------------------------------
def test_dense_matches_numpy():
    mx.random.seed(0)
    layer = nn.dense(3, 4, activation="relu", bias_initializer="normal")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    w, b = layer.get_weights()
    np.testing.assert_allclose(np.array(layer(x)), np.maximum(x @ w + b, 0), rtol=1e-5,
                               atol=1e-6)


def test_keras_weights_load_directly():
    keras = pytest.importorskip("keras")
    k = keras.layers.Dense(3, activation="tanh")
    k.build((None, 4))
    layer = nn.dense(3, 4, activation="tanh")
    layer.set_weights(k.get_weights())
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.array(layer(x)), np.asarray(k(x)), rtol=1e-5, atol=1e-6)


def test_use_bias_false():
    layer = nn.dense(3, 4, use_bias=False)
    assert layer.weight_names == ["weight"] and "bias" not in layer


def test_training_with_optimizer_and_value_and_grad():
    mx.random.seed(3)
    model = mnn.Sequential(nn.dense(8, 4, activation="tanh"), nn.dense(1, 8))
    opt = optim.SGD(learning_rate=0.1)
    x = mx.random.normal((32, 4))
    y = x.sum(axis=1, keepdims=True)

    def loss(m):
        return mnn.losses.mse_loss(m(x), y)

    step = mnn.value_and_grad(model, loss)
    first = None
    for _ in range(30):
        lval, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        first = first if first is not None else lval.item()
    assert lval.item() < 0.5 * first


def test_repr_shows_arguments_shapes_and_count():
    r = repr(nn.dense(32, 16, activation="sigmoid"))
    assert "output_size=32" in r and "weight(16, 32)" in r and "params=544" in r
    assert "unbuilt" in repr(nn.dense(3))


# -- identity -----------------------------------------------------------------------------
def test_identity_returns_its_input():
    x = mx.ones((2, 3))
    assert nn.identity()(x) is x and nn.identity(input_size=3)(x) is x
    assert nn.identity()(np.ones((2, 3), np.float16)).dtype == mx.float16  # no cast


# -- zero padding -------------------------------------------------------------------------
def test_zeropadding_forms_and_override():
    x = mx.ones((1, 4, 2))
    assert nn.zeropadding1d(padding=(1, 3))(x).shape == (1, 8, 2)
    assert nn.zeropadding1d()(x).shape == (1, 6, 2)  # default 1
    assert nn.zeropadding1d(padding=2)(x, padding=0).shape == (1, 4, 2)  # call overrides
    y = nn.zeropadding1d(padding=(2, 1))(x)
    np.testing.assert_array_equal(np.array(y)[0, :, 0], [0, 0, 1, 1, 1, 1, 0])
    x2 = mx.ones((1, 3, 4, 2))
    assert nn.zeropadding2d(padding=((1, 0), (2, 3)))(x2).shape == (1, 4, 9, 2)
    assert nn.zeropadding2d(padding=(1, 2))(x2).shape == (1, 5, 8, 2)
    assert nn.zeropadding3d()(mx.ones((1, 2, 2, 2, 1))).shape == (1, 4, 4, 4, 1)
    assert nn.zeropadding3d(padding=((1, 0), 2, (0, 3)))(mx.ones((1, 2, 2, 2, 1))).shape == (
        1, 3, 6, 5, 1)


# -- dropout and stochastic depth -----------------------------------------------------------
def test_dropout_values():
    """Kept entries are scaled by 1 / (1 - rate), in training by the module or the flag."""
    x = mx.ones((64, 64))
    d = nn.dropout(0.5)
    assert set(np.unique(np.array(d(x)))) == {0.0, 2.0}
    d.eval()
    assert set(np.unique(np.array(d(x, train_flag=True)))) == {0.0, 2.0}
    assert set(np.unique(np.array(d(x, training=True)))) == {0.0, 2.0}


def test_dropout_noise_shape_and_seed():
    x = mx.ones((8, 16))
    y = np.array(nn.dropout(0.5, noise_shape=[8, 1], seed=0)(x))
    assert all(len(set(row)) == 1 for row in y)  # whole rows
    y2 = np.array(nn.dropout(0.5, noise_shape=[None, 1], seed=0)(x))
    np.testing.assert_array_equal(y, y2)  # same seed, same mask; None takes the input size
    a = nn.dropout(0.5, seed=5)
    assert not np.array_equal(np.array(a(x)), np.array(a(x)))  # key advances
    with pytest.raises(ValueError, match="dropout: argument 'noise_shape'.*broadcastable"):
        nn.dropout(0.5, noise_shape=[3, 1])(x)


def test_dropout_global_seed_reproducible():
    x = mx.ones((16, 16))
    mx.random.seed(42)
    a = np.array(nn.dropout(0.5)(x))
    mx.random.seed(42)
    b = np.array(nn.dropout(0.5)(x))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [None, 3])
def test_dropout_under_compile_draws_new_masks(seed):
    d = nn.dropout(0.5, seed=seed)
    state = [d.state, mx.random.state]
    f = mx.compile(lambda x: d(x), inputs=state, outputs=state)
    x = mx.ones((32, 32))
    m1, m2 = np.array(f(x)), np.array(f(x))
    assert not np.array_equal(m1, m2)
    assert set(np.unique(m1)) == {0.0, 2.0}


def test_stochastic_depth_whole_samples():
    x = mx.ones((256, 3, 4))
    y = np.array(nn.stochastic_depth(0.25)(x))
    per_sample = y.reshape(256, -1)
    assert all(len(set(r)) == 1 for r in per_sample)
    kept = (per_sample[:, 0] > 0).mean()
    assert 0.6 < kept < 0.9 and np.allclose(per_sample[per_sample > 0], 1 / 0.75)


def test_html_repr_for_notebooks():
    from mlxnote import Model

    html = nn.dense(32, 16, activation="sigmoid")._repr_html_()
    assert "<table>" in html and "weight" in html and "(16, 32)" in html and "544" in html
    assert "not built yet" in nn.dense(3)._repr_html_()

    class Net(Model):
        def __init__(self):
            super().__init__()
            self.fc = nn.dense(4, 3)

        def __call__(self, x):
            return self.fc(x)

    page = Net()._repr_html_()
    assert "fc" in page and "dense" in page and "total 16 params" in page


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dense_half_precision_rounds_once(dtype):
    """16-bit dense on the CPU computes in float32 and rounds once (MLX's 16-bit CPU matmul
    is ~30x slower and rounds every partial sum)."""
    mx.random.seed(4)
    layer = nn.dense(16, 64, activation="tanh", dtype=dtype, bias_initializer="normal")
    x = mx.random.normal((8, 64)).astype(layer.dtype)
    y = layer(x)
    assert y.dtype == layer.dtype
    w, b = (mx.array(a) for a in layer.get_weights())
    expect = mx.tanh(x.astype(mx.float32) @ w + b).astype(layer.dtype)
    np.testing.assert_array_equal(np.array(y.astype(mx.float32)),
                                  np.array(expect.astype(mx.float32)))
