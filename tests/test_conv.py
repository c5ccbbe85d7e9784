"""The conv family: documented examples, the layer contract (tests/layer_contract.py), and
every formulation of the conv entry point against its oracle ``mx.conv_general`` (three
dtypes, gradients)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params, inputs, make

from mlxnote import nn
from mlxnote.kernels import conv as kconv
from mlxnote.kernels import extension


# -- documented examples ------------------------------------------------------------------
def test_documented_examples():
    r = mx.random.normal
    cases = [
        (nn.conv1d(filters=32, kernel_size=3, input_size=64, strides=1, padding="SAME",
                   activation="relu"), (10, 100, 64), (10, 100, 32)),
        (nn.conv1d_transpose(filters=32, kernel_size=3, input_size=64, strides=[1],
                             padding="SAME", activation="relu"), (10, 100, 64), (10, 100, 32)),
        (nn.conv2d(filters=32, kernel_size=3, input_size=64, strides=2, padding="SAME",
                   activation="relu"), (10, 128, 128, 64), (10, 64, 64, 32)),
        # decisions.md item 10: Keras's 128, the documented "depends on strides and padding"
        (nn.conv2d_transpose(filters=32, kernel_size=3, input_size=64, strides=2,
                             padding="SAME", activation="relu"), (10, 64, 64, 64),
         (10, 128, 128, 32)),
        (nn.conv3d(filters=16, kernel_size=[2, 2, 2], input_size=10, activation="tanh"),
         (32, 10, 10, 10, 10), (32, 9, 9, 9, 16)),
        (nn.conv3d_transpose(filters=16, kernel_size=[5, 5, 5], input_size=100,
                             activation="relu"), (32, 24, 24, 24, 100), (32, 28, 28, 28, 16)),
        (nn.depthwise_conv1d(kernel_size=3, depth_multiplier=2, input_size=64,
                             activation="relu"), (10, 100, 64), (10, 98, 128)),
        (nn.depthwise_conv2d(kernel_size=[3, 3], depth_multiplier=2, input_size=3,
                             activation="softmax"), (64, 28, 28, 3), (64, 26, 26, 6)),
        (nn.separable_conv1d(filters=64, kernel_size=5, depth_multiplier=2, input_size=16),
         (32, 100, 16), (32, 96, 64)),
        (nn.separable_conv2d(filters=64, kernel_size=[5, 5], depth_multiplier=2,
                             input_size=3), (32, 28, 28, 3), (32, 24, 24, 64)),
    ]
    for layer, shape, expect in cases:
        x = r(shape)
        y = layer(x)  # the documented call, at its documented size
        assert y.shape == expect, (layer.name, y.shape, expect)
        if layer.name == "conv3d_transpose":  # 281 GFLOP: the slow test below runs it
            y = layer(x[:1])
        mx.eval(y)
        assert bool(mx.all(mx.isfinite(y))), layer.name


DOCUMENTED_CONV3D_TRANSPOSE = """
import resource
import mlxnote
import mlx.core as mx
from mlxnote import nn
layer = nn.conv3d_transpose(filters=16, kernel_size=[5, 5, 5], input_size=100,
                            activation="relu")
y = layer(mx.random.normal((32, 24, 24, 24, 100)))
mx.eval(y)
assert y.shape == (32, 28, 28, 28, 16) and bool(mx.all(mx.isfinite(y)))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["1", "0"])
def test_documented_conv3d_transpose_runs_in_bounded_memory(ext):
    """The documented example at its size (input 32x24x24x24x100): MLX's own CPU conv
    asked for 35 GB here and the process died; the column buffers are now bounded. Peak
    memory of the whole process (TensorFlow not imported) must stay near 2 GiB."""
    r = subprocess.run([sys.executable, "-c", DOCUMENTED_CONV3D_TRANSPOSE], text=True,
                       capture_output=True, timeout=600, env={**os.environ, "MLXNOTE_EXT": ext})
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split()[-1]) < 2.5, f"peak RSS {r.stdout.split()[-1]} GiB"


