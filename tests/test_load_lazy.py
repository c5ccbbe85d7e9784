"""``load()`` into a lazily built model (issue 18, part B.3): the unbuilt layers are
built for the input sizes the checkpoint's shapes imply, then loaded strictly; the model
then computes what the saved one computed. (Before: ``CNN: load needs built layers``.)"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import nn
from mlxnote.training import CheckpointError, Model
from mlxnote.training.rebuild import input_size_from


class CNN(Model):
    def __init__(self, groups=1):
        super().__init__()
        self.conv = nn.conv2d(6, 3, padding="SAME", activation="relu", groups=groups)
        self.bn = nn.batch_norm()
        self.pool = nn.max_pool2d(2)
        self.flat = nn.flatten()
        self.fc = nn.dense(5)

    def __call__(self, x):
        return self.fc(self.flat(self.pool(self.bn(self.conv(x)))))


class Seq(Model):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(7, return_sequence=True)
        self.bi = nn.Bidirectional(nn.GRU(3, return_sequence=True))  # built through its two
        self.att = nn.multihead_attention(1)
        self.norm = nn.layer_norm()
        self.out = nn.dense(2)

    def __call__(self, x):
        h = self.bi(self.lstm(x))
        return self.out(self.norm(self.att(h)[0][:, -1]))


@pytest.mark.parametrize("make,shape", [(CNN, (3, 8, 6, 4)), (lambda: CNN(groups=2),
                                                                 (3, 8, 6, 4)),
                                        (Seq, (2, 5, 3))])
def test_load_builds_an_unbuilt_model_from_the_checkpoint(tmp_path, make, shape):
    x = mx.array(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    saved = make()
    saved.compile("adam", "mse")
    saved.fit(x, mx.zeros(saved(x).shape), epochs=1, batch_size=2, verbose=0)
    saved.eval()
    want = np.array(saved(x))
    path = tmp_path / "m.safetensors"
    saved.save(path)

    fresh = make()
    assert fresh.unbuilt()
    key = np.array(mx.random.state[0])
    meta = fresh.load(path)
    np.testing.assert_array_equal(np.array(mx.random.state[0]), key)  # nothing drawn
    assert meta["epoch"] == 1 and not fresh.unbuilt()
    fresh.eval()
    np.testing.assert_array_equal(np.array(fresh(x)), want)
    for a, b in zip(fresh.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    fresh.compile("adam", "mse")  # and it trains on from there (optimizer state applied)
    fresh.fit(x, mx.zeros(want.shape), epochs=2, resume=path, batch_size=2, verbose=0)


def test_load_lazy_errors(tmp_path):
    x = mx.ones((2, 8, 6, 4))
    m = CNN()
    m(x)
    path = tmp_path / "cnn.safetensors"
    m.save(path)

    class Other(Model):  # conv of other filters: a size fits, the shapes then differ
        def __init__(self):
            super().__init__()
            self.conv = nn.conv2d(7, 3, padding="SAME")

        def __call__(self, x):
            return self.conv(x)

    with pytest.raises(CheckpointError, match="shape"):
        Other().load(path)

    class Free(Model):  # no saved weights of this path: its input size is unknown
        def __init__(self):
            super().__init__()
            self.head = nn.dense(3)

        def __call__(self, x):
            return self.head(x)

    with pytest.raises(RuntimeError, match=r"Free: load needs built layers; unbuilt: \['head'\]"):
        Free().load(path)


def test_input_size_from_solves_each_growing_axis():
    conv = nn.conv2d(4, 3, groups=2)
    assert input_size_from(conv, {"weight": (4, 3, 3, 5), "bias": (4,)}) == 10  # in / groups
    assert input_size_from(conv, {"weight": (4, 3, 3, 3), "bias": (4,)}) == 6
    assert not conv.built and not conv.parameters()  # the probes left it unbuilt
    norm = nn.layer_norm()
    assert input_size_from(norm, {"gamma": (5,), "beta": (5,)}) == 5
    assert input_size_from(norm, {"gamma": (5,), "beta": (6,)}) is None  # they disagree
    assert input_size_from(nn.dense(3), {"weight": (11, 3), "bias": (3,)}) == 11
    assert input_size_from(nn.dense(3), {"bias": (3,)}) is None  # no axis tells
