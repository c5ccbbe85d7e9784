"""The data contract: what a case is, how a layer is checked, what a reference returns.

Cases are data: layer x constructor kwargs x inputs x dtype x mode x seed. A
:class:`LayerSpec` says, for one layer, how to build the TensorFlow reference, which
arguments the documentation gives it (the coverage check) and in which execution modes
the engine runs it. Family modules in ``conformance.families`` define ``SPECS``,
``CASES`` and their ``EXPECTED`` failures from these types alone; adding a family adds a
module there and never touches the engine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

DTYPES = ("float32", "float16", "bfloat16")
# The engine's execution modes: 'vjp' (outputs and gradients from inside
# mx.value_and_grad, against tf.GradientTape), 'untraced' (a plain forward call) and
# 'compiled' (the forward call under mx.compile); the last two compare outputs only.
MODES = ("vjp", "untraced", "compiled")
# Undocumented aliases that calls accept next to a documented argument (alias -> that name).
CALL_ALIASES = {"training": "train_flag"}
TRAIN_FLAGS = ("train_flag", *(a for a, name in CALL_ALIASES.items() if name == "train_flag"))


@dataclass(frozen=True)
class Input:
    """One positional input: its shape, how to fill it, and whether it gets a gradient.

    ``kind``: 'normal' (N(0, 1)), 'uniform' (U(-1, 1)), 'positive' (U(0.5, 1.5)),
    'zero_rows' (N(0, 1), every other row along the last axis all zeros),
    'mask' (0/1 booleans, no gradient) or 'int' (small ints, no gradient). ``given``: the
    dtype a float input is handed to mlxnote in (default: the case's); its values are
    still those of the case's dtype, so only the layer's cast to its dtype (decisions.md 3)
    is tested, and the references are unchanged.
    """

    shape: tuple[int, ...]
    kind: str = "normal"
    name: str = "data"
    given: str | None = None

    @property
    def differentiable(self) -> bool:
        return self.kind in ("normal", "uniform", "positive", "zero_rows")


# -- the function table ------------------------------------------------------------------
class FnPair(NamedTuple):
    """One callable that cases name: the MLX function, and a function of the ``tf`` module
    returning the TensorFlow one (so that this module does not import TensorFlow)."""

    mlx: Callable
    tf: Callable[[Any], Callable]


def _favor_h_mx(x):
    return mx.exp(-0.5 * mx.sum(x * x, axis=-1, keepdims=True) / 8.0) * 8.0


def _favor_h_tf(tf):
    return lambda x: tf.exp(-0.5 * tf.reduce_sum(x * x, axis=-1, keepdims=True) / 8.0) * 8.0


FNS: dict[str, FnPair] = {
    "square": FnPair(mx.square, lambda tf: tf.square),
    "sin": FnPair(mx.sin, lambda tf: tf.sin),
    "favor_h": FnPair(_favor_h_mx, _favor_h_tf),  # a FAVOR ``h``: a function of x
    "uniform_randomizer": FnPair(  # a FAVOR ``randomizer``: (shape, dtype) -> array
        lambda shape, dtype=mx.float32: mx.random.uniform(-1.0, 1.0, shape, dtype),
        lambda tf: lambda shape, dtype=tf.float32: tf.random.uniform(shape, -1.0, 1.0, dtype)),
    "uniform_key_randomizer": FnPair(  # the same, drawing from a given key (a seed's)
        lambda shape, dtype=mx.float32, key=None: mx.random.uniform(-1.0, 1.0, shape, dtype,
                                                                    key=key),
        lambda tf: lambda shape, dtype=tf.float32, key=None: tf.random.uniform(
            shape, -1.0, 1.0, dtype)),
    "identity_encoder": FnPair(  # a Transformer ``custom_encoder``
        lambda src, **kw: src, lambda tf: lambda src, **kw: src),
    "memory_mean_decoder": FnPair(  # a Transformer ``custom_decoder``
        lambda tgt, memory, **kw: tgt + mx.mean(memory, axis=1, keepdims=True),
        lambda tf: lambda tgt, memory, **kw: tgt + tf.reduce_mean(memory, axis=1,
                                                                 keepdims=True)),
}


class Fn:
    """A named callable from :data:`FNS`: ``Fn('square').mlx`` is ``mx.square`` and
    ``Fn('square').tf`` is ``tf.square``; the case stays plain data."""

    def __init__(self, name: str):
        if name not in FNS:
            raise KeyError(f"Fn({name!r}) is not in conformance.case.FNS")
        self.name = name

    @property
    def mlx(self) -> Callable:
        return FNS[self.name].mlx

    @property
    def tf(self) -> Callable:
        import tensorflow as tf

        return FNS[self.name].tf(tf)

    def __repr__(self) -> str:
        return f"Fn({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fn) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Fn", self.name))


def resolve(value: Any, side: str) -> Any:
    """Replace :class:`Fn` markers (also inside lists, tuples and dicts) by their ``side``
    ('mlx' or 'tf') callables."""
    if isinstance(value, Fn):
        return getattr(value, side)
    if isinstance(value, dict):
        return {k: resolve(v, side) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, side) for v in value)
    return value


# -- cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    layer: str
    kwargs: dict
    inputs: tuple[Input, ...]
    dtype: str = "float32"
    mode: str = "train"  # 'train' or 'eval' (the module's mode before the call)
    call_kwargs: dict = field(default_factory=dict)
    seed: int = 0
    tier: str = "full"  # 'smoke' cases also run in the full tier
    steps: int = 1  # forward calls before the compared one (stateful layers)
    note: str = ""

    @property
    def key(self) -> str:
        """Stable across runs and independent of case order."""
        payload = json.dumps([self.layer, _jsonable(self.kwargs),
                              [(i.shape, i.kind, i.name, *([i.given] if i.given else []))
                               for i in self.inputs], self.mode,
                              _jsonable(self.call_kwargs), self.seed, self.steps],
                             sort_keys=True, default=repr)
        return hashlib.sha1(payload.encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        return f"{self.layer}-{self.key}-{self.dtype}"

    @property
    def training(self) -> bool:
        """Training or inference for this call: a train flag in the call overrides the mode."""
        for k in TRAIN_FLAGS:
            if self.call_kwargs.get(k) is not None:
                return bool(self.call_kwargs[k])
        return self.mode == "train"

    def reference_call_kwargs(self) -> dict:
        """The call keywords a :class:`Reference` gets (train flags become ``training``)."""
        return {k: v for k, v in self.call_kwargs.items() if k not in TRAIN_FLAGS}

    def describe(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        ck = ", ".join(f"{k}={v!r}" for k, v in self.call_kwargs.items())
        shapes = " ".join(str(tuple(i.shape)) for i in self.inputs)
        extra = f" call({ck})" if ck else ""
        return f"{self.layer}({kw}) on {shapes}{extra} [{self.mode}, {self.dtype}]"


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in sorted(d.items())}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, Fn):
        return f"Fn:{d.name}"
    return d


def grid(layer: str, kwargs: Iterable[dict], inputs: Sequence[Input] | Callable,
         dtypes: Sequence[str] = DTYPES, modes: Sequence[str] = ("train",),
         call_kwargs: Iterable[dict] = ({},), smoke: int = 0, **extra: Any) -> list[Case]:
    """Cartesian product of argument sets x dtypes x modes. ``inputs`` may be a function
    of the kwargs. The first ``smoke`` argument sets also join the smoke tier (float32 and
    one reduced dtype)."""
    out = []
    for i, (kw, ck) in enumerate(itertools.product(list(kwargs), list(call_kwargs))):
        ins = inputs(kw) if callable(inputs) else inputs
        ins = tuple(x if isinstance(x, Input) else Input(tuple(x)) for x in ins)
        for dt, mode in itertools.product(dtypes, modes):
            tier = "smoke" if i < smoke and dt in ("float32", "bfloat16") else "full"
            out.append(Case(layer, dict(kw), ins, dt, mode, dict(ck), tier=tier, **extra))
    return out


# -- how a layer is checked --------------------------------------------------------------
class Reference:
    """A TensorFlow reference for one case.

    ``fn(*inputs, training=bool, **call_kwargs)`` computes the layer on TF tensors;
    ``variables`` are the tf.Variables it differentiates against; ``grads_to_note`` maps
    the gradients of ``variables`` to Note's layout in ``layer.param`` order (identity by
    default); ``state()`` returns the layer state as ``{name: np.ndarray}``.
    """

    def __init__(self, fn: Callable, variables: Sequence = (),
                 grads_to_note: Callable | None = None, state: Callable | None = None):
        self.fn = fn
        self.variables = list(variables)
        self.grads_to_note = grads_to_note or (lambda grads: list(grads))
        self.state = state


@dataclass
class Trial:
    """One seeded set-up of a case, as the engine hands it to a custom ``LayerSpec.check``.

    ``layer`` is built in the case's mode; ``inputs`` are float64 NumPy values rounded to
    the case dtype (masks and ints as drawn) and ``xs`` the same as mx arrays;
    ``call_kwargs`` have their :class:`Fn` markers resolved; ``rng`` continues the case's
    seeded stream after the inputs. ``build()`` makes another layer like ``layer`` (same
    arguments and mode, no reseeding); ``numeric()`` runs the engine's comparison of the
    case (outputs and gradients against the reference, from a fresh set-up).
    """

    case: Case
    layer: Any
    inputs: list
    xs: list
    call_kwargs: dict
    rng: np.random.Generator
    build: Callable[[], Any]
    numeric: Callable[[], list]
    round_trip: list = field(default_factory=list)  # the engine's set_weights findings
    nudge: int = 0  # > 0: a nearby problem (inputs and weights moved by <= 1 ulp; compare.py)


@dataclass
class LayerSpec:
    """How one layer is checked.

    ``args`` and ``call_args`` are the constructor and call arguments (inputs included;
    default ``data`` alone) the documentation gives; the coverage check compares them with
    the layer's signatures and requires each to be exercised. ``alias_of`` names the spec
    of the same class when this name is a documented alias (its ``args`` are then the ones
    its examples use).
    ``reference(case, weights, dtype)`` returns a :class:`Reference` built from Note-layout
    weights (NumPy, already in the case dtype's values) for a TF dtype. ``modes`` are the
    engine's execution modes (:data:`MODES`); those after 'vjp' run in ``mode_dtypes``.
    ``check(trial)`` replaces the engine's comparison (random layers) and returns a list
    of :class:`conformance.compare.Check`.
    """

    name: str
    args: Sequence[str]
    call_args: Sequence[str] = ("data",)
    reference: Callable | None = None
    check: Callable[[Trial], list] | None = None
    modes: tuple[str, ...] = ("vjp",)
    mode_dtypes: tuple[str, ...] = DTYPES
    alias_of: str | None = None
    family: str = ""
    has_dtype: bool = True
    state: Callable | None = None  # layer -> {name: np.ndarray} for stateful layers
    # (layer, inputs, call_kwargs) -> outputs; default ``layer(*inputs, **call_kwargs)``.
    # For layers whose call groups inputs (e.g. an LSTM's (h, c) initial state).
    call: Callable | None = None
    # (kwargs with Fn markers resolved, dtype name) -> the layer; default
    # ``getattr(mlxnote.nn, name)(**kwargs, dtype=dtype)``. For layers built from other
    # layers (a TransformerEncoder from its encoder_layer, described by a dict).
    build: Callable | None = None

    def __post_init__(self):
        if not self.modes or self.modes[0] != "vjp" or not set(self.modes) <= set(MODES):
            raise ValueError(f"{self.name}: modes must start with 'vjp' and be among {MODES}")
        if self.check is not None and self.modes != ("vjp",):
            raise ValueError(f"{self.name}: a custom check runs no other execution modes")


# -- expected failures -------------------------------------------------------------------
class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: In an :class:`Expected`'s kwargs: the case does not give this argument (its default).
ABSENT = _ABSENT = _Absent()


@dataclass(frozen=True)
class Expected:
    """An expected failure, matched by readable data: the layer, and optionally the dtype,
    the mode and a subset of the constructor and call kwargs. ``checks`` are the check
    names (``fnmatch`` patterns, e.g. ``grad:weight_c2``) allowed to fail: a matched case
    is an expected failure only when every failing check is one of them. A matched case
    that passes, or an entry that matches no case, fails the run. A kwarg given as
    :data:`ABSENT` matches cases that leave it out. ``formulation`` (``'cpu'`` or ``'gpu'``)
    and ``device`` (``'cpu'`` or ``'gpu'``, the default device's type) restrict the entry to
    runs in that formulation, on that device (:func:`applies`): an entry measured with the
    GPU formulation on a CPU need not hold on Metal or CUDA, whose roundings differ.
    """

    layer: str
    reason: str
    checks: tuple[str, ...]
    dtype: str | None = None
    mode: str | None = None
    kwargs: dict = field(default_factory=dict)
    call_kwargs: dict = field(default_factory=dict)
    formulation: str | None = None
    device: str | None = None

    def applies(self) -> bool:
        """Does this entry apply in the formulation the layers take now, on this device?"""
        from mlxnote._config import formulation_name

        device = "cpu" if mx.default_device().type == mx.DeviceType.cpu else "gpu"
        return self.formulation in (None, formulation_name()) and \
            self.device in (None, device)

    def matches(self, case: Case) -> bool:
        return (case.layer == self.layer and self.dtype in (None, case.dtype)
                and self.mode in (None, case.mode)
                and all(case.kwargs.get(k, _ABSENT) == v for k, v in self.kwargs.items())
                and all(case.call_kwargs.get(k, _ABSENT) == v
                        for k, v in self.call_kwargs.items()))

    def covers(self, failing: list[str]) -> bool:
        return bool(failing) and all(any(fnmatchcase(n, p) for p in self.checks)
                                     for n in failing)

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("dtype", self.dtype), ("mode", self.mode),
                                            ("formulation", self.formulation),
                                            ("device", self.device))
                 if v is not None]
        parts += [f"{k}={v!r}" for k, v in {**self.kwargs, **self.call_kwargs}.items()]
        return f"{self.layer}({', '.join(parts)})"
