"""Model, Sequential, fit/evaluate/predict, optimizers/losses/metrics, progress display."""

import io
import sys
import types

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np
import pytest

from mlxnote import Model, Sequential, nn
from mlxnote import training as T
from mlxnote.training import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    EarlyStopping,
    History,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    ModelCheckpoint,
    SparseCategoricalCrossentropy,
)

LOGITS = SparseCategoricalCrossentropy(from_logits=True)


class Net(Model):
    """mlxnote layers and a plain mlx.nn module, registered in assignment order."""

    def __init__(self, rate=0.0, seed=None):
        super().__init__()
        self.fc1 = nn.dense(16, activation="relu")
        self.drop = nn.dropout(rate, seed=seed)
        self.mid = mnn.Linear(16, 8)
        self.fc2 = nn.dense(3)

    def __call__(self, x):
        return self.fc2(mnn.relu(self.mid(self.drop(self.fc1(x)))))


def blobs(n=120, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(0, 0.5, (n, d))
    return x.astype(np.float32), y.astype(np.int32)


# -- registry ------------------------------------------------------------------------
def test_registration_order_weights_and_param():
    mx.random.seed(0)
    m = Net()
    assert m.unbuilt() == ["fc1", "fc2"]
    with pytest.raises(RuntimeError, match="unbuilt"):
        m.get_weights()
    m(mx.zeros((2, 4)))
    assert m.weight_names == ["fc1.weight", "fc1.bias", "mid.weight", "mid.bias",
                              "fc2.weight", "fc2.bias"]
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(4, 16), (16,), (8, 16), (8,), (8, 3), (3,)]
    assert all(isinstance(w, np.ndarray) for w in ws)
    assert len(m.param) == 6 and m.param[0] is m.fc1.weight and m.param[2] is m.mid.weight
    m.mid.freeze(keys=["bias"])
    assert "mid.bias" not in m.param_names and len(m.param) == 5
    assert m.count_params() == 4 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3


def test_set_weights_round_trip_and_errors():
    m = Net()
    m(mx.zeros((1, 4)))
    new = [np.random.default_rng(i).normal(size=w.shape).astype(np.float32)
           for i, w in enumerate(m.get_weights())]
    m.set_weights(new)
    for a, b in zip(m.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    before = m.get_weights()
    with pytest.raises(ValueError, match="6 arrays in the order"):
        m.set_weights(new[:-1])
    bad = list(new)
    bad[2] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="mid.weight"):
        m.set_weights(bad)
    bad = list(new)
    bad[4] = np.zeros((2, 2), np.float32)  # checked before anything changes
    with pytest.raises(ValueError, match="fc2.weight"):
        m.set_weights([w + 1 for w in new[:4]] + bad[4:])
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_train_eval_propagate():
    m = Net(rate=0.5)
    m(mx.zeros((1, 4)))
    m.eval()
    assert not any(mod.training for mod in m.modules())
    x = mx.ones((4, 4))
    assert mx.array_equal(m(x), m(x))
    m.train()
    assert all(mod.training for mod in m.modules())
    assert not mx.array_equal(m.drop(mx.ones((64, 16))), mx.ones((64, 16)))


def test_sequential_forms_and_errors():
    a = Sequential([nn.dense(4, 3), nn.dense(2)])
    b = Sequential(nn.dense(4, 3))
    b.add(mnn.ReLU())
    b.add(nn.dense(2))
    assert a(mx.zeros((5, 3))).shape == (5, 2) and b(mx.zeros((5, 3))).shape == (5, 2)
    assert b.weight_names == ["layers.0.weight", "layers.0.bias", "layers.2.weight",
                              "layers.2.bias"]
    with pytest.raises(TypeError, match="Sequential: argument 'layers'"):
        Sequential([nn.dense(2), 3])
    with pytest.raises(TypeError, match="'layer'"):
        b.add("dense")
    from mlxnote.nn import Model as M2
    from mlxnote.nn import Sequential as S2

    assert M2 is Model and S2 is Sequential


