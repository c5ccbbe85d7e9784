"""Argument checks and the one error format, shared by layers, models, optimizers and losses.

Every message reads ``"<owner>: argument '<arg>' got <given>; allowed: <allowed>."``:
the owner (the layer, model or loss the user called), the argument, what was given and
what is allowed.

A composite that builds inner layers on the user's behalf (the Transformer builds its
encoder and decoder blocks, multihead attention its dense projections) wraps their
construction in :func:`owned_by`, so that errors of those inner layers name the composite
the user called.

Sizes: MLX segfaults instead of raising when an allocation fails, and its dimensions are
32-bit. :func:`check_int` and friends refuse sizes above :data:`MAX_DIM` when asked
(``high=``), and :func:`check_fits` refuses an array (a weight, an output) whose bytes
exceed the memory this process may use, before MLX sees its shape.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from ._config import parse_dtype


class Desc(str):
    """A description shown as is in error messages (not quoted like a value)."""

    def __repr__(self) -> str:
        return str(self)


def shape_desc(x: Any) -> Desc:
    return Desc(f"an array of shape {tuple(x.shape)}")


#: The largest size of one array dimension MLX takes (its shapes are 32-bit ints).
MAX_DIM = 2**31 - 1
#: The largest seed ``mx.random.key`` takes.
MAX_SEED = 2**64 - 1


def error(owner: str, arg: str, given: Any, allowed: str,
          exc: type[Exception] = ValueError) -> Exception:
    """The exception (not raised) naming ``owner``, ``arg``, ``given`` and ``allowed``."""
    return exc(f"{owner}: argument '{arg}' got {given!r}; allowed: {allowed}.")


# -- who owns the layers being built ---------------------------------------------------
_OWNER: contextvars.ContextVar[tuple[Any, tuple[type, ...]] | None] = \
    contextvars.ContextVar("mlxnote_owner", default=None)


@contextlib.contextmanager
def owned_by(owner: Any, types: tuple[type, ...]) -> Iterator[None]:
    """Layers of ``types`` constructed inside this block name ``owner`` in their errors:
    a name, or the composite layer itself (then its own ``error_name``, so that ownership
    nests: the dense layers of an attention block the Transformer built name the
    Transformer)."""
    token = _OWNER.set((owner, tuple(types)))
    try:
        yield
    finally:
        _OWNER.reset(token)


def current_owner(cls: type) -> Any:
    """The owner (a name or a layer) a layer of class ``cls`` built now reports in its
    errors, if any."""
    owner = _OWNER.get()
    return owner[0] if owner is not None and issubclass(cls, owner[1]) else None


# -- predicates ------------------------------------------------------------------------
def is_int(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def is_real(v: Any) -> bool:
    """An int or float (Python or NumPy), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not is_bool(v)


def is_sequence(v: Any) -> bool:
    """A list/tuple-like sequence that is not a string."""
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


# -- checks ----------------------------------------------------------------------------
def check_bool(owner: str, arg: str, value: Any) -> bool:
    if not is_bool(value):
        raise error(owner, arg, value, "True or False", TypeError)
    return bool(value)


def _above(owner: str, arg: str, given: Any, value: int, low: int, high: int | None) -> None:
    if high is not None and value > high:
        why = " (MLX's array sizes are 32-bit)" if high == MAX_DIM else ""
        raise error(owner, arg, given, f"an int in [{low}, {high}]{why}")


def check_int(owner: str, arg: str, value: Any, low: int = 1,
              allow_none: bool = False, high: int | None = None) -> int | None:
    """An int ``>= low`` (and ``<= high`` when given; or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not is_int(value):
        raise error(owner, arg, value, f"an int >= {low}" + (" or None" if allow_none else ""),
                    TypeError)
    if value < low:
        raise error(owner, arg, value, f"an int >= {low}")
    _above(owner, arg, value, int(value), low, high)
    return int(value)


def check_float(owner: str, arg: str, value: Any, low: float, high: float,
                high_open: bool = True) -> float:
    """A real number in ``[low, high)`` (``[low, high]`` unless ``high_open``)."""
    if not is_real(value):
        raise error(owner, arg, value, "a float", TypeError)
    value = float(value)
    ok = low <= value and (value < high if high_open else value <= high)
    if not ok or math.isnan(value):
        raise error(owner, arg, value, f"a float in [{low}, {high}{')' if high_open else ']'}")
    return value


def check_ints(owner: str, arg: str, value: Any, n: int, low: int = 1,
               high: int | None = None) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints, each ``>= low`` (and ``<= high``), as an
    ``n``-tuple."""
    given = value
    allowed = f"an int >= {low} or a list of {n} such ints"
    if is_int(value):
        value = [value] * n
    if not is_sequence(value) or len(value) != n:
        raise error(owner, arg, given, allowed, TypeError)
    for v in value:
        if not is_int(v):
            raise error(owner, arg, given, allowed, TypeError)
        if v < low:
            raise error(owner, arg, given, allowed)
        _above(owner, arg, given, int(v), low, high)
    return tuple(int(v) for v in value)


