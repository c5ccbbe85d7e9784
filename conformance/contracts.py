"""Contracts that are not a numeric comparison with TensorFlow: each a yes/no property of a
public entry point, run with the whole suite and listed in the report.

* FAVOR's uniform randomizer keeps the layer's ``seed``: a randomizer taking ``key=``
  draws the features from the layer's own key, so the same seed gives the same features
  whatever the global generator did, another seed other features, and the values are the
  randomizer's (in ``[-1, 1)``);
* attention dropout at its bounds (multihead, talking-heads, Linformer, the Transformer's
  encoder layer): ``0.0`` is accepted and draws nothing in training,
  ``1.0`` and negative rates are refused with a ``ValueError`` naming the layer and
  ``dropout`` (the rates just inside run as numeric cases: ``families/spellings.py``);
* Bidirectional's copies of a built layer keep its weights and its ``trainable`` flag;
* ``layer_norm`` refuses a 0-d input with a ``ValueError`` naming ``data``;
* ``kernels.conv``, ``kernels.attention`` and ``kernels.scan`` take the formulation their
  documented rules give (the speed is the contract: the numbers would be the same).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np

from .kernel_forms import FormRow


def _row(name: str, fn: Callable[[], str]) -> FormRow:
    """``fn()`` returns '' when the property holds, else what went wrong."""
    try:
        problem = fn()
    except Exception as e:  # the report shows it; the run fails
        problem = f"{type(e).__name__}: {e}"
    return FormRow(name, not problem, 0.0, problem)


def _raises(make: Callable[[], object], exc: type, *words: str) -> str:
    try:
        make()
    except exc as e:
        missing = [w for w in words if w not in str(e)]
        return f"the error does not name {missing}: {e}" if missing else ""
    except Exception as e:
        return f"raised {type(e).__name__}, not {exc.__name__}: {e}"
    return f"no {exc.__name__} raised"


def favor_seed() -> str:
    from mlxnote import nn

    from .case import Fn

    rnd = Fn("uniform_key_randomizer").mlx
    kw = dict(key_dim=4, m=6, orthonormal=False, redraw=False, randomizer=rnd)
    mx.random.seed(1)
    a = nn.FAVOR_attention(**kw, seed=3).get_weights()[0]
    mx.random.seed(2)
    b = nn.FAVOR_attention(**kw, seed=3).get_weights()[0]
    c = nn.FAVOR_attention(**kw, seed=4).get_weights()[0]
    problems = []
    if not np.array_equal(a, b):
        problems.append("the same seed gave other features after the global seed changed")
    if np.array_equal(a, c):
        problems.append("seeds 3 and 4 gave the same features")
    if a.min() < -1 or a.max() >= 1:
        problems.append(f"features outside the randomizer's [-1, 1): {a.min()}..{a.max()}")
    mx.random.seed(5)
    plain = mx.random.normal((4,))
    mx.random.seed(5)
    nn.FAVOR_attention(**kw, seed=3)
    if not mx.array_equal(mx.random.normal((4,)), plain).item():
        problems.append("a seeded layer consumed the global generator")
    return "; ".join(problems)


def dropout_bounds(layer: str, arg: str, make: Callable[[float], object],
                   inputs: list[tuple[int, ...]]) -> list[FormRow]:
    def zero_draws_nothing() -> str:
        from .reference.dropout import MASKS, record_masks

        lyr = make(0.0)
        rng = np.random.default_rng(0)
        xs = [mx.array(rng.standard_normal(s).astype(np.float32)) for s in inputs]
        with record_masks():
            lyr.train()
            out = lyr(*xs)
            lyr.eval()
            ref = lyr(*xs)
        out, ref = out[0] if isinstance(out, tuple) else out, \
            ref[0] if isinstance(ref, tuple) else ref
        if MASKS:
            return f"{arg}=0.0 drew {len(MASKS)} dropout mask(s) in training"
        return "" if mx.array_equal(out, ref).item() else \
            f"{arg}=0.0 in training differs from inference"

    return [
        _row(f"{layer}: {arg}=0.0 draws no mask in training", zero_draws_nothing),
        _row(f"{layer}: {arg}=1.0 refused", lambda: _raises(lambda: make(1.0), ValueError,
                                                              layer, arg)),
        _row(f"{layer}: {arg}=-0.1 refused", lambda: _raises(lambda: make(-0.1), ValueError,
                                                               layer, arg)),
    ]


def bidirectional_copies() -> str:
    """decisions.md 34: Bidirectional keeps copies of its layer, with the weights of a built
    one, and says whether it is trainable as the layer does."""
    from mlxnote import nn

    problems = []
    for trainable in (True, False):
        layer = nn.LSTM(3, 4, return_sequence=True, trainable=trainable)
        bi = nn.Bidirectional(layer)
        if bi.forward_layer is layer:
            problems.append("the forward layer is the given layer, not a copy")
        if not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                         bi.forward_layer.get_weights())):
            problems.append("the forward copy of a built layer has other weights")
        if bi.trainable is not trainable or bool(bi.param_names) is not trainable:
            problems.append(f"over a layer with trainable={trainable}: trainable="
                            f"{bi.trainable}, {len(bi.param_names)} trainable weights")
    return "; ".join(problems)


def sync_batch_norm() -> str:
    """A ``synchronized`` batch norm in a group of 2 (a fake group: a second rank with the
    same batch, so the statistics are the local ones) all-sums its moments."""
    from mlxnote import nn
    from mlxnote.kernels import norm as K

    calls = []
    original, size = K.all_sum, nn.batch_norm._group_size

    def fake(t):
        calls.append(t.shape)
        return 2 * t

    K.all_sum, nn.batch_norm._group_size = fake, lambda self: 2
    try:
        x = mx.array(np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32))
        synced, local = nn.batch_norm(synchronized=True), nn.batch_norm()
        ys, yl = synced(x, train_flag=True), local(x, train_flag=True)
        mx.eval(ys, yl)
    finally:
        K.all_sum, nn.batch_norm._group_size = original, size
    if not calls:
        return "no all_sum of the moments in a group of 2"
    err = mx.max(mx.abs(ys - yl)).item()
    return "" if err < 1e-5 else f"the group's statistics differ from the batch's: {err:.2g}"


def sizes_named() -> str:
    """Work too large for any memory is refused before compute, naming what makes it so:
    a lazily built weight by its input ('data'), a conv output by its batch."""
    from mlxnote import nn

    problems = [p for p in (
        _raises(lambda: nn.dense(1 << 15)(mx.zeros((1, 1 << 22))), ValueError, "dense",
                "'data'", "4194304"),
        _raises(lambda: nn.conv1d(100000, 1, input_size=1)(mx.zeros((1000000, 1, 1))),
                ValueError, "conv1d", "'data'", "(1000000, 1, 100000)"),
        _raises(lambda: nn.LSTM(256, input_size=1)(mx.zeros((1 << 30, 1, 1))), ValueError,
                "LSTM", "'data'", "input projection", "(1073741824, 1, 1024)")) if p]
    return "; ".join(problems)


def zeropadding_output_size() -> str:
    """note-semantics.md 30-32: ``output_size = input_size`` when input_size is given."""
    from mlxnote import nn

    bad = [f"zeropadding{n}d(input_size=3).output_size = "
           f"{getattr(getattr(nn, f'zeropadding{n}d')(input_size=3), 'output_size', None)}"
           for n in (1, 2, 3)
           if getattr(getattr(nn, f"zeropadding{n}d")(input_size=3), "output_size", None) != 3]
    return "; ".join(bad)


def custom_blocks_called_plainly() -> str:
    """A Transformer calls a custom encoder/decoder with only the keywords it is given
    (no masks that are None, no is_causal=False), so plain functions of the tensors work."""
    from mlxnote import nn

    rng = np.random.default_rng(0)
    src, tgt = (mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((2, 5, 8),
                                                                             (2, 3, 8)))
    model = nn.Transformer(8, 2, custom_encoder=lambda src: src + 1.0,
                           custom_decoder=lambda tgt, memory: tgt + mx.mean(memory, axis=1,
                                                                            keepdims=True))
    want = tgt + mx.mean(src + 1.0, axis=1, keepdims=True)
    got = model(src, tgt)
    return "" if mx.allclose(got, want).item() else "the custom blocks' result differs"


def scan_flags_honored() -> str:
    """``kernels.scan``'s formulation flags are honored: ``fast=False`` (the compile choice
    left to the policy) computes the plain formulation's values exactly."""
    from mlxnote.kernels.scan import scan

    rng, bad = np.random.default_rng(1), []
    for kind, k in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        xp, wh = (mx.array(rng.standard_normal(s).astype(np.float32) * 0.5)
                  for s in ((3, 5, k * 4), (4, k * 4)))
        h0, c0 = mx.zeros((3, 4)), mx.zeros((3, 4)) if kind == "lstm" else None
        if not mx.array_equal(scan(kind, xp, wh, h0, c0, fast=False)[0],
                              scan(kind, xp, wh, h0, c0, fused=False)[0]).item():
            bad.append(kind)
    return f"fast=False is not the plain formulation for {bad}" if bad else ""


