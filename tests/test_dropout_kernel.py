"""The C++ dropout (``_core.dropout``/``dropout_mask``) and ``mlxnote.kernels.dropout``: the
mask's statistics (keep rate, independence across elements and seeds), the mask applied
equal to the one drawn alone, the gradient/jvp/vmap/compile, threads, and the layers through
it (reproducible under ``mx.random.seed`` and with a layer seed)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import thread_counts, threads

from mlxnote import nn
from mlxnote.kernels import extension

EXT = extension.module()
pytestmark = pytest.mark.skipif(
    EXT is None or not {"dropout", "dropout_mask"} <= set(EXT.KERNELS),
    reason=f"extension not loaded: {extension.reason()}")

SEED = mx.random.key(7)
X = mx.array(np.random.default_rng(0).uniform(0.5, 2.0, (64, 33, 17)).astype(np.float32))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_keep_rate_and_independence(keep):
    n = 1 << 20
    m = np.array(EXT.dropout_mask(SEED, [n], keep))
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(m.mean() - keep) < 5 * sigma
    # blocks of 4096: their keep rates spread as a binomial's
    blocks = m.reshape(256, 4096).mean(1)
    assert abs(blocks.std() - np.sqrt(keep * (1 - keep) / 4096)) < 0.15 * np.sqrt(
        keep * (1 - keep) / 4096)
    # neighbours and the next seed's mask are uncorrelated
    f = m.astype(np.float64) - m.mean()
    assert abs((f[1:] * f[:-1]).mean() / f.var()) < 5 / np.sqrt(n)
    m2 = np.array(EXT.dropout_mask(mx.random.key(8), [n], keep)).astype(np.float64)
    assert abs(np.corrcoef(m, m2)[0, 1]) < 5 / np.sqrt(n)


def test_apply_equals_the_mask_drawn_alone_and_is_exact():
    keep = 0.75
    y = EXT.dropout(X, SEED, keep)
    m = EXT.dropout_mask(SEED, list(X.shape), keep)
    want = mx.where(m, X * mx.array(1 / keep, mx.float32), 0.0)
    assert mx.array_equal(y, want)
    assert not mx.array_equal(EXT.dropout(X, mx.random.key(8), keep), y)
    # The comparison can fail: the mask of the neighbouring elements is not this one.
    shifted = mx.where(mx.roll(m.reshape(-1), 1).reshape(X.shape), X / keep, 0.0)
    assert not mx.array_equal(y, shifted)


def test_gradient_jvp_vmap_compile_and_threads():
    keep = 0.6
    ct = mx.array(np.random.default_rng(1).standard_normal(X.shape).astype(np.float32))
    m = EXT.dropout_mask(SEED, list(X.shape), keep).astype(mx.float32) / keep
    g = mx.grad(lambda x: (EXT.dropout(x, SEED, keep) * ct).sum())(X)
    assert mx.allclose(g, ct * m, rtol=1e-6, atol=0)
    assert mx.allclose(mx.jvp(lambda x: EXT.dropout(x, SEED, keep), [X], [ct])[1][0], ct * m,
                       rtol=1e-6, atol=0)
    gg = mx.grad(lambda x: (mx.grad(lambda x: (EXT.dropout(x, SEED, keep) ** 2).sum())(x)
                            ).sum())(X)
    assert mx.allclose(gg, 2 * m * m, rtol=1e-5, atol=0)
    v = mx.vmap(lambda x: EXT.dropout(x, SEED, keep))(X)  # one draw over the mapped array
    assert mx.array_equal(v, EXT.dropout(X, SEED, keep))
    assert mx.array_equal(mx.compile(lambda x, s: EXT.dropout(x, s, keep))(X, SEED),
                          EXT.dropout(X, SEED, keep))
    outs = []
    for n in thread_counts(EXT):
        with threads(EXT, n):
            outs.append(EXT.dropout(X, SEED, keep))
    assert all(mx.array_equal(o, outs[0]) for o in outs)


def test_the_layers_take_it_and_are_reproducible(monkeypatch):
    calls = []
    real = EXT.dropout
    monkeypatch.setattr(EXT, "dropout", lambda *a: calls.append(1) or real(*a))
    layer = nn.dropout(0.3)
    mx.random.seed(3)
    a = layer(X, train_flag=True)
    mx.random.seed(3)
    b = layer(X, train_flag=True)
    assert calls and mx.array_equal(a, b)
    assert not mx.array_equal(a, layer(X, train_flag=True))  # the next draw differs
    frac = float((a == 0).astype(mx.float32).mean())
    assert abs(frac - 0.3) < 0.01
    kept = a != 0
    assert mx.allclose(mx.where(kept, a, 0), mx.where(kept, X / 0.7, 0), rtol=1e-6)
    seeded = [nn.dropout(0.3, seed=5)(X, train_flag=True) for _ in range(2)]
    assert mx.array_equal(*seeded)
    calls.clear()
    # a noise shape and a 16-bit input draw the mask alone, then multiply
    ns = nn.dropout(0.5, noise_shape=[None, 1, None])(X, train_flag=True)
    assert not calls
    z = np.array(ns) == 0
    assert (z == z[:, :1, :]).all()
    h = nn.dropout(0.5, dtype="float16")(X.astype(mx.float16), train_flag=True)
    assert h.dtype == mx.float16 and not calls
    with extension.enabled(False):  # without the extension: MLX's Bernoulli, reproducible
        mx.random.seed(3)
        c = layer(X, train_flag=True)
        mx.random.seed(3)
        assert mx.array_equal(c, layer(X, train_flag=True)) and not calls


def test_a_compiled_training_step_draws_fresh_masks():
    layer = nn.dropout(0.5)
    state = [mx.random.state]
    step = mx.compile(lambda x: layer(x, train_flag=True), inputs=state, outputs=state)
    mx.random.seed(0)
    a, b = step(X), step(X)
    assert not mx.array_equal(a, b)
    mx.random.seed(0)
    assert mx.array_equal(step(X), a)


@pytest.mark.parametrize("call,match", [
    (lambda: EXT.dropout(X.astype(mx.float16), SEED, 0.5), "float32 inputs only"),
    (lambda: EXT.dropout(X, mx.zeros((3,), mx.uint32), 0.5), r"uint32 array of shape \(2,\)"),
    (lambda: EXT.dropout(X, SEED, 0.0), r"keep must be in \(0, 1\]"),
    (lambda: EXT.dropout_mask(SEED, [2, -1], 0.5), "sizes >= 0"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
