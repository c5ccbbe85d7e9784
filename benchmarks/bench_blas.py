"""MLX's CPU backend with and without mlxnote's fast BLAS and CPU cache, against TensorFlow CPU.

The BLAS is chosen once per process, before ``mlx.core`` loads, so each configuration runs in
its own subprocess (``python -m benchmarks.bench_blas --worker mlx`` with ``MLXNOTE_BLAS`` /
``MLXNOTE_CACHE`` set), and TensorFlow in another. ``extra`` prints one table:

- stock: MLX's bundled reference BLAS and 32 MiB CPU cache (``MLXNOTE_BLAS=0 MLXNOTE_CACHE=0``)
- +cache / +BLAS: one of the two switched on
- mlxnote: both on (what ``import mlxnote`` does on Linux)
- 1 thread: mlxnote with a single OpenBLAS thread instead of one per core (what
  ``MLXNOTE_BLAS_THREADS=1`` gives on a busy machine; see mlxnote/_platform.py)

Matmul rows are GFLOP/s (higher is better), the others median ms. Also written to
``reports/bench_blas.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .harness import median_ms

CONFIGS = {  # name: environment
    "stock": {"MLXNOTE_BLAS": "0", "MLXNOTE_CACHE": "0"},
    "+cache": {"MLXNOTE_BLAS": "0", "MLXNOTE_CACHE": ""},
    "+BLAS": {"MLXNOTE_BLAS": "", "MLXNOTE_CACHE": "0"},
    "mlxnote": {"MLXNOTE_BLAS": "", "MLXNOTE_CACHE": ""},
}


def configs() -> dict:
    """CONFIGS, plus mlxnote with a single BLAS thread when the default (one per usable CPU)
    is more: the threads trade-off, measured."""
    from mlxnote._platform import usable_cpus

    out = dict(CONFIGS)
    if usable_cpus() > 1:
        out["1 thread"] = {**CONFIGS["mlxnote"], "MLXNOTE_BLAS_THREADS": "1"}
    return out


def sizes(quick: bool) -> dict:
    return dict(n=512 if quick else 1024, conv_b=4 if quick else 16,
                ln=(16, 256, 512) if quick else (64, 256, 512),
                bn=(4, 64, 64, 64) if quick else (16, 64, 64, 64),
                cnn_b=8 if quick else 32, mlp_b=32 if quick else 128,
                repeat=3 if quick else 7, warmup=1 if quick else 2)


# ------------------------------------------------------------------------------ workers


def worker_mlx(quick: bool) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from mlxnote import _platform

    z = sizes(quick)
    ms = lambda f: median_ms(f, z["repeat"], z["warmup"])  # noqa: E731
    out = {"blas": _platform.STATUS.blas, "threads": _platform.STATUS.threads,
           "cache_limit": mx.set_cache_limit(0)}
    mx.set_cache_limit(out["cache_limit"])
    n = z["n"]
    for dt, name, mult in ((mx.float32, "sgemm", 1), (mx.float64, "dgemm", 1),
                           (mx.complex64, "cgemm", 4)):
        a = mx.random.normal((n, n)).astype(dt)
        b = mx.random.normal((n, n)).astype(dt)
        mx.eval(a, b)
        out[name] = 2 * mult * n**3 / (ms(lambda a=a, b=b: mx.eval(a @ b)) * 1e6)
    x = mx.random.normal((z["conv_b"], 32, 32, 64))
    w = mx.random.normal((64, 3, 3, 64)) * 0.05
    mx.eval(x, w)
    out["conv"] = ms(lambda: mx.eval(mx.conv_general(x, w, padding=1)))
    conv_grad = mx.grad(lambda x, w: mx.conv_general(x, w, padding=1).sum(), argnums=(0, 1))
    out["conv_fb"] = ms(lambda: mx.eval(conv_grad(x, w)))
    xl = mx.random.normal(z["ln"])
    g, b = mx.ones((z["ln"][-1],)), mx.zeros((z["ln"][-1],))
    mx.eval(xl)
    out["layer_norm"] = ms(lambda: mx.eval(mx.fast.layer_norm(xl, g, b, 1e-5)))
    xb = mx.random.normal(z["bn"])
    mx.eval(xb)
    bn = nn.BatchNorm(z["bn"][-1])

    def bn_loss(p, x):
        bn.update(p)
        return bn(x).sum()

    bn_grad = mx.value_and_grad(bn_loss)
    out["batch_norm_fb"] = ms(lambda: mx.eval(bn_grad(bn.trainable_parameters(), xb)))

    class CNN(nn.Module):  # conv-pool-conv-pool-dense, the classic small Keras CNN
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 32, 3, padding=1)
            self.c2 = nn.Conv2d(32, 64, 3, padding=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc = nn.Linear(8 * 8 * 64, 10)

        def __call__(self, x):
            x = self.pool(nn.relu(self.c2(self.pool(nn.relu(self.c1(x))))))
            return self.fc(x.reshape(x.shape[0], -1))

    def mlp():
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))

    for key, model, shape, b in (("cnn_step", CNN(), (32, 32, 3), z["cnn_b"]),
                                 ("mlp_step", mlp(), (784,), z["mlp_b"])):
        mx.random.seed(0)
        opt = optim.SGD(learning_rate=0.01)
        xi = mx.random.normal((b, *shape))
        yi = mx.random.randint(0, 10, (b,))
        mx.eval(model.parameters(), xi, yi)
        step_grad = nn.value_and_grad(model, lambda m, x, y: nn.losses.cross_entropy(
            m(x), y, reduction="mean"))

        def step(model=model, opt=opt, xi=xi, yi=yi, step_grad=step_grad):
            loss, grads = step_grad(model, xi, yi)
            opt.update(model, grads)
            mx.eval(loss, model.parameters(), opt.state)

        out[key] = ms(step)
    return out


def worker_tf(quick: bool) -> dict:
    import tensorflow as tf

    z = sizes(quick)
    ms = lambda f: median_ms(f, z["repeat"], z["warmup"])  # noqa: E731
    out = {"threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}
    n = z["n"]
    for dt, name, mult in ((tf.float32, "sgemm", 1), (tf.float64, "dgemm", 1),
                           (tf.complex64, "cgemm", 4)):
        a = tf.cast(tf.random.normal((n, n)), dt)
        b = tf.cast(tf.random.normal((n, n)), dt)
        mm = tf.function(lambda a, b: tf.linalg.matmul(a, b))
        out[name] = 2 * mult * n**3 / (ms(lambda a=a, b=b, mm=mm: mm(a, b).numpy()) * 1e6)
    x = tf.random.normal((z["conv_b"], 32, 32, 64))
    w = tf.Variable(tf.random.normal((3, 3, 64, 64)) * 0.05)
    conv = tf.function(lambda x: tf.nn.conv2d(x, w, 1, "SAME"))
    out["conv"] = ms(lambda: conv(x).numpy())
    xv = tf.Variable(x)

    @tf.function
    def conv_fb():
        with tf.GradientTape() as t:
            y = tf.reduce_sum(tf.nn.conv2d(xv, w, 1, "SAME"))
        return t.gradient(y, [xv, w])

    out["conv_fb"] = ms(lambda: [g.numpy() for g in conv_fb()])
    xl = tf.random.normal(z["ln"])
    ln = tf.keras.layers.LayerNormalization(epsilon=1e-5)
    ln.build(xl.shape)
    ln_f = tf.function(lambda x: ln(x))
    out["layer_norm"] = ms(lambda: ln_f(xl).numpy())
    xb = tf.random.normal(z["bn"])
    bn = tf.keras.layers.BatchNormalization()
    bn.build(xb.shape)

    @tf.function
    def bn_fb(x):
        with tf.GradientTape() as t:
            y = tf.reduce_sum(bn(x, training=True))
        return y, t.gradient(y, bn.trainable_variables)  # the loss too, as MLX's side

    out["batch_norm_fb"] = ms(lambda: bn_fb(xb))
    L = tf.keras.layers
    cnn = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)), L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2), L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(10)])
    mlp = tf.keras.Sequential([tf.keras.Input((784,)), L.Dense(512, activation="relu"),
                               L.Dense(512, activation="relu"), L.Dense(10)])
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for key, model, shape, b in (("cnn_step", cnn, (32, 32, 3), z["cnn_b"]),
                                 ("mlp_step", mlp, (784,), z["mlp_b"])):
        opt = tf.keras.optimizers.SGD(0.01)
        xi = tf.random.normal((b, *shape))
        yi = tf.random.uniform((b,), 0, 10, dtype=tf.int32)

        @tf.function
        def step(x, y, model=model, opt=opt):
            with tf.GradientTape() as t:
                loss = loss_fn(y, model(x, training=True))
            opt.apply_gradients(zip(t.gradient(loss, model.trainable_variables),
                                    model.trainable_variables))
            return loss

        out[key] = ms(lambda step=step, xi=xi, yi=yi: step(xi, yi).numpy())
    return out


IMPORT_TIMER = ("import time; t = time.perf_counter(); import mlxnote; "
                "print(1e3 * (time.perf_counter() - t))")


def _run(args: list[str], env: dict, timeout: int = 900) -> str:
    e = {**os.environ, **env}
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=e,
                       timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def measure(quick: bool, progress=None) -> dict:
    """Every configuration, each in its own process: {config: {metric: value}}."""
    res = {}
    for name, env in configs().items():
        if progress:
            progress(f"MLX {name}")
        res[name] = json.loads(_run(["-m", "benchmarks.bench_blas", "--worker", "mlx"]
                                    + (["--quick"] if quick else []), env))
        res[name]["import_ms"] = statistics.median(
            float(_run(["-c", IMPORT_TIMER], env)) for _ in range(3))
    if progress:
        progress("TensorFlow")
    res["tf"] = json.loads(_run(["-m", "benchmarks.bench_blas", "--worker", "tf"]
                                + (["--quick"] if quick else []),
                                {"MLXNOTE_BLAS": "0", "MLXNOTE_CACHE": "0"}))
    return res


ROWS = [("sgemm", "matmul float32 {n}² (GFLOP/s)", True), ("dgemm", "matmul float64 {n}²", True),
        ("cgemm", "matmul complex64 {n}²", True),
        ("conv", "conv2d {b}x32x32 64->64 3x3 fwd (ms)", False),
        ("conv_fb", "conv2d same, fwd+bwd", False), ("layer_norm", "layer norm {ln} fwd", False),
        ("batch_norm_fb", "batch norm {bn} fwd+bwd", False),
        ("cnn_step", "CNN train step (conv-pool x2, dense), batch {cb}", False),
        ("mlp_step", "MLP train step 784-512-512-10, batch {mb}", False),
        ("import_ms", "import mlxnote (ms)", False)]


def table(res: dict, quick: bool):
    from rich.table import Table

    z = sizes(quick)
    t = Table(title="blas: MLX CPU backend, stock vs mlxnote's BLAS + cache "
              "(GFLOP/s: higher is better; ms: lower)", title_justify="left")
    names = [c for c in res if c != "tf"]
    for col in ["benchmark", *names, "speed-up", "tf", "ours/tf"]:
        t.add_column(col, justify="left" if col == "benchmark" else "right", no_wrap=True)
    for key, label, higher in ROWS:
        vals = [res[c].get(key) for c in names]
        tfv = res["tf"].get(key)
        ours, stock = res["mlxnote"].get(key), res["stock"].get(key)
        speed = (ours / stock if higher else stock / ours) if ours and stock else None
        ratio = None if tfv is None else (tfv / ours if higher else ours / tfv)
        cells = [f"{v:.1f}" if v is not None else "-" for v in vals]
        t.add_row(label.format(n=z["n"], b=z["conv_b"], ln=z["ln"], bn=z["bn"], cb=z["cnn_b"],
                               mb=z["mlp_b"]),
                  *cells, f"{speed:.1f}x" if speed else "-",
                  f"{tfv:.1f}" if tfv is not None else "-",
                  "-" if ratio is None else f"[{'green' if ratio <= 1 else 'red'}]{ratio:.2f}x")
    m = res["mlxnote"]
    t.caption = (f"mlxnote: BLAS {m['blas']}, {m['threads']} threads, cache limit "
                 f"{m['cache_limit'] / 2**20:.0f} MiB; ours/tf is a time ratio (< 1: mlxnote "
                 f"faster); TF {res['tf']['threads']} threads, default oneDNN settings")
    return t


def benches(quick: bool) -> list:
    return []  # everything runs in subprocesses, in `extra`


def extra(console, quick: bool) -> None:
    with console.status("blas") as status:
        res = measure(quick, lambda s: status.update(f"bench_blas: {s}"))
    console.print(table(res, quick))
    path = Path("reports/bench_blas.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quick": quick, "sizes": sizes(quick), "results": res},
                               indent=1))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        quick = "--quick" in sys.argv
        kind = sys.argv[sys.argv.index("--worker") + 1]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        print(json.dumps(worker_mlx(quick) if kind == "mlx" else worker_tf(quick)))
    else:
        from rich.console import Console

        extra(Console(width=160), "--quick" in sys.argv)
