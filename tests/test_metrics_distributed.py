"""Stateful metrics in a data-parallel run (issue 18, part B.2): 2 ranks evaluate the same
data as one process and get the same AUC, precision and recall (their counts are summed
over the ranks with the rest of a step's stats); fit logs them on every rank alike."""

import json
import subprocess
import sys

import numpy as np
from test_distributed_fit import HERE, launch, pytestmark  # noqa: F401  (its marks)


def _result(out, rank):
    res = json.loads((out / f"rank{rank}.json").read_text())
    assert res["status"] == "ok", res.get("traceback")
    return res


def test_two_ranks_give_the_single_process_metrics(tmp_path):
    par, single = tmp_path / "par", tmp_path / "single"
    par.mkdir()
    single.mkdir()
    proc = launch(par, "parallel", ours=True, script="dist_metrics_worker.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = subprocess.run([sys.executable, str(HERE / "dist_metrics_worker.py"), str(single),
                          "single"], capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    want = _result(single, 0)
    ranks = [_result(par, r) for r in (0, 1)]
    for res in ranks:
        assert res["evaluate"].keys() == want["evaluate"].keys()
        for k, v in want["evaluate"].items():
            np.testing.assert_allclose(res["evaluate"][k], v, rtol=1e-6, err_msg=k)
    assert ranks[0]["fit"] == ranks[1]["fit"]
    assert set(ranks[0]["fit"]) == {"loss", "auc", "recall"}
    np.testing.assert_allclose(ranks[0]["fit"]["auc"], want["fit"]["auc"], rtol=1e-5)
