"""The layer contract on the core layers: dense, identity, dropout, stochastic_depth and
zero padding. Every documented example runs with its documented shape."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

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


# -- dense --------------------------------------------------------------------------------
def test_dense_lazy_build_and_param_order():
    layer = nn.dense(4)
    assert not layer.built and layer.param == []
    y = layer(mx.ones((2, 3, 5)))
    assert y.shape == (2, 3, 4) and layer.built and layer.input_size == 5
    assert [p.shape for p in layer.param] == [(5, 4), (4,)]
    assert layer.param_names == ["weight", "bias"]


def test_dense_matches_numpy():
    mx.random.seed(0)
    layer = nn.dense(3, 4, activation="relu", bias_initializer="normal")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    w, b = layer.get_weights()
    np.testing.assert_allclose(np.array(layer(x)), np.maximum(x @ w + b, 0), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_get_set_weights_round_trip(dtype):
    mx.random.seed(1)
    a = nn.dense(3, 4, dtype=dtype, bias_initializer="normal")
    b = nn.dense(3, 4, dtype=dtype)
    b.set_weights(a.get_weights())
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    x = mx.random.normal((2, 4))
    assert a(x).dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(np.array(a(x).astype(mx.float32)),
                                  np.array(b(x).astype(mx.float32)))


def test_set_weights_errors():
    layer = nn.dense(3, 4)
    with pytest.raises(ValueError, match=r"dense: argument 'weights' got 1 arrays"):
        layer.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"shape \(3, 4\) for 'weight'.*\(4, 3\)"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(3)])
    with pytest.raises(RuntimeError, match="unbuilt"):
        nn.dense(3).set_weights([np.zeros((4, 3)), np.zeros(3)])


def test_keras_weights_load_directly():
    keras = pytest.importorskip("keras")
    k = keras.layers.Dense(3, activation="tanh")
    k.build((None, 4))
    layer = nn.dense(3, 4, activation="tanh")
    layer.set_weights(k.get_weights())
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.array(layer(x)), np.asarray(k(x)), rtol=1e-5, atol=1e-6)


def test_trainable_false_and_use_bias_false():
    layer = nn.dense(3, 4, trainable=False)
    assert layer.param == [] and tree_flatten(layer.trainable_parameters()) == []
    assert len(layer.get_weights()) == 2
    nb = nn.dense(3, 4, use_bias=False)
    assert nb.param_names == ["weight"] and "bias" not in nb


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(output_size=0), ValueError, "dense: argument 'output_size' got 0"),
    (dict(output_size=2.5), TypeError, "argument 'output_size' got 2.5"),
    (dict(output_size=2, input_size=-1), ValueError, "argument 'input_size' got -1"),
    (dict(output_size=2, activation="nope"), ValueError, "argument 'activation' got 'nope'"),
    (dict(output_size=2, weight_initializer="nope"), ValueError,
     "argument 'weight_initializer' got 'nope'"),
    (dict(output_size=2, input_size=3, bias_initializer=np.zeros(5)), ValueError,
     "argument 'bias_initializer' got an array of shape"),
    (dict(output_size=2, use_bias="yes"), TypeError, "argument 'use_bias' got 'yes'"),
    (dict(output_size=2, dtype="int8"), TypeError, "argument 'dtype' got 'int8'"),
])
def test_dense_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.dense(**kwargs)


def test_dense_bad_inputs():
    layer = nn.dense(3, 4)
    with pytest.raises(ValueError, match=r"dense: argument 'data' got an array of shape \(2, 5\)"
                                         r".*4 channels"):
        layer(mx.zeros((2, 5)))
    with pytest.raises(ValueError, match="rank >= 1"):
        layer(mx.array(1.0))
    with pytest.raises(TypeError, match="dtype <U1"):
        layer(np.array([["a"] * 4]))
    with pytest.raises(TypeError, match="complex64"):
        layer(mx.zeros((2, 4), dtype=mx.complex64))


def test_inputs_array_like_and_cast():
    layer = nn.dense(2, 3, dtype="float16")
    y = layer([[1, 2, 3]])
    assert y.dtype == mx.float16 and y.shape == (1, 2)


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


def test_compile_and_save_load_weights(tmp_path):
    layer = nn.dense(3, 4, activation="relu", bias_initializer="normal")
    x = mx.random.normal((2, 4))
    f = mx.compile(layer)
    np.testing.assert_allclose(np.array(f(x)), np.array(layer(x)), rtol=1e-6)
    path = str(tmp_path / "w.safetensors")
    layer.save_weights(path)
    other = nn.dense(3, 4, activation="relu")
    other.load_weights(path)
    np.testing.assert_array_equal(np.array(other(x)), np.array(layer(x)))


def test_repr_shows_arguments_shapes_and_count():
    r = repr(nn.dense(32, 16, activation="sigmoid"))
    assert "output_size=32" in r and "weight(16, 32)" in r and "params=544" in r
    assert "unbuilt" in repr(nn.dense(3))


# -- identity -----------------------------------------------------------------------------
def test_identity():
    x = mx.ones((2, 3))
    assert nn.identity()(x) is x
    assert nn.identity()(np.ones((2, 3), np.float16)).dtype == mx.float16
    with pytest.raises(ValueError, match="identity: argument 'data'.*3 features"):
        nn.identity(input_size=3)(mx.ones((2, 4)))
    with pytest.raises(TypeError, match="identity: argument 'input_size'"):
        nn.identity(input_size="3")


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


@pytest.mark.parametrize("cls, pad, exc", [
    (nn.zeropadding1d, -1, ValueError), (nn.zeropadding1d, (1, 2, 3), ValueError),
    (nn.zeropadding2d, (1, 2, 3), ValueError), (nn.zeropadding2d, "same", TypeError),
    (nn.zeropadding3d, ((1, 2, 3), 1, 1), ValueError), (nn.zeropadding2d, 1.5, TypeError),
])
def test_zeropadding_bad_padding(cls, pad, exc):
    with pytest.raises(exc, match=f"{cls.__name__}: argument 'padding'"):
        cls(padding=pad)


def test_zeropadding_bad_inputs():
    with pytest.raises(ValueError, match=r"zeropadding2d: argument 'data'.*rank 4"):
        nn.zeropadding2d()(mx.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="3 channels"):
        nn.zeropadding1d(input_size=3)(mx.ones((2, 3, 4)))


# -- dropout and stochastic depth -----------------------------------------------------------
def test_dropout_modes():
    x = mx.ones((64, 64))
    d = nn.dropout(0.5)
    y = np.array(d(x))
    assert set(np.unique(y)) == {0.0, 2.0}
    d.eval()
    assert np.array_equal(np.array(d(x)), np.array(x))
    assert set(np.unique(np.array(d(x, train_flag=True)))) == {0.0, 2.0}
    assert set(np.unique(np.array(d(x, training=True)))) == {0.0, 2.0}
    d.train()
    assert np.array_equal(np.array(d(x, train_flag=False)), np.array(x))


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
    sd = nn.stochastic_depth(0.25)
    sd.eval()
    assert np.array_equal(np.array(sd(x)), np.array(x))


@pytest.mark.parametrize("cls, kw, exc, match", [
    (nn.dropout, dict(rate=1.0), ValueError, r"dropout: argument 'rate' got 1.0; allowed: a "
                                             r"float in \[0.0, 1.0\)"),
    (nn.dropout, dict(rate=-0.1), ValueError, "argument 'rate'"),
    (nn.dropout, dict(rate="0.5"), TypeError, "argument 'rate'"),
    (nn.dropout, dict(rate=0.5, seed=-1), ValueError, "argument 'seed'"),
    (nn.dropout, dict(rate=0.5, noise_shape=5), TypeError, "argument 'noise_shape'"),
    (nn.stochastic_depth, dict(drop_path_rate=1.5), ValueError, "argument 'drop_path_rate'"),
    (nn.stochastic_depth, dict(drop_path_rate=0.1, dtype="float64"), TypeError,
     "argument 'dtype'"),
])
def test_random_layers_bad_arguments(cls, kw, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kw)


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
