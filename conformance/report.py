"""The report: a rich table in the terminal, ``reports/conformance.json`` and
``reports/conformance.md`` (argument coverage, and for each failure its worst error,
worst index and a one-line command that reruns it)."""

from __future__ import annotations

import json
import os
import platform
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .compare import NEARBY_DRAWS, NEARBY_ULPS, NOISE_ULPS, ORACLE_FACTOR, TOLERANCES
from .engine import CaseResult

STATUS_STYLE = {"pass": "green", "xfail": "yellow", "fail": "red", "error": "red",
                "xpass": "magenta"}


SHOWN = 32  # values listed per argument in the coverage section (every spelling, mostly)
DT_SHORT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def rerun_command(case_id: str) -> str:
    return f"python -m conformance --case {case_id}"


def summarize(results: list[CaseResult]) -> dict[str, dict]:
    rows: dict[str, dict] = defaultdict(lambda: {"cases": 0, "passed": 0, "failed": 0,
                                                 "xfail": 0, "fwd": 0.0, "grad": 0.0,
                                                 "dtypes": set(), "family": ""})
    for r in results:
        row = rows[r.case.layer]
        row["cases"] += 1
        row["dtypes"].add(r.case.dtype)
        st = r.status
        row["passed"] += st == "pass"
        row["xfail"] += st == "xfail"
        row["failed"] += st in ("fail", "error", "xpass")
        row["fwd"] = max(row["fwd"], r.worst("forward"))
        row["grad"] = max(row["grad"], r.worst("gradient"))
    return rows


