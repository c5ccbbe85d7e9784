"""Training: the digits CNN (examples/digits_cnn.py) with mlxnote ``fit``, a hand-written
compiled raw-MLX loop, and Keras ``fit``, in one run, from the same initial weights; a
small U-Net (``benchmarks/unet.py``: conv, conv2d_transpose, batch norm), a small
Transformer language model and an LSTM text classifier training step, mlxnote against
Keras, from the same initial weights.

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
* ``extra``: whole epochs, E of them per implementation: mlxnote ``fit`` and the two
  raw loops take turns epoch by epoch (``fit(epochs=e + 1, initial_epoch=e)``; its
  History times the epoch alone), Keras trains in one ``fit(epochs=E)``. The table gives
  the median epoch time over epochs 2..E (epoch 1 includes compilation), the minimum,
  the ratios of the medians, and the test accuracy after E epochs. On a shared machine
  the medians move with the load; the minimums are the steadier comparison. It writes
  ``reports/bench_training.json`` (``$BENCH_TRAINING_JSON`` overrides the path).
"""

from __future__ import annotations

import importlib.util
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


def _example():
    spec = importlib.util.spec_from_file_location("digits_cnn", ROOT / "examples" /
                                                  "digits_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    ex = _example()
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


def lm_bench(quick: bool) -> Bench:
    """A small Transformer language model (see the module docstring): one training step of
    next-token prediction on random tokens."""
    import keras

    from mlxnote import Model, nn
    from mlxnote.training import SparseCategoricalCrossentropy

    from .bench_attention import FF, D, H, keras_encoder, set_keras_encoder

    b, t = (4, 32) if quick else (16, 128)
    tokens = np.random.default_rng(0).integers(0, LM_VOCAB, (b, t + 1)).astype(np.int32)
    x_np, y_np = tokens[:, :-1], tokens[:, 1:]

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
        m(mx.array(x_np[:1]))
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


def _epoch_times_keras(km, x, y, epochs):
    import keras

    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    km.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[T()])
    return times


def extra(console, quick: bool) -> None:
    from rich.table import Table

    epochs = 3 if quick else 15
    ex, (x, y), (xt, yt), model, w0 = _setup()
    results = {}

    # mlxnote and the raw loops take turns epoch by epoch, so that a change of load
    # on a shared machine hits all three alike; Keras runs its own fit(epochs=E).
    mx.random.seed(1)
    xm, ym = mx.array(x), mx.array(y)
    raws = {name: _raw_trainer(w0, kernel) for name, kernel in
            (("raw MLX loop", False), ("raw MLX loop, mlxnote conv", True))}
    times = {"mlxnote fit": [], **{k: [] for k in raws}}
    for e in range(epochs):
        h = model.fit(x, y, epochs=e + 1, initial_epoch=e, batch_size=BATCH, verbose=0)
        times["mlxnote fit"] += h.times
        for name, (_, _, raw_epoch, _) in raws.items():
            t = time.perf_counter()
            raw_epoch(xm, ym)
            times[name].append(time.perf_counter() - t)
    results["mlxnote fit"] = (times["mlxnote fit"], model.evaluate(xt, yt, verbose=0)[1])
    for name, (_, _, _, raw_acc) in raws.items():
        results[name] = (times[name], raw_acc(mx.array(xt), mx.array(yt)))

    km = _keras_model(w0)
    times = _epoch_times_keras(km, x, y, epochs)
    results["Keras fit"] = (times, float(km.evaluate(xt, yt, verbose=0)[1]))

    med = {k: 1e3 * statistics.median(t[1:] if len(t) > 1 else t)
           for k, (t, _) in results.items()}
    t = Table(title=f"digits CNN: ms per epoch ({len(x)} images, batch {BATCH}, median of "
              f"epochs 2..{epochs}) and test accuracy after {epochs} epochs",
              title_justify="left")
    for c in ("implementation", "ms/epoch", "min ms", "first epoch ms", "vs raw MLX",
              "vs raw + same conv", "vs Keras", "test accuracy"):
        t.add_column(c, justify="left" if c == "implementation" else "right")
    for k, (times, acc) in results.items():
        t.add_row(k, f"{med[k]:.1f}", f"{1e3 * min(times):.1f}", f"{1e3 * times[0]:.0f}",
                  f"{med[k] / med['raw MLX loop']:.2f}x",
                  f"{med[k] / med['raw MLX loop, mlxnote conv']:.2f}x",
                  f"{med[k] / med['Keras fit']:.2f}x",
                  f"{acc:.4f}")
    console.print(t)
    out = Path(os.environ.get("BENCH_TRAINING_JSON", ROOT / "reports" / "bench_training.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "epochs": epochs, "batch_size": BATCH, "images": len(x), "quick": quick,
        "results": {k: {"ms_per_epoch": med[k], "epoch_ms": [1e3 * v for v in times],
                        "test_accuracy": acc} for k, (times, acc) in results.items()},
        "mlxnote_over_raw": med["mlxnote fit"] / med["raw MLX loop"],
        "mlxnote_over_raw_same_conv": med["mlxnote fit"] / med["raw MLX loop, mlxnote conv"],
        "mlxnote_over_keras": med["mlxnote fit"] / med["Keras fit"]}, indent=1))
    console.print(f"wrote {out}")
