"""Keras interop (issue 14): ``layout="keras"`` weights, ``from_keras``/``to_keras``, and
Note's habits (``train_flag``, ``model.train(data)``).

Every layer with a Keras counterpart: a Keras layer with random weights gives its weights
to the mlxnote layer (``set_weights(..., layout="keras")``) and the outputs agree; random
mlxnote weights go the other way (``get_weights(layout="keras")``) and agree; and
``from_keras``/``to_keras`` rebuild each from the other's config. Tolerances are the
conformance suite's for float32 (rtol 1e-5, atol 1e-6).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest

import mlxnote
from mlxnote import nn
from mlxnote.interop import activations as acts
from mlxnote.interop import layers as pairs
from mlxnote.nn import layouts

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
L = keras.layers
TOL = dict(rtol=1e-5, atol=1e-6)


def close(a: Any, b: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               err_msg=what, **TOL)


@dataclass
class Case:
    """A Keras layer and the mlxnote layer of the same math, their inputs' shapes and how
    each is called (``call(layer, inputs, keras_side)``: the output to compare)."""

    id: str
    keras: Callable[[], Any]
    note: Callable[[], Any]
    shapes: list[tuple[int, ...]]
    call: Callable[[Any, list[Any], bool], Any] = field(
        default=lambda layer, xs, k: layer(xs[0]))
    positive: tuple[str, ...] = ()  # Keras weights that must be > 0 (moving variance)


def _attn(layer: Any, xs: list[Any], k: bool) -> Any:
    return layer(xs) if k else layer(*xs)


def _cell(layer: Any, xs: list[Any], k: bool) -> Any:
    """The new state ``h`` (and ``c``): Keras's cells take a list of states."""
    x, states = xs[0], xs[1:]
    if k:
        out, new = layer(x, states)
        return [out, *new]
    out = layer(x, states if len(states) == 2 else states[0])
    if isinstance(out, tuple):
        h, s = out
        return [h, *(s if isinstance(s, tuple) else (s,))]
    return [out, out]


