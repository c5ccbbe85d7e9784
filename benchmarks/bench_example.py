"""The documented conv3d_transpose example at its documented size: 16 filters, a 5x5x5
kernel, relu, on an input of 32x24x24x24x100 (output 32x28x28x28x16), forward only, as
the documentation runs it; time and memory against Keras (issue 16: within 2x of both).

Each implementation runs in its own process, so that its peak resident memory is its
own: the input is made first, then the layer is called ``REPEAT`` times (each result
evaluated); the table gives the first call (with the layer's build and any kernel
set-up), the fastest later call, and the peak RSS above the RSS after the input existed
(``VmHWM``, reset to the RSS by ``/proc/self/clear_refs``, minus that RSS, from
``/proc/self/status``: the layer's working memory, its 45 MB output included).
Implementations: ``mlxnote`` (the C++ extension),
``mlxnote-noext`` (``MLXNOTE_EXT=0``: the pure-MLX formulation, im2col + GEMM with
bounded column buffers), ``keras`` (``keras.layers.Conv3DTranspose``, eager, as the
documentation calls it) and ``torch`` (``torch.nn.ConvTranspose3d`` on the channels-first
input, ``no_grad``; skipped when torch is not installed). ``mx.conv_transpose3d`` is not
run: MLX's CPU kernel builds a column buffer of about 1.1 GB per sample (35 GB here).
``--quick``: batch 2. It writes ``reports/bench_example.json`` (``$BENCH_EXAMPLE_JSON``
overrides the path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TITLE = "the documented conv3d_transpose example"
SHAPE = (32, 24, 24, 24, 100)
REPEAT = 4
IMPLS = ("mlxnote", "mlxnote-noext", "keras", "torch")


def benches(quick: bool) -> list:
    return []  # everything runs in subprocesses, in extra()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _layer(impl: str, shape):
    """A callable running the example once to a finished result, and the input."""
    import numpy as np

    x_np = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    if impl.startswith("mlxnote"):
        import mlxnote  # noqa: F401, I001  (before mlx: the fast BLAS and cache)
        import mlx.core as mx
        from mlxnote.nn import conv3d_transpose

        x = mx.array(x_np)
        mx.eval(x)
        layer = conv3d_transpose(filters=16, kernel_size=[5, 5, 5], input_size=100,
                                 activation="relu")
        return lambda: mx.eval(layer(x)), x
    if impl == "keras":
        import keras
        import tensorflow as tf

        x = tf.constant(x_np)
        layer = keras.layers.Conv3DTranspose(16, 5, activation="relu")
        return lambda: layer(x).numpy(), x
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 4, 1, 2, 3)))
    layer = torch.nn.ConvTranspose3d(100, 16, 5)

    def call():
        with torch.no_grad():
            return torch.relu(layer(x))

    return call, x


def child(impl: str, quick: bool) -> dict:
    """Run one implementation here; the measurements as a dict."""
    shape = (2,) + SHAPE[1:] if quick else SHAPE
    call, x = _layer(impl, shape)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
        base = _status_kb("VmRSS")
    except OSError:  # no /proc (macOS): times only
        base = None
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    peak = None if base is None else max(0, _status_kb("VmHWM") - base) / 1024
    return {"impl": impl, "first_s": times[0], "best_s": min(times[1:]), "peak_mib": peak,
            "shape": list(shape)}


def _spawn(impl: str, quick: bool) -> dict | None:
    env = dict(os.environ)
    if impl == "mlxnote-noext":
        env["MLXNOTE_EXT"] = "0"
    code = ("import json, sys; from benchmarks.bench_example import child; "
            f"print('@@' + json.dumps(child({impl.replace('-noext', '')!r}, {quick})))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            out = json.loads(line[2:])
            out["impl"] = impl
            return out
    tail = (p.stderr or "").strip().splitlines()[-1:] or ["no output"]
    return {"impl": impl, "error": tail[0]}


def extra(console, quick: bool) -> None:
    from rich.table import Table

    rows = []
    for impl in IMPLS:
        if impl == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        rows.append(_spawn(impl, quick))
    keras = next((r for r in rows if r["impl"] == "keras" and "error" not in r), None)
    t = Table(title=f"{TITLE}, input {'2' if quick else '32'}x24x24x24x100: first call, best "
                    f"of {REPEAT - 1} later calls (s), peak RSS above the input's (MiB)")
    for col in ("implementation", "first s", "best s", "peak MiB", "time / keras",
                "memory / keras"):
        t.add_column(col, justify="left" if col == "implementation" else "right")
    for r in rows:
        if "error" in r:
            t.add_row(r["impl"], "-", "-", "-", "-", r["error"][:60])
            continue
        mem = r["peak_mib"] is not None and keras and keras["peak_mib"]
        t.add_row(r["impl"], f"{r['first_s']:.3f}", f"{r['best_s']:.3f}",
                  "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
                  f"{r['best_s'] / keras['best_s']:.2f}" if keras else "-",
                  f"{r['peak_mib'] / keras['peak_mib']:.2f}" if mem else "-")
    console.print(t)
    out = Path(os.environ.get("BENCH_EXAMPLE_JSON", ROOT / "reports" / "bench_example.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": quick, "loadavg": os.getloadavg(), "rows": rows},
                              indent=1))
    console.print(f"wrote {out}")
