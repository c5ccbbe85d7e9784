"""The harness itself: it catches planted errors, its verdict rules, the expected-failure
registry and the coverage check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance import cases, coverage, selftest, suite, xfail
from conformance.case import Case, Input, LayerSpec
from conformance.compare import compare
from conformance.engine import run_case


def test_planted_errors_are_caught():
    results = selftest.run()
    assert len(results) >= 6
    for name, caught, by in results:
        assert caught, f"planted error not caught: {name}"
        assert by and "Error" not in by, f"{name} was caught by a crash, not a check: {by}"


def test_compare_tolerance_and_oracle_rules():
    ref = np.array([1.0, 2.0, 3.0])
    assert compare("o", ref * (1 + 5e-6), ref, ref, "float32").passed
    bad = compare("o", ref * (1 + 1e-4), ref, ref, "float32")
    assert not bad.passed and bad.worst_index == (2,) and bad.excess > 1
    # Far from TF in float16, but no worse than 2x TF's own error against the oracle: passes.
    oracle = ref + 0.0
    tf16 = ref + np.array([0, 0, 0.01])
    ours = ref + np.array([0, 0, -0.015])
    c = compare("o", ours, tf16, oracle, "float16")
    assert c.passed and c.rule.startswith("oracle")
    assert not compare("o", ref + np.array([0, 0, -0.03]), tf16, oracle, "float16").passed
    assert not compare("o", np.ones(2), np.ones(3), None, "float32").passed
    assert not compare("o", np.array([np.nan, 1.0]), np.array([1.0, 1.0]), None,
                       "float32").passed


def _dense_case(dtype="float32", **kw):
    return Case("dense", dict(output_size=3, input_size=4, **kw), (Input((2, 4)),), dtype)


def test_xfail_registry_semantics():
    specs, all_cases = cases.load()
    case = all_cases[0]
    registry = {case.id: xfail.Expected("pretend it fails", ("output",))}
    out = suite.run(case_ids=[case.id], progress=False, out=None, registry=registry)
    assert out.results[0].status == "xpass" and not out.ok
    assert any("remove the entry" in p for p in out.problems)
    entry = xfail.Expected("why", ("grad:*",))
    assert xfail.unmatched([c.id for c in all_cases], {"nonexistent-*": entry}) == [
        "nonexistent-*"]
    assert xfail.reason_for("dense-abc-float16", {"dense-*-float16": entry}) is entry


def test_expected_failure_keeps_run_green():
    specs, _ = cases.load()
    spec = LayerSpec("dense", specs["dense"].documented, reference=_wrong_reference)
    res = run_case(_dense_case(), spec)
    assert res.status == "fail"
    failing = [c.name for c in res.checks if not c.passed]
    res.xfail = xfail.Expected("known", tuple(failing))
    assert res.status == "xfail" and res.ok
    # Only the named checks may fail: anything else fails the run.
    res.xfail = xfail.Expected("known", ("output",))
    assert "output" in failing and len(failing) > 1
    assert res.status == "fail" and not res.ok


def test_expected_failure_never_hides_a_crash():
    specs, _ = cases.load()

    def broken(case, weights, dtype):
        raise RuntimeError("reference blew up")

    res = run_case(_dense_case(), LayerSpec("dense", specs["dense"].documented,
                                            reference=broken))
    res.xfail = xfail.Expected("known", ("*",))
    assert res.status == "error" and not res.ok


def test_registry_entries_name_their_checks():
    for pattern, entry in xfail.EXPECTED_FAILURES.items():
        assert isinstance(entry, xfail.Expected) and entry.reason and entry.checks, pattern
        assert "*" not in entry.checks, f"{pattern}: name the checks that may fail"


def _wrong_reference(case, weights, dtype):
    from conformance.reference import core

    ref = core.dense(case, weights, dtype)
    fn = ref.fn
    ref.fn = lambda x, training: fn(x, training) * 2
    return ref


def test_coverage_reports_unexercised_arguments():
    spec = LayerSpec("dense", ["output_size", "input_size", "activation", "dtype", "data"])
    cs = [_dense_case()]
    assert coverage.missing({"dense": spec}, cs) == {"dense": ["activation"]}
    ex = coverage.exercised({"dense": spec}, cs + [Case("dense", dict(output_size=2),
                                                        (Input((2, 4)),))])
    assert "None (lazy build)" in ex["dense"]["input_size"] and "4" in ex["dense"]["input_size"]


def test_whole_suite_has_full_coverage_and_valid_registry():
    specs, all_cases = cases.load()
    assert coverage.missing(specs, all_cases) == {}
    assert xfail.unmatched([c.id for c in all_cases]) == []
    for name in specs:
        dts = {c.dtype for c in all_cases if c.layer == name}
        assert dts == {"float32", "float16", "bfloat16"}, f"{name} not in all dtypes: {dts}"


def test_case_ids_are_stable_and_rerunnable(tmp_path):
    c = _dense_case(activation="relu")
    assert c.id == _dense_case(activation="relu").id != _dense_case().id
    _, all_cases = cases.load()
    one = [x for x in all_cases if x.layer == "dense"][0]
    out = suite.run(case_ids=[one.id], progress=False, out=tmp_path)
    assert out.ok and len(out.results) == 1
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["cases"][0]["id"] == one.id


def test_failure_report_has_rerun_command(tmp_path):
    from conformance import report
    from conformance.engine import CaseResult

    specs, _ = cases.load()
    spec = LayerSpec("dense", specs["dense"].documented, reference=_wrong_reference)
    res = run_case(_dense_case(), spec)
    assert isinstance(res, CaseResult) and res.status == "fail"
    report.write_markdown(tmp_path / "r.md", [res], {}, [], report.meta_info("test", 0.0))
    text = (tmp_path / "r.md").read_text()
    assert f"python -m conformance --case {res.case.id}" in text
    assert "worst index" in text


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gradients_are_compared_for_every_weight(dtype):
    specs, _ = cases.load()
    res = run_case(_dense_case(dtype, activation="tanh"), specs["dense"])
    names = [c.name for c in res.checks]
    assert names == ["output", "grad:data", "grad:weight", "grad:bias"] and res.passed
