"""The formulation switch (``MLXNOTE_FORMULATION``, ``mlxnote._config.formulation``): every
layer and kernel takes its GPU branch under ``gpu`` on this CPU, the conformance suite runs
that way (``--formulation gpu``) and says so in its report, and a planted error in a
GPU-only branch is caught under the switch and missed without it."""

from __future__ import annotations

import dataclasses
import json
import sys

import mlx.core as mx
import numpy as np
import pytest

from conformance import families, selftest, suite
from conformance.__main__ import main as conformance_main
from conformance.compare import EPS, compare
from conformance.engine import run_case
from mlxnote import _config, nn
from mlxnote.kernels import attention as katt
from mlxnote.kernels import conv as kconv
from mlxnote.kernels import extension, scan
from mlxnote.kernels import norm as knorm

SPECS = families.load().specs
ON_CPU = mx.default_device().type == mx.DeviceType.cpu


def test_switch_reads_the_environment_and_the_override(monkeypatch):
    monkeypatch.delenv(_config.ENV_FORMULATION, raising=False)
    assert _config.formulation_setting() == "auto"
    assert _config.cpu_formulation() == ON_CPU
    monkeypatch.setenv(_config.ENV_FORMULATION, "gpu")
    assert _config.formulation_setting() == "gpu" and not _config.cpu_formulation()
    assert _config.formulation_name() == "gpu"
    with _config.formulation("cpu"):  # the in-process override wins over the environment
        assert _config.cpu_formulation() and _config.formulation_name() == "cpu"
        with _config.formulation("auto"):
            assert _config.cpu_formulation() == ON_CPU
        assert _config.cpu_formulation()
    assert not _config.cpu_formulation()
    monkeypatch.setenv(_config.ENV_FORMULATION, " CPU ")
    assert _config.cpu_formulation()
    monkeypatch.setenv(_config.ENV_FORMULATION, "metal")
    with pytest.raises(ValueError, match="MLXNOTE_FORMULATION got 'metal'; allowed: auto, "
                       "cpu, gpu"):
        _config.cpu_formulation()
    with pytest.raises(ValueError, match="formulation"):
        with _config.formulation("cuda"):
            pass


def test_override_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with _config.formulation("gpu"):
            raise RuntimeError
    assert _config._OVERRIDE[0] is None


def _spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_gpu_formulation_takes_every_gpu_branch(monkeypatch):
    """Each decision _config.cpu_formulation makes, under 'gpu' and under 'cpu'."""
    sdpa = _spy(monkeypatch, mx.fast, "scaled_dot_product_attention")
    fast_ln = _spy(monkeypatch, mx.fast, "layer_norm")
    conv_args = ((2, 8, 8, 4), (4, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1), [(1, 1), (1, 1)])
    q = mx.random.normal((1, 2, 4, 8))
    x = mx.random.normal((2, 8))
    with _config.formulation("gpu"):
        assert _config.compute_dtype(mx.bfloat16) == mx.bfloat16  # 16-bit in 16-bit
        assert _config.compute_dtype(mx.float16) == mx.float16
        assert kconv.choose(*conv_args) == "mlx-fast"
        assert kconv.choose((2, 8, 8, 4), (6, 3, 3, 4), (2, 2), (1, 1), 1, (1, 1)) == "mlx-fast"
        assert extension.get() is None  # the C++ kernels are CPU-only
        assert scan.policy(mx.float32, "none") == (False, False)
        mx.eval(katt.attention(q, q, q, 0.5, causal=True), knorm.layer_norm(x, None, None, 1e-3))
        assert sdpa and fast_ln
        # A 16-bit layer keeps its dtype inside: its dropout sublayer is built in bfloat16.
        assert nn.multihead_attention(2, 8, dropout=0.1, dtype="bfloat16").attn_drop.dtype \
            == mx.bfloat16
    sdpa.clear()
    fast_ln.clear()
    with _config.formulation("cpu"):
        assert _config.compute_dtype(mx.bfloat16) == mx.float32
        assert kconv.choose(*conv_args) in ("ext", "shift", "onednn")
        assert scan.policy(mx.float32, "none") == (True, True)
        if ON_CPU:
            assert (extension.get() is not None) == (extension.module() is not None)
        mx.eval(katt.attention(q, q, q, 0.5, causal=True), knorm.layer_norm(x, None, None, 1e-3))
        assert not fast_ln
        if sys.platform != "darwin":  # off macOS the CPU softmax runs on fast_exp
            assert not sdpa


