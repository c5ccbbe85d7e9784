"""Training: the digits CNN (examples/digits_cnn.py) with mlxnote ``fit``, a hand-written
compiled raw-MLX loop, and Keras ``fit``, in one run, from the same initial weights; a
small U-Net (``benchmarks/unet.py``, the model of ``examples/shapes_unet.py``: conv,
conv2d_transpose, batch norm), a small Transformer language model and an LSTM text
classifier training step, mlxnote against Keras, from the same initial weights; and
whole epochs of ``fit`` for three of them.

* the harness rows, interleaved min of N: one compiled train step (fwd+bwd+Adam).
  Digits (batch 32): ``mlx`` is the network on ``mx.conv_general``, ``mlx+kernel`` on
  mlxnote's conv kernel, ``tf`` Keras ``train_on_batch``. U-Net (32x32x3 images, batch
  32, MSE), Transformer LM and LSTM classifier: ``mlxnote`` the step ``fit`` runs (the
  compiled ``mlxnote.training.steps.train_step``), ``mlxnote-noext`` the same on a second
  copy of the model traced with the C++ extension off, ``tf`` a ``tf.function``
  GradientTape + Adam step (Keras's defaults, as mlxnote's ``'adam'``); the note gives
  the three losses after the first step (the same weights, so they should agree);

  - Transformer LM: token embedding (vocabulary 1000), 2 pre-norm encoder layers
    (d_model 256, 8 heads, feed-forward 1024, dropout 0, final LayerNorm) with the
    causal mask (mlxnote ``is_causal=True``, Keras ``use_causal_mask=True``), a dense
    head over the vocabulary; next-token cross-entropy from logits, batch 16, T = 128;
  - LSTM classifier: token embedding (vocabulary 1000, 64 features), ``LSTM(128)`` (last
    state), dense softmax over 4 classes; sparse categorical cross-entropy, batch 32,
    T = 100;
* ``extra``: whole epochs, E of them per implementation, for three models: the digits
  CNN, the Transformer LM (on random token windows) and the U-Net (on ``unet.data``).
  mlxnote ``fit`` and the raw loops take turns epoch by epoch (``fit(epochs=e + 1,
  initial_epoch=e)``; its History times the epoch alone), Keras trains afterwards in one
  ``fit(epochs=E)`` (its epochs timed by a callback), all from the same initial weights.
  ``raw MLX loop, same model`` is a hand-written compiled loop over a copy of the same
  mlxnote model (the kernels ``fit`` runs: the mean loss, ``value_and_grad``, the
  optimizer, one ``mx.eval`` per batch; no per-sample weights, metrics, logs or
  callbacks): ``fit`` over it is ``fit``'s own overhead. The digits table also has the
  network written on ``mx.conv_general`` (``raw MLX loop``) and on mlxnote's conv kernel,
  and ``mlxnote fit, loss only`` (compiled without the accuracy metric).
  Each table gives the median and the minimum epoch time over epochs 2..E (epoch 1
  includes compilation), the first epoch, the ratios of the medians (and of the minimums),
  and the test accuracy (digits) or held-out loss after E epochs. On a shared machine the
  medians move with the load; the minimums are the steadier comparison. It writes
  ``reports/bench_training.json`` (``$BENCH_TRAINING_JSON`` overrides the path).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as optim
import numpy as np

from . import unet
from .harness import Bench, without_extension

ROOT = Path(__file__).resolve().parent.parent
BATCH = 32
REPEAT, QUICK_REPEAT = 20, 5
TITLE = f"training: interleaved min of {REPEAT} steps (ms; --quick: {QUICK_REPEAT})"
UNET_WIDTH = 32  # channels of the first block (then 2x, 4x)
NOTES = True


class RawCNN(mnn.Module):
    """The same network written directly on ``mx.conv_general`` and matmul (MLX
    layouts), or with ``kernel=True`` on ``mlxnote.kernels.conv.conv``, the convolution
    the mlxnote layers call (which picks an im2col GEMM on the CPU): that variant
    isolates the cost of ``fit`` itself."""

    def __init__(self, note_weights, kernel: bool = False):
        super().__init__()
        self._kernel = kernel
        k1, b1, k2, b2, w3, b3 = (mx.array(w) for w in note_weights)
        self.k1, self.b1 = k1.transpose(3, 0, 1, 2), b1  # [kh,kw,in,out] -> [out,kh,kw,in]
        self.k2, self.b2 = k2.transpose(3, 0, 1, 2), b2
        self.w3, self.b3 = w3, b3

    def __call__(self, x, train: bool):
        # TensorFlow SAME: (1, 1) at stride 1; (0, 1) at stride 2 on 8x8 with a 3x3 kernel
        if self._kernel:
            from mlxnote.kernels.conv import conv

            h = mnn.relu(conv(x, self.k1, 1, ((1, 1), (1, 1)), bias=self.b1))
            h = mnn.relu(conv(h, self.k2, 2, ((0, 1), (0, 1)), bias=self.b2))
        else:
            h = mnn.relu(mx.conv_general(x, self.k1, padding=([1, 1], [1, 1])) + self.b1)
            h = mnn.relu(mx.conv_general(h, self.k2, stride=2, padding=([0, 0], [1, 1]))
                         + self.b2)
        h = h.reshape(h.shape[0], -1)
        if train:
            h = h * mx.random.bernoulli(0.75, h.shape) * (1 / 0.75)
        return h @ self.w3 + self.b3


def _raw_trainer(note_weights, kernel=False):
    model = RawCNN(note_weights, kernel)
    opt = optim.Adam(1e-3, eps=1e-7, bias_correction=True)
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state, mx.random.state]

    def loss_fn(x, y):
        return mnn.losses.cross_entropy(model(x, True), y, reduction="mean")

    vg = mnn.value_and_grad(model, loss_fn)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = vg(x, y)
        opt.update(model, grads)
        return loss

    def epoch(x, y):
        perm = mx.random.permutation(x.shape[0])
        xp, yp = x[perm], y[perm]
        for i in range(0, x.shape[0], BATCH):
            step(xp[i:i + BATCH], yp[i:i + BATCH])
            mx.eval(state)

    def accuracy(x, y):
        return float((mx.argmax(model(x, False), axis=-1) == y).mean())

    return step, state, epoch, accuracy


def _keras_model(note_weights):
    import keras

    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(10),
    ])
    m.set_weights(note_weights)  # Note's layout is Keras's
    m.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    return m


def _setup():
    ex = unet.example("digits_cnn")
    (x, y), (xt, yt) = ex.load_data()
    mx.random.seed(0)
    model = ex.make_model()
    model(mx.array(x[:1]))
    return ex, (x, y), (xt, yt), model, model.get_weights()


def benches(quick: bool) -> list[Bench]:
    ex, (x, y), _, model, w0 = _setup()
    xb, yb = mx.array(x[:BATCH]), mx.array(y[:BATCH])
    model._init_optimizer()
    step = model._steps.get("train")  # the compiled step fit runs (mlxnote.training.steps)
    wb, scale = mx.ones((BATCH,)), mx.array(1.0 / BATCH)
    ours_state = [model.state, model.optimizer.state, mx.random.state]
    model.train()

    def ours():
        mx.eval(step((xb,), yb, wb, scale), ours_state)

    raw_step, raw_state, _, _ = _raw_trainer(w0)

    def raw():
        mx.eval(raw_step(xb, yb), raw_state)

    rawk_step, rawk_state, _, _ = _raw_trainer(w0, kernel=True)

    def rawk():
        mx.eval(rawk_step(xb, yb), rawk_state)

    km = _keras_model(w0)
    xk, yk = x[:BATCH], y[:BATCH]

    def keras_step():
        km.train_on_batch(xk, yk)

    return [Bench("training", f"digits CNN train step, batch {BATCH}",
                  bwd={"mlxnote": ours, "mlx": raw, "mlx+kernel": rawk, "tf": keras_step},
                  repeat=QUICK_REPEAT if quick else REPEAT, warmup=3, interleaved=True,
                  note="tf: Keras train_on_batch"),
            unet_bench(quick), lm_bench(quick), lstm_classifier_bench(quick)]


def _note_step(model, xb, yb):
    """``run()`` for one mlxnote fit step of ``model`` on (xb, yb), and the loss it gives."""
    model._init_optimizer()
    model.train()
    step = model._steps.get("train")
    w, scale = mx.ones((xb.shape[0],)), mx.array(1.0 / xb.shape[0])
    state = [model.state, model.optimizer.state, mx.random.state]

    def run():
        stats = step((xb,), yb, w, scale)
        mx.eval(stats, state)
        return float(stats[0] / stats[-1])

    return run


def unet_bench(quick: bool) -> Bench:
    """The U-Net step: mlxnote (with and without the C++ extension) against Keras, all three
    from the same initial weights; the first step's losses go into the note."""
    import tensorflow as tf

    x_np, y_np = unet.data(BATCH)
    xb, yb = mx.array(x_np), mx.array(y_np)
    mx.random.seed(0)
    model = unet.mlxnote_model(UNET_WIDTH)
    w0 = [l.get_weights() for l in unet.note_layers(model)]
    model2 = unet.mlxnote_model(UNET_WIDTH)
    for l, w in zip(unet.note_layers(model2), w0, strict=True):
        l.set_weights(w)
    ours, noext = _note_step(model, xb, yb), without_extension(_note_step(model2, xb, yb))
    km = unet.keras_model(UNET_WIDTH, w0)
    kstep = unet.keras_step(km)
    xt, yt = tf.constant(x_np), tf.constant(y_np)
    tf_step = lambda: float(kstep(xt, yt).numpy())  # noqa: E731
    first = {k: f() for k, f in (("ours", ours), ("noext", noext), ("keras", tf_step))}
    return Bench("training", f"U-Net train step, batch {BATCH}, {unet.SIZE}x{unet.SIZE}x"
                 f"{unet.CHANNELS}",
                 bwd={"mlxnote": ours, "mlxnote-noext": noext, "tf": tf_step},
                 repeat=QUICK_REPEAT if quick else REPEAT, warmup=2, interleaved=True,
                 note="step-1 loss " + ", ".join(f"{k} {v:.5f}" for k, v in first.items()))


