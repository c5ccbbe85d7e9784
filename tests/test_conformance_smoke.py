"""The smoke tier of the conformance suite, inside `make test`: every family's smoke cases
against TensorFlow, the coverage check and the planted-error self-test."""

from __future__ import annotations

from conformance import suite


def test_smoke_tier_passes(tmp_path):
    outcome = suite.run("smoke", progress=False, out=tmp_path)
    failures = [f"{r.case.id} {r.status}: {r.case.describe()} "
                f"{[c.name + ': ' + c.detail for c in r.checks if not c.passed]} {r.error or ''}"
                for r in outcome.results if not r.ok]
    assert not failures, "\n".join(failures)
    assert not outcome.problems, outcome.problems
    assert outcome.selftest and all(caught for _, caught, _ in outcome.selftest)
    assert (tmp_path / "conformance.json").exists() and (tmp_path / "conformance.md").exists()
    print(f"smoke tier: {len(outcome.results)} cases in {outcome.seconds:.1f} s")
