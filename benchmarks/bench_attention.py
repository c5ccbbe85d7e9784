"""Attention family: mlxnote vs raw MLX vs Keras/TF (``tf.function``), float32.

Rows (forward, and forward+backward with the gradients of every weight and the input):

* multi-head self-attention, batch 8, sequence 256, d_model 256, 8 heads:
  ``mlxnote`` (``nn.multihead_attention``, its output), ``mlx.nn``
  (``mlx.nn.MultiHeadAttention(bias=True)``), ``mlx`` (four ``addmm`` projections around
  ``mx.fast.scaled_dot_product_attention``), ``tf`` (``keras.layers.MultiHeadAttention``);
* a 2-layer Transformer encoder (pre-norm, d_model 256, 8 heads, feed-forward 1024, final
  LayerNorm, dropout 0) on the same input: ``mlxnote`` (``nn.TransformerEncoder``),
  ``mlx.nn`` (``mlx.nn.TransformerEncoder``), ``tf`` (the same blocks from Keras
  ``MultiHeadAttention``, ``Dense`` and ``LayerNormalization``).

:func:`extra` prints the linear-attention scaling curve: time and peak memory
(``mx.get_peak_memory``) of one head (batch 1, 64 channels) of full softmax attention
(``mx.fast.scaled_dot_product_attention``, and the mlxnote kernel) against FAVOR (``m`` = 64
features, non-causal and causal) and Linformer (``k`` = 256) for L = 512 ... 8192, forward
and forward+backward.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as mnn
import numpy as np

from .harness import Bench, median_ms, tf_timers

B, T, D, H, FF = 8, 256, 256, 8, 1024


def _mx_grad_fn(module, f):
    """fwd+bwd closure: gradients of every trainable weight and the input."""
    params = module.trainable_parameters()

    def loss(p, x):
        module.update(p)
        return f(x).sum()

    g = mx.value_and_grad(loss, argnums=(0, 1))
    return lambda x: mx.eval(g(params, x))


def _mha_bench(quick: bool) -> Bench:
    import keras

    from mlxnote import nn

    b, t = (2, 128) if quick else (B, T)
    x_np = np.random.default_rng(0).standard_normal((b, t, D)).astype(np.float32)
    x = mx.array(x_np)
    mx.random.seed(0)
    ours = nn.multihead_attention(H, D)
    ref = mnn.MultiHeadAttention(D, H, bias=True)
    ws = {k: ours.get_weights()[i] for i, k in enumerate(
        ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"])}
    raw = {k: mx.array(v) for k, v in ws.items()}

    def raw_mha(p, x):
        bsz, n, _ = x.shape
        def heads(w, bias):
            return mx.addmm(p[bias], x.reshape(-1, D), p[w]).reshape(bsz, n, H, -1) \
                .transpose(0, 2, 1, 3)
        o = mx.fast.scaled_dot_product_attention(heads("wq", "bq"), heads("wk", "bk"),
                                                 heads("wv", "bv"), scale=(D // H) ** -0.5)
        o = o.transpose(0, 2, 1, 3).reshape(-1, D)
        return mx.addmm(p["bo"], o, p["wo"]).reshape(bsz, n, D)

    raw_g = mx.value_and_grad(lambda p, x: raw_mha(p, x).sum(), argnums=(0, 1))
    k = keras.layers.MultiHeadAttention(num_heads=H, key_dim=D // H)
    k(x_np[:1], x_np[:1])
    k.set_weights([ws["wq"].reshape(D, H, -1), ws["bq"].reshape(H, -1),
                   ws["wk"].reshape(D, H, -1), ws["bk"].reshape(H, -1),
                   ws["wv"].reshape(D, H, -1), ws["bv"].reshape(H, -1),
                   ws["wo"].reshape(H, -1, D), ws["bo"]])
    tf_fwd, tf_bwd = tf_timers(lambda x: k(x, x), k.trainable_variables, x_np)
    ours_bwd = _mx_grad_fn(ours, lambda x: ours(x)[0])
    ref_bwd = _mx_grad_fn(ref, lambda x: ref(x, x, x))
    return Bench("attention", f"multihead self-attention B{b} T{t} d{D} h{H}",
                 fwd={"mlxnote": lambda: mx.eval(ours(x)[0]),
                      "mlx.nn": lambda: mx.eval(ref(x, x, x)),
                      "mlx": lambda: mx.eval(raw_mha(raw, x)), "tf": tf_fwd},
                 bwd={"mlxnote": lambda: ours_bwd(x), "mlx.nn": lambda: ref_bwd(x),
                      "mlx": lambda: mx.eval(raw_g(raw, x)), "tf": tf_bwd},
                 repeat=5 if quick else 7)


def _keras_encoder(n_layers):
    """Pre-norm encoder blocks from Keras layers, as mlx.nn.TransformerEncoder builds them."""
    import keras

    blocks = [dict(ln1=keras.layers.LayerNormalization(epsilon=1e-5),
                   att=keras.layers.MultiHeadAttention(num_heads=H, key_dim=D // H),
                   ln2=keras.layers.LayerNormalization(epsilon=1e-5),
                   l1=keras.layers.Dense(FF, activation="relu"), l2=keras.layers.Dense(D))
              for _ in range(n_layers)]
    final = keras.layers.LayerNormalization(epsilon=1e-5)

    def call(x):
        for bl in blocks:
            y = bl["ln1"](x)
            x = x + bl["att"](y, y)
            x = x + bl["l2"](bl["l1"](bl["ln2"](x)))
        return final(x)

    return call, blocks, final


def _encoder_bench(quick: bool) -> Bench:
    from mlxnote import nn

    b, t = (2, 128) if quick else (B, T)
    x_np = np.random.default_rng(1).standard_normal((b, t, D)).astype(np.float32)
    x = mx.array(x_np)
    mx.random.seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=True)
    ours = nn.TransformerEncoder(layer, 2, nn.layer_norm(D, epsilon=1e-5))
    ours.eval()
    ref = mnn.TransformerEncoder(2, D, H, FF, dropout=0.0, norm_first=True)
    ref.eval()
    call, blocks, final = _keras_encoder(2)
    call(x_np[:1])
    variables = [v for bl in blocks for layer_ in bl.values()
                 for v in layer_.trainable_variables] + list(final.trainable_variables)
    tf_fwd, tf_bwd = tf_timers(call, variables, x_np)
    ours_bwd = _mx_grad_fn(ours, ours)
    ref_bwd = _mx_grad_fn(ref, lambda x: ref(x, None))
    return Bench("attention", f"Transformer encoder 2 layers B{b} T{t} d{D} ff{FF}",
                 fwd={"mlxnote": lambda: mx.eval(ours(x)),
                      "mlx.nn": lambda: mx.eval(ref(x, None)), "tf": tf_fwd},
                 bwd={"mlxnote": lambda: ours_bwd(x), "mlx.nn": lambda: ref_bwd(x),
                      "tf": tf_bwd},
                 repeat=5 if quick else 7)


def benches(quick: bool) -> list[Bench]:
    return [_mha_bench(quick), _encoder_bench(quick)]


# -- the linear-attention scaling curve ----------------------------------------------------
def _peak_mib(fn) -> float:
    """Peak memory above what was allocated before ``fn()`` (MiB)."""
    mx.eval(mx.zeros(1))
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    fn()
    return (mx.get_peak_memory() - base) / 2**20


def curve(lengths, dk=64, m=64, k=256, repeat=3):
    """Rows ``(L, {impl: (fwd ms, fwd MiB, fwd+bwd ms, fwd+bwd MiB)})``."""
    from mlxnote import nn
    from mlxnote.kernels import attention as K

    rows = []
    for length in lengths:
        mx.random.seed(0)
        q, kk, v = (mx.random.normal((1, 1, length, dk)) for _ in range(3))
        mx.eval(q, kk, v)
        impls = {}

        def full(q, k_, v_):
            return mx.fast.scaled_dot_product_attention(q, k_, v_, scale=dk ** -0.5)

        def ours(q, k_, v_):
            return K.attention(q, k_, v_, dk ** -0.5)

        for name, fn in (("full (mx.fast)", full), ("full (mlxnote)", ours)):
            impls[name] = ((lambda a=(q, kk, v), fn=fn: mx.eval(fn(*a))),
                           mx.grad(lambda *a, fn=fn: fn(*a).sum(), argnums=(0, 1, 2)),
                           (q, kk, v))
        for name, causal in (("FAVOR", False), ("FAVOR causal", True)):
            fav = nn.FAVOR_attention(dk, m=m, causal=causal, redraw=False)
            kc, vc, qc = (t[:, 0].swapaxes(1, 2) for t in (kk, v, q))  # channels first

            def ffwd(kc, vc, qc, fav=fav):
                return fav(kc, vc, qc)

            impls[name] = ((lambda ffwd=ffwd, a=(kc, vc, qc): mx.eval(ffwd(*a))),
                           mx.grad(lambda *a, ffwd=ffwd: ffwd(*a).sum(), argnums=(0, 1, 2)),
                           (kc, vc, qc))
        lin = nn.Linformer_self_attention(dk, length, k=min(k, length), heads=1)
        x = q[:, 0]
        impls["Linformer"] = (lambda x=x, lin=lin: mx.eval(lin(x)),
                              mx.grad(lambda x, lin=lin: lin(x).sum()), (x,))
        res = {}
        for name, (fwd, grad, args) in impls.items():
            def bwd(grad=grad, args=args):
                mx.eval(grad(*args))
            res[name] = (median_ms(fwd, repeat, 1), _peak_mib(fwd),
                         median_ms(bwd, repeat, 1), _peak_mib(bwd))
        rows.append((length, res))
    return rows


def extra(console, quick: bool) -> None:
    from rich.table import Table

    lengths = [512, 1024, 2048] if quick else [512, 1024, 2048, 4096, 8192]
    rows = curve(lengths, repeat=2 if quick else 3)
    names = list(rows[0][1])
    tab = Table(title="attention scaling, one head (B 1, 64 channels): fwd ms / peak MiB | "
                "fwd+bwd ms / peak MiB", title_justify="left")
    tab.add_column("L", justify="right")
    for n in names:
        tab.add_column(n, justify="right")
    for length, res in rows:
        tab.add_row(str(length), *[f"{r[0]:.1f} / {r[1]:.0f} | {r[2]:.1f} / {r[3]:.0f}"
                                   for r in (res[n] for n in names)])
    console.print(tab)
    first, last = rows[0], rows[-1]
    grow = last[0] / first[0]
    parts = [f"{n}: x{last[1][n][1] / max(first[1][n][1], 1e-9):.1f} memory, "
             f"x{last[1][n][0] / max(first[1][n][0], 1e-9):.1f} time"
             for n in names]
    console.print(f"L x{grow:.0f} ({first[0]} -> {last[0]}), forward: " + "; ".join(parts))