CASES = [
    Case("dense", lambda: L.Dense(5, activation="tanh"),
         lambda: nn.dense(5, 4, activation="tanh"), [(3, 4)]),
    Case("dense_3d", lambda: L.Dense(5, use_bias=False),
         lambda: nn.dense(5, 4, use_bias=False), [(2, 3, 4)]),
    Case("identity", L.Identity, nn.identity, [(2, 3)]),
    Case("dropout", lambda: L.Dropout(0.5), lambda: nn.dropout(0.5), [(2, 3)]),
    Case("zeropadding1d", lambda: L.ZeroPadding1D((1, 2)),
         lambda: nn.zeropadding1d(padding=(1, 2)), [(2, 3, 2)]),
    Case("zeropadding2d", lambda: L.ZeroPadding2D(((1, 0), (2, 1))),
         lambda: nn.zeropadding2d(padding=((1, 0), (2, 1))), [(2, 3, 3, 2)]),
    Case("zeropadding3d", lambda: L.ZeroPadding3D(1), lambda: nn.zeropadding3d(padding=1),
         [(1, 2, 2, 2, 2)]),
    Case("conv1d", lambda: L.Conv1D(4, 3, strides=2, padding="same", activation="relu"),
         lambda: nn.conv1d(4, 3, 3, strides=2, padding="SAME", activation="relu"),
         [(2, 9, 3)]),
    Case("conv1d_causal", lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2),
         lambda: nn.conv1d(4, 3, 3, padding=[(4, 0)], dilations=2), [(2, 9, 3)]),
    Case("conv2d_groups", lambda: L.Conv2D(4, (3, 2), groups=2),
         lambda: nn.conv2d(4, [3, 2], 4, groups=2), [(2, 6, 5, 4)]),
    Case("conv3d", lambda: L.Conv3D(2, 2), lambda: nn.conv3d(2, 2, 3), [(1, 3, 3, 3, 3)]),
    Case("conv1d_transpose", lambda: L.Conv1DTranspose(3, 3, strides=2),
         lambda: nn.conv1d_transpose(3, 3, 2, strides=2), [(2, 4, 2)]),
    Case("conv2d_transpose", lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                        output_padding=1),
         lambda: nn.conv2d_transpose(3, 3, 2, strides=2, padding="SAME", output_padding=1),
         [(2, 3, 3, 2)]),
    Case("conv3d_transpose", lambda: L.Conv3DTranspose(2, 2),
         lambda: nn.conv3d_transpose(2, 2, 2), [(1, 2, 2, 2, 2)]),
    Case("depthwise_conv1d", lambda: L.DepthwiseConv1D(3, depth_multiplier=2),
         lambda: nn.depthwise_conv1d(3, 2, 3), [(2, 7, 3)]),
    Case("depthwise_conv2d", lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
         lambda: nn.depthwise_conv2d(3, 2, 3, padding="SAME"), [(2, 5, 5, 3)]),
    Case("separable_conv1d", lambda: L.SeparableConv1D(4, 3, depth_multiplier=2),
         lambda: nn.separable_conv1d(4, 3, 2, 3), [(2, 7, 3)]),
    Case("separable_conv2d", lambda: L.SeparableConv2D(4, 3),
         lambda: nn.separable_conv2d(4, 3, input_size=3), [(2, 5, 5, 3)]),
    Case("max_pool1d", lambda: L.MaxPooling1D(2), lambda: nn.max_pool1d(2), [(2, 7, 3)]),
    Case("max_pool2d", lambda: L.MaxPooling2D(3, strides=1, padding="same"),
         lambda: nn.max_pool2d(3, 1, "SAME"), [(2, 5, 5, 3)]),
    Case("max_pool3d", lambda: L.MaxPooling3D(2), lambda: nn.max_pool3d(2),
         [(1, 4, 4, 4, 2)]),
    Case("avg_pool1d", lambda: L.AveragePooling1D(3, strides=2, padding="same"),
         lambda: nn.avg_pool1d(3, 2, "SAME"), [(2, 7, 3)]),
    Case("avg_pool2d", lambda: L.AveragePooling2D((2, 3)),
         lambda: nn.avg_pool2d([2, 3]), [(2, 6, 6, 3)]),
    Case("avg_pool3d", lambda: L.AveragePooling3D(2, padding="same"),
         lambda: nn.avg_pool3d(2, padding="SAME"), [(1, 3, 3, 3, 2)]),
    Case("flatten", L.Flatten, nn.flatten, [(2, 3, 4)]),
    Case("batch_norm", lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-2),
         lambda: nn.batch_norm(3, momentum=0.9, epsilon=1e-2), [(4, 5, 3)],
         positive=("moving_variance",)),
    Case("batch_norm_axis1", lambda: L.BatchNormalization(axis=1),
         lambda: nn.batch_norm(2, axis=1), [(4, 2, 3)], positive=("moving_variance",)),
    Case("layer_norm", lambda: L.LayerNormalization(), lambda: nn.layer_norm(4), [(2, 3, 4)]),
    Case("layer_norm_axes", lambda: L.LayerNormalization(axis=[1, 2], center=False),
         lambda: nn.layer_norm([3, 4], axis=[1, 2], center=False), [(2, 3, 4)]),
    Case("group_norm", lambda: L.GroupNormalization(groups=2),
         lambda: nn.group_norm(2, 4), [(2, 3, 4)]),
    Case("attention", lambda: L.Attention(use_scale=True), lambda: nn.attention(True),
         [(2, 3, 4), (2, 5, 4)], _attn),
    Case("attention_concat", lambda: L.Attention(use_scale=True, score_mode="concat"),
         lambda: nn.attention(True, "concat"), [(2, 3, 4), (2, 5, 4), (2, 5, 4)], _attn),
    Case("rnn", lambda: L.SimpleRNN(3, return_sequences=True), lambda: nn.RNN(3, 4,
                                                                             return_sequence=True),
         [(2, 5, 4)]),
    Case("gru", lambda: L.GRU(3, reset_after=False), lambda: nn.GRU(3, 4), [(2, 5, 4)]),
    Case("gru_reset_after", lambda: L.GRU(3, return_sequences=True),
         lambda: nn.GRU(3, 4, return_sequence=True, reset_after=True), [(2, 5, 4)]),
    Case("lstm", lambda: L.LSTM(3, go_backwards=True),
         lambda: nn.LSTM(3, 4, go_backwards=True), [(2, 5, 4)]),
    Case("bidirectional", lambda: L.Bidirectional(L.LSTM(3, return_sequences=True)),
         lambda: nn.Bidirectional(nn.LSTM(3, 4, return_sequence=True)), [(2, 5, 4)]),
    Case("bidirectional_gru_sum", lambda: L.Bidirectional(L.GRU(3), merge_mode="sum"),
         lambda: nn.Bidirectional(nn.GRU(3, 4, reset_after=True), "sum"), [(2, 5, 4)]),
    Case("rnn_cell", lambda: L.SimpleRNNCell(3), lambda: nn.RNNCell([4, 3]),
         [(2, 4), (2, 3)], _cell),
    Case("gru_cell", lambda: L.GRUCell(3, reset_after=False), lambda: nn.GRUCell([4, 3]),
         [(2, 4), (2, 3)], _cell),
    Case("gru_cell_reset_after", lambda: L.GRUCell(3),
         lambda: nn.GRUCell([4, 3], reset_after=True), [(2, 4), (2, 3)], _cell),
    Case("lstm_cell", lambda: L.LSTMCell(3), lambda: nn.LSTMCell([4, 3]),
         [(2, 4), (2, 3), (2, 3)], _cell),
]


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in case.shapes]


