"""Case modules, one per family. Each defines ``SPECS`` (a list of LayerSpec) and
``CASES`` (a list of Case); this package collects them."""

from __future__ import annotations

import importlib
import pkgutil

from ..case import Case, LayerSpec


def load() -> tuple[dict[str, LayerSpec], list[Case]]:
    specs: dict[str, LayerSpec] = {}
    cases: list[Case] = []
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        m = importlib.import_module(f"{__name__}.{mod}")
        for s in m.SPECS:
            if s.name in specs:
                raise ValueError(f"layer {s.name!r} has specs in two case modules")
            s.family = s.family or mod
            specs[s.name] = s
        cases.extend(m.CASES)
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)[:5]}")
    unknown = {c.layer for c in cases} - set(specs)
    if unknown:
        raise ValueError(f"cases for layers without a spec: {sorted(unknown)}")
    return specs, cases