def test_old_import_paths_reexport_the_training_package():
    import mlxnote.distributed as old_dist
    import mlxnote.model as old

    for name in old.__all__:
        assert getattr(old, name) is getattr(T, name), name
    assert {"Model", "Sequential", "Adam", "ModelCheckpoint", "Callback", "CheckpointError",
            "SparseCategoricalCrossentropy", "get_optimizer", "get_loss"} <= set(old.__all__)
    assert old_dist.shard_bounds is T.distributed.shard_bounds
    assert Model is T.Model and Sequential is T.Sequential


# -- optimizers, losses, metrics against Keras ----------------------------------------
@pytest.fixture(scope="module")
def keras():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


def test_optimizer_names_have_keras_defaults():
    a = T.get_optimizer("Adam")
    assert isinstance(a, T.Adam) and a.betas == [0.9, 0.999] and a.eps == 1e-7
    assert a.learning_rate.item() == pytest.approx(1e-3)
    s = T.get_optimizer("sgd")
    assert isinstance(s, optim.SGD) and s.learning_rate.item() == pytest.approx(0.01)
    assert T.get_optimizer("adamw").weight_decay == 0.004
    assert T.get_optimizer("rmsprop").rho == 0.9
    mine = optim.SGD(0.5)
    assert T.get_optimizer(mine) is mine
    with pytest.raises(ValueError, match="argument 'optimizer' got 'adamm'"):
        T.get_optimizer("adamm")
    with pytest.raises(TypeError, match="optimizer"):
        T.get_optimizer(3)


@pytest.mark.parametrize("name,kw", [
    ("adam", {}), ("adamw", {}), ("adamax", {}), ("rmsprop", {}), ("adagrad", {}),
    ("adadelta", {}), ("sgd", {}), ("lion", {}),
    ("rmsprop", {"momentum": 0.5, "centered": True}), ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
])
def test_optimizers_match_keras(keras, name, kw):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3)).astype(np.float32)
    grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(6)]
    kopt = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
            "adamax": keras.optimizers.Adamax, "rmsprop": keras.optimizers.RMSprop,
            "adagrad": keras.optimizers.Adagrad, "adadelta": keras.optimizers.Adadelta,
            "sgd": keras.optimizers.SGD, "lion": keras.optimizers.Lion}[name](**kw)
    v = keras.Variable(w0)
    for g in grads:
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g), v)])
    if kw:
        cls = {"rmsprop": T.RMSprop, "sgd": lambda **k: optim.SGD(0.01, **k)}[name]
        ours = cls(**kw)
    else:
        ours = T.get_optimizer(name)
    params = {"w": mx.array(w0)}
    ours.init(params)
    for g in grads:
        params = ours.apply_gradients({"w": mx.array(g)}, params)
    np.testing.assert_allclose(np.array(params["w"]), v.numpy(), rtol=2e-5, atol=2e-6)
    assert not np.allclose(np.array(params["w"]), w0)


def test_losses_match_keras(keras):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 4, 6).astype(np.int32)
    onehot = np.eye(4, dtype=np.float32)[labels]
    yb = rng.integers(0, 2, (6, 3)).astype(np.float32)
    pb = rng.uniform(0.01, 0.99, (6, 3)).astype(np.float32)
    reg = rng.normal(size=(6, 3)).astype(np.float32)
    L = keras.losses
    cases = [
        (SparseCategoricalCrossentropy(), L.SparseCategoricalCrossentropy(), labels, probs),
        (LOGITS, L.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        (CategoricalCrossentropy(), L.CategoricalCrossentropy(), onehot, probs),
        (CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
         L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), onehot, logits),
        (BinaryCrossentropy(), L.BinaryCrossentropy(), yb, pb),
        (BinaryCrossentropy(from_logits=True), L.BinaryCrossentropy(from_logits=True), yb,
         reg),
        (MeanSquaredError(), L.MeanSquaredError(), yb, reg),
        (MeanAbsoluteError(), L.MeanAbsoluteError(), yb, reg),
        (Huber(0.7), L.Huber(0.7), yb, reg),
    ]
    for ours, theirs, yt, yp in cases:
        got = float(ours(mx.array(yt), mx.array(yp)).mean())
        want = float(theirs(yt, yp))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), type(ours).__name__
    assert isinstance(T.get_loss("mse"), MeanSquaredError)
    with pytest.raises(ValueError, match="argument 'loss' got 'msee'"):
        T.get_loss("msee")


