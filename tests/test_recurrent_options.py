"""Keras's recurrent options (issue 14, item 3): ``reset_after=`` on GRU/GRUCell, ``mask=``
and ``go_backwards=`` on the sequence layers, and ``Bidirectional``.

The contracts run through tests/layer_contract.py; NumPy implementations of Keras's
equations and masking rules, on Note-layout weights, pin the math; the layers' code paths
(untraced, under grad, under compile) agree.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params
from test_recurrent import LAZY, RNN_WEIGHTS, _gates, _np, np_sequence, sig

from mlxnote import nn
from mlxnote._validation import owned_by
from mlxnote.nn import Layer

MASK = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], bool)


def _bi(dtype="float32", trainable=True, **kw):
    """``Bidirectional(GRU(4, 3, dtype=dtype, trainable=trainable), **kw)``: the contract's
    factory, whose argument errors (the GRU's dtype and trainable) name it."""
    with owned_by("Bidirectional", (Layer,)):
        inner = nn.GRU(4, 3, return_sequence=True, dtype=dtype, trainable=trainable)
    return nn.Bidirectional(inner, **kw)


def _bi_lstm(merge_mode="ave", lazy=False, dtype="float32"):
    with owned_by("Bidirectional", (Layer,)):
        inner = nn.LSTM(4, None if lazy else 3, dtype=dtype)
    return nn.Bidirectional(inner, merge_mode=merge_mode)


CONTRACTS = [
    Contract(nn.GRU, dict(output_size=4, input_size=3, reset_after=True, return_sequence=True),
             (2, 5, 3), id="GRU-reset_after", lazy=LAZY,
             weights={**_gates("rzh", bias=False), **{f"bias_{g}": (2, 4) for g in "rzh"}},
             bad_args=[(dict(reset_after="yes"), TypeError, "reset_after"),
                       (dict(go_backwards=1), TypeError, "go_backwards")],
             bad_inputs=[((2, 5, 3), ValueError, "mask", dict(mask=mx.ones((2, 4), mx.bool_))),
                         ((2, 5, 3), TypeError, "mask", dict(mask=np.full((2, 5), "a")))]),
    Contract(nn.GRUCell, dict(weight_shape=[3, 4], reset_after=True), [(2, 3), (2, 4)],
             id="GRUCell-reset_after", weights={"weight": (7, 12), "bias": (2, 12)},
             bad_args=[(dict(reset_after=None), TypeError, "reset_after")]),
    Contract(nn.LSTM, dict(output_size=4, input_size=3, go_backwards=True, return_sequence=True),
             (2, 5, 3), id="LSTM-go_backwards-mask", lazy=LAZY, weights=_gates("ifoc"),
             call_kwargs=dict(mask=mx.array(MASK)),
             bad_args=[(dict(go_backwards="no"), TypeError, "go_backwards")],
             bad_inputs=[((3, 5, 3), ValueError, "mask")]),
    Contract(nn.RNN, dict(output_size=4, input_size=3), (2, 5, 3), id="RNN-mask",
             call_kwargs=dict(mask=MASK), weights=RNN_WEIGHTS),
    Contract(_bi, dict(), (2, 5, 3), id="Bidirectional",
             weights={f"{d}_layer.{n}": s for d in ("forward", "backward")
                      for n, s in _gates("rzh").items()},
             bad_args=[(dict(merge_mode="max"), ValueError, "merge_mode"),
                       (dict(merge_mode=1), TypeError, "merge_mode"),
                       (dict(backward_layer=nn.GRU(4, 3)), ValueError, "backward_layer")],
             bad_inputs=[((2, 5, 2), ValueError, "data"), ((2, 5), ValueError, "data"),
                         ((2, 0, 3), ValueError, "data"),
                         ((2, 5, 3), ValueError, "mask", dict(mask=np.ones((2, 3), bool))),
                         ((2, 5, 3), TypeError, "initial_state",
                          dict(initial_state=[mx.zeros((2, 4))] * 3)),
                         ((2, 5, 3), ValueError, "initial_state",
                          dict(initial_state=[mx.zeros((2, 5))] * 2))]),
    Contract(_bi_lstm, dict(), (2, 5, 3), id="Bidirectional-LSTM-lazy", lazy=dict(lazy=True),
             call_kwargs=dict(mask=MASK)),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- Keras's equations and masking rules, in NumPy ----------------------------------------
def np_gru_after(w, x, h0):
    """Keras 3's GRU (reset_after=True) on Note's layout: biases [2, H] per gate."""
    h, out = h0, []
    for s in range(x.shape[1]):
        xt = x[:, s]
        g = {k: xt @ w[f"weight_{k}1"] + w[f"bias_{k}"][0] for k in "rzh"}
        u = {k: h @ w[f"weight_{k}2"] + w[f"bias_{k}"][1] for k in "rzh"}
        r, z = sig(g["r"] + u["r"]), sig(g["z"] + u["z"])
        h = z * h + (1 - z) * np.tanh(g["h"] + r * u["h"])
        out.append(h)
    return np.stack(out, 1)


def np_masked(name, w, x, mask, h0, zero_output=False):
    """Keras's rule: a masked step carries the state and the previous output (zeros
    before any counted step, or zeros at every masked step with ``zero_output``)."""
    h, c = h0, np.zeros_like(h0)
    prev, out = np.zeros_like(h0), []
    for s in range(x.shape[1]):
        hs, cs = np_sequence(name, w, x[:, s:s + 1], h, c)
        m = mask[:, s:s + 1]
        h, c = np.where(m, hs[:, 0], h), np.where(m, cs, c)
        prev = np.where(m, h, 0.0 if zero_output else prev)
        out.append(prev)
    return np.stack(out, 1)


def _weights(layer):
    return dict(zip(layer.weight_names, layer.get_weights()))


def test_gru_reset_after_matches_keras_equations():
    mx.random.seed(1)
    layer = nn.GRU(5, 3, reset_after=True, bias_initializer="normal", return_sequence=True)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    h0 = np.random.default_rng(1).standard_normal((2, 5))
    got = layer(x.astype(np.float32), initial_state=mx.array(h0.astype(np.float32)))
    np.testing.assert_allclose(_np(got), np_gru_after(_weights(layer), x, h0), rtol=2e-5,
                               atol=2e-6)


def test_gru_cell_reset_after_is_one_step_of_the_layer():
    mx.random.seed(2)
    cell = nn.GRUCell([3, 4], reset_after=True, bias_initializer="normal")
    seq = nn.GRU(4, 3, reset_after=True)
    w, b = cell.get_weights()
    per_gate = []
    for j in range(3):
        per_gate += [w[:3, j * 4:(j + 1) * 4], w[3:, j * 4:(j + 1) * 4]]
    seq.set_weights(per_gate + [b[:, j * 4:(j + 1) * 4] for j in range(3)])
    x, h0 = mx.random.normal((2, 3)), mx.random.normal((2, 4))
    np.testing.assert_allclose(_np(cell(x, h0)[0]), _np(seq(x[:, None], initial_state=h0)),
                               rtol=1e-6, atol=1e-6)
    assert nn.GRU(4, 3).bias.shape == (12,) and seq.bias.shape == (2, 12)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("return_sequence", [False, True])
def test_masks_follow_keras(name, return_sequence):
    mx.random.seed(3)
    layer = getattr(nn, name)(4, 3, bias_initializer="normal", return_sequence=return_sequence)
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((3, 5, 3)), rng.standard_normal((3, 4))
    mask = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    want = np_masked(name, _weights(layer), x, mask, h0)
    got = _np(layer(x.astype(np.float32), initial_state=mx.array(h0.astype(np.float32)),
                    mask=mask))
    np.testing.assert_allclose(got, want if return_sequence else want[:, -1], rtol=2e-5,
                               atol=2e-6)
    assert not got[2].any()  # every step masked: zeros (not the initial state), as Keras
    ones = layer(x.astype(np.float32), mask=np.ones((3, 5), bool))
    np.testing.assert_array_equal(_np(ones), _np(layer(x.astype(np.float32))))
    numeric = layer(x.astype(np.float32), initial_state=mx.array(h0.astype(np.float32)),
                    mask=mask.astype(np.int32))  # 0/1 masks read as booleans
    np.testing.assert_array_equal(_np(numeric), got)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_go_backwards_is_the_reversed_sequence(name):
    """Keras: the steps run from last to first, and a returned sequence is in that order."""
    mx.random.seed(4)
    back = getattr(nn, name)(4, 3, go_backwards=True, return_sequence=True)
    fwd = getattr(nn, name)(4, 3, return_sequence=True)
    fwd.set_weights(back.get_weights())
    x = mx.random.normal((2, 6, 3))
    mask = mx.array([[1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 0]], mx.bool_)
    np.testing.assert_array_equal(_np(back(x)), _np(fwd(x[:, ::-1])))
    np.testing.assert_array_equal(_np(back(x, mask=mask)), _np(fwd(x[:, ::-1],
                                                                   mask=mask[:, ::-1])))
    last = getattr(nn, name)(4, 3, go_backwards=True)
    last.set_weights(back.get_weights())
    np.testing.assert_array_equal(_np(last(x)), _np(back(x)[:, -1]))


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_options_agree_inside_and_outside_transforms(name):
    """Untraced (compiled loop, fast activations), under grad and under compile."""
    mx.random.seed(5)
    kw = dict(reset_after=True) if name == "GRU" else {}
    layer = getattr(nn, name)(5, 3, return_sequence=True, go_backwards=True, **kw)
    x = mx.random.normal((2, 6, 3))
    mask = mx.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1]], mx.bool_)
    plain = _np(layer(x, mask=mask))
    graded = []
    mx.grad(lambda x: (graded.append(layer(x, mask=mask)) or graded[-1]).sum())(x)
    compiled = mx.compile(lambda x, m: layer(x, mask=m))(x, mask)
    for y in (graded[0], compiled):
        np.testing.assert_allclose(_np(y), plain, rtol=1e-5, atol=1e-6)


