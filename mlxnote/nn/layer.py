"""The layer contract every mlxnote layer follows.

A :class:`Layer` is an :class:`mlx.nn.Module`, so ``nn.value_and_grad``,
``mlx.optimizers``, ``mx.compile``, ``save_weights`` and ``load_weights`` work on it.
On top of MLX it adds what Note's layers promise:

* weights created in Note's creation order, listed (trainable ones) by :attr:`param`;
* :meth:`get_weights` / :meth:`set_weights` with NumPy arrays in Note's TensorFlow
  layout, while the arrays themselves are stored in the layout MLX's kernels consume;
* a lazy build from the first input when ``input_size`` is ``None``;
* train/eval mode from the module (``train()``/``eval()``, or Note's ``layer.train_flag =
  False``), overridden per call by ``train_flag=``/``training=``;
* errors that name the layer, the argument, what was given and what is allowed;
* sizes refused before MLX sees them (a dimension above 2^31 - 1, a weight or an output
  larger than the memory this process may use: MLX would segfault);
* use from any thread: every array a layer keeps between calls (its weights when they are
  built, its random keys, batch_norm's moving statistics) is evaluated when it is stored
  (:func:`materialize`), because MLX 0.32 cannot evaluate a lazy array from another thread
  than the one that created it.

The weight bookkeeping lives in :mod:`mlxnote.nn.weights` (shared with models); the
argument checks in :mod:`mlxnote._validation`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from typing import Any, Literal, overload

import mlx.core as mx
import mlx.nn as mnn

from .. import _validation as V
from .._config import dtype_name
from .._validation import Desc, shape_desc  # noqa: F401  (re-exported for the families)
from . import initializers, weights
from .typing import ArrayLike, DTypeLike, Initializer
from .weights import Slot, View, materialize, resolve_path  # noqa: F401  (re-exported)


def _ints(value: Any) -> list[int]:
    """The ints in a size argument (an int or a nested sequence of ints)."""
    if V.is_int(value):
        return [int(value)]
    if V.is_sequence(value):
        return [i for v in value for i in _ints(v)]
    return []


def arguments(local: dict[str, Any]) -> dict[str, Any]:
    """A public constructor's arguments (its ``locals()``) as keywords for the shared core
    it passes them to: documented signatures stay spelled out, the body is one line."""
    return {k: v for k, v in local.items() if k not in ("self", "__class__")}


class TrainMode:
    """The mode switches of layers and models: ``train(mode)`` takes a bool only, and
    Note's ``train_flag`` attribute is the mode (``layer.train_flag = False``, what
    Note's ``Model.training(flag)`` does, is ``layer.eval()``: this module and those
    inside it; decisions.md, item 39). ``error_name`` and ``train_hint`` (added to a
    refused mode) come from the class."""

    error_name: str
    train_hint = ""

    @property
    def train_flag(self) -> bool:
        """Note's name of the mode: ``True`` in training mode (:attr:`training`)."""
        return bool(self.training)  # type: ignore[attr-defined]

    @train_flag.setter
    def train_flag(self, flag: bool) -> None:
        if not V.is_bool(flag):
            raise V.error(self.error_name, "train_flag", flag, "True or False (the mode of "
                          "this module and those inside it)", TypeError)
        self.train(bool(flag))

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "train_flag":  # mlx.nn.Module would store a list or an array as a child
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    def train(self, mode: bool = True, *args: Any, **kwargs: Any) -> Any:
        """:meth:`mlx.nn.Module.train`: training mode (``mode=True``) or not, for this
        module and those inside it. Anything but one bool is an error."""
        if args or kwargs or not V.is_bool(mode):
            extra = [f"{k}=" for k in kwargs] + ["more arguments"] * bool(args)
            given = mode if isinstance(mode, (bool, int, float, str, type(None))) else \
                Desc(f"a {type(mode).__name__}")
            if extra:
                given = Desc(f"{given!r} with {', '.join(extra)}")
            raise V.error(self.error_name, "mode", given, "True or False: train(mode) sets "
                          f"the training mode (mlx.nn.Module.train){self.train_hint}",
                          TypeError)
        return super().train(bool(mode))  # type: ignore[misc]


