"""Note's ``flatten`` and its sequential container ``Layers`` (decisions.md, item 36)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as mnn

from .._validation import MAX_DIM
from .layer import Desc, Layer, shape_desc
from .typing import ArrayLike


class flatten(Layer):
    """Keras ``Flatten``: ``(B, d1, ..., dn) -> (B, d1 * ... * dn)``; ``(B,) -> (B, 1)``.

    No arguments and no weights; the input keeps its dtype. ``output_size`` is ``None``, as
    Note's (it depends on the input).
    """

    size_args = ()

    def __init__(self) -> None:
        super().__init__()
        self._set("output_size", None)
        self._set("built", True)

    def __call__(self, data: ArrayLike) -> mx.array:
        x = data if isinstance(data, mx.array) else self.as_input(data, cast=False)
        if x.ndim == 0:
            raise self.error("data", shape_desc(x), "rank >= 1 (batch, ...)")
        n = 1
        for d in x.shape[1:]:
            n *= d
        if n > MAX_DIM:
            raise self.error("data", shape_desc(x), f"at most {MAX_DIM} values per sample "
                             "(MLX's dimensions are 32-bit)")
        return x.reshape(x.shape[0], n)


def _takes_flag(fn: Callable) -> bool:
    """Does ``fn`` (a layer or a function) take ``train_flag=``?"""
    call = fn.__call__ if isinstance(fn, mnn.Module) else fn
    try:
        return "train_flag" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False


class Layers(Layer):
    """Note's sequential container: the layers added, applied in order.

    ``add(layer, save_data=False, use_data=False)`` appends a layer (an mlxnote layer, an
    ``mlx.nn`` module or any callable, such as an activation) or a list of them. With
    ``save_data=True`` the layer's output is kept for later; a layer added with
    ``use_data=True`` is called as ``layer(data, kept)`` with the oldest output kept and not
    yet used (a residual add or a concatenation). ``output_size`` follows the last layer
    added that has one, as Note's does.

    Call: ``(data, train_flag=None)``. A ``train_flag`` (or ``training``) given goes to the
    layers whose call takes ``train_flag``; otherwise every layer follows its mode, which
    ``.train()``/``.eval()`` set for all. Weights: the layers' in order (``layers.0.*``,
    ...); layers that build lazily build on the first call.
    """

    size_args = ()

    def __init__(self) -> None:
        super().__init__()
        self.add_sublayer("layers", [])  # the modules (their weights, train/eval)
        self._set("layer", [])  # every entry in order, as Note's
        self._set("_plan", [])  # (fn, save_data, use_data, takes train_flag)
        self._set("_kept", 0)
        self._set("output_size", None)
        self._set("built", True)

    def add(self, layer: Callable | Sequence[Callable], save_data: bool = False,
            use_data: bool = False) -> None:
        """Append ``layer`` (or each layer of a list) to the container."""
        save_data = self.check_bool("save_data", save_data)
        use_data = self.check_bool("use_data", use_data)
        if isinstance(layer, (list, tuple)):
            if save_data or use_data:
                raise self.error("save_data" if save_data else "use_data", True,
                                 "False when adding a list of layers (add them one by one)")
            for each in layer:
                self.add(each)
            return
        if not callable(layer):
            raise self.error("layer", Desc(f"a {type(layer).__name__}"),
                             "a layer, an mlx.nn module or a callable (or a list of them)",
                             TypeError)
        if use_data and self._kept == 0:
            raise self.error("use_data", True, "False: no earlier layer was added with "
                             "save_data=True (its output is what this layer gets)")
        self._set("_kept", self._kept - use_data + save_data)
        if isinstance(layer, mnn.Module):
            self["layers"].append(layer)
        self.layer.append(layer)
        self._plan.append((layer, save_data, use_data, _takes_flag(layer)))
        size = getattr(layer, "output_size", None)
        if size is not None:
            self._set("output_size", size)

    def __call__(self, data: ArrayLike, train_flag: bool | None = None,
                 training: bool | None = None) -> Any:
        flag = None
        if train_flag is not None or training is not None:
            flag = self.mode(train_flag, training)
        kept: list[Any] = []
        x: Any = data
        for fn, save_data, use_data, takes_flag in self._plan:
            args = (x, kept.pop(0)) if use_data else (x,)
            x = fn(*args, train_flag=flag) if takes_flag and flag is not None else fn(*args)
            if save_data:
                kept.append(x)
        return x


__all__ = ["flatten", "Layers"]
