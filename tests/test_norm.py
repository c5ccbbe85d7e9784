"""The normalization layers: batch_norm, group_norm, layer_norm (and the aliases). Every
documented example runs with its documented shape; the layer contract runs through
tests/layer_contract.py; NumPy pins the math; the moving statistics are state that
mx.compile carries."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest
from layer_contract import Contract, check_layer, contract_params
from mlx.utils import tree_flatten

from mlxnote import nn
from mlxnote.kernels import norm as K


def _np(a):
    return np.array(a.astype(mx.float32) if a.dtype != mx.float32 else a, dtype=np.float64)


def _x(shape, seed=0, offset=0.0):
    return mx.array((np.random.default_rng(seed).standard_normal(shape) * 2 + offset)
                    .astype(np.float32))


# -- documented examples ------------------------------------------------------------------
def test_documented_examples():
    bn = nn.batch_norm(input_size=10)
    data = mx.random.normal((2, 5, 10))
    out = bn(data)
    assert out.shape == (2, 5, 10)
    assert not np.allclose(_np(bn.moving_mean), 0.0)  # training mode by default: updated
    gn = nn.group_normalization(input_size=256, groups=32, axis=-1)
    assert gn(mx.random.normal([64, 128, 256])).shape == (64, 128, 256)
    ln = nn.layer_normalization(128, axis=-1)
    assert ln(mx.random.normal([64, 128])).shape == (64, 128)
    assert nn.group_normalization is nn.group_norm and nn.layer_normalization is nn.layer_norm


# -- the layer contract (tests/layer_contract.py) ------------------------------------------
LAZY = dict(input_size=None)
CONTRACTS = [
    Contract(nn.batch_norm, dict(input_size=4), (3, 5, 4), lazy=LAZY, stateful=True,
             weights={"moving_mean": (4,), "moving_variance": (4,), "beta": (4,), "gamma": (4,)},
             frozen=("moving_mean", "moving_variance"),
             bad_args=[(dict(axis="x"), TypeError, "axis"), (dict(axis=[1, 1]), ValueError, "axis"),
                       (dict(momentum=1.5), ValueError, "momentum"),
                       (dict(epsilon=-1.0), ValueError, "epsilon"),
                       (dict(center="yes"), TypeError, "center"),
                       (dict(input_size=None, moving_variance_initializer="nope"), ValueError,
                        "moving_variance_initializer"),
                       (dict(input_size=4, axis=[1, 2]), ValueError, "input_size"),
                       (dict(synchronized=1), TypeError, "synchronized")],
             bad_inputs=[((3, 5, 5), ValueError, "data"), ((4,), ValueError, "data"),
                         ((3, 5, 4), ValueError, "mask", dict(mask=mx.ones((3, 4)))),
                         ((3, 5, 4), TypeError, "mask",
                          dict(mask=mx.zeros((3, 5), dtype=mx.complex64)))]),
    Contract(nn.group_norm, dict(groups=2, input_size=4), (2, 3, 4), lazy=LAZY,
             weights={"gamma": (4,), "beta": (4,)},
             bad_args=[(dict(groups=0), ValueError, "groups"),
                       (dict(groups=3), ValueError, "groups"),
                       (dict(axis=0), ValueError, "axis"), (dict(axis=[1]), TypeError, "axis"),
                       (dict(input_size=None, gamma_initializer="nope"), ValueError,
                        "gamma_initializer"),
                       (dict(epsilon=-1.0), ValueError, "epsilon")],
             bad_inputs=[((2, 3, 6), ValueError, "data"), ((4,), ValueError, "data"),
                         ((2, 3, 4), ValueError, "mask", dict(mask=mx.ones((3, 3)))),
                         ((2, 3, 4), TypeError, "mask",
                          dict(mask=mx.zeros((2, 3, 4), dtype=mx.complex64)))]),
    Contract(nn.layer_norm, dict(input_size=4), (2, 3, 4), lazy=LAZY,
             weights={"beta": (4,), "gamma": (4,)},
             bad_args=[(dict(axis=[]), TypeError, "axis"),
                       (dict(rms_scaling=None), TypeError, "rms_scaling"),
                       (dict(momentum=1.5), ValueError, "momentum"),
                       (dict(input_size=None, beta_initializer="nope"), ValueError,
                        "beta_initializer")],
             bad_inputs=[((2, 3, 5), ValueError, "data"), ((), ValueError, "data")]),
    Contract(nn.layer_norm, dict(input_size=[3, 4], axis=[1, 2]), (2, 3, 4), lazy=LAZY,
             id="layer_norm-axes", weights={"beta": (3, 4), "gamma": (3, 4)},
             bad_args=[(dict(input_size=[3]), TypeError, "input_size")],
             bad_inputs=[((2, 3, 5), ValueError, "data"), ((2, 3), ValueError, "data")]),
]


@pytest.mark.parametrize("contract, check", contract_params(CONTRACTS))
def test_layer_contract(contract, check):
    check_layer(contract, check)


# -- batch_norm ---------------------------------------------------------------------------
def test_batch_norm_moving_stats_stay_frozen():
    bn = nn.batch_norm(4)
    assert {"moving_mean", "moving_variance"} <= set(dict(tree_flatten(bn.parameters())))
    bn.unfreeze()  # moving statistics stay frozen
    assert sorted(dict(tree_flatten(bn.trainable_parameters()))) == ["beta", "gamma"]
    only = nn.batch_norm(4, center=False)
    assert only.weight_names == ["moving_mean", "moving_variance", "gamma"]


def test_batch_norm_training_matches_numpy_and_updates_moving_stats():
    mx.random.seed(0)
    bn = nn.batch_norm(3, momentum=0.9, epsilon=1e-3, beta_initializer="normal",
                       gamma_initializer="normal")
    mm0, mv0, beta, gamma = bn.get_weights()
    x = _x((4, 5, 3), offset=3.0)
    y = _np(bn(x))
    xn = _np(x)
    mean, var = xn.mean((0, 1)), xn.var((0, 1))  # biased variance
    want = (xn - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # momentum weights the OLD value (Keras), not the new one (PyTorch/mlx.nn).
    np.testing.assert_allclose(_np(bn.moving_mean), 0.9 * mm0 + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(_np(bn.moving_variance), 0.9 * mv0 + 0.1 * var, rtol=1e-5)


def test_batch_norm_inference_uses_moving_stats_and_leaves_them():
    bn = nn.batch_norm(3, moving_mean_initializer="normal",
                       moving_variance_initializer=["uniform", 0.5, 2.0])
    bn.eval()
    mm, mv, beta, gamma = bn.get_weights()
    x = _x((6, 3))
    np.testing.assert_allclose(_np(bn(x)), (_np(x) - mm) / np.sqrt(mv + 1e-3) * gamma + beta,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_np(bn.moving_mean), mm)


def test_batch_norm_positional_train_flag():
    bn = nn.batch_norm(3)
    x = _x((6, 3), offset=1.0)
    bn(x, False)  # Note's call (data, train_flag)
    np.testing.assert_array_equal(_np(bn.moving_mean), 0.0)
    bn.eval()
    bn(x, True)
    assert not np.allclose(_np(bn.moving_mean), 0.0)


def test_batch_norm_trainable_false():
    bn = nn.batch_norm(3, trainable=False, moving_variance_initializer="ones")
    x = _x((6, 3), offset=2.0)
    y = bn(x)  # training mode, but frozen: the moving statistics, no update
    np.testing.assert_allclose(_np(y), _np(x) / np.sqrt(1 + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(_np(bn.moving_mean), 0.0)


def test_batch_norm_masked_moments_are_the_documented_formula():
    bn = nn.batch_norm(4, momentum=0.0)  # the moving stats become the batch's
    x = _x((3, 5, 4))
    w = np.random.default_rng(1).uniform(0.0, 2.0, (3, 5))
    bn(x, mask=mx.array(w.astype(np.float32)))
    xn, wb = _np(x), w[..., None]
    s = wb.sum((0, 1)) + 1e-7
    mean = (wb * xn).sum((0, 1)) / s
    var = (wb * (wb * xn - mean) ** 2).sum((0, 1)) / s
    np.testing.assert_allclose(_np(bn.moving_mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(bn.moving_variance), var, rtol=1e-5, atol=1e-6)
    # A 0/1 mask: the moments of the kept rows.
    keep = np.random.default_rng(2).uniform(size=(3, 5)) < 0.6
    bn(x, mask=keep)
    np.testing.assert_allclose(_np(bn.moving_mean), xn[keep].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(bn.moving_variance), xn[keep].var(0), rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("axis,shape", [(1, (3, 4, 5)), ([1, 3], (2, 3, 4, 5)),
                                        (-2, (2, 3, 4, 2, 3))])
def test_batch_norm_axis_and_lazy_build(axis, shape):
    bn = nn.batch_norm(axis=axis, momentum=0.0)
    x = _x(shape)
    y = bn(x)
    axes = [axis] if isinstance(axis, int) else axis
    axes = sorted(a % len(shape) for a in axes)
    kept = tuple(shape[a] for a in axes)
    assert bn.moving_mean.shape == kept and bn.gamma.shape == kept
    red = tuple(i for i in range(len(shape)) if i not in axes)
    xn = _np(x)
    want = (xn - xn.mean(red, keepdims=True)) / np.sqrt(xn.var(red, keepdims=True) + 1e-3)
    np.testing.assert_allclose(_np(y), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(bn.moving_mean), xn.mean(red), rtol=1e-5, atol=1e-6)


def test_batch_norm_custom_vjp_matches_autodiff():
    """The hand-written VJP of the training kernel against autodiff of the plain formula."""
    x, g, b = _x((4, 3, 6), offset=5.0), _x((1, 1, 6), 1), _x((1, 1, 6), 2)
    ct = _x((4, 3, 6), 3)
    red = (0, 1)

    def plain(x, g, b):
        m = mx.mean(x, red, keepdims=True)
        v = mx.var(x, red, keepdims=True)
        return (x - m) * mx.rsqrt(v + 1e-3) * g + b

    _, ours = mx.vjp(lambda *a: K.batch_norm_train(*a, red, 1e-3)[0], [x, g, b], [ct])
    _, want = mx.vjp(plain, [x, g, b], [ct])
    for a, w in zip(ours, want):
        np.testing.assert_allclose(_np(a), _np(w), rtol=1e-4, atol=1e-4)


def test_batch_norm_compile_with_state_updates_moving_stats():
    mx.random.seed(3)
    model = mnn.Sequential(nn.dense(6, 5), nn.batch_norm(6))
    twin = mnn.Sequential(nn.dense(6, 5), nn.batch_norm(6))
    twin.update(model.parameters())
    opt, opt2 = optim.SGD(learning_rate=0.1), optim.SGD(learning_rate=0.1)
    xs = [_x((8, 5), s, offset=1.0) for s in range(3)]

    def loss_fn(m, x):
        return mx.mean(mx.square(m(x)))

    state = [model.state, opt.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        loss, grads = mnn.value_and_grad(model, loss_fn)(model, x)
        opt.update(model, grads)
        return loss

    for x in xs:
        step(x)
        loss, grads = mnn.value_and_grad(twin, loss_fn)(twin, x)
        opt2.update(twin, grads)
    mx.eval(model.state, twin.state)
    bn, bn2 = model.layers[1], twin.layers[1]
    assert not np.allclose(_np(bn.moving_mean), 0.0)
    for name in ("moving_mean", "moving_variance", "gamma", "beta"):
        np.testing.assert_allclose(_np(getattr(bn, name)), _np(getattr(bn2, name)),
                                   rtol=1e-5, atol=1e-6)


def test_batch_norm_synchronized_single_process_is_local():
    mx.random.seed(4)
    a = nn.batch_norm(5, synchronized=True, gamma_initializer="normal")
    b = nn.batch_norm(5, gamma_initializer="normal")
    b.set_weights(a.get_weights())
    x = _x((7, 5))
    np.testing.assert_allclose(_np(a(x)), _np(b(x)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_np(a.moving_variance), _np(b.moving_variance), rtol=1e-6)


# -- group_norm ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis,shape,groups", [(-1, (2, 3, 6), 3), (1, (2, 6, 4), 2),
                                               (-2, (2, 3, 8, 2), 4), (-1, (2, 5, 4), -1)])
def test_group_norm_matches_numpy(axis, shape, groups):
    mx.random.seed(6)
    gn = nn.group_norm(groups, axis=axis, gamma_initializer="normal", beta_initializer="normal")
    x = _x(shape)
    y = _np(gn(x))
    assert gn.weight_names == ["gamma", "beta"] and gn.input_size == shape[axis]
    gamma, beta = gn.get_weights()
    xn = np.moveaxis(_np(x), axis, -1)
    G = shape[axis] if groups == -1 else groups
    xg = xn.reshape(shape[0], -1, G, shape[axis] // G)
    mean = xg.mean((1, 3), keepdims=True)
    var = xg.var((1, 3), keepdims=True)
    want = ((xg - mean) / np.sqrt(var + 1e-3)).reshape(xn.shape) * gamma + beta
    np.testing.assert_allclose(y, np.moveaxis(want, -1, axis), rtol=1e-4, atol=1e-5)


def test_group_norm_mask_is_frequency_weights():
    w = np.array([1.0, 0.0, 2.0, 1.0], np.float32)[None, :, None]  # (1, 4, 1)
    gn = nn.group_norm(1, mask=w)
    x = _x((2, 4, 3))
    y = _np(gn(x))
    xn = _np(x)
    wb = np.broadcast_to(w, xn.shape)
    mean = (wb * xn).sum((1, 2), keepdims=True) / wb.sum((1, 2), keepdims=True)
    var = (wb * (xn - mean) ** 2).sum((1, 2), keepdims=True) / wb.sum((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    # A call-time mask overrides the constructor's.
    np.testing.assert_allclose(_np(gn(x, mask=np.ones((2, 4, 3)))),
                               _np(nn.group_norm(1)(x)), rtol=1e-5, atol=1e-6)


# -- layer_norm ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis,shape", [(-1, (3, 5)), ([1, 2], (2, 3, 4)), (1, (2, 3, 4)),
                                        ([1, 3], (2, 3, 2, 4))])
def test_layer_norm_matches_numpy(axis, shape):
    mx.random.seed(7)
    ln = nn.layer_norm(axis=axis, gamma_initializer="normal", beta_initializer="normal")
    x = _x(shape, offset=2.0)
    y = _np(ln(x))
    axes = tuple(sorted(a % len(shape) for a in ([axis] if isinstance(axis, int) else axis)))
    assert ln.weight_names == ["beta", "gamma"]
    assert ln.gamma.shape == tuple(shape[a] for a in axes)
    beta, gamma = ln.get_weights()
    bshape = [shape[i] if i in axes else 1 for i in range(len(shape))]
    xn = _np(x)
    want = (xn - xn.mean(axes, keepdims=True)) / np.sqrt(xn.var(axes, keepdims=True) + 1e-3)
    want = want * gamma.reshape(bshape) + beta.reshape(bshape)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [64, 512, 100])
@pytest.mark.parametrize("has_g,has_b", [(True, True), (True, False), (False, True),
                                         (False, False)])
def test_layer_norm_cpu_kernel_matches_fast_layer_norm(d, has_g, has_b):
    """The CPU kernel (split row reductions, hand-written VJP) against mx.fast.layer_norm
    (the GPU path), forward and backward."""
    x, ct = _x((3, 4, d), offset=1.5), _x((3, 4, d), 1)
    g, b = _x((d,), 2), _x((d,), 3)
    ours_y, ours = mx.vjp(lambda x, g, b: K.layer_norm(
        x, g if has_g else None, b if has_b else None, 1e-3), [x, g, b], [ct])
    want_y, want = mx.vjp(lambda x, g, b: mx.fast.layer_norm(
        x, g if has_g else None, b if has_b else None, 1e-3), [x, g, b], [ct])
    np.testing.assert_allclose(_np(ours_y[0]), _np(want_y[0]), rtol=1e-5, atol=1e-5)
    for a, w, used in zip(ours, want, (True, has_g, has_b)):
        np.testing.assert_allclose(_np(a), _np(w) if used else 0.0, rtol=1e-4, atol=1e-4)


def test_layer_norm_rms_scaling_is_keras():
    ln = nn.layer_norm(5, rms_scaling=True, gamma_initializer="normal")
    assert ln.weight_names == ["gamma"]  # Keras: gamma always, no beta
    x = _x((3, 5), offset=1.0)
    (gamma,) = ln.get_weights()
    xn = _np(x)
    np.testing.assert_allclose(_np(ln(x)), xn / np.sqrt(xn.var(-1, keepdims=True) + 1e-3)
                               * gamma, rtol=1e-5, atol=1e-6)


def test_layer_norm_half_rounds_once():
    ln = nn.layer_norm(4, dtype="bfloat16", gamma_initializer="normal",
                       beta_initializer="normal")
    ref = nn.layer_norm(4)
    ref.set_weights(ln.get_weights())
    x = _x((3, 4)).astype(mx.bfloat16)
    want = ref(x.astype(mx.float32)).astype(mx.bfloat16)
    np.testing.assert_array_equal(_np(ln(x)), _np(want))


def test_norm_layers_train_with_value_and_grad():
    model = mnn.Sequential(nn.dense(8, 4), nn.layer_norm(), nn.group_norm(2), nn.batch_norm())
    x = _x((6, 4))
    model(x)
    loss, grads = mnn.value_and_grad(model, lambda m, x: m(x).square().mean())(model, x)
    names = {k for k, _ in tree_flatten(grads)}
    assert "layers.3.gamma" in names and "layers.3.moving_mean" not in names
    assert "layers.1.beta" in names and "layers.2.gamma" in names


@pytest.mark.parametrize("make", [nn.batch_norm, nn.layer_norm])
def test_a_list_axis_with_input_size_is_one_size_per_axis(make):
    """Found by tests/test_fuzz.py: axis=[1] with input_size=[3] (or 3) refused the input it
    was built for, and axis=[2, 1] with input_size=[s2, s1] (one size per axis, in the order
    given) stored weights that did not broadcast; the axes are kept sorted, as Keras does."""
    x = mx.array(np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32))
    for size in ([3], 3):
        assert make(input_size=size, axis=[1])(x).shape == (4, 3, 5)
    a = make(input_size=[5, 3], axis=[2, 1], gamma_initializer="normal")
    assert a.axis == (1, 2) and a.input_size == (3, 5)
    b = make(axis=[1, 2])
    b(x)
    b.set_weights(a.get_weights())
    assert np.allclose(np.array(a(x)), np.array(b(x)))
