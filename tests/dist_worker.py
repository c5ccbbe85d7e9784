"""One rank of the data-parallel test (tests/test_distributed_fit.py).

``python dist_worker.py OUTDIR MODE`` with MODE ``parallel`` (under ``mlx.launch``),
``single`` (one process, the reference), ``raise`` (rank 1 raises during epoch 2) or
``hang`` (rank 1 stops for an hour at the start of epoch 2: the collective timeout,
``MLXNOTE_COLLECTIVE_TIMEOUT``, must end rank 0).
Every rank writes ``OUTDIR/rank{r}.json`` (status, traceback, what it printed, how
many checkpoint files it wrote) and ``OUTDIR/rank{r}.npz`` (final weights), because
``mlx.launch`` exits 0 even when a rank fails.
"""

import contextlib  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import io
import json
import sys
import time
import traceback
from pathlib import Path

import mlxnote  # noqa: F401
import mlx.core as mx
import numpy as np

from mlxnote import Sequential, nn
from mlxnote.training import Callback, ModelCheckpoint, SparseCategoricalCrossentropy


def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 61).astype(np.int32)
    x = (rng.normal(0, 2, (3, 6))[y] + rng.normal(0, 1, (61, 6))).astype(np.float32)
    return x, y


class Recorder(Sequential):
    """Records the rows of every batch the model is traced or run on."""

    def __call__(self, x):
        ROWS.append(int(x.shape[0]))
        return super().__call__(x)


ROWS: list[int] = []


class Boom(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("rank 1 fails on purpose")


class Hang(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            print("rank 1 hangs on purpose", file=sys.stderr, flush=True)
            time.sleep(3600)


def main(out: Path, mode: str) -> None:
    group = mx.distributed.init()
    rank = group.rank()
    result = {"rank": rank, "size": group.size(), "status": "running"}
    writes = []
    real_save = mx.save_safetensors

    def counting_save(path, *a, **k):
        writes.append(str(path))
        return real_save(path, *a, **k)

    mx.save_safetensors = counting_save
    printed = io.StringIO()
    try:
        mx.random.seed(rank)  # different starts: fit broadcasts rank 0's weights
        model = Recorder(nn.dense(16, activation="relu"), nn.dense(3))
        model.compile("adam", SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
        x, y = data()
        mx.random.seed(0)
        model(mx.array(x[:1]))  # same initial weights in the single-process reference
        if rank != 0:
            mx.random.seed(99)
            model.set_weights([w + 1 for w in model.get_weights()])
        callbacks = [ModelCheckpoint(out / "ck.safetensors")]
        if mode in ("raise", "hang") and rank == 1:
            callbacks.append(Boom() if mode == "raise" else Hang())
        with contextlib.redirect_stdout(printed):
            hist = model.fit(x, y, epochs=3, batch_size=15, shuffle=False, verbose=2,
                             validation_data=(x[:20], y[:20]), callbacks=callbacks)
        np.savez(out / f"rank{rank}.npz", *model.get_weights())
        result.update(status="ok", history=hist.history)
    except BaseException:
        result.update(status="error", traceback=traceback.format_exc())
        raise
    finally:
        result.update(printed=printed.getvalue(), checkpoint_writes=len(writes),
                      rows=ROWS[1:])
        (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
