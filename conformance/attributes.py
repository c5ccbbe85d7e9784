"""The engine's check ``attributes``: what a layer says about itself after the compared call.

* ``built``: the layer and every mlxnote layer inside it are built, and a layer given
  ``input_size`` is built at construction (Note's eager path: weights before any call);
* ``output_size`` (an int; required of a layer with weights but those in
  :data:`NO_OUTPUT_SIZE`): the size of the first output's feature
  axis (the last, or axis 1 for a channels-first layer: note-semantics.md, "output
  feature size"), after the layer's activation where it changes the width (glu, crelu);
* ``get_config``: every constructor argument is recorded, and ``from_config(get_config())``
  given the layer's weights is the same function: its outputs on the case's inputs (in
  inference mode) equal the layer's bit for bit, and its config is the layer's.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .case import TRAIN_FLAGS, Trial

# Layers with weights that have no output feature size of their own (as in Note): the
# normalizations, Keras's attention (its scale), FAVOR (its features), talking heads (head
# mixes), the Transformer stacks.
NO_OUTPUT_SIZE = {"attention", "batch_norm", "group_norm", "layer_norm", "group_normalization",
                  "layer_normalization", "FAVOR_attention", "talking_heads_attention",
                  "TransformerEncoder", "TransformerDecoder"}


def _inner(layer) -> list:
    from mlxnote.nn.layer import Layer

    return [("", layer)] + [(p, m) for p, m in layer.named_modules()
                            if p and isinstance(m, Layer)]


def _feature_axis(layer) -> int:
    fmt = str(getattr(layer, "data_format", "") or "")
    first = getattr(layer, "channels_first", False) is True or fmt.startswith("channels_first") \
        or fmt in ("NCW", "NCHW", "NCDHW")
    return 1 if first else -1


def same_config(a, b) -> bool:
    """Are two configs equal (layers by their configs, arrays by their values)?"""
    from mlxnote.nn.layer import Layer

    if isinstance(a, Layer) or isinstance(b, Layer):
        return type(a) is type(b) and same_config(a.get_config(), b.get_config())
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_config(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            same_config(x, y) for x, y in zip(a, b))
    if isinstance(a, (mx.array, np.ndarray)) or isinstance(b, (mx.array, np.ndarray)):
        return np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))
    return a is b or a == b


def _outputs(layer, call: Callable, trial: Trial) -> list[np.ndarray]:
    kw = {k: v for k, v in trial.call_kwargs.items() if k not in TRAIN_FLAGS}
    was = layer.training
    layer.eval()
    try:
        outs = [o for _, o in tree_flatten(call(layer, trial.xs, kw))]
        mx.eval(outs)
        return [np.asarray(o.astype(mx.float32)) if mx.issubdtype(o.dtype, mx.floating)
                else np.asarray(o) for o in outs]
    finally:
        layer.train(was)


def problems(trial: Trial, call: Callable, outs: list[mx.array]) -> list[str]:
    """What is wrong with the layer's attributes after its compared call (empty: nothing).
    It draws from ``mx.random``: the engine runs it after the case's own draws."""
    layer, found = trial.layer, []
    if trial.case.kwargs.get("input_size") is not None and not trial.build().built:
        found.append("not built at construction with input_size given (Note's eager path)")
    found += [f"{type(m).__name__}{' at ' + p if p else ''} is not built"
              for p, m in _inner(layer) if getattr(m, "built", True) is not True]
    size = getattr(layer, "output_size", None)
    if size is None and type(layer).__name__ not in NO_OUTPUT_SIZE and layer.get_weights():
        found.append("no output_size after the call (a layer with weights reports it)")
    floats = [o for o in outs if isinstance(o, mx.array) and o.ndim]
    if isinstance(size, int) and not isinstance(size, bool) and floats:
        ax, act = _feature_axis(layer), getattr(layer, "act", None)
        # an activation may change the width (glu halves it, crelu doubles it)
        want = act(mx.zeros((1, size))).shape[-1] if callable(act) else size
        if floats[0].shape[ax] != want:
            found.append(f"output_size is {size}, the output's feature axis {ax} has "
                         f"{floats[0].shape[ax]} (shape {tuple(floats[0].shape)})")
    try:
        found += _config_round_trip(trial, call)
    except Exception as e:  # the check reports it
        found.append(f"get_config/from_config: {type(e).__name__}: {e}")
    return found


def _config_round_trip(trial: Trial, call: Callable) -> list[str]:
    layer = trial.layer
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    weights = layer.get_weights()
    if weights:
        if not clone.built:
            _outputs(clone, call, trial)
        clone.set_weights(weights)
    clone.train(layer.training)
    if not same_config(clone.get_config(), cfg):
        return ["from_config(get_config()) has another config"]
    mine, theirs = _outputs(layer, call, trial), _outputs(clone, call, trial)
    bad = [j for j, (a, b) in enumerate(zip(mine, theirs))
           if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True)]
    if len(mine) != len(theirs) or bad:
        return [f"from_config(get_config()) with the same weights gives other outputs "
                f"(outputs {bad or 'count'})"]
    return []
