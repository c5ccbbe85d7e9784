"""Timing harness shared by every family's benchmark module.

A :class:`Bench` holds, for one layer and shape, closures that run one forward pass
(``fwd``) or one forward+backward pass (``bwd``) *to completion* for each implementation:
``'mlxnote'``, ``'mlx'`` (the best raw-MLX composition of the same math), ``'tf'`` and
optionally others (``'torch'``, ``'mlxnote-noext'``). MLX closures must ``mx.eval`` their
results; TF closures return what a ``tf.function`` computed (eager TF on the CPU returns
once it is computed) and forward+backward closures the forward's value too (see
:func:`tf_timers`); torch closures run eagerly on the CPU, so returning is completion.

Two timing modes: the median of ``repeat`` calls per implementation, one implementation
after the other (the default), or, with ``interleaved=True``, the minimum of ``repeat``
rounds in which every implementation runs in turn (``burst`` timed calls each), so that a
spell of load on this shared machine hits them alike. ``busy=`` names implementations
timed again (interleaved) while one process per usable core spins (:func:`busy_cores`):
their rows get ``impl@busy`` columns.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
    interleaved: bool = False
    burst: int = 1  # interleaved: timed calls per implementation per round
    busy: tuple[str, ...] = ()


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

    def best_peer(self, suffix: str = "") -> float | None:
        """``mlxnote`` over the faster of TF and PyTorch (``suffix='@busy'``: under load)."""
        peers = [self.ms[k + suffix] for k in PEERS if k + suffix in self.ms]
        ours = self.ms.get("mlxnote" + suffix)
        return ours / min(peers) if peers and ours is not None and min(peers) > 0 else None

    def ratios(self) -> dict[str, float | None]:
        """The ratio columns, by JSON key (present when their columns are)."""
        out = {"ours_over_mlx": self.ratio("mlxnote", "mlx"),
               "ours_over_tf": self.ratio("mlxnote", "tf")}
        if "torch" in self.ms:
            out["ours_over_best"] = self.best_peer()
        if "mlxnote" + BUSY in self.ms:
            out["ours_over_tf_busy"] = self.ratio("mlxnote" + BUSY, "tf" + BUSY)
            if "torch" + BUSY in self.ms:
                out["ours_over_best_busy"] = self.best_peer(BUSY)
        return out


PEERS = ("tf", "torch")  # the frameworks mlxnote is measured against
BUSY = "@busy"  # suffix of the columns timed under load
RATIO_COLUMNS = {"ours_over_mlx": ("ours/mlx", 1.05), "ours_over_tf": ("ours/tf", 1.0),
                 "ours_over_best": ("ours/best", 1.0),
                 "ours_over_tf_busy": ("busy ours/tf", 1.0),
                 "ours_over_best_busy": ("busy ours/best", 1.0)}


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


def interleaved_min(impls: dict[str, Callable[[], object]], repeat: int = 9,
                    warmup: int = 2, burst: int = 1) -> dict[str, float]:
    """Min wall time (ms) per implementation over ``repeat`` rounds, each round running
    every implementation in turn, ``burst`` timed calls each (after ``warmup`` untimed
    rounds). A burst of 2 lets the second call run without the previous implementation's
    threads still spinning (TF's, OpenBLAS's and OpenMP's pools busy-wait a while after
    their work): measured here, that doubled sub-millisecond forwards. Each round runs them
    in its own order (a permutation seeded by the round: reproducible), so no
    implementation always follows the same one: PyTorch's OpenMP
    threads still spin through both calls of the next burst (our layer norm 32x128x512
    forward 0.85-1.0 ms right after a torch call, 0.58-0.66 alone), and with a fixed order
    the first column always came right after the last."""
    for _ in range(warmup):
        for fn in impls.values():
            fn()
    gc.collect()
    best = {k: float("inf") for k in impls}
    for r in range(repeat):
        order = list(impls)
        if r:  # the first round in the given order
            random.Random(r).shuffle(order)
        for k in order:
            fn = impls[k]
            for _ in range(burst):
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], 1e3 * (time.perf_counter() - t0))
    return best


SPIN = "while True: pass"


def busy_title(n: int | None = None) -> str:
    n = usable_cpus() if n is None else n
    return f"{BUSY} columns: {n} background processes spinning `{SPIN}` (one per core)"


@contextlib.contextmanager
def busy_cores(n: int | None = None) -> Iterator[int]:
    """One Python process per usable core spinning ``while True: pass`` at normal priority
    for the duration of the block (started on entry, killed by pid on exit)."""
    n = usable_cpus() if n is None else n
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them reach the loop
        yield n
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def torch_timers(module, x_np, threads: int | None = None, *, call: Callable | None = None,
                 wrt_input: bool = True, cotangent=None):
    """``(fwd, bwd)`` closures timing the PyTorch (CPU, eager) ``module`` on the constant
    input ``x_np`` (in torch's layout, e.g. NCHW): the forward under ``torch.no_grad``,
    and the gradients of ``sum(y)`` (or of ``y`` against ``cotangent``, a NumPy array in
    the output's layout) with respect to ``x`` (unless ``wrt_input`` is False) and every
    parameter, where ``y = call(x)`` (default ``module(x)``; e.g. one element of a
    recurrent layer's tuple). ``None`` when torch cannot be imported (it is a
    benchmark-only peer, never a dependency). Runs on ``threads`` intra-op threads
    (default: the usable cores)."""
    try:
        import torch
    except ImportError:
        return None
    import numpy as np

    torch.set_num_threads(threads or usable_cpus())
    call = module if call is None else call
    x = torch.from_numpy(np.ascontiguousarray(x_np))
    xg = x.clone().requires_grad_(True) if wrt_input else x
    ct = None if cotangent is None else torch.from_numpy(np.ascontiguousarray(cotangent))
    params = list(module.parameters())

    def fwd():
        with torch.no_grad():
            return call(x)

    def bwd():
        y = call(xg)
        wrt = ([xg] if wrt_input else []) + params
        return torch.autograd.grad(y.sum() if ct is None else y, wrt, grad_outputs=ct)

    return fwd, bwd


def without_extension(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with mlxnote's C++ extension switched off (``extension.enabled(False)``:
    its pure-MLX formulations), for the ``'mlxnote-noext'`` columns."""
    from mlxnote.kernels import extension

    def run():
        with extension.enabled(False):
            return fn()

    return run


def tf_timers(call: Callable, variables, x_np, wrt_input: bool = True, cotangent=None):
    """``(fwd, bwd)`` closures timing a TensorFlow computation ``call(x)`` (a Keras layer)
    under ``tf.function`` on the constant input ``x_np``: the forward, and the gradients of
    ``sum(call(x))`` (or of ``call(x)`` against ``cotangent``) with respect to ``x`` (unless
    ``wrt_input`` is False) and ``variables``, **together with** the loss ``sum(y)`` (or
    ``y``), as an MLX ``value_and_grad`` or ``vjp`` returns them: a ``tf.function`` prunes
    every op its results do not need, and the gradient of a sum does not need ``y``, so a
    gradient-only function skipped the whole forward of a linear layer (a conv2d
    16x64x64 32->64 "forward+backward" took 34-37 ms that way against 44-47 with the loss,
    the forward alone 12-14). Results are returned as tensors, not copied to NumPy: eager
    TF on the CPU returns from the call once they are computed (``.numpy()`` added a copy,
    1-3 ms for a 16 MB output, the other columns do not pay)."""
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
        grads = tape.gradient(y, ([x] if wrt_input else []) + list(variables),
                              output_gradients=ct)
        return y, grads

    return (lambda: fwd(x)), (lambda: bwd(x))


def _time(b: Bench, impls: dict, progress, label: str) -> dict[str, float]:
    if progress:
        progress(label)
    if b.interleaved:
        return interleaved_min(impls, b.repeat, b.warmup, b.burst)
    out = {}
    for impl, fn in impls.items():
        if progress:
            progress(f"{label} {impl}")
        out[impl] = median_ms(fn, b.repeat, b.warmup)
    return out


def run(benches: list[Bench], progress: Callable[[str], None] | None = None) -> list[Row]:
    """Time every bench; then, under :func:`busy_cores`, the implementations each names in
    ``busy`` (interleaved min), into ``impl@busy`` columns of the same rows."""
    rows, loaded = [], []
    for b in benches:
        for pass_, impls in (("fwd", b.fwd), ("fwd+bwd", b.bwd)):
            if not impls:
                continue
            row = Row(b.family, b.name, pass_, _time(b, impls, progress, f"{b.name} {pass_}"),
                      b.note)
            rows.append(row)
            busy = {k: impls[k] for k in b.busy if k in impls}
            if busy:
                loaded.append((b, row, busy))
    if loaded:
        with busy_cores():
            for b, row, busy in loaded:
                if progress:
                    progress(f"{b.name} {row.pass_} (busy cores)")
                ms = interleaved_min(busy, b.repeat, b.warmup, b.burst)
                row.ms.update({k + BUSY: v for k, v in ms.items()})
    return rows


FIRST, LAST = ("mlxnote", "mlxnote-noext"), PEERS  # column order: ours, raw MLX, the peers


def _column_rank(impl: str) -> tuple[int, int]:
    base = impl.removesuffix(BUSY)
    rank = (FIRST.index(base) if base in FIRST else
            len(FIRST) + 1 + LAST.index(base) if base in LAST else len(FIRST))
    return int(impl.endswith(BUSY)), rank


def _fmt_ratio(x: float | None, limit: float) -> str:
    return "-" if x is None else f"[{'green' if x <= limit else 'red'}]{x:.2f}x"


def _ms(impl: str) -> Callable[[Row], str]:
    return lambda r: f"{r.ms[impl]:.2f}" if impl in r.ms else "-"


def _ratio_cell(key: str) -> Callable[[Row], str]:
    return lambda r: _fmt_ratio(r.ratios().get(key), RATIO_COLUMNS[key][1])


def _slowdown(impl: str) -> Callable[[Row], str]:
    """``impl@busy`` over ``impl``."""
    def cell(r: Row) -> str:
        x = r.ratio(impl + BUSY, impl)
        return "-" if x is None else f"{x:.2f}x"
    return cell


TEXT = {"family": lambda r: r.family, "benchmark": lambda r: r.name,
        "pass": lambda r: r.pass_, "note": lambda r: r.note}


def _table(rows: list[Row], title: str, text: list[str],
           columns: list[tuple[str, Callable[[Row], str]]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in text:
        t.add_column(col, no_wrap=True)
    for col, _ in columns:
        t.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        t.add_row(*(TEXT[c](r) for c in text), *(cell(r) for _, cell in columns))
    return t


def table(rows: list[Row], title: str = "mlxnote benchmarks (median ms)", notes: bool = False):
    """The rows as a rich table: one column per implementation, then the ratio columns
    (ours/mlx and ours/tf always; ours/best, over the faster of TF and PyTorch, when some
    row has a torch column); ``notes`` adds the rows' notes. When some rows have ``@busy``
    columns, a second table below gives those, their ratios, and each one's slowdown
    against its unloaded column."""
    from rich.console import Group

    impls = []
    for r in rows:
        impls += [i for i in r.ms if i not in impls]
    impls.sort(key=_column_rank)
    ratios = [k for k in RATIO_COLUMNS if any(k in r.ratios() for r in rows)]
    text = ["family", "benchmark", "pass"] + (["note"] if notes else [])
    main = _table(rows, title, text,
                  [(i, _ms(i)) for i in impls if not i.endswith(BUSY)]
                  + [(RATIO_COLUMNS[k][0], _ratio_cell(k)) for k in ratios
                     if not k.endswith("_busy")])
    busy = [i for i in impls if i.endswith(BUSY)]
    if not busy:
        return main
    second = _table([r for r in rows if any(i in r.ms for i in busy)],
                    f"{title}, under load: {busy_title()}", text[:3],
                    [(i, _ms(i)) for i in busy]
                    + [(RATIO_COLUMNS[k][0], _ratio_cell(k)) for k in ratios
                       if k.endswith("_busy")]
                    + [(f"{i.removesuffix(BUSY)} slowdown", _slowdown(i.removesuffix(BUSY)))
                       for i in busy])
    return Group(main, second)


def row_json(r: Row) -> dict:
    return {"family": r.family, "name": r.name, "pass": r.pass_, "ms": r.ms, **r.ratios(),
            "note": r.note}


def write_json(rows: list[Row], path: Path, meta: dict, keep_others: bool = False) -> None:
    """Write ``rows`` with ``meta``. With ``keep_others`` (a run of some families only), the
    file's rows of the other families are kept, and ``meta['runs']`` records per family
    when and how (quick or not, the load average at the start) its rows were taken."""
    old = {}
    if keep_others and path.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            old = json.loads(path.read_text())
    fams = {r.family for r in rows} | set(meta.get("families", ()))
    kept = [r for r in old.get("rows", []) if r.get("family") not in fams]
    runs = {k: v for k, v in old.get("meta", {}).get("runs", {}).items() if k not in fams}
    runs.update({f: {k: meta[k] for k in ("date", "quick", "loadavg") if k in meta}
                 for f in fams})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {**meta, "runs": runs},
                                "rows": kept + [row_json(r) for r in rows]}, indent=1))
