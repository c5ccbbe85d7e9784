"""Cases are data: layer x constructor kwargs x inputs x dtype x mode x seed.

A :class:`LayerSpec` says, for one layer, how to build the TensorFlow reference and which
arguments the documentation gives it (for the coverage check). Family modules in
``conformance.cases`` define ``SPECS`` and ``CASES``; adding a family adds a module there
and never touches the engine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Input:
    """One positional input: its shape, how to fill it, and whether it gets a gradient.

    ``kind``: 'normal' (N(0, 1)), 'uniform' (U(-1, 1)), 'positive' (U(0.5, 1.5)),
    'mask' (0/1 booleans, no gradient) or 'int' (small ints, no gradient).
    """

    shape: tuple[int, ...]
    kind: str = "normal"
    name: str = "data"

    @property
    def differentiable(self) -> bool:
        return self.kind in ("normal", "uniform", "positive")


class Fn:
    """A named callable that each side resolves itself (e.g. an activation callable).

    ``Fn('square')`` becomes ``mx.square`` in mlxnote and ``tf.square`` in the reference,
    through the tables each side is given; the case stays plain data.
    """

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Fn({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fn) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Fn", self.name))


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
                              [(i.shape, i.kind, i.name) for i in self.inputs], self.mode,
                              _jsonable(self.call_kwargs), self.seed, self.steps],
                             sort_keys=True, default=repr)
        return hashlib.sha1(payload.encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        return f"{self.layer}-{self.key}-{self.dtype}"

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


@dataclass
class LayerSpec:
    """How one layer is checked.

    ``reference(case, weights, dtype)`` returns a :class:`conformance.engine.Reference`
    built from Note-layout weights (NumPy, already in the case dtype's values) for a TF
    dtype. ``check`` replaces the numeric comparison for random layers: it takes the
    case and returns a list of :class:`conformance.compare.Check`.
    ``documented`` lists the constructor and call arguments the documentation gives.
    """

    name: str
    documented: Sequence[str]
    reference: Callable | None = None
    check: Callable | None = None
    family: str = ""
    has_dtype: bool = True
    state: Callable | None = None  # layer -> {name: np.ndarray} for stateful layers
    # (layer, inputs, call_kwargs) -> outputs; default ``layer(*inputs, **call_kwargs)``.
    # For layers whose call groups inputs (e.g. an LSTM's (h, c) initial state).
    call: Callable | None = None


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