def table(results: list[CaseResult], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col, just in (("layer", "left"), ("cases", "right"), ("pass", "right"),
                      ("fail", "right"), ("xfail", "right"), ("dtypes", "left"),
                      ("fwd rel err", "right"), ("grad rel err", "right")):
        t.add_column(col, justify=just, no_wrap=True)
    for layer, row in sorted(summarize(results).items()):
        style = "red" if row["failed"] else "green"
        dts = " ".join(DT_SHORT[d] for d in sorted(row["dtypes"]))
        t.add_row(layer, str(row["cases"]), f"[green]{row['passed']}",
                  f"[{style}]{row['failed']}", str(row["xfail"]), dts, f"{row['fwd']:.2e}",
                  f"{row['grad']:.2e}")
    return t


def print_summary(console: Console, results: list[CaseResult], problems: list[str],
                  title: str) -> None:
    console.print(table(results, title))
    bad = [r for r in results if not r.ok]
    for r in bad[:20]:
        console.print(f"[{STATUS_STYLE[r.status]}]{r.status.upper()}[/] {r.case.id}: "
                      f"{r.case.describe()}")
        if r.error:
            console.print(f"    {r.error.strip().splitlines()[-1]}")
        for c in r.checks:
            if not c.passed:
                console.print(f"    {c.name}: {c.detail}")
        console.print(f"    rerun: [bold]{rerun_command(r.case.id)}[/]")
    if len(bad) > 20:
        console.print(f"... and {len(bad) - 20} more (see reports/conformance.md)")
    for p in problems:
        console.print(f"[red]PROBLEM[/] {p}")


def dtype_summary(results: list[CaseResult]) -> tuple[int, int, list[str]]:
    """``(quantities whose dtype was compared, cases, the mismatches)`` over the results."""
    n, cases, bad = 0, 0, []
    for r in results:
        dts = [c for c in r.checks if c.name.startswith("dtypes")]
        cases += bool(dts)
        n += int(sum(c.max_abs for c in dts))
        bad += [f"{r.case.id}: {c.detail}" for c in dts if not c.passed]
    return n, cases, bad


def write_json(path: Path, results: list[CaseResult], coverage: dict, problems: list[str],
               meta: dict, outcome=None) -> None:
    n_dt, n_cases, dt_bad = dtype_summary(results)
    data = {
        "meta": meta,
        "tolerances": {k: {"rtol": v[0], "atol": v[1]} for k, v in TOLERANCES.items()},
        "oracle_factor": ORACLE_FACTOR,
        "summary": {k: {**v, "dtypes": sorted(v["dtypes"])} for k, v in
                    summarize(results).items()},
        "coverage": coverage,
        "problems": problems,
        "dtypes": {"quantities": n_dt, "cases": n_cases, "mismatches": dt_bad},
        "precision": [r.to_json() for r in getattr(outcome, "precision", [])],
        "kernel_forms": [r.to_json() for r in getattr(outcome, "forms", [])],
        "contracts": [r.to_json() for r in getattr(outcome, "contracts", [])],
        "cases": [r.to_json() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def suite_checks_markdown(outcome) -> list[str]:
    """The report's sections for the suite-level checks: precision bounds, kernels against
    MLX's ops, contracts."""
    lines: list[str] = []
    rows = getattr(outcome, "precision", [])
    if rows:
        lines += ["", "## Precision bounds (the accurate formulations stay accurate)", "",
                  "Relative error against the float64 oracle (max |ours - oracle| / "
                  "max |oracle|, float32); the bound each check asserts, and what the plain "
                  "formulation (patched in for the check) or MLX's own function measured.", "",
                  "| check | ours | bound | rule | plain / MLX | TF | passed |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            def f(v):
                return "" if v is None or v != v else f"{v:.3g}"
            lines.append(f"| {r.name} | {f(r.ours)} | {f(r.bound)} | {r.rule} | {f(r.plain)} "
                         f"| {f(r.tf)} | {'yes' if r.passed else 'NO: ' + r.detail} |")
    for title, key in (("Kernels against MLX's ops (forward and backward, float32: "
                        "max err <= 1e-5 x scale + 1e-6; result dtypes)", "forms"),
                       ("Contracts (conformance/contracts.py)", "contracts")):
        rows = getattr(outcome, key, [])
        if rows:
            bad = [r for r in rows if not r.passed]
            lines += ["", f"## {title}", "", f"{len(rows) - len(bad)} of {len(rows)} hold.", ""]
            lines += [f"- {r.name}: " + ("ok" if r.passed else f"FAILED: {r.detail}")
                      + (f" (worst {r.err:.2g})" if key == "forms" else "") for r in rows]
    return lines


def write_markdown(path: Path, results: list[CaseResult], coverage: dict, problems: list[str],
                   meta: dict, selftest: list[tuple[str, bool, str]] | None = None,
                   outcome=None) -> None:
    lines = [f"# mlxnote conformance report ({meta['tier']} tier)", "",
             f"{header_line(meta)}; {len(results)} cases in {meta['seconds']:.1f} s.", "",
             "Verdict: within the dtype's tolerance of TensorFlow in the same dtype, or within "
             "it of the float64 oracle, or no worse than "
             f"{ORACLE_FACTOR:g}x TensorFlow's own error against the oracle (errors under "
             + ", ".join(f"{n} ulps in {d}" for d, n in NOISE_ULPS.items())
             + " of the largest value count as rounding noise; a float32 quantity that fails "
             f"by under {NEARBY_ULPS} ulps is re-examined on {NEARBY_DRAWS} problems with "
             "inputs and weights within one ulp, by the same rule on mean errors). "
             "Relative errors below are max |ours - oracle| / max |oracle|, over the "
             "quantities whose oracle is not ~0 (max |oracle| >= atol).", "",
             "| dtype | rtol | atol |", "|---|---|---|"]
    lines += [f"| {k} | {v[0]:g} | {v[1]:g} |" for k, v in TOLERANCES.items()]
    lines += ["", "## Summary", "",
              "| layer | cases | passed | failed | xfail | worst fwd rel err | "
              "worst grad rel err |", "|---|---|---|---|---|---|---|"]
    for layer, row in sorted(summarize(results).items()):
        lines.append(f"| {layer} | {row['cases']} | {row['passed']} | {row['failed']} | "
                     f"{row['xfail']} | {row['fwd']:.2e} | {row['grad']:.2e} |")
    n_dt, n_cases, dt_bad = dtype_summary(results)
    lines += ["", "## Dtypes", "",
              f"{n_dt} outputs, gradients and weights of {n_cases} cases had their dtype "
              "compared, before any conversion, with the contract (the layer's dtype, "
              "decisions.md 3; a gradient its input's): "
              + (f"{len(dt_bad)} mismatched." if dt_bad else "all matched.")]
    lines += [f"- {b}" for b in dt_bad[:50]]
    if problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    lines += suite_checks_markdown(outcome)
    bad = [r for r in results if not r.ok]
    lines += ["", f"## Failures ({len(bad)})", ""]
    for r in bad:
        lines += [f"### `{r.case.id}` ({r.status})", "", f"- case: `{r.case.describe()}`",
                  f"- rerun: `{rerun_command(r.case.id)}`"]
        if r.error:
            lines += ["- error:", "", "```", r.error.strip(), "```"]
        for c in r.checks:
            if not c.passed:
                lines.append(f"- `{c.name}`: max abs err {c.max_abs:.3g}, rel err vs oracle "
                             f"{c.rel:.3g} (TF's {c.tf_rel:.3g}), worst index "
                             f"{c.worst_index}: {c.detail}")
        lines.append("")
    again = [(r.case.id, c) for r in results for c in r.checks if "nearby" in c.rule]
    if again:
        lines += [f"## Passed on re-examination ({len(again)} quantities)", "",
                  "One draw of rounding noise failed the rule; the mean over nearby problems "
                  "passed it (compare.py, \"Nearby problems\").", ""]
        lines += [f"- `{cid}` `{c.name}`: {c.detail}" for cid, c in again]
        lines.append("")
    xf = [r for r in results if r.status == "xfail"]
    if xf:
        lines += ["## Expected failures", ""]
        lines += [f"- `{r.case.id}` ({', '.join(c.name for c in r.checks if not c.passed)}): "
                  f"{r.xfail.reason}" for r in xf]
    if selftest:
        lines += ["", "## Harness self-test (planted errors must be caught)", "",
                  "| planted error | caught | by |", "|---|---|---|"]
        lines += [f"| {n} | {'yes' if ok else 'NO'} | {by} |" for n, ok, by in selftest]
    lines += ["", "## Argument coverage", "",
              "Each documented argument and the values it was tested with.", ""]
    for layer, args in sorted(coverage.items()):
        lines += [f"### {layer}", "", "| argument | values |", "|---|---|"]
        for a, vals in args.items():
            shown = ", ".join(f"`{v}`" for v in vals[:SHOWN])
            more = f" (+{len(vals) - SHOWN} more)" if len(vals) > SHOWN else ""
            lines.append(f"| {a} | {shown}{more} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def meta_info(tier: str, seconds: float) -> dict:
    """What a report proved and where: the device the cases ran on, the formulation the
    layers took there (``'gpu'``: the Metal/CUDA branches), how it was chosen, the MLX
    version (and its backend) and TensorFlow's."""
    import mlx.core as mx

    from mlxnote import _config

    try:
        import tensorflow as tf

        tfv = tf.__version__
    except Exception:  # pragma: no cover
        tfv = "unavailable"
    return {"tier": tier, "seconds": seconds, "mlx": mx.__version__, "tensorflow": tfv,
            "platform": f"{platform.system()} {platform.machine()}",
            "device": device_name(), "formulation": _config.formulation_name(),
            "formulation_setting": _config.formulation_setting(),
            "mlx_backend": mlx_backend(), "tf32": os.environ.get("MLX_ENABLE_TF32", "")}


def device_name() -> str:
    """The default device, e.g. ``'Device(gpu, 0) (NVIDIA H200)'``, ``'Device(cpu, 0)'``."""
    import mlx.core as mx

    dev = mx.default_device()
    text = str(dev)
    if dev.type != mx.DeviceType.cpu:
        try:
            info = mx.device_info()
            name = info.get("device_name") or info.get("architecture")
            text += f" ({name})" if name else ""
        except Exception:  # pragma: no cover  (older MLX, or no such query)
            pass
    return text


def mlx_backend() -> str:
    """``'metal'``, ``'cuda'`` or ``'cpu'``: which of MLX's GPU backends this build has."""
    import mlx.core as mx

    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and getattr(cuda, "is_available", lambda: False)():
        return "cuda"
    return "cpu"


def header_line(meta: dict) -> str:
    """One line for the terminal and the Markdown report: device, formulation, versions."""
    how = ("auto: the default device decides" if meta["formulation_setting"] == "auto"
           else f"forced: MLXNOTE_FORMULATION / --formulation {meta['formulation_setting']}")
    return (f"device {meta['device']}, {meta['formulation']} formulation ({how}), "
            f"mlx {meta['mlx']} ({meta['mlx_backend']} backend), tensorflow "
            f"{meta['tensorflow']}, {meta['platform']}, "
            f"MLX_ENABLE_TF32={meta['tf32'] or 'unset'}")
