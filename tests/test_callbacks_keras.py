"""Keras's schedule, logging and recovery callbacks (issue 18, part B.1), by their effect
on short runs: the learning rates a run logs and trains with, the decisions of
ReduceLROnPlateau and the CSV file against Keras's own callbacks fed the same logs, a NaN
loss stopping training, and a crash injected in a callback then a rerun that ends bit for
bit as an uninterrupted run."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest

from mlxnote import nn
from mlxnote.training import (
    SGD,
    Adam,
    BackupAndRestore,
    Callback,
    CSVLogger,
    LearningRateScheduler,
    Model,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

keras = pytest.importorskip("keras")


class Net(Model):
    """dense -> dropout (MLX's) -> dense; counts its traces (a Python side effect)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.dense(8, activation="relu")
        self.drop = mnn.Dropout(0.3)  # MLX's global generator: resumed from the backup
        self.fc2 = nn.dense(3)
        self._set("calls", 0)

    def __call__(self, x):
        self._set("calls", self.calls + 1)
        return self.fc2(self.drop(self.fc1(x)))


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


LOSS = "sparse_categorical_crossentropy"


def _net(seed=0, x=None):
    mx.random.seed(seed)
    m = Net()
    m(mx.array(x if x is not None else _data()[0][:2]))  # build
    return m


def _fit(model, cbs, epochs=4, opt=None, **kw):
    x, y = _data()
    from mlxnote.training.losses import SparseCategoricalCrossentropy
    return model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=cbs,
                     optimizer=opt if opt is not None else SGD(0.1),
                     loss=SparseCategoricalCrossentropy(from_logits=True), **kw)


class Recorder(Callback):
    def __init__(self):
        self.events, self.weights, self.rates = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch))

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch))
        self.weights.append([np.array(w) for w in self.model.get_weights()])

    def on_train_end(self, logs=None):
        self.events.append(("end", None))


# -- LearningRateScheduler -------------------------------------------------------------
def test_scheduler_sets_logs_and_trains_with_each_rate_without_retracing(capsys):
    m = _net()
    rec = Recorder()
    sched = LearningRateScheduler(lambda epoch, lr: 0.0 if epoch == 2 else lr * 0.5,
                                  verbose=1)
    h = _fit(m, [sched, rec], epochs=4)
    want = [np.float32(v) for v in (0.05, 0.025, 0.0, 0.0)]
    assert h.history["learning_rate"] == [float(v) for v in want]
    assert rec.rates == [float(v) for v in want]  # the rate the epoch trained with
    for a, b in zip(rec.weights[1], rec.weights[2]):  # lr 0 in epoch 2: nothing moved
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(rec.weights[0], rec.weights[1]))
    assert m.calls == 1 + 1  # the build, then one trace of the train step for all rates
    out = capsys.readouterr().out
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.0." in out


def test_scheduler_one_argument_form_and_keras_example():
    """Keras's docstring example: SGD(0.01), keep 10 epochs then * exp(-0.1): 0.00607
    after 15 epochs; here with schedule(epoch) on a short run and with Keras's numbers."""
    m = _net()
    h = _fit(m, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], epochs=3,
             opt=SGD(0.01))
    assert h.history["learning_rate"] == [float(np.float32(0.1 / (e + 1))) for e in range(3)]
    m = _net()

    def keras_example(epoch, lr):
        return lr if epoch < 10 else lr * float(np.exp(-0.1))

    _fit(m, [LearningRateScheduler(keras_example)], epochs=15, opt=SGD(0.01))
    assert round(float(np.asarray(m.optimizer.learning_rate)), 5) == 0.00607


def test_scheduler_refuses_bad_outputs_and_scheduled_rates():
    with pytest.raises(ValueError, match="LearningRateScheduler: argument 'schedule'"):
        _fit(_net(), [LearningRateScheduler(lambda e, lr: "fast")], epochs=1)
    with pytest.raises(TypeError, match="LearningRateScheduler: argument 'schedule'"):
        LearningRateScheduler(0.1)
    sched_opt = optim.SGD(optim.exponential_decay(0.1, 0.9))
    with pytest.raises(TypeError, match="not settable"):
        _fit(_net(), [LearningRateScheduler(lambda e, lr: lr)], epochs=1, opt=sched_opt)


# -- ReduceLROnPlateau -----------------------------------------------------------------
def _keras_optimizer_holder(lr):
    km = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    km.compile(keras.optimizers.SGD(lr), "mse")
    return km


