"""batch_norm (training mode, moving statistics updated) and layer_norm, interleaved min
of N: mlxnote with its C++ extension and without it, the best raw-MLX composition, Keras
(``tf.function``) and PyTorch CPU (eager, one intra-op thread per core; the column is left
out when ``import torch`` fails: a benchmark-only peer, never a dependency), forward and
forward+backward (gradients with respect to the input, gamma and beta, for a random
cotangent, in every column).

Columns: ``mlxnote``; ``mlxnote+compile`` (the layer inside ``mx.compile`` with
``model.state`` captured); ``mlxnote-noext`` (``extension.enabled(False)``: the pure-MLX
formulation, eager); ``mlx`` (batch norm: one-pass moments ``E[x^2] - E[x]^2`` and
``x * a + c``, autodiff, the fastest raw composition measured here; layer norm:
``mx.fast.layer_norm``); ``mlx+compile`` (the same, compiled); ``tf``; ``torch``
(``torch.nn.BatchNorm2d`` in training mode, NCHW, momentum 0.01 = Keras's 0.99, running
statistics updated in the forward too; ``torch.nn.LayerNorm``; ``torch.nn.GroupNorm``,
NCHW). Epsilon 1e-3 (Keras's). Group norm: 8 groups; its ``mlx`` column one-pass moments
over the (N, S, G, C/G) view.
Rows: the first issue's shapes, and issue 17's layer norm 32x128x512 (an 8 MB input). The
``@busy`` columns time mlxnote, TF and PyTorch again while one process per core spins
(``harness.busy_cores``).

:func:`extra` repeats the forward+backward rows with MLX's stock 32 MiB CPU buffer cache
(mlxnote raises it on import; see ``mlxnote/_platform.py``).
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np

from .harness import Bench, median_ms, run, tf_timers, torch_timers, without_extension

EPS = 1e-3
REPEAT, QUICK_REPEAT, BURST = 9, 3, 2
TITLE = (f"norm: interleaved min of {REPEAT} rounds x {BURST} calls (ms; --quick: "
         f"{QUICK_REPEAT} rounds)")


def _raw_bn(red):
    def f(x, g, b):
        m = mx.mean(x, red)
        v = mx.maximum(mx.mean(x * x, red) - m * m, 0.0)
        a = g * mx.rsqrt(v + EPS)
        return x * a + (b - m * a)
    return f


GROUPS = 8


def _raw_gn(x, g, b):
    """Group norm: one-pass moments per sample and group over (N, S, G, C/G), x * a + c."""
    xg = x.reshape(x.shape[0], -1, GROUPS, x.shape[-1] // GROUPS)
    m = mx.mean(xg, (1, 3), keepdims=True)
    v = mx.maximum(mx.mean(xg * xg, (1, 3), keepdims=True) - m * m, 0.0)
    a = g.reshape(1, 1, GROUPS, -1) * mx.rsqrt(v + EPS)
    return (xg * a + (b.reshape(1, 1, GROUPS, -1) - m * a)).reshape(x.shape)


def _raw_ln(x, g, b):
    return mx.fast.layer_norm(x, g, b, EPS)


def _layer_fns(layer, x, ct):
    """fwd / fwd+bwd closures for an mlxnote layer, eager and compiled (state captured)."""
    def apply(x, g, b):
        layer.gamma, layer.beta = g, b
        return layer(x)

    state = [layer.state]
    c_apply = mx.compile(apply, inputs=state, outputs=state)

    @partial(mx.compile, inputs=state, outputs=state)
    def c_vjp(x, g, b, ct):
        return mx.vjp(apply, [x, g, b], [ct])

    def eager_fwd():
        mx.eval(apply(x, g, b), layer.state)

    def eager_bwd():
        mx.eval(mx.vjp(apply, [x, g, b], [ct]), layer.state)

    g, b = layer.gamma, layer.beta
    fwd = {"mlxnote": eager_fwd,
           "mlxnote+compile": lambda: mx.eval(c_apply(x, g, b), layer.state),
           "mlxnote-noext": without_extension(eager_fwd)}
    bwd = {"mlxnote": eager_bwd,
           "mlxnote+compile": lambda: mx.eval(c_vjp(x, g, b, ct), layer.state),
           "mlxnote-noext": without_extension(eager_bwd)}
    return fwd, bwd


def _raw_fns(f, x, g, b, ct):
    cf = mx.compile(f)
    c_vjp = mx.compile(lambda x, g, b, ct: mx.vjp(f, [x, g, b], [ct]))
    fwd = {"mlx": lambda: mx.eval(f(x, g, b)), "mlx+compile": lambda: mx.eval(cf(x, g, b))}
    bwd = {"mlx": lambda: mx.eval(mx.vjp(f, [x, g, b], [ct])),
           "mlx+compile": lambda: mx.eval(c_vjp(x, g, b, ct))}
    return fwd, bwd


def _torch_norm(kind: str, c: int):
    """``torch.nn.BatchNorm2d`` (training mode) or ``LayerNorm`` over the last axis, gamma
    1 and beta 0 like the others; ``None`` without torch."""
    try:
        import torch
    except ImportError:
        return None
    if kind == "bn":
        return torch.nn.BatchNorm2d(c, eps=EPS, momentum=0.01).train()
    if kind == "gn":
        return torch.nn.GroupNorm(GROUPS, c, eps=EPS)
    return torch.nn.LayerNorm(c, eps=EPS)


def _benches(quick: bool) -> list[Bench]:
    import keras

    from mlxnote import nn

    rng = np.random.default_rng(0)
    out = []
    for name, shape, make, k_layer, raw in [
        ("batch_norm", (4, 16, 16, 64) if quick else (16, 64, 64, 64),
         lambda c: nn.batch_norm(c), keras.layers.BatchNormalization, "bn"),
        ("layer_norm", (8, 64, 512) if quick else (64, 256, 512),
         lambda c: nn.layer_norm(c), keras.layers.LayerNormalization, "ln"),
        ("layer_norm", (4, 32, 512) if quick else (32, 128, 512),
         lambda c: nn.layer_norm(c), keras.layers.LayerNormalization, "ln"),
        ("group_norm", (4, 16, 16, 64) if quick else (16, 64, 64, 64),
         lambda c: nn.group_norm(GROUPS, c), partial(keras.layers.GroupNormalization, GROUPS),
         "gn"),
    ]:
        c = shape[-1]
        x_np = rng.standard_normal(shape).astype(np.float32)
        ct_np = rng.standard_normal(shape).astype(np.float32)
        x, ct = mx.array(x_np), mx.array(ct_np)
        layer = make(c)
        mx.eval(x, ct, layer.parameters())
        fwd, bwd = _layer_fns(layer, x, ct)
        f = {"bn": _raw_bn(tuple(range(len(shape) - 1))), "gn": _raw_gn, "ln": _raw_ln}[raw]
        g, b = mx.ones((c,)), mx.zeros((c,))
        rf, rb = _raw_fns(f, x, g, b, ct)
        kl = k_layer(epsilon=EPS)
        kl.build(shape)
        call = (lambda x, kl=kl: kl(x, training=True)) if name == "batch_norm" else kl
        tf_f, tf_b = tf_timers(call, kl.trainable_variables, x_np, cotangent=ct_np)
        fwd, bwd = {**fwd, **rf, "tf": tf_f}, {**bwd, **rb, "tf": tf_b}
        module = _torch_norm(raw, c)
        if module is not None:
            # batch and group norm: NCHW (torch's layout), the cotangent moved with it
            move = (lambda a: np.moveaxis(a, -1, 1)) if raw != "ln" else (lambda a: a)
            fwd["torch"], bwd["torch"] = torch_timers(module, move(x_np),
                                                      cotangent=move(ct_np))
        label = f"{name} {'x'.join(map(str, shape))}" + (" train" if raw == "bn" else "")
        out.append(Bench("norm", label, fwd=fwd, bwd=bwd, interleaved=True,
                         repeat=QUICK_REPEAT if quick else REPEAT, burst=BURST,
                         busy=("mlxnote", "tf", "torch")))
    return out


def benches(quick: bool) -> list[Bench]:
    return _benches(quick)


def extra(console, quick: bool) -> None:
    """The forward+backward rows again with MLX's stock 32 MiB CPU cache (eager columns)."""
    from rich.table import Table

    if mx.default_device() != mx.cpu:
        return
    old = mx.set_cache_limit(32 << 20)
    mx.clear_cache()
    try:
        t = Table(title="norm fwd+bwd with MLX's stock 32 MiB CPU cache (median ms)",
                  title_justify="left")
        for col in ("benchmark", "mlxnote", "mlx"):
            t.add_column(col, justify="left" if col == "benchmark" else "right")
        for b in _benches(quick):
            ms = [median_ms(b.bwd[k], b.repeat, b.warmup) for k in ("mlxnote", "mlx")]
            t.add_row(b.name, *(f"{v:.2f}" for v in ms))
        console.print(t)
    finally:
        mx.set_cache_limit(old)


if __name__ == "__main__":  # python -m benchmarks.bench_norm [--quick]
    import sys

    for r in run(benches("--quick" in sys.argv)):
        print(r.name, r.pass_, {k: round(v, 2) for k, v in r.ms.items()})
