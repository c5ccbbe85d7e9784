"""Sample and class weights (issue 18, item 2): ``fit``/``evaluate``'s ``sample_weight``,
``fit``'s ``class_weight``, validation sample weights and ``weighted_metrics``, against
Keras on the same weights and data (losses, logs, one SGD step), and the errors."""

import os

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import Model, nn
from mlxnote import training as T
from mlxnote.training import data, weighting

LOGITS = T.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


class Linear(Model):
    def __init__(self, out=3):
        super().__init__()
        self.fc = nn.dense(out, input_size=4)

    def __call__(self, x):
        return self.fc(x)


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    sw = rng.uniform(0, 3, n).astype(np.float32)
    return x, y, sw


def _pair(keras, out=3, loss="sce", metrics=(), weighted=(), lr=0.1):
    """An mlxnote model and a Keras Dense with the same weights, compiled alike."""
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(out)])
    m = Linear(out)
    m.set_weights(k.get_weights(), layout="keras")
    ours = LOGITS if loss == "sce" else loss
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True) \
        if loss == "sce" else loss
    m.compile(T.SGD(lr), ours, list(metrics), list(weighted))
    k.compile(keras.optimizers.SGD(lr), theirs, metrics=list(metrics),
              weighted_metrics=list(weighted))
    return m, k


def _close(ours, theirs, rtol=1e-5):
    assert set(ours) == set(theirs), (ours, theirs)
    for key in theirs:
        assert ours[key] == pytest.approx(float(theirs[key]), rel=rtol, abs=1e-6), key


def test_evaluate_loss_and_metrics_weighted_as_keras(keras):
    x, y, sw = _data()
    m, k = _pair(keras, metrics=["accuracy"], weighted=["accuracy"])
    # batch 4 over 10 samples: a short last batch (sum_over_batch_size per batch)
    ours = m.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    theirs = k.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    _close(ours, theirs)
    assert set(ours) == {"loss", "accuracy", "weighted_accuracy"}
    # the weights matter: the unweighted loss differs, the unweighted accuracy does not
    plain = m.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert plain["loss"] != pytest.approx(ours["loss"], rel=1e-3)
    assert plain["accuracy"] == ours["accuracy"]