def test_accuracy_resolution():
    pred = mx.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    _, sparse = T.get_metric("accuracy", T.get_loss("sparse_categorical_crossentropy"))
    assert sparse(mx.array([1, 0, 0]), pred).tolist() == [1, 1, 0]
    _, cat = T.get_metric("acc", T.get_loss("categorical_crossentropy"))
    assert cat(mx.array([[0, 1], [0, 1], [0, 1.0]]), pred).tolist() == [1, 0, 1]
    _, binary = T.get_metric("accuracy", BinaryCrossentropy(from_logits=True))
    assert binary(mx.array([1, 0, 1.0]), mx.array([[0.5], [-0.1], [-2.0]])).tolist() == [
        1, 1, 0]
    with pytest.raises(ValueError, match="metrics"):
        T.get_metric("f1score", None)


# -- fit / evaluate / predict --------------------------------------------------------
def test_fit_learns_history_and_validation():
    mx.random.seed(0)
    x, y = blobs()
    m = Net()
    h = m.fit(x[:90], y[:90], epochs=6, batch_size=16, validation_data=(x[90:], y[90:]),
              optimizer=T.Adam(0.01), loss=LOGITS, metrics=["accuracy"], verbose=0)
    assert isinstance(h, History) and m.history is h
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 6 for v in h.history.values()) and h.epoch == list(range(6))
    assert len(h.times) == 6
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.9
    # the validation numbers are evaluate()'s numbers (eval mode, same weights)
    loss, acc = m.evaluate(x[90:], y[90:], verbose=0)
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-5)
    assert acc == pytest.approx(h.history["val_accuracy"][-1])
    d = m.evaluate(x[90:], y[90:], verbose=0, return_dict=True)
    assert list(d) == ["loss", "accuracy"]
    p = m.predict(x[90:], batch_size=7)
    assert isinstance(p, np.ndarray) and p.shape == (30, 3)
    assert np.mean(p.argmax(-1) == y[90:]) == pytest.approx(acc)
    assert isinstance(m.predict(mx.array(x[:5])), mx.array)
    assert m.training  # fit/evaluate/predict restore the mode


def test_fit_epoch_loss_is_sample_weighted_mean():
    """The epoch loss is the mean over samples, also with a short last batch."""
    mx.random.seed(1)
    x, y = blobs(n=37)
    m = Sequential(nn.dense(3, 4))
    m.compile(optim.SGD(0.0), LOGITS, ["accuracy"])  # no update: loss is fixed
    h = m.fit(x, y, epochs=1, batch_size=10, verbose=0)
    full = float(LOGITS(mx.array(y), m(mx.array(x))).mean())
    assert h.history["loss"][0] == pytest.approx(full, rel=1e-5)
    assert m.evaluate(x, y, batch_size=8, verbose=0)[0] == pytest.approx(full, rel=1e-5)


def _step_losses(model, x, y, epochs=1, batch_size=8):
    """Per-step losses recovered from the running averages in the batch logs."""
    avgs = []

    class Rec(T.Callback):
        def on_train_batch_end(self, batch, logs=None):
            avgs.append(logs["loss"])

    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False, callbacks=[Rec()],
              verbose=0)
    return [a * (i + 1) - (avgs[i - 1] * i if i else 0) for i, a in enumerate(avgs)]


