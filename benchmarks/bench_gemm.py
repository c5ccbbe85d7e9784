"""float32 GEMM: OpenBLAS against oneDNN's ``dnnl_sgemm``, both through mlxnote's shim
(``mlxnote/_blas_shim.c``), at the shapes MLX's layers hit, and those layers with the
routing on and off.

- ``gemm``: ``cblas_sgemm`` (row-major, as MLX calls it) called through ctypes, the route
  forced (``_platform.gemm_route``), interleaved min of N rounds; one process per thread
  count (``MLXNOTE_BLAS_ADAPTIVE=0``: a fixed count for both libraries), GFLOP/s. oneDNN's
  columns: every call on it, on the threads the shim gives it (one for the B-transposed
  shapes of its ``dnnl_multi``). Each turn first waits ``SETTLE`` and makes one untimed
  call: both libraries' idle threads spin a while after a call (OpenBLAS's 50-100 ms), and
  a multi-threaded call of the other library in that window stalls (measured: 16 ms
  instead of 0.02 for a 128^3 product).
- ``layers``: mlxnote's dense, multi-head attention, Transformer encoder and LSTM/GRU at
  the shapes of ``bench_core``/``bench_attention``/``bench_recurrent``, forward and
  forward+backward, every float32 GEMM on OpenBLAS (``openblas``), routed by shape
  (``auto``, the default) or every one on oneDNN (``onednn``), interleaved min of N, idle
  and with one spinning process per core (``@busy``).

Needs oneDNN (``pip install 'mlxnote[cpu]'``); without it the module says so and times
nothing. ``python -m benchmarks --family gemm``; the load average is printed with each table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .harness import Bench

ROUTES = ("openblas", "auto", "onednn")
SETTLE = 0.15  # s: the other library's threads spin up to ~100 ms after their last call
REPEAT, QUICK_REPEAT, BURST = 9, 3, 2
TITLE = (f"gemm: mlxnote layers, float32 GEMMs on OpenBLAS / routed by shape / all on oneDNN; "
         f"interleaved min of {REPEAT} rounds x {BURST} calls (ms)")
NOTES = True

# (layer, pass, transa, transb, M, N, K): the row-major products MLX asks for
SHAPES = [
    ("dense 32x512->512", "fwd", "N", "N", 32, 512, 512),
    ("dense 32x512->512", "dx", "N", "T", 32, 512, 512),
    ("dense 32x512->512", "dW", "T", "N", 512, 512, 32),
    ("MHA B8 T256 d256: projection", "fwd", "N", "N", 2048, 256, 256),
    ("MHA B8 T256 d256: projection", "dx", "N", "T", 2048, 256, 256),
    ("MHA B8 T256 d256: projection", "dW", "T", "N", 256, 256, 2048),
    ("MHA h8: q k^T per head", "fwd", "N", "T", 256, 256, 32),
    ("MHA h8: p v per head", "fwd", "N", "N", 256, 32, 256),
    ("LSTM b32 T64 128->256: input", "fwd", "N", "N", 2048, 1024, 128),
    ("LSTM b32: h U per step", "fwd", "N", "N", 32, 1024, 256),
    ("LSTM b32: dh = dg U^T per step", "bwd", "N", "T", 32, 256, 1024),
    ("LSTM b32: dU over all steps", "bwd", "T", "N", 256, 1024, 2048),
    ("Transformer 16x128 256->1024", "fwd", "N", "N", 2048, 1024, 256),
    ("Transformer 16x128 1024->256", "fwd", "N", "N", 2048, 256, 1024),
    ("Transformer 1024->256", "dx", "N", "T", 2048, 1024, 256),
    ("Transformer 256->1024", "dW", "T", "N", 256, 1024, 2048),
    ("B^T, narrow N (stays on OpenBLAS)", "dx", "N", "T", 32, 64, 1024),
    ("square", "fwd", "N", "N", 1024, 1024, 1024),
    ("tiny", "fwd", "N", "N", 8, 8, 8),
    ("small", "fwd", "N", "N", 64, 64, 64),
]


def available() -> str:
    """'' when oneDNN's sgemm is bound in this process, else why not."""
    from mlxnote import _platform

    return "" if _platform.STATUS.dnnl_library else _platform.STATUS.gemm_reason or "no shim"


def load() -> str:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- the GEMMs


