"""Argument contracts: every documented constructor argument and call input of the public
layers (``note-nn-layers.md``'s 32, the Transformer's blocks and stacks, ``Bidirectional``)
refused when invalid with a ``ValueError``/``TypeError`` whose message names the layer and
the argument, and its documented boundary values accepted (constructed and called once, the
output's shape checked).

The rows are data, one module per family (``conv``, ``core``, ``norm``, ``recurrent``,
``attention``, ``transformer``), of the kinds in :mod:`.rows` (``Refuse``, ``Accept``,
``Oversize``: a size refused under a patched memory limit, ``Special``: a named check).
``run()`` is called by :func:`conformance.contracts.run` (with the whole suite and once per
mutant of ``make mutation``): keep it fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mlx.core as mx

from .rows import Accept, Refuse, Row, Special


def all_rows(*layers: str) -> list[Row]:
    """Every row, or those of ``layers`` (by public name)."""
    from . import attention, conv, core, norm, recurrent, transformer

    rows = [r for m in (conv, core, norm, recurrent, attention, transformer) for r in m.ROWS]
    return [r for r in rows if not layers or getattr(r, "layer", None) in layers]


@contextlib.contextmanager
def _own_generator() -> Iterator[None]:
    """The rows draw weights from a fixed seed; afterwards the global generator is seeded
    from a draw taken before (MLX's state cannot be restored), so what follows is as random
    as before, and a run of the suite stays reproducible."""
    after = int(mx.random.randint(0, 2**31 - 1, ()).item())
    mx.random.seed(0)
    try:
        yield
    finally:
        mx.random.seed(after)


def run(rows: list[Row] | None = None) -> list:
    """The rows' results (``FormRow``: name, passed, detail), all of them by default."""
    from ..contracts import _row

    out, seen = [], set()
    with _own_generator():
        for r in all_rows() if rows is None else rows:
            name = r.name()
            n = 2
            while name in seen:  # names are the rows' ids (the mutation tool keys them)
                name = f"{r.name()} #{n}"
                n += 1
            seen.add(name)
            out.append(_row(name, r.check))
    return out


__all__ = ["Accept", "Refuse", "Special", "all_rows", "run"]
