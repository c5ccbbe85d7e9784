"""The recurrent family: RNN, GRU, LSTM and their cells.

The documented examples run with their documented shapes; the layer contract runs through
tests/layer_contract.py; NumPy implementations of the
documented equations, written against Note's weight layout, pin the layout and the math;
the fused scan core matches its plain-autodiff oracle; calls are stateless.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params
from mlx.utils import tree_flatten

from mlxnote import nn
from mlxnote.kernels import fastmath as F
from mlxnote.kernels import scan as S

SEQ = ("RNN", "GRU", "LSTM")
CELLS = ("RNNCell", "GRUCell", "LSTMCell")
GATES = {"RNN": None, "GRU": "rzh", "LSTM": "ifoc"}


def _np(a):
    return np.array(a.astype(mx.float32) if a.dtype != mx.float32 else a, dtype=np.float64)


def sig(v):
    return 1 / (1 + np.exp(-v))


# -- documented examples ------------------------------------------------------------------
def test_documented_examples():
    x = mx.random.normal((64, 10, 16))
    assert nn.GRU(32, 16)(data=x).shape == (64, 32)
    assert nn.LSTM(32, 16)(data=x).shape == (64, 32)
    assert nn.RNN(32, 16, activation="tanh")(data=x).shape == (64, 32)

    x1, prev = mx.random.normal((64, 16)), mx.random.normal((64, 32))
    out, new = nn.GRUCell(weight_shape=[16, 32])(data=x1, state=prev)
    assert out.shape == (64, 32) and new.shape == (64, 32)
    out, new = nn.LSTMCell(weight_shape=[16, 32])(data=x1, state=prev)
    assert out.shape == (64, 32)
    h, c = new  # decisions.md 22: (output, (h, c))
    assert h.shape == (64, 32) and c.shape == (64, 32)
    assert nn.RNNCell(weight_shape=[16, 32], activation="tanh")(data=x1,
                                                               state=prev).shape == (64, 32)


# -- the layer contract (tests/layer_contract.py) ------------------------------------------
def _gates(gates, i=3, h=4, bias=True):
    """Note's per-gate weight names and shapes of a sequence layer."""
    out = {}
    for g in gates:
        out[f"weight_{g}1"], out[f"weight_{g}2"] = (i, h), (h, h)
    return {**out, **({f"bias_{g}": (h,) for g in gates} if bias else {})}


