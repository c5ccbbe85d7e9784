"""Gradient clipping (issue 18, item 1): Keras's ``clipnorm``, ``clipvalue`` and
``global_clipnorm`` on every optimizer, against a hand computation, against Keras's
optimizers on one step from the same weights, and inside the compiled train step of fit."""

import os

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import Model, nn
from mlxnote import training as T
from mlxnote.training.optimizers import OPTIMIZERS, clip_gradients


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


def _grads():
    # two weights: norms 13 and 0.5 (one above, one below a clip norm of 1)
    return {"a": mx.array([[3.0, 4.0], [0.0, 12.0]]), "b": mx.array([0.3, -0.4])}


def test_clipnorm_clips_each_gradient_by_its_own_norm():
    out = clip_gradients(_grads(), clipnorm=1.0)
    np.testing.assert_allclose(np.array(out["a"]), np.array([[3, 4], [0, 12]]) / 13, rtol=1e-6)
    np.testing.assert_allclose(np.array(out["b"]), [0.3, -0.4], rtol=1e-6)  # norm 0.5 kept


def test_global_clipnorm_scales_all_gradients_together():
    g = _grads()
    n = np.sqrt(13.0**2 + 0.5**2)
    out = clip_gradients(g, global_clipnorm=2.0)
    for k in g:
        np.testing.assert_allclose(np.array(out[k]), np.array(g[k]) * 2.0 / n, rtol=1e-6)
    same = clip_gradients(g, global_clipnorm=20.0)  # under the norm: untouched
    for k in g:
        np.testing.assert_allclose(np.array(same[k]), np.array(g[k]), rtol=1e-6)
    # an inf norm makes every gradient NaN, as Keras's clip_by_global_norm
    bad = clip_gradients({"a": mx.array([np.inf, 1.0]), "b": mx.array([1.0])},
                         global_clipnorm=1.0)
    assert np.isnan(np.array(bad["b"])).all()


def test_clipvalue_clips_elements_and_zero_means_off():
    out = clip_gradients(_grads(), clipvalue=3.5)
    np.testing.assert_allclose(np.array(out["a"]), [[3.0, 3.5], [0.0, 3.5]])
    zero = {"a": mx.zeros((2, 2))}
    np.testing.assert_array_equal(np.array(clip_gradients(zero, clipnorm=1.0)["a"]), 0)
    for off in ({"clipnorm": 0.0}, {"clipvalue": 0}, {}):
        np.testing.assert_array_equal(np.array(clip_gradients(_grads(), **off)["a"]),
                                      np.array(_grads()["a"]))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_the_clip_arguments(name):
    cls = OPTIMIZERS[name]
    opt = cls(clipnorm=1.0)
    assert (opt.clipnorm, opt.clipvalue, opt.global_clipnorm) == (1.0, None, None)
    with pytest.raises(ValueError, match=f"{cls.__name__}: argument 'clipvalue' got "
                                         "clipvalue=0.5 with clipnorm=1.0; allowed: only one"):
        cls(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="global_clipnorm"):
        cls(clipvalue=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="argument 'clipnorm' got -1.0; allowed: None or a "
                                         "finite number >= 0"):
        cls(clipnorm=-1.0)
    with pytest.raises(TypeError, match="argument 'clipvalue' got '1'"):
        cls(clipvalue="1")


def test_get_optimizer_takes_keras_config_form():
    opt = T.get_optimizer({"class_name": "Adam", "config": {"learning_rate": 0.01,
                                                            "global_clipnorm": 2.0}})
    assert isinstance(opt, T.Adam) and opt.global_clipnorm == 2.0
    assert opt.learning_rate.item() == pytest.approx(0.01)
    with pytest.raises(TypeError, match="argument 'optimizer' got .*the arguments of sgd"):
        T.get_optimizer({"class_name": "sgd", "config": {"clip": 1.0}})


_KERAS = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "rmsprop": "RMSprop",
          "adagrad": "Adagrad", "adadelta": "Adadelta", "sgd": "SGD", "lion": "Lion"}


@pytest.mark.parametrize("clip", [{"clipnorm": 1.0}, {"global_clipnorm": 1.5},
                                  {"clipvalue": 0.2}])
