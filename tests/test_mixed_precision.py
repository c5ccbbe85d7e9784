"""Mixed precision (issue 18, item 3): Keras's ``mixed_bfloat16``/``mixed_float16``
policies (float32 master weights, 16-bit compute), dynamic loss scaling against Keras's
LossScaleOptimizer, a pure bf16 model stalling where the policy learns, checkpoints."""

import os

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxnote import Model, nn
from mlxnote import training as T
from mlxnote.training import mixed_precision as mp
from mlxnote.training.mixed_precision import LossScaleOptimizer


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


@pytest.fixture
def global_policy():
    yield
    mp.set_global_policy(None)


SEEN: list = []


class Net(Model):
    """Dense, batch norm (moving statistics), layer norm, a plain mlx.nn module."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self.fc1 = nn.dense(8, input_size=4, activation="relu", dtype=dtype)
        self.bn = nn.batch_norm(dtype=dtype)
        self.ln = nn.layer_norm(dtype=dtype)
        self.mid = mnn.Linear(8, 8)
        self.fc2 = nn.dense(3, dtype=dtype)

    def __call__(self, x):
        h = self.ln(self.bn(self.fc1(x)))
        SEEN.append(h.dtype)
        return self.fc2(mnn.relu(self.mid(h)))


def _blobs(n=32, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 3, (3, 4))[y] + rng.normal(0, 0.5, (n, 4))
    return x.astype(np.float32), y.astype(np.int32)


LOGITS = T.SparseCategoricalCrossentropy(from_logits=True)


def test_policy_names_and_errors(global_policy):
    p = mp.Policy("mixed_bfloat16")
    assert (p.compute_dtype, p.variable_dtype, p.mixed) == (mx.bfloat16, mx.float32, True)
    assert not mp.Policy().mixed and mp.Policy(p) == p
    with pytest.raises(ValueError, match="Policy: argument 'name' got 'bfloat16'; allowed: "
                                         ".*'mixed_bfloat16'.*layers' dtype='bfloat16'"):
        mp.Policy("bfloat16")
    with pytest.raises(TypeError, match="argument 'name' got 16"):
        mp.Policy(16)
    assert Net().dtype_policy.name == "float32"
    mp.set_global_policy("mixed_float16")
    m = Net()
    assert m.dtype_policy == mp.Policy("mixed_float16") == mp.global_policy()
    m.compile(T.SGD(0.1), LOGITS)
    assert isinstance(m.optimizer, LossScaleOptimizer)  # Keras's auto_scale_loss
    assert isinstance(m.optimizer.inner_optimizer, T.SGD)
    m.compile(T.SGD(0.1), LOGITS, auto_scale_loss=False)
    assert isinstance(m.optimizer, T.SGD)
    m.dtype_policy = "mixed_bfloat16"
    assert isinstance(m.optimizer, T.SGD)
    m.compile("adam", LOGITS)
    assert isinstance(m.optimizer, T.Adam)  # bfloat16 needs no loss scaling


@pytest.mark.parametrize("policy,dtype", [("mixed_bfloat16", mx.bfloat16),
                                          ("mixed_float16", mx.float16)])
def test_masters_stay_float32_and_compute_is_16_bit(policy, dtype):
    x, y = _blobs()
    m = Net()
    m.dtype_policy = policy
    m.compile("adam", LOGITS, ["accuracy"])
    SEEN.clear()
    h = m.fit(x, y, epochs=4, batch_size=8, verbose=0)
    assert dtype in SEEN and {v.dtype for _, v in tree_flatten(m.parameters())} == \
        {mx.float32}  # moving statistics too
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert {v.dtype for k, v in tree_flatten(m.optimizer.state)
            if k not in ("step", "good_steps")} == {mx.float32}
    assert m.predict(mx.array(x)).dtype == dtype
    # a direct call uses the float32 weights; autocast computes as the steps do
    SEEN.clear()
    m.eval()
    out32 = m(mx.array(x))
    with mp.autocast(m):
        out16 = m(mx.array(x).astype(dtype))
    assert SEEN == [mx.float32, dtype] and out32.dtype == mx.float32 and out16.dtype == dtype
    np.testing.assert_allclose(np.array(out16.astype(mx.float32)), np.array(out32),
                               rtol=0.1, atol=0.1)
    with pytest.raises(RuntimeError, match="Regression: autocast needs built layers"):
        with mp.autocast(Regression(input_size=None), policy):
            pass


def test_gradient_reaches_the_float32_weights_through_the_cast():
    """One SGD step under mixed_bfloat16 against the same step in float32: close (the
    gradient is the bf16 computation's), not equal (it was computed in bf16)."""
    x, y = _blobs(n=16)
    a, b = Net(), Net()
    a(mx.array(x))
    b(mx.array(x))
    b.update(a.parameters())
    b.dtype_policy = "mixed_bfloat16"
    for m in (a, b):
        m.compile(T.SGD(0.5), LOGITS)
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for (k, u), (_, v) in zip(tree_flatten(a.parameters()), tree_flatten(b.parameters())):
        assert v.dtype == mx.float32
        np.testing.assert_allclose(np.array(v), np.array(u), rtol=0.05, atol=0.02, err_msg=k)
    diff = [float(mx.abs(u - v).max()) for (_, u), (_, v) in
            zip(tree_flatten(a.trainable_parameters()), tree_flatten(b.trainable_parameters()))]
    assert max(diff) > 1e-5


class Regression(Model):
    def __init__(self, dtype="float32", input_size=4):
        super().__init__()
        self.fc = nn.dense(1, input_size=input_size, dtype=dtype)

    def __call__(self, x):
        return self.fc(x)


def test_bf16_weights_stall_where_the_policy_learns():
    """Updates of ~1e-4 on weights ~1 are below bf16's resolution (2^-8 relative): the bf16
    weights never move, the float32 masters of mixed_bfloat16 accumulate them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5, 1.5], np.float32) + 3.0)[:, None]
    w0 = [np.ones((4, 1), np.float32) * np.array([[1.0], [-0.75], [0.5], [1.25]]),
          np.ones(1, np.float32)]
    pure, mixed = Regression("bfloat16"), Regression()
    pure.set_weights([a.astype(np.float32) for a in w0], layout="keras")
    mixed.set_weights(w0, layout="keras")
    mixed.dtype_policy = "mixed_bfloat16"
    losses = {}
    for name, m in (("pure", pure), ("mixed", mixed)):
        m.compile(T.SGD(1e-4), "mse")
        before = m.evaluate(x, y, verbose=0)
        m.fit(x, y, epochs=10, batch_size=64, shuffle=False, verbose=0)
        losses[name] = (before, m.evaluate(x, y, verbose=0))
    start = [np.array(mx.array(w).astype(mx.bfloat16).astype(mx.float32)) for w in w0]
    for a, b in zip(pure.get_weights(layout="keras"), start):
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)  # never moved
    assert losses["pure"][1] == losses["pure"][0]  # stalled
    assert losses["mixed"][1] < losses["mixed"][0] - 1e-3  # learning
    moved = np.abs(np.array(mixed.get_weights(layout="keras")[1]) - w0[1]).max()
    assert moved > 1e-3  # ten updates of < 1e-3 each, every one lost in bf16


@pytest.mark.parametrize("clip", [{}, {"clipnorm": 0.5}])
def test_loss_scale_optimizer_matches_keras(keras, clip):
    """Scaled gradients with an inf and a NaN step: the same weights, scale and step
    count as Keras's LossScaleOptimizer(SGD(momentum)) step by step (with clipping: the
    inner optimizer clips the unscaled gradients, as Keras's)."""
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 2)).astype(np.float32)
    grads = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(7)]
    grads[2][0, 0] = np.inf
    grads[5][1, 1] = np.nan
    kopt = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1, momentum=0.9, **clip), initial_scale=8.0,
        dynamic_growth_steps=2)
    kv = keras.Variable(w0)
    kopt.build([kv])
    ours = LossScaleOptimizer(T.SGD(0.1, momentum=0.9, **clip), initial_scale=8.0,
                              dynamic_growth_steps=2)
    params = {"w": mx.array(w0)}
    ours.init(params)
    scales = []
    for g in grads:
        scale = float(ours.loss_scale)
        assert scale == pytest.approx(float(kopt.dynamic_scale.numpy()))
        kopt.apply([keras.ops.convert_to_tensor(g * scale)], [kv])
        params = ours.apply_gradients({"w": mx.array(g * scale)}, params)
        np.testing.assert_allclose(np.array(params["w"]), kv.numpy(), rtol=1e-6, atol=1e-7)
        assert int(ours.step) == int(kopt.iterations.numpy())
        scales.append(float(ours.loss_scale))
    assert scales == [8, 16, 8, 8, 16, 8, 8]  # halved on the inf and NaN steps
    assert int(ours.step) == 5 and np.isfinite(np.array(params["w"])).all()