# -- the entry point against its oracle --------------------------------------------------
ORACLE = [  # (method, x shape, w shape, kwargs)
    ("gemm", (2, 9, 4), (5, 3, 4), dict(strides=2, padding=[(1, 2)], dilations=1)),
    ("gemm", (2, 7, 6, 4), (6, 3, 2, 2), dict(strides=(1, 2), padding=[(1, 1), (0, 1)],
                                              dilations=(2, 1), groups=2)),
    ("gemm", (2, 5, 4, 6, 4), (6, 2, 3, 2, 2), dict(strides=(2, 1, 3), padding=1, groups=2)),
    ("gemm", (2, 7, 6, 4), (5, 3, 3, 4), dict(padding=1, flip=True)),
    ("mlx+gemm", (2, 7, 6, 4), (5, 3, 2, 4), dict(strides=(2, 3), padding=[(0, 1), (1, 0)])),
    ("mlx+gemm", (2, 5, 4, 6, 4), (6, 2, 3, 2, 2), dict(strides=2, padding=1, groups=2)),
    ("mlx+gemmw", (2, 7, 6, 4), (5, 3, 2, 4), dict(padding=[(1, 1), (0, 1)])),
    ("mlx+gemmw", (2, 9, 4), (6, 3, 2), dict(padding=[(2, 0)], groups=2)),
    ("col2im", (2, 5, 4, 3), (4, 3, 2, 3), dict(input_dilation=2, padding=[(2, 2), (1, 2)],
                                                flip=True)),
    ("col2im", (2, 6, 3), (4, 4, 3), dict(input_dilation=3, padding=[(1, 3)], dilations=2,
                                          flip=True)),
    ("col2im", (2, 3, 4, 3, 3), (2, 2, 3, 2, 3), dict(input_dilation=(2, 1, 3),
                                                      padding=[(1, 1), (2, 2), (0, 3)])),
    ("shift", (2, 7, 6, 4), (8, 3, 3, 1), dict(strides=2, padding=1, groups=4)),
    ("shift", (2, 9, 4), (4, 2, 1), dict(dilations=3, padding=[(2, 1)], groups=4, flip=True)),
    ("ext", (2, 7, 6, 4), (8, 3, 3, 1), dict(strides=2, padding=1, groups=4)),
    ("ext", (2, 9, 4), (4, 2, 1), dict(dilations=3, padding=[(2, 1)], groups=4, flip=True)),
    ("gemm", (2, 6, 5, 4), (5, 3, 2, 4), dict(padding=[(2, 1), (0, 1)], flip=True)),
    ("col2im", (2, 6, 5, 4), (5, 3, 2, 4), dict(padding=[(2, 2), (1, 1)], flip=False)),
    ("mlx-fast", (2, 9, 4), (8, 3, 1), dict(padding=[(1, 1)], groups=4)),
    ("mlx-fast", (2, 8, 8, 4), (12, 3, 3, 1), dict(strides=2, padding=[(0, 1), (1, 1)],
                                                  groups=4)),
    ("mlx-fast", (2, 5, 4, 6, 4), (6, 2, 3, 2, 2), dict(padding=1, groups=2)),
]
TOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 8e-2}


