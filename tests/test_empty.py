"""Empty batches and zero-length axes (issue 13, item 9): what Keras does.

Keras (3.15, TensorFlow 2.21 backend, checked by hand) gives the empty result for a batch
of 0 (and the gradient, zeros) for Dense, the norms, Dropout, ZeroPadding, the transposed
and depthwise convs, SimpleRNN, GRU, Attention and MultiHeadAttention. Its Conv1D/2D/3D,
SeparableConv, LSTM and the cells raise an InvalidArgumentError from a TensorFlow kernel
(a bias add or a matmul of an empty operand): not a rule of theirs but a backend bug, which
their transposed/depthwise convs and SimpleRNN/GRU, sharing the same semantics, do not
have; every mlxnote layer gives the empty result for a batch of 0.

Zero-length axes, as Keras: attention over no keys gives zeros (Attention; MultiHeadAttention
then its output bias), a SAME transposed conv of an empty axis the empty result; an empty
axis a conv cannot slide over (VALID or SAME), an empty time axis (RNNs), a conv or
group_norm input without channels raise the layer's ValueError.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from crash_cases import assert_refused

from mlxnote import nn


def Z(*shape):
    return mx.zeros(shape)


# (id, factory, inputs, call keywords, expected output shapes)
EMPTY_BATCH = [
    ("dense", lambda: nn.dense(4, 3), [Z(0, 3)], {}, [(0, 4)]),
    ("identity", lambda: nn.identity(3), [Z(0, 3)], {}, [(0, 3)]),
    ("dropout", lambda: nn.dropout(0.5), [Z(0, 3)], dict(train_flag=True), [(0, 3)]),
    ("stochastic_depth", lambda: nn.stochastic_depth(0.5), [Z(0, 3, 2)],
     dict(train_flag=True), [(0, 3, 2)]),
    ("zeropadding1d", lambda: nn.zeropadding1d(padding=1), [Z(0, 3, 2)], {}, [(0, 5, 2)]),
    ("zeropadding2d", lambda: nn.zeropadding2d(padding=1), [Z(0, 3, 3, 2)], {},
     [(0, 5, 5, 2)]),
    ("zeropadding3d", lambda: nn.zeropadding3d(padding=1), [Z(0, 2, 2, 2, 1)], {},
     [(0, 4, 4, 4, 1)]),
    ("conv1d", lambda: nn.conv1d(4, 3, 2), [Z(0, 5, 2)], {}, [(0, 3, 4)]),
    ("conv1d-same-strided", lambda: nn.conv1d(4, 3, 2, strides=2, padding="SAME"),
     [Z(0, 5, 2)], {}, [(0, 3, 4)]),
    ("conv2d", lambda: nn.conv2d(4, 3, 2, activation="relu"), [Z(0, 5, 5, 2)], {},
     [(0, 3, 3, 4)]),
    ("conv2d-nchw-dilated", lambda: nn.conv2d(4, 3, 2, data_format="NCHW", dilations=2),
     [Z(0, 2, 7, 7)], {}, [(0, 4, 3, 3)]),
    ("conv3d-groups", lambda: nn.conv3d(4, 3, 2, groups=2), [Z(0, 4, 4, 4, 2)], {},
     [(0, 2, 2, 2, 4)]),
    ("conv1d_transpose", lambda: nn.conv1d_transpose(4, 3, 2), [Z(0, 5, 2)], {},
     [(0, 7, 4)]),
    ("conv2d_transpose", lambda: nn.conv2d_transpose(4, 3, 2, strides=2), [Z(0, 3, 3, 2)],
     {}, [(0, 7, 7, 4)]),
    ("conv3d_transpose", lambda: nn.conv3d_transpose(4, 3, 2), [Z(0, 2, 2, 2, 2)], {},
     [(0, 4, 4, 4, 4)]),
    ("depthwise_conv1d", lambda: nn.depthwise_conv1d(3, 2, 2), [Z(0, 5, 2)], {},
     [(0, 3, 4)]),
    ("depthwise_conv2d", lambda: nn.depthwise_conv2d(3, 1, 2), [Z(0, 5, 5, 2)], {},
     [(0, 3, 3, 2)]),
    ("separable_conv1d", lambda: nn.separable_conv1d(4, 3, input_size=2), [Z(0, 5, 2)], {},
     [(0, 3, 4)]),
    ("separable_conv2d", lambda: nn.separable_conv2d(4, 3, input_size=2), [Z(0, 5, 5, 2)],
     {}, [(0, 3, 3, 4)]),
    ("batch_norm", lambda: nn.batch_norm(3), [Z(0, 3)], dict(train_flag=False), [(0, 3)]),
    ("group_norm", lambda: nn.group_norm(1, 3), [Z(0, 3)], {}, [(0, 3)]),
    ("layer_norm", lambda: nn.layer_norm(3), [Z(0, 3)], {}, [(0, 3)]),
    ("RNN", lambda: nn.RNN(4, 3), [Z(0, 5, 3)], {}, [(0, 4)]),
    ("GRU", lambda: nn.GRU(4, 3, return_sequence=True), [Z(0, 5, 3)], {}, [(0, 5, 4)]),
    ("LSTM", lambda: nn.LSTM(4, 3), [Z(0, 5, 3)], {}, [(0, 4)]),
    ("LSTM-state", lambda: nn.LSTM(4, 3), [Z(0, 5, 3)],
     dict(initial_state=(Z(0, 4), Z(0, 4))), [(0, 4)]),
    ("RNNCell", lambda: nn.RNNCell([3, 4]), [Z(0, 3)], {}, [(0, 4)]),
    ("GRUCell", lambda: nn.GRUCell([3, 4]), [Z(0, 3)], {}, [(0, 4), (0, 4)]),
    ("LSTMCell", lambda: nn.LSTMCell([3, 4]), [Z(0, 3), (Z(0, 4), Z(0, 4))], {},
     [(0, 4), (0, 4), (0, 4)]),
    ("attention", lambda: nn.attention(True), [Z(0, 3, 4), Z(0, 5, 4)],
     dict(return_attention_scores=True), [(0, 3, 4), (0, 3, 5)]),
    ("multihead_attention", lambda: nn.multihead_attention(2, 8, dropout=0.5), [Z(0, 5, 8)],
     dict(train_flag=True), [(0, 5, 8), (0, 2, 5, 5)]),
    ("talking_heads_attention", lambda: nn.talking_heads_attention(num_heads=3),
     [Z(0, 5, 3, 4)] * 3, {}, [(0, 5, 3, 4), (0, 3, 5, 5)]),
    ("FAVOR_attention", lambda: nn.FAVOR_attention(6, m=4), [Z(0, 6, 5), Z(0, 3, 5),
                                                            Z(0, 6, 4)], {}, [(0, 3, 4)]),
    ("Linformer_self_attention", lambda: nn.Linformer_self_attention(8, 5, k=3, heads=2),
     [Z(0, 5, 8)], {}, [(0, 5, 8)]),
    ("Transformer", lambda: nn.Transformer(8, 2, 1, 1, 16, dropout=0.1),
     [Z(0, 5, 8), Z(0, 4, 8)], dict(train_flag=True, tgt_is_causal=True), [(0, 4, 8)]),
]


def _leaves(out):
    if isinstance(out, mx.array):
        return [out]
    return [a for o in out for a in _leaves(o)]


def _loss(layer, kw):
    def loss(*xs):
        return sum(o.astype(mx.float32).sum() for o in _leaves(layer(*xs, **kw)))
    return loss


@pytest.mark.parametrize("name, make, xs, kw, shapes", EMPTY_BATCH,
                         ids=[c[0] for c in EMPTY_BATCH])
def test_a_batch_of_0_gives_the_empty_result_and_zero_gradients(name, make, xs, kw, shapes):
    layer = make()
    out = _leaves(layer(*xs, **kw))
    mx.eval(out)
    assert [o.shape for o in out] == shapes
    assert all(o.dtype == mx.float32 for o in out)
    loss = _loss(layer, kw)
    if layer.trainable_parameters():
        val, grads = mnn.value_and_grad(layer, loss)(*xs)
        mx.eval(val, grads)
        assert float(val) == 0.0
        for g in mnn.utils.tree_flatten(grads):
            assert not np.any(np.array(g[1])), f"{name}: gradient of {g[0]}"
    arrays = [x for x in xs if isinstance(x, mx.array)]
    gx = mx.grad(lambda *a: loss(*a, *xs[len(arrays):]), argnums=tuple(range(len(arrays))))(
        *arrays)
    gx = gx if isinstance(gx, (tuple, list)) else [gx]
    assert [g.shape for g in gx] == [x.shape for x in arrays]


def test_a_batch_of_0_in_bfloat16_and_lazy():
    for make, x in [(lambda: nn.conv2d(4, 3, dtype="bfloat16"), Z(0, 5, 5, 2)),
                    (lambda: nn.LSTM(4, dtype="bfloat16"), Z(0, 5, 3)),
                    (lambda: nn.separable_conv1d(4, 3, dtype="bfloat16"), Z(0, 5, 2))]:
        y = make()(x)
        assert y.dtype == mx.bfloat16 and y.shape[0] == 0


# -- zero-length axes ---------------------------------------------------------------------
def test_attention_over_no_keys_gives_zeros_as_keras():
    y, scores = nn.attention()(Z(2, 3, 4), Z(2, 0, 4), return_attention_scores=True)
    assert y.shape == (2, 3, 4) and scores.shape == (2, 3, 0) and not np.any(np.array(y))
    assert nn.attention(score_mode="concat")(Z(2, 3, 4), Z(2, 0, 4)).shape == (2, 3, 4)
    assert nn.attention()(Z(2, 0, 4), Z(2, 5, 4)).shape == (2, 0, 4)
    out, qk = nn.talking_heads_attention()(Z(2, 3, 2, 4), Z(2, 0, 2, 4), Z(2, 0, 2, 5))
    assert out.shape == (2, 3, 2, 5) and qk.shape == (2, 2, 3, 0)
    assert not np.any(np.array(out))
    assert nn.FAVOR_attention(6, m=4)(Z(2, 6, 0), Z(2, 3, 0), Z(2, 6, 4)).shape == (2, 3, 4)
    v = mx.random.normal((2, 5, 4))  # queries and keys without features: uniform weights
    for mode in ("dot", "concat"):
        y = nn.attention(True, mode)(Z(2, 3, 0), v, Z(2, 5, 0))
        assert np.allclose(np.array(y), np.array(mx.broadcast_to(v.mean(1, keepdims=True),
                                                                 (2, 3, 4))), atol=1e-6)


def test_multihead_attention_over_no_keys_gives_its_output_bias():
    layer = nn.multihead_attention(2, 8, bias_initializer="ones")
    x = mx.random.normal((2, 5, 8))
    out, qk = layer(x, Z(2, 0, 8))
    assert out.shape == (2, 5, 8) and qk.shape == (2, 2, 5, 0)
    assert np.array_equal(np.array(out), np.ones((2, 5, 8), np.float32))
    grads = mnn.value_and_grad(layer, lambda a, b: layer(a, b)[0].sum())(x, Z(2, 0, 8))[1]
    assert np.all(np.array(grads["out"]["bias"]) == 10.0)  # d sum / d bias = B * T
    out, qk = layer(Z(2, 0, 8))  # no queries and no keys
    assert out.shape == (2, 0, 8) and qk.shape == (2, 2, 0, 0)


def test_multihead_attention_over_no_keys_matches_keras():
    keras = pytest.importorskip("keras")
    ref = keras.layers.MultiHeadAttention(2, 4, bias_initializer="ones")
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    want = np.array(ref(x, np.zeros((2, 0, 8), np.float32)))
    got = nn.multihead_attention(2, 8, bias_initializer="ones")(mx.array(x), Z(2, 0, 8))[0]
    assert np.allclose(np.array(got), want)


def test_transformer_with_empty_sequences():
    t = nn.Transformer(8, 2, 1, 1, 16)
    y = t(Z(2, 0, 8), mx.random.normal((2, 4, 8)))  # no source positions: memory is empty
    assert y.shape == (2, 4, 8) and bool(mx.all(mx.isfinite(y)))
    assert t(mx.random.normal((2, 3, 8)), Z(2, 0, 8)).shape == (2, 0, 8)
    enc = nn.TransformerEncoderLayer(8, 2, 16)
    assert enc(Z(2, 0, 8), is_causal=True).shape == (2, 0, 8)


def test_empty_spatial_axes_of_convs_as_keras():
    assert nn.conv1d_transpose(4, 3, strides=2, padding="SAME")(Z(2, 0, 2)).shape == (2, 0, 4)
    assert nn.zeropadding1d(padding=1)(Z(2, 0, 2)).shape == (2, 2, 2)
    for layer, x in [(nn.conv1d(4, 1), Z(2, 0, 2)), (nn.conv1d(4, 3, padding="SAME"),
                                                      Z(2, 0, 2)),
                     (nn.depthwise_conv2d(3), Z(2, 0, 5, 2)),
                     (nn.conv1d_transpose(4, 3), Z(2, 0, 2))]:
        with pytest.raises(ValueError, match=rf"^{layer.name}: argument 'data' got an array "
                           r"of shape \(2, 0, "):
            layer(x)


def test_no_channels():
    """Keras: Dense and GRU on 0 features give their bias / a result, GroupNormalization
    raises (the convs: in a subprocess below)."""
    y = nn.dense(4, bias_initializer="ones")(Z(2, 0))
    assert np.array_equal(np.array(y), np.ones((2, 4), np.float32))
    assert nn.GRU(4)(Z(2, 3, 0)).shape == (2, 4)
    for layer, x in [(nn.group_norm(-1), Z(2, 0)), (nn.group_norm(), Z(2, 0))]:
        with pytest.raises(ValueError, match=rf"^{layer.name}: argument 'data' got "):
            layer(x)
    for layer, xs, arg in [(nn.talking_heads_attention(), [Z(2, 3, 2, 0)] * 3,
                            "query_tensor"),
                           (nn.talking_heads_attention(), [Z(2, 3, 0, 4)] * 3,
                            "query_tensor"),
                           (nn.multihead_attention(1), [Z(2, 3, 0)], "x")]:
        with pytest.raises(ValueError, match=rf"^{layer.name}: argument '{arg}' got "):
            layer(*xs)


@pytest.mark.slow
def test_convs_without_input_channels_are_refused_not_crashed_on():
    """A conv built from an input with no channels died of a floating point exception."""
    cases = [(f"{name}", f"nn.{name}({args})(mx.zeros({shape}))",
              f"{name}: argument 'data' got an array of shape {shape}; allowed: at least one "
              "input channel") for name, args, shape in [
                  ("conv1d", "4, 3", (2, 5, 0)), ("conv2d", "4, 3", (2, 5, 5, 0)),
                  ("conv3d", "4, 1", (1, 2, 2, 2, 0)), ("depthwise_conv1d", "3", (2, 5, 0)),
                  ("depthwise_conv2d", "3", (2, 5, 5, 0)),
                  ("separable_conv1d", "4, 3", (2, 5, 0)),
                  ("separable_conv2d", "4, 3", (2, 5, 5, 0))]]
    cases.append(("conv1d_transpose", "y = nn.conv1d_transpose(4, 3, bias_initializer='ones')("
                  "mx.zeros((2, 5, 0))); assert y.shape == (2, 7, 4) and bool(mx.all(y == 1)); "
                  "raise ValueError('ok')", "ok"))
    assert_refused(cases)


def test_batch_norm_training_on_an_empty_batch_leaves_its_statistics():
    layer = nn.batch_norm(3)
    before = layer.get_weights()
    assert layer(Z(0, 3), train_flag=True).shape == (0, 3)
    assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before))


# MLX 0.32's CPU sum over an empty leading axis into a non-empty result (mx.sum(x, 0) for
# x of shape (0, 3)) loops forever now and then: the batch statistics of an empty batch,
# the bias gradient of a projection of an empty batch. The layers build no such graph.
HANGS = [("batch_norm train", "l = nn.batch_norm(3); y = l(x3, train_flag=True)"),
         ("dense grad", "l = nn.dense(4, 3); y = mx.grad(lambda b: l(x3 + b).sum())(b0)"),
         ("layer_norm axis 0", "y = nn.layer_norm(axis=0)(x3)"),
         ("group_norm", "y = nn.group_norm(3, 3)(x3)"),
         ("multihead_attention grad", "l = nn.multihead_attention(1, 3); "
          "y = nnm.value_and_grad(l, lambda a: l(a)[0].sum())(x3[:, None])"),
         ("attention grad", "l = nn.attention(True, 'concat'); "
          "y = nnm.value_and_grad(l, lambda a: l(a, a).sum())(x3[:, None])"),
         ("Transformer grad", "l = nn.Transformer(3, 1, 1, 1, 4); y = nnm.value_and_grad("
          "l, lambda a: l(a, a).sum())(x3[:, None])"),
         ("Linformer grad", "l = nn.Linformer_self_attention(3, 1, k=2, heads=1); "
          "y = nnm.value_and_grad(l, lambda a: l(a).sum())(x3[:, None])")]


@pytest.mark.slow
def test_empty_batches_never_hang():
    loop = ("import mlx.nn as nnm, numpy as np\nfor i in range(150):\n"
            "    x3 = mx.array(np.zeros((0, 3), np.float32)); b0 = mx.zeros((3,))\n"
            "    {code}\n    mx.eval(y)\nraise ValueError('done')")
    assert_refused([(label, loop.format(code=code), "done") for label, code in HANGS],
                   timeout=240)


@pytest.mark.parametrize("make", [lambda: nn.RNN(4), lambda: nn.GRU(4), lambda: nn.LSTM(4)])
def test_an_empty_time_axis_is_the_layers_error(make):
    layer = make()
    with pytest.raises(ValueError, match=rf"^{layer.name}: argument 'data' got an array of "
                       r"shape \(2, 0, 3\); allowed: at least one timestep"):
        layer(Z(2, 0, 3))