def test_fit_skips_non_finite_steps_and_adjusts_the_scale():
    """mixed_float16: a batch whose float16 forward overflows is skipped (weights, Adam's
    moments and step count kept), the scale halves; finite steps double it every 2."""
    x, y = _blobs(n=24)
    bad = x.copy()
    bad[16:] = 1e6  # inf in float16: the third batch's gradients are not finite
    m = Net()
    m.dtype_policy = "mixed_float16"
    m.compile(LossScaleOptimizer(T.Adam(0.01), initial_scale=2.0**10,
                                 dynamic_growth_steps=2), LOGITS)
    ref = Net()
    ref(mx.array(x))
    m(mx.array(x))
    m.update(ref.parameters())
    m.fit(x[:16], y[:16], epochs=1, batch_size=8, shuffle=False, verbose=0)
    # the trainable weights (the moving statistics update in the forward, as in Keras)
    after_two = [np.array(v) for _, v in tree_flatten(m.trainable_parameters())]
    state = {k: np.array(v) for k, v in tree_flatten(m.optimizer.state)}
    assert float(m.optimizer.loss_scale) == 2.0**11 and int(m.optimizer.step) == 2
    m.fit(bad[16:], y[16:], epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert float(m.optimizer.loss_scale) == 2.0**10 and int(m.optimizer.step) == 2
    for a, (_, b) in zip(after_two, tree_flatten(m.trainable_parameters())):
        np.testing.assert_array_equal(a, np.array(b))
    for k, v in tree_flatten(m.optimizer.state):
        if k not in ("loss_scale", "good_steps"):
            np.testing.assert_array_equal(state[k], np.array(v), err_msg=k)
    m.fit(x[16:], y[16:], epochs=1, batch_size=8, verbose=0)
    assert int(m.optimizer.step) == 3 and int(m.optimizer.state["good_steps"]) == 1


def test_loss_scale_optimizer_errors():
    with pytest.raises(TypeError, match="LossScaleOptimizer: argument 'inner_optimizer'"):
        LossScaleOptimizer("adam")
    with pytest.raises(TypeError, match="inner_optimizer"):
        LossScaleOptimizer(LossScaleOptimizer(T.SGD()))
    with pytest.raises(ValueError, match="argument 'initial_scale' got 0"):
        LossScaleOptimizer(T.SGD(), initial_scale=0)
    with pytest.raises(ValueError, match="argument 'dynamic_growth_steps' got 0"):
        LossScaleOptimizer(T.SGD(), dynamic_growth_steps=0)


def test_resume_with_the_policy_is_exact(tmp_path):
    """mixed_float16 with its loss scale: 1 epoch, save, resume to 3 epochs in a new model
    gives the uninterrupted run's weights, optimizer state and scale."""
    x, y = _blobs(n=24)

    def make():
        mx.random.seed(5)
        m = Net()
        m.dtype_policy = "mixed_float16"
        m.compile(LossScaleOptimizer(T.Adam(0.01), dynamic_growth_steps=2), LOGITS)
        m(mx.array(x[:1]))
        return m

    mx.random.seed(7)
    full = make()
    full.fit(x, y, epochs=3, batch_size=8, verbose=0)
    mx.random.seed(7)
    part = make()
    part.fit(x, y, epochs=1, batch_size=8, verbose=0)
    part.save(tmp_path / "ck.safetensors")
    again = make()
    again.fit(x, y, epochs=3, batch_size=8, verbose=0, resume=tmp_path / "ck.safetensors")
    for (k, a), (_, b) in zip(tree_flatten(full.parameters()), tree_flatten(again.parameters())):
        assert b.dtype == mx.float32
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)
    assert float(again.optimizer.loss_scale) == float(full.optimizer.loss_scale)
    for (k, a), (_, b) in zip(tree_flatten(full.optimizer.state),
                              tree_flatten(again.optimizer.state)):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)
    assert int(again.optimizer.step) == int(full.optimizer.step) >= 8  # a skip or none


