"""The layer contract every mlxnote layer follows.

A :class:`Layer` is an :class:`mlx.nn.Module`, so ``nn.value_and_grad``,
``mlx.optimizers``, ``mx.compile``, ``save_weights`` and ``load_weights`` work on it.
On top of MLX it adds what Note's layers promise:

* weights created in Note's creation order, listed (trainable ones) by :attr:`param`;
* :meth:`get_weights` / :meth:`set_weights` with NumPy arrays in Note's TensorFlow
  layout, while the arrays themselves are stored in the layout MLX's kernels consume;
* a lazy build from the first input when ``input_size`` is ``None``;
* train/eval mode from the module, overridden per call by ``train_flag=``/``training=``;
* errors that name the layer, the argument, what was given and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from . import initializers

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: mx.Dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype))


class Desc(str):
    """A description shown as is in error messages (not quoted like a value)."""

    def __repr__(self) -> str:
        return str(self)


def shape_desc(x: mx.array) -> Desc:
    return Desc(f"an array of shape {tuple(x.shape)}")


class Layer(mnn.Module):
    """Base class of the mlxnote layers.

    Subclasses call ``super().__init__(dtype=..., trainable=...)``, create weights with
    :meth:`add_weight` (in Note's creation order) from ``build(input_size)``, and
    override :meth:`to_note` / :meth:`from_note` when the stored layout differs from
    Note's.
    """

    def __init__(self, *, dtype: Any = "float32", trainable: bool = True):
        super().__init__()
        self._set("dtype", self.check_dtype(dtype))
        self._set("trainable", self.check_bool("trainable", trainable))
        self._set("built", False)
        self._set("_weight_names", [])
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

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- errors --------------------------------------------------------------------
    def error(self, arg: str, given: Any, allowed: str, exc: type = ValueError):
        """An exception naming this layer, the argument, the value and what is allowed."""
        return exc(f"{self.name}: argument '{arg}' got {given!r}; allowed: {allowed}.")

    def check_bool(self, arg: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise self.error(arg, value, "True or False", TypeError)
        return bool(value)

    def check_int(self, arg: str, value: Any, low: int = 1, allow_none: bool = False):
        if value is None and allow_none:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise self.error(arg, value, f"an int >= {low}" + (" or None" if allow_none else ""),
                             TypeError)
        if value < low:
            raise self.error(arg, value, f"an int >= {low}")
        return int(value)

    def check_float(self, arg: str, value: Any, low: float, high: float, high_open=True):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise self.error(arg, value, "a float", TypeError)
        value = float(value)
        ok = low <= value and (value < high if high_open else value <= high)
        if not ok or math.isnan(value):
            raise self.error(arg, value, f"a float in [{low}, {high}{')' if high_open else ']'}")
        return value

    def check_ints(self, arg: str, value: Any, n: int, low: int = 1) -> tuple[int, ...]:
        """An int or a sequence of ``n`` ints, each >= ``low``, as an ``n``-tuple."""
        allowed = f"an int >= {low} or a list of {n} such ints"
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            value = [value] * n
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != n:
            raise self.error(arg, value, allowed, TypeError)
        out = []
        for v in value:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise self.error(arg, value, allowed, TypeError)
            if v < low:
                raise self.error(arg, value, allowed)
            out.append(int(v))
        return tuple(out)

    def check_initializer(self, arg: str, init: Any) -> Any:
        return initializers.validate(init, self.name, arg)

    def check_dtype(self, dtype: Any) -> mx.Dtype:
        if isinstance(dtype, mx.Dtype) and dtype in _DTYPE_NAMES:
            return dtype
        key = str(np.dtype(dtype)) if isinstance(dtype, (type, np.dtype)) else dtype
        if isinstance(key, str) and key in DTYPES:
            return DTYPES[key]
        raise self.error("dtype", dtype, "'float32', 'float16' or 'bfloat16'", TypeError)

    # -- inputs --------------------------------------------------------------------
    def as_input(self, data: Any, arg: str = "data", ndim: int | Sequence[int] | None = None,
                 min_ndim: int | None = None, cast: bool = True) -> mx.array:
        """Convert ``data`` to an ``mx.array`` of this layer's dtype, checking its rank."""
        if not isinstance(data, mx.array):
            try:
                arr = np.asarray(data)
            except Exception as e:  # pragma: no cover - exotic inputs
                raise self.error(arg, Desc(type(data).__name__), "an mx.array or array-like",
                                 TypeError) from e
            if arr.dtype.kind not in "biuf":
                raise self.error(arg, Desc(f"an array of dtype {arr.dtype}"),
                                 "real numbers (bool, int or float)", TypeError)
            data = mx.array(arr)
        elif data.dtype in (mx.complex64,):
            raise self.error(arg, Desc(f"an array of dtype {data.dtype}"),
                             "real numbers (bool, int or float)", TypeError)
        if ndim is not None:
            allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
            if data.ndim not in allowed:
                want = " or ".join(str(a) for a in allowed)
                raise self.error(arg, shape_desc(data),
                                 f"rank {want}")
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

    def mode(self, train_flag: Any = None, training: Any = None) -> bool:
        """Training mode for this call: ``train_flag``, else ``training``, else the module's."""
        flag = train_flag if train_flag is not None else training
        if flag is None:
            return self.training
        return bool(flag)

    # -- weights -------------------------------------------------------------------
    def add_weight(self, name: str, note_shape: Sequence[int], init: Any, arg: str,
                   trainable: bool = True) -> mx.array:
        """Create a weight from Note's layout ``note_shape`` (fans follow Note's rules)."""
        value = initializers.initialize(init, tuple(note_shape), self.dtype, self.name, arg)
        value = self.from_note(name, value)
        setattr(self, name, value)
        self._weight_names.append(name)
        if not (trainable and self.trainable):
            self.freeze(keys=[name], recurse=False)
        return value

    def to_note(self, name: str, value: mx.array) -> mx.array:
        """Stored layout -> Note's TensorFlow layout (identity unless overridden)."""
        return value

    def from_note(self, name: str, value: mx.array) -> mx.array:
        """Note's TensorFlow layout -> stored layout (identity unless overridden)."""
        return value

    def add_sublayer(self, name: str, layer: Layer | list[Layer]) -> None:
        """Register a sublayer (or a list of them); its weights join this layer's
        weights at this point of the creation order, under dotted paths."""
        setattr(self, name, layer)
        self._weight_names.append(name)

    def _expand(self, which: str) -> list[str]:
        out = []
        for n in self._weight_names:
            v = getattr(self, n)
            if isinstance(v, Layer):
                out += [f"{n}.{s}" for s in getattr(v, which)]
            elif isinstance(v, list):
                for i, sub in enumerate(v):
                    out += [f"{n}.{i}.{s}" for s in getattr(sub, which)]
            elif which == "weight_names" or n not in self._no_grad:
                out.append(n)
        return out

    @property
    def weight_names(self) -> list[str]:
        """Paths of every weight (trainable or not) in Note's creation order."""
        return self._expand("weight_names")

    @property
    def param_names(self) -> list[str]:
        """Paths of the trainable weights, in Note's creation order."""
        return self._expand("param_names") if self.trainable else []

    @property
    def param(self) -> list[mx.array]:
        """The trainable arrays in Note's creation order (Note's checkpoint order)."""
        return [resolve_path(self, n)[2] for n in self.param_names]

    def note_value(self, path: str, value: mx.array | None = None) -> mx.array:
        """The weight at ``path`` (or ``value`` in its stored layout) in Note's layout."""
        owner, leaf, current = resolve_path(self, path)
        return owner.to_note(leaf, current if value is None else value)

    def get_weights(self) -> list[np.ndarray]:
        """Every weight as a NumPy array in Note's layout and creation order.

        bfloat16 weights come back as float32 (NumPy has no bfloat16); the values
        are exact.
        """
        out = []
        for n in self.weight_names:
            v = self.note_value(n)
            if v.dtype == mx.bfloat16:
                v = v.astype(mx.float32)
            out.append(np.array(v))
        return out

    def checked_weights(self, weights: Sequence[Any],
                        shape_of: Any = None) -> list[tuple[str, mx.array]]:
        """``[(name, array)]`` for :meth:`set_weights`, after checking that the layer is built
        and that ``weights`` has Note's count and shapes (``shape_of(name)``, by default the
        current weight's Note-layout shape)."""
        if not self.built:
            raise self.error("weights", Desc("weights for an unbuilt layer"),
                             "set_weights after the layer is built (give input_size or call "
                             "it once)", RuntimeError)
        names = self.weight_names
        if len(weights) != len(names):
            raise self.error("weights", Desc(f"{len(weights)} arrays"),
                             f"{len(names)} arrays in the order {names}")
        shape_of = shape_of or (lambda n: tuple(self.note_value(n).shape))
        out = []
        for n, w in zip(names, weights):
            w = mx.array(np.asarray(w, dtype=np.float32)) if not isinstance(w, mx.array) else w
            want = tuple(shape_of(n))
            if tuple(w.shape) != want:
                raise self.error("weights", Desc(f"shape {tuple(w.shape)} for '{n}'"),
                                 f"shape {want} (Note's layout)")
            out.append((n, w))
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load arrays in Note's layout and creation order (as :meth:`get_weights` gives)."""
        new = []
        for n, w in self.checked_weights(weights):
            owner, leaf, _ = resolve_path(self, n)
            new.append((owner, leaf, owner.from_note(leaf, w.astype(owner.dtype))))
        for owner, leaf, v in new:
            setattr(owner, leaf, v)

    def count_params(self) -> int:
        return sum(int(np.prod(resolve_path(self, n)[2].shape)) for n in self.weight_names)

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
        names = self.weight_names
        if not names:
            return head + "<br><i>no weights</i>"
        trainable = set(self.param_names)
        rows = "".join(
            f"<tr><td>{escape(n)}</td><td>{tuple(self.note_value(n).shape)}</td>"
            f"<td>{tuple(resolve_path(self, n)[2].shape)}</td>"
            f"<td>{'yes' if n in trainable else 'no'}</td></tr>" for n in names)
        return (f"{head}<table><tr><th>weight</th><th>Note layout</th><th>stored (MLX)</th>"
                f"<th>trainable</th></tr>{rows}</table>parameters: {self.count_params():,}")

    def _extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._config.items()]
        if "dtype" not in self._config:
            parts.append(f"dtype={dtype_name(self.dtype)}")
        own = [n for n in self._weight_names if isinstance(getattr(self, n), mx.array)]
        if own:
            shapes = ", ".join(f"{n}{tuple(getattr(self, n).shape)}" for n in own)
            parts.append(f"weights=[{shapes}]")
        if self._weight_names:
            parts.append(f"params={self.count_params():,}")
        elif not self.built and "input_size" in self._config:
            parts.append("unbuilt")
        return ", ".join(parts)


