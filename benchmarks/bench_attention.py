"""Attention family, interleaved min of N, float32: mlxnote with its C++ extension
(``mlxnote``: the fused attention kernel) and without it (``mlxnote-noext``:
``extension.enabled(False)``, the pure-MLX formulation), raw MLX, Keras
(``tf.function``) and PyTorch CPU (eager, one intra-op thread per core; the column is left
out when ``import torch`` fails: a benchmark-only peer, never a dependency), every
implementation on the mlxnote layer's weights (``mlx.nn``: its own).

Rows (forward, and forward+backward with the gradients of every weight and the input):

* multi-head self-attention, batch 8, sequence 256, d_model 256, 8 heads:
  ``mlxnote`` (``nn.multihead_attention``, its output), ``mlx.nn``
  (``mlx.nn.MultiHeadAttention(bias=True)``), ``mlx`` (four ``addmm`` projections around
  ``mx.fast.scaled_dot_product_attention``), ``tf`` (``keras.layers.MultiHeadAttention``),
  ``torch`` (``torch.nn.MultiheadAttention``, batch first, ``need_weights=False``);
* a 2-layer Transformer encoder (pre-norm, d_model 256, 8 heads, feed-forward 1024, final
  LayerNorm, dropout 0) on the same input: ``mlxnote`` (``nn.TransformerEncoder``),
  ``mlx.nn`` (``mlx.nn.TransformerEncoder``), ``tf`` (the same blocks from Keras
  ``MultiHeadAttention``, ``Dense`` and ``LayerNormalization``), ``torch``
  (``torch.nn.TransformerEncoder``, eval mode: its fused fast path in the forward).

The ``@busy`` columns time mlxnote, TF and PyTorch again while one process per core spins
(``harness.busy_cores``).

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

from .harness import Bench, median_ms, tf_timers, torch_timers, without_extension

B, T, D, H, FF = 8, 256, 256, 8, 1024
REPEAT, QUICK_REPEAT, BURST = 9, 3, 2
TITLE = (f"attention: interleaved min of {REPEAT} rounds x {BURST} calls (ms; --quick: "
         f"{QUICK_REPEAT} rounds)")
NOTES = True
BUSY = ("mlxnote", "tf", "torch")
MHA_KEYS = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")


def _mx_grad_fn(module, f):
    """fwd+bwd closure: gradients of every trainable weight and the input."""
    params = module.trainable_parameters()

    def loss(p, x):
        module.update(p)
        return f(x).sum()

    g = mx.value_and_grad(loss, argnums=(0, 1))
    return lambda x: mx.eval(g(params, x))


def set_keras_mha(k, weights: list) -> None:
    """Keras ``MultiHeadAttention`` ``k`` (built) from an mlxnote ``multihead_attention``'s
    ``get_weights()`` (``wq, bq, wk, bk, wv, bv, wo, bo``; ``w* [D, D]``)."""
    ws = dict(zip(MHA_KEYS, weights, strict=True))
    d = ws["wq"].shape[0]
    h = k.num_heads
    k.set_weights([ws["wq"].reshape(d, h, -1), ws["bq"].reshape(h, -1),
                   ws["wk"].reshape(d, h, -1), ws["bk"].reshape(h, -1),
                   ws["wv"].reshape(d, h, -1), ws["bv"].reshape(h, -1),
                   ws["wo"].reshape(h, -1, d), ws["bo"]])


def _torch_params(pairs) -> None:
    import torch

    with torch.no_grad():
        for p, v in pairs:
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, np.float32)))


def _torch_mha_weights(mha, weights: list) -> list:
    """``(parameter, value)`` pairs loading mlxnote MHA weights into a torch
    ``MultiheadAttention`` (``in_proj`` is q, k, v stacked, ``[out, in]``)."""
    ws = dict(zip(MHA_KEYS, weights, strict=True))
    return [(mha.in_proj_weight, np.concatenate([ws[k].T for k in ("wq", "wk", "wv")])),
            (mha.in_proj_bias, np.concatenate([ws[k] for k in ("bq", "bk", "bv")])),
            (mha.out_proj.weight, ws["wo"].T), (mha.out_proj.bias, ws["bo"])]


def _torch_mha(ours):
    try:
        import torch
    except ImportError:
        return None
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True)
    _torch_params(_torch_mha_weights(mha, ours.get_weights()))
    return mha.eval()


def _mha_bench(quick: bool) -> Bench:
    import keras

    from mlxnote import nn

    b, t = (2, 128) if quick else (B, T)
    x_np = np.random.default_rng(0).standard_normal((b, t, D)).astype(np.float32)
    x = mx.array(x_np)
    mx.random.seed(0)
    ours = nn.multihead_attention(H, D)
    ref = mnn.MultiHeadAttention(D, H, bias=True)
    raw = {k: mx.array(v) for k, v in zip(MHA_KEYS, ours.get_weights(), strict=True)}

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
    set_keras_mha(k, ours.get_weights())
    tf_fwd, tf_bwd = tf_timers(lambda x: k(x, x), k.trainable_variables, x_np)
    ours_bwd = _mx_grad_fn(ours, lambda x: ours(x)[0])
    ref_bwd = _mx_grad_fn(ref, lambda x: ref(x, x, x))
    fwd = {"mlxnote": lambda: mx.eval(ours(x)[0]),
           "mlxnote-noext": without_extension(lambda: mx.eval(ours(x)[0])),
           "mlx.nn": lambda: mx.eval(ref(x, x, x)),
           "mlx": lambda: mx.eval(raw_mha(raw, x)), "tf": tf_fwd}
    bwd = {"mlxnote": lambda: ours_bwd(x),
           "mlxnote-noext": without_extension(lambda: ours_bwd(x)),
           "mlx.nn": lambda: ref_bwd(x),
           "mlx": lambda: mx.eval(raw_g(raw, x)), "tf": tf_bwd}
    mha = _torch_mha(ours)
    if mha is not None:
        fwd["torch"], bwd["torch"] = torch_timers(
            mha, x_np, call=lambda x: mha(x, x, x, need_weights=False)[0])
    return Bench("attention", f"multihead self-attention B{b} T{t} d{D} h{H}", fwd=fwd,
                 bwd=bwd, note="fwd+bwd: gradients of the input and every weight",
                 interleaved=True, repeat=QUICK_REPEAT if quick else REPEAT, burst=BURST,
                 busy=BUSY)


def keras_encoder(n_layers: int, causal: bool = False):
    """Pre-norm encoder blocks from Keras layers, as mlx.nn.TransformerEncoder builds them
    (and ``nn.TransformerEncoder`` with ``norm_first=True`` and a final LayerNorm);
    ``causal``: each attention with ``use_causal_mask``. Returns ``(call, blocks, final)``."""
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
            x = x + bl["att"](y, y, use_causal_mask=causal)
            x = x + bl["l2"](bl["l1"](bl["ln2"](x)))
        return final(x)

    return call, blocks, final


def set_keras_encoder(blocks, final, ours) -> None:
    """The Keras blocks (built) from an mlxnote ``TransformerEncoder`` (pre-norm, final
    norm): same weights."""
    for bl, lyr in zip(blocks, ours.layers, strict=True):
        set_keras_mha(bl["att"], lyr.self_attn.get_weights())
        for key, sub in (("ln1", lyr.norm1), ("ln2", lyr.norm2), ("l1", lyr.linear1),
                         ("l2", lyr.linear2)):
            bl[key].set_weights(sub.get_weights(layout="keras"))
    final.set_weights(ours.norm.get_weights(layout="keras"))


def torch_encoder(ours):
    """``torch.nn.TransformerEncoder`` (batch first, pre-norm, relu, dropout 0, final
    LayerNorm, eval mode) holding the weights of the mlxnote encoder ``ours``; ``None``
    without torch."""
    try:
        import torch
    except ImportError:
        return None
    tn = torch.nn
    n = len(ours.layers)
    layer = tn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True,
                                       norm_first=True, layer_norm_eps=1e-5)
    enc = tn.TransformerEncoder(layer, n, norm=tn.LayerNorm(D, eps=1e-5),
                                enable_nested_tensor=False)
    pairs = []
    for tl, lyr in zip(enc.layers, ours.layers, strict=True):
        pairs += _torch_mha_weights(tl.self_attn, lyr.self_attn.get_weights())
        for tsub, sub in ((tl.linear1, lyr.linear1), (tl.linear2, lyr.linear2)):
            w, bias = sub.get_weights()
            pairs += [(tsub.weight, w.T), (tsub.bias, bias)]
        for tsub, sub in ((tl.norm1, lyr.norm1), (tl.norm2, lyr.norm2)):
            pairs += list(zip((tsub.weight, tsub.bias), sub.get_weights(layout="keras"),
                              strict=True))
    pairs += list(zip((enc.norm.weight, enc.norm.bias), ours.norm.get_weights(layout="keras"),
                      strict=True))
    _torch_params(pairs)
    return enc.eval()


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
    call, blocks, final = keras_encoder(2)
    call(x_np[:1])
    set_keras_encoder(blocks, final, ours)
    variables = [v for bl in blocks for layer_ in bl.values()
                 for v in layer_.trainable_variables] + list(final.trainable_variables)
    tf_fwd, tf_bwd = tf_timers(call, variables, x_np)
    ours_bwd = _mx_grad_fn(ours, ours)
    ref_bwd = _mx_grad_fn(ref, lambda x: ref(x, None))
    fwd = {"mlxnote": lambda: mx.eval(ours(x)),
           "mlxnote-noext": without_extension(lambda: mx.eval(ours(x))),
           "mlx.nn": lambda: mx.eval(ref(x, None)), "tf": tf_fwd}
    bwd = {"mlxnote": lambda: ours_bwd(x),
           "mlxnote-noext": without_extension(lambda: ours_bwd(x)),
           "mlx.nn": lambda: ref_bwd(x), "tf": tf_bwd}
    enc = torch_encoder(ours)
    if enc is not None:
        fwd["torch"], bwd["torch"] = torch_timers(enc, x_np)
    return Bench("attention", f"Transformer encoder 2 layers B{b} T{t} d{D} ff{FF}",
                 fwd=fwd, bwd=bwd, note="pre-norm, final LayerNorm, dropout 0; fwd+bwd: "
                 "gradients of the input and every weight", interleaved=True,
                 repeat=QUICK_REPEAT if quick else REPEAT, burst=BURST, busy=BUSY)


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
