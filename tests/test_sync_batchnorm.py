"""Synchronized batch_norm across two processes: ``mlx.launch`` runs
``tests/sync_bn_worker.py`` on 127.0.0.1 with the ring backend, each rank on half of a batch.
Every rank's outputs, moving statistics and input gradients must equal those of
``batch_norm`` on the concatenated batch in one process, and the ranks' gamma/beta gradients
must sum to the whole batch's. Each rank's result file is read and checked here, because
``mlx.launch`` exits 0 even when a rank fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sync_bn_worker as worker  # noqa: E402

LAUNCH = Path(sys.executable).with_name("mlx.launch")


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (the ring backend listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 1 < 65536:
            try:
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import mlx.core as mx

    if not mx.distributed.is_available():
        pytest.skip("mlx built without distributed support")
    launch = str(LAUNCH) if LAUNCH.exists() else shutil.which("mlx.launch")
    if launch is None:
        pytest.skip("mlx.launch not found")
    out = tmp_path_factory.mktemp("sync_bn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent)] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                              else [])))
    cmd = [launch, "--backend", "ring", "--hosts", "127.0.0.1", "-n", "2",
           "--starting-port", str(_free_port_pair()), "--python", sys.executable,
           str(HERE / "sync_bn_worker.py"), str(out)]
    # Own session, so that a hung rank (the launcher's grandchild) is killed with it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(HERE.parent), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"mlx.launch timed out after 120 s\n{stdout[-3000:]}\n{stderr[-3000:]}")
    errors = {p.name: p.read_text() for p in out.glob("*.err")}
    log = f"mlx.launch exit {proc.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    assert not errors, f"rank(s) failed: {errors}\n{log}"
    files = sorted(out.glob("rank*.npz"))
    assert [f.name for f in files] == ["rank0.npz", "rank1.npz"], f"missing results\n{log}"
    return [dict(np.load(f)) for f in files]


@pytest.fixture(scope="module")
def whole():
    """The concatenated batch in one process, unsynchronized."""
    x, w, ct, weights = worker.problem()
    return worker.run(x, w, ct, weights, synchronized=False)


@pytest.mark.slow  # mlx.launch, 2 ranks
def test_every_rank_reports(ranks):
    assert [int(r["rank"]) for r in ranks] == [0, 1]
    assert all(int(r["size"]) == 2 for r in ranks)


@pytest.mark.slow  # mlx.launch, 2 ranks
@pytest.mark.parametrize("step", ["plain", "masked"])
def test_each_rank_has_the_concatenated_batch_statistics(ranks, whole, step):
    for r in ranks:
        for stat in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(r[f"{step}_{stat}"], whole[f"{step}_{stat}"],
                                       rtol=1e-5, atol=1e-6,
                                       err_msg=f"rank {int(r['rank'])} {step} {stat}")
        half = slice(4 * int(r["rank"]), 4 * int(r["rank"]) + 4)
        np.testing.assert_allclose(r[f"{step}_y_eval"], whole[f"{step}_y_eval"][half],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # mlx.launch, 2 ranks
@pytest.mark.parametrize("step", ["plain", "masked"])
def test_gradients_are_the_concatenated_batch_gradients(ranks, whole, step):
    for r in ranks:
        half = slice(4 * int(r["rank"]), 4 * int(r["rank"]) + 4)
        np.testing.assert_allclose(r[f"{step}_dx"], whole[f"{step}_dx"][half], rtol=1e-4,
                                   atol=1e-5, err_msg=f"rank {int(r['rank'])} {step} dx")
    for p in ("dgamma", "dbeta"):
        np.testing.assert_allclose(ranks[0][f"{step}_{p}"] + ranks[1][f"{step}_{p}"],
                                   whole[f"{step}_{p}"], rtol=1e-4, atol=1e-5)


def test_unsynchronized_halves_differ(whole):
    """The check can fail: without synchronization, a half's statistics are not the
    whole batch's."""
    x, w, ct, weights = worker.problem()
    half = worker.run(x[:4], w[:4], ct[:4], weights, synchronized=False)
    assert not np.allclose(half["plain_moving_mean"], whole["plain_moving_mean"], atol=1e-4)