def worker_gemm(repeat: int) -> dict:
    """GFLOP/s per shape and library in this process (its thread count fixed by the env)."""
    import ctypes

    import numpy as np

    from mlxnote import _platform

    sh = _platform._handles["shim"]
    f32p = ctypes.POINTER(ctypes.c_float)
    sh.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, f32p, ctypes.c_int, f32p,
                                                    ctypes.c_int, ctypes.c_float, f32p,
                                                    ctypes.c_int]
    rng = np.random.default_rng(0)
    out = {"threads": _platform.STATUS.threads, "rows": []}
    for layer, pass_, ta, tb, m, n, k in SHAPES:
        a = rng.standard_normal((k, m) if ta == "T" else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb == "T" else (k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        args = (101, 112 if ta == "T" else 111, 112 if tb == "T" else 111, m, n, k, 1.0,
                a.ctypes.data_as(f32p), a.shape[1], b.ctypes.data_as(f32p), b.shape[1], 0.0,
                c.ctypes.data_as(f32p), n)
        calls = max(1, int(2e7 // (m * n * k)))  # about 20M multiply-adds a sample
        best = {"openblas": float("inf"), "onednn": float("inf")}
        for _ in range(repeat):
            for route in best:
                _platform.gemm_route(route)
                time.sleep(SETTLE)
                sh.cblas_sgemm(*args)  # untimed: wakes this library's threads
                for _ in range(BURST):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        sh.cblas_sgemm(*args)
                    best[route] = min(best[route], time.perf_counter() - t0)
        gf = {r: 2e-9 * m * n * k * calls / v for r, v in best.items()}
        out["rows"].append({"layer": layer, "pass": pass_, "op": f"{ta}{tb} {m}x{n}x{k}",
                            "gflops": gf})
    _platform.gemm_route("auto")
    return out


def measure_gemm(quick: bool, threads: tuple[int, ...]) -> dict:
    """One worker process per thread count: {threads: worker_gemm's result}."""
    res = {}
    for n in threads:
        env = {**os.environ, "MLXNOTE_BLAS_ADAPTIVE": "0", "MLXNOTE_BLAS_THREADS": str(n)}
        r = subprocess.run([sys.executable, "-m", "benchmarks.bench_gemm", "--worker",
                            str(QUICK_REPEAT if quick else REPEAT)], capture_output=True,
                           text=True, env=env, timeout=1800,
                           cwd=Path(__file__).resolve().parent.parent)
        if r.returncode != 0:
            raise RuntimeError(f"bench_gemm worker failed:\n{r.stderr[-2000:]}")
        res[n] = json.loads(r.stdout.strip().splitlines()[-1])
    return res


def gemm_table(res: dict, title: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in ("layer", "pass", "op MxNxK"):
        t.add_column(col, no_wrap=True)
    for n in res:
        for lib in ("openblas", "onednn"):
            t.add_column(f"{lib} {n}t", justify="right")
        t.add_column(f"dnnl/ob {n}t", justify="right")
    first = next(iter(res.values()))["rows"]
    for i, row in enumerate(first):
        cells = []
        for n in res:
            g = res[n]["rows"][i]["gflops"]
            x = g["onednn"] / g["openblas"]
            cells += [f"{g['openblas']:.1f}", f"{g['onednn']:.1f}",
                      f"[{'green' if x > 1 else 'red'}]{x:.2f}x"]
        t.add_row(row["layer"], row["pass"], row["op"], *cells)
    return t


# -------------------------------------------------------------------------- the layers


def routed(fn):
    """``{route: fn run with float32 GEMMs on that route}`` for the three routes."""
    from mlxnote import _platform

    def make(route):
        def run():
            old = _platform.gemm_route(route)
            try:
                return fn()
            finally:
                _platform.gemm_route(old)
        return run

    return {r: make(r) for r in ROUTES}


def _layer_cases(quick: bool) -> list[tuple[str, object, object, str]]:
    """(name, module, input, note) at the other families' shapes."""
    import mlx.core as mx

    from mlxnote import nn

    from .bench_attention import FF, B, D, H, T

    mx.random.seed(0)
    b, t = (2, 128) if quick else (B, T)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, dropout=0.0,
                                                           norm_first=True),
                                2, nn.layer_norm(D, epsilon=1e-5))
    enc.eval()
    rb, rt, ri, rh = (8, 16, 32, 64) if quick else (32, 64, 128, 256)
    return [
        ("dense 32x512->512 relu", nn.dense(512, 512, activation="relu"), (32, 512),
         "fwd+bwd: gradients of the input and every weight"),
        ("dense 512x1024->1024 relu", nn.dense(1024, 1024, activation="relu"), (512, 1024),
         "bench_core's shape"),
        (f"multihead_attention B{b} T{t} d{D} h{H}", nn.multihead_attention(H, D), (b, t, D),
         "self-attention"),
        (f"Transformer encoder 2 layers B{b} T{t} d{D} ff{FF}", enc, (b, t, D),
         "pre-norm, dropout 0"),
        (f"LSTM b{rb} T{rt} {ri}->{rh}", nn.LSTM(rh, ri), (rb, rt, ri), "last h"),
        (f"GRU b{rb} T{rt} {ri}->{rh}", nn.GRU(rh, ri), (rb, rt, ri), "reset before"),
    ]


def benches(quick: bool) -> list[Bench]:
    import mlx.core as mx

    if available():
        return []
    from .bench_attention import _mx_grad_fn

    out = []
    for name, module, shape, note in _layer_cases(quick):
        x = mx.random.normal(shape)
        mx.eval(x, module.parameters())
        call = (lambda x, m=module: m(x)[0]) if "attention" in name else module
        grad = _mx_grad_fn(module, call)  # the input and every weight
        fwd = routed(lambda call=call, x=x: mx.eval(call(x)))
        bwd = routed(lambda grad=grad, x=x: grad(x))
        out.append(Bench("gemm", name, fwd=fwd, bwd=bwd, note=note, interleaved=True,
                         repeat=QUICK_REPEAT if quick else REPEAT, burst=BURST,
                         busy=ROUTES))
    return out


def extra(console, quick: bool) -> None:
    why = available()
    if why:
        console.print(f"bench_gemm: oneDNN's sgemm is not used ({why}); nothing to compare")
        return
    from mlxnote._platform import usable_cpus

    threads = (1, usable_cpus()) if usable_cpus() > 1 else (1,)
    before = load()
    res = measure_gemm(quick, threads)
    console.print(gemm_table(res, f"gemm: float32 GFLOP/s through the shim, OpenBLAS vs "
                             f"oneDNN, interleaved min of "
                             f"{QUICK_REPEAT if quick else REPEAT} (fixed thread counts; "
                             f"{before} -> {load()})"))
    path = Path("reports/bench_gemm.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quick": quick, "load_before": before, "load_after": load(),
                                "results": res}, indent=1))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        print(json.dumps(worker_gemm(int(sys.argv[sys.argv.index("--worker") + 1]))))
    else:
        from rich.console import Console

        extra(Console(width=200), "--quick" in sys.argv)
