"""The U-Net of ``examples/shapes_unet.py`` for ``bench_training``, once of mlxnote layers
(the example's model) and once of Keras layers (the same wiring), with the same initial
weights; and :func:`example`, which loads a module of ``examples/``.

(B, 32, 32, 3) -> conv-bn-relu (w) -> two down blocks, conv-bn-relu at stride 2 (2w, 4w:
16x16, 8x8) -> two up blocks, conv2d_transpose-bn-relu at stride 2, the skip concatenated,
conv-bn-relu (2w at 16x16, w at 32x32) -> 1x1 conv head (3 channels). 3x3 kernels, SAME
padding; MSE loss, Adam (Keras defaults).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZE, CHANNELS = 32, 3


def example(name: str):
    """The module ``examples/<name>.py`` (loaded once; the examples are scripts, not a
    package)."""
    key = f"_examples.{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[key] = mod
    return sys.modules[key]


def mlxnote_model(width: int):
    """The example's U-Net with ``CHANNELS`` outputs, compiled (``'adam'``, ``'mse'``) and
    built on (1, 32, 32, 3)."""
    import mlx.core as mx

    model = example("shapes_unet").UNet(width, CHANNELS)
    model.compile("adam", "mse")
    model(mx.zeros((1, SIZE, SIZE, CHANNELS)))
    return model


def note_layers(model) -> list:
    """The model's weighted layers in creation order (conv, bn per block, then the head)."""
    return [l for b in model.blocks for l in b.layers[:2]] + [model.head]


def keras_model(width: int, note_weights: list[list[np.ndarray]]):
    """The same U-Net in Keras (functional), from the mlxnote layers' ``get_weights()``
    (batch norm reordered: Note's is moving_mean, moving_variance, beta, gamma, Keras's
    gamma, beta, moving_mean, moving_variance)."""
    import keras

    L = keras.layers
    layers = []

    def block(m, s, t):
        conv = (L.Conv2DTranspose if t else L.Conv2D)(m * width, 3, strides=s, padding="same")
        bn = L.BatchNormalization()
        layers.extend([conv, bn])
        return lambda x: L.ReLU()(bn(conv(x)))

    ex = example("shapes_unet")
    blocks = [block(*b) for b in ex.BLOCKS]
    head = L.Conv2D(CHANNELS, 1)
    layers.append(head)
    inp = keras.Input((SIZE, SIZE, CHANNELS))
    model = keras.Model(inp, ex.forward(blocks, head, lambda a, b: L.Concatenate()([a, b]),
                                        inp))
    for layer, w in zip(layers, note_weights, strict=True):
        if isinstance(layer, L.BatchNormalization):
            mm, mv, beta, gamma = w
            w = [gamma, beta, mm, mv]
        layer.set_weights(w)
    return model


def keras_step(model, loss_fn=None):
    """A ``tf.function`` training step ``step(x, y) -> loss`` (``loss_fn``, default MSE;
    Adam with Keras's defaults)."""
    import keras
    import tensorflow as tf

    opt = keras.optimizers.Adam()
    loss_fn = keras.losses.MeanSquaredError() if loss_fn is None else loss_fn
    variables = model.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def data(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch of noisy images and their clean targets (smooth random fields)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, SIZE, dtype=np.float32)
    f = rng.uniform(0.5, 3, (batch, 1, 1, CHANNELS, 2)).astype(np.float32)
    clean = np.sin(f[..., 0] * t[None, :, None, None]) * np.cos(f[..., 1] * t[None, None, :,
                                                                                   None])
    noisy = clean + 0.3 * rng.standard_normal(clean.shape).astype(np.float32)
    return noisy.astype(np.float32), clean.astype(np.float32)