@pytest.mark.parametrize("name", sorted(_KERAS))
def test_steps_match_keras(keras, name, clip):
    """Three steps from the same weights, gradients of norms ~7, ~0.1 and ~3 (so that
    the clipping changes the result of every optimizer, scale-free first steps too)."""
    rng = np.random.default_rng(3)
    w0 = {"a": rng.normal(size=(4, 3)).astype(np.float32),
          "b": rng.normal(size=(3,)).astype(np.float32)}
    steps = [{"a": rng.normal(0, s, size=(4, 3)).astype(np.float32),
              "b": rng.normal(0, 0.1, size=(3,)).astype(np.float32)} for s in (2, 0.03, 1)]
    kw = {"learning_rate": 0.1, **clip}
    kopt = getattr(keras.optimizers, _KERAS[name])(**kw)
    kv = [keras.Variable(w0[k]) for k in "ab"]
    for g in steps:
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g[k]), v) for k, v in zip("ab", kv)])

    def run(opt):
        params = {k: mx.array(v) for k, v in w0.items()}
        opt.init(params)
        for g in steps:
            params = opt.apply_gradients({k: mx.array(v) for k, v in g.items()}, params)
        return params

    ours, free = run(OPTIMIZERS[name](**kw)), run(OPTIMIZERS[name](learning_rate=0.1))
    for k, v in zip("ab", kv):
        np.testing.assert_allclose(np.array(ours[k]), v.numpy(), rtol=2e-5, atol=2e-6)
    assert not np.allclose(np.array(ours["a"]), np.array(free["a"]), rtol=1e-4, atol=1e-5)


class Linear(Model):
    def __init__(self):
        super().__init__()
        self.fc = nn.dense(2, input_size=3)

    def __call__(self, x):
        return self.fc(x)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5},
                                  {"clipvalue": 0.05}])
def test_fit_clips_inside_the_compiled_step(keras, clip):
    """One fit step with SGD and clipping, from the same weights as a Keras Dense."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(3, 1, size=(8, 2)).astype(np.float32)
    m = Linear()
    k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    start = [np.array(a, np.float64) for a in k.get_weights()]
    m.set_weights(k.get_weights(), layout="keras")
    m.compile(T.SGD(0.1, **clip), "mse")
    k.compile(keras.optimizers.SGD(0.1, **clip), "mse")
    m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    k.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(layout="keras"), k.get_weights()):
        np.testing.assert_allclose(np.array(a), b, rtol=1e-5, atol=1e-6)
    # and by hand: w1 = w0 - lr * clip(grad of the batch's mean loss)
    w, b = start
    e = x @ w + b - y
    gw, gb = x.T @ (2 * e / e.size), (2 * e / e.size).sum(0)
    if "clipnorm" in clip:
        c = clip["clipnorm"]
        gw, gb = gw * c / max(np.linalg.norm(gw), c), gb * c / max(np.linalg.norm(gb), c)
    elif "global_clipnorm" in clip:
        c, n = clip["global_clipnorm"], np.sqrt((gw**2).sum() + (gb**2).sum())
        gw, gb = gw * c / max(n, c), gb * c / max(n, c)
    else:
        gw, gb = np.clip(gw, -0.05, 0.05), np.clip(gb, -0.05, 0.05)
    got = m.get_weights(layout="keras")
    np.testing.assert_allclose(np.array(got[0]), w - 0.1 * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(got[1]), b - 0.1 * gb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(_KERAS))
def test_get_optimizer_reads_keras_serialized_optimizers(keras, name):
    """``keras.optimizers.serialize(opt)`` (its neutral base options dropped) gives the
    same optimizer: the same three steps from the same weights."""
    kopt = getattr(keras.optimizers, _KERAS[name])(learning_rate=0.05, clipnorm=0.7)
    ours = T.get_optimizer(keras.optimizers.serialize(kopt))
    assert type(ours) is OPTIMIZERS[name] and ours.clipnorm == 0.7
    rng = np.random.default_rng(8)
    w0 = rng.normal(size=(3, 2)).astype(np.float32)
    kv = keras.Variable(w0)
    params = {"w": mx.array(w0)}
    ours.init(params)
    for _ in range(3):
        g = rng.normal(0, 2, size=(3, 2)).astype(np.float32)
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g), kv)])
        params = ours.apply_gradients({"w": mx.array(g)}, params)
    np.testing.assert_allclose(np.array(params["w"]), kv.numpy(), rtol=2e-5, atol=2e-6)


def test_get_optimizer_refuses_keras_options_it_lacks(keras):
    config = keras.optimizers.serialize(keras.optimizers.Adam(use_ema=True))
    with pytest.raises(TypeError, match="argument 'optimizer' got a config of Adam; allowed: "
                                        "the arguments of Adam here .*use_ema"):
        T.get_optimizer(config)