@pytest.mark.parametrize("seed", [None, 3])
def test_compiled_step_draws_fresh_dropout_masks(seed):
    """mx.random.state (or the layer's own key) is captured: masks differ per step.
    With a learning rate of 0 and identical batches, a repeated mask would repeat
    the loss exactly."""
    mx.random.seed(0)
    x = np.tile(blobs(n=8)[0], (4, 1))
    y = np.tile(blobs(n=8)[1], 4)
    m = Net(rate=0.5, seed=seed)
    m.compile(optim.SGD(0.0), LOGITS)
    losses = _step_losses(m, x, y)
    assert len(losses) == 4
    assert len({round(v, 6) for v in losses}) == 4, losses


def test_train_and_eval_steps_compiled_separately():
    """Training with dropout, then evaluating: eval is deterministic and dropout-free,
    and training after an evaluation still drops."""
    mx.random.seed(0)
    x, y = blobs(n=32)
    m = Net(rate=0.5)
    m.compile(optim.SGD(0.0), LOGITS)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, validation_data=(x, y))
    e1 = m.evaluate(x, y, verbose=0)
    e2 = m.evaluate(x, y, verbose=0)
    m.eval()
    clean = float(LOGITS(mx.array(y), m(mx.array(x))).mean())
    m.train()
    assert e1 == e2 == pytest.approx(clean, rel=1e-6)
    losses = _step_losses(m, np.tile(x[:8], (3, 1)), np.tile(y[:8], 3))
    assert len({round(v, 6) for v in losses}) == 3


