"""Attention family: the documented examples, the layer contract (tests/layer_contract.py),
the attention kernel's fast path against its plain oracle, the linear-attention scan, and
one cross-check of multihead_attention against keras.layers.MultiHeadAttention."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params

from mlxnote import nn
from mlxnote.kernels import attention as K


def _np(a):
    return np.array(a.astype(mx.float32))


def _close(a, b, tol=1e-5):
    a, b = _np(a) if isinstance(a, mx.array) else a, _np(b) if isinstance(b, mx.array) else b
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# -- documented examples -------------------------------------------------------------------
def test_example_attention():
    att = nn.attention(use_scale=True, score_mode="dot", dtype="float32")
    out = att(mx.random.normal((2, 5, 10)), mx.random.normal((2, 6, 10)))
    assert out.shape == (2, 5, 10)


def test_example_multihead_attention():
    layer = nn.multihead_attention(8, 64)
    out, qk = layer(x=mx.random.normal((32, 20, 64)))
    mx.eval(out, qk)
    assert out.shape == (32, 20, 64) and qk.shape == (32, 8, 20, 20)


def test_example_talking_heads():
    tha = nn.talking_heads_attention(qkv_rank=4, attention_axes=(1,), dropout_rate=0.1)
    x = mx.random.normal((32, 64, 8, 128))
    out, scores = tha(x, x, x)
    mx.eval(out, scores)
    assert out.shape == (32, 64, 8, 128) and scores.shape == (32, 8, 64, 64)


def test_example_favor():
    favor = nn.FAVOR_attention(key_dim=128, orthonormal=True, causal=False, m=64, redraw=False,
                               h=lambda x: math.sqrt(64), f=[mnn.relu],
                               randomizer=mx.random.normal, eps=0.0, kernel_eps=0.001,
                               dtype="float32")
    out = favor(mx.random.normal((4, 128, 10)), mx.random.normal((4, 32, 10)),
                mx.random.normal((4, 128, 8)))
    mx.eval(out)
    assert out.shape == (4, 32, 8)


def test_example_linformer():
    lin = nn.Linformer_self_attention(dim=64, seq_len=128, k=32, heads=8, dropout=0.1)
    out = lin(mx.random.normal((16, 128, 64)))
    mx.eval(out)
    assert out.shape == (16, 128, 64)


def test_example_transformer():
    t = nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                       activation="relu")
    out = t(mx.random.normal((10, 50, 512)), mx.random.normal((10, 50, 512)))
    assert out.shape == (10, 50, 512)  # shape only: MLX builds the graph lazily
    small = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                           dim_feedforward=32)
    y = small(mx.random.normal((2, 5, 16)), mx.random.normal((2, 7, 16)))
    mx.eval(y)
    assert y.shape == (2, 7, 16) and np.isfinite(_np(y)).all()


# -- the layer contract (tests/layer_contract.py) ------------------------------------------
def _dense(*names, i=8, o=8, bias=True):
    """Note's weights of dense sublayers ``names``."""
    out = {}
    for n in names:
        out[f"{n}.weight"] = (i, o)
        if bias:
            out[f"{n}.bias"] = (o,)
    return out