def test_planted_gpu_branch_error_caught_only_under_the_switch():
    """A mask with its sense inverted in the mx.fast attention call (a GPU-only branch):
    the engine catches it under the GPU formulation; the CPU formulation never takes that
    branch, so the same suite passes (the error would ship unseen without the switch)."""
    (name, patch, case), = selftest.gpu_mutants()
    spec = SPECS[case.layer]
    assert run_case(case, spec).passed  # the unpatched layer passes both ways
    with _config.formulation("gpu"):
        assert run_case(case, spec).passed
        calls: list = []
        with patch(calls):
            caught = run_case(case, spec)
    assert calls, "the GPU formulation did not take the mx.fast branch"
    failing = [c.name for c in caught.checks if not c.passed]
    assert caught.error is None and "output[0]" in failing and "grad:x" in failing, failing
    with _config.formulation("cpu"):
        calls = []
        with patch(calls):
            missed = run_case(case, spec)
    if sys.platform != "darwin":  # on macOS the CPU formulation takes mx.fast in float32
        assert not calls and missed.passed, [c.name for c in missed.checks if not c.passed]


def test_selftest_runs_gpu_mutants_only_under_the_gpu_formulation():
    with _config.formulation("cpu"):
        names = [n for n, _, _ in selftest.run()]
    assert not any("GPU branch" in n for n in names)
    with _config.formulation("gpu"):
        results = selftest.run()
    gpu = [(n, caught) for n, caught, _ in results if "GPU branch" in n]
    assert gpu and all(caught for _, caught in gpu)
    assert all(caught for _, caught, _ in results)


def test_expected_entries_apply_per_formulation_and_device():
    from conformance.case import ABSENT, Expected

    fam = families.load()
    lstm = next(c for c in fam.cases if c.layer == "LSTM" and c.dtype == "bfloat16"
                and c.kwargs.get("activation") == "relu" and "return_sequence" not in c.kwargs)
    entry = Expected("LSTM", "r", ("grad:data",), dtype="bfloat16", formulation="gpu",
                     device="cpu", kwargs=dict(activation="relu", return_sequence=ABSENT))
    assert entry.matches(lstm)
    seq = dict(lstm.kwargs, return_sequence=True)
    assert not entry.matches(dataclasses.replace(lstm, kwargs=seq))
    with _config.formulation("gpu"):
        assert entry.applies() == ON_CPU
        assert (suite.expected_for(lstm, [entry]) is entry) == ON_CPU
    with _config.formulation("cpu"):
        assert not entry.applies() and suite.expected_for(lstm, [entry]) is None
    # an entry for another formulation still matches a case: no registry problem
    assert suite.registry_problems([entry], fam.cases) == []
    bad = Expected("LSTM", "r", ("grad:data",), formulation="metal")
    assert any("formulation must be" in p for p in suite.registry_problems([bad], fam.cases))


def test_16bit_rounding_floor():
    """In 16-bit, errors under 2 ulps of the largest value are noise in the oracle rule
    (compare.py); above 2x that floor, and 2x TF's error, they fail."""
    oracle = np.linspace(-1.0, 1.0, 9)
    ref = oracle.copy()  # TF exact: only the floor can pass a miss
    for dtype in ("float16", "bfloat16"):
        eps = EPS[dtype]
        near = oracle + np.r_[np.zeros(8), 3.9 * eps]
        c = compare("g", near, ref, oracle, dtype)
        assert c.passed and c.rule == f"oracle ({dtype} rounding floor)"
        assert not compare("g", oracle + np.r_[np.zeros(8), 4.5 * eps], ref, oracle,
                           dtype).passed


def test_report_header_says_device_formulation_and_mlx(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(_config.ENV_FORMULATION, raising=False)
    smoke = next(c for c in families.load().cases if c.layer == "multihead_attention"
                 and c.tier == "smoke")
    rc = conformance_main(["--case", smoke.id, "--formulation", "gpu", "--no-progress",
                           "--out", str(tmp_path)])
    assert rc == 0
    meta = json.loads((tmp_path / "conformance.json").read_text())["meta"]
    assert meta["formulation"] == "gpu" and meta["formulation_setting"] == "gpu"
    assert meta["mlx"] == mx.__version__ and meta["device"].startswith("Device(")
    md = (tmp_path / "conformance.md").read_text()
    assert "gpu formulation (forced" in md and f"mlx {mx.__version__}" in md
    out = capsys.readouterr().out
    assert "gpu formulation" in out and meta["device"] in out
    outcome = suite.run(case_ids=[smoke.id], progress=False, out=None, formulation="cpu")
    assert outcome.meta["formulation"] == "cpu" and outcome.ok
    assert _config.formulation_setting() == "auto"  # restored after the run
