"""conformance/initial_weights: its rows pass on main, and planted bugs in the initializers
(a fan rule, a scale, the truncation, a parse, the gain, shared draws, the dtype) fail them."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlxnote  # noqa: F401  (before TF: mlxnote's BLAS)
from conformance import initial_weights as iw
from conformance.initial_weights import dists
from mlxnote import nn
from mlxnote.nn import initializers

pytest.importorskip("keras")


def failed(select: str) -> list[str]:
    rows = iw.run(select)
    assert rows, f"no row matches {select!r}"
    return [r.name for r in rows if not r.passed]


def test_rows_pass_on_main():
    rows = iw.run()
    bad = [f"{r.name}: {r.detail}" for r in rows if not r.passed]
    assert not bad, "\n".join(bad)
    names = [r.name for r in rows]
    assert len(names) == len(set(names)) and len(rows) > 300
    # every layer class with weights has rows
    for layer in ("dense", "conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
                  "conv3d_transpose", "depthwise_conv1d", "depthwise_conv2d",
                  "separable_conv1d", "separable_conv2d", "batch_norm", "group_norm",
                  "layer_norm", "RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell",
                  "attention", "multihead_attention", "talking_heads_attention",
                  "FAVOR_attention", "Linformer_self_attention", "Transformer",
                  "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
                  "TransformerDecoderLayer", "Bidirectional(GRU)"):
        assert f"initial weights: {layer}: documented defaults" in names, layer


def test_ks_statistic_is_scipys():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=3000), rng.uniform(-2, 2, size=2000)
    assert dists.ks_statistic(x, y) == pytest.approx(scipy_stats.ks_2samp(x, y).statistic)


def test_judge_catches_a_scale_off_by_two_percent():
    rng = np.random.default_rng(1)
    lim = 0.1
    right = dists.Dist("uniform", -lim, lim)
    assert dists.properties(rng.uniform(-lim, lim, 16384), right) == []
    assert dists.properties(rng.uniform(-0.98 * lim, 0.98 * lim, 16384), right)
    assert dists.properties(rng.uniform(-1.02 * lim, 1.02 * lim, 16384), right)
    normal = dists.Dist("normal", 0.0, 1.0)
    assert dists.properties(rng.normal(0, 1, 16384), normal) == []
    assert dists.properties(rng.normal(0, 1.05, 16384), normal)


def test_planted_fan_rule_without_receptive_field(monkeypatch):
    orig = initializers.compute_fans
    monkeypatch.setattr(initializers, "compute_fans",
                        lambda s: (int(s[-2]), int(s[-1])) if len(s) > 2 else orig(s))
    assert "initial weights: conv2d: documented defaults" in failed("conv2d: documented")
    assert failed("conv3d_transpose: weight_initializer='He_uniform'")
    assert not failed("dense: documented")  # rank 2 untouched


def test_planted_fans_swapped(monkeypatch):
    orig = initializers.compute_fans
    monkeypatch.setattr(initializers, "compute_fans", lambda s: orig(s)[::-1])
    assert failed("dense: weight_initializer='He_uniform' (fan_in)")
    assert failed("LSTMCell: weight_initializer=['VarianceScaling', 1.0, 'fan_out'")
    assert failed("depthwise_conv2d: documented defaults") == []  # the sum is symmetric


def test_planted_scale_and_truncation(monkeypatch):
    monkeypatch.setitem(initializers._NAMED, "he_uniform",
                        lambda s: initializers._scaled(s, 1.9, "fan_in", "uniform"))
    assert failed("dense: weight_initializer='He_uniform'")
    monkeypatch.setattr(initializers, "TRUNC_STD", 1.0)  # He's std 12% low
    assert failed("dense: weight_initializer='He'")
    assert failed("conv2d: weight_initializer='Lecun_normal'")
    monkeypatch.setitem(initializers._NAMED, "uniform", lambda s: mx.random.uniform(-.06, .06, s))
    assert failed("dense: weight_initializer='uniform'")


def test_planted_lenient_parse(monkeypatch):
    """The mutant ``nums(2) -> nums(1)`` of the 'normal' list form: a non-number std passes."""
    orig = initializers._list_form

    def lenient(init):
        if str(init[0]).lower() == "normal" and len(init) == 3:
            return lambda s: init[1] + mx.random.normal(s)
        return orig(init)

    monkeypatch.setattr(initializers, "_list_form", lenient)
    assert failed("weight_initializer=['normal', 0.0, 'x'] refused")


def test_planted_gain_ignored_and_shared_draws(monkeypatch):
    orig = initializers._orthogonal
    monkeypatch.setattr(initializers, "_orthogonal", lambda s, gain=1.0, seed=None:
                        orig(s, 1.0, seed))
    assert failed("dense: weight_initializer=['Orthogonal', 1.5]")
    monkeypatch.setattr(initializers, "_orthogonal", orig)
    draw = initializers.initialize

    def shared(init, shape, dtype, *a, **k):  # every gate from one key
        mx.random.seed(0)
        return draw(init, shape, dtype, *a, **k)

    monkeypatch.setattr(initializers, "initialize", shared)
    assert failed("GRU: documented defaults") and failed("LSTM: seeded")


def test_planted_orthogonal_without_sign_correction(monkeypatch):
    def uncorrected(shape, gain=1.0, seed=None):
        rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
        q, _ = mx.linalg.qr(mx.random.normal((max(rows, cols), min(rows, cols))),
                            stream=mx.cpu)
        return gain * (q.T if rows < cols else q).reshape(shape)

    assert not failed("(sign-corrected)")
    monkeypatch.setitem(initializers._NAMED, "orthogonal", uncorrected)  # holds the function
    assert failed("(sign-corrected)")


def test_planted_dtype_dropped(monkeypatch):
    draw = initializers.initialize
    monkeypatch.setattr(initializers, "initialize", lambda init, shape, dtype, *a, **k:
                        draw(init, shape, mx.float32, *a, **k))
    assert failed("conv2d: float16 defaults") and failed("dense: bfloat16 defaults")


# -- the two fixes these rows found ---------------------------------------------------------
def test_random_normal_is_kerass():
    """'random_normal' (a Keras spelling) is Keras's RandomNormal(): N(0, 0.05), not N(0, 1)."""
    mx.random.seed(0)
    w = np.array(initializers.initialize("random_normal", (64, 256), mx.float32))
    assert abs(w.std() / 0.05 - 1) < 0.03 and abs(w.mean()) < 0.002
    assert dists.expect("random_normal", (1, 1)).b == 0.05


def test_orthogonal_seed_is_its_own():
    def draw(seed, other):
        mx.random.seed(other)
        return np.array(initializers.initialize(["Orthogonal", 2.0, seed], (8, 6), mx.float32))

    a = draw(3, 1)
    np.testing.assert_array_equal(a, draw(3, 2))
    assert not np.array_equal(a, draw(4, 1))
    np.testing.assert_allclose(a.T @ a, 4 * np.eye(6), atol=1e-4)
    for bad in (["Orthogonal", 1.0, "x"], ["Orthogonal", 1.0, 1.5], ["Orthogonal", 1.0, -1]):
        with pytest.raises(ValueError, match="dense: argument 'weight_initializer'"):
            nn.dense(4, 4, weight_initializer=bad)
