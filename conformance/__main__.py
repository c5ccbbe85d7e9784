"""``python -m conformance``: run the suite, print the table, write the reports."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    p.add_argument("--tier", choices=("smoke", "full"), default="full")
    p.add_argument("--layer", action="append", help="only this layer (repeatable)")
    p.add_argument("--case", action="append", help="only this case id (repeatable)")
    p.add_argument("--dtype", action="append", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--out", default="reports", help="folder for conformance.json/.md")
    p.add_argument("--formulation", choices=("auto", "cpu", "gpu"), default=None,
                   help="the branch every layer and kernel takes: 'gpu' runs the Metal/CUDA "
                   "formulations on any device, 'auto' lets the default device decide "
                   "(default: MLXNOTE_FORMULATION, else auto)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    a = p.parse_args(argv)

    from . import report, suite

    console = Console() if sys.stdout.isatty() else Console(width=120)
    if a.list:
        _, chosen = suite.select(a.tier, a.layer, a.case, a.dtype)
        for c in chosen:
            console.print(f"{c.id}  {c.describe()}", highlight=False)
        return 0
    outcome = suite.run(a.tier, a.layer, a.case, a.dtype, progress=not a.no_progress,
                        out=a.out, console=console, formulation=a.formulation)
    title = (f"mlxnote conformance: {a.tier if not a.case else 'selected'} tier, "
             f"{len(outcome.results)} cases, {outcome.seconds:.1f} s, "
             f"{outcome.meta['formulation']} formulation")
    console.print(report.header_line(outcome.meta), highlight=False)
    report.print_summary(console, outcome.results, outcome.problems, title)
    for name, caught, by in outcome.selftest:
        mark = "[green]caught[/]" if caught else "[red]NOT CAUGHT[/]"
        console.print(f"self-test: planted {name}: {mark} {by}")
    for what, rows in (("precision", outcome.precision), ("kernel form", outcome.forms),
                       ("contract", outcome.contracts)):
        bad = [r for r in rows if not r.passed]
        if rows:
            console.print(f"{what} checks: {len(rows) - len(bad)} of {len(rows)} hold"
                          + "".join(f"\n  [red]FAILED[/] {r.name}: {r.detail}" for r in bad),
                          highlight=False)
    n_ok = sum(r.ok for r in outcome.results)
    verdict = "[green]PASS[/]" if outcome.ok else \
        "[red]FAIL[/] (a case, self-test or check above failed)"
    console.print(f"{verdict}: {n_ok} cases passed, {len(outcome.results) - n_ok} failed"
                  + (f"; reports in {a.out}/conformance.md and .json" if a.out else ""))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
