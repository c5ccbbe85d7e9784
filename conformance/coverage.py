"""Argument coverage: every documented argument of every implemented layer must be
exercised by some case, and the report lists the values each one was tested with."""

from __future__ import annotations

from collections import defaultdict

from .case import Case, LayerSpec


def exercised(specs: dict[str, LayerSpec], cases: list[Case]) -> dict[str, dict[str, list[str]]]:
    """``{layer: {argument: [values tested]}}`` for the documented arguments."""
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for c in cases:
        spec = specs[c.layer]
        s = seen[c.layer]
        for k, v in {**c.kwargs, **c.call_kwargs}.items():
            s[k].add(repr(v))
        if "input_size" in spec.documented and "input_size" not in c.kwargs:
            s["input_size"].add("None (lazy build)")
        if spec.has_dtype:
            s["dtype"].add(repr(c.dtype))
        for i in c.inputs:
            s[i.name].add(repr(tuple(i.shape)))
        s["(mode)"].add(c.mode)
    return {layer: {a: sorted(v) for a, v in args.items()} for layer, args in seen.items()}


def missing(specs: dict[str, LayerSpec], cases: list[Case]) -> dict[str, list[str]]:
    """Documented arguments that no case exercises, per layer."""
    ex = exercised(specs, cases)
    out = {}
    for name, spec in specs.items():
        gaps = [a for a in spec.documented if a not in ex.get(name, {})]
        if gaps:
            out[name] = gaps
    return out
