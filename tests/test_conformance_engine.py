"""The harness itself: it catches planted errors, its verdict rules, the execution modes,
the expected failures and the coverage check."""

from __future__ import annotations

import json
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from conformance import coverage, families, selftest, suite
from conformance.case import Case, Expected, Fn, Input, LayerSpec, resolve
from conformance.compare import NEARBY_DRAWS, compare
from conformance.engine import CaseResult, run_case

FAMILIES = families.load()


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


def test_nearby_problems_rule():
    from conformance.arrays import nudge
    from conformance.compare import NEARBY_ULPS, nearby, reexaminable

    a = np.array([0.0, 1.0, -3.5, 1e-30, 7.0], np.float64)
    moved = nudge(a, np.random.default_rng(0))
    ulps = np.abs(moved - a) / np.spacing(np.abs(a).astype(np.float32))
    assert moved[0] == 0 and ulps.max() <= 1 and (moved != a).any()
    ref = np.array([1e-3, 2.0, 3.0])
    ulp = 3 * 2.0 ** -23  # of the largest value

    def off(n, dtype="float32"):
        return compare("o", ref + n * ulp, ref, ref, dtype)

    few = off(20)
    assert not few.passed and reexaminable(few, "float32")
    assert not reexaminable(off(2 * NEARBY_ULPS), "float32")
    assert not reexaminable(compare("o", ref + 0.01, ref, ref, "float16"), "float16")
    # one lucky TF draw: on average over nearby problems ours is no worse
    assert nearby(few, [2.4e-6, 1e-6, 3e-6], [1e-7, 2e-6, 3.5e-6], "float32").passed
    worse = off(20)
    assert not nearby(worse, [2.4e-6, 2.4e-6], [1e-7, 3e-7], "float32").passed
    assert "mean error over 2 problems" in worse.detail


def test_planted_20_ulp_error_survives_reexamination():
    """A 20-ulp error (above the 8-ulp floor, below the 64-ulp limit) is re-examined on
    nearby problems and still fails: the re-examination forgives rounding noise only."""
    from mlxnote import nn

    class Off(nn.dense):
        def __call__(self, data):
            y = super().__call__(data)
            return y + mx.stop_gradient(20 * 2.0 ** -23 * mx.abs(y).max())

    res = run_case(_dense_case(), _dense_spec(), cls=Off)
    bad = [c for c in res.checks if not c.passed]
    assert res.error is None and [c.name for c in bad] == ["output"], (res.error, bad)
    assert f"mean error over {NEARBY_DRAWS} problems" in bad[0].detail, bad[0].detail
    assert run_case(_dense_case(), _dense_spec()).passed


def _dense_case(dtype="float32", **kw):
    return Case("dense", dict(output_size=3, input_size=4, **kw), (Input((2, 4)),), dtype)


def _wrong_reference(case, weights, dtype):
    from conformance.reference import core

    ref = core.dense(case, weights, dtype)
    fn = ref.fn
    ref.fn = lambda x, training: fn(x, training) * 2
    return ref


def _dense_spec(**kw):
    dense = FAMILIES.specs["dense"]
    return LayerSpec("dense", dense.args, dense.call_args,
                     **{"reference": dense.reference, **kw})


# -- the data contract -----------------------------------------------------------------
def test_function_table_resolves_each_side():
    import tensorflow as tf

    assert Fn("square").mlx is mx.square and Fn("square").tf is tf.square
    assert resolve({"f": ["relu", Fn("sin")], "h": (Fn("sin"),)}, "mlx") == {
        "f": ["relu", mx.sin], "h": (mx.sin,)}
    with pytest.raises(KeyError, match="nope"):
        Fn("nope")