class Tanh(Model):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.dense(8, input_size=4, activation="tanh")
        self.fc2 = nn.dense(1)

    def __call__(self, x):
        return self.fc2(self.fc1(x))


def _tiny(y_true, y_pred):
    return 1e-7 * T.MeanSquaredError()(y_true, y_pred)


def test_float16_gradients_underflow_without_loss_scaling():
    """A loss of ~1e-7: its float16 gradients flush to zero without scaling (no step
    moves a weight); the LossScaleOptimizer's 2^15 keeps them, and its update is the
    float32 policy's to float16 precision."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.normal(size=(32, 1)).astype(np.float32)
    moves = {}
    for policy, scaled in (("float32", False), ("mixed_float16", False),
                           ("mixed_float16", True)):
        mx.random.seed(0)
        m = Tanh()
        m(mx.array(x))
        w0 = [np.array(a) for a in m.get_weights()]
        m.dtype_policy = policy
        m.compile(T.SGD(1e3), _tiny, auto_scale_loss=scaled)
        assert isinstance(m.optimizer, LossScaleOptimizer) == scaled
        m.fit(x, y, epochs=1, batch_size=32, verbose=0)
        moves[policy, scaled] = [np.array(a) - b for a, b in zip(m.get_weights(), w0)]
    assert all(np.all(d == 0) for d in moves["mixed_float16", False])
    for a, b in zip(moves["mixed_float16", True], moves["float32", False]):
        assert np.abs(b).max() > 1e-6
        np.testing.assert_allclose(a, b, rtol=0.05, atol=1e-3 * np.abs(b).max())
