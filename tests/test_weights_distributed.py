"""Sample/class weights, clipping and mixed precision in a data-parallel run (issue 18,
part A): 2 ranks (padded shards of odd batches) train as one process does: the weights
are averaged over the ranks' weighted sums, the global norm is of the averaged gradients,
and the loss scale moves alike on every rank."""


import numpy as np
from test_distributed_fit import parallel_and_single, pytestmark  # noqa: F401  (its marks)


def test_two_ranks_train_as_one_process(tmp_path):
    want, (r0, r1) = parallel_and_single(tmp_path, "dist_weights_worker.py")
    assert r0 == r1  # every rank the same weights and logs
    for policy, rtol in (("float32", 1e-5), ("mixed_float16", 2e-2)):
        got, ref_ = r0[policy], want[policy]
        assert set(got["history"]) == {"loss", "accuracy", "weighted_accuracy"}
        for k, v in ref_["history"].items():
            np.testing.assert_allclose(got["history"][k], v, rtol=rtol, err_msg=k)
        for a, b in zip(got["weights"], ref_["weights"]):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 0.1)
    assert r0["mixed_float16"]["loss_scale"] == want["mixed_float16"]["loss_scale"]