def resolve_path(layer: mnn.Module, path: str) -> tuple[Any, str, Any]:
    """``'query.weight'`` -> (owner module, ``'weight'``, the array); list indices allowed."""
    *head, leaf = path.split(".")
    owner = layer
    for p in head:
        owner = owner[int(p)] if isinstance(owner, list) else getattr(owner, p)
    return owner, leaf, getattr(owner, leaf)


def as_tuple_padding(layer: Layer, arg: str, value: Any, n: int) -> tuple[tuple[int, int], ...]:
    """Normalize zero padding: an int, or ``n`` entries each an int or a (before, after) pair."""
    allowed = (f"an int >= 0, or {n} entries each an int >= 0 or a (before, after) pair"
               if n > 1 else "an int >= 0 or a (left, right) pair")

    def _int(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise layer.error(arg, value, allowed, TypeError)
        if v < 0:
            raise layer.error(arg, value, allowed)
        return int(v)

    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        p = _int(value)
        return ((p, p),) * n
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise layer.error(arg, value, allowed, TypeError)
    if n == 1 and len(value) == 2 and all(not isinstance(v, Sequence) for v in value):
        return ((_int(value[0]), _int(value[1])),)
    if len(value) != n:
        raise layer.error(arg, value, allowed)
    out = []
    for v in value:
        if isinstance(v, Sequence) and not isinstance(v, str):
            if len(v) != 2:
                raise layer.error(arg, value, allowed)
            out.append((_int(v[0]), _int(v[1])))
        else:
            p = _int(v)
            out.append((p, p))
    return tuple(out)
