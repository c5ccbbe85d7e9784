"""The C++ layer norm (``_core.layer_norm``) against the plain MLX composition of
:func:`mlxnote.kernels.norm.layer_norm` (``impl='plain'``, differentiated by MLX's
autodiff): forward, every gradient, grad of grad, jvp, vmap (weights mapped or not) and
compile, with and without gamma/beta, one thread and several; and the layer through it."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxnote.kernels import extension, norm

EXT = extension.module()
pytestmark = pytest.mark.skipif(EXT is None or "layer_norm" not in EXT.KERNELS,
                                reason=f"extension not loaded: {extension.reason()}")

rng = np.random.default_rng(0)
X = mx.array((2 * rng.standard_normal((3, 4, 37)) + 1).astype(np.float32))
G = mx.array(rng.standard_normal(37).astype(np.float32))
B = mx.array(rng.standard_normal(37).astype(np.float32))
CT = mx.array(rng.standard_normal(X.shape).astype(np.float32))
AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def _fns(has_g, has_b):
    def pick(g, b):
        return (g if has_g else None), (b if has_b else None)

    def ours(x, g, b):
        return EXT.layer_norm(x, *pick(g, b), 1e-5)

    def ref(x, g, b):
        return norm.layer_norm(x, *pick(g, b), 1e-5, impl="plain")
    return ours, ref


def _close(a, b, tol=3e-6):
    a, b = np.array(a), np.array(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max())))


def _loss(f):
    return lambda x, g, b: (f(x, g, b) * CT).sum()


@pytest.mark.parametrize("has_g,has_b", AFFINE)
def test_forward_gradients_and_transforms_match_the_composition(has_g, has_b):
    ours, ref = _fns(has_g, has_b)
    _close(ours(X, G, B), ref(X, G, B))
    for o, r in zip(mx.grad(_loss(ours), argnums=(0, 1, 2))(X, G, B),
                    mx.grad(_loss(ref), argnums=(0, 1, 2))(X, G, B)):
        _close(o, r)

    def second(f):  # grad of grad, through the gradient primitive's own vjp
        def h(x, g, b):
            dx, dg = mx.grad(_loss(f), argnums=(0, 1))(x, g, b)
            return (dx ** 2).sum() + (dg ** 2).sum()
        return mx.grad(h, argnums=(0, 1, 2))(X, G, B)
    for o, r in zip(second(ours), second(ref)):
        _close(o, r, 1e-5)
    t = mx.array(rng.standard_normal(X.shape).astype(np.float32))
    _close(mx.jvp(lambda x: ours(x, G, B), [X], [t])[1][0],
           mx.jvp(lambda x: ref(x, G, B), [X], [t])[1][0])
    xs, gs = mx.stack([X, 3 * X]), mx.stack([G, -G])
    _close(mx.vmap(lambda x: ours(x, G, B))(xs), mx.vmap(lambda x: ref(x, G, B))(xs))
    _close(mx.vmap(lambda x, g: ours(x, g, B))(xs, gs),
           mx.vmap(lambda x, g: ref(x, g, B))(xs, gs))

    def vgrad(f):
        return mx.vmap(lambda x: mx.grad(_loss(f), argnums=(0, 1, 2))(x, G, B))(xs)
    for o, r in zip(vgrad(ours), vgrad(ref)):
        _close(o, r)
    _close(mx.compile(mx.grad(_loss(ours)))(X, G, B), mx.grad(_loss(ref))(X, G, B))


def test_many_rows_over_threads_and_one_thread_agree():
    x = mx.array(rng.standard_normal((64, 96, 130)).astype(np.float32))
    g = mx.array(rng.standard_normal(130).astype(np.float32))
    ct = mx.array(rng.standard_normal(x.shape).astype(np.float32))
    f = lambda x, g: (EXT.layer_norm(x, g, g, 1e-3) * ct).sum()  # noqa: E731
    want = mx.grad(lambda x, g: (norm.layer_norm(x, g, g, 1e-3, impl="plain") * ct).sum(),
                   argnums=(0, 1))(x, g)
    threads = EXT.threads()
    try:
        for n in (1, threads):
            EXT.set_threads(n)
            for o, r in zip(mx.grad(f, argnums=(0, 1))(x, g), want):
                _close(o, r, 2e-5)
    finally:
        EXT.set_threads(threads)


def test_planted_error_is_caught():
    # The comparison can fail: a layer norm with the population variance's n - 1.
    ours, _ = _fns(False, False)
    x = X
    xc = x - x.mean(-1, keepdims=True)
    wrong = xc * mx.rsqrt((xc ** 2).sum(-1, keepdims=True) / 36 + 1e-5)
    with pytest.raises(AssertionError):
        _close(ours(x, G, B), wrong)


def test_the_layer_takes_the_kernel(monkeypatch):
    import mlx.nn as mnn

    from mlxnote import nn

    layer = nn.layer_norm(37)
    calls = []
    real = EXT.layer_norm
    monkeypatch.setattr(EXT, "layer_norm", lambda *a: calls.append(1) or real(*a))
    step = mnn.value_and_grad(layer, lambda m, x: (m(x) * CT).sum())
    with extension.enabled(True):
        out, g = layer(X), step(layer, X)[1]
    assert calls
    calls.clear()
    with extension.enabled(False):
        ref, gr = layer(X), step(layer, X)[1]
    assert not calls
    _close(out, ref)
    for k in gr:
        _close(g[k], gr[k])


@pytest.mark.parametrize("call,match", [
    (lambda: EXT.layer_norm(X.astype(mx.float16)), "float32 inputs only"),
    (lambda: EXT.layer_norm(X, G[:5]), r"gamma and beta of shape \(d,\)"),
    (lambda: EXT.layer_norm(mx.zeros((3, 0))), "d >= 1"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
