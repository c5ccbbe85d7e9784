"""Keras's weight layout, over the registry of :mod:`mlxnote.nn.weights`.

``get_weights(layout="keras")`` / ``set_weights(weights, layout="keras")`` exchange arrays
with the Keras counterpart of a layer (or with a Keras model whose weighted layers match a
model's one to one, in order). One table, :func:`table`, gives for every layer class with
a Keras counterpart of the same math its *plan*: Keras's arrays in Keras's order, each the
concatenation (on the last axis, then reshaped) of :class:`Piece` s of Note weights. So a
plan is a permutation (batch_norm: Keras ``gamma, beta, moving_mean, moving_variance``,
Note ``moving_mean, moving_variance, beta, gamma``), a fusion (LSTM: Keras's ``kernel``
is Note's ``weight_i1, weight_f1, weight_c1, weight_o1`` side by side) or a split (an
LSTMCell's ``[x; h]`` weight). Reading and writing both run the same plan.

=====================================  ==========================================
mlxnote (Note's order)                 Keras (``layout="keras"``)
=====================================  ==========================================
dense, convs, depthwise, separable     the same arrays (``weight`` is ``kernel``)
batch_norm: mm, mv, beta, gamma        ``gamma, beta, moving_mean, moving_variance``
layer_norm: beta, gamma                ``gamma, beta``
group_norm: gamma, beta; attention:    the same order
scale, concat_score_weight; RNN(Cell):
weight_i, weight_s, bias
GRU: weight_r1, weight_r2, ...         ``kernel [in, 3H]``, ``recurrent_kernel [H, 3H]``,
bias_r, bias_z, bias_h                 ``bias [3H]`` (``[2, 3H]``: reset-after), z, r, h
LSTM: weight_i1, ..., bias_c           the same three, gates i, f, c, o
GRUCell / LSTMCell: weight [in+H, kH]  ``kernel`` (its x rows), ``recurrent_kernel`` (its
(blocks r, z, h / i, f, o, c), bias    h rows), ``bias``: blocks z, r, h / i, f, c, o
Bidirectional: forward_layer.*,        the forward layer's, then the backward layer's
backward_layer.*; Layers: layers.<i>.*  (a Keras Sequential of the same layers)
flatten, pooling, dropout, identity,   no weights
zero padding
=====================================  ==========================================

Layers without a counterpart of the same math (decisions.md, item 37) are refused by
name: multihead_attention (Keras's ``MultiHeadAttention`` returns another output and has
its own masks); talking_heads_attention, FAVOR, Linformer, the Transformer and
stochastic_depth have none in Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import Desc, error

LAYOUTS = ("note", "keras")


@dataclass(frozen=True)
class Piece:
    """Rows ``rows`` (first axis) and columns ``cols`` (last axis) of the Note weight at
    ``path``; ``None`` takes all of them."""

    path: str
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None

    def take(self, a: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            a = a[self.rows[0]:self.rows[1]]
        return a if self.cols is None else a[..., self.cols[0]:self.cols[1]]

    def shape(self, note_shape: tuple[int, ...]) -> tuple[int, ...]:
        s = list(note_shape)
        if self.rows is not None:
            s[0] = self.rows[1] - self.rows[0]
        if self.cols is not None:
            s[-1] = self.cols[1] - self.cols[0]
        return tuple(s)


@dataclass(frozen=True)
class KerasArray:
    """One Keras weight ``name`` of ``shape``: ``pieces`` side by side, reshaped;
    ``layer`` is the class name of the layer it belongs to (for errors)."""

    name: str
    pieces: tuple[Piece, ...]
    shape: tuple[int, ...]
    layer: str = ""


Plan = Callable[[Any], list[KerasArray]]


def check_layout(owner: str, layout: Any) -> str:
    if isinstance(layout, str) and layout in LAYOUTS:
        return layout
    raise error(owner, "layout", layout, "'note' (Note's TensorFlow layout and creation "
                "order) or 'keras' (the Keras counterpart's weights, in its order)",
                ValueError if isinstance(layout, str) else TypeError)


# -- plans -----------------------------------------------------------------------------
def _shapes(layer: Any) -> dict[str, tuple[int, ...]]:
    from .weights import collect

    return {w.path: w.note_shape for w in collect(layer)}


def same(**names: str) -> Plan:
    """Keras's order and shapes are Note's; ``names`` renames Note weights to Keras's."""
    def plan(layer: Any) -> list[KerasArray]:
        return [KerasArray(names.get(p, p), (Piece(p),), s) for p, s in _shapes(layer).items()]
    return plan


