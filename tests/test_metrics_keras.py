"""Metrics beyond accuracy (issue 18, part B.2) against ``keras.metrics`` on the same data.

Each metric is fed the same batches (with sample weights) on both sides: Keras's metric
through ``update_state`` batch by batch, mlxnote's through the compiled evaluation step
of a model that outputs its input (``evaluate`` with a batch size that splits the data,
so the sums are accumulated over batches as fit does) and through :class:`Totals`
directly with weights. Results agree to float32 rounding.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxnote.training import Model
from mlxnote.training.confusion import AUC, Precision, Recall
from mlxnote.training.metrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    Totals,
    get_metrics,
    in_top_k,
    weighted_sums,
)

keras = pytest.importorskip("keras")
KM = keras.metrics


class Passthrough(Model):
    """A model whose predictions are its input (so that the metrics see given values)."""

    def __call__(self, x):
        return x


def _keras_result(km, y, p, w, batch):
    for i in range(0, len(y), batch):
        km.update_state(y[i:i + batch], p[i:i + batch], sample_weight=w[i:i + batch])
    return np.asarray(km.result())


def _mlx_result(metric, y, p, w, batch):
    """Totals over batches of ``weighted_sums`` (what the compiled step returns)."""
    name = getattr(metric, "name", "m")
    t = Totals([(name, metric)])
    for i in range(0, len(y), batch):
        yb, pb, wb = (mx.array(a[i:i + batch]) for a in (y, p, w))
        stats = mx.concatenate([mx.zeros(1), weighted_sums(metric, yb, pb, wb),
                                wb.sum().reshape(1)])
        t.add(stats)
    return np.asarray(t.logs()[name])


def _evaluate(metric_spec, loss, y, p, batch):
    m = Passthrough()
    m.compile("sgd", loss, metrics=[metric_spec])
    logs = m.evaluate(p, y, batch_size=batch, verbose=0, return_dict=True)
    return logs


def _binary(n=61, seed=0, noisy=0.35):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    p = np.clip(y * 0.5 + rng.random((n, 1)) * 0.6 + rng.normal(0, noisy, (n, 1)) * 0.2,
                0, 1).astype(np.float32)
    w = rng.random(n).astype(np.float32) + 0.2
    return y, p, w


CONFUSION = [
    ("precision", lambda: Precision(), lambda: KM.Precision()),
    ("recall", lambda: Recall(), lambda: KM.Recall()),
    ("precision_thr", lambda: Precision(thresholds=[0.3, 0.7]),
     lambda: KM.Precision(thresholds=[0.3, 0.7])),
    ("recall_even", lambda: Recall(thresholds=[0.0, 0.5, 1.0]),
     lambda: KM.Recall(thresholds=[0.0, 0.5, 1.0])),
    ("auc", lambda: AUC(), lambda: KM.AUC()),
    ("auc_pr", lambda: AUC(curve="PR", num_thresholds=50),
     lambda: KM.AUC(curve="PR", num_thresholds=50)),
    ("auc_minoring", lambda: AUC(summation_method="minoring", num_thresholds=13),
     lambda: KM.AUC(summation_method="minoring", num_thresholds=13)),
    ("auc_majoring_prgain", lambda: AUC(curve="PRGAIN", summation_method="majoring"),
     lambda: KM.AUC(curve="PRGAIN", summation_method="majoring")),
    ("auc_thresholds", lambda: AUC(thresholds=[0.1, 0.45, 0.5, 0.8]),
     lambda: KM.AUC(thresholds=[0.1, 0.45, 0.5, 0.8])),
]


@pytest.mark.parametrize("case", CONFUSION, ids=[c[0] for c in CONFUSION])
def test_confusion_metrics_match_keras_over_batches(case):
    _, ours, theirs = case
    y, p, w = _binary()
    want = _keras_result(theirs(), y, p, w, 16)
    got = _mlx_result(ours(), y, p, w, 16)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7)
    assert not np.all(want == 0)


def test_auc_from_logits_and_multi_label_match_keras():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (40, 3)).astype(np.float32)
    logits = (y * 1.5 + rng.normal(0, 1, (40, 3))).astype(np.float32)
    w = rng.random(40).astype(np.float32)
    for kw in ({"from_logits": True}, {"from_logits": True, "multi_label": True},
               {"from_logits": True, "multi_label": True, "label_weights": [1.0, 2.0, 0.5]},
               {"from_logits": True, "label_weights": [1.0, 2.0, 0.5]}):
        want = _keras_result(KM.AUC(**kw), y, logits, w, 9)
        got = _mlx_result(AUC(**kw), y, logits, w, 9)
        np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=str(kw))


def test_precision_recall_top_k_and_class_id_match_keras():
    rng = np.random.default_rng(4)
    y = (rng.random((30, 5)) < 0.3).astype(np.float32)
    p = rng.random((30, 5)).astype(np.float32)
    w = np.ones(30, np.float32)
    for cls, kcls in ((Precision, KM.Precision), (Recall, KM.Recall)):
        for kw in ({"top_k": 2}, {"class_id": 3}, {"top_k": 2, "class_id": 1},
                   {"thresholds": 0.4, "class_id": 0}):
            want = _keras_result(kcls(**kw), y, p, w, 8)
            got = _mlx_result(cls(**kw), y, p, w, 8)
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{cls} {kw}")


def test_top_k_accuracies_match_keras():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, 50)
    p = rng.random((50, 7)).astype(np.float32)
    p[0] = 0.5  # a row of ties: every class is in the top k (tf.math.in_top_k)
    onehot = np.eye(7, dtype=np.float32)[labels]
    w = rng.random(50).astype(np.float32)
    for k in (1, 3, 5, 9):
        want = _keras_result(KM.SparseTopKCategoricalAccuracy(k=k), labels, p, w, 12)
        got = _mlx_result(SparseTopKCategoricalAccuracy(k=k), labels, p, w, 12)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        want = _keras_result(KM.TopKCategoricalAccuracy(k=k), onehot, p, w, 12)
        got = _mlx_result(TopKCategoricalAccuracy(k=k), onehot, p, w, 12)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    ids = np.argsort(-p, axis=1)[:, :4].astype(np.float32)
    want = _keras_result(KM.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True),
                         labels, ids, w, 12)
    got = _mlx_result(SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True),
                      labels, ids, w, 12)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_in_top_k_non_finite_row_and_bad_target_are_misses():
    p = mx.array([[0.1, 0.9, 0.3], [0.1, float("nan"), 0.3], [0.5, 0.5, 0.5]])
    got = in_top_k(mx.array([1, 2, 2]), p, 1).tolist()
    assert got == [True, False, True]
    assert in_top_k(mx.array([3]), p[:1], 3).tolist() == [False]


def test_regression_metrics_match_keras():
    rng = np.random.default_rng(6)
    y = rng.normal(size=(33, 4)).astype(np.float32)
    p = rng.normal(size=(33, 4)).astype(np.float32)
    w = rng.random(33).astype(np.float32)
    for ours, theirs in ((MeanSquaredError(), KM.MeanSquaredError()),
                         (MeanAbsoluteError(), KM.MeanAbsoluteError())):
        np.testing.assert_allclose(_mlx_result(ours, y, p, w, 10),
                                   _keras_result(theirs, y, p, w, 10), rtol=1e-6)


def test_metrics_through_evaluate_by_name_and_object():
    """Through compile/evaluate (the compiled eval step, batches of 16 with a short last
    one): names with Keras's defaults and log keys, objects, and Keras's ``_1``."""
    y, p, w = _binary(n=70, seed=7)
    specs = ["precision", "recall", "auc", "mse", "mae", AUC(num_thresholds=20),
             MeanSquaredError()]
    logs = _evaluate_all(specs, y, p)
    assert list(logs) == ["loss", "precision", "recall", "auc", "mse", "mae", "auc_1",
                          "mean_squared_error"]
    ones = np.ones(len(y), np.float32)
    for key, km in (("precision", KM.Precision()), ("recall", KM.Recall()),
                    ("auc", KM.AUC()), ("mse", KM.MeanSquaredError()),
                    ("mae", KM.MeanAbsoluteError()), ("auc_1", KM.AUC(num_thresholds=20))):
        np.testing.assert_allclose(logs[key], _keras_result(km, y, p, ones, 16),
                                   rtol=2e-6, err_msg=key)


def _evaluate_all(specs, y, p):
    m = Passthrough()
    m.compile("sgd", "binary_crossentropy", metrics=specs)
    return m.evaluate(p, y, batch_size=16, verbose=0, return_dict=True)


def test_sparse_top_k_by_name_in_fit_logs_and_label_check():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 6, 40)
    p = rng.random((40, 6)).astype(np.float32)
    logs = _evaluate("sparse_top_k_categorical_accuracy", "sparse_categorical_crossentropy",
                     labels, p, 16)
    want = _keras_result(KM.SparseTopKCategoricalAccuracy(), labels, p,
                         np.ones(40, np.float32), 16)
    np.testing.assert_allclose(logs["sparse_top_k_categorical_accuracy"], want, rtol=1e-6)
    with pytest.raises(ValueError, match="sparse_top_k_categorical_accuracy"):
        _evaluate("sparse_top_k_categorical_accuracy",
                  lambda yt, yp: mx.zeros(yp.shape[0]), labels + 6, p, 16)


def test_auc_in_fit_trains_and_logs_per_epoch():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype(np.float32)

    class Logistic(Model):
        def __init__(self):
            super().__init__()
            from mlxnote import nn
            self.fc = nn.dense(1, activation="sigmoid")

        def __call__(self, x):
            return self.fc(x)

    m = Logistic()
    h = m.fit(x, y, epochs=3, batch_size=16, verbose=0, optimizer="adam",
              loss="binary_crossentropy", metrics=["auc", "precision"],
              validation_data=(x, y))
    assert set(h.history) >= {"auc", "precision", "val_auc", "val_precision"}
    assert len(h.history["auc"]) == 3 and all(0 <= v <= 1 for v in h.history["auc"])
    pred = m.predict(x)
    want = _keras_result(KM.AUC(), y, pred, np.ones(64, np.float32), 64)
    np.testing.assert_allclose(h.history["val_auc"][-1], want, rtol=2e-6)


def test_metric_arguments_are_checked():
    with pytest.raises(ValueError, match="Precision: argument 'thresholds'"):
        Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="AUC: argument 'curve'"):
        AUC(curve="XY")
    with pytest.raises(ValueError, match="AUC: argument 'num_thresholds'"):
        AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="AUC: argument 'num_labels'"):
        AUC(num_labels=3)
    with pytest.raises(TypeError, match="SparseTopKCategoricalAccuracy: argument 'k'"):
        SparseTopKCategoricalAccuracy(k=2.5)
    with pytest.raises(ValueError, match="argument 'metrics'"):
        get_metrics(["f1score"], None)