def _pair_bench(name: str, make, keras_model, loss, x_np, y_np, quick: bool,
                note: str = "") -> Bench:
    """A training-step Bench: ``make()`` builds the mlxnote Model (compiled, built; called
    twice, the second copy given the first's weights), ``keras_model(model)`` the Keras
    model on the same weights, ``loss`` the Keras loss; the first step's three losses go
    into the note."""
    import tensorflow as tf

    xb, yb = mx.array(x_np), mx.array(y_np)
    mx.random.seed(0)
    model = make()
    model2 = make()
    model2.set_weights(model.get_weights())
    ours, noext = _note_step(model, xb, yb), without_extension(_note_step(model2, xb, yb))
    kstep = unet.keras_step(keras_model(model), loss)
    xt, yt = tf.constant(x_np), tf.constant(y_np)
    tf_step = lambda: float(kstep(xt, yt).numpy())  # noqa: E731
    first = {k: f() for k, f in (("ours", ours), ("noext", noext), ("keras", tf_step))}
    return Bench("training", name, bwd={"mlxnote": ours, "mlxnote-noext": noext, "tf": tf_step},
                 repeat=QUICK_REPEAT if quick else REPEAT, warmup=2, interleaved=True,
                 note=(note + "; " if note else "") + "step-1 loss "
                 + ", ".join(f"{k} {v:.5f}" for k, v in first.items()))


