"""Contracts that are not a numeric comparison with TensorFlow: each a yes/no property of a
public entry point, run with the whole suite and listed in the report.

* FAVOR's uniform randomizer keeps the layer's ``seed``: a randomizer taking ``key=``
  draws the features from the layer's own key, so the same seed gives the same features
  whatever the global generator did, another seed other features, and the values are the
  randomizer's (in ``[-1, 1)``);
* attention dropout at its bounds (multihead, talking-heads, Linformer, the Transformer's
  encoder layer): ``0.0`` is accepted and draws nothing in training,
  ``1.0`` and negative rates are refused with a ``ValueError`` naming the layer and
  ``dropout`` (the rates just inside run as numeric cases: ``families/spellings.py``);
* Bidirectional's copies of a built layer keep its weights and its ``trainable`` flag;
* ``layer_norm`` refuses a 0-d input with a ``ValueError`` naming ``data``.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np

from .kernel_forms import FormRow


def _row(name: str, fn: Callable[[], str]) -> FormRow:
    """``fn()`` returns '' when the property holds, else what went wrong."""
    try:
        problem = fn()
    except Exception as e:  # the report shows it; the run fails
        problem = f"{type(e).__name__}: {e}"
    return FormRow(name, not problem, 0.0, problem)


def _raises(make: Callable[[], object], exc: type, *words: str) -> str:
    try:
        make()
    except exc as e:
        missing = [w for w in words if w not in str(e)]
        return f"the error does not name {missing}: {e}" if missing else ""
    except Exception as e:
        return f"raised {type(e).__name__}, not {exc.__name__}: {e}"
    return f"no {exc.__name__} raised"


def favor_seed() -> str:
    from mlxnote import nn

    from .case import Fn

    rnd = Fn("uniform_key_randomizer").mlx
    kw = dict(key_dim=4, m=6, orthonormal=False, redraw=False, randomizer=rnd)
    mx.random.seed(1)
    a = nn.FAVOR_attention(**kw, seed=3).get_weights()[0]
    mx.random.seed(2)
    b = nn.FAVOR_attention(**kw, seed=3).get_weights()[0]
    c = nn.FAVOR_attention(**kw, seed=4).get_weights()[0]
    problems = []
    if not np.array_equal(a, b):
        problems.append("the same seed gave other features after the global seed changed")
    if np.array_equal(a, c):
        problems.append("seeds 3 and 4 gave the same features")
    if a.min() < -1 or a.max() >= 1:
        problems.append(f"features outside the randomizer's [-1, 1): {a.min()}..{a.max()}")
    mx.random.seed(5)
    plain = mx.random.normal((4,))
    mx.random.seed(5)
    nn.FAVOR_attention(**kw, seed=3)
    if not mx.array_equal(mx.random.normal((4,)), plain).item():
        problems.append("a seeded layer consumed the global generator")
    return "; ".join(problems)


def dropout_bounds(layer: str, arg: str, make: Callable[[float], object],
                   inputs: list[tuple[int, ...]]) -> list[FormRow]:
    def zero_draws_nothing() -> str:
        from .reference.dropout import MASKS, record_masks

        lyr = make(0.0)
        rng = np.random.default_rng(0)
        xs = [mx.array(rng.standard_normal(s).astype(np.float32)) for s in inputs]
        with record_masks():
            lyr.train()
            out = lyr(*xs)
            lyr.eval()
            ref = lyr(*xs)
        out, ref = out[0] if isinstance(out, tuple) else out, \
            ref[0] if isinstance(ref, tuple) else ref
        if MASKS:
            return f"{arg}=0.0 drew {len(MASKS)} dropout mask(s) in training"
        return "" if mx.array_equal(out, ref).item() else \
            f"{arg}=0.0 in training differs from inference"

    return [
        _row(f"{layer}: {arg}=0.0 draws no mask in training", zero_draws_nothing),
        _row(f"{layer}: {arg}=1.0 refused", lambda: _raises(lambda: make(1.0), ValueError,
                                                              layer, arg)),
        _row(f"{layer}: {arg}=-0.1 refused", lambda: _raises(lambda: make(-0.1), ValueError,
                                                               layer, arg)),
    ]


def bidirectional_copies() -> str:
    """decisions.md 34: Bidirectional keeps copies of its layer, with the weights of a built
    one, and says whether it is trainable as the layer does."""
    from mlxnote import nn

    problems = []
    for trainable in (True, False):
        layer = nn.LSTM(3, 4, return_sequence=True, trainable=trainable)
        bi = nn.Bidirectional(layer)
        if bi.forward_layer is layer:
            problems.append("the forward layer is the given layer, not a copy")
        if not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                         bi.forward_layer.get_weights())):
            problems.append("the forward copy of a built layer has other weights")
        if bi.trainable is not trainable or bool(bi.param_names) is not trainable:
            problems.append(f"over a layer with trainable={trainable}: trainable="
                            f"{bi.trainable}, {len(bi.param_names)} trainable weights")
    return "; ".join(problems)


def run() -> list[FormRow]:
    from mlxnote import nn

    rows = [_row("FAVOR_attention: a uniform randomizer keeps the layer's seed", favor_seed)]
    rows += dropout_bounds("multihead_attention", "dropout",
                           lambda r: nn.multihead_attention(2, 8, dropout=r), [(2, 5, 8)])
    rows += dropout_bounds("talking_heads_attention", "dropout_rate",
                           lambda r: nn.talking_heads_attention(dropout_rate=r),
                           [(2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4)])
    rows += dropout_bounds("Linformer_self_attention", "dropout",
                           lambda r: nn.Linformer_self_attention(8, 6, k=4, heads=2, dropout=r),
                           [(2, 6, 8)])
    rows += dropout_bounds("TransformerEncoderLayer", "dropout",
                           lambda r: nn.TransformerEncoderLayer(8, 2, 16, dropout=r),
                           [(2, 5, 8)])
    rows.append(_row("Bidirectional: copies of a built layer keep its weights and "
                     "trainable flag", bidirectional_copies))
    rows.append(_row("layer_norm: a 0-d input refused", lambda: _raises(
        lambda: nn.layer_norm()(mx.array(1.0)), ValueError, "layer_norm", "'data'")))
    from . import argument_contracts, initial_weights  # they use _row and _raises

    for module in (argument_contracts, initial_weights):
        rows += module.run()
    return rows


if __name__ == "__main__":
    import mlxnote  # noqa: F401

    for r in run():
        print(f"{'ok  ' if r.passed else 'FAIL'} {r.name} {r.detail}")