@pytest.mark.parametrize("ext", [True, False], ids=["ext", "noext"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("method,xs,ws,kw", ORACLE)
def test_formulation_matches_conv_general(method, xs, ws, kw, dtype, ext):
    """Each formulation, with the C++ kernels it uses (im2col, col2im, depthwise) and with
    the pure-MLX fallback, against mx.conv_general."""
    if method == "ext" and (not ext or extension.get() is None):
        pytest.skip("the 'ext' formulation needs the extension")
    with extension.enabled(ext):
        _formulation_matches(method, xs, ws, kw, dtype)


def _formulation_matches(method, xs, ws, kw, dtype):
    dt = getattr(mx, dtype)
    mx.random.seed(3)
    x = mx.random.normal(xs).astype(dt)
    w = (0.5 * mx.random.normal(ws)).astype(dt)
    b = mx.random.normal((ws[0],)).astype(dt)
    ct = mx.random.normal(kconv.conv(x, w, **kw, method="mlx").shape).astype(dt)

    def loss(method):
        return lambda x, w, b: mx.sum(kconv.conv(x, w, bias=b, **kw, method=method) * ct)

    ours = kconv.conv(x, w, bias=b, **kw, method=method)
    ref = kconv.conv(x, w, bias=b, **kw, method="mlx")
    assert ours.dtype == dt and ours.shape == ref.shape
    g_ours = mx.grad(loss(method), argnums=(0, 1, 2))(x, w, b)
    g_ref = mx.grad(loss("mlx"), argnums=(0, 1, 2))(x, w, b)
    for a, r in [(ours, ref), *zip(g_ours, g_ref)]:
        a, r = np.array(a.astype(mx.float32)), np.array(r.astype(mx.float32))
        assert a.shape == r.shape
        scale = max(1.0, float(np.abs(r).max()))
        assert float(np.abs(a - r).max()) <= TOL[dtype] * scale


def test_choose_per_device(monkeypatch):
    depthwise = "ext" if extension.get() is not None else "shift"  # the C++ kernel if built
    with extension.onednn_enabled(False):  # with oneDNN: 'onednn' (test_dnnl_conv)
        assert kconv.choose((2, 8, 8, 4), (4, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1)) == depthwise
    with extension.enabled(False):
        assert kconv.choose((2, 8, 8, 4), (4, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1)) == "shift"
    with extension.onednn_enabled(False):  # the rules without oneDNN (test_dnnl_conv: with)
        assert kconv.choose((2, 8, 8, 4), (5, 3, 3, 4), (1, 1), (1, 1), 1, (1, 1)) == "mlx+gemmw"
        assert kconv.choose((2, 8, 8, 4), (5, 1, 1, 4), (1, 1), (1, 1), 1, (1, 1)) == "gemm"
        assert kconv.choose((2, 8, 8, 4), (5, 3, 3, 4), (2, 2), (1, 1), 1, (1, 1)) == "mlx+gemm"
        assert kconv.choose((2, 8, 8, 4), (5, 3, 3, 4), (1, 1), (2, 1), 1, (1, 1)) == "gemm"
        assert kconv.choose((2, 8, 8, 4), (6, 3, 3, 2), (1, 1), (1, 1), 2, (1, 1)) == "gemm"
    assert kconv.choose((2, 8, 8, 4), (5, 3, 3, 4), (1, 1), (1, 1), 1, (2, 2)) == "col2im"
    monkeypatch.setattr(kconv, "on_cpu", lambda: False)
    assert kconv.choose((2, 8, 8, 4), (5, 3, 3, 4), (2, 2), (1, 1), 1, (1, 1)) == "mlx-fast"


def test_conv_general_dilated_gradient_workaround():
    """mx.conv_general's input gradient has the wrong shape when an input-dilated conv is
    padded beyond the kernel's reach; the 'mlx' path pads less and zero-extends."""
    x = mx.random.normal((2, 7, 3))
    w = mx.random.normal((5, 1, 3))
    kw = dict(input_dilation=3, padding=[(2, 0)], flip=True)
    g = mx.grad(lambda x: kconv.conv(x, w, **kw, method="mlx").sum())(x)
    assert g.shape == x.shape
    g2 = mx.grad(lambda x: kconv.conv(x, w, **kw, method="col2im").sum())(x)
    assert np.allclose(np.array(g), np.array(g2), atol=1e-5)


def test_groups_3d():
    x = mx.random.normal((1, 4, 4, 4, 6))
    layer = nn.conv3d(4, 3, groups=2, padding="SAME")
    y = layer(x)
    assert y.shape == (1, 4, 4, 4, 4) and layer.get_weights()[0].shape == (3, 3, 3, 3, 4)
    w = layer.weight  # (4, 3, 3, 3, 3): outputs 0-1 see inputs 0-2, outputs 2-3 inputs 3-5
    y0 = mx.conv_general(x[..., :3], w[:2], padding=1)
    assert np.allclose(np.array(y[..., :2]), np.array(y0 + layer.bias[:2]), atol=1e-5)


# -- the layer contract (tests/layer_contract.py) ------------------------------------------
WB = ("weight", "bias")
LAZY = dict(lazy=dict(input_size=None))
CONTRACTS = [
    Contract(nn.conv1d, dict(filters=4, kernel_size=3, input_size=3, strides=2, padding="SAME",
                             activation="tanh"), (2, 9, 3), **LAZY,
             weights=dict(zip(WB, [(3, 3, 4), (4,)])),
             bad_args=[(dict(filters=0), ValueError, "filters"),
                       (dict(kernel_size=[3, 3]), TypeError, "kernel_size"),
                       (dict(data_format="NCHW"), ValueError, "data_format"),
                       (dict(groups=2), ValueError, "groups")],
             bad_inputs=[((2, 9, 5), ValueError, "data"), ((9, 3), ValueError, "data")]),
    Contract(nn.conv2d, dict(filters=4, kernel_size=[3, 2], input_size=3, padding=[1, (0, 1)]),
             (2, 6, 5, 3), **LAZY, weights=dict(zip(WB, [(3, 2, 3, 4), (4,)])),
             bad_args=[(dict(filters=0), ValueError, "filters"),
                       (dict(filters=4.0), TypeError, "filters"),
                       (dict(kernel_size=[3, 3, 3]), TypeError, "kernel_size"),
                       (dict(padding="FULL"), ValueError, "padding"),
                       (dict(padding=-1), ValueError, "padding"),
                       (dict(data_format="NCWH"), ValueError, "data_format"),
                       (dict(strides=0), ValueError, "strides"),
                       (dict(filters=5, groups=2), ValueError, "groups"),
                       (dict(groups=2), ValueError, "groups"),
                       (dict(use_bias="yes"), TypeError, "use_bias")],
             bad_inputs=[((2, 6, 5, 5), ValueError, "data"), ((6, 5, 3), ValueError, "data")]),
    Contract(nn.conv3d, dict(filters=4, kernel_size=2, input_size=3, dilations=[1, 2, 1]),
             (2, 4, 4, 4, 3), **LAZY, weights=dict(zip(WB, [(2, 2, 2, 3, 4), (4,)])),
             bad_args=[(dict(filters=-1), ValueError, "filters"),
                       (dict(dilations=[1, 2]), TypeError, "dilations")],
             bad_inputs=[((2, 4, 4, 4, 5), ValueError, "data"),
                         ((4, 4, 4, 3), ValueError, "data")]),
    Contract(nn.conv1d_transpose, dict(filters=4, kernel_size=3, input_size=3, strides=2),
             (2, 5, 3), **LAZY, weights=dict(zip(WB, [(3, 4, 3), (4,)])),
             bad_args=[(dict(padding=[1]), TypeError, "padding"),
                       (dict(output_padding=2), ValueError, "output_padding")],
             bad_inputs=[((2, 5, 4), ValueError, "data"), ((2, 5), ValueError, "data")]),
    Contract(nn.conv2d_transpose, dict(filters=4, kernel_size=3, input_size=3, strides=2,
                                       padding="SAME"), (2, 3, 4, 3), **LAZY,
             weights=dict(zip(WB, [(3, 3, 4, 3), (4,)])),
             bad_args=[(dict(padding=1), TypeError, "padding"),
                       (dict(output_padding=2), ValueError, "output_padding"),
                       (dict(dilations=2), ValueError, "dilations")],
             bad_inputs=[((2, 3, 4, 5), ValueError, "data"), ((2, 3, 4), ValueError, "data")]),
    Contract(nn.conv3d_transpose, dict(filters=4, kernel_size=2, input_size=3), (2, 3, 3, 3, 3),
             **LAZY, weights=dict(zip(WB, [(2, 2, 2, 4, 3), (4,)])),
             bad_args=[(dict(output_padding=1), ValueError, "output_padding")],
             bad_inputs=[((2, 3, 3, 3, 2), ValueError, "data"),
                         ((2, 3, 3, 3), ValueError, "data")]),
    Contract(nn.depthwise_conv1d, dict(kernel_size=3, depth_multiplier=2, input_size=3),
             (2, 9, 3), **LAZY,
             weights={"depthwise_kernel": (3, 3, 2), "bias": (6,)},
             bad_args=[(dict(depth_multiplier=0), ValueError, "depth_multiplier")],
             bad_inputs=[((2, 9, 4), ValueError, "data"), ((2, 9, 3, 1), ValueError, "data")]),
    Contract(nn.depthwise_conv2d, dict(kernel_size=3, depth_multiplier=2, input_size=3,
                                       strides=2, padding="SAME"), (2, 6, 5, 3), **LAZY,
             weights=dict(zip(WB, [(3, 3, 3, 2), (6,)])),
             bad_args=[(dict(depth_multiplier=0), ValueError, "depth_multiplier"),
                       (dict(depth_multiplier=1.5), TypeError, "depth_multiplier")],
             bad_inputs=[((2, 6, 5, 4), ValueError, "data"), ((2, 6, 5), ValueError, "data")]),
    Contract(nn.separable_conv1d, dict(filters=4, kernel_size=3, depth_multiplier=2,
                                       input_size=3), (2, 9, 3), **LAZY,
             weights={"depthwise_kernel": (3, 3, 2), "pointwise_kernel": (1, 6, 4),
                      "bias": (4,)},
             bad_args=[(dict(filters=0), ValueError, "filters"),
                       (dict(strides=[2, 2, 2]), TypeError, "strides")],
             bad_inputs=[((2, 9, 2), ValueError, "data"), ((2, 9), ValueError, "data")]),
    Contract(nn.separable_conv2d, dict(filters=4, kernel_size=3, depth_multiplier=2,
                                       input_size=3, activation="relu"), (2, 6, 5, 3), **LAZY,
             weights={"depthwise_kernel": (3, 3, 3, 2), "pointwise_kernel": (1, 1, 6, 4),
                      "bias": (4,)},
             bad_args=[(dict(dilations=[1, 2, 3]), TypeError, "dilations")],
             bad_inputs=[((2, 6, 5, 4), ValueError, "data"), ((2, 6, 5), ValueError, "data")]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


@pytest.mark.parametrize("c", CONTRACTS, ids=[c.id for c in CONTRACTS])
def test_stored_layout_and_channels_first(c):
    """Kernels are stored as MLX consumes them, (out, *kernel, in/groups); a channels-first
    layer built from axis 1 computes the same numbers."""
    mx.random.seed(0)
    layer = make(c)
    x = inputs(c)[0]
    y = layer(x)
    note = layer.get_weights()[0]
    stored = layer.param[0]
    assert stored.shape[0] == (4 if layer.kind in ("conv", "transpose") else 6)
    assert stored.shape[1:-1] == tuple(note.shape[:-2])
    n = x.ndim - 2
    cf = make(c, input_size=None, data_format={1: "NCW", 2: "NCHW", 3: "NCDHW"}[n])
    cf(mx.moveaxis(x, -1, 1))
    cf.set_weights(layer.get_weights())
    assert cf.input_size == 3
    np.testing.assert_allclose(np.array(mx.moveaxis(cf(mx.moveaxis(x, -1, 1)), 1, -1)),
                               np.array(y), rtol=1e-5, atol=1e-5)


def test_depthwise_channel_order_and_numpy():
    """Output channel c*dm + m (TF's order), against a direct NumPy loop."""
    layer = nn.depthwise_conv1d(2, depth_multiplier=3, input_size=2, bias_initializer="normal")
    x = np.random.default_rng(1).standard_normal((1, 5, 2)).astype(np.float32)
    k, b = layer.get_weights()  # k [2, 2, 3]
    y = np.array(layer(x))
    expect = np.zeros((1, 4, 6), np.float32)
    for t in range(4):
        for c in range(2):
            for m in range(3):
                expect[0, t, c * 3 + m] = sum(x[0, t + i, c] * k[i, c, m] for i in range(2))
    np.testing.assert_allclose(y, expect + b, rtol=1e-5, atol=1e-5)


def test_same_padding_is_tensorflows_asymmetric_rule():
    # L=6, k=2, s=2: out 3, no padding; L=7, k=4, s=2: out 4, total 3 -> (1, 2)
    assert nn.conv.same_padding(6, 2, 2, 1) == (0, 0)
    assert nn.conv.same_padding(7, 4, 2, 1) == (1, 2)
    x = mx.arange(7, dtype=mx.float32).reshape(1, 7, 1)
    layer = nn.conv1d(1, 4, 1, strides=2, padding="same", use_bias=False)
    layer.set_weights([np.ones((4, 1, 1))])
    # windows start at -1: [0+1+2], [1..4], [3..6], [5+6]
    np.testing.assert_allclose(np.array(layer(x)).ravel(), [3, 10, 18, 11])


def test_transpose_output_lengths_follow_keras():
    f = nn.conv.transpose_length
    assert f(64, 3, 2, 1, "SAME", None) == 128
    assert f(5, 3, 2, 1, "VALID", None) == 11
    assert f(5, 1, 3, 1, "VALID", None) == 15  # Keras: L*s + max(k - s, 0)
    assert f(5, 3, 2, 1, "SAME", 0) == 9 and f(5, 3, 2, 1, "VALID", 1) == 12
    y = nn.conv1d_transpose(2, 3, 4, strides=2, output_padding=1)(mx.zeros((1, 5, 4)))
    assert y.shape == (1, 12, 2)


def test_call_time_dilations_override():
    layer = nn.conv1d(2, 3, 1, dilations=1)
    x = mx.random.normal((1, 12, 1))
    assert layer(x).shape == (1, 10, 2)
    assert layer(x, dilations=3).shape == (1, 6, 2)
    d = nn.depthwise_conv2d(3, input_size=1, dilations=2)
    assert d(mx.zeros((1, 9, 9, 1))).shape == (1, 5, 5, 1)
    assert d(mx.zeros((1, 9, 9, 1)), dilations=[1, 3]).shape == (1, 7, 3, 1)


def test_activation_after_bias_for_groups():
    layer = nn.conv1d(4, 1, 4, groups=2, activation="relu", bias_initializer="ones",
                      weight_initializer="zeros")
    np.testing.assert_array_equal(np.array(layer(mx.ones((1, 3, 4)))), np.ones((1, 3, 4)))


def test_note_forms_accepted():
    d = nn.depthwise_conv1d(3, 2, 4, data_format="NHWC", dilations=[1, 2], strides=1)
    assert d(mx.zeros((1, 10, 4))).shape == (1, 6, 8)
    c = nn.conv2d(3, 3, 2, strides=[1, 2, 2, 1], padding=[1, (2, 0)])
    assert c(mx.zeros((1, 6, 6, 2))).shape == (1, 3, 3, 3)


def test_bad_inputs_fail_before_compute():
    with pytest.raises(ValueError, match="dilated kernel"):
        nn.conv2d(4, 5, 2)(mx.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="dilations"):
        nn.conv1d_transpose(2, 3, 2, strides=2)(mx.zeros((1, 4, 2)), dilations=2)


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.conv2d(4, 3, 3, strides=2, padding="SAME"), (2, 8, 8, 3)),  # mlx+gemm
    (lambda: nn.conv1d(4, 3, 3, padding="SAME"), (2, 9, 3)),  # mlx+gemmw
    (lambda: nn.depthwise_conv2d(3, 2, 3, padding="SAME"), (2, 8, 8, 3)),  # shift
    (lambda: nn.conv2d_transpose(4, 3, 3, strides=2, padding="SAME"), (2, 4, 4, 3)),  # col2im
    (lambda: nn.conv3d(4, 2, 4, groups=2, dilations=2), (2, 5, 5, 5, 4)),  # gemm
])
def test_compiled_training_step_matches_eager(make, shape):
    """The custom gradients work under mx.compile and nn.value_and_grad."""
    mx.random.seed(0)
    layer = make()
    x = mx.random.normal(shape)

    def loss(model, x):
        return (model(x) ** 2).mean()

    vg = mnn.value_and_grad(layer, loss)
    val, grads = vg(layer, x)
    step = mx.compile(lambda x: vg(layer, x), inputs=layer.state, outputs=layer.state)
    cval, cgrads = step(x)
    assert abs(val.item() - cval.item()) < 1e-5
    for k in grads:
        np.testing.assert_allclose(np.array(cgrads[k]), np.array(grads[k]), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("method,kw", [
    ("gemm", dict(padding=1, dilations=2)),
    ("col2im", dict(padding=[(2, 2), (2, 2)], input_dilation=2, flip=True)),
])
def test_batch_chunking_bounds_the_column_buffer(monkeypatch, method, kw):
    """Past COLS_BUDGET the batch runs in chunks (chained by mx.depends): same values and
    gradients, also under mx.compile."""
    x, w, b = mx.random.normal((8, 9, 9, 4)), mx.random.normal((5, 3, 3, 4)), mx.zeros((5,))

    def f(x, w):
        return (kconv.conv(x, w, bias=b, method=method, **kw) ** 2).sum()

    ref = [kconv.conv(x, w, bias=b, method=method, **kw), *mx.grad(f, argnums=(0, 1))(x, w)]
    monkeypatch.setattr(kconv, "COLS_BUDGET", 2000)
    got = [kconv.conv(x, w, bias=b, method=method, **kw), *mx.grad(f, argnums=(0, 1))(x, w)]
    comp = mx.compile(mx.grad(f, argnums=(0, 1)))(x, w)
    for a, r in zip(got + list(comp), ref + ref[1:]):
        np.testing.assert_allclose(np.array(a), np.array(r), rtol=1e-5,
                                   atol=1e-5 * float(mx.abs(r).max()))