def test_contract_does_not_import_tensorflow():
    code = ("import sys, conformance.case, conformance.arrays; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_layer_spec_validates_modes():
    with pytest.raises(ValueError, match="modes"):
        LayerSpec("dense", [], modes=("untraced",))
    with pytest.raises(ValueError, match="custom check"):
        LayerSpec("dense", [], check=lambda trial: [], modes=("vjp", "compiled"))


# -- execution modes -------------------------------------------------------------------
def test_recurrent_cases_run_every_mode_in_float32():
    lstm = [c for c in FAMILIES.cases if c.layer == "LSTM" and len(c.inputs) == 3][:2]
    for case in lstm:
        names = [c.name for c in run_case(case, FAMILIES.specs["LSTM"]).checks]
        extra = [n for n in names if n.endswith(("untraced", "compiled"))]
        if case.dtype == "float32":
            assert extra == ["dtypes untraced", "output[0] untraced", "dtypes compiled",
                             "output[0] compiled"], names
        else:
            assert extra == [], names


def test_compiled_mode_catches_a_compiled_only_error():
    from mlxnote import nn

    class CompiledOnlyError(nn.dense):
        """Right when evaluated, 1e-3 off inside mx.compile (which refuses to evaluate)."""

        def __call__(self, data):
            y = super().__call__(data)
            try:
                mx.eval(y)
            except ValueError:
                return y * (1 + 1e-3)
            return y

    spec = _dense_spec(modes=("vjp", "untraced", "compiled"))
    res = run_case(_dense_case(), spec, cls=CompiledOnlyError)
    assert res.error is None, res.error
    assert [c.name for c in res.checks if not c.passed] == ["output[0] compiled"]
    assert run_case(_dense_case(), spec).passed


# -- expected failures -----------------------------------------------------------------
def test_expected_failures_match_readable_data():
    e = Expected("dense", "why", ("grad:*",), dtype="float16", kwargs={"activation": "relu"})
    assert e.matches(_dense_case("float16", activation="relu"))
    assert not e.matches(_dense_case("float32", activation="relu"))
    assert not e.matches(_dense_case("float16"))  # absent is not a match, not even for None
    assert not Expected("dense", "why", ("o",), kwargs={"activation": None}).matches(
        _dense_case())
    twice = [e, Expected("dense", "again", ("output",))]
    with pytest.raises(ValueError, match="several"):
        suite.expected_for(_dense_case("float16", activation="relu"), twice)
    assert suite.expected_for(_dense_case(), twice) is twice[1]


def test_registry_rules():
    case = FAMILIES.cases[0]
    entry = Expected(case.layer, "pretend it fails", ("output",), dtype=case.dtype,
                     kwargs=case.kwargs, call_kwargs=case.call_kwargs, mode=case.mode)
    out = suite.run(case_ids=[case.id], progress=False, out=None, expected=[entry])
    assert out.results[0].status == "xpass" and not out.ok
    assert any("remove the entry" in p for p in out.problems)
    nowhere = Expected("dense", "why", ("output",), kwargs={"output_size": 12345})
    vague = Expected("dense", "why", ("*",))
    problems = suite.registry_problems([nowhere, vague], FAMILIES.cases)
    assert len(problems) == 2 and "matches no case" in problems[0]
    assert "name the checks" in problems[1]


def test_expected_failure_keeps_run_green():
    res = run_case(_dense_case(), _dense_spec(reference=_wrong_reference))
    assert res.status == "fail"
    failing = [c.name for c in res.checks if not c.passed]
    res.xfail = Expected("dense", "known", tuple(failing))
    assert res.status == "xfail" and res.ok
    # Only the named checks may fail: anything else fails the run.
    res.xfail = Expected("dense", "known", ("output",))
    assert "output" in failing and len(failing) > 1
    assert res.status == "fail" and not res.ok


def test_expected_failure_never_hides_a_crash():
    def broken(case, weights, dtype):
        raise RuntimeError("reference blew up")

    res = run_case(_dense_case(), _dense_spec(reference=broken))
    res.xfail = Expected("dense", "known", ("*",))
    assert res.status == "error" and not res.ok


# -- coverage --------------------------------------------------------------------------
def test_coverage_reports_unexercised_arguments():
    spec = LayerSpec("dense", ["output_size", "input_size", "activation", "dtype"],
                     ["data"])
    cs = [_dense_case()]
    assert coverage.missing({"dense": spec}, cs) == {"dense": ["activation"]}
    spec.call_args = ["data", "mask"]
    assert coverage.missing({"dense": spec}, cs) == {"dense": ["activation", "call:mask"]}
    ex = coverage.exercised({"dense": spec}, cs + [Case("dense", dict(output_size=2),
                                                        (Input((2, 4)),))])
    assert "None (lazy build)" in ex["dense"]["input_size"] and "4" in ex["dense"]["input_size"]


def test_coverage_compares_documentation_with_signatures():
    dense = FAMILIES.specs["dense"]
    left_off = LayerSpec("dense", [a for a in dense.args if a != "name"] + ["bogus"])
    assert coverage.signature_differences({"dense": left_off}) == {"dense": [
        "documented constructor argument 'bogus' is not in the signature",
        "constructor argument 'name' is not documented"]}
    # training= is a declared alias of train_flag: accepted only next to it.
    drop = FAMILIES.specs["dropout"]
    assert coverage.signature_differences({"dropout": drop}) == {}
    no_flag = LayerSpec("dropout", drop.args, ["data"])
    assert coverage.signature_differences({"dropout": no_flag}) == {"dropout": [
        "call argument 'train_flag' is not documented",
        "call argument 'training' is not documented"]}
    wrong_alias = LayerSpec("group_normalization", ["groups"], alias_of="layer_norm")
    assert "a different class" in coverage.signature_differences(
        {"group_normalization": wrong_alias})["group_normalization"][0]


# -- reports ---------------------------------------------------------------------------
def test_case_ids_are_stable_and_rerunnable(tmp_path):
    c = _dense_case(activation="relu")
    assert c.id == _dense_case(activation="relu").id != _dense_case().id
    one = [x for x in FAMILIES.cases if x.layer == "dense"][0]
    out = suite.run(case_ids=[one.id], progress=False, out=tmp_path)
    assert out.ok and len(out.results) == 1
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["cases"][0]["id"] == one.id
    assert (tmp_path / "conformance.md").exists()


def test_failure_report_has_rerun_command(tmp_path):
    from conformance import report

    res = run_case(_dense_case(), _dense_spec(reference=_wrong_reference))
    assert isinstance(res, CaseResult) and res.status == "fail"
    report.write_markdown(tmp_path / "r.md", [res], {}, [], report.meta_info("test", 0.0))
    text = (tmp_path / "r.md").read_text()
    assert f"python -m conformance --case {res.case.id}" in text
    assert "worst index" in text


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gradients_are_compared_for_every_weight(dtype):
    res = run_case(_dense_case(dtype, activation="tanh"), FAMILIES.specs["dense"])
    names = [c.name for c in res.checks]
    assert names == ["output", "grad:data", "grad:weight", "grad:bias", "set_weights",
                     "dtypes", "attributes"] and res.passed


# -- dtypes, the set_weights round trip, the suite-level checks ------------------------------
def test_dtypes_are_compared_before_conversion():
    from mlxnote import nn

    class Float32Out(nn.dense):
        def __call__(self, data):
            return super().__call__(data).astype(mx.float32)  # exact values, wrong dtype

    case = _dense_case("bfloat16")
    res = run_case(case, FAMILIES.specs["dense"], cls=Float32Out)
    failing = [c for c in res.checks if not c.passed]
    assert [c.name for c in failing] == ["dtypes"]
    assert "output is float32, not bfloat16" in failing[0].detail
    # an input handed over in float32: the output keeps the layer's dtype, the input's
    # gradient the input's dtype
    given = Case("dense", dict(output_size=3, input_size=4),
                 (Input((2, 4), given="float32"),), "bfloat16")
    assert given.id != Case("dense", dict(output_size=3, input_size=4), (Input((2, 4)),),
                            "bfloat16").id
    res = run_case(given, FAMILIES.specs["dense"])
    assert res.passed, [c.detail for c in res.checks if not c.passed]
    dt = next(c for c in res.checks if c.name == "dtypes")
    assert dt.max_abs == 6  # output, 3 gradients, 2 weights


def test_set_weights_round_trip_reaches_inner_layers():
    from conformance.engine import weight_round_trip
    from conformance.families.transformer_blocks import B
    from mlxnote import nn
    from mlxnote.nn import layer_norm

    blk = nn.TransformerEncoderLayer(**B)
    assert weight_round_trip(blk, _dense_case()) == []
    assert "set_weights" not in vars(layer_norm)
    layer_norm.set_weights = lambda self, weights, layout="note": None  # a broken one
    try:
        found = weight_round_trip(blk, _dense_case())
    finally:
        del layer_norm.set_weights
    assert any("layer_norm at norm1" in f for f in found), found


def test_kernel_forms_and_contracts_hold():
    from conformance import contracts, kernel_forms

    rows = kernel_forms.run() + contracts.run()
    assert len(rows) > 60
    assert all(r.passed for r in rows), [f"{r.name}: {r.detail}" for r in rows if not r.passed]


def test_precision_bound_of_a_fast_function():
    from conformance import precision
    from mlxnote.kernels import fastmath

    check = next(p for p in precision._fastmath() if p.name == "fast_exp")
    row = precision.run_function(check)
    assert row.passed and row.ours < row.bound <= 1e-7 and row.plain > 4 * row.bound
    fastmath._EXP_IMPL.clear()  # an extra term in the polynomial (recompiled): caught
    with precision.patched(fastmath, "_EXP_POLY", fastmath._EXP_POLY[:1] +
                           fastmath._EXP_POLY):
        assert not precision.run_function(check).passed
    fastmath._EXP_IMPL.clear()


def test_precision_checks_apply_where_their_formulation_runs():
    from conformance import precision
    from mlxnote import _config
    from mlxnote.kernels import extension

    by = {p.name.split(" ")[0]: p for p in precision.LAYER_CHECKS}
    with _config.formulation("cpu"):
        assert precision.missing_needs(by["conv3d_transpose"]) == ""
        with extension.enabled(False):
            assert "extension" in precision.missing_needs(by["batch_norm"])
    with _config.formulation("gpu"):
        assert "CPU-formulation" in precision.missing_needs(by["conv3d_transpose"])
        assert precision.missing_needs(by["dense"]) == ""
