"""Keras in and out: :func:`from_keras` and :func:`to_keras`.

``from_keras(obj)`` takes a Keras layer, a ``keras.Sequential``, a functional
``keras.Model`` of supported layers, or the path of a saved model (``.keras``, loaded
with Keras) and returns the mlxnote layer or model computing the same function, with the
weights, in eval mode (a Keras call's default; ``.train()`` or ``fit`` to train;
decisions.md, items 37-38).
``to_keras(obj, input_shape=None)`` does the reverse. Supported layers:
:data:`mlxnote.interop.layers.PAIRS` (one mlxnote layer each) and, in models, the
weightless merges and ``Activation`` (:class:`~.graph.KerasOp`). Anything else, and any
Keras option mlxnote does not have, is an error naming it.

Weights travel with ``layout="keras"`` (:mod:`mlxnote.nn.layouts`): the Keras model's
``get_weights()`` is the mlxnote model's ``get_weights(layout="keras")``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import nn
from .._validation import Desc, error
from ..nn.layer import Layer
from ..training import Model, Sequential
from . import convert, graph, layers
from .graph import KerasGraph, KerasOp

__all__ = ["from_keras", "to_keras", "KerasGraph", "KerasOp", "layers", "graph", "convert"]


def from_keras(obj: Any) -> Any:
    """The mlxnote equivalent of a Keras layer, model, or saved ``.keras`` file (a path).

    Returns an mlxnote layer, a :class:`~mlxnote.training.Sequential` (a Sequential model,
    or a functional one that is a chain), or a :class:`KerasGraph`, in eval mode.
    """
    k = convert.keras()
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isfile(path):
            raise error("from_keras", "obj", path, "a Keras layer or model, or the path of "
                        "an existing saved model (.keras)", FileNotFoundError)
        obj = k.saving.load_model(path)
    if isinstance(obj, k.Sequential):
        return _from_sequential(obj)
    if isinstance(obj, k.Model):
        if type(obj).__name__ != "Functional":
            raise error("from_keras", "obj", Desc(f"a subclassed Keras model "
                        f"({type(obj).__name__})"), "a Keras layer, a Sequential or a "
                        "functional model (a subclass's call is Python code)", TypeError)
        return graph.from_functional(obj)
    if isinstance(obj, k.layers.Layer):
        return graph._member(obj)
    raise error("from_keras", "obj", Desc(f"a {type(obj).__name__}"), "a Keras layer, a "
                "Sequential, a functional model or the path of a saved model", TypeError)


def _from_sequential(model: Any) -> Sequential:
    seq = Sequential([graph._member(m) for m in model.layers])
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        shape = None
    seq._set("input_shapes", None if shape is None else [tuple(shape[1:])])
    return seq.eval()


def to_keras(obj: Any, input_shape: tuple[int | None, ...] | None = None) -> Any:
    """The Keras equivalent of an mlxnote layer or model, with the weights.

    Args:
        obj: a layer with a Keras counterpart, a :class:`~mlxnote.training.Sequential` or
            Note's ``nn.Layers`` (a plain chain) of them, or a model :func:`from_keras`
            made.
        input_shape: the input's shape without the batch axis (``(28, 28, 1)``). A model
            is built on ``keras.Input(input_shape)`` (a model from :func:`from_keras`
            remembers its own); a layer is built from its sizes, so it is needed only where
            Keras fixes the input's rank when building (``BatchNormalization``,
            ``GroupNormalization``).
    """
    if isinstance(obj, KerasGraph):
        return graph.to_functional(obj)
    if isinstance(obj, (Sequential, nn.Layers)):
        return _to_sequential(obj, input_shape)
    if isinstance(obj, Model):
        raise error("to_keras", "obj", Desc(f"a {obj.name} (a Model subclass)"), "a layer, "
                    "a Sequential, or a model from from_keras (a subclass's __call__ is "
                    "Python code)", TypeError)
    if isinstance(obj, KerasOp):
        return obj.to_keras()
    if isinstance(obj, Layer):
        klayer = convert.layer_to_keras(obj)
        convert.build(klayer, obj, None if input_shape is None else tuple(input_shape))
        return klayer
    raise error("to_keras", "obj", Desc(f"a {type(obj).__name__}"), "an mlxnote layer or "
                "model", TypeError)


def _member_to_keras(m: Any, i: int) -> Any:
    if isinstance(m, KerasOp):
        return m.to_keras()
    if isinstance(m, Model):
        return to_keras(m)
    if isinstance(m, Layer):
        return convert.layer_to_keras(m)
    raise error("to_keras", "obj", Desc(f"a Sequential holding a {type(m).__name__} at "
                f"position {i}"), "mlxnote layers with a Keras counterpart", TypeError)


def _entries(model: Sequential | nn.Layers) -> list[Any]:
    """The layers of a Sequential, or of Note's ``Layers`` (a plain chain only)."""
    if isinstance(model, Sequential):
        model._check_built("to_keras")
        return list(model.layers)
    if any(save or use for _, save, use, _ in model._plan):
        raise error("to_keras", "obj", Desc("a Layers with save_data/use_data"), "a plain "
                    "chain of layers (a Keras Sequential; build a functional Keras model "
                    "for the branches)", TypeError)
    unbuilt = [type(m).__name__ for m in model.layer if isinstance(m, Layer) and not m.built]
    if unbuilt:
        raise error("to_keras", "obj", Desc(f"a Layers with unbuilt {unbuilt}"),
                    "built layers (give input_size or call it once)", RuntimeError)
    return list(model.layer)


def _to_sequential(model: Sequential | nn.Layers, input_shape: Any) -> Any:
    k = convert.keras()
    entries = _entries(model)
    recorded = getattr(model, "input_shapes", None)
    shape = input_shape if input_shape is not None else (recorded[0] if recorded else None)
    members = [_member_to_keras(m, i) for i, m in enumerate(entries)]
    if shape is not None:
        kmodel = k.Sequential([k.Input(tuple(shape)), *members])
    for m, km in zip(entries, members):
        if isinstance(m, Layer):
            convert.build(km, m)
    return kmodel if shape is not None else k.Sequential(members)
