"""A small CNN of mlxnote layers on scikit-learn's digits (8x8 images, 10 classes).

    .venv/bin/python examples/digits_cnn.py [--epochs 30] [--checkpoint digits.safetensors]

Target: >= 97% accuracy on the held-out 20% (360 images). The dataset ships with
scikit-learn: nothing is downloaded. With ``--checkpoint`` the run saves a checkpoint
every epoch and a second run with the same flag resumes from it.
"""

import argparse  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import os
import time

import mlxnote  # noqa: F401
import mlx.core as mx
import numpy as np

from mlxnote import Model, nn
from mlxnote.training import ModelCheckpoint, SparseCategoricalCrossentropy

TARGET = 0.97


class DigitsCNN(Model):
    """(B, 8, 8, 1) -> conv 3x3 (32) -> conv 3x3 stride 2 (64) -> 4x4x64 -> dense 10."""

    def __init__(self, rate: float = 0.25):
        super().__init__()
        self.conv1 = nn.conv2d(32, 3, padding="SAME", activation="relu")
        self.conv2 = nn.conv2d(64, 3, strides=2, padding="SAME", activation="relu")
        self.drop = nn.dropout(rate)
        self.head = nn.dense(10)

    def __call__(self, x):
        h = self.conv2(self.conv1(x))
        return self.head(self.drop(h.reshape(h.shape[0], -1)))


def load_data(seed: int = 0):
    """Train/test split (80/20, stratified by a fixed permutation) as NHWC float32."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    idx = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return (x[idx[:cut]], y[idx[:cut]]), (x[idx[cut:]], y[idx[cut:]])


def make_model() -> DigitsCNN:
    model = DigitsCNN()
    model.compile("adam", SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    return model


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="save every epoch; resume if it exists")
    p.add_argument("--verbose", default="auto", help="auto, 0, 1 or 2")
    a = p.parse_args(argv)
    verbose = a.verbose if a.verbose == "auto" else int(a.verbose)

    mx.random.seed(a.seed)
    (x, y), (xt, yt) = load_data(a.seed)
    model = make_model()
    callbacks = [ModelCheckpoint(a.checkpoint)] if a.checkpoint else []
    resume = a.checkpoint if a.checkpoint and os.path.exists(a.checkpoint) else None
    t = time.perf_counter()
    history = model.fit(x, y, epochs=a.epochs, batch_size=a.batch_size,
                        validation_data=(xt, yt), callbacks=callbacks, resume=resume,
                        verbose=verbose)
    took = time.perf_counter() - t
    loss, acc = model.evaluate(xt, yt, verbose=0)
    model.summary()
    per_epoch = np.median(history.times) if history.times else float("nan")
    print(f"test accuracy {acc:.4f} (target >= {TARGET}), test loss {loss:.4f}; "
          f"{len(history.epoch)} epochs in {took:.1f}s ({per_epoch * 1e3:.0f} ms/epoch)")
    return acc


if __name__ == "__main__":
    acc = main()
    raise SystemExit(0 if acc >= TARGET else 1)
