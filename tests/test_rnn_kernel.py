"""The C++ recurrences (``_core.rnn_scan``: simple RNN, GRU (both reset orders) and LSTM
with tanh/sigmoid gates, float32, with and without a step mask) against the plain MLX loop
of :mod:`mlxnote.kernels.scan` (its oracle, differentiated by MLX's autodiff): forward,
every gradient, under ``mx.compile``, with one thread and several, and their errors."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import close, threads

from mlxnote.kernels import extension, scan

EXT = extension.module()


def _close(a, b, tol=2e-6):
    close(a, b, tol)

pytestmark = pytest.mark.skipif(EXT is None or "rnn_scan" not in EXT.KERNELS,
                                reason=f"extension not loaded: {extension.reason()}")

KINDS = {"rnn": 1, "gru": 3, "gru_after": 3, "lstm": 4}


def _inputs(kind: str, b: int, t: int, h: int, seed: int = 0):
    """xp, wh, h0 and the state: c0 (LSTM), the recurrent bias (reset-after GRU), else
    None."""
    rng = np.random.default_rng(seed)
    k = KINDS[kind]
    xp = rng.standard_normal((b, t, k * h)).astype(np.float32)
    wh = (rng.standard_normal((h, k * h)) / np.sqrt(h)).astype(np.float32)
    h0 = rng.standard_normal((b, h)).astype(np.float32)
    state = {"lstm": rng.standard_normal((b, h)), "gru_after": rng.standard_normal(k * h)}
    st = state.get(kind)
    return [mx.array(a) for a in (xp, wh, h0)] + [
        None if st is None else mx.array(st.astype(np.float32))]


def _mask(b: int, t: int, seed: int = 2) -> mx.array:
    """Random steps skipped, row 0 whole, the last row's first step skipped."""
    m = np.random.default_rng(seed).random((b, t)) > 0.35
    m[0] = True
    m[-1, 0] = False
    return mx.array(m)


def _ours(kind, mask=None):
    def f(xp, wh, h0, state):
        outs = EXT.rnn_scan(kind, xp, wh, h0, state, mask)
        return outs[0], outs[1][:, -1] if kind == "lstm" else None
    return f


def _oracle(kind, mask=None):
    base = "gru" if kind == "gru_after" else kind

    def f(xp, wh, h0, state):
        extra = {"reset_after": True, "recurrent_bias": state} if kind == "gru_after" else {}
        return scan.scan(base, xp, wh, h0, state if kind == "lstm" else None, fused=False,
                         mask=mask, **extra)
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



SHAPES = [(1, 1, 1), (3, 5, 7), (2, 9, 16), (40, 3, 130)]  # the last splits rows over threads


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("b,t,h", SHAPES)
@pytest.mark.parametrize("masked", [False, True], ids=["", "masked"])
def test_forward_and_gradients_match_the_plain_loop(kind, b, t, h, masked):
    args = _inputs(kind, b, t, h)
    mask = _mask(b, t) if masked else None
    hs, c = _ours(kind, mask)(*args)
    rhs, rc = _oracle(kind, mask)(*args)
    _close(hs, rhs)
    if kind == "lstm":
        _close(c, rc)
    argnums = (0, 1, 2, 3) if args[3] is not None else (0, 1, 2)
    ours = mx.grad(_loss(_ours(kind, mask), b, t, h), argnums=argnums)(*args)
    ref = mx.grad(_loss(_oracle(kind, mask), b, t, h), argnums=argnums)(*args)
    for g, r in zip(ours, ref):
        _close(g, r, 1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_compiled_gradient_and_one_thread_agree(kind):
    args = _inputs(kind, 40, 4, 130, seed=3)
    grad = mx.grad(_loss(_ours(kind), 40, 4, 130), argnums=(0, 1))
    want = grad(*args)
    for g, r in zip(mx.compile(grad)(*args), want):
        _close(g, r, 1e-6)
    with threads(EXT, 1):
        for g, r in zip(grad(*args), want):
            _close(g, r, 1e-6)


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
    (lambda a: EXT.rnn_scan("gru_after", a[0][..., :12], a[1][:, :12], a[2]),
     "the reset-after gru needs its recurrent bias"),
    (lambda a: EXT.rnn_scan("elman", a[0], a[1], a[2]), "kind 'rnn', 'gru', 'gru_after'"),
    (lambda a: EXT.rnn_scan("lstm", a[0], a[1], a[2], a[3], mx.ones((2, 3))),
     "a boolean mask"),
    (lambda a: EXT.rnn_scan("gru", a[0], a[1], a[2]), "do not fit a gru with 3 gate blocks"),
    (lambda a: EXT.rnn_scan("lstm", a[0].astype(mx.float16), a[1], a[2], a[3]),
     "float32 inputs only"),
    (lambda a: EXT.rnn_scan("lstm", a[0][:0], a[1], a[2][:0], a[3][:0]), "empty batch"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(_inputs("lstm", 2, 3, 4))


# -- through the layers ----------------------------------------------------------------
LAYERS = [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": True}), ("RNN", {})]


def _layer(name, kw):
    from mlxnote import nn
    mx.random.seed(4)
    return getattr(nn, name)(6, 5, **kw)


@pytest.mark.parametrize("name,kw", LAYERS, ids=lambda v: str(v))
def test_layers_take_the_kernel_and_match_the_mlx_scan(name, kw, monkeypatch):
    layer = _layer(name, kw)
    x = mx.array(np.random.default_rng(5).standard_normal((3, 7, 5)).astype(np.float32))
    mask = _mask(3, 7)
    calls = []
    real = EXT.rnn_scan

    def spy(*a):
        calls.append(a[0])
        return real(*a)

    def run(on):
        with extension.enabled(on):
            out = layer(x, mask=mask)
            grads = mx.grad(lambda m: (m(x, mask=mask) ** 2).sum())(layer)
            return out, grads
    monkeypatch.setattr(EXT, "rnn_scan", spy)
    out, grads = run(True)
    assert calls and set(calls) == {"gru_after" if kw else name.lower()}
    calls.clear()
    ref, ref_grads = run(False)
    assert not calls
    _close(out, ref)
    for k in ref_grads:
        _close(grads[k], ref_grads[k], 1e-5)


def test_a_compiled_training_step_runs_through_the_kernel(monkeypatch):
    import mlx.nn as mnn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    x = mx.array(np.random.default_rng(6).standard_normal((4, 6, 5)).astype(np.float32))
    calls = []
    real = EXT.rnn_scan
    monkeypatch.setattr(EXT, "rnn_scan", lambda *a: calls.append(a[0]) or real(*a))

    def train(on):
        model = _layer("LSTM", {})
        opt = optim.SGD(learning_rate=0.5)
        state = [model.state, opt.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(x):
            loss, g = mnn.value_and_grad(model, lambda m, x: (m(x) ** 2).mean())(model, x)
            opt.update(model, g)
            return loss
        with extension.enabled(on):
            losses = [step(x).item() for _ in range(4)]
        return losses, dict(tree_flatten(model.parameters()))
    ours, p_ours = train(True)
    assert calls
    ref, p_ref = train(False)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert ours[-1] < ours[0]
    for k in p_ref:
        _close(p_ours[k], p_ref[k], 1e-5)
