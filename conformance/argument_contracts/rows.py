"""The three kinds of argument-contract row and how each is checked.

* :class:`Refuse`: ``nn.<layer>(**kwargs)`` (and, when ``inputs`` is given, one call on
  them) raises ``exc`` whose message names the layer (``"<owner>:"``) and the argument
  (``"'<arg>'"``), plus any extra ``words``;
* :class:`Accept`: the construction and one call succeed, and the outputs have ``out``'s
  shapes;
* :class:`Special`: a named check function (for what a table cannot say).

Constructor keywords are the layer's ``BASE`` keywords updated by the row's; a value
:func:`new` builds a layer (``Bidirectional(layer=new("GRU", ...))``). Inputs are shapes
(float32 normals), :class:`Arr` (another dtype or a constant), lists of those, or ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

#: Each family module adds its layers' default keywords here.
BASE: dict[str, dict[str, Any]] = {}


class Arr(NamedTuple):
    """An input array: ``shape``, ``dtype`` ('float32', 'bool', 'int32', ...), and a
    constant ``fill`` (None: standard normals; bool arrays are all True)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    fill: float | None = None
    lazy: bool = False  # a broadcast view: a huge shape that costs nothing until computed


class New(NamedTuple):
    layer: str
    kwargs: dict[str, Any]


def new(layer: str, **kwargs: Any) -> New:
    return New(layer, kwargs)


def build(layer: str, kwargs: dict[str, Any]) -> Any:
    from mlxnote import nn

    kw = {k: resolve(v) for k, v in {**BASE.get(layer, {}), **kwargs}.items()}
    return getattr(nn, layer)(**kw)


def resolve(v: Any, rng: np.random.Generator | None = None) -> Any:
    """Build what a row describes: layers (:func:`new`), arrays (shapes, :class:`Arr`)."""
    if isinstance(v, New):
        return build(v.layer, v.kwargs)
    if isinstance(v, Arr):
        return _array(v, rng or np.random.default_rng(0))
    return v


def _array(a: Arr, rng: np.random.Generator) -> mx.array:
    dt = mx.bool_ if a.dtype == "bool" else getattr(mx, a.dtype)
    if a.lazy:
        return mx.broadcast_to(mx.zeros((1,) * len(a.shape), dt), a.shape)
    if a.dtype == "bool":
        return mx.full(a.shape, True if a.fill is None else bool(a.fill))
    if a.fill is not None:
        return mx.full(a.shape, a.fill, dt)
    return mx.array(rng.standard_normal(a.shape).astype(np.float32)).astype(dt)


def _input(v: Any, rng: np.random.Generator) -> Any:
    if isinstance(v, tuple) and all(isinstance(d, int) for d in v):
        return _array(Arr(v), rng)
    if isinstance(v, list):
        return [_input(a, rng) for a in v]
    if isinstance(v, tuple) and not isinstance(v, (Arr, New)):
        return tuple(_input(a, rng) for a in v)
    return resolve(v, rng)


def _value(v: Any, rng: np.random.Generator) -> Any:
    """A call keyword: arrays only where :class:`Arr` says so (a tuple of ints is a value)."""
    if isinstance(v, (list, tuple)) and not isinstance(v, (Arr, New)):
        return type(v)(_value(a, rng) for a in v)
    return resolve(v, rng)


def call(lyr: Any, inputs: tuple, kwargs: dict[str, Any]) -> Any:
    rng = np.random.default_rng(0)
    xs = [_input(v, rng) for v in inputs]
    kw = {k: _value(v, rng) for k, v in kwargs.items()}
    out = lyr(*xs, **kw)
    mx.eval(out)
    return out


def _shapes(out: Any) -> list[tuple[int, ...]]:
    if isinstance(out, (tuple, list)):
        return [s for o in out for s in _shapes(o)]
    return [tuple(out.shape)]


def _short(v: Any) -> str:
    if isinstance(v, New):
        return f"{v.layer}({_kw(v.kwargs)})"
    if isinstance(v, Arr):
        return f"{v.dtype}{list(v.shape)}"
    if isinstance(v, tuple) and all(isinstance(d, int) for d in v):
        return f"{list(v)}" if v else "0-d"
    if isinstance(v, list) and v and not all(isinstance(d, (int, float)) for d in v):
        return "[" + ", ".join(_short(a) for a in v) + "]"
    if callable(v) and not isinstance(v, type):
        return getattr(v, "__name__", "a callable")
    return repr(v)


def _kw(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in kw.items())


