"""Keras 3's ``.weights.h5`` files, written and read with h5py (no Keras needed).

Keras 3 (``keras/src/saving/saving_lib.py``) stores a Sequential or functional model's
weights by layer: ``layers/<name>/vars/0, 1, ...`` with ``<name>`` the snake-case class
name of the Keras layer, ``_1``, ``_2``, ... for later layers of the same class (not the
layer's ``name``); a recurrent layer keeps them in ``layers/<name>/cell/vars``,
Bidirectional in ``forward_layer/...`` and ``backward_layer/...``; every ``vars`` group has
a ``name`` attribute; the model's own ``vars`` group sits at the root, and a compiled
Keras model adds ``optimizer/vars`` (ignored here).

An mlxnote model maps onto that layout through its layers' Keras counterparts
(:mod:`mlxnote.interop.layers`, ``get_weights(layout="keras")``): the layers of a
:class:`~.Sequential` or of a model from ``from_keras``, or the top-level layers of a
Model subclass in registration order (the order a Keras Sequential of the same layers
has). A layer without a Keras counterpart is an error naming it. Loading is strict and
all or nothing: every layer's group must hold its arrays with Keras's shapes; weightless
layers may be absent. A lazily built model is first built from the file's shapes
(:mod:`~.rebuild`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._validation import Desc, error
from ..nn import weights
from ..nn.layer import Layer
from . import checkpoint, rebuild

__all__ = ["SUFFIX", "is_keras_file", "groups", "save", "load"]

SUFFIX = ".weights.h5"
_RNN = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


def is_keras_file(path: Any) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(SUFFIX)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - installed with the Keras extras
        raise ImportError("Keras .weights.h5 files need h5py: pip install h5py") from e
    return h5py


def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _members(model: Any) -> list[Any]:
    """The model's layers in Keras's order (see the module doc)."""
    layers = getattr(model, "layers", None)
    if isinstance(layers, list):
        return list(layers)
    return [m for _, m in weights.modules(model)]


def _keras_class(member: Any, owner: str) -> str:
    from ..interop.graph import KerasOp
    from ..interop.layers import BY_NOTE

    if isinstance(member, KerasOp):
        return member._kind
    pair = BY_NOTE.get(type(member)) if isinstance(member, Layer) else None
    if pair is None:
        raise error(owner, "model", Desc(f"a {type(member).__name__} layer"),
                    "layers with a Keras counterpart (mlxnote.interop.layers.PAIRS) in a "
                    "Keras .weights.h5 file", TypeError)
    return pair.keras


def _parts(member: Any, kind: str, path: str, name: str, owner: str
           ) -> Iterator[tuple[str, str, int]]:
    """``(group path, vars name attribute, array count)`` of one Keras layer, in the
    order of its ``get_weights``."""
    if kind == "Bidirectional":
        yield path, name, 0
        for side in ("forward", "backward"):
            inner = getattr(member, f"{side}_layer")
            ikind = _keras_class(inner, owner)
            yield from _parts(inner, ikind, f"{path}/{side}_layer",
                              f"{side}_{_snake(ikind)}", owner)
        return
    n = 0 if not isinstance(member, Layer) else \
        len(member.get_weights(layout="keras")) if member.built else -1  # -1: unbuilt
    if kind in _RNN:
        yield path, name, 0
        yield f"{path}/cell", _RNN[kind], n
        return
    yield path, name, n


def groups(model: Any, owner: str) -> list[tuple[Any, list[tuple[str, str, int]]]]:
    """For each layer of ``model``: ``(layer, [(group path, name, count), ...])``; a
    model from ``from_keras`` with several inputs also lists its input layers."""
    from ..interop.graph import KerasGraph

    used: dict[str, int] = {}
    out = []
    for _ in range(len(model.inputs) if isinstance(model, KerasGraph) else 0):
        name = _unique("input_layer", used)
        out.append((None, [(f"layers/{name}", name, 0)]))
    for member in _members(model):
        kind = _keras_class(member, owner)
        name = _unique(_snake(kind), used)
        out.append((member, list(_parts(member, kind, f"layers/{name}", name, owner))))
    return out


def _unique(name: str, used: dict[str, int]) -> str:
    """Keras's ``_get_unique_name``: ``name``, then ``name_1``, ``name_2``, ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _split(arrays: list[np.ndarray], parts: list[tuple[str, str, int]]
           ) -> Iterator[tuple[str, str, list[np.ndarray]]]:
    i = 0
    for path, name, n in parts:
        yield path, name, arrays[i:i + n]
        i += n