def test_masked_empty_batch_and_reduced_dtypes():
    layer = nn.GRU(4, 3, reset_after=True, return_sequence=True)
    out = layer(mx.zeros((0, 5, 3)), mask=mx.zeros((0, 5), mx.bool_))
    assert out.shape == (0, 5, 4)
    x = mx.random.normal((2, 5, 3))
    ref = _np(layer(x, mask=MASK))
    for dt in ("float16", "bfloat16"):
        low = nn.GRU(4, 3, reset_after=True, return_sequence=True, dtype=dt)
        low.set_weights(layer.get_weights())
        np.testing.assert_allclose(_np(low(x, mask=MASK)), ref, atol=5e-2)


# -- Bidirectional --------------------------------------------------------------------------
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merges_the_two_directions(merge_mode):
    mx.random.seed(6)
    layer = nn.GRU(4, 3, return_sequence=True)
    bi = nn.Bidirectional(layer, merge_mode=merge_mode)
    fwd, bwd = bi.forward_layer, bi.backward_layer
    assert fwd is not layer and bwd.go_backwards and not fwd.go_backwards
    np.testing.assert_array_equal(fwd.get_weights()[0], layer.get_weights()[0])  # a copy
    x = mx.random.normal((2, 5, 3))
    y, y_rev = _np(layer(x)), _np(bwd(x))[:, ::-1]
    want = {"concat": np.concatenate([y, y_rev], -1), "sum": y + y_rev, "mul": y * y_rev,
            "ave": (y + y_rev) / 2, None: (y, y_rev)}[merge_mode]
    got = bi(x)
    if merge_mode is None:
        np.testing.assert_array_equal(_np(got[0]), want[0])
        np.testing.assert_array_equal(_np(got[1]), want[1])
    else:
        np.testing.assert_allclose(_np(got), want, rtol=1e-6, atol=1e-7)
    assert bi.output_size == (8 if merge_mode == "concat" else 4)