LAZY = dict(input_size=None)
RNN_WEIGHTS = {"weight_i": (3, 4), "weight_s": (4, 4), "bias": (4,)}
CONTRACTS = [
    Contract(nn.RNN, dict(output_size=4, input_size=3), (2, 5, 3), lazy=LAZY,
             weights=RNN_WEIGHTS,
             bad_args=[(dict(return_sequence=1), TypeError, "return_sequence"),
                       (dict(use_bias="yes"), TypeError, "use_bias")],
             bad_inputs=[((2, 5, 6), ValueError, "data"), ((2, 3), ValueError, "data")]),
    Contract(nn.GRU, dict(output_size=4, input_size=3, return_sequence=True), (2, 5, 3),
             lazy=LAZY, weights=_gates("rzh"),
             bad_args=[(dict(output_size=0), ValueError, "output_size"),
                       (dict(output_size="8"), TypeError, "output_size"),
                       (dict(recurrent_activation="nope"), ValueError, "recurrent_activation")],
             bad_inputs=[((2, 5, 2), ValueError, "data"),
                         ((2, 5, 3), TypeError, "initial_state",
                          dict(initial_state=(mx.ones((2, 4)),) * 2))]),
    Contract(nn.LSTM, dict(output_size=4, input_size=3), (2, 5, 3), lazy=LAZY,
             weights=_gates("ifoc"),
             bad_args=[(dict(input_size=2.5), TypeError, "input_size"),
                       (dict(recurrent_activation=3), TypeError, "recurrent_activation")],
             bad_inputs=[((2, 3), ValueError, "data"), ((2, 0, 3), ValueError, "data"),
                         ((2, 5, 4), ValueError, "data"),
                         ((2, 5, 3), ValueError, "initial_state",
                          dict(initial_state=mx.ones((2, 5)))),
                         ((2, 5, 3), TypeError, "initial_state",
                          dict(initial_state=(mx.ones((2, 4)),) * 3))]),
    Contract(nn.RNNCell, dict(weight_shape=[3, 4]), [(2, 3), (2, 4)], weights=RNN_WEIGHTS,
             bad_args=[(dict(weight_shape=[16, 0]), ValueError, "weight_shape")],
             bad_inputs=[([(2, 3), (3, 4)], ValueError, "state"),
                         ([(2, 5), (2, 4)], ValueError, "data")]),
    Contract(nn.GRUCell, dict(weight_shape=[3, 4]), [(2, 3), (2, 4)],
             weights={"weight": (7, 12), "bias": (12,)},
             bad_args=[(dict(weight_shape=16), TypeError, "weight_shape"),
                       (dict(recurrent_activation="nope"), ValueError, "recurrent_activation")],
             bad_inputs=[([(2, 5), (2, 4)], ValueError, "data"), ([(2, 3, 1), (2, 4)],
                                                                ValueError, "data")]),
    Contract(nn.LSTMCell, dict(weight_shape=[3, 4]), [(2, 3), (2, 4)],
             weights={"weight": (7, 16), "bias": (16,)},
             bad_args=[(dict(weight_shape=[16]), TypeError, "weight_shape")],
             bad_inputs=[([(2, 3), (2, 5)], ValueError, "state")]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- Note's layout and the documented equations, in NumPy -------------------------------
def np_sequence(name, w, x, h0=None, c0=None, act=np.tanh, ract=sig):
    """The documented equations on Note-layout weights ``w`` (a dict): all hidden states."""
    b, t, _ = x.shape
    hsz = w["weight_s" if name == "RNN" else f"weight_{GATES[name][0]}2"].shape[0]
    h = np.zeros((b, hsz)) if h0 is None else h0
    c = np.zeros((b, hsz)) if c0 is None else c0
    out = []
    for s in range(t):
        xt = x[:, s]
        if name == "RNN":
            h = act(xt @ w["weight_i"] + h @ w["weight_s"] + w.get("bias", 0))
        elif name == "GRU":
            g = {k: xt @ w[f"weight_{k}1"] + w.get(f"bias_{k}", 0) for k in "rzh"}
            r = ract(g["r"] + h @ w["weight_r2"])
            z = ract(g["z"] + h @ w["weight_z2"])
            hh = act(g["h"] + (r * h) @ w["weight_h2"])
            h = z * h + (1 - z) * hh
        else:
            g = {k: xt @ w[f"weight_{k}1"] + h @ w[f"weight_{k}2"] + w.get(f"bias_{k}", 0)
                 for k in "ifoc"}
            c = ract(g["f"]) * c + ract(g["i"]) * act(g["c"])
            h = ract(g["o"]) * act(c)
        out.append(h)
    return np.stack(out, 1), c


def cell_to_sequence_weights(name, cell_w, input_size, units):
    """Note's joint cell matrix [in + H, k*H] -> the per-gate matrices of the sequence
    layer (column blocks in Note's gate order)."""
    if name == "RNNCell":
        return dict(zip(["weight_i", "weight_s", "bias"], cell_w))
    gates = GATES[name[:-4]]
    w, b = cell_w[0], (cell_w[1] if len(cell_w) > 1 else None)
    out = {}
    for j, g in enumerate(gates):
        out[f"weight_{g}1"] = w[:input_size, j * units:(j + 1) * units]
        out[f"weight_{g}2"] = w[input_size:, j * units:(j + 1) * units]
        if b is not None:
            out[f"bias_{g}"] = b[j * units:(j + 1) * units]
    return out


@pytest.mark.parametrize("name", SEQ)
@pytest.mark.parametrize("use_bias", [True, False])
def test_sequence_matches_documented_equations(name, use_bias):
    mx.random.seed(3)
    layer = getattr(nn, name)(5, 3, bias_initializer="normal", use_bias=use_bias,
                              return_sequence=True)
    w = dict(zip(layer.weight_names, layer.get_weights()))
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    h0 = np.random.default_rng(1).standard_normal((2, 5))
    ref, _ = np_sequence(name, w, x, h0=h0)
    got = layer(x.astype(np.float32), initial_state=mx.array(h0.astype(np.float32)))
    np.testing.assert_allclose(_np(got), ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", CELLS)
def test_cells_match_documented_equations(name):
    mx.random.seed(4)
    cell = getattr(nn, name)([3, 5], bias_initializer="normal")
    w = cell_to_sequence_weights(name, cell.get_weights(), 3, 5)
    rng = np.random.default_rng(2)
    x, h0, c0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 5)), \
        rng.standard_normal((2, 5))
    f32 = lambda a: mx.array(a.astype(np.float32))  # noqa: E731
    if name == "LSTMCell":
        hs, c_ref = np_sequence("LSTM", w, x[:, None], h0, c0)
        h_ref = hs[:, 0]
        out, (h, c) = cell(f32(x), (f32(h0), f32(c0)))
        np.testing.assert_allclose(_np(c), c_ref, rtol=2e-5, atol=2e-6)
        np.testing.assert_array_equal(_np(out), _np(h))
    else:
        h_ref = np_sequence(name[:-4], w, x[:, None], h0)[0][:, 0]
        res = cell(f32(x), f32(h0))
        out = res if name == "RNNCell" else res[0]
        if name == "GRUCell":
            np.testing.assert_array_equal(_np(res[0]), _np(res[1]))
        h = out
    np.testing.assert_allclose(_np(h), h_ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", CELLS)
def test_cell_is_one_step_of_the_sequence_layer(name):
    """decisions.md 22: the cells share the sequence layers' step (GRUCell's reset gate
    is used)."""
    mx.random.seed(5)
    cell = getattr(nn, name)([3, 4], bias_initializer="normal")
    seq = getattr(nn, name[:-4])(4, 3)
    w = cell_to_sequence_weights(name, cell.get_weights(), 3, 4)
    seq.set_weights([w[n] for n in seq.weight_names])
    x, h0 = mx.random.normal((2, 3)), mx.random.normal((2, 4))
    got = cell(x, h0)
    want = seq(x[:, None], initial_state=h0)
    got = got if name == "RNNCell" else got[0]
    np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6, atol=1e-6)


# -- weights ------------------------------------------------------------------------------
def test_use_bias_false_drops_the_biases():
    assert nn.LSTM(4, 3, use_bias=False).weight_names == list(_gates("ifoc", 3, 4, bias=False))
    assert nn.GRUCell([3, 4], use_bias=False).weight_names == ["weight"]


def test_storage_is_fused_and_note_names_are_views():
    layer = nn.LSTM(4, 3)
    stored = dict(tree_flatten(layer.parameters()))
    assert {k: v.shape for k, v in stored.items()} == {
        "kernel": (3, 16), "recurrent_kernel": (4, 16), "bias": (16,)}
    np.testing.assert_array_equal(_np(layer.weight_f2), _np(layer.recurrent_kernel[:, 4:8]))
    assert layer.count_params() == 3 * 16 + 4 * 16 + 16


def test_update_accepts_note_names():
    """``update`` with Note names (as the conformance engine and ``param`` users do)
    rewrites only those gate blocks of the fused storage."""
    layer = nn.LSTM(4, 3)
    before = _np(layer.kernel)
    layer.update({"weight_o1": mx.ones((3, 4))})
    after = _np(layer.kernel)
    np.testing.assert_array_equal(after[:, 8:12], 1.0)
    np.testing.assert_array_equal(np.delete(after, range(8, 12), 1),
                                  np.delete(before, range(8, 12), 1))
    layer.update(layer.trainable_parameters())  # stored names still work
    with pytest.raises(ValueError, match="nope"):
        layer.update({"nope": mx.ones(3)})


@pytest.mark.parametrize("name,shape,bound", [
    ("GRU", None, np.sqrt(6 / (30 + 40))),  # per-gate [in, H] fans
    ("GRUCell", [30, 40], np.sqrt(6 / (70 + 120))),  # joint [in + H, 3H] fans
    ("LSTMCell", [30, 40], np.sqrt(6 / (70 + 160))),
])
def test_xavier_uses_notes_fans(name, shape, bound):
    mx.random.seed(7)
    layer = getattr(nn, name)(shape) if shape else getattr(nn, name)(40, 30)
    w = layer.get_weights()[0]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound


def test_initializers_by_name():
    layer = nn.LSTM(4, 3, weight_initializer="zeros", bias_initializer="ones")
    assert all((w == 0).all() for w in layer.get_weights()[:8])
    assert all((w == 1).all() for w in layer.get_weights()[8:])


# -- build, state, modes ------------------------------------------------------------------
@pytest.mark.parametrize("name", SEQ)
def test_stateless_across_calls(name):
    mx.random.seed(8)
    layer = getattr(nn, name)(4, 3)
    x = mx.random.normal((2, 5, 3))
    a = _np(layer(x))
    layer(mx.random.normal((7, 2, 3)))  # another batch size in between
    np.testing.assert_array_equal(_np(layer(x)), a)
    h0 = mx.random.normal((2, 4))
    assert not np.allclose(_np(layer(x, initial_state=h0)), a)
    np.testing.assert_array_equal(_np(layer(x, initial_state=mx.zeros((2, 4)))), a)


def test_lstm_initial_state_forms():
    mx.random.seed(9)
    layer = nn.LSTM(4, 3)
    x, h0, c0 = mx.random.normal((2, 5, 3)), mx.random.normal((2, 4)), mx.random.normal((2, 4))
    single = _np(layer(x, initial_state=h0))
    np.testing.assert_array_equal(single, _np(layer(x, initial_state=(h0, mx.zeros((2, 4))))))
    np.testing.assert_array_equal(single, _np(layer(x, initial_state=[h0])))
    assert not np.allclose(_np(layer(x, initial_state=(h0, c0))), single)
    cell = nn.LSTMCell([3, 4])
    out, (h, c) = cell(x[:, 0], h0)
    out2, (h2, c2) = cell(x[:, 0], (h0, mx.zeros((2, 4))))
    np.testing.assert_array_equal(_np(c), _np(c2))
    _, (_, c3) = cell(x[:, 0], (h0, c0))
    assert not np.allclose(_np(c3), _np(c))
    out0, _ = cell(x[:, 0])  # state=None: zeros
    np.testing.assert_array_equal(_np(out0), _np(cell(x[:, 0], mx.zeros((2, 4)))[0]))


@pytest.mark.parametrize("name", SEQ)
def test_return_sequence(name):
    mx.random.seed(10)
    a = getattr(nn, name)(4, 3, return_sequence=True)
    b = getattr(nn, name)(4, 3)
    b.set_weights(a.get_weights())
    x = mx.random.normal((2, 6, 3))
    seq = a(x)
    assert seq.shape == (2, 6, 4)
    np.testing.assert_array_equal(_np(seq[:, -1]), _np(b(x)))


# -- activations --------------------------------------------------------------------------
def test_activation_defaults_and_forms():
    assert nn.RNN(4).act is mx.tanh  # Keras SimpleRNN's default
    g = nn.GRU(4)
    assert g.act is mx.tanh and g.ract is mx.sigmoid
    mx.random.seed(11)
    lin = nn.RNN(4, 3, activation=None, return_sequence=True)
    w = dict(zip(lin.weight_names, lin.get_weights()))
    x = np.random.default_rng(3).standard_normal((2, 3, 3))
    ref, _ = np_sequence("RNN", w, x, act=lambda v: v)
    np.testing.assert_allclose(_np(lin(x.astype(np.float32))), ref, rtol=2e-5, atol=2e-6)
    custom = nn.LSTM(4, 3, activation=mx.sin, recurrent_activation="hard_sigmoid",
                     return_sequence=True)
    w = dict(zip(custom.weight_names, custom.get_weights()))
    ref, _ = np_sequence("LSTM", w, x, act=np.sin,
                         ract=lambda v: np.clip(0.2 * v + 0.5, 0, 1))
    np.testing.assert_allclose(_np(custom(x.astype(np.float32))), ref, rtol=2e-5, atol=2e-6)


# -- the scan core ------------------------------------------------------------------------
# the scan's options (issue 14): a mask (B, T), and Keras 3's reset-after GRU step
OPTIONS = [("rnn", ""), ("rnn", "mask"), ("gru", ""), ("gru", "mask"), ("gru", "reset_after"),
           ("gru", "reset_after+mask"), ("lstm", ""), ("lstm", "mask")]


@pytest.mark.parametrize("kind,option", OPTIONS, ids=[f"{k}-{o or 'plain'}" for k, o in OPTIONS])
@pytest.mark.parametrize("acts", [(mx.tanh, mx.sigmoid), (mnn.relu, mx.sigmoid),
                                  (mx.sin, lambda v: mx.softmax(v, axis=-1))])
@pytest.mark.parametrize("compiled,fast", [(False, False), (True, True)])
def test_fused_scan_matches_autodiff_oracle(kind, option, acts, compiled, fast):
    """Outputs and gradients (inputs, recurrent kernel, h0, c0, the reset-after GRU's
    recurrent bias) of the custom-VJP core against MLX's autodiff through the plain loop,
    with and without a mask (rows masked from the start, in the middle and at the end)."""
    k = S.KINDS[kind]
    mx.random.seed(12)
    b, t, h = 4, 6, 5
    xp, wh = mx.random.normal((b, t, k * h)), 0.4 * mx.random.normal((h, k * h))
    h0, c0 = mx.random.normal((b, h)), mx.random.normal((b, h))
    bh = mx.random.normal((k * h,))
    ct = mx.random.normal((b, t, h))
    mask = mx.array([[0, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 0], [1, 0, 0, 1, 1, 1],
                     [0, 0, 0, 0, 0, 0]], mx.bool_) if "mask" in option else None
    reset_after = "reset_after" in option

    def loss(xp, wh, h0, c0, bh, **kw):
        hs, c = S.scan(kind, xp, wh, h0, c0 if kind == "lstm" else None, *acts, mask=mask,
                       reset_after=reset_after, recurrent_bias=bh if reset_after else None,
                       **kw)
        out = (hs * ct).sum()
        return out + (c.sum() if c is not None else 0)

    args = (xp, wh, h0, c0, bh)
    ref = mx.value_and_grad(lambda *a: loss(*a, fused=False), argnums=(0, 1, 2, 3, 4))(*args)
    got = mx.value_and_grad(lambda *a: loss(*a, compiled=compiled, fast=fast),
                            argnums=(0, 1, 2, 3, 4))(*args)
    np.testing.assert_allclose(_np(got[0]), _np(ref[0]), rtol=1e-5)
    for g, r in zip(got[1], ref[1]):
        np.testing.assert_allclose(_np(g), _np(r), rtol=2e-5, atol=2e-5)
    if mask is not None:  # a masked step has no input gradient
        assert not np.any(_np(got[1][0])[~np.array(mask)])


def test_fast_activations_are_accurate():
    x = np.concatenate([np.linspace(-90, 90, 20001), np.linspace(-10, 10, 40001)])
    x = x.astype(np.float32)
    for fast, ref in ((F.fast_tanh, np.tanh(x.astype(np.float64))),
                      (F.fast_sigmoid, 1 / (1 + np.exp(-x.astype(np.float64))))):
        y = np.array(mx.compile(fast)(mx.array(x)), dtype=np.float64)
        assert np.abs(y - ref).max() < 1.2e-7
        assert -1 <= y.min() and y.max() <= 1


def test_scan_policy():
    cpu = mx.default_device() == mx.cpu
    assert S.policy(mx.float32, "none") == (cpu, cpu)
    assert S.policy(mx.float32, "compile") == (False, cpu)
    assert S.policy(mx.float32, "grad") == (False, False)
    assert S.policy(mx.float16, "none") == (False, False)


def test_tracing_probe():
    x = mx.ones((2, 3))
    S.tracing(x)  # the probe's first trace
    assert S.tracing(x) == "none"
    seen = []

    def f(x):
        seen.append(S.tracing(x))
        return (x * x).sum()

    mx.grad(f)(x)
    mx.value_and_grad(f)(x)
    mx.compile(f)(x)
    mx.compile(mx.grad(f))(x)
    assert seen == ["grad", "grad", "compile", "compile"]
    # A plain call right after traced ones is untraced again (MLX retraces the probe once
    # for it; the first inference call after a training step must take the fast path).
    mx.grad(f)(x)
    assert S.tracing(x) == "none" and S.tracing(x) == "none"


@pytest.mark.parametrize("name", SEQ)
def test_same_result_inside_and_outside_transforms(name):
    """The policy picks different code paths untraced, under grad and under compile; the
    outputs agree (float32 rounding of the fast activations aside)."""
    mx.random.seed(14)
    layer = getattr(nn, name)(5, 3, return_sequence=True)
    x = mx.random.normal((2, 6, 3))
    plain = _np(layer(x))
    graded = []
    mx.grad(lambda x: (graded.append(layer(x)) or graded[-1]).sum())(x)
    compiled = mx.compile(lambda x: layer(x))(x)
    for y in (graded[0], compiled):
        np.testing.assert_allclose(_np(y), plain, rtol=1e-5, atol=1e-6)


# -- training ------------------------------------------------------------------------------
def test_gradients_reach_stored_weights_and_initial_state():
    mx.random.seed(13)
    layer = nn.LSTM(4, 3, return_sequence=True)
    x, h0, c0 = mx.random.normal((2, 5, 3)), mx.random.normal((2, 4)), mx.random.normal((2, 4))

    def loss(h0, c0):
        return (layer(x, initial_state=(h0, c0)) ** 2).sum()

    gh, gc = mx.grad(loss, argnums=(0, 1))(h0, c0)
    assert float(mx.abs(gh).sum()) > 0 and float(mx.abs(gc).sum()) > 0
    lossm = mnn.value_and_grad(layer, lambda m, x: (m(x) ** 2).sum())
    opt = optim.SGD(learning_rate=0.05)
    first, grads = lossm(layer, x)
    assert {k for k, _ in tree_flatten(grads)} == {"kernel", "recurrent_kernel", "bias"}
    for _ in range(5):
        val, grads = lossm(layer, x)
        opt.update(layer, grads)
        mx.eval(layer.parameters())
    assert float(lossm(layer, x)[0]) < float(first)


@pytest.mark.parametrize("name", SEQ)
def test_compiled_training_step_gradients(name):
    """Inside an outer mx.compile the scan runs the fast activations (fused by that
    compile); the gradients match the uncompiled ones."""
    mx.random.seed(15)
    layer = getattr(nn, name)(5, 3, return_sequence=True)
    x = mx.random.normal((2, 6, 3))

    def loss(params, x):
        old = layer.trainable_parameters()
        layer.update(params)
        out = (layer(x) ** 2).sum()
        layer.update(old)
        return out

    params = layer.trainable_parameters()
    ref = mx.value_and_grad(loss)(params, x)
    got = mx.compile(mx.value_and_grad(loss))(params, x)
    np.testing.assert_allclose(_np(got[0]), _np(ref[0]), rtol=1e-5)
    for (k, g), (_, r) in zip(tree_flatten(got[1]), tree_flatten(ref[1])):
        np.testing.assert_allclose(_np(g), _np(r), rtol=1e-4, atol=1e-5, err_msg=k)
