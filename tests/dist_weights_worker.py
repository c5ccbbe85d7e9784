"""One rank of the distributed weights test (tests/test_weights_distributed.py).

``python dist_weights_worker.py OUTDIR MODE`` (MODE ``parallel`` under the launcher, or
``single``): fits a small model with sample weights, weighted metrics and global gradient
clipping (float32), and one under ``mixed_float16`` with class weights (loss scaling),
each rank its shard of every batch (23 samples in batches of 7: padded shards); writes
``OUTDIR/rank{r}.json`` (logs, weights, the loss scale) or the traceback.
"""

import json  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import sys
import traceback
from pathlib import Path

import mlxnote  # noqa: F401
import mlx.core as mx
import numpy as np

from mlxnote import nn
from mlxnote.training import SGD, Sequential, SparseCategoricalCrossentropy


def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 23).astype(np.int32)
    x = (rng.normal(0, 2, (3, 4))[y] + rng.normal(0, 0.5, (23, 4))).astype(np.float32)
    sw = rng.uniform(0, 3, 23).astype(np.float32)
    return x, y, sw


def fit(policy, group, **kw):
    x, y, _ = data()
    mx.random.seed(1)
    m = Sequential([nn.dense(8, input_size=4, activation="relu"), nn.dense(3)])
    m.dtype_policy = policy
    m.compile(SGD(0.2, global_clipnorm=0.5), SparseCategoricalCrossentropy(from_logits=True),
              ["accuracy"], ["accuracy"])
    h = m.fit(x, y, epochs=2, batch_size=7, shuffle=False, verbose=0, group=group, **kw)
    out = {"history": h.history, "weights": [np.asarray(w).tolist() for w in m.get_weights()]}
    if policy == "mixed_float16":
        out["loss_scale"] = float(m.optimizer.loss_scale)
    return out


def main(out: Path, mode: str) -> None:
    group = mx.distributed.init() if mode == "parallel" else None
    rank = group.rank() if group is not None else 0
    res = {"status": "ok"}
    try:
        _, _, sw = data()
        res["float32"] = fit("float32", group, sample_weight=sw)
        res["mixed_float16"] = fit("mixed_float16", group, class_weight={0: 2.0, 2: 0.5})
    except BaseException:
        res = {"status": "failed", "traceback": traceback.format_exc()}
    (out / f"rank{rank}.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
