"""Weight initializers by Note's names, with Note's fan rules, drawn from MLX's seeded RNG.

``mx.random.seed(s)`` makes every initializer reproducible. Shapes are in Note's
TensorFlow layout (spatial dimensions first, then in, then out), which is what the
fan rules read.

Names (case-insensitive; Keras spellings accepted as aliases, with Keras's meaning:
``'random_normal'`` is N(0, 0.05), ``'random_uniform'`` U(-0.05, 0.05)):

=================  ==========================================================
``'Xavier'``       Glorot uniform, ``limit = sqrt(6 / (fan_in + fan_out))``
``'Xavier_normal'`` truncated normal, ``std = sqrt(2 / (fan_in + fan_out))``
``'He'``           truncated normal, ``std = sqrt(2 / fan_in)`` (also ``'He_normal'``)
``'He_uniform'``   uniform, ``limit = sqrt(6 / fan_in)``
``'Lecun'``        truncated normal, ``std = sqrt(1 / fan_in)`` (also ``'Lecun_normal'``)
``'Lecun_uniform'`` uniform, ``limit = sqrt(3 / fan_in)``
``'Orthogonal'``   QR of a normal matrix with sign correction, gain 1
``'zeros'``, ``'ones'``, ``'normal'`` (N(0, 1)), ``'uniform'`` (U(-0.05, 0.05))
=================  ==========================================================

Truncated normals cut at two standard deviations and are rescaled by 0.8796..., as
Keras' ``VarianceScaling`` does. List forms: ``['normal', mean, std]``,
``['uniform', lo, hi]``, ``['truncated_normal', std]``,
``['VarianceScaling', scale, mode, distribution]``, ``['Orthogonal', gain[, seed]]`` (a
seed draws from its own key, whatever the global generator did).
An array (of the weight's shape) or a callable ``f(shape, dtype)`` is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from .._validation import Desc, error, is_int, is_real
from .typing import Initializer

TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Note's ``compute_fans``: rank 0 -> (1, 1); rank 1 -> (n, n); rank 2 -> (a, b);
    rank >= 3 -> (shape[-2] * rf, shape[-1] * rf) with ``rf = prod(shape[:-2])``."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    rf = int(np.prod(shape[:-2]))
    return int(shape[-2] * rf), int(shape[-1] * rf)


def _scaled(shape: tuple[int, ...], scale: float, mode: str, distribution: str) -> mx.array:
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    var = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * var)
        return mx.random.uniform(-limit, limit, shape)
    std = math.sqrt(var) / TRUNC_STD
    return std * mx.random.truncated_normal(-2.0, 2.0, shape)


def _orthogonal(shape: tuple[int, ...], gain: float = 1.0, seed: int | None = None) -> mx.array:
    if len(shape) < 2:
        raise ValueError("Orthogonal needs a weight of rank >= 2")
    rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
    key = None if seed is None else mx.random.key(int(seed))
    a = mx.random.normal((max(rows, cols), min(rows, cols)), key=key)
    q, r = mx.linalg.qr(a, stream=mx.cpu)
    q = q * mx.sign(mx.diagonal(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


_NAMED: dict[str, Callable[[tuple], mx.array]] = {
    "zeros": lambda s: mx.zeros(s),
    "ones": lambda s: mx.ones(s),
    "normal": lambda s: mx.random.normal(s),
    "random_normal": lambda s: 0.05 * mx.random.normal(s),  # Keras's RandomNormal()
    "uniform": lambda s: mx.random.uniform(-0.05, 0.05, s),
    "xavier": lambda s: _scaled(s, 1.0, "fan_avg", "uniform"),
    "xavier_normal": lambda s: _scaled(s, 1.0, "fan_avg", "truncated_normal"),
    "he": lambda s: _scaled(s, 2.0, "fan_in", "truncated_normal"),
    "he_uniform": lambda s: _scaled(s, 2.0, "fan_in", "uniform"),
    "lecun": lambda s: _scaled(s, 1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": lambda s: _scaled(s, 1.0, "fan_in", "uniform"),
    "orthogonal": _orthogonal,
}
_ALIASES = {
    "xavier_uniform": "xavier", "glorot_uniform": "xavier", "glorot_normal": "xavier_normal",
    "he_normal": "he", "lecun_normal": "lecun",
    "random_uniform": "uniform", "zero": "zeros", "one": "ones",
}
NAMES = ("Xavier", "Xavier_normal", "He", "He_normal", "He_uniform", "Lecun", "Lecun_normal",
         "Lecun_uniform", "Orthogonal", "zeros", "ones", "normal", "uniform")
_LIST_FORMS = ("['normal', mean, std]", "['uniform', lo, hi]", "['truncated_normal', std]",
               "['VarianceScaling', scale, mode, distribution]", "['Orthogonal', gain[, seed]]")


def _list_form(init: Sequence) -> Callable[[tuple], mx.array]:
    """The drawing function of a list form, checked without drawing (KeyError if bad)."""
    kind, *args = init
    kind = str(kind).lower()

    def nums(n: int) -> bool:  # the first n arguments are real numbers
        return len(args) >= n and all(is_real(a) for a in args[:n])

    if kind == "normal" and len(args) == 2 and nums(2):
        return lambda s: args[0] + args[1] * mx.random.normal(s)
    if kind == "uniform" and len(args) == 2 and nums(2):
        return lambda s: mx.random.uniform(args[0], args[1], s)
    if kind == "truncated_normal" and len(args) == 1 and nums(1):
        return lambda s: args[0] * mx.random.truncated_normal(-2.0, 2.0, s)
    if kind == "variancescaling" and len(args) == 3 and nums(1) and \
            args[1] in ("fan_in", "fan_out", "fan_avg") and \
            args[2] in ("truncated_normal", "uniform"):
        return lambda s: _scaled(s, float(args[0]), args[1], args[2])
    if kind == "orthogonal" and len(args) in (1, 2) and nums(1):
        seed = args[1] if len(args) == 2 else None
        if seed is not None and not (is_int(seed) and 0 <= seed < 2**63):
            raise KeyError(kind)
        return lambda s: _orthogonal(s, float(args[0]), seed)
    raise KeyError(kind)


def _is_orthogonal(init: Any) -> bool:
    if isinstance(init, str):
        return init.lower() == "orthogonal"
    return isinstance(init, (list, tuple)) and bool(init) and isinstance(init[0], str) and \
        init[0].lower() == "orthogonal"


def _check_rank(init: Any, rank: int, layer: str, arg: str) -> None:
    """Orthogonal needs a weight of rank >= 2 (a bias, beta or gamma has rank 1)."""
    if rank < 2 and _is_orthogonal(init):
        raise error(layer, arg, init, f"an initializer for a weight of rank {rank} "
                    "('Orthogonal' needs rank >= 2)")


def _drawer(init: Any, layer: str, arg: str) -> Callable[[tuple], mx.array] | None:
    """How ``init`` draws a weight of a given shape: a function for names and list forms,
    ``None`` for arrays and callables (used as they are). Raises the layer's error for
    anything else."""
    allowed = f"one of {list(NAMES)}, a list form {list(_LIST_FORMS)}, an array or a callable"
    if isinstance(init, str):
        key = init.lower()
        fn = _NAMED.get(_ALIASES.get(key, key))
        if fn is None:
            raise error(layer, arg, init, allowed)
        return fn
    if isinstance(init, (list, tuple)) and init and isinstance(init[0], str):
        try:
            return _list_form(init)
        except (KeyError, TypeError, ValueError) as e:
            raise error(layer, arg, init, allowed) from e
    if isinstance(init, (mx.array, np.ndarray)) or callable(init):
        return None
    raise error(layer, arg, init, allowed, TypeError)


def validate(init: Initializer, layer: str = "layer", arg: str = "weight_initializer",
             rank: int | None = None) -> Initializer:
    """Check ``init`` without drawing (constructors call this, so that a lazily built layer
    rejects a bad initializer at construction), for a weight of ``rank`` when it is known.
    Returns ``init``."""
    _drawer(init, layer, arg)
    if rank is not None:
        _check_rank(init, rank, layer, arg)
    return init


def initialize(init: Initializer, shape: Sequence[int], dtype: mx.Dtype,
               layer: str = "layer", arg: str = "weight_initializer") -> mx.array:
    """Create an array of ``shape`` (Note's layout) and ``dtype`` from ``init``."""
    draw = _drawer(init, layer, arg)
    shape = tuple(shape)
    _check_rank(init, len(shape), layer, arg)
    if draw is not None:
        value = draw(shape)
    elif isinstance(init, (mx.array, np.ndarray)):
        value = mx.array(init) if not isinstance(init, mx.array) else init
        if tuple(value.shape) != shape:
            raise error(layer, arg, Desc(f"an array of shape {tuple(value.shape)}"),
                        f"an array of shape {shape} (Note's layout)")
    else:
        value = mx.array(init(shape, dtype))
        if tuple(value.shape) != shape:
            raise error(layer, arg, Desc(f"a callable returning shape {tuple(value.shape)}"),
                        f"shape {shape}")
    return value.astype(dtype)
