"""Argument coverage. Each layer's documented arguments are exactly those of its
signatures (constructor and ``__call__``, less the declared :data:`~conformance.case.
CALL_ALIASES`), every one is exercised by some case, and the report lists the values each
was tested with."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable

from .case import CALL_ALIASES, Case, LayerSpec


def exercised(specs: dict[str, LayerSpec], cases: list[Case]) -> dict[str, dict[str, list[str]]]:
    """``{layer: {argument: [values tested]}}`` (constructor and call arguments, inputs by
    their names and shapes, and the module's mode)."""
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for c in cases:
        spec = specs[c.layer]
        s = seen[c.layer]
        for k, v in {**c.kwargs, **c.call_kwargs}.items():
            s[k].add(repr(v))
        if "input_size" in spec.args and "input_size" not in c.kwargs:
            s["input_size"].add("None (lazy build)")
        if spec.has_dtype:
            s["dtype"].add(repr(c.dtype))
        for i in c.inputs:
            s[i.name].add(repr(tuple(i.shape)))
        s["(mode)"].add(c.mode)
    return {layer: {a: sorted(v) for a, v in args.items()} for layer, args in seen.items()}


def missing(specs: dict[str, LayerSpec], cases: list[Case]) -> dict[str, list[str]]:
    """Documented arguments that no case exercises, per layer: constructor arguments by
    name, call arguments as ``call:NAME``."""
    ctor: dict[str, set[str]] = defaultdict(set)
    call: dict[str, set[str]] = defaultdict(set)
    for c in cases:
        # input_size is exercised either way: given, or None (a lazy build)
        ctor[c.layer] |= {*c.kwargs, "input_size", *(["dtype"] if specs[c.layer].has_dtype
                                                     else [])}
        call[c.layer] |= set(c.call_kwargs) | {i.name for i in c.inputs}
    out = {}
    for name, spec in specs.items():
        gaps = [a for a in spec.args if a not in ctor[name]]
        gaps += [f"call:{a}" for a in spec.call_args if a not in call[name]]
        if gaps:
            out[name] = gaps
    return out


def parameters(fn: Callable, skip_first: bool = False) -> list[str]:
    """Parameter names of ``fn`` (``*args``/``**kwargs`` spelled so)."""
    star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    params = list(inspect.signature(fn).parameters.values())[1 if skip_first else 0:]
    return [star.get(p.kind, "") + p.name for p in params]


def signature_differences(specs: dict[str, LayerSpec]) -> dict[str, list[str]]:
    """Per layer, every difference between its documented arguments and its signatures:
    an argument the documentation leaves off, or a documented name the signature lacks.
    An alias spec (``alias_of``) must name the same class and document a subset."""
    from mlxnote import nn

    out = {}
    for name, spec in specs.items():
        cls = getattr(nn, name, None)
        if cls is None:
            out[name] = [f"mlxnote.nn has no {name}"]
            continue
        ctor, call = set(parameters(cls)), set(parameters(cls.__call__, skip_first=True))
        aliases = {a for a, target in CALL_ALIASES.items() if target in spec.call_args}
        diffs = [f"documented constructor argument {a!r} is not in the signature"
                 for a in spec.args if a not in ctor]
        diffs += [f"documented call argument {a!r} is not in the signature"
                  for a in spec.call_args if a not in call]
        if spec.alias_of is not None:
            if cls is not getattr(nn, spec.alias_of, None):
                diffs.append(f"is documented as an alias of {spec.alias_of}, a different class")
        else:
            diffs += [f"constructor argument {a!r} is not documented"
                      for a in sorted(ctor - set(spec.args))]
            diffs += [f"call argument {a!r} is not documented"
                      for a in sorted(call - set(spec.call_args) - aliases)]
        if diffs:
            out[name] = diffs
    return out


def problems(specs: dict[str, LayerSpec], cases: list[Case]) -> list[str]:
    """The coverage check's findings over the whole suite, one line each."""
    out = [f"coverage: {layer} never exercises documented argument(s) {gaps}"
           for layer, gaps in missing(specs, cases).items()]
    out += [f"coverage: {layer} {d}" for layer, diffs in signature_differences(specs).items()
            for d in diffs]
    return out
