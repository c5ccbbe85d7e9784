"""Select cases, run them with a progress bar, apply the families' expected failures and
the coverage check, and write the reports. ``run()`` is the Python entry point (notebooks
use it); ``python -m conformance`` wraps it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import contracts, coverage, families, kernel_forms, precision, report, selftest
from .case import Case, Expected
from .engine import CaseResult, run_case


@dataclass
class Outcome:
    results: list[CaseResult]
    problems: list[str] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)
    selftest: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)  # report.meta_info: device, formulation, ...
    precision: list = field(default_factory=list)  # precision.Row (full tier)
    forms: list = field(default_factory=list)  # kernel_forms.FormRow: kernels vs MLX
    contracts: list = field(default_factory=list)  # kernel_forms.FormRow: contracts.py

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.results) and all(
            caught for _, caught, _ in self.selftest) and all(
            r.passed for r in [*self.precision, *self.forms, *self.contracts])


def select(tier: str = "smoke", layers: Sequence[str] | None = None,
           case_ids: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
           ) -> tuple[families.Families, list[Case]]:
    """``(every family's specs, cases and expected failures, the chosen cases)``; case ids
    override the other filters."""
    fam = families.load()
    chosen = all_cases = fam.cases
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
    return fam, chosen


def expected_for(case: Case, entries: Sequence[Expected]) -> Expected | None:
    """The expected-failure entry matching ``case`` in the current formulation (an error if
    several do)."""
    hits = [e for e in entries if e.matches(case) and e.applies()]
    if len(hits) > 1:
        raise ValueError(f"{case.id} matches several expected failures: "
                         f"{[e.describe() for e in hits]}")
    return hits[0] if hits else None


def registry_problems(entries: Sequence[Expected], all_cases: Sequence[Case]) -> list[str]:
    """Entries that match no case of the whole suite (in any formulation), or that name no
    checks."""
    out = [f"expected-failure entry {e.describe()} matches no case" for e in entries
           if not any(e.matches(c) for c in all_cases)]
    out += [f"expected-failure entry {e.describe()} must name the checks that may fail"
            for e in entries if not e.checks or "*" in e.checks]
    out += [f"expected-failure entry {e.describe()}: formulation must be None, 'cpu' or 'gpu'"
            for e in entries if e.formulation not in (None, "cpu", "gpu")]
    out += [f"expected-failure entry {e.describe()}: device must be None, 'cpu' or 'gpu'"
            for e in entries if e.device not in (None, "cpu", "gpu")]
    return out


def run(tier: str = "smoke", layers: Sequence[str] | None = None,
        case_ids: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
        progress: bool = True, out: str | Path | None = "reports",
        console: Console | None = None, run_selftest: bool = True,
        expected: Sequence[Expected] | None = None,
        formulation: str | None = None) -> Outcome:
    """Run the selected cases; the whole suite (no filters) also gets the coverage check,
    the expected-failure registry check and the self-test. ``expected`` replaces the
    families' expected failures. ``formulation`` (``'auto'``, ``'cpu'``, ``'gpu'``; default:
    what ``MLXNOTE_FORMULATION`` says) is the one every layer and kernel takes
    (:func:`mlxnote._config.formulation`): ``'gpu'`` runs the Metal/CUDA branches here."""
    from mlxnote import _config

    with _config.formulation(formulation or _config.formulation_setting()):
        return _run(tier, layers, case_ids, dtypes, progress, out, console, run_selftest,
                    expected)


def _run(tier, layers, case_ids, dtypes, progress, out, console, run_selftest,
         expected) -> Outcome:
    console = console or Console()
    t0 = time.perf_counter()
    (specs, all_cases, fam_expected), chosen = select(tier, layers, case_ids, dtypes)
    entries = fam_expected if expected is None else list(expected)
    results: list[CaseResult] = []
    with Progress(TextColumn("[bold]conformance[/] {task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  disable=not progress, transient=True) as bar:
        task = bar.add_task("", total=len(chosen))
        for c in chosen:
            bar.update(task, description=c.id)
            r = run_case(c, specs[c.layer])
            r.xfail = expected_for(c, entries)
            results.append(r)
            bar.advance(task)
    problems = []
    whole_suite = not case_ids and not layers and not dtypes
    if whole_suite:
        problems += coverage.problems(specs, all_cases)
        problems += registry_problems(entries, all_cases)
    for r in results:
        if r.status == "xpass":
            problems.append(f"{r.case.id} passed but is registered as an expected failure "
                            f"({r.xfail.reason}): remove the entry")
    outcome = Outcome(results, problems, coverage.exercised(specs, chosen))
    if whole_suite:  # the suite-level checks: kernels against MLX, contracts, precision
        outcome.forms = kernel_forms.run()
        outcome.contracts = contracts.run()
        if tier == "full":
            outcome.precision = precision.run()
    if run_selftest and whole_suite:
        outcome.selftest = selftest.run()
    outcome.seconds = time.perf_counter() - t0
    outcome.meta = meta = report.meta_info(tier if not case_ids else "selected cases",
                                           outcome.seconds)
    if out is not None:
        out = Path(out)
        report.write_json(out / "conformance.json", results, outcome.coverage, problems, meta,
                          outcome)
        report.write_markdown(out / "conformance.md", results, outcome.coverage, problems, meta,
                              outcome.selftest, outcome)
    return outcome