LM_VOCAB, LM_LAYERS = 1000, 2


def lm_models(t: int):
    """``(make, keras_model)`` for the Transformer LM on windows of ``t`` tokens (see the
    module docstring): ``make()`` the mlxnote Model (compiled, built), ``keras_model(m)``
    the same network in Keras with ``m``'s weights (not compiled)."""
    import keras

    from mlxnote import Model, nn
    from mlxnote.training import SparseCategoricalCrossentropy

    from .bench_attention import FF, D, H, keras_encoder, set_keras_encoder

    class LM(Model):
        def __init__(self):
            super().__init__()
            self.embed = mnn.Embedding(LM_VOCAB, D)
            layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, LM_LAYERS,
                                                 nn.layer_norm(D, epsilon=1e-5))
            self.head = nn.dense(LM_VOCAB, D)

        def __call__(self, x):
            return self.head(self.encoder(self.embed(x), is_causal=True))

    def make():
        m = LM()
        m.compile("adam", SparseCategoricalCrossentropy(from_logits=True))
        m(mx.zeros((1, t), mx.int32))
        return m

    def keras_model(m):
        call, blocks, final = keras_encoder(LM_LAYERS, causal=True)
        emb, head = keras.layers.Embedding(LM_VOCAB, D), keras.layers.Dense(LM_VOCAB)
        inp = keras.Input((t,), dtype="int32")
        km = keras.Model(inp, head(call(emb(inp))))
        emb.set_weights([np.array(m.embed.weight)])
        set_keras_encoder(blocks, final, m.encoder)
        head.set_weights(m.head.get_weights(layout="keras"))
        return km

    return make, keras_model


