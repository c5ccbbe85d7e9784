"""One rank of the distributed metrics test (tests/test_metrics_distributed.py).

``python dist_metrics_worker.py OUTDIR MODE`` (MODE ``parallel`` under the launcher, or
``single``): evaluates fixed predictions with stateful and mean metrics (each rank its
shard of every batch, the sums combined) and fits a small model with them; writes
``OUTDIR/rank{r}.json`` with the logs (or the traceback).
"""

import json  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import sys
import traceback
from pathlib import Path

import mlxnote  # noqa: F401
import mlx.core as mx
import numpy as np

from mlxnote import nn
from mlxnote.training import AUC, Model, Precision, Sequential

METRICS = ["auc", "precision", "recall", "mse", AUC(curve="PR", num_thresholds=30),
           Precision(thresholds=[0.3, 0.6])]


class Passthrough(Model):
    def __call__(self, x):
        return x


def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (61, 1)).astype(np.float32)
    p = np.clip(0.4 * y + 0.6 * rng.random((61, 1)), 0, 1).astype(np.float32)
    return y, p


def main(out: Path, mode: str) -> None:
    group = mx.distributed.init() if mode == "parallel" else None
    rank = group.rank() if group is not None else 0
    res = {"status": "ok"}
    try:
        y, p = data()
        m = Passthrough()
        m.compile("sgd", "binary_crossentropy", metrics=METRICS)
        logs = m.evaluate(p, y, batch_size=16, verbose=0, return_dict=True, group=group)
        res["evaluate"] = {k: np.asarray(v).tolist() for k, v in logs.items()}
        mx.random.seed(1)
        net = Sequential([nn.dense(1, activation="sigmoid")])
        h = net.fit(p * 2 - 1, y, epochs=2, batch_size=16, verbose=0, group=group,
                    loss="binary_crossentropy", metrics=["auc", "recall"])
        res["fit"] = h.history
    except BaseException:
        res = {"status": "failed", "traceback": traceback.format_exc()}
    (out / f"rank{rank}.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
