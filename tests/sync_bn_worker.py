"""One rank of the synchronized batch_norm test (run by ``mlx.launch``; see
``tests/test_sync_batchnorm.py``).

Each rank normalizes its half of a fixed batch with ``batch_norm(synchronized=True)`` for two
training steps (unmasked, then with fractional mask weights), and writes what it computed to
``OUTDIR/rank{R}.npz``; a failure writes ``OUTDIR/rank{R}.err`` instead, because
``mlx.launch`` exits 0 even when a rank fails.

Usage: ``python sync_bn_worker.py OUTDIR``
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import numpy as np

SHAPE = (8, 3, 5)  # the whole batch; rank r gets rows [4r, 4r + 4)


def problem():
    """The batch, mask weights, cotangent and weights every process (and the test) uses."""
    rng = np.random.default_rng(42)
    x = (rng.standard_normal(SHAPE) * 3 + 2).astype(np.float32)
    w = rng.uniform(0.0, 2.0, SHAPE[:-1]).astype(np.float32)
    ct = rng.standard_normal(SHAPE).astype(np.float32)
    weights = [rng.standard_normal(5).astype(np.float32) * 0.1,  # moving_mean
               rng.uniform(0.5, 1.5, 5).astype(np.float32),  # moving_variance
               rng.standard_normal(5).astype(np.float32),  # beta
               rng.uniform(0.5, 1.5, 5).astype(np.float32)]  # gamma
    return x, w, ct, weights


def run(x, w, ct, weights, synchronized: bool) -> dict[str, np.ndarray]:
    """Two training steps (plain, then masked); outputs, moving statistics and gradients."""
    import mlx.core as mx

    from mlxnote import nn

    bn = nn.batch_norm(5, momentum=0.8, synchronized=synchronized)
    bn.set_weights(weights)
    out = {}
    for step, mask in (("plain", None), ("masked", mx.array(w))):
        def loss(xx, gamma, beta, mask=mask):
            bn.gamma, bn.beta = gamma, beta
            return mx.sum(bn(xx, mask=mask) * mx.array(ct)), bn(xx, train_flag=False)

        (_, y_eval), grads = mx.value_and_grad(loss, argnums=(0, 1, 2))(
            mx.array(x), bn.gamma, bn.beta)
        mx.eval(grads, y_eval, bn.moving_mean, bn.moving_variance)
        out.update({f"{step}_dx": np.array(grads[0]), f"{step}_dgamma": np.array(grads[1]),
                    f"{step}_dbeta": np.array(grads[2]),
                    f"{step}_moving_mean": np.array(bn.moving_mean),
                    f"{step}_moving_variance": np.array(bn.moving_variance),
                    f"{step}_y_eval": np.array(y_eval)})
    return out


def main(outdir: str) -> None:
    rank = -1
    try:
        import mlx.core as mx

        import mlxnote  # noqa: F401

        group = mx.distributed.init(strict=True, backend="ring")
        rank, size = group.rank(), group.size()
        if size != 2:
            raise RuntimeError(f"expected 2 ranks, got {size}")
        x, w, ct, weights = problem()
        half = slice(4 * rank, 4 * rank + 4)
        res = run(x[half], w[half], ct[half], weights, synchronized=True)
        np.savez(Path(outdir) / f"rank{rank}.npz", rank=rank, size=size, **res)
    except Exception:
        name = f"rank{rank}.err" if rank >= 0 else f"pid{os.getpid()}.err"
        (Path(outdir) / name).write_text(traceback.format_exc())
        raise


if __name__ == "__main__":
    main(sys.argv[1])
