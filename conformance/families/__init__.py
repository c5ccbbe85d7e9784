"""Family modules, one per layer family. Each defines ``SPECS`` (LayerSpecs), ``CASES``
(Cases) and optionally ``EXPECTED`` (its expected failures); this package collects them."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from typing import NamedTuple

from ..case import Case, Expected, LayerSpec


class Families(NamedTuple):
    specs: dict[str, LayerSpec]
    cases: list[Case]
    expected: list[Expected]


def load() -> Families:
    """Every family's specs, cases and expected failures, checked for consistency."""
    specs: dict[str, LayerSpec] = {}
    cases: list[Case] = []
    expected: list[Expected] = []
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        m = importlib.import_module(f"{__name__}.{mod}")
        for s in m.SPECS:
            if s.name in specs:
                raise ValueError(f"layer {s.name!r} has specs in two family modules")
            s.family = s.family or mod
            specs[s.name] = s
        foreign = {e.layer for e in getattr(m, "EXPECTED", [])} - {s.name for s in m.SPECS}
        if foreign:
            raise ValueError(f"family {mod!r} has expected failures for layers it does not "
                             f"specify: {sorted(foreign)}")
        cases.extend(m.CASES)
        expected.extend(getattr(m, "EXPECTED", []))
    dup = {i for i, n in Counter(c.id for c in cases).items() if n > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)[:5]}")
    unknown = {c.layer for c in cases} - set(specs)
    if unknown:
        raise ValueError(f"cases for layers without a spec: {sorted(unknown)}")
    return Families(specs, cases, expected)
