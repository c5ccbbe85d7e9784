"""Data-parallel fit: 2 ranks on 127.0.0.1 with ``mlx.launch --backend ring``."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
LAUNCH = Path(sys.executable).parent / "mlx.launch"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not LAUNCH.exists() and not shutil.which("mlx.launch"),
                                 reason="mlx.launch not installed")]


def _free_port() -> int:
    """A port p with p and p + 1 free (the ring backend listens on one per rank)."""
    for _ in range(50):
        p = random.randint(20000, 60000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith("MLX_") or
            k == "MLX_ENABLE_TF32"}


def launch(out: Path, mode: str, n: int = 2, ours: bool = False,
           options: tuple[str, ...] = (), script: str = "dist_worker.py"
           ) -> subprocess.CompletedProcess:
    """``mlx.launch`` (or, ``ours``, ``python -m mlxnote.launch``) of ``script``
    (dist_worker.py) with ``out`` and ``mode``."""
    if ours:
        launcher = [sys.executable, "-m", "mlxnote.launch", *options]
    else:
        launcher = [str(LAUNCH) if LAUNCH.exists() else shutil.which("mlx.launch")]
    cmd = [*launcher, "--backend", "ring", "--hosts", "127.0.0.1", "-n", str(n),
           "--starting-port", str(_free_port()), "--python", sys.executable,
           str(HERE / script), str(out), mode]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_env(),
                          cwd=HERE.parent, stdin=subprocess.DEVNULL)


def collect(out: Path, n: int) -> list[dict]:
    """Every rank's result; fails, naming every failed rank, unless every rank wrote one
    and reported success."""
    results, problems = [], []
    for r in range(n):
        f = out / f"rank{r}.json"
        if not f.exists():
            problems.append(f"rank {r} wrote no result")
            continue
        res = json.loads(f.read_text())
        if res["status"] != "ok":
            problems.append(f"rank {r} failed:\n{res.get('traceback', res['status'])}")
            continue
        res["weights"] = list(np.load(out / f"rank{r}.npz").values())
        results.append(res)
    if problems:
        raise AssertionError("\n".join(problems))
    return results


def test_two_ranks_match_each_other_and_a_single_process(tmp_path):
    par, single = tmp_path / "par", tmp_path / "single"
    par.mkdir()
    single.mkdir()
    proc = launch(par, "parallel", ours=True)
    r0, r1 = collect(par, 2)  # raises with the rank's traceback if any rank failed
    assert proc.returncode == 0, proc.stdout + proc.stderr  # mlxnote.launch: all ranks ok
    assert (r0["size"], r1["size"]) == (2, 2), proc.stdout + proc.stderr
    # identical weights on both ranks (rank 1 started from other weights: broadcast)
    for a, b in zip(r0["weights"], r1["weights"]):
        np.testing.assert_array_equal(a, b)
    assert r0["history"] == r1["history"]  # losses and metrics are combined over ranks
    # each rank ran on its half of every batch of 15 (8 rows, padded where short)
    assert max(r0["rows"]) == max(r1["rows"]) == 8, (r0["rows"], r1["rows"])
    # equal to one process training on the full batches
    ref = subprocess.run([sys.executable, str(HERE / "dist_worker.py"), str(single), "single"],
                         capture_output=True, text=True, timeout=180, env=_env())
    (s,) = collect(single, 1)
    assert s["size"] == 1 and max(s["rows"]) == 15, ref.stderr
    for a, b in zip(r0["weights"], s["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k, v in s["history"].items():
        np.testing.assert_allclose(r0["history"][k], v, rtol=1e-5)
    assert s["history"]["accuracy"][-1] > s["history"]["accuracy"][0]
    # only rank 0 prints and writes checkpoints
    assert r0["printed"].count("Epoch") == 3 and r1["printed"] == ""
    assert (r0["checkpoint_writes"], r1["checkpoint_writes"]) == (3, 0)
    assert (par / "ck.safetensors").exists()


def test_a_failing_rank_fails_the_check(tmp_path):
    proc = launch(tmp_path, "raise")
    # mlx.launch itself does not report the failure (it exits 0 here): the per-rank
    # results are what catches it
    with pytest.raises(AssertionError, match="(?s)rank 1 failed:.*rank 1 fails on purpose"):
        collect(tmp_path, 2)
    assert "rank 1 fails on purpose" in proc.stdout + proc.stderr
    # rank 0 did not hang: it lost its peer and failed too (or never finished)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    assert r0["status"] == "error"


def test_trust4_launcher_exits_nonzero_when_a_rank_fails(tmp_path):
    """mlx.launch exits 0 here (above); python -m mlxnote.launch exits with the failed
    rank's status, names it, and ends the other rank."""
    proc = launch(tmp_path, "raise", ours=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("mlxnote.launch: ")]
    assert "rank 1 exited with status 1" in line, out  # rank 0 may be named too: it lost
    # its peer and failed within milliseconds (or was ended)
    assert "rank 1 fails on purpose" in out
    r0 = tmp_path / "rank0.json"  # rank 0 failed on the lost peer, or was ended
    assert not r0.exists() or json.loads(r0.read_text())["status"] != "ok"


def test_trust4_collective_timeout_ends_a_run_whose_rank_hangs(tmp_path):
    """Rank 1 stops for an hour in epoch 2; rank 0 waits in the step's collective until
    the timeout (15 s) ends it with an error naming its rank and the step, and the
    launcher then ends rank 1 and fails. Bounded by launch()'s 180 s."""
    proc = launch(tmp_path, "hang", ours=True, options=("--collective-timeout", "15"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 124, out
    assert "rank 1 hangs on purpose" in out
    assert ("Recorder.fit: rank 0 of 2: collective timeout: training batch 1 of epoch 2/3 "
            "did not finish within 15 s") in out, out
    assert "mlxnote.launch: rank 0 exited with status 124" in out, out
    assert not (tmp_path / "rank1.json").exists()  # rank 1 never got past its sleep


def parallel_and_single(tmp_path, script: str) -> tuple[dict, list[dict]]:
    """``tests/<script>`` on 2 ranks (python -m mlxnote.launch) and as one process: the
    single process's result and each rank's (every one checked to have run)."""
    par, single = tmp_path / "par", tmp_path / "single"
    par.mkdir()
    single.mkdir()
    proc = launch(par, "parallel", ours=True, script=script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = subprocess.run([sys.executable, str(HERE / script), str(single), "single"],
                         capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr

    def result(out, rank):
        res = json.loads((out / f"rank{rank}.json").read_text())
        assert res["status"] == "ok", res.get("traceback")
        return res
    return result(single, 0), [result(par, r) for r in (0, 1)]