def test_bidirectional_masks_states_and_backward_layer():
    mx.random.seed(7)
    bi = nn.Bidirectional(nn.LSTM(4, 3, return_sequence=True),
                          backward_layer=nn.GRU(2, 3, return_sequence=True, go_backwards=True))
    assert isinstance(bi.backward_layer, nn.GRU) and bi.output_size == 6
    x = mx.random.normal((2, 5, 3))
    out = _np(bi(x, mask=MASK))
    fwd = _np(bi.forward_layer(x, mask=MASK))
    bwd = _np(bi.backward_layer(x, mask=MASK))[:, ::-1]
    # Keras's Bidirectional sets zero_output_for_mask when returning sequences
    np.testing.assert_array_equal(out[..., :4], np.where(MASK[..., None], fwd, 0))
    np.testing.assert_array_equal(out[..., 4:], np.where(MASK[..., None], bwd, 0))
    pair = nn.Bidirectional(nn.LSTM(4, 3))
    h = [mx.random.normal((2, 4)) for _ in range(4)]  # [h_f, c_f, h_b, c_b]: Keras's halves
    np.testing.assert_array_equal(_np(pair(x, initial_state=h))[:, 4:],
                                  _np(pair.backward_layer(x, initial_state=h[2:])))
    last = nn.Bidirectional(nn.RNN(4, 3))
    np.testing.assert_array_equal(_np(last(x, mask=MASK))[:, :4],
                                  _np(last.forward_layer(x, mask=MASK)))
    with pytest.raises(ValueError, match=r"^Bidirectional: argument 'layer'"):
        nn.Bidirectional(nn.GRU(4, go_backwards=True))
    with pytest.raises(TypeError, match=r"^Bidirectional: argument 'layer'"):
        nn.Bidirectional(nn.GRUCell([3, 4]))
    with pytest.raises(ValueError, match=r"^Bidirectional: argument 'backward_layer'"):
        nn.Bidirectional(nn.GRU(4), merge_mode="sum",
                         backward_layer=nn.GRU(5, go_backwards=True))


def test_bidirectional_trains():
    mx.random.seed(8)
    import mlx.nn as mnn
    import mlx.optimizers as optim

    bi = nn.Bidirectional(nn.GRU(4, 3, reset_after=True))
    x = mx.random.normal((4, 5, 3))
    lossf = mnn.value_and_grad(bi, lambda m, x: (m(x, mask=MASK.repeat(2, 0)) ** 2).sum())
    first, _ = lossf(bi, x)
    opt = optim.SGD(learning_rate=0.05)
    for _ in range(5):
        _, grads = lossf(bi, x)
        opt.update(bi, grads)
        mx.eval(bi.parameters())
    assert float(lossf(bi, x)[0]) < float(first)