def reorder(*order: str) -> Plan:
    """Keras's order is ``order`` (the weights present), with Note's shapes."""
    def plan(layer: Any) -> list[KerasArray]:
        shapes = _shapes(layer)
        return [KerasArray(p, (Piece(p),), shapes[p]) for p in order if p in shapes]
    return plan


def gates(keras_order: str) -> Plan:
    """A sequence layer's per-gate Note weights (``weight_<g>1 [in, H]``, ``weight_<g>2
    [H, H]``, ``bias_<g> [H]``, or ``[2, H]`` for a reset-after GRU: rows input, recurrent)
    fused into Keras's ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]`` and ``bias
    [k*H]`` (``[2, k*H]``) with the gate blocks in ``keras_order``."""
    def plan(layer: Any) -> list[KerasArray]:
        shapes, k = _shapes(layer), len(keras_order)
        i, h = shapes[f"weight_{keras_order[0]}1"]
        out = [KerasArray("kernel", tuple(Piece(f"weight_{g}1") for g in keras_order),
                          (i, k * h)),
               KerasArray("recurrent_kernel", tuple(Piece(f"weight_{g}2") for g in keras_order),
                          (h, k * h))]
        bias = shapes.get(f"bias_{keras_order[0]}")
        if bias is not None:
            out.append(KerasArray("bias", tuple(Piece(f"bias_{g}") for g in keras_order),
                                  (*bias[:-1], k * h)))
        return out
    return plan


def cell_gates(note_order: str, keras_order: str) -> Plan:
    """A cell's ``weight [in + H, k*H]`` (rows x then h, column blocks ``note_order``) and
    ``bias [k*H]`` (``[2, k*H]``: reset-after) as Keras's ``kernel [in, k*H]``,
    ``recurrent_kernel [H, k*H]`` and ``bias`` with the blocks in ``keras_order``."""
    def plan(layer: Any) -> list[KerasArray]:
        shapes, k = _shapes(layer), len(note_order)
        rows, cols = shapes["weight"]
        h = cols // k
        i = rows - h
        blocks = [(note_order.index(g) * h, (note_order.index(g) + 1) * h) for g in keras_order]
        out = [KerasArray(name, tuple(Piece("weight", r, c) for c in blocks), (n, cols))
               for name, r, n in (("kernel", (0, i), i), ("recurrent_kernel", (i, rows), h))]
        if "bias" in shapes:
            out.append(KerasArray("bias", tuple(Piece("bias", None, c) for c in blocks),
                                  shapes["bias"]))
        return out
    return plan


def sublayers(*names: str) -> Plan:
    """A composite's Keras arrays: those of its sublayers ``names`` in that order (a name
    holding a list: each of its modules that has weights, in order)."""
    def plan(layer: Any) -> list[KerasArray]:
        out = []
        for n in names:
            sub = getattr(layer, n)
            subs = [(f"{n}.{i}.", s) for i, s in enumerate(sub)] if isinstance(sub, list) \
                else [(f"{n}.", sub)]
            for path, s in subs:
                if not isinstance(sub, list) or _shapes(s):
                    out += plan_of(s, layer.error_name, path)
        return out
    return plan


_TABLE: dict[type, Plan] = {}