def lm_tokens(n: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random token windows of ``t`` and their next tokens (int32)."""
    tokens = np.random.default_rng(seed).integers(0, LM_VOCAB, (n, t + 1)).astype(np.int32)
    return tokens[:, :-1], tokens[:, 1:]


def lm_bench(quick: bool) -> Bench:
    """A small Transformer language model (see the module docstring): one training step of
    next-token prediction on random tokens."""
    import keras

    from .bench_attention import D, H

    b, t = (4, 32) if quick else (16, 128)
    x_np, y_np = lm_tokens(b, t)
    make, keras_model = lm_models(t)
    return _pair_bench(f"Transformer LM train step, batch {b}, T {t}, d{D} h{H} "
                       f"{LM_LAYERS} layers, vocab {LM_VOCAB}", make, keras_model,
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       x_np, y_np, quick, "causal, next-token CE")


CLS_VOCAB, CLS_EMBED, CLS_UNITS, CLS_CLASSES = 1000, 64, 128, 4


def lstm_classifier_bench(quick: bool) -> Bench:
    """An LSTM text classifier (see the module docstring): one training step on random
    tokens and labels."""
    import keras

    from mlxnote import Model, nn

    b, t = (8, 20) if quick else (32, 100)
    rng = np.random.default_rng(0)
    x_np = rng.integers(0, CLS_VOCAB, (b, t)).astype(np.int32)
    y_np = rng.integers(0, CLS_CLASSES, (b,)).astype(np.int32)

    class Classifier(Model):
        def __init__(self):
            super().__init__()
            self.embed = mnn.Embedding(CLS_VOCAB, CLS_EMBED)
            self.lstm = nn.LSTM(CLS_UNITS, CLS_EMBED)
            self.out = nn.dense(CLS_CLASSES, CLS_UNITS, activation="softmax")

        def __call__(self, x):
            return self.out(self.lstm(self.embed(x)))

    def make():
        m = Classifier()
        m.compile("adam", "sparse_categorical_crossentropy")
        m(mx.array(x_np[:1]))
        return m

    def keras_model(m):
        L = keras.layers
        emb, lstm = L.Embedding(CLS_VOCAB, CLS_EMBED), L.LSTM(CLS_UNITS, unit_forget_bias=False)
        out = L.Dense(CLS_CLASSES, activation="softmax")
        km = keras.Sequential([keras.Input((t,), dtype="int32"), emb, lstm, out])
        emb.set_weights([np.array(m.embed.weight)])
        lstm.set_weights(m.lstm.get_weights(layout="keras"))
        out.set_weights(m.out.get_weights(layout="keras"))
        return km

    return _pair_bench(f"LSTM classifier train step, batch {b}, T {t}, embed {CLS_EMBED}, "
                       f"LSTM {CLS_UNITS}, {CLS_CLASSES} classes", make, keras_model,
                       keras.losses.SparseCategoricalCrossentropy(), x_np, y_np, quick)


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds: the CPU time of every thread of this process, less moved by
    other processes' load than the wall time (though spinning thread pools count)."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    t1 = _clock()
    return t1[0] - t0[0], t1[1] - t0[1]


def _epoch_times_keras(km, x, y, epochs, batch=BATCH):
    """Keras ``fit(epochs=E)``; each epoch's (wall, CPU) seconds."""
    import keras

    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = _clock()

        def on_epoch_end(self, epoch, logs=None):
            times.append(_since(self.t))

    km.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[T()])
    return times


def _same_model_loop(model):
    """``epoch(x, y, batch) -> (wall, CPU) seconds``: a hand-written compiled loop (the mean loss,
    ``value_and_grad``, the optimizer update; one ``mx.eval`` of the state per batch) over
    ``model``, an mlxnote Model: the kernels ``fit`` runs, without ``fit``'s per-sample
    weights, metrics, logs and callbacks."""
    model._init_optimizer()
    model.train()
    opt, loss = model.optimizer, model.loss
    state = [model.state, opt.state, mx.random.state]
    vg = mnn.value_and_grad(model, lambda x, y: loss(y, model(x)).mean())

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        value, grads = vg(x, y)
        opt.update(model, grads)
        return value

    def epoch(x, y, batch):
        t = _clock()
        perm = mx.random.permutation(x.shape[0])
        xp, yp = x[perm], y[perm]
        for i in range(0, x.shape[0], batch):
            mx.eval(step(xp[i:i + batch], yp[i:i + batch]), state)
        return _since(t)

    return epoch


