"""The C++ normalizations against plain MLX compositions differentiated by MLX's autodiff:
the layer norm (``_core.layer_norm``) against :func:`mlxnote.kernels.norm.layer_norm`
``impl='plain'``, the training batch norm (``_core.batch_norm_train``) and the group norm
(``_core.group_norm``, the same primitive per sample) against two-pass moments written from
their definitions: forward, every gradient, grad of grad,
jvp, vmap (weights mapped or not) and compile, one thread and several; the layers through
them."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import close, thread_counts, threads

from mlxnote.kernels import extension, norm

EXT = extension.module()


def _close(a, b, tol=3e-6):
    close(a, b, tol)

pytestmark = pytest.mark.skipif(
    EXT is None or not {"layer_norm", "batch_norm_train", "group_norm"} <= set(EXT.KERNELS),
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
    for n in thread_counts(EXT):
        with threads(EXT, n):
            for o, r in zip(mx.grad(f, argnums=(0, 1))(x, g), want):
                _close(o, r, 2e-5)


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


# -- batch norm and group norm (one primitive) -------------------------------------------
XB = mx.array((2 * rng.standard_normal((3, 4, 5, 6)) + 1).astype(np.float32))
GB = mx.array(rng.standard_normal(6).astype(np.float32))
BB = mx.array(rng.standard_normal(6).astype(np.float32))
CB = mx.array(rng.standard_normal(XB.shape).astype(np.float32))


def _stats_ref(x, groups):
    """(mean, var) of the documented statistics: batch norm (``groups=None``) over every
    axis but the last; group norm per sample over each group of adjacent channels."""
    if groups is None:
        red = tuple(range(x.ndim - 1))
        return x.mean(red), x.var(red)
    xg = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
    red = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    return xg.mean(red), xg.var(red)


def _ref(groups):
    def f(x, g, b):
        if groups is None:
            m, v = (t.reshape(-1) for t in _stats_ref(x, None))
        else:  # each channel's group statistics, broadcast back to (N, 1..., C)
            k = x.shape[-1] // groups
            m, v = (mx.repeat(t, k, axis=-1).reshape(x.shape[0], *[1] * (x.ndim - 2), -1)
                    for t in _stats_ref(x, groups))
        return (x - m) * mx.rsqrt(v + 1e-3) * g + b
    return f


def _ours(groups):
    if groups is None:
        return lambda x, g, b: EXT.batch_norm_train(x, g, b, 1e-3)[0]
    return lambda x, g, b: EXT.group_norm(x, g, b, groups, 1e-3)[0]


def _full(x, g, b, groups):
    return (EXT.batch_norm_train(x, g, b, 1e-3) if groups is None
            else EXT.group_norm(x, g, b, groups, 1e-3))


def _bn_loss(f):
    return lambda x, g, b: (f(x, g, b) * CB).sum()


GROUPS = [None, 1, 3, 6]  # batch norm; group norm with 1, 3 and 6 (= C) groups


@pytest.mark.parametrize("groups", GROUPS)
def test_statistics_forward_gradients_and_transforms(groups):
    ours, ref = _ours(groups), _ref(groups)
    y, mean, var = _full(XB, GB, BB, groups)
    _close(y, ref(XB, GB, BB))
    want_m, want_v = _stats_ref(XB, groups)
    _close(mean, want_m)
    _close(var, want_v)
    grads = [mx.grad(_bn_loss(f), argnums=(0, 1, 2))(XB, GB, BB) for f in (ours, ref)]
    for o, r in zip(*grads):
        _close(o, r)

    def second(f):
        def h(x, g, b):
            return sum((t ** 2).sum() for t in mx.grad(_bn_loss(f), argnums=(0, 1, 2))(x, g, b))
        return mx.grad(h, argnums=(0, 1, 2))(XB, GB, BB)
    for o, r in zip(second(ours), second(ref)):
        _close(o, r, 1e-5)
    t = mx.array(rng.standard_normal(XB.shape).astype(np.float32))
    _close(mx.jvp(lambda x: ours(x, GB, BB), [XB], [t])[1][0],
           mx.jvp(lambda x: ref(x, GB, BB), [XB], [t])[1][0])
    xs, gs = mx.stack([XB, 3 * XB + 1]), mx.stack([GB, -GB])
    _close(mx.vmap(lambda x, g: ours(x, g, BB))(xs, gs),
           mx.vmap(lambda x, g: ref(x, g, BB))(xs, gs))
    for o, r in zip(mx.vmap(lambda x: _full(x, GB, BB, groups)[1:])(xs),
                    mx.vmap(lambda x: _stats_ref(x, groups))(xs)):
        _close(o, r)

    def vgrad(f):
        return mx.vmap(lambda x: mx.grad(_bn_loss(f), argnums=(0, 1, 2))(x, GB, BB))(xs)
    for o, r in zip(vgrad(ours), vgrad(ref)):
        _close(o, r)
    _close(mx.compile(mx.grad(_bn_loss(ours)))(XB, GB, BB), mx.grad(_bn_loss(ref))(XB, GB, BB))


@pytest.mark.parametrize("groups,shape", [(None, (8, 33, 17, 40)), (8, (8, 33, 17, 40)),
                                          (8, (2, 70, 33, 40))])
def test_over_threads_and_a_planted_error(groups, shape):
    """Group norm splits whole samples over the threads when there are at least two per
    thread, else (sample, chunk) items as batch norm: the 2-sample shape (two 64K-float
    chunks each) takes both ways as the thread count changes."""
    x = mx.array((rng.standard_normal(shape) + 3).astype(np.float32))
    g = mx.array(rng.standard_normal(40).astype(np.float32))
    ct = mx.array(rng.standard_normal(x.shape).astype(np.float32))
    ours, ref = _ours(groups), _ref(groups)
    want = mx.grad(lambda x, g: (ref(x, g, g) * ct).sum(), argnums=(0, 1))(x, g)
    for n in thread_counts(EXT):
        with threads(EXT, n):
            got = mx.grad(lambda x, g: (ours(x, g, g) * ct).sum(), argnums=(0, 1))(x, g)
            for o, r in zip(got, want):
                _close(o, r, 2e-5)
    # The comparison can fail: the statistics of the neighbouring layout are not these.
    wrong = _ref(4 if groups else 40)(x, g, g) if groups else _ref(8)(x, g, g)
    with pytest.raises(AssertionError):
        _close(ours(x, g, g), wrong)


def _on_and_off(monkeypatch, kernel, run):
    """``run(on)`` with the extension on (it must call ``EXT.<kernel>``) and off (it must
    not); both results compared (tuples of arrays and dicts of arrays)."""
    calls = []
    real = getattr(EXT, kernel)
    monkeypatch.setattr(EXT, kernel, lambda *a: calls.append(1) or real(*a))
    ours = run(True)
    assert calls
    calls.clear()
    ref = run(False)
    assert not calls
    for o, r in zip(ours, ref, strict=True):
        for k in (r if isinstance(r, dict) else [None]):
            _close(o if k is None else o[k], r if k is None else r[k])
    return calls


def test_the_batch_norm_layer_trains_through_the_kernel(monkeypatch):
    import mlx.nn as mnn

    from mlxnote import nn

    def run(on):
        layer = nn.batch_norm(6)
        step = mnn.value_and_grad(layer, lambda m, x: (m(x) * CB).sum())
        with extension.enabled(on):
            loss, grads = step(layer, XB)
        return loss, grads, layer.moving_mean, layer.moving_variance
    _on_and_off(monkeypatch, "batch_norm_train", run)


@pytest.mark.parametrize("scale,center", AFFINE)
def test_the_group_norm_layer_takes_the_kernel(monkeypatch, scale, center):
    import mlx.nn as mnn

    from mlxnote import nn

    weights = {k: mx.array(rng.standard_normal(6).astype(np.float32)) for k in ("gamma", "beta")}

    def run(on, x=XB, **kw):
        layer = nn.group_norm(3, 6, scale=scale, center=center, **kw)
        layer.update({k: v for k, v in weights.items() if k in layer})
        with extension.enabled(on):
            # the output itself, not the loss: a float32 sum of y * x with cancellation
            # (-11.4 from terms up to 5) differs between two exact-to-rounding y by 3e-6
            y, dx = layer(x), mx.grad(lambda x: (layer(x) * x).sum())(x)
            grads = (mnn.value_and_grad(layer, lambda m, x: (m(x) * x).sum())(layer, x)[1]
                     if scale or center else {})
        return y, {"x": dx, **grads}
    calls = _on_and_off(monkeypatch, "group_norm", run)
    run(True, mask=mx.ones(XB.shape[:-1] + (1,), mx.bool_))  # masked: the MLX moments
    run(True, mx.moveaxis(XB, -1, 1), axis=1)  # channels not last: the MLX formulation
    assert not calls


@pytest.mark.parametrize("call,match", [
    (lambda: EXT.batch_norm_train(XB.astype(mx.float16), GB, BB, 1e-3), "float32 inputs only"),
    (lambda: EXT.batch_norm_train(XB, GB[:2], BB, 1e-3), r"gamma and beta of shape \(C,\)"),
    (lambda: EXT.batch_norm_train(XB[:0], GB, BB, 1e-3), "at least one row"),
    (lambda: EXT.group_norm(XB, GB, BB, 4, 1e-3), "groups must divide the 6 channels, got 4"),
    (lambda: EXT.group_norm(XB, GB[:2], BB, 3, 1e-3), r"group_norm: gamma and beta"),
])
def test_batch_norm_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: EXT.layer_norm(X.astype(mx.float16)), "float32 inputs only"),
    (lambda: EXT.layer_norm(X, G[:5]), r"gamma and beta of shape \(d,\)"),
    (lambda: EXT.layer_norm(mx.zeros((3, 0))), "d >= 1"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