def test_weighted_stateful_metrics_against_keras(keras):
    """A Metric object (counts, not a per-sample mean) in weighted_metrics takes the
    sample weights in its counts, as keras.metrics.Precision/AUC with sample_weight."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = rng.integers(0, 2, (12, 1)).astype(np.float32)
    sw = rng.uniform(0, 2, 12).astype(np.float32)
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    m = Linear(1)
    m.set_weights(k.get_weights(), layout="keras")

    class Sig(Linear):
        def __call__(self, x):
            return mx.sigmoid(self.fc(x))

    s = Sig(1)
    s.set_weights(m.get_weights())
    s.compile("sgd", "binary_crossentropy", ["precision"], [T.Precision(), T.AUC()])
    # names given: Keras numbers unnamed metric objects by how many it made before
    k.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.Precision(name="precision")],
              weighted_metrics=[keras.metrics.Precision(name="precision"),
                                keras.metrics.AUC(name="auc")])
    ours = s.evaluate(x, y, batch_size=5, sample_weight=sw, verbose=0, return_dict=True)
    theirs = k.evaluate(x, y, batch_size=5, sample_weight=sw, verbose=0, return_dict=True)
    _close(ours, theirs, rtol=1e-4)


def test_batch_loss_is_sum_over_batch_size(keras):
    """One batch: ``sum(loss_i * w_i) / B`` (Keras's ``compute_loss``), not over sum(w)."""
    x, y, sw = _data(n=6)
    m, k = _pair(keras)
    theirs = float(k.compute_loss(x=x, y=y, y_pred=k(x), sample_weight=sw))
    per = np.array(LOGITS(mx.array(y), m(mx.array(x))))
    assert theirs == pytest.approx(float((per * sw).sum() / 6), rel=1e-5)
    assert m.evaluate(x, y, batch_size=6, sample_weight=sw, verbose=0) == \
        pytest.approx(theirs, rel=1e-5)


def test_weighted_mean_metric_against_keras(keras):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    y = rng.normal(size=(9, 2)).astype(np.float32)
    sw = rng.uniform(0, 2, 9).astype(np.float32)
    m, k = _pair(keras, out=2, loss="mse", metrics=["mae"], weighted=["mae", "mse"])
    ours = m.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    theirs = k.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    _close(ours, theirs)
    assert ours["weighted_mae"] != pytest.approx(ours["mae"], rel=1e-3)


def test_fit_with_sample_weight_steps_as_keras(keras):
    x, y, sw = _data(n=8)
    m, k = _pair(keras, weighted=["accuracy"])
    h = m.fit(x, y, batch_size=4, epochs=2, shuffle=False, sample_weight=sw, verbose=0)
    hk = k.fit(x, y, batch_size=4, epochs=2, shuffle=False, sample_weight=sw, verbose=0)
    for a, b in zip(m.get_weights(layout="keras"), k.get_weights()):
        np.testing.assert_allclose(np.array(a), b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(h.history[key], hk.history[key], rtol=1e-5)
    # and differently from no weights
    m2, _ = _pair(keras)
    m2.set_weights(m.get_weights())
    m2.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    m.fit(x, y, batch_size=4, epochs=1, shuffle=False, sample_weight=sw, verbose=0)
    assert not np.allclose(np.array(m2.get_weights()[0]), np.array(m.get_weights()[0]))


@pytest.mark.parametrize("labels", ["sparse", "column", "onehot"])
def test_fit_with_class_weight_as_keras(keras, labels):
    x, y, _ = _data(n=8, seed=1)
    cw = {0: 0.5, 2: 3.0}  # class 1 missing: weight 1
    if labels == "onehot":
        yy = np.eye(3, dtype=np.float32)[y]
        loss = T.CategoricalCrossentropy(from_logits=True)
        kloss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        yy = y[:, None] if labels == "column" else y
        loss, kloss = LOGITS, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    m, k = _pair(keras, loss=loss)
    k.compile(keras.optimizers.SGD(0.1), kloss)
    h = m.fit(x, yy, batch_size=4, epochs=2, shuffle=False, class_weight=cw, verbose=0)
    hk = k.fit(x, yy, batch_size=4, epochs=2, shuffle=False, class_weight=cw, verbose=0)
    np.testing.assert_allclose(h.history["loss"], hk.history["loss"], rtol=1e-5)
    for a, b in zip(m.get_weights(layout="keras"), k.get_weights()):
        np.testing.assert_allclose(np.array(a), b, rtol=1e-5, atol=1e-6)


def test_class_weight_map_matches_keras():
    from keras.src.trainers.data_adapters.data_adapter_utils import (
        class_weight_to_sample_weights,
    )
    rng = np.random.default_rng(4)
    cw = {0: 0.25, 1: 2.0, 3: 5.0}
    ys = [rng.integers(0, 5, 12).astype(np.int32),                 # 4 is not a key
          rng.integers(0, 4, (12, 1)).astype(np.float32),
          np.eye(4, dtype=np.float32)[rng.integers(0, 4, 12)],
          rng.uniform(0, 1, 12).astype(np.float32) > 0.5]           # binary labels
    for y in ys:
        y = y.astype(np.float32) if y.dtype == bool else y
        ours = weighting.class_weight_to_sample_weights("t", mx.array(y), cw)
        np.testing.assert_allclose(np.array(ours), class_weight_to_sample_weights(y, cw))


def test_validation_sample_weights_as_keras(keras):
    x, y, sw = _data(n=8)
    xv, yv, swv = _data(n=6, seed=5)
    m, k = _pair(keras, weighted=["accuracy"])
    h = m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
              validation_data=(xv, yv, swv))
    hk = k.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
               validation_data=(xv, yv, swv))
    for key in ("val_loss", "val_accuracy", "loss"):
        np.testing.assert_allclose(h.history[key], hk.history[key], rtol=1e-5, err_msg=key)
    # class_weight applies to the training data only; validation_split splits the weights
    m2, k2 = _pair(keras)
    m2.set_weights(m.get_weights())
    k2.set_weights(k.get_weights())
    h2 = m2.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, sample_weight=sw,
                validation_split=0.25)
    hk2 = k2.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, sample_weight=sw,
                 validation_split=0.25)
    np.testing.assert_allclose(h2.history["val_loss"], hk2.history["val_loss"], rtol=1e-5)


