"""Note's conveniences (issue 14, item 4): the pooling layers, flatten and Layers.

The contracts run through tests/layer_contract.py; the documented examples at their
documented shapes; the pooling kernel's separable path against its plain N-d oracle
(values and gradients, ties included), TensorFlow's tie and padding rules; Note's example
model in a Layers against the same Keras Sequential.
"""

from __future__ import annotations

import itertools

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from crash_cases import assert_refused
from layer_contract import Contract, check_layer, contract_params

from mlxnote import nn
from mlxnote._validation import owned_by
from mlxnote.kernels import pool as P
from mlxnote.nn import Layer

POOLS = [f"{op}_pool{n}d" for op in ("max", "avg") for n in (1, 2, 3)]
SHAPES = {1: (2, 7, 3), 2: (2, 5, 6, 3), 3: (2, 4, 5, 3, 2)}


def _np(a):
    return np.array(a.astype(mx.float32) if a.dtype != mx.float32 else a, dtype=np.float64)


def _pool_contract(name):
    n = int(name[-2])
    return Contract(getattr(nn, name), dict(kernel_size=2, strides=2, padding="SAME"),
                    SHAPES[n], weights={},
                    bad_args=[(dict(kernel_size=0), ValueError, "kernel_size"),
                              (dict(kernel_size="2"), TypeError, "kernel_size"),
                              (dict(strides=[1] * (n + 1)), TypeError, "strides"),
                              (dict(padding="full"), ValueError, "padding"),
                              (dict(padding=-1), ValueError, "padding"),
                              (dict(data_format="NCWH"), ValueError, "data_format"),
                              (dict(data_format=1), TypeError, "data_format")],
                    bad_inputs=[(SHAPES[n][:-1], ValueError, "data"),
                                ((2, *[0] * n, 3), ValueError, "data")])


def _layers(dtype="float32"):
    """Note's example model, small: conv -> max_pool -> flatten -> dense, with a residual
    add (save_data/use_data) and an activation function in between."""
    with owned_by("Layers", (Layer,)):
        net = nn.Layers()
        net.add(nn.conv2d(4, 3, 2, padding="SAME", dtype=dtype), save_data=True)
        net.add(mx.tanh)
        net.add(lambda x, skip: x + skip, use_data=True)
        net.add([nn.max_pool2d(), nn.flatten()])
        net.add(nn.dense(3, 4 * 3 * 3, dtype=dtype))
    return net