class Row:
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class Refuse(Row):
    layer: str
    kwargs: dict[str, Any]
    arg: str
    exc: type[Exception] = ValueError
    inputs: tuple | None = None  # None: refused by the constructor
    call: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # the name the message shows (default: the layer's)
    words: tuple[str, ...] = ()

    def name(self) -> str:
        where = f"({_kw(self.kwargs)})"
        if self.inputs is not None:
            args = [_short(v) for v in self.inputs] + [f"{k}={_short(v)}"
                                                       for k, v in self.call.items()]
            where += f" called on ({', '.join(args)})"
        return f"{self.layer}{where} refused naming '{self.arg}'"

    def check(self) -> str:
        from ..contracts import _raises

        words = (f"{self.owner or self.layer}:", f"'{self.arg}'", *self.words)
        if self.inputs is None:
            return _raises(lambda: build(self.layer, self.kwargs), self.exc, *words)
        try:  # the construction itself must be fine
            lyr = build(self.layer, self.kwargs)
        except Exception as e:
            return f"the construction failed: {type(e).__name__}: {e}"
        return _raises(lambda: call(lyr, self.inputs, self.call), self.exc, *words)


@dataclass(frozen=True)
class Accept(Row):
    layer: str
    kwargs: dict[str, Any]
    inputs: tuple
    out: tuple | list  # the output's shape, or a list of the shapes of a tuple's parts
    call: dict[str, Any] = field(default_factory=dict)

    def name(self) -> str:
        args = [_short(v) for v in self.inputs] + [f"{k}={_short(v)}"
                                                   for k, v in self.call.items()]
        return f"{self.layer}({_kw(self.kwargs)}) accepted: ({', '.join(args)}) -> {self.out}"

    def check(self) -> str:
        out = call(build(self.layer, self.kwargs), self.inputs, self.call)
        want = [tuple(s) for s in self.out] if isinstance(self.out, list) else [self.out]
        got = _shapes(out)
        return "" if got == want else f"output shapes {got}, expected {want}"


@dataclass(frozen=True)
class Special(Row):
    label: str
    fn: Callable[[], str]

    def name(self) -> str:
        return self.label

    def check(self) -> str:
        return self.fn()


@dataclass(frozen=True)
class Oversize(Row):
    """A call whose ``what`` (an output, a projection, ...) is larger than the memory left
    (``limit`` bytes, patched in after the construction: the layers refuse what MLX cannot
    hold, before it segfaults) is refused naming the layer, ``arg`` and ``what`` (and
    ``words``). ``inputs=None``: the construction is, under the limit (a weight)."""

    layer: str
    kwargs: dict[str, Any]
    inputs: tuple | None
    arg: str
    what: str
    limit: int
    call: dict[str, Any] = field(default_factory=dict)
    words: tuple[str, ...] = ()

    def name(self) -> str:
        where = "" if self.inputs is None else \
            f" on ({', '.join(_short(v) for v in self.inputs)})"
        return (f"{self.layer}({_kw(self.kwargs)}){where} with {self.limit} bytes "
                f"left refuses its {self.what} naming '{self.arg}'")

    def check(self) -> str:
        from ..contracts import _raises

        lyr = None if self.inputs is None else build(self.layer, self.kwargs)
        make = (lambda: build(self.layer, self.kwargs)) if lyr is None else \
            (lambda: call(lyr, self.inputs, self.call))
        with memory_left(self.limit):
            return _raises(make, ValueError, f"{self.layer}:", f"'{self.arg}'", self.what,
                           *self.words)


@contextlib.contextmanager
def memory_left(limit: int) -> Iterator[None]:
    """:func:`mlxnote._validation.memory_limit` reads ``limit`` bytes in this block."""
    from mlxnote import _validation

    real = _validation.memory_limit
    _validation.memory_limit = lambda: limit
    try:
        yield
    finally:
        _validation.memory_limit = real


@dataclass(frozen=True)
class Fits(Row):
    """The call (built first) runs with exactly ``limit`` bytes left: what it holds at most
    (its output, a projection) is allowed to fill the memory, not more (:class:`Oversize`)."""

    layer: str
    kwargs: dict[str, Any]
    inputs: tuple
    limit: int
    out: tuple | list  # as Accept's

    def name(self) -> str:
        args = ", ".join(_short(v) for v in self.inputs)
        return f"{self.layer}({_kw(self.kwargs)}) on ({args}) fits in {self.limit} bytes"

    def check(self) -> str:
        lyr = build(self.layer, self.kwargs)
        with memory_left(self.limit):
            got = _shapes(call(lyr, self.inputs, {}))
        want = [tuple(s) for s in self.out] if isinstance(self.out, list) else [self.out]
        return "" if got == want else f"output shapes {got}, expected {want}"


@dataclass(frozen=True)
class Reads(Row):
    """The constructed layer's attributes read what its arguments say (``attrs``; a
    callable value is a predicate on the attribute)."""

    layer: str
    kwargs: dict[str, Any]
    attrs: dict[str, Any]

    def name(self) -> str:
        return f"{self.layer}({_kw(self.kwargs)}) reads {_kw(self.attrs)}"

    def check(self) -> str:
        lyr = build(self.layer, self.kwargs)
        wrong = {k: getattr(lyr, k, "(missing)") for k, v in self.attrs.items()
                 if not (v(getattr(lyr, k, None)) if callable(v) else getattr(lyr, k, None) == v)}
        return f"attributes {wrong}" if wrong else ""
