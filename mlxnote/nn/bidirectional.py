"""``Bidirectional``: Keras's wrapper that runs a sequence layer forwards and a copy of it
backwards, and merges the two (decisions.md, item 34)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .layer import Desc, Layer, shape_desc
from .recurrent_core import _Sequence
from .typing import ArrayLike, MaskLike

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Keras ``Bidirectional`` over an :class:`~mlxnote.nn.RNN`, ``GRU`` or ``LSTM``.

    Args:
        layer: the forward layer. The wrapper keeps a copy (its arguments and, once built,
            its weights), as Keras recreates it from its config.
        merge_mode: ``'concat'`` (default: ``(..., 2H)``), ``'sum'``, ``'mul'``, ``'ave'``
            (``(..., H)``) or ``None`` (the pair ``(forward, backward)``).
        backward_layer (optional): the backward layer (copied likewise); its
            ``go_backwards`` must differ from ``layer``'s and its ``return_sequence``
            match. ``None``: a new layer of ``layer``'s class and arguments with
            ``go_backwards=True``.

    Call: ``(data (B, T, in), initial_state=None, mask=None (B, T))``. ``initial_state``
    is a list whose first half goes to the forward layer and second half to the backward
    one (``[h_f, h_b]``; an LSTM also ``[h_f, c_f, h_b, c_b]``). With ``return_sequence``
    the backward outputs are put back in time order, and masked steps give zeros (Keras
    sets ``zero_output_for_mask``); otherwise each direction's last output.
    Weights: ``forward_layer.*`` then ``backward_layer.*`` (Note's names of the layer).
    """

    size_args = ()

    def __init__(self, layer: _Sequence, merge_mode: str | None = "concat",
                 backward_layer: _Sequence | None = None) -> None:
        super().__init__()
        self._check_layer("layer", layer)
        if merge_mode not in MERGE_MODES:
            raise self.error("merge_mode", merge_mode, "'concat', 'sum', 'mul', 'ave' or None",
                             ValueError if isinstance(merge_mode, str) else TypeError)
        if backward_layer is not None:
            self._check_layer("backward_layer", backward_layer)
            self._check_pair(layer, backward_layer, merge_mode)
        elif layer.go_backwards:
            raise self.error("layer", Desc(f"a {layer.name} with go_backwards=True"),
                             "a layer with go_backwards=False when backward_layer is None "
                             "(its copy runs backwards; Keras's rule)")
        self.config(merge_mode=merge_mode)
        self._set("_given_backward", backward_layer is not None)
        self._set("dtype", layer.dtype)
        self._set("trainable", layer.trainable)
        self._set("return_sequence", layer.return_sequence)
        with self.owns():
            fwd = self._copy(layer)
            bwd = self._copy(backward_layer if backward_layer is not None else layer,
                             go_backwards=True if backward_layer is None else None)
        self.add_sublayer("forward_layer", fwd)
        self.add_sublayer("backward_layer", bwd)
        self._set("built", fwd.built and bwd.built)
        h = fwd.output_size + (bwd.output_size if merge_mode == "concat" else 0)
        self._set("output_size", h)

    def _held_arguments(self) -> dict[str, Any]:
        return {"layer": self.forward_layer,
                "backward_layer": self.backward_layer if self._given_backward else None}

    # -- construction --------------------------------------------------------------
    def _check_layer(self, arg: str, layer: Any) -> None:
        if not isinstance(layer, _Sequence):
            raise self.error(arg, Desc(f"a {type(layer).__name__}"),
                             "an mlxnote RNN, GRU or LSTM layer", TypeError)

    def _check_pair(self, fwd: _Sequence, bwd: _Sequence, merge_mode: str | None) -> None:
        rules = [("go_backwards", fwd.go_backwards != bwd.go_backwards,
                  f"go_backwards={not fwd.go_backwards} (the opposite of layer's)"),
                 ("return_sequence", fwd.return_sequence == bwd.return_sequence,
                  f"return_sequence={fwd.return_sequence} (layer's)"),
                 ("dtype", fwd.dtype == bwd.dtype, f"layer's dtype {fwd.dtype}"),
                 ("input_size", None in (fwd.input_size, bwd.input_size)
                  or fwd.input_size == bwd.input_size,
                  f"input_size={fwd.input_size} (layer's; both read the same data)"),
                 ("output_size", merge_mode in ("concat", None)
                  or fwd.output_size == bwd.output_size,
                  f"output_size={fwd.output_size} (layer's) for merge_mode {merge_mode!r}")]
        for name, ok, allowed in rules:
            if not ok:
                raise self.error("backward_layer", Desc(f"a {bwd.name} with {name}="
                                                        f"{getattr(bwd, name)!r}"),
                                 f"a layer with {allowed}")

    @staticmethod
    def _copy(layer: _Sequence, go_backwards: bool | None = None) -> _Sequence:
        """A new layer of ``layer``'s class and arguments (and weights, once built)."""
        kwargs = layer.get_config()
        if go_backwards is not None:
            kwargs["go_backwards"] = go_backwards
        new = type(layer)(**kwargs)
        if layer.built and go_backwards is None:
            new.set_weights(layer.get_weights())
        return new

    def update(self, parameters: dict[str, Any], strict: bool = True) -> Bidirectional:
        """:meth:`Layer.update`, the sublayers' Note names (``forward_layer.weight_r1``)
        included: each sublayer's part goes to its own ``update``."""
        rest = dict(parameters)
        for name in ("forward_layer", "backward_layer"):
            if isinstance(rest.get(name), dict):
                self[name].update(rest.pop(name), strict=strict)
        super().update(rest, strict=strict)
        return self

    # -- call ----------------------------------------------------------------------
    def _split_state(self, initial_state: Sequence[Any] | None) -> tuple[Any, Any]:
        if initial_state is None:
            return None, None
        n = len(initial_state) if isinstance(initial_state, (list, tuple)) else 0
        if n == 0 or n % 2:
            given = Desc(f"a {type(initial_state).__name__}" + (f" of {n} arrays"
                                                                if n else ""))
            raise self.error("initial_state", given, "a list of an even number of states: "
                             "the forward layer's, then the backward layer's ([h_f, h_b] or "
                             "[h_f, c_f, h_b, c_b])", TypeError)
        half = n // 2
        return list(initial_state[:half]), list(initial_state[half:])

    def __call__(self, data: ArrayLike, initial_state: Sequence[Any] | None = None,
                 mask: MaskLike | None = None) -> mx.array | tuple[mx.array, mx.array]:
        fwd, bwd = self.forward_layer, self.backward_layer
        x = self.as_input(data, ndim=3)
        if fwd.built and x.shape[-1] != fwd.input_size:
            raise self.error("data", shape_desc(x),
                             f"{fwd.input_size} features on the last axis (input_size)")
        fs, bs = self._split_state(initial_state)
        y = fwd.sequence(x, fs, mask, zero_masked=True)
        y_rev = bwd.sequence(x, bs, mask, zero_masked=True)
        self._set("built", True)
        if self.return_sequence:
            y_rev = y_rev[:, ::-1]
        mode = self.merge_mode
        if mode is None:
            return y, y_rev
        if mode == "concat":
            return mx.concatenate([y, y_rev], axis=-1)
        if mode == "sum":
            return y + y_rev
        if mode == "mul":
            return y * y_rev
        return (y + y_rev) / 2


__all__ = ["Bidirectional"]
