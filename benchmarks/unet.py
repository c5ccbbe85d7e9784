"""A small U-Net (conv, transposed conv, batch norm) for ``bench_training``, built once of
mlxnote layers and once of Keras layers, with the same initial weights.

(B, 32, 32, 3) -> conv-bn-relu (w) -> two down blocks, conv-bn-relu at stride 2 (2w, 4w:
16x16, 8x8) -> two up blocks, conv2d_transpose-bn-relu at stride 2, the skip concatenated,
conv-bn-relu (2w at 16x16, w at 32x32) -> 1x1 conv head (3 channels). 3x3 kernels, SAME
padding; MSE loss, Adam (Keras defaults).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

SIZE, CHANNELS = 32, 3

# (filters as a multiple of the width, stride, transposed) of the seven conv-bn-relu blocks
BLOCKS = ((1, 1, False), (2, 2, False), (4, 2, False),
          (2, 2, True), (2, 1, False), (1, 2, True), (1, 1, False))


def _forward(blocks, head, concat, x):
    """The U-Net wiring, shared by both builds: ``blocks[i](x)`` is conv-bn-relu."""
    e1 = blocks[0](x)
    e2 = blocks[1](e1)
    h = blocks[2](e2)
    h = blocks[4](concat(blocks[3](h), e2))
    h = blocks[6](concat(blocks[5](h), e1))
    return head(h)


def mlxnote_model(width: int):
    """The U-Net as an ``mlxnote.Model`` (compiled with ``'adam'`` and ``'mse'``, built)."""
    from mlxnote import Model, Sequential, nn

    class UNet(Model):
        def __init__(self):
            super().__init__()
            self.blocks = [Sequential(
                (nn.conv2d_transpose if t else nn.conv2d)(m * width, 3, strides=s,
                                                          padding="SAME"),
                nn.batch_norm(), mnn.relu) for m, s, t in BLOCKS]
            self.head = nn.conv2d(CHANNELS, 1)

        def __call__(self, x):
            return _forward(self.blocks, self.head,
                            lambda a, b: mx.concatenate([a, b], axis=-1), x)

    model = UNet()
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

    blocks = [block(*b) for b in BLOCKS]
    head = L.Conv2D(CHANNELS, 1)
    layers.append(head)
    inp = keras.Input((SIZE, SIZE, CHANNELS))
    model = keras.Model(inp, _forward(blocks, head, lambda a, b: L.Concatenate()([a, b]),
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
