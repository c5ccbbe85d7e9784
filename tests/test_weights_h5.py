"""Keras 3 ``.weights.h5`` files (issue 18, part B.4): mlxnote writes, Keras's
``load_weights`` reads into the corresponding Keras model (its own weights scrambled
first) and the outputs agree; Keras writes, mlxnote reads, outputs agree. A CNN, an LSTM
model (with Bidirectional and GRU), a functional graph and a Model subclass."""

from __future__ import annotations

import h5py
import mlx.core as mx
import numpy as np
import pytest

from mlxnote import from_keras, nn, to_keras
from mlxnote.training import CheckpointError, Model, Sequential

keras = pytest.importorskip("keras")
L = keras.layers
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _scramble_keras(km, seed=5):
    rng = np.random.default_rng(seed)
    km.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in km.get_weights()])


def _scramble(model, seed=6):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3
                       for w in model.get_weights()])


def _cnn():
    return Sequential([nn.conv2d(4, 3, activation="relu"), nn.batch_norm(),
                       nn.max_pool2d(2), nn.flatten(), nn.dense(5), nn.dense(3)])


def _rnn():
    return Sequential([nn.LSTM(4, return_sequence=True),
                       nn.Bidirectional(nn.LSTM(3, return_sequence=True)),
                       nn.GRU(2, reset_after=True), nn.dense(2)])


CASES = [("cnn", _cnn, (2, 8, 8, 3)), ("lstm", _rnn, (2, 6, 3))]


def _built(make, shape, seed=0):
    mx.random.seed(seed)
    m = make()
    m(mx.zeros(shape))
    _scramble(m, seed + 1)
    return m.eval()


@pytest.mark.parametrize("make,shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mlxnote_writes_keras_reads(tmp_path, make, shape):
    m = _built(make, shape)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    km = to_keras(m, input_shape=shape[1:])
    km.compile("adam", "mse")  # a compiled Keras model, no optimizer state yet
    _scramble_keras(km)
    path = tmp_path / "w.weights.h5"
    m.save_weights(path)
    km.load_weights(str(path))
    np.testing.assert_allclose(np.asarray(km(x)), np.array(m(mx.array(x))), **TOL)
    for a, b in zip(km.get_weights(), m.get_weights(layout="keras")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_keras_writes_mlxnote_reads(tmp_path, make, shape):
    km = to_keras(_built(make, shape, seed=3), input_shape=shape[1:])
    _scramble_keras(km, seed=8)
    km.compile("adam", "mse")
    km.fit(np.zeros(shape, np.float32), np.zeros(km.output_shape[1:], np.float32)[None]
           .repeat(shape[0], 0), verbose=0)  # the file then holds optimizer/vars too
    path = tmp_path / "k.weights.h5"
    km.save_weights(str(path))
    with h5py.File(path) as f:
        assert "optimizer" in f
    m = _built(make, shape, seed=4)
    m.load_weights(path)
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(np.array(m(mx.array(x))), np.asarray(km(x)), **TOL)
    for a, b in zip(km.get_weights(), m.get_weights(layout="keras")):
        np.testing.assert_array_equal(a, b)


def test_layout_is_keras_names_and_groups(tmp_path):
    m = _built(_rnn, (2, 6, 3))
    path = tmp_path / "r.weights.h5"
    m.save_weights(path)
    names = []
    with h5py.File(path) as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert sorted(names) == sorted([
        "layers/lstm/cell/vars/0", "layers/lstm/cell/vars/1", "layers/lstm/cell/vars/2",
        *(f"layers/bidirectional/{s}_layer/cell/vars/{i}" for s in ("forward", "backward")
          for i in range(3)),
        "layers/gru/cell/vars/0", "layers/gru/cell/vars/1", "layers/gru/cell/vars/2",
        "layers/dense/vars/0", "layers/dense/vars/1"])


def test_functional_graph_and_subclass_round_trip(tmp_path):
    a, b = keras.Input((4,)), keras.Input((4,))
    h = L.Add()([L.Dense(3)(a), L.Dense(3)(b)])
    km = keras.Model([a, b], L.Dense(2)(L.Activation("tanh")(h)))
    g = from_keras(km)
    path = tmp_path / "g.weights.h5"
    km.save_weights(str(path))
    _scramble(g)
    g.load_weights(path)
    xs = [np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32) for i in (0, 1)]
    np.testing.assert_allclose(np.array(g(*map(mx.array, xs))), np.asarray(km(xs)), **TOL)
    _scramble(g, 9)
    g.save_weights(path)
    km.load_weights(str(path))
    np.testing.assert_allclose(np.asarray(km(xs)), np.array(g(*map(mx.array, xs))), **TOL)

    class CNN(Model):  # a Model subclass: its layers in order, as a Keras Sequential
        def __init__(self):
            super().__init__()
            self.conv = nn.conv2d(4, 3)
            self.flat = nn.flatten()
            self.fc = nn.dense(2)

        def __call__(self, x):
            return self.fc(self.flat(self.conv(x)))

    m = _built(CNN, (1, 5, 5, 2))
    ks = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    m.save_weights(tmp_path / "c.weights.h5")
    ks.load_weights(str(tmp_path / "c.weights.h5"))
    x = np.ones((1, 5, 5, 2), np.float32)
    np.testing.assert_allclose(np.asarray(ks(x)), np.array(m(mx.array(x))), **TOL)


def test_errors_name_the_problem_and_change_nothing(tmp_path):
    m = _built(_cnn, (2, 8, 8, 3))
    other = _built(lambda: Sequential([nn.conv2d(4, 3), nn.batch_norm(), nn.max_pool2d(2),
                                       nn.flatten(), nn.dense(6), nn.dense(3)]),
                   (2, 8, 8, 3))
    path = tmp_path / "w.weights.h5"
    other.save_weights(path)
    before = m.get_weights()
    with pytest.raises(CheckpointError, match=r"layers/dense/vars/0: shape \(36, 6\)"):
        m.load_weights(path)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError, match="overwrite=False"):
        m.save_weights(path, overwrite=False)
    with pytest.raises(ValueError, match="'.weights.h5'"):
        m.save_weights(tmp_path / "w.h5")
    odd = Sequential([nn.dense(2), nn.stochastic_depth(0.5)])
    odd(mx.zeros((1, 3)))
    with pytest.raises(TypeError, match="stochastic_depth layer"):
        odd.save_weights(tmp_path / "o.weights.h5")
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not a readable HDF5"):
        m.load_weights(tmp_path / "bad.weights.h5")
    m.save_weights(tmp_path / "m.npz")  # MLX's formats still work
    m.load_weights(str(tmp_path / "m.npz"))


@pytest.mark.parametrize("make,shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_keras_file_into_a_lazily_built_model(tmp_path, make, shape):
    """A Keras user's first move: build the mlxnote model, load the Keras file, call it."""
    km = to_keras(_built(make, shape, seed=3), input_shape=shape[1:])
    _scramble_keras(km, seed=11)
    path = tmp_path / "k.weights.h5"
    km.save_weights(str(path))
    m = make().eval()
    assert m.unbuilt()
    key = np.array(mx.random.state[0])
    m.load_weights(path)
    np.testing.assert_array_equal(np.array(mx.random.state[0]), key)
    assert not m.unbuilt()
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(np.array(m(mx.array(x))), np.asarray(km(x)), **TOL)