def _interleaved(impls: dict, epochs: int) -> dict[str, list[tuple[float, float]]]:
    """``impls``: name -> ``epoch(e) -> (wall, CPU) seconds``; each runs epoch ``e`` in
    turn, so that a change of load on a shared machine hits them alike."""
    times = {k: [] for k in impls}
    for e in range(epochs):
        for k, f in impls.items():
            times[k].append(f(e))
    return times


def _fit_epoch(model, x, y, batch):
    """``epoch(e) -> (wall, CPU)``: ``fit`` epoch ``e`` alone (History's time; the CPU
    time from ``on_epoch_begin`` to ``on_epoch_end`` as History's)."""
    from mlxnote.training import Callback

    class CPU(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.s = time.process_time() - self.t

    def run(e):
        cpu = CPU()
        h = model.fit(x, y, epochs=e + 1, initial_epoch=e, batch_size=batch, verbose=0,
                      callbacks=[cpu])
        return h.times[0], cpu.s

    return run


RAW_SAME = "raw MLX loop, same model"
FIT_BARE = "mlxnote fit, loss only"


def _epoch_table(console, title: str, results: dict, epochs: int, quality: str,
                 baselines: tuple[str, ...]) -> dict:
    """Print one epochs table; ``results``: name -> ([(wall, CPU) s per epoch], quality
    value). The statistics are over epochs 2..E (epoch 1 compiles): the median and the
    minimum wall time and the median CPU time; returns the JSON record."""
    from rich.table import Table

    def later(t):
        return t[1:] if len(t) > 1 else t

    med = {k: 1e3 * statistics.median(w for w, _ in later(t)) for k, (t, _) in results.items()}
    low = {k: 1e3 * min(w for w, _ in later(t)) for k, (t, _) in results.items()}
    cpu = {k: 1e3 * statistics.median(c for _, c in later(t)) for k, (t, _) in results.items()}
    tab = Table(title=f"{title}: ms per epoch over epochs 2..{epochs}; ratios of the median "
                "wall, the minimum wall and the median CPU time", title_justify="left")
    cols = ["implementation", "median ms", "min ms", "CPU ms", "first epoch ms",
            *(f"vs {b}" for b in baselines), quality]
    for c in cols:
        tab.add_column(c, justify="left" if c == "implementation" else "right")
    for k, (t, q) in results.items():
        tab.add_row(k, f"{med[k]:.1f}", f"{low[k]:.1f}", f"{cpu[k]:.1f}",
                    f"{1e3 * t[0][0]:.0f}",
                    *(f"{med[k] / med[b]:.2f} / {low[k] / low[b]:.2f} / {cpu[k] / cpu[b]:.2f}"
                      for b in baselines), f"{q:.4f}")
    console.print(tab)
    return {"epochs": epochs, "quality": quality, "loadavg": os.getloadavg(),
            "results": {k: {"ms_per_epoch": med[k], "min_ms": low[k], "cpu_ms": cpu[k],
                            "epoch_ms": [1e3 * w for w, _ in t],
                            "epoch_cpu_ms": [1e3 * c for _, c in t], quality: q}
                        for k, (t, q) in results.items()},
            "ratios": {f"mlxnote fit / {b}": {"median": med["mlxnote fit"] / med[b],
                                             "min": low["mlxnote fit"] / low[b],
                                             "cpu": cpu["mlxnote fit"] / cpu[b]}
                       for b in baselines if b != "mlxnote fit"}}


def digits_epochs(console, quick: bool) -> dict:
    """The digits CNN: mlxnote fit, the hand-written raw loops, the same-model loop and
    Keras fit (see the module docstring)."""
    epochs = 3 if quick else 15
    ex, (x, y), (xt, yt), model, w0 = _setup()
    mx.random.seed(1)
    xm, ym, xtm, ytm = (mx.array(a) for a in (x, y, xt, yt))
    raws = {name: _raw_trainer(w0, kernel) for name, kernel in
            (("raw MLX loop", False), ("raw MLX loop, mlxnote conv", True))}
    from mlxnote.training import SparseCategoricalCrossentropy

    def copy(metrics=("accuracy",)):
        m = ex.make_model()
        m.compile("adam", SparseCategoricalCrossentropy(from_logits=True), list(metrics))
        m(xm[:1])
        m.set_weights(w0)
        return m

    same, bare = copy(), copy(())  # bare: fit with the loss alone (no accuracy in the step)
    same_epoch = _same_model_loop(same)

    def timed(f):
        def run(e):
            t = _clock()
            f(xm, ym)
            return _since(t)
        return run

    def acc(m):
        return float((np.argmax(m.predict(xt), axis=-1) == yt).mean())

    times = _interleaved({"mlxnote fit": _fit_epoch(model, x, y, BATCH),
                          FIT_BARE: _fit_epoch(bare, x, y, BATCH),
                          **{k: timed(r[2]) for k, r in raws.items()},
                          RAW_SAME: lambda e: same_epoch(xm, ym, BATCH)}, epochs)
    results = {"mlxnote fit": (times["mlxnote fit"], model.evaluate(xt, yt, verbose=0)[1]),
               FIT_BARE: (times[FIT_BARE], acc(bare))}
    for name, (_, _, _, raw_acc) in raws.items():
        results[name] = (times[name], raw_acc(xtm, ytm))
    results[RAW_SAME] = (times[RAW_SAME], acc(same))
    km = _keras_model(w0)
    results["Keras fit"] = (_epoch_times_keras(km, x, y, epochs),
                            float(km.evaluate(xt, yt, verbose=0)[1]))
    return _epoch_table(console, f"digits CNN ({len(x)} images, batch {BATCH})", results,
                        epochs, "test accuracy",
                        ("raw MLX loop, mlxnote conv", RAW_SAME, "Keras fit"))


def _pair_epochs(console, title: str, make, keras_model, keras_loss, data, held, batch,
                 epochs) -> dict:
    """mlxnote fit and the same-model loop (interleaved), then Keras fit, on the same
    data from the same initial weights; the quality column is the held-out loss."""
    import keras

    (x, y), (xv, yv) = data, held
    mx.random.seed(0)
    model = make()
    same = make()
    same.set_weights(model.get_weights())
    km = keras_model(model)
    km.compile(optimizer=keras.optimizers.Adam(), loss=keras_loss)
    xm, ym = mx.array(x), mx.array(y)
    same_epoch = _same_model_loop(same)
    times = _interleaved({"mlxnote fit": _fit_epoch(model, x, y, batch),
                          RAW_SAME: lambda e: same_epoch(xm, ym, batch)}, epochs)
    results = {"mlxnote fit": (times["mlxnote fit"], model.evaluate(xv, yv, verbose=0)),
               RAW_SAME: (times[RAW_SAME], same.evaluate(xv, yv, verbose=0))}
    results["Keras fit"] = (_epoch_times_keras(km, x, y, epochs, batch),
                            float(km.evaluate(xv, yv, batch_size=batch, verbose=0)))
    return _epoch_table(console, title, results, epochs, "held-out loss",
                        (RAW_SAME, "Keras fit"))


def lm_epochs(console, quick: bool) -> dict:
    import keras

    from .bench_attention import D, H

    b, t, n, epochs = (4, 32, 32, 3) if quick else (16, 128, 320, 6)
    make, keras_model = lm_models(t)
    return _pair_epochs(console, f"Transformer LM ({n} random windows, batch {b}, T {t}, "
                        f"d{D} h{H} {LM_LAYERS} layers, vocab {LM_VOCAB})", make,
                        keras_model, keras.losses.SparseCategoricalCrossentropy(
                            from_logits=True), lm_tokens(n, t), lm_tokens(2 * b, t, 1), b,
                        epochs)


def unet_epochs(console, quick: bool) -> dict:
    import keras

    n, epochs = (64, 3) if quick else (640, 6)
    return _pair_epochs(console, f"U-Net ({n} images {unet.SIZE}x{unet.SIZE}x"
                        f"{unet.CHANNELS}, width {UNET_WIDTH}, batch {BATCH}, MSE)",
                        lambda: unet.mlxnote_model(UNET_WIDTH),
                        lambda m: unet.keras_model(UNET_WIDTH,
                                                   [l.get_weights() for l in
                                                    unet.note_layers(m)]),
                        keras.losses.MeanSquaredError(), unet.data(n),
                        unet.data(2 * BATCH, seed=1), BATCH, epochs)


def extra(console, quick: bool) -> None:
    out = Path(os.environ.get("BENCH_TRAINING_JSON", ROOT / "reports" / "bench_training.json"))
    record = {"quick": quick, "batch_size": BATCH, "loadavg_start": os.getloadavg()}
    for name, f in (("digits", digits_epochs), ("transformer_lm", lm_epochs),
                    ("unet", unet_epochs)):
        record[name] = f(console, quick)
    record["loadavg_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    console.print(f"wrote {out}")
