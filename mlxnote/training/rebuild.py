"""Build a lazy model's layers from the weight shapes of a file, before loading it.

A layer built on its first call (no ``input_size``) has no weights until then, so
:meth:`~.Model.load` and ``load_weights`` could not fill it. For each unbuilt top-level
layer, :func:`build_from_shapes` finds the input size its saved weights were made for:
the layer is built for input sizes 60 and 120 (and put back unbuilt each time), and every
weight axis that grows with the input size (``d = a * input_size + b``) is solved for it; all such
axes must agree on one positive integer. The layer is then built with it, as its first
call would have. MLX's random state is put back afterwards, so loading draws nothing.

A layer whose weights do not depend on its input size, or whose saved shapes fit no
input size, stays unbuilt (the caller's "needs built layers" error names it), and shapes
that fit but differ in another way are reported by the strict load that follows.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from ..nn import weights
from ..nn.layer import Layer

__all__ = ["build_from_shapes", "input_size_from", "stored_shapes", "keras_shapes", "build",
           "same_random_state", "wrapper_parts", "built_through"]

_PROBES = (60, 120)  # divisible by the usual group counts


def _snapshot(module: Any) -> Callable[[], None]:
    """A function putting ``module`` back as it is now: its items (arrays, sublayers),
    its attributes and the contents of its list, dict and set attributes (the weight
    slots, the frozen keys)."""
    items, attrs = dict(module), dict(module.__dict__)
    kept = [(v, copy.copy(v)) for v in attrs.values()  # plain containers only: not
            if type(v) in (list, dict, set)]             # an owner (a Layer is a dict)

    def put_back() -> None:
        dict.clear(module)
        dict.update(module, items)
        module.__dict__.clear()
        module.__dict__.update(attrs)
        for live, saved in kept:
            if isinstance(live, list):
                live[:] = saved
            else:
                live.clear()
                live.update(saved)

    return put_back


@contextlib.contextmanager
def _undone(layer: Layer) -> Iterator[None]:
    """Run a block that builds ``layer`` and put it back as it was, with every module
    inside it (a wrapper's layers: Bidirectional builds its two)."""
    undo = [_snapshot(m) for m in layer.modules()]
    try:
        yield
    finally:
        for put_back in undo:
            put_back()


Shapes = Callable[[Layer], dict[str, tuple[int, ...]]]


def stored_shapes(layer: Layer) -> dict[str, tuple[int, ...]]:
    """A built layer's weight shapes as stored, by parameter path."""
    return {k: tuple(v.shape) for k, v in tree_flatten(layer.parameters())}


def keras_shapes(layer: Layer) -> dict[str, tuple[int, ...]]:
    """A built layer's weight shapes in Keras's layout, by index (``'0'``, ``'1'``, ...)."""
    return {str(i): tuple(w.shape) for i, w in enumerate(layer.get_weights(layout="keras"))}


def _built_shapes(layer: Layer, size: int, shapes: Shapes) -> dict[str, tuple[int, ...]] | None:
    """``shapes(layer)`` with ``layer`` built for input size ``size``, the layer left
    unbuilt (``None`` when it cannot be built so)."""
    with _undone(layer):
        try:
            layer.build(size)
            return shapes(layer)
        except (ValueError, TypeError, KeyError, RuntimeError):
            return None


def input_size_from(layer: Layer, saved: Mapping[str, Sequence[int]],
                    shapes: Shapes = stored_shapes) -> int | None:
    """The input size for which ``layer``'s weights have the shapes ``saved`` (keyed as
    ``shapes`` keys them: parameter paths relative to the layer by default, or
    :func:`keras_shapes`' indices), or ``None`` when no single positive integer fits."""
    lo, hi = (_built_shapes(layer, s, shapes) for s in _PROBES)
    if lo is None or hi is None:
        return None
    found: set[float] = set()
    for key, a in lo.items():
        b, s = hi.get(key), saved.get(key)
        if b is None or s is None or len(s) != len(a) or len(b) != len(a):
            continue
        for da, db, ds in zip(a, b, s):
            if da == db:
                continue
            slope = (db - da) / (_PROBES[1] - _PROBES[0])
            found.add((ds - (da - slope * _PROBES[0])) / slope)
    if len(found) != 1:
        return None
    size = found.pop()
    return int(size) if size == int(size) and size >= 1 else None


@contextlib.contextmanager
def same_random_state() -> Iterator[None]:
    """Put MLX's random key back after the block (building draws initial weights)."""
    key = mx.random.state[0]
    try:
        yield
    finally:
        hi, lo = key.tolist()
        mx.random.seed((int(hi) << 32) | int(lo))  # the same key (see steps.restore)


def build(layer: Layer, size: int) -> None:
    """Build ``layer`` for input size ``size``, as its first call would have
    (``Layer.ensure_built``)."""
    layer.build(size)
    if "input_size" in layer._config:
        layer._config["input_size"] = size


def wrapper_parts(layer: Layer) -> list[tuple[str, Layer]] | None:
    """``(name, sublayer)`` of a layer built through its sublayers (its class keeps
    ``Layer.build``, and it holds layers: Bidirectional), else ``None``."""
    if type(layer).build is not Layer.build:
        return None
    subs = [(k, v) for k, v in layer.children().items() if isinstance(v, Layer)]
    return subs or None


def built_through(layer: Layer, parts: list[tuple[str, Layer]]) -> bool:
    """Mark a wrapper built once all its sublayers are; whether it is."""
    if all(v.built for _, v in parts):
        layer._set("built", True)
    return layer.built


def _build_tree(layer: Layer, prefix: str, shapes: Mapping[str, Sequence[int]]) -> bool:
    """Build ``layer`` (or, a wrapper, its sublayers) from the stored shapes under
    ``prefix``; whether it is built."""
    if layer.built:
        return True
    parts = wrapper_parts(layer)
    if parts is not None:
        for k, v in parts:
            _build_tree(v, f"{prefix}{k}.", shapes)
        return built_through(layer, parts)
    saved = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    size = input_size_from(layer, saved)
    if size is not None:
        build(layer, size)
    return layer.built


def build_from_shapes(model: Any, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Build every unbuilt top-level layer of ``model`` whose input size ``shapes``
    (``path -> shape`` of the stored weights, paths as in ``model.parameters()``) tells
    (a wrapper through its sublayers); returns the paths built. MLX's random state is
    left as it was."""
    built = []
    with same_random_state():
        for path, layer in weights.modules(model):
            if isinstance(layer, Layer) and not layer.built \
                    and _build_tree(layer, f"{path}.", shapes):
                built.append(path)
    return built
