"""The smoke tier of the conformance suite, inside `make test`: one test per smoke case
against TensorFlow (`pytest -k conv2d` selects the conv2d ones), run in the CPU
formulation with mlxnote's C++ extension and with its pure-MLX fallback (`-k noext`), and
in the GPU formulation (`-k gpu`: every layer and kernel takes its Metal/CUDA branch here,
`mlxnote._config.formulation`; the extension is CPU-only, so no ext variant), and the
suite-level checks over every case (coverage against the documentation and the
signatures, the registry of expected failures). The planted-error self-test runs in
test_conformance_engine.py, the GPU-branch one in test_formulation.py."""

from __future__ import annotations

import pytest

from conformance import coverage, suite
from conformance.case import DTYPES
from conformance.engine import run_case
from mlxnote import _config
from mlxnote.kernels import extension

FAMILIES, SMOKE = suite.select("smoke")
# (formulation, C++ extension on)
VARIANTS = {"cpu-ext": ("cpu", True), "cpu-noext": ("cpu", False), "gpu": ("gpu", False)}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", SMOKE, ids=lambda c: c.id)
def test_smoke_case(case, variant):
    formulation, ext = VARIANTS[variant]
    with _config.formulation(formulation), extension.enabled(ext):
        res = run_case(case, FAMILIES.specs[case.layer])
        res.xfail = suite.expected_for(case, FAMILIES.expected)
    failing = [f"{c.name}: {c.detail}" for c in res.checks if not c.passed]
    assert res.ok, (f"{res.status}: {case.describe()} {failing} {res.error or ''}\n"
                    f"rerun: python -m conformance --case {case.id}")


def test_suite_level_checks():
    specs, cases, expected = FAMILIES
    assert coverage.problems(specs, cases) == []
    assert suite.registry_problems(expected, cases) == []
    for c in cases:
        suite.expected_for(c, expected)  # raises if a case matches two entries
    for name in specs:
        dts = {c.dtype for c in cases if c.layer == name}
        assert dts == set(DTYPES), f"{name} not in all dtypes: {dts}"
    assert {c.tier for c in cases} == {"smoke", "full"} and len(SMOKE) < len(cases) / 5
