"""The C++ masked softmax (``_core.masked_softmax``) against MLX's own softmax over the
masked logits (a ``where`` with float32's lowest value for a boolean mask, a sum for an
additive one, the causal triangle as :mod:`mlxnote.kernels.attention` merges it): forward,
gradient (the logits' and an additive mask's), grad of grad, jvp, vmap and compile, fully
masked rows, broadcast masks, one thread and several; and the attention kernel through it."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import close, thread_counts, threads

from mlxnote.kernels import attention as ka
from mlxnote.kernels import extension

EXT = extension.module()


def _close(a, b, tol=3e-7):
    close(a, b, tol)

pytestmark = pytest.mark.skipif(EXT is None or "masked_softmax" not in EXT.KERNELS,
                                reason=f"extension not loaded: {extension.reason()}")

SHAPE = (2, 3, 5, 7)


def _ref(x, mask, causal):
    if causal:
        mask = ka.merge_masks(mask, ka.causal_mask(x.shape[-2], x.shape[-1]), mx.float32)
    if mask is not None:
        if mask.dtype == mx.bool_:
            x = mx.where(mask, x, mx.array(ka.neg_large(mx.float32)))
        else:
            x = x + mask
    return mx.softmax(x, axis=-1, precise=True)


def _ours(x, mask, causal):
    return EXT.masked_softmax(x, mask, causal)


def _masks():
    rng = np.random.default_rng(1)
    return {
        "none": None,
        "bool": mx.array(rng.random((2, 1, 5, 7)) > 0.3),  # broadcast over heads
        "additive": mx.array(rng.standard_normal((1, 3, 1, 7)).astype(np.float32)),
        "all-masked": mx.zeros(SHAPE, mx.bool_),
        "keys": mx.array(rng.random((7,)) > 0.5),  # one mask for every row
    }



MASKS = _masks()
x0 = mx.array(3 * np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))
g0 = mx.array(np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32))


@pytest.mark.parametrize("causal", [False, True], ids=["", "causal"])
@pytest.mark.parametrize("name", sorted(MASKS))
def test_forward_gradient_and_transforms_match_mlx(name, causal):
    mask = MASKS[name]

    def f(fn):
        return lambda x: (fn(x, mask, causal) * g0).sum()

    _close(_ours(x0, mask, causal), _ref(x0, mask, causal))
    _close(mx.grad(f(_ours))(x0), mx.grad(f(_ref))(x0))

    def hess(fn):  # grad of grad, through the gradient primitive's own vjp
        return mx.grad(lambda x: (mx.grad(f(fn))(x) ** 2).sum())(x0)
    _close(hess(_ours), hess(_ref), 1e-6)
    t = mx.array(np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32))
    # the tangent against MLX's in float64: MLX's float32 one is off by 3.2e-7 (the bool
    # mask), ours (the centred gradient row) by 6e-8
    with mx.stream(mx.cpu):  # float64 is CPU-only in MLX
        f64 = mx.jvp(lambda x: _ref(x, mask, causal), [x0.astype(mx.float64)],
                     [t.astype(mx.float64)])[1][0]
    _close(mx.jvp(lambda x: _ours(x, mask, causal), [x0], [t])[1][0], f64.astype(mx.float32))
    xs = mx.stack([x0, -2 * x0])
    _close(mx.vmap(lambda x: _ours(x, mask, causal))(xs),
           mx.vmap(lambda x: _ref(x, mask, causal))(xs))
    _close(mx.compile(mx.grad(f(_ours)))(x0), mx.grad(f(_ref))(x0))


def test_an_additive_mask_gets_the_logits_gradient():
    mask = MASKS["additive"]
    ours = mx.grad(lambda m: (_ours(x0, m, False) * g0).sum())(mask)
    ref = mx.grad(lambda m: (_ref(x0, m, False) * g0).sum())(mask)
    _close(ours, ref)


def test_fully_masked_rows_are_uniform_with_no_gradient():
    mask = MASKS["all-masked"]
    _close(_ours(x0, mask, False), mx.full(SHAPE, 1 / 7))
    _close(mx.grad(lambda x: (_ours(x, mask, False) * g0).sum())(x0), mx.zeros(SHAPE))


def test_many_rows_over_threads_and_one_thread_agree():
    x = mx.array(np.random.default_rng(4).standard_normal((4, 8, 64, 300)).astype(np.float32))
    want = _ref(x, None, True)
    for n in thread_counts(EXT):
        with threads(EXT, n):
            _close(_ours(x, None, True), want)


def test_planted_error_is_caught():
    # The comparison can fail: the causal triangle off by one key.
    x = x0
    shifted = mx.arange(5)[:, None] + 1 >= mx.arange(7)[None, :]
    with pytest.raises(AssertionError):
        _close(_ours(x, None, True), _ref(x, shifted, False))


def test_attention_passes_its_mask_to_the_kernel(monkeypatch):
    rng = np.random.default_rng(5)
    q, k, v = (mx.array(rng.standard_normal((2, 2, 4, 3)).astype(np.float32))
               for _ in range(3))
    mask = mx.array(rng.random((2, 1, 4, 4)) > 0.3)
    calls = []
    real = EXT.masked_softmax
    monkeypatch.setattr(EXT, "masked_softmax",
                        lambda *a: calls.append(a[1] is not None) or real(*a))
    with extension.enabled(True):
        out = ka.attention(q, k, v, 0.5, mask, causal=True, impl="plain")
    assert calls == [True]
    with extension.enabled(False):
        ref = ka.attention(q, k, v, 0.5, mask, causal=True, impl="plain")
    _close(out, ref)


@pytest.mark.parametrize("call,match", [
    (lambda: EXT.masked_softmax(x0.astype(mx.float16)), "float32 logits only"),
    (lambda: EXT.masked_softmax(x0, mx.zeros(SHAPE, mx.int32)), "a boolean or float32 mask"),
    (lambda: EXT.masked_softmax(mx.zeros((3,)), None, True), "causal needs logits of rank"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_logsumexp_matches_float64_and_mlx_at_the_edges():
    """``kernels.attention.logsumexp`` (the cross-entropy losses' normalizer): float64's
    value and gradient (the softmax), at most MLX's error; rows of -inf, +inf and NaN as
    ``mx.logsumexp``; and its fast path is the one taken on a non-Apple CPU."""
    import sys

    from mlxnote.kernels import attention as katt

    x = mx.array(np.random.default_rng(0).standard_normal((64, 1000)).astype(np.float32) * 5)
    g = mx.array(np.random.default_rng(1).standard_normal(64).astype(np.float32))
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    top = x64.max(-1)
    ref = np.log(np.exp(x64 - top[:, None]).sum(-1)) + top
    ref_grad = np.exp(x64 - ref[:, None]) * g64[:, None]

    def errors(f):
        y, (dx,) = mx.vjp(f, [x], [g])
        return (np.abs(np.asarray(y[0]) - ref).max() / np.abs(ref).max(),
                np.abs(np.asarray(dx) - ref_grad).max() / np.abs(ref_grad).max())

    ours, theirs = errors(katt.logsumexp), errors(lambda x: mx.logsumexp(x, axis=-1))
    assert ours[0] <= max(2 * theirs[0], 3e-7) and ours[1] <= max(2 * theirs[1], 3e-7)
    edge = mx.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.nan, 1.0], [-np.inf, 3.0]])
    np.testing.assert_array_equal(np.asarray(katt.logsumexp(edge)),
                                  np.asarray(mx.logsumexp(edge, axis=-1)))
    if sys.platform != "darwin" and katt.cpu_formulation():
        real, seen = katt._logsumexp_fast, []
        katt._logsumexp_fast = lambda a: seen.append(1) or real(a)
        try:
            mx.eval(katt.logsumexp(x))
        finally:
            katt._logsumexp_fast = real
        assert seen
