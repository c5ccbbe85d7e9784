"""``python -m benchmarks [--family NAME] [--quick]``: time every bench module in one run."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
from pathlib import Path

from rich.console import Console

import benchmarks

from .harness import run, table, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--family", action="append", help="only bench_<family>.py (repeatable)")
    p.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    p.add_argument("--json", default="reports/bench.json")
    a = p.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    mods = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if m.name.startswith("bench_"))
    if a.family:
        mods = [m for m in mods if m[len("bench_"):] in a.family]
    all_rows = []
    for name in mods:
        mod = importlib.import_module(f"benchmarks.{name}")
        with console.status(f"{name}") as status:
            rows = run(mod.benches(a.quick), lambda s, n=name: status.update(f"{n}: {s}"))
        if rows:  # a module may time everything itself (in subprocesses) and print in extra()
            console.print(table(rows, f"{name} (median ms)"))
        all_rows += rows
        if hasattr(mod, "extra"):
            mod.extra(console, a.quick)
    import mlx.core as mx

    write_json(all_rows, Path(a.json), {"mlx": mx.__version__, "machine": platform.machine(),
                                        "quick": a.quick})
    console.print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