def save(model: Any, path: str | os.PathLike, owner: str, overwrite: bool = True) -> None:
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file, atomically (a
    temporary file in the same folder, then ``os.replace``)."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{owner}: {path!r} exists (overwrite=False)")
    model._check_built("save_weights")
    plan = groups(model, owner)
    h5py = _h5py()
    d, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(d, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for member, parts in plan:
                arrays = member.get_weights(layout="keras") if isinstance(member, Layer) \
                    else []
                for gpath, name, chunk in _split(arrays, parts):
                    g = f.require_group(f"{gpath}/vars")
                    g.attrs["name"] = name
                    for i, a in enumerate(chunk):
                        g.create_dataset(str(i), data=np.asarray(a))
            f.require_group("vars").attrs["name"] = _snake(type(model).__name__)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _build_unbuilt(model: Any, f: Any, owner: str) -> None:
    """Build the model's unbuilt layers for the input sizes the file's Keras-layout
    shapes imply (:mod:`~.rebuild`; MLX's random state kept)."""
    if not model.unbuilt():
        return
    with rebuild.same_random_state():
        for member, parts in groups(model, owner):
            if isinstance(member, Layer) and not member.built:
                _build_from(member, _keras_class(member, owner), parts[0][0], f, owner)


def _build_from(layer: Layer, kind: str, path: str, f: Any, owner: str) -> None:
    """Build ``layer`` (a wrapper through its sublayers) from the shapes of its groups
    under ``path``."""
    wrapped = rebuild.wrapper_parts(layer)
    if wrapped is not None:
        for name, sub in wrapped:
            _build_from(sub, _keras_class(sub, owner), f"{path}/{name}", f, owner)
        rebuild.built_through(layer, wrapped)
        return
    saved: list[tuple[int, ...]] = []
    for gpath, _, _ in _parts(layer, kind, path, "", owner):
        g = f.get(f"{gpath}/vars")
        saved += [] if g is None else [g[str(i)].shape for i in range(len(g))]
    size = rebuild.input_size_from(layer, {str(i): s for i, s in enumerate(saved)},
                                   rebuild.keras_shapes)
    if size is not None:
        rebuild.build(layer, size)


def load(model: Any, path: str | os.PathLike, owner: str) -> None:
    """Read a Keras 3 ``.weights.h5`` file into ``model``: every layer's arrays, checked
    (count and shapes) for all layers before any is set (a
    :class:`~.checkpoint.CheckpointError` lists every problem). Layers not built yet are
    first built for the input sizes the file's shapes imply."""
    path = os.fspath(path)
    checkpoint.require(path, owner)
    h5py = _h5py()
    problems: list[str] = []
    loads: list[tuple[Layer, list[np.ndarray]]] = []
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise checkpoint.CheckpointError(f"{owner}: {path!r} is not a readable HDF5 "
                                         f"file ({e})") from e
    with f:
        _build_unbuilt(model, f, owner)
        model._check_built("load_weights")
        for member, parts in groups(model, owner):
            if not isinstance(member, Layer):
                continue
            want = member.get_weights(layout="keras")
            got: list[np.ndarray] = []
            for gpath, _, chunk in _split(want, parts):
                g = f.get(f"{gpath}/vars")
                have = 0 if g is None else len(g)
                if have != len(chunk):
                    problems.append(f"{gpath}: {have} arrays in the file, {len(chunk)} in "
                                    f"the model's {type(member).__name__}")
                    continue
                for i, w in enumerate(chunk):
                    a = np.asarray(g[str(i)])
                    if a.shape != w.shape:
                        problems.append(f"{gpath}/vars/{i}: shape {a.shape} in the file, "
                                        f"{w.shape} in the model")
                    got.append(a)
            loads.append((member, got))
    if problems:
        raise checkpoint.mismatch(owner, path, "model (Keras layout)", problems)
    for member, arrays in loads:
        if arrays:
            member.set_weights(arrays, layout="keras")
