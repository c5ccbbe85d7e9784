"""A small U-Net segments generated shapes in noisy images.

    .venv/bin/python examples/shapes_unet.py [--epochs 6] [--seed 0]

Each 32x32 grayscale image holds one to three random circles and rectangles (the mask)
at a random brightness on a random smooth background, plus strong pixel noise (sigma 0.6
against a contrast of 0.6 to 1.4): a threshold on single pixels is a poor segmentation,
the network has to use the neighbourhood. The data are generated: nothing is downloaded.
The model (also ``benchmarks/unet.py``'s, against Keras): conv-bn-relu blocks, two down
at stride 2, two up by transposed convolutions with the skips concatenated, a 1x1 conv to
one logit per pixel; binary cross-entropy from logits, trained with ``fit``.

Metric: the intersection over union of the predicted (logit > 0) and true foreground over
all pixels of 500 held-out images. Target: IoU >= 0.85.
"""

import argparse  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import time

import mlxnote  # noqa: F401
import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from mlxnote import Model, Sequential, nn
from mlxnote.training import Adam, BinaryCrossentropy

TARGET = 0.85
SIZE = 32

# (filters as a multiple of the width, stride, transposed) of the seven conv-bn-relu blocks
BLOCKS = ((1, 1, False), (2, 2, False), (4, 2, False),
          (2, 2, True), (2, 1, False), (1, 2, True), (1, 1, False))


def forward(blocks, head, concat, x):
    """The U-Net wiring (shared with the Keras twin in ``benchmarks/unet.py``):
    ``blocks[i](x)`` is conv-bn-relu, ``concat(a, b)`` joins channels."""
    e1 = blocks[0](x)
    e2 = blocks[1](e1)
    h = blocks[2](e2)
    h = blocks[4](concat(blocks[3](h), e2))
    h = blocks[6](concat(blocks[5](h), e1))
    return head(h)


class UNet(Model):
    """``(B, H, W, C)`` -> ``(B, H, W, out_channels)``, H and W multiples of 4; 3x3 kernels,
    SAME padding, ``width``, ``2 width`` and ``4 width`` channels at the three scales."""

    def __init__(self, width: int = 16, out_channels: int = 1):
        super().__init__()
        self.blocks = [Sequential(
            (nn.conv2d_transpose if t else nn.conv2d)(m * width, 3, strides=s, padding="SAME"),
            nn.batch_norm(), mnn.relu) for m, s, t in BLOCKS]
        self.head = nn.conv2d(out_channels, 1)

    def __call__(self, x):
        return forward(self.blocks, self.head, lambda a, b: mx.concatenate([a, b], axis=-1), x)


def make_data(n: int, seed: int, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 32, 32, 1)`` float32 and their masks (1.0 inside a shape)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(4, SIZE - 4, 2)
            if rng.random() < 0.5:
                r = rng.uniform(3, 8)
                masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                h, w = rng.uniform(3, 8, 2)
                masks[i] |= (abs(yy - cy) <= h) & (abs(xx - cx) <= w)
    contrast = rng.uniform(0.6, 1.4, (n, 1, 1))
    gy, gx = rng.uniform(-0.5, 0.5, (2, n, 1, 1)) / SIZE  # a smooth background slope
    background = gy * yy + gx * xx
    images = background + contrast * masks + noise * rng.standard_normal(masks.shape)
    return images[..., None].astype(np.float32), masks[..., None].astype(np.float32)


def iou(logits: np.ndarray, masks: np.ndarray) -> float:
    """Foreground intersection over union, over every pixel (prediction: logit > 0)."""
    pred, true = np.asarray(logits) > 0, np.asarray(masks) > 0.5
    return float((pred & true).sum() / max((pred | true).sum(), 1))


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=2000, help="training images")
    p.add_argument("--test", type=int, default=500, help="held-out images")
    p.add_argument("--width", type=int, default=16, help="channels of the first block")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", default="auto", help="auto, 0, 1 or 2")
    a = p.parse_args(argv)
    verbose = a.verbose if a.verbose == "auto" else int(a.verbose)

    mx.random.seed(a.seed)
    x, y = make_data(a.train, 2 * a.seed)
    xt, yt = make_data(a.test, 2 * a.seed + 1)
    model = UNet(a.width)
    model.compile(Adam(a.lr), BinaryCrossentropy(from_logits=True), ["accuracy"])
    t = time.perf_counter()
    history = model.fit(x, y, epochs=a.epochs, batch_size=a.batch_size,
                        validation_data=(xt, yt), verbose=verbose)
    took = time.perf_counter() - t
    score = iou(model.predict(xt), yt)
    baseline = iou(xt - 0.5, yt)  # one threshold on each pixel alone
    print(f"held-out IoU {score:.4f} (target >= {TARGET}; a per-pixel threshold at 0.5: "
          f"{baseline:.4f}); {len(history.epoch)} epochs in {took:.1f}s")
    return score


if __name__ == "__main__":
    score = main()
    raise SystemExit(0 if score >= TARGET else 1)
