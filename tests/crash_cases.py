"""Run code that once crashed the process (a segfault, a floating point exception) in a
subprocess, so that a crash fails the test that asked instead of killing pytest.

:func:`run_cases` runs ``(label, code)`` pairs in order in one fresh interpreter (with
``mlxnote``, ``mx`` and ``nn`` imported) and returns, per label, the exception each raised
(``{"raised": name or None, "message": str}``); a crash, or a hang past ``timeout``,
fails with the label it died in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

RUNNER = textwrap.dedent("""
    import json, sys
    import mlxnote
    import mlx.core as mx
    from mlxnote import nn
    for label, code in json.loads(sys.argv[1]):
        print(json.dumps({"case": label, "started": True}), flush=True)
        try:
            exec(code)
            out = {"case": label, "raised": None}
        except Exception as e:
            out = {"case": label, "raised": type(e).__name__, "message": str(e)}
        print(json.dumps(out), flush=True)
""")


def run_cases(cases: list[tuple[str, str]], timeout: float = 300) -> dict[str, dict]:
    env = {**os.environ, "MLXNOTE_BLAS": "0"}
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        started = [json.loads(s)["case"] for s in out.splitlines() if '"started"' in s]
        raise AssertionError(f"the process hung (> {timeout} s) in case "
                             f"{started[-1] if started else None!r}") from None
    lines = [json.loads(s) for s in proc.stdout.splitlines() if s.startswith("{")]
    started = [d["case"] for d in lines if d.get("started")]
    assert proc.returncode == 0, (f"the process died (rc={proc.returncode}) in case "
                                  f"{started[-1] if started else None!r}: "
                                  f"{proc.stderr[-2000:]}")
    return {d["case"]: d for d in lines if "raised" in d}


def assert_refused(cases: list[tuple[str, str, str]], timeout: float = 300) -> None:
    """Each ``(label, code, prefix)`` raised a ValueError whose message starts with
    ``prefix``, and nothing crashed."""
    done = run_cases([(label, code) for label, code, _ in cases], timeout)
    for label, _, prefix in cases:
        got = done[label]
        assert got["raised"] == "ValueError", f"{label}: {got}"
        assert got["message"].startswith(prefix), f"{label}: {got['message']!r}"