def test_batches_carry_sample_weights_and_class_weight():
    x, y, sw = _data(n=8)
    batches = [(x[:4], y[:4], sw[:4]), (x[4:], y[4:], sw[4:])]
    m = Linear()
    m.compile("sgd", LOGITS)
    m(mx.array(x))
    assert m.evaluate(batches, verbose=0) == pytest.approx(
        m.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0), rel=1e-6)
    cw = {0: 2.0, 1: 0.5, 2: 1.5}
    w0 = m.get_weights()
    m.fit([(x[:4], y[:4]), (x[4:], y[4:])], class_weight=cw, shuffle=False, verbose=0)
    a = [np.array(v) for v in m.get_weights()]
    m.set_weights(w0)
    m.fit(x, y, batch_size=4, class_weight=cw, shuffle=False, verbose=0)
    for p, q in zip(a, m.get_weights()):
        np.testing.assert_allclose(p, np.array(q), rtol=1e-6)


def test_sharded_weights_sum_to_the_batch():
    """Three ranks, 5 rows: each rank's sample weights times its rows (the padding row
    weighing 0) add up to the whole batch's weighted sum."""
    x = np.repeat(np.arange(5, dtype=np.float32)[:, None], 4, axis=1)
    sw = np.array([0.5, 2.0, 1.0, 3.0, 0.25], np.float32)
    total = 0.0
    for r in range(3):
        xl, yl, w, swl, n = data.shard_weighted((mx.array(x),), None, mx.array(sw), r, 3)
        assert n == 5 and xl[0].shape[0] == 2 and swl.shape == w.shape
        total += float((swl * xl[0][:, 0]).sum())
    assert total == pytest.approx(float((sw * np.arange(5)).sum()), rel=1e-6)


def test_errors_name_the_argument():
    x, y, sw = _data()
    m = Linear()
    m.compile("sgd", LOGITS)
    fit = m.fit
    with pytest.raises(ValueError, match="Linear.fit: argument 'class_weight' got .*allowed: "
                                         "None when sample_weight is given"):
        fit(x, y, sample_weight=sw, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(TypeError, match="argument 'class_weight' got a key 'a'; allowed: "
                                        "integer class indices"):
        fit(x, y, class_weight={"a": 1.0}, verbose=0)
    with pytest.raises(ValueError, match="argument 'class_weight' got a key -1"):
        fit(x, y, class_weight={-1: 1.0}, verbose=0)
    with pytest.raises(TypeError, match="a weight 'x' for class 0"):
        fit(x, y, class_weight={0: "x"}, verbose=0)
    with pytest.raises(TypeError, match="argument 'class_weight' got list"):
        fit(x, y, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(ValueError, match="got a key 3; allowed: class indices in \\[0, 3\\)"):
        fit(x, np.eye(3, dtype=np.float32)[y], class_weight={3: 1.0}, verbose=0,
            loss=T.CategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="argument 'sample_weight' got 9 weights for 10 "
                                         "samples"):
        fit(x, y, sample_weight=sw[:9], verbose=0)
    with pytest.raises(ValueError, match="sample_weight' got an array of shape \\(10, 2\\); "
                                         "allowed: one weight per sample"):
        m.evaluate(x, y, sample_weight=np.ones((10, 2)), verbose=0)
    with pytest.raises(ValueError, match="'validation_data' got 4 weights for 10 samples"):
        fit(x, y, validation_data=(x, y, sw[:4]), verbose=0)
    with pytest.raises(TypeError, match="argument 'sample_weight' got weights with x given "
                                        "as batches"):
        fit([(x, y)], sample_weight=sw, verbose=0)
    with pytest.raises(ValueError, match="argument 'class_weight' got .*allowed: None when "
                                         "the batches carry sample weights"):
        fit([(x, y, sw)], class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="'sample_weight' got 3 weights for 10 samples"):
        fit([(x, y, sw[:3])], verbose=0)