def scan_policy() -> str:
    """``kernels.scan`` without the C++ scan takes the documented compile policy
    (``trace_policy.policy``; the speed is the contract, the numbers are the same): in
    float32 on the CPU, untraced the compiled loop with the fast activations, inside
    ``mx.compile`` the fast activations uncompiled, inside ``mx.grad`` neither."""
    from mlxnote import _config
    from mlxnote.kernels import extension
    from mlxnote.kernels import scan as S

    want = {"none": (True, True), "compile": (False, True), "grad": (False, False)}
    if not _config.cpu_formulation():
        want = dict.fromkeys(want, (False, False))
    seen, real = [], S._fused
    S._fused = lambda kind, a, r, compiled, fast, *rest: (
        seen.append((compiled, fast)) or real(kind, a, r, compiled, fast, *rest))
    xp, wh, h0 = mx.zeros((2, 3, 16)), mx.zeros((4, 16)), mx.zeros((2, 4))

    def run(xp):
        return S.scan("lstm", xp, wh, h0, h0)[0].sum()

    problems = []
    try:
        with extension.enabled(False):
            for trace, call in (("none", run), ("compile", mx.compile(run)),
                                ("grad", mx.grad(run))):
                seen.clear()
                mx.eval(call(xp))
                if seen != [want[trace]]:
                    problems.append(f"traced {trace!r}: (compiled, fast) {seen}, not "
                                    f"{[want[trace]]}")
    finally:
        S._fused = real
    return "; ".join(problems)