CONTRACTS = [
    Contract(nn.attention, dict(use_scale=True), [(2, 3, 4), (2, 5, 4)], weights={"scale": ()},
             bad_args=[(dict(score_mode="add"), ValueError, "score_mode"),
                       (dict(use_scale=1), TypeError, "use_scale")],
             bad_inputs=[([(1, 2, 3), (1, 4, 3), (1, 4, 2)], ValueError, "key"),
                         ([(2, 3), (2, 5, 4)], ValueError, "query"),
                         ([(2, 3, 4), (3, 5, 4)], ValueError, "value"),
                         ([(2, 3, 4), (2, 5, 4)], TypeError, "mask", dict(mask=mx.ones((2, 5))))]),
    Contract(nn.attention, dict(use_scale=True, score_mode="concat"), [(2, 3, 4), (2, 5, 4)],
             id="attention-concat", weights={"scale": (), "concat_score_weight": ()},
             call_kwargs=dict(return_attention_scores=True, use_causal_mask=True)),
    Contract(nn.multihead_attention, dict(n_head=2, input_size=8, dropout=0.5), (2, 5, 8),
             lazy=dict(input_size=None), random=dict(dropout=0.0),
             weights=_dense("query", "key", "value", "out"),
             bad_args=[(dict(n_head=4, input_size=6), ValueError, "input_size"),
                       (dict(dropout=1.0), ValueError, "dropout"),
                       (dict(n_head=2.0), TypeError, "n_head"),
                       (dict(kdim=0), ValueError, "kdim"),
                       (dict(weight_initializer="nope"), ValueError, "weight_initializer"),
                       (dict(bias_initializer="nope"), ValueError, "bias_initializer")],
             bad_inputs=[((5, 8), ValueError, "x"), ((2, 5, 6), ValueError, "x"),
                         ((2, 5, 8), ValueError, "mask", dict(mask=mx.zeros((2, 3)))),
                         ((2, 5, 8), TypeError, "mask",
                          dict(mask=mx.zeros((5, 5), mx.int32)))]),
    Contract(nn.talking_heads_attention, dict(num_heads=3, dropout_rate=0.5),
             [(2, 5, 3, 4)] * 3, lazy=dict(num_heads=None), random=dict(dropout_rate=0.0),
             weights={"pre_softmax_weight": (3, 3), "post_softmax_weight": (3, 3)},
             bad_args=[(dict(qkv_rank="4"), TypeError, "qkv_rank"),
                       (dict(qkv_rank=4, attention_axes=(2,)), ValueError, "attention_axes"),
                       (dict(dropout_rate=-0.1), ValueError, "dropout_rate"),
                       (dict(num_heads=0), ValueError, "num_heads")],
             bad_inputs=[([(2, 5, 4)] * 3, ValueError, "query_tensor"),
                         ([(2, 5, 3, 4), (2, 6, 2, 4), (2, 6, 2, 4)], ValueError, "key_tensor"),
                         ([(2, 5, 3, 4)] * 3, ValueError, "attention_mask",
                          dict(attention_mask=mx.ones((2, 4, 4))))]),
    Contract(nn.FAVOR_attention, dict(key_dim=6, m=4, redraw=False, seed=0),
             [(2, 6, 5), (2, 3, 5), (2, 6, 4)], weights={"features": (4, 6)},
             frozen=("features",),
             bad_args=[(dict(m=9), ValueError, "m"), (dict(f=["nope"]), ValueError, "f"),
                       (dict(h=3), TypeError, "h"), (dict(chunk_size=0), ValueError, "chunk_size"),
                       (dict(causal="yes"), TypeError, "causal"),
                       (dict(randomizer="normal"), TypeError, "randomizer")],
             bad_inputs=[([(2, 5, 5), (2, 3, 5), (2, 5, 4)], ValueError, "keys"),
                         ([(2, 6, 5), (2, 3, 4), (2, 6, 4)], ValueError, "values"),
                         ([(2, 6), (2, 3, 5), (2, 6, 4)], ValueError, "keys")]),
    Contract(nn.FAVOR_attention, dict(key_dim=6, m=4, causal=True, redraw=False, seed=1,
                                      chunk_size=2), [(2, 6, 5), (2, 3, 5), (2, 6, 5)],
             id="FAVOR_attention-causal", weights={"features": (4, 6)}, frozen=("features",),
             bad_inputs=[([(2, 6, 5), (2, 3, 5), (2, 6, 4)], ValueError, "queries")]),
    Contract(nn.Linformer_self_attention, dict(dim=8, seq_len=6, k=3, heads=2, dropout=0.5),
             (2, 6, 8), random=dict(dropout=0.0),
             weights={**_dense("to_q", "to_k", bias=False), "proj_k": (6, 3),
                      **_dense("to_v", bias=False), "proj_v": (6, 3), **_dense("to_out")},
             bad_args=[(dict(dim=10, heads=4), ValueError, "heads"),
                       (dict(seq_len=0), ValueError, "seq_len"), (dict(k=0), ValueError, "k"),
                       (dict(dropout=1.0), ValueError, "dropout"),
                       (dict(share_kv="yes"), TypeError, "share_kv")],
             bad_inputs=[((2, 5, 8), ValueError, "x"), ((2, 6, 7), ValueError, "x"),
                         ((6, 8), ValueError, "x"),
                         ((2, 4, 8), ValueError, "context", dict(context=mx.zeros((2, 5, 8))))]),
    Contract(nn.Linformer_self_attention, dict(dim=8, seq_len=6, k=3, heads=2, share_kv=True,
                                               one_kv_head=True), (2, 6, 8),
             id="Linformer_self_attention-shared",
             weights={**_dense("to_q", bias=False), **_dense("to_k", o=4, bias=False),
                      "proj_k": (6, 3), **_dense("to_out")}),
    Contract(nn.Transformer, dict(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                  dim_feedforward=16, dropout=0.3), [(2, 5, 8), (2, 4, 8)],
             random=dict(dropout=0.0), weights=46,
             bad_args=[(dict(d_model=10, nhead=3), ValueError, "nhead"),
                       (dict(dropout=2.0), ValueError, "dropout"),
                       (dict(norm_first="yes"), TypeError, "norm_first"),
                       (dict(device=3), TypeError, "device"),
                       (dict(num_encoder_layers=-1), ValueError, "num_encoder_layers"),
                       (dict(custom_encoder=3), TypeError, "custom_encoder")],
             bad_inputs=[([(2, 5, 6), (2, 4, 8)], ValueError, "src"),
                         ([(2, 5, 8), (3, 4, 8)], ValueError, "tgt"),
                         ([(5, 8), (2, 4, 8)], ValueError, "src"),
                         ([(2, 5, 8), (2, 4, 8)], TypeError, "tgt_is_causal",
                          dict(tgt_is_causal="x")),
                         ([(2, 5, 8), (2, 4, 8)], ValueError, "src_mask",
                          dict(src_mask=mx.zeros((3, 3)))),
                         ([(2, 5, 8), (2, 4, 8)], ValueError, "memory_mask",
                          dict(memory_mask=mx.zeros((3, 3))))]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- kernel: fast path vs plain oracle -----------------------------------------------------
def _qkv(b=2, h=4, hk=4, tq=6, tk=7, d=8, dv=8, dtype=mx.float32, seed=0):
    k = mx.random.key(seed)
    ks = mx.random.split(k, 3)
    return (mx.random.normal((b, h, tq, d), key=ks[0]).astype(dtype),
            mx.random.normal((b, hk, tk, d), key=ks[1]).astype(dtype),
            mx.random.normal((b, hk, tk, dv), key=ks[2]).astype(dtype))


MASKS = {
    "none": lambda tq, tk: None,
    "bool": lambda tq, tk: mx.random.uniform(shape=(2, 1, tq, tk), key=mx.random.key(5)) < 0.7,
    "additive": lambda tq, tk: mx.random.normal((1, 4, tq, tk), key=mx.random.key(6)),
    "key_padding": lambda tq, tk: mx.arange(tk)[None, None, None, :] < mx.array([5, 7])[
        :, None, None, None],
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [dict(), dict(hk=1), dict(hk=2), dict(tq=7, dv=5)])
def test_fast_matches_plain(mask, causal, shape):
    q, k, v = _qkv(**shape)
    m = MASKS[mask](q.shape[2], k.shape[2])
    if m is not None and m.dtype == mx.bool_:
        m = mx.logical_or(m, mx.arange(k.shape[2]) == 0)  # no fully hidden rows
    scale = 1 / math.sqrt(q.shape[-1])

    def run(impl):
        def f(q, k, v):
            return K.attention(q, k, v, scale, m, causal=causal, impl=impl)
        out = f(q, k, v)
        grads = mx.grad(lambda *a: (f(*a) * mx.cos(f(*a))).sum(), argnums=(0, 1, 2))(q, k, v)
        return out, grads

    (o1, g1), (o2, g2) = run("fast"), run("plain")
    _close(o1, o2)
    for a, b in zip(g1, g2):
        _close(a, b, 2e-5)


def test_plain_matches_numpy_and_returns_logits():
    q, k, v = _qkv(b=1, h=2, hk=2, tq=3, tk=4, d=4, dv=3)
    m = mx.array([[True, False, True, True]] * 3)
    out, logits, probs = K.attention(q, k, v, 0.5, m, return_logits=True, return_probs=True)
    s = np.einsum("bhqd,bhkd->bhqk", _np(q), _np(k)) * 0.5
    s = np.where(_np(m) > 0, s, np.finfo(np.float32).min)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    _close(logits, s)
    _close(probs, p)
    _close(out, p @ _np(v))
    assert float(_np(probs)[..., 1].max()) == 0.0


def test_fast_16bit_close_to_float32():
    q, k, v = _qkv(dtype=mx.bfloat16)
    a = K.attention(q, k, v, 0.35, causal=True, impl="fast")
    b = K.attention(q, k, v, 0.35, causal=True, impl="plain")
    assert a.dtype == b.dtype == mx.bfloat16
    _close(a, b, 2e-2)


def test_kernel_rejects_bad_calls():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="impl"):
        K.attention(q, k, v, 1.0, impl="flash")
    with pytest.raises(ValueError, match="impl='fast'"):
        K.attention(q, k, v, 1.0, return_probs=True, impl="fast")
    with pytest.raises(ValueError, match="heads"):
        K.attention(q, k[:, :3], v[:, :3], 1.0)


# -- kernel: linear attention --------------------------------------------------------------
def _naive_linear(pq, pk, v, causal):
    pq, pk, v = (np.asarray(_np(t), np.float64) for t in (pq, pk, v))
    if not causal:
        return pq @ (pk.transpose(0, 2, 1) @ v), pq @ pk.sum(1, keepdims=True).transpose(0, 2, 1)
    kv = np.cumsum(pk[:, :, :, None] * v[:, :, None, :], axis=1)
    return np.einsum("blr,blrd->bld", pq, kv), (pq * np.cumsum(pk, 1)).sum(-1, keepdims=True)


@pytest.mark.parametrize("causal,chunk", [(False, None), (True, None), (True, 1), (True, 3),
                                          (True, 4), (True, 64)])
def test_linear_attention_matches_naive(causal, chunk):
    kk = mx.random.split(mx.random.key(1), 3)
    pq = mx.random.uniform(shape=(2, 10, 6), key=kk[0])
    pk = mx.random.uniform(shape=(2, 10, 6), key=kk[1])
    v = mx.random.normal((2, 10, 3), key=kk[2])
    num, den = K.linear_attention(pq, pk, v, causal=causal, chunk=chunk)
    n2, d2 = _naive_linear(pq, pk, v, causal)
    _close(num, n2, 1e-5)
    _close(den, d2, 1e-5)


def test_causal_scan_memory_is_not_blmd():
    b, length, m, d = 1, 4096, 64, 64
    pq, pk = (mx.random.uniform(shape=(b, length, m)) for _ in range(2))
    v = mx.random.normal((b, length, d))
    mx.eval(pq, pk, v)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    mx.eval(K.linear_attention(pq, pk, v, causal=True))
    peak = mx.get_peak_memory() - base
    assert peak < b * length * m * d * 4 / 4, f"peak {peak / 2**20:.1f} MiB"


# -- attention (Keras) ---------------------------------------------------------------------
def test_attention_masks_and_scores():
    att = nn.attention()
    q, v = mx.random.normal((2, 3, 4)), mx.random.normal((2, 5, 4))
    vm = mx.array([[True, True, False, False, True]] * 2)
    qm = mx.array([[True, False, True]] * 2)
    out, w = att(q, v, mask=[qm, vm], return_attention_scores=True)
    assert float(_np(w)[..., 2:4].max()) == 0.0
    assert float(np.abs(_np(out)[:, 1]).max()) == 0.0
    _close(_np(w).sum(-1), np.ones((2, 3)))
    _, wc = att(q, mx.random.normal((2, 3, 4)), use_causal_mask=True,
                return_attention_scores=True)
    assert float(np.triu(_np(wc)[0], 1).max()) == 0.0


def test_attention_weights_follow_the_arguments():
    assert nn.attention().weight_names == []
    a = nn.attention(use_scale=True, score_mode="concat")
    a.set_weights([np.array(2.0), np.array(0.5)])
    assert [float(w) for w in a.get_weights()] == [2.0, 0.5]


# -- multihead_attention -------------------------------------------------------------------
def test_mha_qk_is_scaled_masked_logits():
    layer = nn.multihead_attention(2, 8)
    x = mx.random.normal((1, 3, 8))
    big = mx.triu(mx.full((6, 6), -1e9), k=1)  # larger 2-D mask: sliced [:Tq, :Tk]
    out, qk = layer(x, mask=big)
    w = layer.get_weights()
    q = (_np(x) @ w[0] + w[1]).reshape(1, 3, 2, 4).transpose(0, 2, 1, 3)
    k = (_np(x) @ w[2] + w[3]).reshape(1, 3, 2, 4).transpose(0, 2, 1, 3)
    expect = q @ k.transpose(0, 1, 3, 2) / 2.0 + _np(big)[:3, :3]
    _close(qk, expect, 1e-4)


def test_mha_cross_attention_kdim_vdim_and_mask_forms():
    layer = nn.multihead_attention(2, 8, kdim=6, vdim=5)
    x, xk, xv = mx.zeros((2, 3, 8)), mx.ones((2, 4, 6)), mx.ones((2, 4, 5))
    out, qk = layer(x, (xk, xv))
    assert out.shape == (2, 3, 8) and qk.shape == (2, 2, 3, 4)
    for m in (mx.ones((3, 4), mx.bool_), mx.zeros((2, 3, 4)), mx.zeros((2, 1, 1, 4)),
              mx.zeros((1, 2, 3, 4)), mx.ones((4,), mx.bool_), mx.zeros((5, 9))):
        assert layer(x, (xk, xv), m)[1].shape == (2, 2, 3, 4)
    with pytest.raises(ValueError, match="mask"):
        layer(x, (xk, xv), mx.zeros((2, 3)))
    with pytest.raises(TypeError, match="mask"):
        layer(x, (xk, xv), mx.zeros((3, 4), mx.int32))
    lazy = nn.multihead_attention(2)
    lazy(x, xk[..., :5])
    assert (lazy.kdim, lazy.vdim) == (5, 5)


def test_mha_matches_keras_multihead_attention():
    """The ruling's MHA is Keras MultiHeadAttention with mapped weights (bool mask)."""
    keras = pytest.importorskip("keras")
    layer = nn.multihead_attention(4, 16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    y = rng.standard_normal((2, 7, 16)).astype(np.float32)
    mask = rng.uniform(size=(2, 5, 7)) < 0.7
    mask[..., 0] = True
    out, qk = layer(mx.array(x), mx.array(y), mx.array(mask))
    k = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    k(x, y, y)  # build
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    k.set_weights([wq.reshape(16, 4, 4), bq.reshape(4, 4), wk.reshape(16, 4, 4),
                   bk.reshape(4, 4), wv.reshape(16, 4, 4), bv.reshape(4, 4),
                   wo.reshape(4, 4, 16), bo])
    ko, kw = k(x, y, y, attention_mask=mask, return_attention_scores=True)
    _close(out, np.asarray(ko), 1e-5)
    _close(mx.softmax(qk, axis=-1), np.asarray(kw), 1e-5)


# -- talking_heads_attention ---------------------------------------------------------------
def test_talking_heads_identity_mixing_and_masks():
    layer = nn.talking_heads_attention(num_heads=3)
    q = mx.random.normal((2, 5, 3, 4))
    # identity mixing is plain softmax attention per head
    eye = np.eye(3, dtype=np.float32)
    layer.set_weights([eye, eye])
    ref = K.attention(q.transpose(0, 2, 1, 3), q.transpose(0, 2, 1, 3),
                      q.transpose(0, 2, 1, 3), 0.5).transpose(0, 2, 1, 3)
    _close(layer(q, q, q)[0], ref)
    # 0/1 float masks work like boolean ones
    m = mx.random.uniform(shape=(2, 5, 5)) < 0.6
    _close(layer(q, q, q, m)[1], layer(q, q, q, m.astype(mx.float32))[1])


def test_talking_heads_multi_axis():
    layer = nn.talking_heads_attention(qkv_rank=5, attention_axes=(1, 2))
    q = mx.random.normal((2, 3, 4, 2, 6))
    out, s = layer(q, q, q)
    assert out.shape == (2, 3, 4, 2, 6) and s.shape == (2, 2, 3, 4, 3, 4)
    # post-softmax mixing: each head's rows sum to its column of post_softmax_weight
    col = layer.get_weights()[1].sum(0)
    _close(_np(s).reshape(2, 2, 12, 12).sum(-1), np.broadcast_to(col[None, :, None], (2, 2, 12)),
           1e-5)
    with pytest.raises(ValueError, match=r"^talking_heads_attention: argument 'query_tensor'"
                                         r".*rank 5 \(qkv_rank\)"):
        layer(mx.zeros((2, 3, 2, 6)), mx.zeros((2, 3, 2, 6)), mx.zeros((2, 3, 2, 6)))


# -- FAVOR_attention -----------------------------------------------------------------------
def test_favor_features_redraw_and_seed():
    keys, vals, qs = mx.random.normal((2, 8, 6)), mx.random.normal((2, 3, 6)), \
        mx.random.normal((2, 8, 6))
    f = nn.FAVOR_attention(8, m=4)
    f(keys, vals, qs)
    w1 = _np(f.features)
    f(keys, vals, qs)
    assert not np.array_equal(w1, _np(f.features))
    _close(w1 @ w1.T, np.eye(4), 1e-5)  # orthonormal rows
    fixed = nn.FAVOR_attention(8, m=4, redraw=False, seed=3)
    y1, y2 = fixed(keys, vals, qs), fixed(keys, vals, qs)
    _close(y1, y2)
    _close(nn.FAVOR_attention(8, m=4, redraw=False, seed=3).features, fixed.features)
    assert nn.FAVOR_attention(8, m=9, orthonormal=False).features.shape == (9, 8)


def test_favor_causal_matches_loop():
    # Seeded (the features and the inputs); the loop runs in float64. Outputs are weighted
    # means of v and can lie near 0, so the tolerance is relative to the largest one: over
    # 200 seeds the float32 layer's worst error was 2e-7 of it, and 8e-5 elementwise.
    mx.random.seed(11)
    f = nn.FAVOR_attention(4, m=4, causal=True, redraw=False, chunk_size=3, kernel_eps=0.01)
    kk = mx.random.split(mx.random.key(12), 3)
    k, v, q = (mx.random.normal(s, key=key) for s, key in
               zip(((1, 4, 7), (1, 2, 7), (1, 4, 7)), kk))
    out = _np(f(k, v, q)).astype(np.float64)
    w = _np(f.features).astype(np.float64)

    def phi(x):
        return np.maximum(x.T @ w.T, 0) + 0.01  # h = sqrt(m), so the scale is 1

    pk, pq = phi(_np(k)[0].astype(np.float64)), phi(_np(q)[0].astype(np.float64))
    vv = _np(v)[0].T.astype(np.float64)
    ref = np.stack([pq[i] @ (pk[:i + 1].T @ vv[:i + 1]) / (pq[i] @ pk[:i + 1].sum(0))
                    for i in range(7)], axis=-1)
    np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


# -- Linformer_self_attention --------------------------------------------------------------
def test_linformer_projection_init_and_context():
    lin = nn.Linformer_self_attention(8, 6, k=3, heads=2, share_kv=True, one_kv_head=True)
    lim = 1 / math.sqrt(3)
    assert 0.5 * lim < np.abs(lin.get_weights()[2]).max() <= lim
    x = mx.random.normal((2, 6, 8))
    assert lin(mx.random.normal((2, 4, 8)), context=x).shape == (2, 4, 8)


# -- Transformer ---------------------------------------------------------------------------
def _small(**kw):
    base = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                dim_feedforward=32, dropout=0.0)
    return nn.Transformer(**{**base, **kw})


def test_transformer_masks():
    t = _small()
    src, tgt = mx.random.normal((2, 5, 16)), mx.random.normal((2, 4, 16))
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    assert float(_np(causal)[0, 1]) == -np.inf and float(_np(causal)[1, 0]) == 0.0
    a = t(src, tgt, tgt_mask=causal)
    _close(a, t(src, tgt, tgt_is_causal=True))
    _close(a, t(src, tgt, tgt_mask=mx.triu(mx.ones((4, 4), mx.bool_), k=1)))
    # causal: the first target position ignores later targets
    tgt2 = mx.concatenate([tgt[:, :1], mx.random.normal((2, 3, 16))], axis=1)
    _close(a[:, 0], t(src, tgt2, tgt_mask=causal)[:, 0])
    # key padding: padded source positions do not matter
    pad = mx.array([[False] * 3 + [True] * 2] * 2)
    src2 = mx.concatenate([src[:, :3], mx.random.normal((2, 2, 16))], axis=1)
    kw = dict(src_key_padding_mask=pad, memory_key_padding_mask=pad)
    _close(t(src, tgt, **kw), t(src2, tgt, **kw), 1e-5)
    per_head = mx.zeros((4, 5, 5))  # (B * nhead, S, S)
    _close(t(src, tgt, src_mask=per_head), t(src, tgt))
    with pytest.raises(ValueError, match="src_mask"):
        t(src, tgt, src_mask=mx.zeros((3, 5, 5)))


def test_transformer_structure_and_custom():
    t = _small(norm_first=True, bias=False)
    names = t.weight_names
    assert names[0] == "encoder.layers.0.self_attn.query.weight"
    assert "encoder.norm.gamma" in names and not any(n.endswith("beta") for n in names)
    assert not any(n.endswith(".bias") for n in names)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, 0.0), 2)
    custom = _small(custom_encoder=enc)
    assert sum(n.startswith("encoder.layers.1.") for n in custom.weight_names) > 0
    y = custom(mx.zeros((1, 3, 16)), mx.zeros((1, 2, 16)))
    assert y.shape == (1, 2, 16)
    ident = _small(custom_encoder=lambda src, **kw: src)
    assert not any(n.startswith("encoder") for n in ident.weight_names)
    twin = _small(norm_first=True, bias=False)
    twin.set_weights(t.get_weights())
    src, tgt = mx.random.normal((2, 3, 16)), mx.random.normal((2, 2, 16))
    _close(twin(src, tgt), t(src, tgt))


def test_transformer_device():
    src, tgt = mx.random.normal((2, 5, 16)), mx.random.normal((2, 4, 16))
    want = _small()
    for device in ("cpu", mx.cpu):
        t = _small(device=device)
        t.set_weights(want.get_weights())
        _close(t(src, tgt), want(src, tgt))
    if not mx.is_available(mx.gpu):
        with pytest.raises(ValueError, match="Transformer: argument 'device' got 'gpu'"):
            _small(device="gpu")
