"""Smoke tests of examples/char_transformer.py and examples/shapes_unet.py: their pieces
against hand computations, and a tiny run of each that must learn (seconds)."""

import importlib.util
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lm():
    return _example("char_transformer")


@pytest.fixture(scope="module")
def seg():
    return _example("shapes_unet")


# -- the character-level Transformer ---------------------------------------------------
def test_windows_are_the_next_characters(lm):
    x, y = lm.windows(np.arange(10), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    (xt, _), (xv, yv) = lm.split([np.arange(40), np.arange(100, 140)], 3, held=0.25)
    # 30 training characters give 9 windows (the last needs its next character), 10 give 3
    assert xt.shape == (18, 3) and xv.shape == (6, 3)
    assert xv[:3, 0].tolist() == [30, 33, 36] and yv[3:, -1].tolist() == [133, 136, 139]


def test_text_ships_with_python(lm):
    texts = lm.load_texts()
    assert len(texts) == len(lm.MODULES) and all(len(t) > 10_000 for t in texts)
    assert "class ArgumentParser" in texts[0]


def test_char_lm_is_causal(lm):
    """Changing the last character changes no earlier position's logits."""
    mx.random.seed(0)
    model = lm.CharLM(20, 8, d_model=16, heads=2, layers=1)
    model.eval()
    a = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=mx.int32)
    b = mx.array([[1, 2, 3, 4, 5, 6, 7, 19]], dtype=mx.int32)
    la, lb = model(a), model(b)
    assert la.shape == (1, 8, 20)
    assert np.allclose(np.array(la[:, :7]), np.array(lb[:, :7]), atol=1e-6)
    assert not np.allclose(np.array(la[:, 7]), np.array(lb[:, 7]))


def test_char_transformer_runs_and_learns(lm, capsys):
    """A tiny run (24 KB of text, one layer of width 32, three epochs, a few seconds): the
    held-out loss ends well under the characters' unigram entropy (3.7 against 4.8 bits
    measured)."""
    mx.random.seed(0)
    bits = lm.main(["--epochs", "3", "--chars", "24000", "--context", "32", "--d-model",
                    "32", "--layers", "1", "--batch-size", "16", "--lr", "1e-2",
                    "--dropout", "0", "--sample", "20", "--verbose", "0"])
    out = capsys.readouterr().out
    unigram = float(out.split("unigram entropy ")[1].split(")")[0])
    assert math.isfinite(bits) and bits < unigram - 0.7, out
    sample = out.split("---\n")[1]
    assert sample.startswith("def ") and len(sample) >= 24


def test_char_lm_fit_loss_falls(lm):
    mx.random.seed(1)
    text = lm.load_texts(["textwrap"])[0][:8000]
    chars = sorted(set(text))
    ids = np.searchsorted(np.array(chars), np.array(list(text)))
    x, y = lm.windows(ids, 32)
    model = lm.CharLM(len(chars), 32, d_model=32, heads=2, layers=1)
    from mlxnote.training import Adam, SparseCategoricalCrossentropy

    model.compile(Adam(3e-3), SparseCategoricalCrossentropy(from_logits=True))
    loss = model.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert loss[0] > loss[1] > loss[2] and loss[0] < math.log(len(chars)) + 0.5, loss


# -- the U-Net on generated shapes ----------------------------------------------------
def test_shapes_data(seg):
    x, m = seg.make_data(64, 0, noise=0.0)
    assert x.shape == m.shape == (64, 32, 32, 1) and x.dtype == np.float32
    frac = m.mean()
    assert 0.05 < frac < 0.6 and set(np.unique(m)) == {0.0, 1.0}
    # without noise the shapes stand out by their contrast (0.6 to 1.4) over a slope of
    # at most 1/2 across the image
    inside, outside = x[m > 0].mean(), x[m == 0].mean()
    assert 0.5 < inside - outside < 1.5
    x2, m2 = seg.make_data(64, 0)
    assert np.array_equal(m, m2) and np.std(x2 - x) == pytest.approx(0.6, rel=0.05)


def test_iou_by_hand(seg):
    true = np.array([1, 1, 0, 0, 1], np.float32)
    logits = np.array([2.0, -1.0, 0.5, -3.0, 0.1])  # predicted: 1, 0, 1, 0, 1
    assert seg.iou(logits, true) == pytest.approx(2 / 4)
    assert seg.iou(-np.ones(5), np.zeros(5)) == 0.0  # nothing predicted, nothing true


def test_unet_shapes(seg):
    mx.random.seed(0)
    model = seg.UNet(4, out_channels=2)
    assert model(mx.zeros((3, 16, 24, 1))).shape == (3, 16, 24, 2)


def test_shapes_unet_runs_and_learns(seg, capsys):
    """A tiny run (width 4, 128 images, two epochs): the loss falls."""
    mx.random.seed(0)
    x, y = seg.make_data(128, 0)
    from mlxnote.training import Adam, BinaryCrossentropy

    model = seg.UNet(4)
    model.compile(Adam(3e-3), BinaryCrossentropy(from_logits=True), ["accuracy"])
    loss = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
    assert loss[0] > loss[1] > loss[2], loss
    score = seg.main(["--epochs", "1", "--train", "64", "--test", "32", "--width", "4",
                      "--verbose", "0"])
    out = capsys.readouterr().out
    assert 0.0 <= score <= 1.0 and "held-out IoU" in out


@pytest.mark.slow
def test_unet_keras_twin_agrees(seg):
    """benchmarks/unet.py's Keras U-Net, given the example model's weights, computes the
    same outputs (eval mode): the wiring both use is the example's."""
    pytest.importorskip("keras")
    from benchmarks import unet

    mx.random.seed(0)
    model = unet.mlxnote_model(4)
    km = unet.keras_model(4, [l.get_weights() for l in unet.note_layers(model)])
    x, _ = unet.data(2)
    model.eval()
    ours = np.array(model(mx.array(x)))
    theirs = np.array(km(x, training=False))
    assert np.allclose(ours, theirs, atol=1e-4), np.abs(ours - theirs).max()
