"""One layer across: a Keras layer to its mlxnote pair with the weights, and back."""

from __future__ import annotations

import inspect
from typing import Any

from .._config import DTYPES, dtype_name
from .._validation import Desc, error
from ..nn import weights
from ..nn.layer import Layer
from .layers import BY_KERAS, BY_NOTE, Options, Pair


def keras() -> Any:
    """The ``keras`` module, or a clear error when it is not installed."""
    try:
        import keras as k
    except ImportError as e:  # pragma: no cover - Keras is installed with the extras
        raise ImportError("mlxnote.from_keras/to_keras need Keras 3: pip install keras "
                          "tensorflow (mlxnote's 'conformance' extra installs both)") from e
    return k


def _params(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)


def pair_of_keras(klayer: Any) -> Pair:
    cls = type(klayer)
    pair = BY_KERAS.get(cls.__name__)
    if pair is None or not cls.__module__.startswith("keras."):
        raise error("from_keras", "obj", Desc(f"the Keras layer '{klayer.name}' "
                    f"({cls.__name__})"), f"a Keras layer with an mlxnote counterpart: "
                    f"{sorted(BY_KERAS)}", TypeError)
    return pair


def _dtype(o: Options) -> str:
    pol = o.layer.dtype_policy
    if pol.variable_dtype != pol.compute_dtype or pol.compute_dtype not in DTYPES:
        raise error(o.where, "dtype", pol.name, "a policy of one dtype for the weights and "
                    f"the computation, one of {list(DTYPES)}")
    return str(pol.compute_dtype)


def layer_from_keras(klayer: Any, allow: tuple[str, ...] = ()) -> Layer:
    """The mlxnote layer of a Keras layer, with its weights (built when the Keras layer
    is, lazy otherwise), in eval mode (a Keras call's default). ``allow``: config keys a
    wrapper set, not checked."""
    pair = pair_of_keras(klayer)
    o = Options(klayer, allow)
    kw = pair.from_keras(o)
    params = _params(pair.note)
    if "dtype" in params:
        kw["dtype"] = _dtype(o)
    frozen = not klayer.trainable
    if "trainable" in params:
        kw["trainable"], frozen = klayer.trainable, False
    o.finish()
    ws = klayer.get_weights()
    if ws:
        kw.update(pair.sizes(ws, kw))
    layer = pair.note(**kw)
    if ws:
        layer.set_weights(ws, layout="keras")
    if frozen:
        layer.freeze()
    return layer.eval()


def pair_of_note(layer: Any) -> Pair:
    pair = BY_NOTE.get(type(layer))
    if pair is None:
        name, known = type(layer).__name__, sorted(c.__name__ for c in BY_NOTE)
        raise error("to_keras", "obj", Desc(f"a {name}"), f"an mlxnote layer with a Keras "
                    f"counterpart of the same math: {known} ({name} has none)", TypeError)
    return pair


def _trainable(layer: Layer) -> bool:
    if "trainable" in _params(type(layer)):
        return bool(layer.trainable)
    ws = weights.collect(layer)
    return not ws or any(w.trainable for w in ws)


def layer_to_keras(layer: Layer) -> Any:
    """The Keras layer of an mlxnote layer, unbuilt (:func:`build` gives it the weights)."""
    pair = pair_of_note(layer)
    kw = pair.to_keras(layer)
    if "dtype" in _params(pair.note):
        kw["dtype"] = dtype_name(layer.dtype)
    return getattr(keras().layers, pair.keras)(trainable=_trainable(layer), **kw)


def build(klayer: Any, layer: Layer, input_shape: tuple[Any, ...] | None = None) -> None:
    """Build ``klayer`` (for ``input_shape``, the batch axis excluded, or from ``layer``'s
    sizes) unless it is built, and give it ``layer``'s weights."""
    ws = layer.get_weights(layout="keras")
    if not ws:
        return  # nothing to give: Keras builds it on its first call
    if not klayer.built:
        shape = (None, *input_shape) if input_shape is not None else \
            BY_NOTE[type(layer)].shape(layer)
        if shape is None:
            raise error("to_keras", "input_shape", None, f"the input's shape without the "
                        f"batch axis: Keras's {BY_NOTE[type(layer)].keras} fixes the "
                        "input's rank when it is built", TypeError)
        klayer.build(shape)
        if input_shape is None:
            _any_rank(klayer)
    klayer.set_weights(ws)


def _any_rank(klayer: Any) -> None:
    """Let a layer built for the smallest rank take any rank with the same sizes on its
    axes (GroupNormalization's input spec fixes the rank; its computation does not)."""
    spec = klayer.input_spec
    if spec is not None and getattr(spec, "ndim", None) is not None and spec.axes:
        klayer.input_spec = keras().layers.InputSpec(min_ndim=spec.ndim, axes=spec.axes)
