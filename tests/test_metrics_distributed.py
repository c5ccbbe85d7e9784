"""Stateful metrics in a data-parallel run (issue 18, part B.2): 2 ranks evaluate the same
data as one process and get the same AUC, precision and recall (their counts are summed
over the ranks with the rest of a step's stats); fit logs them on every rank alike."""


import numpy as np
from test_distributed_fit import parallel_and_single, pytestmark  # noqa: F401  (its marks)


def test_two_ranks_give_the_single_process_metrics(tmp_path):
    want, ranks = parallel_and_single(tmp_path, "dist_metrics_worker.py")
    for res in ranks:
        assert res["evaluate"].keys() == want["evaluate"].keys()
        for k, v in want["evaluate"].items():
            np.testing.assert_allclose(res["evaluate"][k], v, rtol=1e-6, err_msg=k)
    assert ranks[0]["fit"] == ranks[1]["fit"]
    assert set(ranks[0]["fit"]) == {"loss", "auc", "recall"}
    np.testing.assert_allclose(ranks[0]["fit"]["auc"], want["fit"]["auc"], rtol=1e-5)