def check_choice(owner: str, arg: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared by equality; unhashable is fine)."""
    if isinstance(value, (str, int, float, bool, type(None))) and value in choices:
        return value
    allowed = " or ".join(repr(c) for c in choices)
    raise error(owner, arg, value, allowed, TypeError if not isinstance(value, str)
                and all(isinstance(c, str) for c in choices) else ValueError)


def check_dtype(owner: str, dtype: Any) -> mx.Dtype:
    out = parse_dtype(dtype)
    if out is None:
        raise error(owner, "dtype", dtype, "'float32', 'float16' or 'bfloat16'", TypeError)
    return out


def as_array(owner: str, data: Any, arg: str = "data") -> mx.array:
    """``data`` as an ``mx.array`` of real numbers (bool, int or float), without a cast."""
    if not isinstance(data, mx.array):
        try:
            arr = np.asarray(data)
        except Exception as e:  # pragma: no cover - exotic inputs
            raise error(owner, arg, Desc(type(data).__name__), "an mx.array or array-like",
                        TypeError) from e
        if arr.dtype.kind not in "biuf":
            raise error(owner, arg, Desc(f"an array of dtype {arr.dtype}"),
                        "real numbers (bool, int or float)", TypeError)
        return mx.array(arr)
    if mx.issubdtype(data.dtype, mx.complexfloating):
        raise error(owner, arg, Desc(f"an array of dtype {data.dtype}"),
                    "real numbers (bool, int or float)", TypeError)
    return data


def check_pad_pairs(owner: str, arg: str, value: Any, n: int,
                    high: int | None = None) -> tuple[tuple[int, int], ...]:
    """Zero padding as ``n`` ``(before, after)`` pairs, from an int, or ``n`` entries each
    an int or a ``(before, after)`` pair (for ``n == 1`` also a bare ``(left, right)``)."""
    allowed = (f"an int >= 0, or {n} entries each an int >= 0 or a (before, after) pair"
               if n > 1 else "an int >= 0 or a (left, right) pair")

    def one(v: Any) -> int:
        if not is_int(v):
            raise error(owner, arg, value, allowed, TypeError)
        if v < 0:
            raise error(owner, arg, value, allowed)
        _above(owner, arg, value, int(v), 0, high)
        return int(v)

    if is_int(value):
        return ((one(value),) * 2,) * n
    if not is_sequence(value):
        raise error(owner, arg, value, allowed, TypeError)
    if n == 1 and len(value) == 2 and not any(is_sequence(v) for v in value):
        return ((one(value[0]), one(value[1])),)
    if len(value) != n:
        raise error(owner, arg, value, allowed)
    out = []
    for v in value:
        if is_sequence(v):
            if len(v) != 2:
                raise error(owner, arg, value, allowed)
            out.append((one(v[0]), one(v[1])))
        else:
            out.append((one(v),) * 2)
    return tuple(out)


# -- sizes ---------------------------------------------------------------------------------
def memory_limit() -> int:
    """Bytes one new array may take: the memory this process may use (RAM, capped by a
    cgroup limit: :func:`mlxnote._platform.memory_bytes`; and the GPU's memory when MLX
    reports it) less what MLX holds already."""
    from ._platform import memory_bytes

    total = memory_bytes()
    try:
        total = min(total, int(mx.device_info().get("memory_size", total)))
    except (AttributeError, RuntimeError, TypeError, ValueError):  # pragma: no cover
        pass
    return max(total - mx.get_active_memory(), 0)


def _bytes_text(n: int) -> str:
    for unit, size in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                       ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_fits(owner: str, arg: str, given: Any, shape: Sequence[int], dtype: mx.Dtype,
               what: str) -> None:
    """Refuse an array of ``shape`` and ``dtype`` (``what`` it is: ``"weight 'kernel'"``,
    ``"output"``) that MLX cannot hold, before MLX sees it: a dimension above
    :data:`MAX_DIM`, or more bytes than :func:`memory_limit`. The error names ``owner``,
    ``arg`` (the argument whose value ``given`` makes it that large) and the size."""
    shape = tuple(int(s) for s in shape)
    if any(s > MAX_DIM for s in shape):
        raise error(owner, arg, given, f"sizes whose {what} (shape {shape}) has no dimension "
                    f"above {MAX_DIM} (MLX's array sizes are 32-bit)")
    nbytes = math.prod(shape) * dtype.size
    limit = memory_limit()
    if nbytes > limit:
        from ._config import dtype_name

        raise error(owner, arg, given, f"sizes whose {what} (shape {shape}, "
                    f"{_bytes_text(nbytes)} in {dtype_name(dtype)}) fits in the "
                    f"{_bytes_text(limit)} of memory this process may still use")