def _keras_layer(case: Case, seed: int = 1) -> Any:
    """The Keras layer, built on the case's inputs, with random weights."""
    k = case.keras()
    xs = _inputs(case)
    _call(case, k, xs, True)
    rng = np.random.default_rng(seed)
    ws = []
    for v in k.weights:
        shape = tuple(v.shape)
        ws.append(rng.uniform(0.5, 1.5, shape) if any(p in v.path for p in case.positive)
                  else rng.normal(0, 0.5, shape))
    k.set_weights([w.astype(np.float32) for w in ws])
    return k


def _call(case: Case, layer: Any, xs: list[np.ndarray], on_keras: bool) -> Any:
    args = xs if on_keras else [mx.array(x) for x in xs]
    out = case.call(layer, args, on_keras)
    return [np.asarray(o) for o in out] if isinstance(out, list) else np.asarray(out)


def _random_note(layer: Any, case: Case, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    new = [rng.uniform(0.5, 1.5, w.shape) if any(p in n for p in case.positive)
           else rng.normal(0, 0.5, w.shape) for n, w in zip(layer.weight_names,
                                                             layer.get_weights())]
    layer.set_weights([w.astype(np.float32) for w in new])


def test_every_pair_has_a_case() -> None:
    """Each mlxnote layer with a Keras counterpart (the layout table and the interop
    pairs: the same classes) is exercised below."""
    named = {type(c.note()).__name__ for c in CASES}
    assert set(layouts.table()) == {p.note for p in pairs.PAIRS} | {nn.Layers}
    assert {c.__name__ for c in layouts.table()} - {"Layers"} <= named


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_keras_weights_to_mlxnote(case: Case) -> None:
    k = _keras_layer(case)
    xs = _inputs(case, 3)
    m = case.note().eval()
    m.set_weights(k.get_weights(), layout="keras")
    close(_call(case, m, xs, False), _call(case, k, xs, True), case.id)
    for a, b in zip(m.get_weights(layout="keras"), k.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_mlxnote_weights_to_keras(case: Case) -> None:
    k = _keras_layer(case)
    m = case.note().eval()
    _random_note(m, case)
    k.set_weights(m.get_weights(layout="keras"))
    xs = _inputs(case, 4)
    close(_call(case, k, xs, True), _call(case, m, xs, False), case.id)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_from_keras_and_to_keras(case: Case) -> None:
    """The config travels too: from_keras builds the same layer, to_keras the same Keras
    layer, with the weights."""
    k = _keras_layer(case)
    xs = _inputs(case, 5)
    want = _call(case, k, xs, True)
    m = mlxnote.from_keras(k)
    assert type(m) is type(case.note()) and not m.training
    close(_call(case, m, xs, False), want, f"{case.id}: from_keras")
    shape = case.shapes[0][1:] if case.id.startswith("batch_norm") else None
    back = mlxnote.to_keras(m, input_shape=shape)
    assert type(back) is type(k)
    close(_call(case, back, xs, True), want, f"{case.id}: to_keras")


def test_channels_first_config() -> None:
    """TensorFlow's CPU convolutions are channels-last only: the channels-first config is
    checked against the channels-last layer on transposed inputs."""
    k = L.Conv2D(3, 3, strides=2, data_format="channels_first")
    k.build((None, 2, 7, 7))
    m = mlxnote.from_keras(k)
    assert m.data_format == "channels_first"
    twin = nn.conv2d(3, 3, 2, strides=2).eval()
    twin.set_weights(m.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 2)).astype(np.float32)
    want = np.array(twin(mx.array(x))).transpose(0, 3, 1, 2)
    close(m(mx.array(x.transpose(0, 3, 1, 2))), want, "channels_first")
    back = mlxnote.to_keras(m)
    assert back.get_config()["data_format"] == "channels_first"
    for a, b in zip(back.get_weights(), k.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- the layout: orders, errors ----------------------------------------------------------
def test_same_shape_weights_follow_each_layouts_order() -> None:
    bn = nn.batch_norm(2)
    bn.set_weights([np.full(2, v, np.float32) for v in (1, 2, 3, 4)])  # mm, mv, beta, gamma
    assert [float(w[0]) for w in bn.get_weights(layout="keras")] == [4, 3, 1, 2]
    ln = nn.layer_norm(2)
    ln.set_weights([np.zeros(2), np.ones(2)], layout="keras")  # Keras: gamma, beta
    assert [float(w[0]) for w in ln.get_weights()] == [1, 0]  # Note: beta, gamma


def test_lstm_gates_are_reordered() -> None:
    lstm = nn.LSTM(2, 3)
    names = lstm.weight_names
    lstm.set_weights([np.full(w.shape, i, np.float32) for i, w in
                      enumerate(lstm.get_weights())])
    kernel, rec, bias = lstm.get_weights(layout="keras")
    gate = {n: i for i, n in enumerate(names)}
    assert kernel[0, ::2].tolist() == [gate[f"weight_{g}1"] for g in "ifco"]
    assert rec[0, ::2].tolist() == [gate[f"weight_{g}2"] for g in "ifco"]
    assert bias[::2].tolist() == [gate[f"bias_{g}"] for g in "ifco"]


def _msg(owner: str, *parts: str) -> str:
    return rf"^{re.escape(owner)}: argument '.*' got .*" + ".*".join(map(re.escape, parts))


@pytest.mark.parametrize("layout", ["note", "keras"])
def test_weight_errors_name_the_layer_index_and_shapes(layout: str) -> None:
    layer = nn.LSTM(2, 3)
    good = layer.get_weights(layout=layout)
    before = layer.get_weights()
    with pytest.raises(ValueError, match=_msg("LSTM", f"{len(good) - 1} arrays")):
        layer.set_weights(good[:-1], layout=layout)
    bad = list(good)
    bad[1] = np.zeros((7, 7), np.float32)
    want = tuple(good[1].shape)
    with pytest.raises(ValueError, match=_msg("LSTM", "shape (7, 7) at index 1", f"shape {want}")):
        layer.set_weights(bad, layout=layout)
    bad[1] = np.zeros(good[1].shape, np.complex64)
    with pytest.raises(TypeError, match=_msg("LSTM", "dtype complex64 at index 1")):
        layer.set_weights(bad, layout=layout)
    bad[1] = np.array(["a"] * good[1].size).reshape(good[1].shape)
    with pytest.raises(TypeError, match="at index 1"):
        layer.set_weights(bad, layout=layout)
    for a, b in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_model_weight_errors_name_the_layer() -> None:
    model = mlxnote.Sequential(nn.dense(3, 2), nn.batch_norm(3))
    ws = model.get_weights(layout="keras")
    ws[2] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=_msg("Sequential", "index 2 (batch_norm "
                                              "'layers.1.gamma')", "shape (3,)")):
        model.set_weights(ws, layout="keras")


def test_bad_layout_and_layers_without_a_counterpart() -> None:
    d = nn.dense(2, 2)
    for bad, exc in (("torch", ValueError), (None, TypeError)):
        with pytest.raises(exc, match=_msg("dense", "'note'", "'keras'")):
            d.get_weights(layout=bad)
        with pytest.raises(exc, match="argument 'layout'"):
            d.set_weights(d.get_weights(), layout=bad)
    for layer in (nn.multihead_attention(2, 4), nn.stochastic_depth(0.1),
                  nn.talking_heads_attention(num_heads=2)):
        name = type(layer).__name__
        with pytest.raises(ValueError, match=_msg(name, "no Keras counterpart")):
            layer.get_weights(layout="keras")
        with pytest.raises(TypeError, match=rf"to_keras: .*{name} has none"):
            mlxnote.to_keras(layer)
    model = mlxnote.Sequential(nn.dense(4, 2), mnn.Linear(2, 2))
    with pytest.raises(ValueError, match=_msg("Sequential", "plain Linear module at 'layers.1'")):
        model.get_weights(layout="keras")


# -- activations -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(acts.FROM_KERAS_ACT))
def test_activation_names_map_to_the_same_function(name: str) -> None:
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(2, 12)
    want = np.asarray(keras.activations.get(name)(x))
    got = nn.activations.get(acts.FROM_KERAS_ACT[name])(mx.array(x))
    close(got, want, name)
    d = nn.dense(2, 2, activation=acts.FROM_KERAS_ACT[name])
    back = acts.act_to_keras(d)
    close(keras.activations.get(back)(x), want, f"{name} -> {back}")


def test_activations_without_a_keras_twin_are_refused() -> None:
    for act in ("hard_sigmoid", "crelu", ["leaky_relu", 0.1], ["gelu", True], np.tanh):
        with pytest.raises(ValueError, match=r"^to_keras \(dense\): argument 'activation'"):
            mlxnote.to_keras(nn.dense(2, 2, activation=act))


# -- unsupported Keras layers and options ------------------------------------------------
@pytest.mark.parametrize("make, arg", [
    (lambda: L.Dense(2, kernel_regularizer="l2"), "kernel_regularizer"),
    (lambda: L.Dense(2, activity_regularizer="l2"), "activity_regularizer"),
    (lambda: L.Conv2D(2, 3, kernel_constraint="non_neg"), "kernel_constraint"),
    (lambda: L.LSTM(2, return_state=True), "return_state"),
    (lambda: L.GRU(2, dropout=0.1), "dropout"),
    (lambda: L.SimpleRNN(2, stateful=True), "stateful"),
    (lambda: L.BatchNormalization(renorm=True), "renorm"),
    (lambda: L.Attention(dropout=0.1), "dropout"),
    (lambda: L.Dense(2, activation="hard_tanh"), "activation"),
    (lambda: L.Dense(2, dtype="mixed_float16"), "dtype"),
    (lambda: L.ZeroPadding2D(data_format="channels_first"), "data_format"),
])
def test_unsupported_keras_options_are_named(make: Callable[[], Any], arg: str) -> None:
    k = make()
    with pytest.raises(ValueError, match=rf"^from_keras \({k.name}: {type(k).__name__}\): "
                                         rf"argument '{arg}'"):
        mlxnote.from_keras(k)


def test_unsupported_keras_layers_are_named() -> None:
    with pytest.raises(TypeError, match=r"from_keras: argument 'obj' got the Keras layer "
                                        r"'mha' \(MultiHeadAttention\)"):
        mlxnote.from_keras(L.MultiHeadAttention(2, 3, name="mha"))
    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(2)(L.UnitNormalization(name="un")(x)))
    with pytest.raises(TypeError, match=r"'un' \(UnitNormalization\)"):
        mlxnote.from_keras(model)
    with pytest.raises(FileNotFoundError, match="from_keras: argument 'obj'"):
        mlxnote.from_keras("/nonexistent/model.keras")
    with pytest.raises(TypeError, match="to_keras: argument 'input_shape'"):
        mlxnote.to_keras(nn.batch_norm(3))
    with pytest.raises(ValueError, match=r"to_keras \(conv2d\): argument 'padding'"):
        mlxnote.to_keras(nn.conv2d(2, 3, 2, padding=1))


