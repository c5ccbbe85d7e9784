"""Select cases, run them with a progress bar, apply the expected-failure registry and the
coverage check, and write the reports. ``run()`` is the Python entry point (notebooks use
it); ``python -m conformance`` wraps it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import cases as case_modules
from . import coverage, report, selftest, xfail
from .engine import CaseResult, run_case


@dataclass
class Outcome:
    results: list[CaseResult]
    problems: list[str] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)
    selftest: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.results) and all(
            caught for _, caught, _ in self.selftest)


def select(tier: str = "smoke", layers=None, case_ids=None, dtypes=None):
    specs, all_cases = case_modules.load()
    chosen = all_cases
    if case_ids:
        wanted = set(case_ids)
        chosen = [c for c in all_cases if c.id in wanted]
        missing = wanted - {c.id for c in chosen}
        if missing:
            raise SystemExit(f"unknown case id(s): {sorted(missing)}")
    else:
        if tier == "smoke":
            chosen = [c for c in chosen if c.tier == "smoke"]
        if layers:
            chosen = [c for c in chosen if c.layer in set(layers)]
        if dtypes:
            chosen = [c for c in chosen if c.dtype in set(dtypes)]
    return specs, all_cases, chosen


def run(tier: str = "smoke", layers=None, case_ids=None, dtypes=None, progress: bool = True,
        out: str | Path | None = "reports", console: Console | None = None,
        run_selftest: bool = True, registry: dict[str, str] | None = None) -> Outcome:
    console = console or Console()
    t0 = time.perf_counter()
    specs, all_cases, chosen = select(tier, layers, case_ids, dtypes)
    results: list[CaseResult] = []
    with Progress(TextColumn("[bold]conformance[/] {task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  disable=not progress, transient=True) as bar:
        task = bar.add_task("", total=len(chosen))
        for c in chosen:
            bar.update(task, description=c.id)
            r = run_case(c, specs[c.layer])
            r.xfail = xfail.reason_for(c.id, registry)
            results.append(r)
            bar.advance(task)
    problems = []
    whole_suite = not case_ids and not layers and not dtypes
    if whole_suite:
        for layer, gaps in coverage.missing(specs, all_cases).items():
            problems.append(f"coverage: {layer} never exercises documented argument(s) "
                            f"{gaps}")
        for entry in xfail.unmatched([c.id for c in all_cases], registry):
            problems.append(f"expected-failure entry {entry!r} matches no case")
    for r in results:
        if r.status == "xpass":
            problems.append(f"{r.case.id} passed but is registered as an expected failure "
                            f"({r.xfail.reason}): remove the entry")
    outcome = Outcome(results, problems, coverage.exercised(specs, chosen))
    if run_selftest and whole_suite:
        outcome.selftest = selftest.run()
    outcome.seconds = time.perf_counter() - t0
    if out is not None:
        meta = report.meta_info(tier if not case_ids else "selected cases", outcome.seconds)
        out = Path(out)
        report.write_json(out / "conformance.json", results, outcome.coverage, problems, meta)
        report.write_markdown(out / "conformance.md", results, outcome.coverage, problems, meta,
                              outcome.selftest)
    return outcome
