"""Timing harness shared by every family's benchmark module.

A :class:`Bench` holds, for one layer and shape, closures that run one forward pass
(``fwd``) or one forward+backward pass (``bwd``) *to completion* for each implementation:
``'mlxnote'``, ``'mlx'`` (the best raw-MLX composition of the same math), ``'tf'`` and
optionally others (``'torch'``). MLX closures must ``mx.eval`` their results; TF closures
must return concrete values (``.numpy()`` or a ``tf.function`` result that is read).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLX_ENABLE_TF32", "0")


@dataclass
class Bench:
    family: str
    name: str
    fwd: dict[str, Callable[[], object]] = field(default_factory=dict)
    bwd: dict[str, Callable[[], object]] = field(default_factory=dict)
    note: str = ""
    repeat: int = 7
    warmup: int = 2


@dataclass
class Row:
    family: str
    name: str
    pass_: str  # 'fwd' or 'fwd+bwd'
    ms: dict[str, float]
    note: str = ""

    def ratio(self, a: str = "mlxnote", b: str = "mlx") -> float | None:
        if a in self.ms and b in self.ms and self.ms[b] > 0:
            return self.ms[a] / self.ms[b]
        return None


def median_ms(fn: Callable[[], object], repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    gc.collect()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def tf_timers(call: Callable, variables, x_np, wrt_input: bool = True, cotangent=None):
    """``(fwd, bwd)`` closures timing a TensorFlow computation ``call(x)`` (a Keras layer)
    under ``tf.function`` on the constant input ``x_np``: the forward, and the gradients of
    ``sum(call(x))`` (or of ``call(x)`` against ``cotangent``) with respect to ``x`` (unless
    ``wrt_input`` is False) and ``variables``. Both return concrete NumPy values."""
    import tensorflow as tf

    x = tf.constant(x_np)
    ct = None if cotangent is None else tf.constant(cotangent)

    @tf.function
    def fwd(x):
        return call(x)

    @tf.function
    def bwd(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            if ct is None:
                y = tf.reduce_sum(y)
        return tape.gradient(y, ([x] if wrt_input else []) + list(variables),
                             output_gradients=ct)

    return (lambda: fwd(x).numpy()), (lambda: [g.numpy() for g in bwd(x)])


def run(benches: list[Bench], progress: Callable[[str], None] | None = None) -> list[Row]:
    rows = []
    for b in benches:
        for pass_, impls in (("fwd", b.fwd), ("fwd+bwd", b.bwd)):
            if not impls:
                continue
            ms = {}
            for impl, fn in impls.items():
                if progress:
                    progress(f"{b.name} {pass_} {impl}")
                ms[impl] = median_ms(fn, b.repeat, b.warmup)
            rows.append(Row(b.family, b.name, pass_, ms, b.note))
    return rows


def table(rows: list[Row], title: str = "mlxnote benchmarks (median ms)"):
    from rich.table import Table

    impls = []
    for r in rows:
        impls += [i for i in r.ms if i not in impls]
    t = Table(title=title, title_justify="left")
    for col in ["family", "benchmark", "pass", *impls, "ours/mlx", "ours/tf"]:
        t.add_column(col, justify="left" if col in ("family", "benchmark", "pass") else "right",
                     no_wrap=True)
    for r in rows:
        cells = [f"{r.ms[i]:.2f}" if i in r.ms else "-" for i in impls]
        rm, rt = r.ratio("mlxnote", "mlx"), r.ratio("mlxnote", "tf")

        def fmt(x, limit):
            if x is None:
                return "-"
            return f"[{'green' if x <= limit else 'red'}]{x:.2f}x"

        t.add_row(r.family, r.name, r.pass_, *cells, fmt(rm, 1.05), fmt(rt, 1.0))
    return t


def write_json(rows: list[Row], path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": [
        {"family": r.family, "name": r.name, "pass": r.pass_, "ms": r.ms,
         "ours_over_mlx": r.ratio("mlxnote", "mlx"), "ours_over_tf": r.ratio("mlxnote", "tf"),
         "note": r.note} for r in rows]}, indent=1))