# -- whole models ------------------------------------------------------------------------
def _randomize(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else
                        rng.normal(0, 0.4, w.shape)).astype(np.float32)
                       for w, v in zip(model.get_weights(), model.weights)])


def _cnn() -> Any:
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    h = L.BatchNormalization()(h)
    h = L.Conv2D(4, 3, strides=2)(h)  # no dropout: the step's gradients are compared
    h = L.Flatten()(L.MaxPooling2D()(h))
    return keras.Model(x, L.Dense(5)(h))


def _lstm() -> Any:
    return keras.Sequential([keras.Input((6, 4)), L.LSTM(5, return_sequences=True),
                             L.LSTM(3), L.Dense(2, activation="tanh")])


def _keras_grads(model: Any, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - t))
    grads = tape.gradient(loss, model.trainable_weights)
    return {v.path: np.asarray(g) for v, g in zip(model.trainable_weights, grads)}


def _note_grads(model: Any, x: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """The gradients in Keras's layout (Keras's order; the moving statistics after the
    step where Keras has its non-trainable weights)."""
    model.train()
    def loss(m: Any) -> mx.array:
        return mx.mean(mx.square(m(mx.array(x)) - mx.array(t)))
    _, grads = mnn.value_and_grad(model, loss)(model)
    model.update(grads)  # the gradients where the trainable weights were
    return model.get_weights(layout="keras")


@pytest.mark.parametrize("make, shape", [(_cnn, (3, 8, 8, 3)), (_lstm, (3, 6, 4))],
                         ids=["cnn", "lstm"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras saving its file
def test_keras_model_both_ways(make: Callable[[], Any], shape: tuple[int, ...],
                               tmp_path: Any) -> None:
    km = make()
    _randomize(km, 0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(np.float32)
    want = np.asarray(km(x))
    mm = mlxnote.from_keras(km)
    close(mm(mx.array(x)), want, "from_keras")
    for a, b in zip(mm.get_weights(layout="keras"), km.get_weights()):
        np.testing.assert_array_equal(a, b)
    back = mlxnote.to_keras(mm)
    close(back(x), want, "to_keras")
    path = tmp_path / "model.keras"
    km.save(path)
    close(mlxnote.from_keras(path)(mx.array(x)), want, "from a .keras file")

    t = rng.normal(size=want.shape).astype(np.float32)
    kg = _keras_grads(km, x, t)
    got = _note_grads(mm, x, t)
    for v, g in zip(km.weights, got):
        if v.path in kg:
            close(g, kg[v.path], f"gradient of {v.path}")
        else:  # the moving statistics after one training step
            close(g, np.asarray(v), f"{v.path} after the step")


def test_functional_graph_with_merges_both_ways() -> None:
    a, b = keras.Input((5,)), keras.Input((5,))
    shared = L.Dense(4, activation="relu", name="shared")
    ha, hb = shared(a), shared(b)
    h = L.Concatenate()([L.Add()([ha, hb]), L.Multiply()([ha, hb])])
    h = L.Activation("log_sigmoid")(h)
    q = L.Dense(4)(h)
    km = keras.Model([a, b], [q, L.Subtract()([ha, hb])])
    _randomize(km, 3)
    rng = np.random.default_rng(4)
    xa, xb = (rng.normal(size=(2, 5)).astype(np.float32) for _ in range(2))
    want = [np.asarray(o) for o in km([xa, xb])]
    mm = mlxnote.from_keras(km)
    assert isinstance(mm, mlxnote.interop.KerasGraph)
    for got, w in zip(mm(mx.array(xa), mx.array(xb)), want):
        close(got, w, "from_keras")
    back = mlxnote.to_keras(mm)
    for got, w in zip(back([xa, xb]), want):
        close(got, w, "to_keras")


def test_functional_graph_with_masks_and_call_arguments() -> None:
    x, m = keras.Input((5, 3)), keras.Input((5,), dtype="bool")
    h = L.LSTM(4, return_sequences=True)(x, mask=m)
    h = L.Attention(use_scale=True)([h, h], mask=[m, m])
    km = keras.Model([x, m], L.Dropout(0.5)(h, training=False))
    _randomize(km, 7)
    xs = np.random.default_rng(8).normal(size=(2, 5, 3)).astype(np.float32)
    ms = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    want = np.asarray(km([xs, ms]))
    mm = mlxnote.from_keras(km).train()  # the dropout node keeps Keras's training=False
    close(mm([mx.array(xs), mx.array(ms)]), want, "from_keras")
    close(mlxnote.to_keras(mm)([xs, ms]), want, "to_keras")


def test_chain_becomes_sequential_and_model_layout_matches_keras() -> None:
    x = keras.Input((4,))
    km = keras.Model(x, L.Dense(2)(L.LayerNormalization()(L.Dense(3)(x))))
    mm = mlxnote.from_keras(km)
    assert type(mm) is mlxnote.Sequential and [type(m).__name__ for m in mm.layers] == \
        ["dense", "layer_norm", "dense"]
    _randomize(km, 9)
    mm.set_weights(km.get_weights(), layout="keras")
    xs = np.random.default_rng(10).normal(size=(2, 4)).astype(np.float32)
    close(mm(mx.array(xs)), km(xs), "after set_weights(layout='keras')")
    seq = mlxnote.Sequential(nn.dense(3, 4), nn.batch_norm(3))
    with pytest.raises(TypeError, match="input_shape"):
        mlxnote.to_keras(seq)
    close(mlxnote.to_keras(seq, input_shape=(4,))(xs), seq.eval()(mx.array(xs)), "Sequential")


def test_note_layers_container_in_keras_layout() -> None:
    km = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"),
                           L.MaxPooling2D(), L.Flatten(), L.Dense(2)])
    _randomize(km, 5)
    box = nn.Layers()
    box.add([nn.conv2d(3, 3, 2, activation="relu"), nn.max_pool2d(), nn.flatten(),
             nn.dense(2, 12)])
    box.set_weights(km.get_weights(), layout="keras")
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 2)).astype(np.float32)
    close(box.eval()(mx.array(x)), km(x), "Layers <- Keras")
    close(mlxnote.to_keras(box, input_shape=(6, 6, 2))(x), km(x), "Layers -> Keras")
    branch = nn.Layers()
    branch.add(nn.dense(2, 2), save_data=True)
    branch.add(lambda x, kept: x + kept, use_data=True)
    with pytest.raises(TypeError, match="to_keras: argument 'obj' got a Layers with "
                                        "save_data/use_data"):
        mlxnote.to_keras(branch, input_shape=(2,))