def conv_padding_forms() -> str:
    """``kernels.conv.conv`` refuses padding that is neither one form nor the other."""
    from mlxnote.kernels import conv as K

    x, w = mx.zeros((1, 5, 5, 5, 2)), mx.zeros((3, 2, 2, 2, 2))
    return "; ".join(p for p in (
        _raises(lambda pad=pad: K.conv(x, w, 1, pad), ValueError, "padding")
        for pad in ([(1, 2), 3], [(1, 2), (0, 1)], ((1, 2, 3), (1, 2)), ((1,), (2,)))) if p)


def conv_dispatch() -> str:
    """``kernels.conv`` takes the formulation docs/performance.md gives (the speed is part
    of the contract: another formulation computes the same numbers, slower): a transposed
    conv's input-dilated form on oneDNN where it is loaded, else col2im (groups 1, strides
    1) or MLX's; ``method='ext'`` runs the C++ depthwise kernel, ``'shift'`` the shifted
    multiply-adds."""
    from mlxnote import _config
    from mlxnote.kernels import conv as K
    from mlxnote.kernels import extension

    if not _config.cpu_formulation():
        return ""  # the GPU formulation has one rule ('mlx-fast'), run by every conv case
    dnnl = extension.kernel("dnnl_conv_input_grad") is not None
    problems = []
    w, near, far = (6, 3, 3, 4), [(2, 2), (2, 2)], [(3, 3), (3, 3)]
    # far: padding beyond the kernel's reach (no strided conv has it as input gradient)
    for strides, groups, pads, want in (((1, 1), 1, near, "onednn" if dnnl else "col2im"),
                                        ((1, 1), 1, far, "col2im"), ((2, 1), 1, near, "mlx"),
                                        ((1, 1), 2, near, "mlx")):
        wg = (w[0], *w[1:-1], w[-1] // groups)
        got = K.choose((2, 8, 8, 4), wg, strides, (1, 1), groups, (2, 2), pads)
        if got != want:
            problems.append(f"input-dilated, strides {strides}, groups {groups}, padding "
                            f"{pads}: {got!r}, not {want!r}")
    x, wd = mx.zeros((1, 9, 3)), mx.zeros((3, 3, 1))
    for method, name in (("ext", "conv_ext_depthwise"), ("shift", "conv_shift")):
        if method == "ext" and extension.get() is None:
            continue
        real, seen = getattr(K, name), []
        setattr(K, name, lambda *a, real=real, seen=seen: seen.append(1) or real(*a))
        try:
            mx.eval(K.conv(x, wd, 1, 1, groups=3, method=method))
        finally:
            setattr(K, name, real)
        if not seen:
            problems.append(f"method {method!r} did not run {name}")
    return "; ".join(problems)


def attention_dispatch() -> str:
    """``kernels.attention`` takes the C++ fused attention for float32 on the CPU where it is
    loaded (with returned logits too), and not with dropout on the weights or in 16-bit;
    and the extension reports why oneDNN is or is not loaded (a string: '' when it is)."""
    from mlxnote import _config
    from mlxnote.kernels import attention as K
    from mlxnote.kernels import extension

    problems = []
    mod = extension.module()
    if mod is not None:
        status, loaded = extension._load_onednn(mod), "dnnl_conv" in mod.KERNELS
        if not isinstance(status, str) or (status == "") != loaded:
            problems.append(f"oneDNN's status {status!r} with dnnl_conv loaded: {loaded}")
    fused = extension.kernel("attention")
    if fused is None or not _config.cpu_formulation():
        return "; ".join(problems)
    q = mx.zeros((1, 2, 3, 4))
    seen, fast = [], []
    real, real_fast = mod.attention, K._fast
    mod.attention = lambda *a: seen.append(a[3]) or real(*a)
    K._fast = lambda *a: fast.append(1) or real_fast(*a)
    try:
        # (kwargs, q's dtype, fused runs); 16-bit takes the plain path (its softmax in
        # float32), not mx.fast; the result has `dtype` (default q's) on every path.
        for kwargs, dtype, want in ((dict(), mx.float32, 1), (dict(return_logits=True),
                                    mx.float32, 1), (dict(dropout=lambda p: p), mx.float32, 0),
                                   (dict(), mx.bfloat16, 0), (dict(dtype=mx.bfloat16),
                                   mx.float32, 1)):
            before = len(seen)
            qd = q.astype(dtype)
            out = K.attention(qd, qd, qd, 0.5, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            mx.eval(out)
            if len(seen) - before != want:
                problems.append(f"attention({kwargs}, {dtype}) ran the fused kernel "
                                f"{len(seen) - before} times, not {want}")
            if out.dtype != kwargs.get("dtype", dtype):
                problems.append(f"attention({kwargs}, {dtype}) gave {out.dtype}")
        if fast:
            problems.append(f"mx.fast attention taken {len(fast)} times on the CPU")
    finally:
        mod.attention, K._fast = real, real_fast
    if seen and seen[0] != 0.5:
        problems.append(f"the fused kernel got scale {seen[0]}, not 0.5")
    return "; ".join(problems)


def transposed_adjoint() -> str:
    """conv3d_transpose (SAME, kernel shorter than the stride, where TF's own gradient is
    wrong: families/conv.py EXPECTED): the input gradient is the adjoint of the forward,
    which is linear in the input: ``<grad(ct), e_i> = <forward(e_i), ct>`` over every
    basis vector ``e_i`` of a sample."""
    from mlxnote import nn

    rng = np.random.default_rng(0)
    layer = nn.conv3d_transpose(3, [1, 2, 1], input_size=2, strides=3, padding="SAME")
    shape = (2, 3, 2, 4, 2)
    x = mx.array(rng.standard_normal(shape).astype(np.float32))
    ct = mx.array(rng.standard_normal(layer(x).shape).astype(np.float32))
    grad = mx.grad(lambda x: mx.sum(layer(x) * ct))(x)
    per = int(np.prod(shape[1:]))
    basis = layer(mx.eye(per).reshape(per, *shape[1:])) - layer.bias
    adjoint = mx.stack([mx.sum((basis * ct[s]).reshape(per, -1), axis=-1)
                        for s in range(shape[0])]).reshape(shape)
    err = mx.max(mx.abs(grad - adjoint)).item() / max(mx.max(mx.abs(adjoint)).item(), 1e-30)
    return "" if err < 1e-5 else f"the input gradient is not the forward's adjoint: {err:.2g}"


def kernel_edges() -> str:
    """Kernel edge cases: ``pool`` takes negative axes as their positive ones; ``scan`` on
    an empty batch gives empty states; ``fast_exp`` below float32's normal range stays in
    ``[0, 2 exp(x)]`` and is exactly 0 below -88 (its documented clip), relative 1e-7
    above (``precision.py`` covers [-87, 88])."""
    from mlxnote.kernels import fastmath
    from mlxnote.kernels.pool import pool
    from mlxnote.kernels.scan import scan

    problems = []
    x = mx.array(np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32))
    for op in ("max", "avg"):  # avg: SAME padding, so the counts vary
        args = (op, (2, 2), (2, 2), ((0, 0), (0, 1)))
        if not mx.array_equal(pool(x, *args, (1, 2)), pool(x, *args, (-3, -2))).item():
            problems.append(f"{op} pool over axes (-3, -2) differs from (1, 2)")
    hs, c = scan("lstm", mx.zeros((0, 3, 16)), mx.zeros((4, 16)), mx.zeros((0, 4)),
                 mx.zeros((0, 4)))
    if hs.shape != (0, 3, 4) or c.shape != (0, 4):
        problems.append(f"scan on an empty batch gave {hs.shape}, {c.shape}")
    xs = np.linspace(-104.0, -86.0, 4001).astype(np.float32)
    y = np.asarray(fastmath.fast_exp(mx.array(xs)), np.float64)
    t = np.exp(xs.astype(np.float64))
    normal = xs > -87.33
    if not ((y >= 0) & (y <= 2 * t)).all():
        problems.append("fast_exp below the normal range outside [0, 2 exp(x)]")
    if (y[xs < -88.0] != 0).any():
        problems.append("fast_exp below -88 is not 0")
    rel = np.max(np.abs(y[normal] - t[normal]) / t[normal])
    if rel > 1e-7:
        problems.append(f"fast_exp near the normal range's end: {rel:.2g} relative")
    return "; ".join(problems)


def run() -> list[FormRow]:
    from mlxnote import nn

    rows = [_row("FAVOR_attention: a uniform randomizer keeps the layer's seed", favor_seed)]
    rows += dropout_bounds("multihead_attention", "dropout",
                           lambda r: nn.multihead_attention(2, 8, dropout=r), [(2, 5, 8)])
    rows += dropout_bounds("talking_heads_attention", "dropout_rate",
                           lambda r: nn.talking_heads_attention(dropout_rate=r),
                           [(2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4)])
    rows += dropout_bounds("Linformer_self_attention", "dropout",
                           lambda r: nn.Linformer_self_attention(8, 6, k=4, heads=2, dropout=r),
                           [(2, 6, 8)])
    rows += dropout_bounds("TransformerEncoderLayer", "dropout",
                           lambda r: nn.TransformerEncoderLayer(8, 2, 16, dropout=r),
                           [(2, 5, 8)])
    rows.append(_row("Bidirectional: copies of a built layer keep its weights and "
                     "trainable flag", bidirectional_copies))
    rows += [_row("batch_norm: synchronized in a group of 2 all-sums its moments",
                  sync_batch_norm),
             _row("sizes over any memory refused naming their argument", sizes_named),
             _row("zeropadding: output_size is the given input_size", zeropadding_output_size),
             _row("Transformer: custom blocks called with the keywords given only",
                  custom_blocks_called_plainly),
             _row("kernels.scan: fast=False is the plain formulation", scan_flags_honored),
             _row("kernels.scan: the documented compile policy", scan_policy),
             _row("kernels.conv: malformed padding refused", conv_padding_forms),
             _row("kernels.conv: the documented formulation is the one taken", conv_dispatch),
             _row("kernels.attention: the fused kernel where it applies; oneDNN's status",
                  attention_dispatch),
             _row("conv3d_transpose: the input gradient is the adjoint of the forward",
                  transposed_adjoint),
             _row("kernels: pool's negative axes, scan's empty batch, fast_exp's underflow",
                  kernel_edges)]
    rows.append(_row("layer_norm: a 0-d input refused", lambda: _raises(
        lambda: nn.layer_norm()(mx.array(1.0)), ValueError, "layer_norm", "'data'")))
    from . import argument_contracts, initial_weights  # they use _row and _raises

    for module in (argument_contracts, initial_weights):
        rows += module.run()
    return rows


if __name__ == "__main__":
    import mlxnote  # noqa: F401

    for r in run():
        print(f"{'ok  ' if r.passed else 'FAIL'} {r.name} {r.detail}")