@pytest.mark.parametrize("kw", [
    {"monitor": "val_loss", "patience": 2, "factor": 0.5},
    {"monitor": "val_loss", "patience": 1, "factor": 0.2, "cooldown": 2, "min_lr": 0.003},
    {"monitor": "val_accuracy", "patience": 1, "min_delta": 0.05, "mode": "max"},
    {"monitor": "val_loss", "patience": 0, "mode": "max", "factor": 0.9},
])
def test_reduce_lr_on_plateau_decides_as_keras(kw):
    """Both callbacks fed the same epoch logs: the same learning rate after each."""
    rng = np.random.default_rng(1)
    vals = np.concatenate([[1.0, 0.8, 0.79, 0.79, 0.81, 0.6], 0.6 + rng.normal(0, .02, 8)])
    km = _keras_optimizer_holder(0.1)
    theirs = keras.callbacks.ReduceLROnPlateau(**kw)
    theirs.set_model(km)
    m = _net()
    m.compile(SGD(0.1), LOSS)
    m._init_optimizer()
    ours = ReduceLROnPlateau(**kw)
    ours.set_model(m)
    theirs.on_train_begin()
    ours.on_train_begin()
    got, want = [], []
    for epoch, v in enumerate(vals):
        logs_k, logs_m = {kw["monitor"]: float(v)}, {kw["monitor"]: float(v)}
        theirs.on_epoch_end(epoch, logs_k)
        ours.on_epoch_end(epoch, logs_m)
        assert logs_m["learning_rate"] == pytest.approx(logs_k["learning_rate"], rel=1e-7)
        want.append(float(np.asarray(km.optimizer.learning_rate)))
        got.append(float(np.asarray(m.optimizer.learning_rate)))
    assert got == pytest.approx(want, rel=1e-7)
    assert len(set(want)) > 1  # the case reduces at least once


def test_reduce_lr_on_plateau_in_a_run(capsys):
    """min_delta larger than any change: no epoch improves after the first, so each
    later one reduces (patience 0); the logged rate is the one before the reduction."""
    m = _net()
    h = _fit(m, [ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10,
                                   verbose=1)], epochs=4)
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05" in capsys.readouterr().out
    lr = [float(np.float32(v)) for v in (0.1, 0.1, 0.05, 0.025)]
    assert h.history["learning_rate"] == pytest.approx(lr, rel=1e-7)
    assert float(np.asarray(m.optimizer.learning_rate)) == pytest.approx(0.0125, rel=1e-6)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: argument 'factor'"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="val_loss"):
        _fit(_net(), [ReduceLROnPlateau()], epochs=1)


# -- CSVLogger ---------------------------------------------------------------------------
def _drive(cb, model, epochs_logs):
    cb.set_model(model)
    cb.on_train_begin()
    for e, logs in enumerate(epochs_logs):
        cb.on_epoch_end(e, dict(logs))
    cb.on_train_end()


@pytest.mark.parametrize("sep,val", [(",", True), (";", False)])
def test_csv_logger_writes_what_keras_writes(tmp_path, sep, val):
    logs = [{"loss": 0.5 / (e + 1), "accuracy": 0.25 * e, "thr": np.array([0.1, 0.2])}
            for e in range(3)]
    if val:
        for e, d in enumerate(logs):
            d["val_loss"] = 0.7 / (e + 1)
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    m = _net()
    for append in (False, True):  # a second run appends its rows without a header
        _drive(CSVLogger(ours, separator=sep, append=append), m, logs)
        _drive(keras.callbacks.CSVLogger(str(theirs), separator=sep, append=append),
               _keras_optimizer_holder(0.1), logs)
    assert ours.read_text() == theirs.read_text()
    assert ours.read_text().count("epoch") == 1 and (val or "NA" in ours.read_text())


def test_csv_logger_rows_match_history(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    m = _net()
    h = _fit(m, [CSVLogger(path)], epochs=3, metrics=["accuracy"], validation_data=(x, y))
    import csv
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, vals in h.history.items():
        assert [float(r[key]) for r in rows] == vals  # repr round trips exactly


# -- TerminateOnNaN ----------------------------------------------------------------------
def test_terminate_on_nan_stops_after_the_batch(capsys):
    x, y = _data()
    x[19] = np.nan  # batch 2 of 8 rows (no shuffle)
    m = _net()
    rec = Recorder()
    h = m.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
              callbacks=[TerminateOnNaN(), rec], loss=LOSS, optimizer=SGD(0.1))
    assert rec.events == [("batch", 0), ("batch", 1), ("batch", 2), ("epoch", 0),
                          ("end", None)]
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out
    rec = Recorder()
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        _net().fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, loss=LOSS,
                   callbacks=[TerminateOnNaN(raise_error=True), rec])
    assert ("end", None) not in rec.events


def test_keras_terminate_on_nan_stops_at_the_same_batch():
    x, y = _data()
    x[19] = np.nan
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    km.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    km.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
           callbacks=[keras.callbacks.TerminateOnNaN(), cb])
    assert seen == [0, 1, 2]