# -- Note's habits (item 5) --------------------------------------------------------------
def test_train_flag_sets_the_mode() -> None:
    drop = nn.dropout(0.5)
    x = np.ones((8, 8), np.float32)
    drop.train_flag = False
    assert not drop.training and not drop.train_flag
    np.testing.assert_array_equal(np.array(drop(x)), x)
    drop.train_flag = True
    assert drop.training
    model = mlxnote.Sequential(nn.dense(4, 8), nn.dropout(0.5))
    model.train_flag = False
    assert not model.layers[1].training
    for bad in (0, [1], "False", None):
        with pytest.raises(TypeError, match=r"^dropout: argument 'train_flag' got"):
            drop.train_flag = bad
    assert "train_flag" not in drop  # never a child of the MLX tree


def test_model_train_with_data_points_to_fit() -> None:
    model = mlxnote.Sequential(nn.dense(2, 2))
    data = [(np.zeros((1, 2)), np.zeros((1, 2)))]
    for call in (lambda: model.train(data), lambda: model.train(data, epochs=2),
                 lambda: model.train(True, 5)):
        with pytest.raises(TypeError, match=r"^Sequential: argument 'mode' got .*fit\(x, y"):
            call()
    with pytest.raises(TypeError, match=r"^dense: argument 'mode' got 'yes'"):
        nn.dense(2, 2).train("yes")
    assert model.train().training and not model.eval().training
