"""``python -m conformance.mutation``: a seeded, time-bounded mutation run of the suite."""

from __future__ import annotations

import argparse
import sys

from . import driver


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.mutation", description=__doc__)
    p.add_argument("--sample", type=int, default=150, help="mutants (distinct sites)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=3600.0,
                   help="seconds for the mutants, after the baseline (cached)")
    p.add_argument("--files", nargs="+", default=list(driver.DEFAULT_FILES),
                   help="globs relative to the repository root")
    p.add_argument("--layer", action="append", help="only this layer's cases (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--max-cases", type=int, default=300,
                   help="cases per mutant at most (float32 first, the layers in turn)")
    p.add_argument("--out", default="reports")
    p.add_argument("--rejudge", metavar="MUTATION_JSON",
                   help="run a previous report's mutants again (its killed ones carried over)")
    p.add_argument("--no-suite-checks", action="store_true",
                   help="judge by the cases alone (not the kernel-form, contract and "
                   "precision checks a full run also makes)")
    p.add_argument("--refresh", action="store_true",
                   help="recompute the whole baseline (after changing the engine)")
    p.add_argument("--min-rate", type=float, default=None,
                   help="exit 1 when the kill rate is below this (0..1)")
    a = p.parse_args(argv)
    res = driver.run(a.sample, a.seed, a.time_budget, a.files, a.out, a.jobs, a.max_cases,
                     layers=a.layer, refresh=a.refresh, rejudge=a.rejudge,
                     suite=not a.no_suite_checks,
                     say=lambda s: print(s, flush=True))
    print(res["text"], end="")
    rate = res["summary"]["kill_rate"]
    if res["summary"]["listed_equivalent_but_killed"]:
        return 1
    return 0 if a.min_rate is None or (rate is not None and rate >= a.min_rate) else 1


if __name__ == "__main__":
    sys.exit(main())