class Layer(TrainMode, weights.NoteWeights, mnn.Module):
    """Base class of the mlxnote layers.

    Subclasses call ``super().__init__(dtype=..., trainable=...)``, create weights with
    :meth:`add_weight` (in Note's creation order) from ``build(input_size)``, and
    override :meth:`to_note` / :meth:`from_note` when the stored layout differs from
    Note's. ``size_args`` names the arguments that set the weights' sizes (an error for a
    weight too large to hold names the largest of them).
    """

    size_args: tuple[str, ...] = ("input_size",)

    def __init__(self, *, dtype: DTypeLike = "float32", trainable: bool = True) -> None:
        super().__init__()
        self._set("_owner", V.current_owner(type(self)))
        self._set("dtype", self.check_dtype(dtype))
        self._set("trainable", self.check_bool("trainable", trainable))
        self._set("built", False)
        self._set("_slots", [])
        self._set("_views", {})
        self._set("_config", {})

    # -- configuration -------------------------------------------------------------
    def _set(self, name: str, value: Any) -> None:
        """Store a plain attribute outside the MLX parameter tree."""
        object.__setattr__(self, name, value)

    def config(self, **kwargs: Any) -> None:
        """Record documented arguments as plain attributes (shown by ``repr``)."""
        for k, v in kwargs.items():
            self._set(k, v)
            self._config[k] = v

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument as this layer holds it (a size found at the first
        call included; a layer argument is that layer): ``type(layer).from_config(
        layer.get_config())`` is a new layer like this one, with fresh weights
        (``set_weights(layer.get_weights())`` copies them)."""
        cfg, held = {}, self._held_arguments()
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in held:
                cfg[p.name] = held[p.name]
            elif p.name in self._config:
                cfg[p.name] = self._config[p.name]
                if p.name in (*self.size_args, "input_size") and cfg[p.name] is None \
                        and self.built:  # a size found at the first call
                    cfg[p.name] = self.__dict__.get(p.name)
            elif p.name == "name":
                cfg[p.name] = self._config.get("layer_name")
            elif p.name == "dtype":
                cfg[p.name] = dtype_name(self.dtype)
            elif p.name in self.__dict__:
                cfg[p.name] = self.__dict__[p.name]
            else:
                raise NotImplementedError(f"{self.name}.get_config: the argument "
                                          f"'{p.name}' is not recorded")
        return cfg

    def _held_arguments(self) -> dict[str, Any]:
        """Constructor arguments :meth:`get_config` takes from the layer's parts (override)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """A new layer from :meth:`get_config`'s arguments; a layer among them is rebuilt
        from its own config, so the new layer shares nothing with the original."""
        return cls(**{k: type(v).from_config(v.get_config()) if isinstance(v, Layer) else v
                      for k, v in config.items()})

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def error_name(self) -> str:
        """The name errors show: the layer's, or that of the composite that built it."""
        owner = self._owner
        if owner is None:
            return self.name
        return owner if isinstance(owner, str) else owner.error_name

    def owns(self) -> contextlib.AbstractContextManager[None]:
        """A block in which the layers constructed (sublayers) name this layer (or the
        composite that owns it) in their errors."""
        return V.owned_by(self, (Layer,))

    # -- errors and checks (mlxnote._validation with this layer as the owner) --------
    def error(self, arg: str, given: Any, allowed: str,
              exc: type[Exception] = ValueError) -> Exception:
        """An exception naming this layer, the argument, the value and what is allowed."""
        return V.error(self.error_name, arg, given, allowed, exc)

    def check_bool(self, arg: str, value: Any) -> bool:
        return V.check_bool(self.error_name, arg, value)

    # Layers' ints are sizes by default: at most V.MAX_DIM (MLX's dimensions are 32-bit).
    @overload
    def check_int(self, arg: str, value: Any, low: int = ...,
                  allow_none: Literal[False] = ..., high: int | None = ...) -> int: ...
    @overload
    def check_int(self, arg: str, value: Any, low: int = ..., *,
                  allow_none: bool, high: int | None = ...) -> int | None: ...
    def check_int(self, arg: str, value: Any, low: int = 1,
                  allow_none: bool = False, high: int | None = V.MAX_DIM) -> int | None:
        return V.check_int(self.error_name, arg, value, low, allow_none, high)

    def check_float(self, arg: str, value: Any, low: float, high: float,
                    high_open: bool = True) -> float:
        return V.check_float(self.error_name, arg, value, low, high, high_open)

    def check_ints(self, arg: str, value: Any, n: int, low: int = 1) -> tuple[int, ...]:
        return V.check_ints(self.error_name, arg, value, n, low, V.MAX_DIM)

    def check_pad_pairs(self, arg: str, value: Any, n: int) -> tuple[tuple[int, int], ...]:
        return V.check_pad_pairs(self.error_name, arg, value, n, V.MAX_DIM)

    def check_initializer(self, arg: str, init: Initializer,
                          rank: int | None = None) -> Initializer:
        """``init`` if it is an initializer (for a weight of ``rank``, when known)."""
        return initializers.validate(init, self.error_name, arg, rank)

    def check_activation(self, activation: Any, arg: str = "activation") -> Any:
        """The function of ``activation`` (a name, list form, callable or None)."""
        from . import activations

        return activations.get(activation, self.error_name, arg)

    # -- sizes -----------------------------------------------------------------------
    def size_arg(self) -> tuple[str, Any]:
        """``(argument, value)``: the largest of the arguments that size this layer's
        weights (those of the composite that owns it, if any): what an error for a
        weight too large names. A size taken from the first input is ``'data'``."""
        owner = self._owner
        if isinstance(owner, Layer):
            return owner.size_arg()
        best: tuple[int, str, Any] | None = None
        for arg in self.size_args:
            value, label, shown = self._config.get(arg), arg, None
            if value is None and arg == "input_size" and \
                    self.__dict__.get("input_size") is not None:
                value, label = self.input_size, "data"
                shown = Desc(f"an input of size {value} (input_size)")
            ints = _ints(value)
            if ints and (best is None or max(ints) > best[0]):
                best = (max(ints), label, value if shown is None else shown)
        return (best[1], best[2]) if best is not None else ("data", Desc("the input"))

    def check_weight_size(self, name: str, shape: Sequence[int],
                          dtype: mx.Dtype | None = None) -> None:
        """Refuse a weight of ``shape`` that MLX cannot hold (before anything is drawn)."""
        arg, given = self.size_arg()
        V.check_fits(self.error_name, arg, given, shape, dtype or self.dtype,
                     f"weight '{name}'")

    def check_output_size(self, arg: str, given: Any, shape: Sequence[int],
                          dtype: mx.Dtype | None = None, what: str = "output") -> None:
        """Refuse a call whose output (or intermediate ``what``) of ``shape`` MLX cannot
        hold, before any compute; ``arg`` is the argument that makes it that large."""
        V.check_fits(self.error_name, arg, given, shape, dtype or self.dtype, what)

    def check_dtype(self, dtype: Any) -> mx.Dtype:
        return V.check_dtype(self.error_name, dtype)

    # -- inputs --------------------------------------------------------------------
    def as_input(self, data: ArrayLike, arg: str = "data", ndim: int | Sequence[int] | None = None,
                 min_ndim: int | None = None, cast: bool = True) -> mx.array:
        """Convert ``data`` to an ``mx.array`` of this layer's dtype, checking its rank."""
        data = V.as_array(self.error_name, data, arg)
        if ndim is not None:
            allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
            if data.ndim not in allowed:
                raise self.error(arg, shape_desc(data),
                                 f"rank {' or '.join(str(a) for a in allowed)}")
        if min_ndim is not None and data.ndim < min_ndim:
            raise self.error(arg, shape_desc(data), f"rank >= {min_ndim}")
        if cast and data.dtype != self.dtype:
            data = data.astype(self.dtype)
        return data

    def ensure_built(self, data: mx.array, axis: int = -1, arg: str = "data") -> None:
        """Build from ``data.shape[axis]`` on the first call, or check the channel count."""
        channels = data.shape[axis]
        if not self.built:
            self.build(channels)
            if "input_size" in self._config:
                self._config["input_size"] = channels
        elif channels != self.input_size:
            raise self.error(arg, shape_desc(data),
                             f"{self.input_size} channels on axis {axis} (input_size)")

    def build(self, input_size: int) -> None:  # pragma: no cover - overridden
        self._set("input_size", input_size)
        self._set("built", True)

    def mode(self, train_flag: bool | None = None, training: bool | None = None) -> bool:
        """Training mode for this call: ``train_flag``, else ``training``, else the module's."""
        for arg, value in (("train_flag", train_flag), ("training", training)):
            if value is not None and not V.is_bool(value):
                raise self.error(arg, value, "None, True or False", TypeError)
        flag = train_flag if train_flag is not None else training
        if flag is None:
            return self.training
        return bool(flag)

    # -- declaring weights (Note's creation order) -----------------------------------
    def add_weight(self, name: str, note_shape: Sequence[int], init: Initializer, arg: str,
                   trainable: bool = True) -> mx.array:
        """Create a weight from Note's layout ``note_shape`` (fans follow Note's rules),
        after checking that MLX can hold it; it is evaluated at once (any thread can then
        use the layer)."""
        self.check_weight_size(name, note_shape)
        value = initializers.initialize(init, tuple(note_shape), self.dtype, self.error_name,
                                        arg)
        value = self.from_note(name, value)
        materialize(value)
        setattr(self, name, value)
        self._slots.append(Slot("array", name))
        if not (trainable and self.trainable):
            self.freeze(keys=[name], recurse=False)
        return value

    def add_sublayer(self, name: str, layer: mnn.Module | list[mnn.Module]) -> None:
        """Register a sublayer (or a list of them); its weights join this layer's
        weights at this point of the creation order, under dotted paths."""
        setattr(self, name, layer)
        self._slots.append(Slot("layer", name))

    def add_view(self, view: View) -> None:
        """Register a Note weight that is a block of stored (fused) arrays."""
        self._slots.append(Slot("view", view.name, view))
        self._views[view.name] = view

    def to_note(self, name: str, value: mx.array) -> mx.array:
        """Stored layout -> Note's TensorFlow layout (identity unless overridden)."""
        return value

    def from_note(self, name: str, value: mx.array) -> mx.array:
        """Note's TensorFlow layout -> stored layout (identity unless overridden)."""
        return value

    def __getattr__(self, key: str) -> Any:
        views = self.__dict__.get("_views")
        if views and key in views and key not in self:
            return views[key].get(self)
        return super().__getattr__(key)

    def load_weights(self, file_or_weights: Any, strict: bool = True) -> Layer:
        """:meth:`mlx.nn.Module.load_weights`, the loaded arrays evaluated at once (MLX
        loads lazily, and a lazy array is usable only in the thread that loaded it)."""
        super().load_weights(file_or_weights, strict=strict)
        materialize(self.parameters())
        return self

    def update(self, parameters: dict[str, Any], strict: bool = True) -> Layer:
        """:meth:`mlx.nn.Module.update`, also accepting this layer's Note view names (a
        recurrent layer's ``weight_f1``): they are fused into the stored arrays,
        differentiably."""
        if self._views:
            own = {k: v for k, v in parameters.items() if k in self._views and k not in self}
            if own:
                by_name = {w.name: w for w in weights.collect(self) if w.owner is self}
                weights.assign([(by_name[k], v) for k, v in own.items()], note=False)
                parameters = {k: v for k, v in parameters.items() if k not in own}
        return super().update(parameters, strict=strict)

    # -- reading and writing weights: weights.NoteWeights over the registry ----------
    def _weights_ready(self, what: str) -> None:
        if what == "set_weights" and not self.built:
            raise self.error("weights", Desc("weights for an unbuilt layer"),
                             "set_weights after the layer is built (give input_size or call "
                             "it once)", RuntimeError)

    def count_params(self) -> int:
        return weights.count(self)

    # -- display -------------------------------------------------------------------
    def _repr_html_(self) -> str:
        """Jupyter display: the arguments, then every weight with its shapes."""
        from html import escape

        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        head = (f"<b>{escape(self.name)}</b>({escape(args)}) "
                f"<span style='color:#888'>{dtype_name(self.dtype)}, "
                f"{'training' if self.training else 'eval'}</span>")
        if not self.built:
            return head + "<br><i>not built yet: weights are created on the first call</i>"
        ws = weights.collect(self)
        if not ws:
            return head + "<br><i>no weights</i>"
        rows = "".join(
            f"<tr><td>{escape(w.path)}</td><td>{w.note_shape}</td>"
            f"<td>{w.stored_shape if w.stored_shape is not None else 'a view'}</td>"
            f"<td>{'yes' if w.trainable else 'no'}</td></tr>" for w in ws)
        return (f"{head}<table><tr><th>weight</th><th>Note layout</th><th>stored (MLX)</th>"
                f"<th>trainable</th></tr>{rows}</table>parameters: {self.count_params():,}")

    def _extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._config.items()]
        if "dtype" not in self._config:
            parts.append(f"dtype={dtype_name(self.dtype)}")
        own = [(k, v) for k, v in self.items() if isinstance(v, mx.array)
               and not k.startswith("_")]
        if own:
            parts.append("weights=[" + ", ".join(f"{k}{tuple(v.shape)}" for k, v in own) + "]")
        if self._slots:
            parts.append(f"params={self.count_params():,}")
        elif not self.built and "input_size" in self._config:
            parts.append("unbuilt")
        return ", ".join(parts)
