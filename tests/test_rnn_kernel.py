"""The C++ recurrences (``_core.rnn_scan``: simple RNN, GRU and LSTM with tanh/sigmoid
gates, float32) against the plain MLX loop of :mod:`mlxnote.kernels.scan` (its oracle,
differentiated by MLX's autodiff): forward, every gradient, under ``mx.compile``, with one
thread and several, and their errors."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxnote.kernels import extension, scan

EXT = extension.module()
pytestmark = pytest.mark.skipif(EXT is None or "rnn_scan" not in EXT.KERNELS,
                                reason=f"extension not loaded: {extension.reason()}")

KINDS = {"rnn": 1, "gru": 3, "lstm": 4}


def _inputs(kind: str, b: int, t: int, h: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = KINDS[kind]
    xp = rng.standard_normal((b, t, k * h)).astype(np.float32)
    wh = (rng.standard_normal((h, k * h)) / np.sqrt(h)).astype(np.float32)
    h0 = rng.standard_normal((b, h)).astype(np.float32)
    c0 = rng.standard_normal((b, h)).astype(np.float32)
    return [mx.array(a) for a in (xp, wh, h0, c0)]


def _ours(kind):
    def f(xp, wh, h0, c0):
        outs = EXT.rnn_scan(kind, xp, wh, h0, c0 if kind == "lstm" else None)
        return outs[0], outs[1][:, -1] if kind == "lstm" else None
    return f


def _oracle(kind):
    def f(xp, wh, h0, c0):
        return scan.scan(kind, xp, wh, h0, c0 if kind == "lstm" else None, fused=False)
    return f


def _loss(f, b, t, h):
    rng = np.random.default_rng(1)
    wy = mx.array(rng.standard_normal((b, t, h)).astype(np.float32))
    wc = mx.array(rng.standard_normal((b, h)).astype(np.float32))

    def loss(*args):
        hs, c = f(*args)
        out = (hs * wy).sum()
        return out if c is None else out + (c * wc).sum()
    return loss


def _close(a, b, tol=2e-6):
    a, b = np.array(a), np.array(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max())))


SHAPES = [(1, 1, 1), (3, 5, 7), (2, 9, 16), (40, 3, 130)]  # the last splits rows over threads


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("b,t,h", SHAPES)
def test_forward_and_gradients_match_the_plain_loop(kind, b, t, h):
    args = _inputs(kind, b, t, h)
    hs, c = _ours(kind)(*args)
    rhs, rc = _oracle(kind)(*args)
    _close(hs, rhs)
    if kind == "lstm":
        _close(c, rc)
    argnums = (0, 1, 2, 3) if kind == "lstm" else (0, 1, 2)
    ours = mx.grad(_loss(_ours(kind), b, t, h), argnums=argnums)(*args)
    ref = mx.grad(_loss(_oracle(kind), b, t, h), argnums=argnums)(*args)
    for g, r in zip(ours, ref):
        _close(g, r, 1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_compiled_gradient_and_one_thread_agree(kind):
    args = _inputs(kind, 40, 4, 130, seed=3)
    grad = mx.grad(_loss(_ours(kind), 40, 4, 130), argnums=(0, 1))
    want = grad(*args)
    for g, r in zip(mx.compile(grad)(*args), want):
        _close(g, r, 1e-6)
    threads = EXT.threads()
    EXT.set_threads(1)
    try:
        for g, r in zip(grad(*args), want):
            _close(g, r, 1e-6)
    finally:
        EXT.set_threads(threads)


def test_only_the_state_that_is_used_gets_a_gradient():
    # The last cell state alone (no hidden-state loss): the cotangent of hseq is zero.
    xp, wh, h0, c0 = _inputs("lstm", 2, 4, 8)
    g = mx.grad(lambda c0: _ours("lstm")(xp, wh, h0, c0)[1].sum())(c0)
    r = mx.grad(lambda c0: _oracle("lstm")(xp, wh, h0, c0)[1].sum())(c0)
    _close(g, r, 1e-5)


def test_planted_error_in_the_oracle_is_caught():
    # The comparison can fail: a GRU oracle with z and 1 - z swapped differs.
    args = _inputs("gru", 3, 5, 7)
    hs, _ = _ours("gru")(*args)
    xp, wh, h0, _ = args
    h = h0
    for s in range(xp.shape[1]):
        x = xp[:, s]
        rz = mx.sigmoid(x[:, :14] + h @ wh[:, :14])
        r, z = rz[:, :7], rz[:, 7:]
        hh = mx.tanh(x[:, 14:] + (r * h) @ wh[:, 14:])
        h = (1 - z) * h + z * hh  # planted
    with pytest.raises(AssertionError):
        _close(hs[:, -1], h)


def test_second_order_gradients_say_what_to_do():
    xp, wh, h0, c0 = _inputs("lstm", 2, 3, 4)
    gg = mx.grad(lambda w: mx.grad(_loss(_ours("lstm"), 2, 3, 4), argnums=1)(
        xp, w, h0, c0).sum())
    with pytest.raises(ValueError, match="second-order gradients of the lstm.*MLXNOTE_EXT=0"):
        mx.eval(gg(wh))


@pytest.mark.parametrize("call,match", [
    (lambda a: EXT.rnn_scan("lstm", a[0], a[1], a[2]), "the lstm needs c0"),
    (lambda a: EXT.rnn_scan("elman", a[0], a[1], a[2]), "kind 'rnn', 'gru' or 'lstm'"),
    (lambda a: EXT.rnn_scan("gru", a[0], a[1], a[2]), "do not fit a gru with 3 gate blocks"),
    (lambda a: EXT.rnn_scan("lstm", a[0].astype(mx.float16), a[1], a[2], a[3]),
     "float32 inputs only"),
    (lambda a: EXT.rnn_scan("lstm", a[0][:0], a[1], a[2][:0], a[3][:0]), "empty batch"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(_inputs("lstm", 2, 3, 4))