def test_inputs_arrays_batches_generators_callables_and_multi_input():
    mx.random.seed(0)
    x, y = blobs(n=40)
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]

    def fresh():
        m = Sequential(nn.dense(3))
        m.compile("sgd", LOGITS, ["accuracy"])
        m(mx.zeros((1, 4)))
        m.set_weights([np.full((4, 3), 0.1, np.float32), np.zeros(3, np.float32)])
        return m

    ref = fresh()
    ref.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    for data in (batches, lambda: iter(batches),
                 [(mx.array(a), mx.array(b)) for a, b in batches]):
        m = fresh()
        m.fit(data, epochs=2, verbose=0)
        for a, b in zip(m.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    m = fresh()
    m.fit(mx.array(x), mx.array(y), epochs=2, batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_allclose(m.get_weights()[0], ref.get_weights()[0], rtol=1e-6)
    gen = (b for b in batches)
    m = fresh()
    m.fit(gen, epochs=1, verbose=0)  # a generator is fine for one epoch
    with pytest.raises(TypeError, match="one-shot iterator"):
        fresh().fit((b for b in batches), epochs=2, verbose=0)
    with pytest.raises(TypeError, match="y=None"):
        fresh().fit(batches, y, verbose=0)
    assert m.evaluate(batches, verbose=0)[1] >= 0
    assert m.predict([b[0] for b in batches]).shape == (40, 3)

    class Two(Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.dense(3), nn.dense(3)

        def __call__(self, u, v):
            return self.a(u) + self.b(v)

    t = Two()
    h = t.fit((x, x[:, ::-1].copy()), y, epochs=2, batch_size=8, loss=LOGITS, verbose=0)
    assert len(h.history["loss"]) == 2
    assert t.predict((x, x)).shape == (40, 3)


def test_plain_mlx_model_and_bfloat16():
    mx.random.seed(0)
    x, y = blobs()

    class Plain(Model):
        def __init__(self):
            super().__init__()
            self.l1 = mnn.Linear(4, 16)
            self.l2 = mnn.Linear(16, 3)

        def __call__(self, x):
            return self.l2(mnn.relu(self.l1(x)))

    p = Plain()
    h = p.fit(x, y, epochs=8, batch_size=16, loss=mnn.losses.cross_entropy, optimizer=T.Adam(0.01),
              metrics=["accuracy"], verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    assert [w.shape for w in p.get_weights()] == [(16, 4), (16,), (3, 16), (3,)]
    s = Sequential(nn.dense(16, dtype="bfloat16", activation="relu"),
                   nn.dense(3, dtype="bfloat16"))
    h = s.fit(x, y, epochs=8, batch_size=16, loss=LOGITS, metrics=["accuracy"], verbose=0,
              optimizer=T.Adam(0.01))
    assert h.history["accuracy"][-1] > 0.9 and s.layers[0].weight.dtype == mx.bfloat16
    assert s.predict(x).dtype == np.float32


def test_callable_loss_and_metric_keras_order():
    mx.random.seed(0)
    x, y = blobs()
    yo = np.eye(3, dtype=np.float32)[y]

    def my_mse(y_true, y_pred):
        return mx.square(mx.softmax(y_pred, axis=-1) - y_true).sum(-1)

    m = Sequential(nn.dense(3))
    h = m.fit(x, yo, epochs=3, loss=my_mse, metrics=["accuracy", my_mse], verbose=0)
    assert set(h.history) == {"loss", "accuracy", "my_mse"}
    np.testing.assert_allclose(h.history["loss"], h.history["my_mse"], rtol=1e-6)


def test_callbacks_early_stopping_and_checkpoint(tmp_path):
    mx.random.seed(0)
    x, y = blobs()
    m = Net()
    m.compile(optim.SGD(0.0), LOGITS)  # never improves: stops after patience + 1 epochs
    es = EarlyStopping(monitor="loss", patience=1)
    h = m.fit(x, y, epochs=10, callbacks=[es, ModelCheckpoint(tmp_path / "e{epoch}.st")],
              verbose=0)
    assert len(h.epoch) == 3 and m.stop_training and es.stopped_epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.st", "e2.st", "e3.st"]
    m2 = Net()
    m2.compile("adam", LOGITS)
    es = EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    best = ModelCheckpoint(tmp_path / "best.st", monitor="val_accuracy", save_best_only=True)
    m2.fit(x, y, epochs=3, validation_split=0.25, callbacks=[es, best], metrics=["acc"],
           verbose=0)
    assert (tmp_path / "best.st").exists()


def test_argument_errors():
    x, y = blobs(n=10)
    m = Net()
    with pytest.raises(ValueError, match="Net.fit: argument 'loss' got None"):
        m.fit(x, y, verbose=0)
    m.compile("adam", LOGITS)
    for kw, exc, msg in [
        ({"batch_size": 0}, ValueError, "'batch_size' got 0"),
        ({"batch_size": 2.0}, TypeError, "'batch_size' got 2.0"),
        ({"epochs": -1}, ValueError, "'epochs' got -1"),
        ({"shuffle": 1}, TypeError, "'shuffle' got 1"),
        ({"verbose": 5}, ValueError, "'verbose' got 5"),
        ({"validation_split": 1.0}, ValueError, "'validation_split'"),
    ]:
        with pytest.raises(exc, match=msg):
            m.fit(x, y, **kw)
    with pytest.raises(ValueError, match="same number of samples"):
        m.fit(x, y[:5], verbose=0)
    with pytest.raises(TypeError, match="numbers"):
        m.fit(np.array(["a"] * 10), y, verbose=0)
    with pytest.raises(ValueError, match="metrics"):
        m.compile("adam", LOGITS, ["nope"])
    with pytest.raises(TypeError, match="iterable of"):
        m.fit(3, verbose=0)


# -- progress display ----------------------------------------------------------------
def test_verbose_lines_and_silence(capsys):
    x, y = blobs(n=20)
    m = Sequential(nn.dense(3))
    m.compile("adam", LOGITS, ["accuracy"])
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    m.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""
    m.fit(x, y, epochs=2, batch_size=8, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("Epoch 1/2: 3 steps")
    assert "loss" in out[1] and "val_accuracy" in out[1]


def test_rich_bar_in_a_terminal(capsys, monkeypatch):
    x, y = blobs(n=20)
    m = Sequential(nn.dense(3))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    m.fit(x, y, epochs=2, batch_size=8, loss=LOGITS, metrics=["accuracy"])
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "3/3" in out
    assert "━" in out and "accuracy" in out and "\x1b[" in out  # a drawn, styled bar


def test_jupyter_display_updates_in_place(monkeypatch):
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(obj.data)

    class HTML:
        def __init__(self, data):
            self.data = data

    fake = types.ModuleType("IPython.display")
    fake.HTML = HTML
    fake.display = lambda obj, display_id=False: Handle()
    monkeypatch.setitem(sys.modules, "IPython.display", fake)
    monkeypatch.setattr(T.display, "in_jupyter", lambda: True)
    x, y = blobs(n=20)
    m = Sequential(nn.dense(3))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    m.fit(x, y, epochs=2, batch_size=8, loss=LOGITS, metrics=["accuracy"], verbose=1)
    assert out.getvalue() == ""  # nothing to the stream: HTML displays only
    assert len(calls) >= 2 and all(c.startswith("<!DOCTYPE html>") or "<pre" in c
                                   for c in calls)
    assert "Epoch 2/2" in calls[-1] and "3/3" in calls[-1] and "accuracy" in calls[-1]


def test_progress_bar_is_a_callback_and_hooks_run_in_order(capsys):
    """fit/evaluate/predict drive the display through callbacks: History, then the
    ProgbarLogger, then the user's; every hook gets the run's params and logs."""
    x, y = blobs(n=20)
    seen = []

    class Rec(T.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch_end", epoch, self.params["steps"], self.params["epochs"],
                         sorted(logs)))

        def on_test_begin(self, logs=None):
            seen.append(("test_begin", self.params["steps"]))

        def on_test_batch_end(self, batch, logs=None):
            seen.append(("test_batch", batch, sorted(logs)))

        def on_test_end(self, logs=None):
            seen.append(("test_end", sorted(logs)))

        def on_predict_batch_end(self, batch, logs=None):
            seen.append(("predict_batch", batch, logs["outputs"].shape))

        def close(self):
            seen.append("close")

    m = Sequential(nn.dense(3))
    m.compile("adam", LOGITS, ["accuracy"])
    m.fit(x, y, epochs=2, batch_size=8, verbose=2, callbacks=[Rec()])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert seen == [("epoch_end", 0, 3, 2, ["accuracy", "loss"]),
                    ("epoch_end", 1, 3, 2, ["accuracy", "loss"]), "close"]
    seen.clear()
    m.evaluate(x, y, batch_size=16, verbose=2, callbacks=[Rec()])
    assert capsys.readouterr().out.startswith("Evaluate: 2 steps")
    assert seen == [("test_begin", 2), ("test_batch", 0, ["accuracy", "loss"]),
                    ("test_batch", 1, ["accuracy", "loss"]), ("test_end", ["accuracy", "loss"]),
                    "close"]
    seen.clear()
    m.predict(x, batch_size=16, verbose=2, callbacks=[Rec()])
    assert capsys.readouterr().out.startswith("Predict: 2 steps")
    assert seen == [("predict_batch", 0, (16, 3)), ("predict_batch", 1, (4, 3)), "close"]
    progbar = T.ProgbarLogger(2)
    h = m.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[progbar])
    assert capsys.readouterr().out.startswith("Epoch 1/1: 3 steps")  # a user's own bar
    assert list(h.history) == ["loss", "accuracy"]


def test_a_raising_callback_still_closes_the_live_bar(capsys, monkeypatch):
    """The display is stopped (callbacks' close) when training raises mid-epoch."""
    x, y = blobs(n=20)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    stopped = []
    real_stop = T.display.Display.close

    def close(self):
        stopped.append(self.progress is not None)
        real_stop(self)

    monkeypatch.setattr(T.display.Display, "close", close)

    class Boom(T.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("boom")

    m = Sequential(nn.dense(3))
    with pytest.raises(RuntimeError, match="boom"):
        m.fit(x, y, epochs=2, batch_size=8, loss=LOGITS, callbacks=[Boom()])
    assert stopped == [True]  # a live bar was running and was stopped
    assert m.training


# -- data parallel helpers -----------------------------------------------------------
def test_shards_pad_and_weights_reproduce_the_full_batch():
    from mlxnote.training import data
    from mlxnote.training import distributed as dist

    assert [dist.shard_bounds(5, r, 2) for r in range(2)] == [(0, 3, 0), (3, 5, 1)]
    assert [dist.shard_bounds(1, r, 3) for r in range(3)] == [(0, 1, 0), (1, 1, 1),
                                                              (1, 1, 1)]
    x, y = blobs(n=5)
    m = Sequential(nn.dense(3, 4))
    m.compile("sgd", LOGITS)
    total = 0.0
    for r in range(3):
        xl, yl, w, n = data.shard((mx.array(x),), mx.array(y), r, 3)
        assert xl[0].shape[0] == 2 and n == 5
        total += float((LOGITS(yl, m(xl[0])) * w).sum()) * 3 / n / 3
    assert total == pytest.approx(float(LOGITS(mx.array(y), m(mx.array(x))).mean()),
                                  rel=1e-6)


# -- a real dataset ------------------------------------------------------------------
def test_digits_accuracy_climbs():
    """examples/digits_cnn.py's CNN, 4 epochs on 80% of the digits (a few seconds)."""
    pytest.importorskip("sklearn.datasets")
    ex = _example("digits_cnn")
    (x, y), (xt, yt) = ex.load_data()
    mx.random.seed(0)
    model = ex.make_model()
    h = model.fit(x, y, epochs=4, batch_size=32, validation_data=(xt, yt), verbose=0)
    acc = h.history["val_accuracy"]
    assert acc[-1] > acc[0] and acc[-1] > 0.9, acc
    assert h.history["loss"] == sorted(h.history["loss"], reverse=True)
    assert model.evaluate(xt, yt, verbose=0)[1] == pytest.approx(acc[-1])


def _example(name):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parent.parent / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not hasattr(nn, "LSTM"), reason="nn.LSTM not available")
def test_lstm_example_learns_delayed_recall():
    ex = _example("lstm_sequence")
    mx.random.seed(0)
    x, y = ex.make_data(3000, 10, 0)
    xt, yt = ex.make_data(500, 10, 1)
    model = ex.make_model()
    h = model.fit(x, y, epochs=6, batch_size=64, validation_data=(xt, yt), verbose=0)
    assert h.history["val_accuracy"][0] < 0.6 < 0.95 < h.history["val_accuracy"][-1]


def test_compiled_steps_are_reused_across_fit_calls():
    """The Python forward runs only while tracing: a second fit/evaluate with the same
    configuration and shapes reuses the compiled steps; compile() starts afresh."""
    calls = []

    class Counting(Sequential):
        def __call__(self, x):
            calls.append(x.shape[0])
            return super().__call__(x)

    x, y = blobs(n=40)
    m = Counting(nn.dense(3, 4))
    m.compile("adam", LOGITS)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    first = len(calls)
    assert first == 2  # one trace per batch shape (16 and 8), not one per step
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    m.evaluate(x, y, batch_size=16, verbose=0)
    m.evaluate(x, y, batch_size=16, verbose=0)
    assert len(calls) == first + 2  # the eval step traced once for its two shapes
    m.compile("sgd", LOGITS)
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert len(calls) == first + 4
    m.predict(x[:16])
    m.predict(x[16:32])
    assert len(calls) == first + 5
