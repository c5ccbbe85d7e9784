"""get_config/from_config: every constructor argument, a rebuilt layer computes the same,
nothing is shared with the original."""

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import nn


def _same_after_copy(layer, *xs):
    clone = type(layer).from_config(layer.get_config())
    if not clone.built:
        clone(*xs)
    clone.set_weights(layer.get_weights())
    for lyr in (layer, clone):
        lyr.eval()
    return np.array_equal(np.array(layer(*xs)), np.array(clone(*xs))), clone


LAYERS = [
    (lambda: nn.dense(5, 4, weight_initializer="normal", activation="tanh", name="d"),
     (2, 4)),
    (lambda: nn.LSTM(3, return_sequence=True, recurrent_activation="tanh"), (2, 4, 4)),
    (lambda: nn.Bidirectional(nn.GRU(3, 4, reset_after=True), merge_mode="sum"), (2, 4, 4)),
    (lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                                   norm=nn.layer_norm()), (2, 3, 8)),
    (lambda: nn.group_norm(2, mask=np.array([1.0, 0.0, 1.0, 1.0])), (2, 3, 4)),
    (lambda: nn.conv2d(4, 3, strides=2, padding="SAME", input_size=2), (1, 5, 5, 2)),
]


@pytest.mark.parametrize("make,shape", LAYERS)
def test_from_config_of_get_config_computes_the_same(make, shape):
    layer = make()
    x = mx.array(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    layer(x)
    same, clone = _same_after_copy(layer, x)
    assert same
    # nothing shared: new weights in the clone leave the original as it was
    before = [np.array(w) for w in layer.get_weights()]
    clone.set_weights([np.asarray(w) + 1.0 for w in clone.get_weights()])
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, layer.get_weights()))


def test_get_config_has_every_argument_and_the_inferred_size():
    layer = nn.dense(3, weight_initializer="ones", dtype="bfloat16")
    cfg = layer.get_config()
    assert cfg["input_size"] is None and cfg["weight_initializer"] == "ones"
    assert cfg["dtype"] == "bfloat16" and cfg["trainable"] is True and cfg["name"] is None
    layer(mx.zeros((1, 7)))
    assert layer.get_config()["input_size"] == 7


def test_get_config_refuses_to_guess_an_unrecorded_argument():
    class Odd(nn.dense):
        def __init__(self, output_size, secret=1):
            super().__init__(output_size)

    with pytest.raises(NotImplementedError, match="'secret'"):
        Odd(3).get_config()