CONTRACTS = [_pool_contract(name) for name in POOLS] + [
    Contract(nn.max_pool2d, dict(kernel_size=[1, 1, 3, 3], strides=1, padding=1,
                                 data_format="NCHW"), (2, 3, 5, 6), id="max_pool2d-NCHW",
             weights={}, bad_inputs=[((2, 3, 5), ValueError, "data")]),
    Contract(nn.avg_pool3d, dict(kernel_size=(3, 2, 2), strides=(1, 2, 1), padding="VALID",
                                 data_format="channels_first"), (2, 2, 4, 5, 3),
             id="avg_pool3d-NCDHW", weights={},
             bad_inputs=[((2, 2, 2, 5, 3), ValueError, "data")]),
    Contract(nn.flatten, dict(), (2, 3, 4, 5), weights={},
             bad_inputs=[((), ValueError, "data")]),
    Contract(_layers, dict(), (2, 6, 6, 2), id="Layers",
             weights={"layers.0.weight": (3, 3, 2, 4), "layers.0.bias": (4,),
                      "layers.3.weight": (36, 3), "layers.3.bias": (3,)},
             bad_inputs=[((2, 6, 6, 3), ValueError, "data")]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- documented examples --------------------------------------------------------------------
def test_documented_examples():
    x = mx.random.normal
    assert nn.avg_pool1d(kernel_size=2, strides=2, padding="SAME")(x((32, 100, 64))).shape \
        == (32, 50, 64)
    assert nn.avg_pool2d(kernel_size=(2, 2), strides=(2, 2), padding="SAME")(
        x((32, 64, 64, 3))).shape == (32, 32, 32, 3)
    assert nn.avg_pool3d(kernel_size=(2, 2, 2), strides=(2, 2, 2), padding="SAME")(
        x((16, 32, 32, 32, 3))).shape == (16, 16, 16, 16, 3)
    assert nn.max_pool1d(kernel_size=2, strides=2, padding="VALID")(x((2, 10, 1))).shape \
        == (2, 5, 1)
    assert nn.max_pool2d(kernel_size=2, strides=2, padding="VALID")(x((2, 10, 10, 3))).shape \
        == (2, 5, 5, 3)
    assert nn.max_pool3d(kernel_size=2, strides=2, padding="VALID")(
        x((2, 10, 10, 10, 3))).shape == (2, 5, 5, 5, 3)
    assert nn.flatten()(x((8, 32, 32, 64))).shape == (8, 65536)
    # Note's ResNet stem: max_pool2d(kernel_size=[3, 3], strides=[2, 2], padding='SAME')
    assert nn.max_pool2d(kernel_size=[3, 3], strides=[2, 2], padding="SAME")(
        x((1, 112, 112, 8))).shape == (1, 56, 56, 8)


def test_note_example_model_in_layers():
    """Note's docs_example model (conv, max_pool2d(), conv, max_pool2d(), flatten, dense,
    dense), with its defaults: 2x2 windows, strides = window, no padding."""
    m = nn.Layers()
    m.add(nn.conv2d(32, 3, activation="relu"))
    m.add(nn.max_pool2d())
    m.add(nn.conv2d(64, 3, activation="relu"))
    m.add(nn.max_pool2d())
    m.add(nn.flatten())
    m.add(nn.dense(64, activation="relu"))
    m.add(nn.dense(10))
    assert m.output_size == 10 and m.param == []  # lazy layers build on the first call
    assert m(mx.zeros((2, 28, 28, 1))).shape == (2, 10)
    assert len(m.param) == 8 and m.param_names[0] == "layers.0.weight"
    assert m.weight_names[-2:] == ["layers.6.weight", "layers.6.bias"]


# -- the kernel ------------------------------------------------------------------------------
CONFIGS = [  # (n, window, strides, SAME?)
    (1, [3], [2], False), (1, [2], [3], True), (2, [2, 3], [2, 1], True),
    (2, [3, 3], [1, 1], False), (3, [2, 2, 3], [1, 2, 2], True), (3, [2, 1, 2], [2, 1, 1], False),
]


@pytest.mark.parametrize("op", P.OPS)
@pytest.mark.parametrize("n,window,strides,same", CONFIGS)
@pytest.mark.parametrize("ties", [False, True])
def test_separable_pool_matches_the_plain_oracle(op, n, window, strides, same, ties):
    """Values and input gradients of the separable passes against the N-d oracle (argmax
    over every window at once), with ties (integer values) and without."""
    rng = np.random.default_rng(n)
    shape = (2, *[5, 6, 4][:n], 3)
    a = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    x = mx.array(a.astype(np.float32))
    axes = list(range(1, n + 1))
    pads = [(0, 0)] * n
    if same:
        from mlxnote.nn.conv_core import same_padding

        pads = [same_padding(shape[1 + i], window[i], strides[i], 1) for i in range(n)]
    ct = mx.array(rng.standard_normal(P.pool(x, op, window, strides, pads, axes).shape)
                  .astype(np.float32))

    def f(x, separable):
        return (P.pool(x, op, window, strides, pads, axes, separable) * ct).sum()

    got = mx.value_and_grad(lambda x: f(x, True))(x)
    ref = mx.value_and_grad(lambda x: f(x, False))(x)
    np.testing.assert_allclose(_np(got[0]), _np(ref[0]), rtol=1e-5)
    np.testing.assert_allclose(_np(got[1]), _np(ref[1]), rtol=1e-5, atol=1e-6)


def test_max_gradient_goes_to_the_first_maximum():
    """TensorFlow's MaxPoolGrad rule: a tie sends the whole gradient to the first maximum
    in row-major order (MLX's own max splits it)."""
    x = np.zeros((1, 3, 3, 1), np.float32)
    x[0, 0, 2, 0] = x[0, 1, 0, 0] = x[0, 2, 1, 0] = 3.0
    g = mx.grad(lambda v: nn.max_pool2d(3, 1, "VALID")(v).sum())(mx.array(x))
    want = np.zeros_like(x)
    want[0, 0, 2, 0] = 1.0
    np.testing.assert_array_equal(np.array(g), want)
    for sep in (True, False):
        def f(v, sep=sep):
            return P.pool(v, "max", [2, 2, 2], [2, 2, 2], [(0, 0)] * 3, [1, 2, 3], sep).sum()

        g3 = mx.grad(f)(mx.ones((1, 2, 2, 2, 1)))
        assert float(g3.sum()) == 1.0 and float(g3[0, 0, 0, 0, 0]) == 1.0


def test_padding_rules():
    """SAME pads are never a maximum and are not counted; Note's zero padding is."""
    x = -mx.ones((1, 3, 3, 1))
    assert float(nn.max_pool2d(2, 2, "SAME")(x).max()) == -1.0
    assert float(nn.max_pool2d(2, 2, padding=1)(x).max()) == 0.0
    ones = mx.ones((1, 3, 3, 1))
    np.testing.assert_array_equal(np.array(nn.avg_pool2d(2, 2, "SAME")(ones)), 1.0)
    np.testing.assert_allclose(np.array(nn.avg_pool2d(2, 2, padding=1)(ones))[0, ..., 0],
                               [[0.25, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(np.array(nn.avg_pool1d(3, 1, padding=(2, 0))(
        mx.ones((1, 2, 1))))[0, :, 0], [1 / 3, 2 / 3])


def test_forms_data_formats_and_dtypes():
    x = mx.random.normal((2, 3, 6, 5))  # NCHW
    last = nn.max_pool2d((3, 2), (2, 1), "SAME")(mx.moveaxis(x, 1, -1))
    first = nn.max_pool2d([1, 1, 3, 2], [1, 1, 2, 1], "same", data_format="NCHW")(x)
    np.testing.assert_array_equal(np.array(mx.moveaxis(first, 1, -1)), np.array(last))
    assert nn.max_pool2d([3], 2).kernel_size == (3, 3) and nn.avg_pool1d(4).strides == (4,)
    for dt in (mx.float16, mx.bfloat16):
        assert nn.avg_pool2d(2)(x.astype(dt)).dtype == dt
    assert nn.max_pool1d()(mx.array([[[1], [2], [3], [4]]])).dtype == mx.float32  # ints


def test_empty_and_huge():
    assert nn.max_pool2d(2)(mx.zeros((0, 4, 4, 3))).shape == (0, 2, 2, 3)
    assert nn.avg_pool1d(3, 2, "SAME")(mx.zeros((0, 5, 2))).shape == (0, 3, 2)
    assert nn.flatten()(mx.zeros((0, 3, 4))).shape == (0, 12)
    g = mx.grad(lambda v: nn.avg_pool2d(2)(v).sum())(mx.zeros((0, 4, 4, 1)))
    assert g.shape == (0, 4, 4, 1)
    with pytest.raises(ValueError, match=r"^max_pool2d: argument 'padding' got 2147483648"):
        nn.max_pool2d(2, padding=2**31)
    assert_refused([
        ("max_pool2d padded 10^9", "mx.eval(nn.max_pool2d(2, padding=10**9)("
         "mx.zeros((1, 1, 1, 1))))", "max_pool2d: argument 'padding' got "),
        ("avg_pool3d output", "mx.eval(nn.avg_pool3d(1)(mx.broadcast_to(mx.zeros((1, 1, 1, "
         "1, 1)), (2**20, 2**10, 2**10, 1, 1))))", "avg_pool3d: argument 'data' got "),
        ("flatten 2^31", "nn.flatten()(mx.broadcast_to(mx.zeros((1, 1, 1)), (1, 2**16, "
         "2**16)))", "flatten: argument 'data' got "),
    ])


# -- Layers ------------------------------------------------------------------------------------
def test_layers_modes_flags_and_errors():
    mx.random.seed(0)
    net = nn.Layers()
    net.add(nn.dense(8, 4))
    net.add(nn.dropout(0.5))
    net.add(mnn.Dropout(0.5))  # a plain MLX module follows the mode only
    x = mx.ones((4, 4))
    net.eval()
    ref = np.array(net.layer[0](x))
    np.testing.assert_array_equal(np.array(net(x)), ref)
    net.train()
    assert not np.array_equal(np.array(net(x)), ref)
    assert net.layer[1].training and net.layer[2].training
    net2 = nn.Layers()
    net2.add([nn.dense(8, 4), nn.dropout(0.5)])
    np.testing.assert_array_equal(np.array(net2(x, train_flag=False)),
                                  np.array(net2.layer[0](x)))
    net2.eval()
    assert not np.array_equal(np.array(net2(x, training=True)), np.array(net2.layer[0](x)))
    with pytest.raises(TypeError, match=r"^Layers: argument 'layer' got a int"):
        net2.add(3)
    with pytest.raises(ValueError, match=r"^Layers: argument 'use_data' got True"):
        nn.Layers().add(nn.flatten(), use_data=True)
    with pytest.raises(ValueError, match=r"^Layers: argument 'save_data' got True"):
        nn.Layers().add([nn.flatten()], save_data=True)
    with pytest.raises(TypeError, match=r"^Layers: argument 'train_flag' got 1"):
        net2(x, train_flag=1)
    assert nn.Layers()(x) is x


def test_layers_residual_order():
    """use_data takes the oldest kept output: layer(data, kept)."""
    net = nn.Layers()
    net.add(lambda x: x + 1, save_data=True)   # kept: a = x + 1
    net.add(lambda x: x * 10, save_data=True)  # kept: b = 10 (x + 1)
    net.add(lambda x, a: x - a, use_data=True)  # 10 (x + 1) - (x + 1) = 9 (x + 1)
    net.add(lambda x, b: x + b, use_data=True)  # + 10 (x + 1) = 19 (x + 1)
    assert float(net(mx.array(1.0))) == 38.0 and float(net(mx.array(0.0))) == 19.0


def test_layers_matches_keras_sequential():
    keras = pytest.importorskip("keras")
    mx.random.seed(1)
    net = nn.Layers()
    for layer in (nn.conv2d(4, 3, 2, activation="relu"), nn.max_pool2d(2, 2, "SAME"),
                  nn.avg_pool2d(2, 1), nn.flatten(), nn.dense(5, 16)):
        net.add(layer)
    ref = keras.Sequential([keras.Input((7, 7, 2)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.MaxPooling2D(2, 2, "same"),
                            keras.layers.AveragePooling2D(2, 1), keras.layers.Flatten(),
                            keras.layers.Dense(5)])
    ref.set_weights(net.get_weights())  # Note's conv and dense layouts are Keras's
    x = np.random.default_rng(0).standard_normal((3, 7, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(np.array(net(mx.array(x))), np.asarray(ref(x)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("name", POOLS)
def test_every_padding_and_stride_gives_tf_output_sizes(name):
    n = int(name[-2])
    layer_cls = getattr(nn, name)
    for L, k, s, pad in itertools.product((4, 5), (1, 2, 3), (1, 2, 3), ("SAME", "VALID", 1)):
        shape = (1, *[L] * n, 1)
        if pad == "VALID" and L < k:
            continue
        out = layer_cls(k, s, pad)(mx.zeros(shape)).shape[1]
        padded = L + 2 if pad == 1 else L
        want = -(-L // s) if pad == "SAME" else (padded - k) // s + 1
        assert out == want, (L, k, s, pad)