def table() -> dict[type, Plan]:
    """Every layer class with a Keras counterpart of the same math, and its plan. Built
    on first use (the families import the registry)."""
    if not _TABLE:
        from . import conv, core, norm, pooling, recurrent
        from .attention import attention
        from .bidirectional import Bidirectional
        from .containers import Layers, flatten

        kernel = same(weight="kernel")
        for cls in (core.dense, *(getattr(conv, n) for n in conv.__all__)):
            _TABLE[cls] = kernel
        _TABLE[conv.depthwise_conv2d] = same(weight="depthwise_kernel")
        for cls in (core.identity, core.dropout, core.zeropadding1d, core.zeropadding2d,
                    core.zeropadding3d, norm.group_norm, attention, flatten,
                    *(getattr(pooling, n) for n in pooling.__all__)):
            _TABLE[cls] = same()
        _TABLE[recurrent.RNN] = same(weight_i="kernel", weight_s="recurrent_kernel")
        _TABLE[recurrent.RNNCell] = same(weight_i="kernel", weight_s="recurrent_kernel")
        _TABLE[norm.batch_norm] = reorder("gamma", "beta", "moving_mean", "moving_variance")
        _TABLE[norm.layer_norm] = reorder("gamma", "beta")
        _TABLE[recurrent.GRU] = gates("zrh")
        _TABLE[recurrent.LSTM] = gates("ifco")
        _TABLE[recurrent.GRUCell] = cell_gates("rzh", "zrh")
        _TABLE[recurrent.LSTMCell] = cell_gates("ifoc", "ifco")
        _TABLE[Bidirectional] = sublayers("forward_layer", "backward_layer")
        _TABLE[Layers] = sublayers("layers")
    return _TABLE


def plan_of(layer: Any, owner: str, path: str = "") -> list[KerasArray]:
    """``layer``'s Keras arrays, their pieces' paths prefixed with ``path``."""
    plan = table().get(type(layer))
    if plan is None:
        where = f" at '{path[:-1]}'" if path else ""
        raise error(owner, "layout", "keras", f"'note': {type(layer).__name__}{where} has no "
                    "Keras counterpart of the same math (mlxnote.nn.layouts lists those that "
                    "do)")
    return [KerasArray(f"{path}{k.name}", tuple(Piece(f"{path}{p.path}", p.rows, p.cols)
                                                for p in k.pieces), k.shape,
                       type(layer).__name__) for k in plan(layer)]


def plan(root: Any, owner: str) -> list[KerasArray]:
    """The Keras arrays of a layer, or of a model's layers in registration order (a
    weightless layer or plain module is skipped; a plain module holding arrays has no
    Keras layout)."""
    from .layer import Layer
    from .weights import modules

    if isinstance(root, Layer):
        return plan_of(root, owner)
    out: list[KerasArray] = []
    for path, entry in modules(root):
        if isinstance(entry, Layer):
            if _shapes(entry):  # a weightless layer has nothing to exchange
                out += plan_of(entry, owner, f"{path}.")
        else:
            raise error(owner, "layout", "keras", f"'note': the plain {type(entry).__name__} "
                        f"module at '{path}' has no Keras layout")
    return out


# -- conversions -----------------------------------------------------------------------
def to_keras(arrays: Sequence[KerasArray], note: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Keras's arrays from Note's (``note``: path -> array)."""
    out = []
    for k in arrays:
        parts = [p.take(note[p.path]) for p in k.pieces]
        a = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
        out.append(np.array(a.reshape(k.shape), order="C"))  # a copy, 0-d kept
    return out


def from_keras(arrays: Sequence[KerasArray], values: Sequence[np.ndarray],
               shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Note's arrays (path -> array) from Keras's ``values`` (already checked against
    ``arrays``' shapes); ``shapes`` gives each Note weight's shape."""
    out: dict[str, np.ndarray] = {}
    for k, v in zip(arrays, values):
        dims = [p.shape(shapes[p.path]) for p in k.pieces]
        if len(dims) == 1:
            parts = [v.reshape(dims[0])]
        else:
            whole = v.reshape(*dims[0][:-1], sum(d[-1] for d in dims))
            parts = np.split(whole, np.cumsum([d[-1] for d in dims])[:-1], axis=-1)
        for p, part in zip(k.pieces, parts):
            if p.rows is None and p.cols is None:
                out[p.path] = part
                continue
            dst = out.setdefault(p.path, np.zeros(shapes[p.path], v.dtype))
            rows = () if p.rows is None else (slice(*p.rows),)
            cols = () if p.cols is None else (slice(*p.cols),)
            dst[(*rows, Ellipsis, *cols)] = part
    return out


def shape_error(owner: str, index: int, what: str, given: tuple[int, ...],
                want: tuple[int, ...], layout: str) -> Exception:
    """The error for a weight of the wrong shape: ``what`` names the layer and weight."""
    name = "Note's layout" if layout == "note" else "Keras's layout"
    return error(owner, "weights", Desc(f"shape {given} at index {index} ({what})"),
                 f"shape {want} ({name})")
