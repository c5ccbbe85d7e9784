"""Saves ~96 MiB checkpoints in a loop until killed (used by test_checkpoint.py and
test_trust_training.py).

``python checkpoint_writer.py PATH atomic|direct|stall``: every weight of checkpoint ``i``
equals ``i`` and its epoch is ``i``. Prints ``begin i`` before and ``saved i SECONDS``
after each save. ``direct`` writes with ``mx.save_safetensors`` in place (the control:
not atomic). ``stall`` saves once, then starts a second save that stops for good just
before its rename (the temporary file complete), prints ``stalled`` and waits to be
killed: a writer killed mid-save, deterministically.
"""

import os  # noqa: I001  (mlxnote is imported before mlx: it configures MLX)
import sys
import time

import mlxnote  # noqa: F401
import mlx.core as mx
import numpy as np

from mlxnote import Sequential, nn

BIG = (2048, 4096)


def make_model():
    m = Sequential(nn.dense(BIG[1], BIG[0]))
    m.compile("adam", "mse")
    return m


def _stall(src, dst):
    print("stalled", flush=True)
    time.sleep(3600)


def main(path: str, mode: str) -> None:
    m = make_model()
    m.fit(np.zeros((2, BIG[0]), np.float32), np.zeros((2, BIG[1]), np.float32), verbose=0)
    i = 0
    while True:
        i += 1
        m.set_weights([np.full(BIG, i, np.float32), np.full(BIG[1], i, np.float32)])
        m.epoch = i
        mx.eval(m.parameters())
        print(f"begin {i}", flush=True)
        t = time.perf_counter()
        if mode == "stall" and i == 2:
            os.replace = _stall
        if mode in ("atomic", "stall"):
            m.save(path)
        else:
            arrays, meta = m._checkpoint_arrays()
            mx.save_safetensors(path, arrays, metadata=meta)
        print(f"saved {i} {time.perf_counter() - t:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
