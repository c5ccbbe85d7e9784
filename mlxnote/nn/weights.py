"""The one weight registry: Note's order, Note's layout and the trainable set.

Layers declare their weights in Note's creation order as *slots*: a stored array (with
the layer's ``to_note``/``from_note`` layout conversion), a sublayer (or a list of them),
or a :class:`View` (a Note weight that is a block of fused stored arrays, as the
recurrent layers keep them). :func:`collect` walks any root — a layer, a model, a plain
``mlx.nn`` module — and returns one :class:`Weight` per Note weight, in order; every
reader (``param``, ``get_weights``, counts, summaries) and writer (``set_weights``,
``update`` with Note names) of layers and models goes through it; Keras's layout
(``layout="keras"``) is a plan over these weights (:mod:`mlxnote.nn.layouts`).

Every array stored here is evaluated when it is created or loaded (:func:`materialize`):
MLX 0.32 evaluates a lazy array only in the thread that created it, and a layer must work
from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .._validation import Desc, error
from . import layouts
from .typing import ArrayLike

_IN_TRANSFORM = ("[eval] Attempting to eval an array during function transformations",
                 "[async_eval] Not allowed inside a graph transformation")


def materialize(*arrays: Any, wait: bool = True) -> None:
    """Evaluate ``arrays`` (trees of them) now, so that any thread can use them later: MLX
    0.32 evaluates a lazy array only in the thread that created it. ``wait=False``
    schedules the evaluation (``mx.async_eval``) without blocking. Inside ``mx.compile``
    (where evaluating is not allowed) the arrays stay as they are: the trace carries them.
    """
    try:
        (mx.eval if wait else mx.async_eval)(*arrays)
    except ValueError as e:
        if not str(e).startswith(_IN_TRANSFORM):
            raise


@dataclass(frozen=True)
class Block:
    """Part of a view: columns ``cols`` of the stored array ``stored`` (its last axis)."""

    stored: str
    cols: tuple[int, int]


@dataclass(frozen=True)
class View:
    """A Note weight of ``shape`` made of ``blocks`` of stored arrays; with several blocks
    the Note weight stacks them along its first axis (e.g. a cell's ``[x; h]`` weight).
    ``arg`` names the constructor argument whose initializer draws it."""

    name: str
    shape: tuple[int, ...]
    blocks: tuple[Block, ...]
    arg: str

    def get(self, layer: mnn.Module) -> mx.array:
        parts = [layer[b.stored][..., b.cols[0]:b.cols[1]] for b in self.blocks]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=0)


@dataclass(frozen=True)
class Slot:
    """One entry of a layer's creation order: ``kind`` is 'array', 'layer' or 'view'."""

    kind: str
    name: str
    view: View | None = None


@dataclass(frozen=True)
class Weight:
    """One Note weight of a root, at ``path``. ``owner[name]`` holds it (for a view, the
    owner holds the stored arrays it is a block of); ``plain`` marks an array of a plain
    ``mlx.nn`` module (stored in Note's layout: no conversion)."""

    path: str
    owner: Any
    name: str
    trainable: bool
    view: View | None = None
    plain: bool = False

    def handle(self) -> mx.array:
        """The array as ``param`` lists it and ``update`` takes it (a view: Note layout)."""
        return self.view.get(self.owner) if self.view is not None else self.owner[self.name]

    def note(self, value: mx.array | None = None) -> mx.array:
        """This weight (or ``value``, in the handle's layout) in Note's layout."""
        v = self.handle() if value is None else value
        return v if self.plain or self.view is not None else self.owner.to_note(self.name, v)

    @property
    def note_shape(self) -> tuple[int, ...]:
        return self.view.shape if self.view is not None else tuple(self.note().shape)

    @property
    def stored_shape(self) -> tuple[int, ...] | None:
        """The stored array's shape (``None`` for a view: it spans fused arrays)."""
        return None if self.view is not None else tuple(self.handle().shape)


def _frozen(owner: Any, keys: Sequence[str]) -> bool:
    no_grad = getattr(owner, "_no_grad", ()) if isinstance(owner, mnn.Module) else ()
    return any(k in no_grad for k in keys)


def collect(root: Any, prefix: str = "", trainable: bool = True) -> list[Weight]:
    """Every Note weight under ``root`` in Note's order: a layer's slots, or, for any other
    module (a Model, an ``mlx.nn`` module), its children in registration order."""
    from .layer import Layer

    if isinstance(root, Layer):
        return _collect_layer(root, prefix, trainable and root.trainable)
    out: list[Weight] = []
    for key, value in _children(root):
        path = f"{prefix}{key}"
        if isinstance(value, mx.array):
            out.append(Weight(path, root, key, trainable and not _frozen(root, [key]),
                              plain=True))
        elif isinstance(value, (mnn.Module, dict, list)):
            out += collect(value, path + ".", trainable)
    return out


def _collect_layer(layer: Any, prefix: str, trainable: bool) -> list[Weight]:
    out: list[Weight] = []
    for slot in layer._slots:
        path = f"{prefix}{slot.name}"
        if slot.kind == "layer":
            sub = layer[slot.name] if slot.name in layer else getattr(layer, slot.name)
            if isinstance(sub, list):
                for i, s in enumerate(sub):
                    out += collect(s, f"{path}.{i}.", trainable)
            else:
                out += collect(sub, path + ".", trainable)
        elif slot.kind == "view":
            keys = [b.stored for b in slot.view.blocks]
            out.append(Weight(path, layer, slot.name, trainable and not _frozen(layer, keys),
                              view=slot.view))
        else:
            out.append(Weight(path, layer, slot.name,
                              trainable and not _frozen(layer, [slot.name])))
    return out


def _children(node: Any) -> Iterator[tuple[str, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        if isinstance(k, str) and k.startswith("_"):
            continue
        yield str(k), v


def modules(root: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The top-level layers of a model in registration order: ``(path, Layer)`` for each
    mlxnote layer and ``(path, owner)`` for each plain module holding arrays directly."""
    from .layer import Layer

    holds_arrays = False
    for key, value in _children(root):
        if isinstance(value, Layer):
            yield f"{prefix}{key}", value
        elif isinstance(value, mx.array):
            holds_arrays = True
        elif isinstance(value, (mnn.Module, dict, list)):
            yield from modules(value, f"{prefix}{key}.")
    if holds_arrays and prefix:
        yield prefix[:-1], root


# -- the Note-order view of a layer or model -------------------------------------------
class NoteWeights:
    """``weight_names``, ``param_names``, ``param``, ``get_weights``/``set_weights`` and
    ``note_value`` over the registry: what Note's layers and models promise. Subclasses
    (``Layer``, ``Model``) give ``error_name`` and ``_weights_ready(what)``, which raises
    when the weights cannot be read or written yet."""

    error_name: str

    def _weights_ready(self, what: str) -> None:  # pragma: no cover - overridden
        pass

    @property
    def weight_names(self) -> list[str]:
        """Paths of every weight (trainable or not) in Note's creation order."""
        return [w.path for w in collect(self)]

    @property
    def param_names(self) -> list[str]:
        """Paths of the trainable weights, in Note's creation order."""
        return [w.path for w in collect(self) if w.trainable]

    @property
    def param(self) -> list[mx.array]:
        """The trainable arrays in Note's creation order (Note's checkpoint order)."""
        return [w.handle() for w in collect(self) if w.trainable]

    def note_value(self, path: str, value: mx.array | None = None) -> mx.array:
        """The weight at ``path`` (or ``value`` in its stored layout) in Note's layout."""
        return find(self, path).note(value)

    def get_weights(self, layout: str = "note") -> list[np.ndarray]:
        """Every weight as a NumPy array (bfloat16 weights come back as float32: NumPy has
        no bfloat16; the values are exact).

        ``layout="note"`` (the default): Note's TensorFlow layout and creation order.
        ``layout="keras"``: the arrays of the Keras counterpart, in Keras's order and
        shapes (for a model, its layers' in registration order: what ``get_weights`` of a
        Keras model with the same weighted layers gives); :mod:`mlxnote.nn.layouts`.
        """
        layout = layouts.check_layout(self.error_name, layout)
        self._weights_ready("get_weights")
        if layout == "keras":
            return layouts.to_keras(layouts.plan(self, self.error_name),
                                    {w.path: a for w, a in zip(collect(self), get_weights(self))})
        return get_weights(self)

    def set_weights(self, weights: Sequence[Any], layout: str = "note") -> None:
        """Load arrays in ``layout`` (``'note'``, the default, or ``'keras'``: as
        :meth:`get_weights` gives them). The count, every shape and every dtype (real
        numbers) are checked before anything changes."""
        layout = layouts.check_layout(self.error_name, layout)
        self._weights_ready("set_weights")
        if layout == "keras":
            load_keras(self, weights, self.error_name)
        else:
            load(self, weights, self.error_name)


# -- reading -------------------------------------------------------------------------
def to_numpy(a: mx.array) -> np.ndarray:
    """NumPy copy (bfloat16 as float32: NumPy has no bfloat16; the values are exact)."""
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)


def get_weights(root: Any) -> list[np.ndarray]:
    return [to_numpy(w.note()) for w in collect(root)]


def count(root: Any) -> int:
    return sum(int(np.prod(w.note_shape)) for w in collect(root))


# -- writing -------------------------------------------------------------------------
def as_weight(value: Any, owner: str, index: int, what: str) -> mx.array:
    """``value`` as a float32 ``mx.array`` (an ``mx.array`` keeps its dtype); anything but
    real numbers is refused naming ``owner``, the index and ``what`` (the layer and the
    weight)."""
    if isinstance(value, mx.array):
        if mx.issubdtype(value.dtype, mx.floating) or mx.issubdtype(value.dtype, mx.integer):
            return value
        kind = str(value.dtype)
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            arr = np.asarray(value, dtype=object)
        if arr.dtype.kind in "fiu":
            return mx.array(arr.astype(np.float32))
        kind = str(arr.dtype)
    raise error(owner, "weights", Desc(f"dtype {kind} at index {index} ({what})"),
                "an array of real numbers (float or int)", TypeError)


def _check_count(weights: Sequence[Any], names: list[str], owner: str, layout: str) -> None:
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        raise error(owner, "weights", Desc(f"a {type(weights).__name__}"),
                    "a list of arrays", TypeError)
    if len(weights) != len(names):
        where = "the" if layout == "note" else "Keras's"
        raise error(owner, "weights", Desc(f"{len(weights)} arrays"),
                    f"{len(names)} arrays in {where} order {names}")


def _checked(weights: Sequence[ArrayLike], expect: list[tuple[str, tuple[int, ...]]],
             owner: str, layout: str) -> list[mx.array]:
    """``weights`` as arrays, each checked against ``expect``'s ``(what, shape)``: an error
    names ``owner``, the index, the weight and both shapes."""
    out = []
    for i, ((what, shape), value) in enumerate(zip(expect, weights)):
        v = as_weight(value, owner, i, what)
        if tuple(v.shape) != shape:
            raise layouts.shape_error(owner, i, what, tuple(v.shape), shape, layout)
        out.append(v)
    return out


def load(root: Any, weights: Sequence[ArrayLike], owner: str) -> None:
    """Set every weight of ``root`` from ``weights`` (Note's layout and order), after
    checking the count, every shape and dtype: on any mismatch nothing changes and the
    error names ``owner``, the index, the weight and both shapes."""
    ws = collect(root)
    _check_count(weights, [w.path for w in ws], owner, "note")
    values = _checked(weights, [(f"{type(w.owner).__name__} '{w.path}'", w.note_shape)
                                for w in ws], owner, "note")
    assign(list(zip(ws, values)))
    materialize([_stored(w) for w in ws])


def load_keras(root: Any, weights: Sequence[ArrayLike], owner: str) -> None:
    """:func:`load` from Keras's layout (:mod:`mlxnote.nn.layouts`), checked the same way
    against Keras's shapes."""
    plan = layouts.plan(root, owner)
    _check_count(weights, [k.name for k in plan], owner, "keras")
    values = [np.array(v.astype(mx.float32)) for v in _checked(
        weights, [(f"{k.layer} '{k.name}'", k.shape) for k in plan], owner, "keras")]
    ws = collect(root)
    note = layouts.from_keras(plan, values, {w.path: w.note_shape for w in ws})
    load(root, [note[w.path] for w in ws], owner)


def _stored(w: Weight) -> list[mx.array]:
    """The stored arrays that hold ``w`` (a view's fused arrays)."""
    if w.view is None:
        return [w.owner[w.name]]
    return [w.owner[b.stored] for b in w.view.blocks]


def assign(pairs: Sequence[tuple[Weight, mx.array]], note: bool = True) -> None:
    """Write ``(weight, value)`` pairs: values in Note's layout (``note``) or, with
    ``note=False``, in the handle's layout (what ``update`` and gradients use). Views of
    one layer are fused into its stored arrays together; values keep their graph, so an
    assignment inside ``mx.grad`` is differentiable."""
    views: dict[int, tuple[Any, dict[str, mx.array]]] = {}
    for w, v in pairs:
        if w.view is not None:
            views.setdefault(id(w.owner), (w.owner, {}))[1][w.name] = v.astype(w.owner.dtype)
        elif w.plain:
            w.owner[w.name] = v.astype(w.owner[w.name].dtype)
        else:
            v = v.astype(w.owner.dtype)
            w.owner[w.name] = w.owner.from_note(w.name, v) if note else v
    for layer, values in views.values():
        for stored, v in fuse(layer, values).items():
            layer[stored] = v


def fuse(layer: Any, values: dict[str, mx.array]) -> dict[str, mx.array]:
    """The stored arrays of ``layer`` rebuilt from its views: ``values`` for the views
    named there, the current value for the others sharing a stored array with them."""
    views = [s.view for s in layer._slots if s.kind == "view"]
    touched = {b.stored for v in views if v.name in values for b in v.blocks}
    blocks: dict[str, list[tuple[int, mx.array]]] = {s: [] for s in touched}
    for view in views:
        if not any(b.stored in touched for b in view.blocks):
            continue
        v = values[view.name] if view.name in values else view.get(layer)
        row = 0
        for b in view.blocks:
            if v.ndim == 1:
                blocks[b.stored].append((b.cols[0], v))
            else:
                rows = layer[b.stored].shape[0]
                blocks[b.stored].append((b.cols[0], v[row:row + rows]))
                row += rows
    out = {}
    for stored, parts in blocks.items():
        arrs = [a for _, a in sorted(parts, key=lambda p: p[0])]
        out[stored] = arrs[0] if len(arrs) == 1 else mx.concatenate(arrs, axis=-1)
    return out


def find(root: Any, path: str) -> Weight:
    """The weight of ``root`` at the Note path ``path``."""
    for w in collect(root, trainable=True):
        if w.path == path:
            return w
    raise KeyError(path)


def resolve_path(root: Any, path: str) -> tuple[Any, str, Any]:
    """``'query.weight'`` -> (owner module, ``'weight'``, the array); list indices allowed.
    A recurrent layer's Note name resolves to its view."""
    *head, leaf = path.split(".")
    owner = root
    for p in head:
        owner = owner[int(p)] if isinstance(owner, list) else getattr(owner, p)
    return owner, leaf, getattr(owner, leaf)