# -- BackupAndRestore --------------------------------------------------------------------
class Crash(Callback):
    def __init__(self, at_epoch=None, at_batch=None):
        self.at_epoch, self.at_batch, self.seen = at_epoch, at_batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("crash")

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_batch:
            raise RuntimeError("crash")


def _state(m):
    return [np.array(w) for w in m.get_weights()], {
        k: np.array(v) for k, v in __import__("mlx.utils").utils.tree_flatten(m.optimizer.state)}


def _run(cbs, opt_seed=0):
    mx.random.seed(42)  # fit's base seed
    return _fit(_net(opt_seed), cbs, epochs=4, opt=Adam(0.01))


@pytest.mark.parametrize("save_freq,crash", [("epoch", {"at_epoch": 2}),
                                             (3, {"at_batch": 8}), (2, {"at_batch": 15})])
def test_backup_and_restore_resumes_bit_for_bit(tmp_path, save_freq, crash):
    plain = _net(0)
    mx.random.seed(42)
    h_plain = _fit(plain, [], epochs=4, opt=Adam(0.01))

    whole = _net(0)
    mx.random.seed(42)
    h_whole = _fit(whole, [BackupAndRestore(tmp_path / "a", save_freq=save_freq)],
                   epochs=4, opt=Adam(0.01))
    assert not os.path.exists(tmp_path / "a")  # delete_checkpoint=True

    first = _net(0)
    mx.random.seed(42)
    backup = BackupAndRestore(tmp_path / "b", save_freq=save_freq)
    with pytest.raises((KeyboardInterrupt, RuntimeError), match="crash"):
        _fit(first, [backup, Crash(**crash)], epochs=4, opt=Adam(0.01))
    assert os.path.exists(tmp_path / "b" / "latest.safetensors")

    again = _net(7)  # a new process: other initial weights, other random state
    mx.random.seed(9)
    h_again = _fit(again, [BackupAndRestore(tmp_path / "b", save_freq=save_freq)],
                   epochs=4, opt=Adam(0.01))
    for (w1, s1), (w2, s2) in ((_state(whole), _state(again)), (_state(whole), _state(plain))):
        for a, b in zip(w1, w2):
            np.testing.assert_array_equal(a, b)
        assert s1.keys() == s2.keys()
        for k in s1:
            np.testing.assert_array_equal(s1[k], s2[k])
    n = len(h_again.history["loss"])
    assert 0 < n < 4 and h_again.epoch == list(range(4 - n, 4))
    assert h_again.history["loss"] == h_whole.history["loss"][-n:]
    assert h_whole.history == h_plain.history


def test_backup_and_restore_double_checkpoint_falls_back(tmp_path):
    m = _net(0)
    _fit(m, [BackupAndRestore(tmp_path, double_checkpoint=True, delete_checkpoint=False)],
         epochs=2)
    latest = tmp_path / "latest.safetensors"
    assert (tmp_path / "latest.safetensors.bkp").exists()
    data = bytearray(latest.read_bytes())
    data[-5] ^= 0xFF  # corrupt the latest backup
    latest.write_bytes(bytes(data))
    again = _net(3)
    h = _fit(again, [BackupAndRestore(tmp_path, double_checkpoint=True)], epochs=3)
    assert h.epoch == [1, 2]  # the previous backup (after epoch 1) was loaded
    assert not latest.exists()
    with pytest.raises(ValueError, match="BackupAndRestore: argument 'save_freq'"):
        BackupAndRestore(tmp_path, save_freq="batch")


def test_auto_mode_follows_keras_metric_directions():
    """'auto': larger is better for the metrics Keras marks _direction='up'."""
    from mlxnote.training.callbacks import mode_sign
    for name in ("val_accuracy", "auc", "val_auc_1", "precision", "val_recall",
                 "sparse_top_k_categorical_accuracy"):
        assert mode_sign("X", "auto", name) == -1.0, name
    for name in ("loss", "val_loss", "mse", "val_mean_absolute_error"):
        assert mode_sign("X", "auto", name) == 1.0, name
    for cls in (keras.metrics.AUC, keras.metrics.Precision, keras.metrics.Recall,
                keras.metrics.SparseTopKCategoricalAccuracy):
        assert cls()._direction == "up"
    assert keras.metrics.MeanSquaredError()._direction == "down"


def test_csv_logger_closes_its_file_when_fit_raises(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    with pytest.raises(KeyboardInterrupt):
        _fit(_net(), [logger, Crash(at_epoch=2)], epochs=4)
    assert logger.csv_file is None
    assert len(path.read_text().splitlines()) == 3  # the header and epochs 0 and 1
