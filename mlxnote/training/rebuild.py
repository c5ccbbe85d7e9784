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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from ..nn import weights
from ..nn.layer import Layer

__all__ = ["build_from_shapes", "input_size_from"]

_PROBES = (60, 120)  # divisible by the usual group counts


@contextlib.contextmanager
def _undone(layer: Layer) -> Iterator[None]:
    """Run a block that builds ``layer`` and put the layer back as it was: its items
    (arrays, sublayers), its attributes and the contents of its list, dict and set
    attributes (the weight slots, the frozen keys)."""
    items, attrs = dict(layer), dict(layer.__dict__)
    kept = [(v, copy.copy(v)) for v in attrs.values() if isinstance(v, (list, dict, set))]
    try:
        yield
    finally:
        dict.clear(layer)
        dict.update(layer, items)
        layer.__dict__.clear()
        layer.__dict__.update(attrs)
        for live, saved in kept:
            if isinstance(live, list):
                live[:] = saved
            else:
                live.clear()
                live.update(saved)


def _built_shapes(layer: Layer, size: int) -> dict[str, tuple[int, ...]] | None:
    """The weight shapes of ``layer`` built for input size ``size``, the layer left
    unbuilt (``None`` when it cannot be built so)."""
    with _undone(layer):
        try:
            layer.build(size)
        except (ValueError, TypeError):
            return None
        return {k: tuple(v.shape) for k, v in tree_flatten(layer.parameters())}


def input_size_from(layer: Layer, saved: Mapping[str, Sequence[int]]) -> int | None:
    """The input size for which ``layer``'s weights have the shapes ``saved`` (keys
    relative to the layer, as ``tree_flatten(layer.parameters())`` gives them), or
    ``None`` when no single positive integer fits."""
    lo, hi = (_built_shapes(layer, s) for s in _PROBES)
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


def build_from_shapes(model: Any, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Build every unbuilt top-level layer of ``model`` whose input size ``shapes``
    (``path -> shape`` of the stored weights, paths as in ``model.parameters()``) tells;
    returns the paths built. MLX's random state is left as it was."""
    key = mx.random.state[0]
    built = []
    try:
        for path, layer in weights.modules(model):
            if not isinstance(layer, Layer) or layer.built:
                continue
            prefix = f"{path}."
            saved = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
            size = input_size_from(layer, saved)
            if size is None:
                continue
            layer.build(size)  # as Layer.ensure_built does on a first call
            if "input_size" in layer._config:
                layer._config["input_size"] = size
            built.append(path)
    finally:
        hi, lo = key.tolist()
        mx.random.seed((int(hi) << 32) | int(lo))  # the same key (see steps.restore)
    return built
