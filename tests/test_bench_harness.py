"""The benchmark harness measures what its columns claim (no timing here)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from benchmarks.harness import tf_timers  # noqa: E402


@pytest.mark.parametrize("cotangent", [False, True])
def test_tf_forward_backward_computes_the_forward(cotangent):
    """TF's forward+backward closure returns the forward's value with the gradients: a
    gradient-only ``tf.function`` prunes the forward of a linear layer (the gradient of a
    sum does not need ``y``), which timed TF's backward alone against our forward+backward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    layer = keras.layers.Conv2D(4, 3, padding="same")
    layer.build(x.shape)
    y = layer(x).numpy()
    ct = rng.standard_normal(y.shape).astype(np.float32) if cotangent else None
    fwd, bwd = tf_timers(layer, layer.trainable_variables, x, cotangent=ct)
    np.testing.assert_allclose(np.asarray(fwd()), y, rtol=1e-6)
    value, grads = bwd()
    expected = y if cotangent else y.sum()
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-5, atol=1e-5)
    assert len(grads) == 3  # x, kernel, bias
    bias_grad = ct.sum(axis=(0, 1, 2)) if cotangent else np.full(4, y[..., 0].size)
    np.testing.assert_allclose(np.asarray(grads[2]), bias_grad, rtol=1e-5)


def test_interleaved_rounds_vary_which_implementation_runs_before_which():
    """A fixed order put the first column right after the last one in every round (PyTorch's
    spinning threads then slowed it); each round now has its own order."""
    from benchmarks.harness import interleaved_min

    calls = []
    impls = {k: (lambda k=k: calls.append(k)) for k in "abcdefg"}
    best = interleaved_min(impls, repeat=9, warmup=0, burst=1)
    assert set(best) == set(impls) and len(calls) == 9 * 7
    before_a = {calls[i - 1] for i in range(1, len(calls)) if calls[i] == "a"}
    assert len(before_a) >= 3
