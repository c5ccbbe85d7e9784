"""``python -m benchmarks [--family NAME] [--quick]``: time every bench module in one run.

Each module runs in its own process (its tables stream to this terminal), so that one
family's memory and thread state (TensorFlow's and OpenBLAS's spinning pools, a 780 MiB
attention peak) cannot slow the next: measured, layer_norm's forward pass took 37 ms after
the attention rows in a shared process against 11 ms alone. The rows are merged into one
JSON file (reports/bench.json; a run of some families keeps the file's rows of the others).

A module may set ``TITLE`` (its table's title, default "<module> (median ms)") and
``NOTES = True`` (a column with each row's note).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import benchmarks

from .harness import Row, run, table, write_json


def _run_here(name: str, quick: bool, console: Console) -> list[Row]:
    mod = importlib.import_module(f"benchmarks.{name}")
    with console.status(f"{name}") as status:
        rows = run(mod.benches(quick), lambda s, n=name: status.update(f"{n}: {s}"))
    if rows:  # a module may time everything itself (in subprocesses) and print in extra()
        console.print(table(rows, getattr(mod, "TITLE", f"{name} (median ms)"),
                            notes=getattr(mod, "NOTES", False)))
    if hasattr(mod, "extra"):
        mod.extra(console, quick)
    return rows


def _run_child(name: str, quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "benchmarks", "--family", name[len("bench_"):],
               "--in-process", "--json", str(out)] + (["--quick"] if quick else [])
        subprocess.run(cmd, check=True)
        data = json.loads(out.read_text())
    return [Row(r["family"], r["name"], r["pass"], r["ms"], r["note"]) for r in data["rows"]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--family", action="append", help="only bench_<family>.py (repeatable)")
    p.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    p.add_argument("--json", default="reports/bench.json")
    p.add_argument("--in-process", action="store_true",
                   help="run the modules in this process (default: one process each)")
    a = p.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    mods = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if m.name.startswith("bench_"))
    if a.family:
        mods = [m for m in mods if m[len("bench_"):] in a.family]
    load, date = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M:%S")
    all_rows = []
    for name in mods:
        alone = a.in_process or len(mods) == 1
        all_rows += _run_here(name, a.quick, console) if alone else _run_child(name, a.quick)
    import mlx.core as mx

    meta = {"mlx": mx.__version__, "machine": platform.machine(), "quick": a.quick,
            "date": date, "loadavg": load,
            "families": [m[len("bench_"):] for m in mods]}
    write_json(all_rows, Path(a.json), meta, keep_others=bool(a.family))
    console.print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
