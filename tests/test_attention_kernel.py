"""The C++ fused attention (``_core.attention``) against the plain matmul-softmax composition
in MLX ops: forward and the gradients of q, k, v (and of an additive
mask) for every mask kind, causal or not, cross-attention lengths, query blocks, strided and
broadcast heads, one thread and several; grad of grad, jvp, vmap and compile; which calls of
:func:`mlxnote.kernels.attention.attention` take it; refused calls; and the path without a
one-thread GEMM (its heads one after the other)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import close, thread_counts, threads

from mlxnote.kernels import attention as ka
from mlxnote.kernels import extension

EXT = extension.module()
pytestmark = pytest.mark.skipif(EXT is None or "attention" not in EXT.KERNELS,
                                reason=f"extension not loaded: {extension.reason()}")

B, H, TQ, TK, D, DV = 2, 3, 9, 11, 8, 5
SCALE = 0.35


def _rand(shape, seed, scale=1.0):
    return mx.array(scale * np.random.default_rng(seed).standard_normal(shape)
                    .astype(np.float32))


Q, K, V = _rand((B, H, TQ, D), 0, 2.0), _rand((B, H, TK, D), 1, 2.0), _rand((B, H, TK, DV), 2)
G = _rand((B, H, TQ, DV), 3)
MASKS = {
    "none": None,
    "bool": mx.array(np.random.default_rng(4).random((B, 1, TQ, TK)) > 0.3),
    "additive": _rand((1, H, 1, TK), 5),
    "all-masked": mx.zeros((B, H, TQ, TK), mx.bool_),
    "keys": mx.array(np.random.default_rng(6).random((TK,)) > 0.5),
}


def _plain(q, k, v, mask=None, causal=False, scale=SCALE):
    """MLX ops: a boolean mask and the causal triangle write float32's lowest value (-inf
    for the triangle next to an additive mask), an additive mask is added."""
    s = (q @ k.swapaxes(-1, -2)) * scale
    low = mx.array(np.finfo(np.float32).min)
    if mask is not None:
        s = mx.where(mask, s, low) if mask.dtype == mx.bool_ else s + mask
    if causal:
        tri = mx.arange(s.shape[-2])[:, None] >= mx.arange(s.shape[-1])[None]
        s = mx.where(tri, s, low if mask is None or mask.dtype == mx.bool_
                     else mx.array(-np.inf, mx.float32))
    return mx.softmax(s, axis=-1, precise=True) @ v


def _fused(q, k, v, mask=None, causal=False, scale=SCALE):
    return EXT.attention(q, k, v, scale, mask, causal)[0]


def _grads(fn, q, k, v, mask, causal, g=G):
    return mx.vjp(lambda a, b, c: [fn(a, b, c, mask, causal)], [q, k, v], [g])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", list(MASKS))
def test_forward_and_gradients_match_the_plain_composition(name, causal):
    mask = MASKS[name]
    (ref,), ref_g = _grads(_plain, Q, K, V, mask, causal)
    for n in thread_counts(EXT):
        with threads(EXT, n):
            (out,), grads = _grads(_fused, Q, K, V, mask, causal)
            close(out, ref, 1e-6)
            for a, b in zip(grads, ref_g):
                close(a, b, 3e-6)


def test_statistics_are_the_rows_max_and_inverse_sum():
    logits = np.array(SCALE * (Q @ K.swapaxes(-1, -2)), dtype=np.float64)
    stats = np.array(EXT.attention(Q, K, V, SCALE)[1])
    assert stats.shape == (B, H, TQ, 2)
    np.testing.assert_allclose(stats[..., 0], logits.max(-1), rtol=1e-6)
    np.testing.assert_allclose(stats[..., 1], 1 / np.exp(logits - logits.max(-1, keepdims=True))
                               .sum(-1), rtol=3e-6)


def test_query_blocks_and_long_keys():
    # 4000 keys: a block holds 8 queries, so 37 queries take 5 blocks; dk, dv add up over them.
    q, k, v = _rand((1, 2, 37, 16), 7), _rand((1, 2, 4000, 16), 8), _rand((1, 2, 4000, 4), 9)
    g = _rand((1, 2, 37, 4), 10)
    for causal in (False, True):
        (ref,), ref_g = _grads(_plain, q, k, v, None, causal, g)
        (out,), grads = _grads(_fused, q, k, v, None, causal, g)
        close(out, ref, 1e-6)
        for a, b in zip(grads, ref_g):
            close(a, b, 3e-6)


def test_strided_and_broadcast_heads_are_read_in_place_or_copied():
    x = _rand((B, TQ, H, D), 11)  # [B, T, H, D] seen as [B, H, T, D]: rows H * D apart
    qt = x.transpose(0, 2, 1, 3)
    kb = mx.broadcast_to(K[:, :1], K.shape)  # one key head for all: a head stride of 0
    vb = mx.broadcast_to(V[:, :1], V.shape)
    close(_fused(qt, kb, vb), _plain(qt, kb, vb), 1e-6)
    dt = _rand((B, H, D, TK), 12).swapaxes(-1, -2)  # last axis not contiguous: copied
    close(_fused(Q, dt, V), _plain(Q, dt, V), 1e-6)
    (_, gq) = mx.vjp(lambda a: [_fused(a, kb, vb)], [qt], [G])
    (_, rq) = mx.vjp(lambda a: [_plain(a, kb, vb)], [qt], [G])
    close(gq[0], rq[0], 3e-6)


def test_an_additive_mask_gets_the_logits_gradient():
    m = _rand((B, H, TQ, TK), 13)
    ours = mx.grad(lambda a: (_fused(Q, K, V, a) * G).sum())(m)
    ref = mx.grad(lambda a: (_plain(Q, K, V, a) * G).sum())(m)
    close(ours, ref, 3e-6)


def test_second_order_jvp_vmap_and_compile():
    f = lambda fn: lambda q: (mx.grad(lambda a: (fn(a, K, V, None, True) ** 2).sum())(q)  # noqa: E731
                              ** 2).sum()
    close(mx.grad(f(_fused))(Q), mx.grad(f(_plain))(Q), 3e-6)
    t = _rand(Q.shape, 14)
    close(mx.jvp(lambda q: _fused(q, K, V), [Q], [t])[1][0],
          mx.jvp(lambda q: _plain(q, K, V), [Q], [t])[1][0], 3e-6)
    qs = _rand((4, B, H, TQ, D), 15)
    mask = MASKS["bool"]
    close(mx.vmap(lambda q: _fused(q, K, V, mask))(qs),
          mx.vmap(lambda q: _plain(q, K, V, mask))(qs), 1e-6)
    step = mx.compile(lambda q, k, v: mx.grad(lambda a: (_fused(a, k, v) * G).sum())(q))
    close(step(Q, K, V), mx.grad(lambda a: (_plain(a, K, V) * G).sum())(Q), 3e-6)


def test_planted_error_is_caught():
    # the comparison above fails for a scale off by 1e-3
    with pytest.raises(AssertionError):
        close(_fused(Q, K, V, scale=SCALE * 1.001), _plain(Q, K, V), 1e-6)


def test_attention_takes_it_where_the_math_allows(monkeypatch):
    calls = []
    real = EXT.attention

    def counted(*a, **kw):
        calls.append(a[3])
        return real(*a, **kw)

    monkeypatch.setattr(EXT, "attention", counted)
    k2, v2 = K[:, :1], V[:, :1]  # multi-query: k, v repeated to the query heads
    close(ka.attention(Q, k2, v2, SCALE, MASKS["bool"], causal=True),
          _plain(Q, k2, v2, MASKS["bool"], True), 1e-6)
    ka.attention(Q, K, V, mx.array(0.5))  # a learned scale multiplies q
    assert calls == [SCALE, 1.0]
    out, logits = ka.attention(Q, K, V, SCALE, MASKS["additive"], return_logits=True)
    assert calls == [SCALE, 1.0, SCALE]  # the output fused, the logits a lazy product
    close(logits, (Q @ K.swapaxes(-1, -2)) * SCALE + MASKS["additive"], 1e-6)
    close(out, _plain(Q, K, V, MASKS["additive"]), 1e-6)
    ka.attention(Q, K, V, SCALE, dropout=lambda p: p)
    ka.attention(Q, K, V, SCALE, return_probs=True)
    ka.attention(Q.astype(mx.bfloat16), K.astype(mx.bfloat16), V.astype(mx.bfloat16), SCALE)
    ka.attention(Q, K, V, SCALE, impl="plain")
    with extension.enabled(False):
        ka.attention(Q, K, V, SCALE)
    assert len(calls) == 3


@pytest.mark.parametrize("call, match", [
    (lambda: EXT.attention(Q[0], K[0], V[0], 1.0), "rank 4"),
    (lambda: EXT.attention(Q.astype(mx.float16), K, V, 1.0), "float32"),
    (lambda: EXT.attention(Q, K[:, :, :, :4], V, 1.0), "depth"),
    (lambda: EXT.attention(Q, K, V[:, :2], 1.0), "batch and head"),
    (lambda: EXT.attention(Q, K, V, 1.0, mx.zeros((TK,), mx.int32)), "boolean or float32"),
])
def test_bad_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=f"mlxnote attention: .*{match}"):
        call()


def test_without_a_one_thread_gemm_the_heads_run_in_turn():
    # Fixed OpenBLAS threads and no oneDNN GEMMs: no one-thread GEMM, so the kernel runs its
    # heads on the calling thread (each GEMM threaded by OpenBLAS) and must agree.
    code = ("import mlxnote, mlx.core as mx, numpy as np\n"
            "from mlxnote.kernels import extension, attention as ka\n"
            "r = np.random.default_rng(0)\n"
            "q, k, v = (mx.array(r.standard_normal((2, 4, 64, 16)).astype(np.float32))"
            " for _ in range(3))\n"
            "ours = extension.module().attention(q, k, v, 0.25, None, True)[0]\n"
            "with extension.enabled(False):\n"
            "    ref = ka.attention(q, k, v, 0.25, causal=True, impl='plain')\n"
            "print(float(mx.abs(ours - ref).max()))\n")
    env = dict(os.environ, MLXNOTE_BLAS_ADAPTIVE="0", MLXNOTE_DNNL_GEMM="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 1e-5


def test_logits_gradient_is_centered():
    # Shifting every key by one vector shifts each row of logits by a constant, which the
    # softmax ignores: that gradient is exactly 0, and what is left is rounding. The fused
    # backward removes the rounding along the ones vector from each row of the logits'
    # gradient: measured, median |gradient| 5.2e-6 against the plain composition's 2.6e-5.
    ours, plain = [], []
    for seed in range(20):
        q, k, v, g = (_rand((2, 4, 8, 8), 100 + 4 * seed + i, 3.0) for i in range(4))
        shift = mx.zeros((8,))
        for out, fn in ((ours, _fused), (plain, _plain)):
            grad = mx.grad(lambda b, fn=fn, q=q, k=k, v=v, g=g: (fn(q, k + b, v) * g).sum())(
                shift)
            out.append(float(mx.abs(grad).max()))
    assert np.median(ours) < np.median(plain) / 2.5, (np.median(ours), np.median(plain))


def test_dispatch_contract_catches_the_fused_kernel_not_taken(monkeypatch):
    from conformance import contracts

    assert contracts.attention_dispatch() == ""
    monkeypatch.setattr(ka, "_fused", lambda *a: None)  # the same numbers, the slow path
    assert "ran the fused kernel 0 times" in contracts.attention_dispatch()
