"""mlxnote's C++ extension: loading, the fallback, and every primitive against its pure-MLX
oracle (``mx.conv_general``), forward, both gradients, grad of grad, jvp, vmap and compile.

On a machine that can build it (Linux x86-64 or macOS arm64 with a C++ compiler: the
Makefile sets ``MLXNOTE_REQUIRE_EXT=1`` there) the extension must be loaded; elsewhere the
primitive tests skip and the fallback tests still run."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
from mlx.utils import tree_map

from mlxnote import nn
from mlxnote.kernels import conv as kconv
from mlxnote.kernels import extension

EXT = extension.module()
needs_ext = pytest.mark.skipif(EXT is None, reason=f"extension not loaded: {extension.reason()}")


def test_extension_is_loaded_where_it_can_be_built():
    if os.environ.get("MLXNOTE_REQUIRE_EXT") != "1":
        pytest.skip("MLXNOTE_REQUIRE_EXT is not 1 (set by the Makefile where a compiler exists)")
    assert EXT is not None, extension.reason()
    status = extension.status()
    assert status["loaded"] and "depthwise_conv" in status["kernels"]
    assert status["mlx_built"] == mx.__version__.split(".dev")[0]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


PROBE = ("import mlxnote; from mlxnote.kernels import conv, extension; "
         "print(conv.choose((2, 8, 8, 4), (4, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1)), "
         "extension.status()['loaded'])")


@pytest.mark.slow
def test_mlxnote_ext_0_forces_the_fallback_silently():
    r = _run(PROBE, MLXNOTE_EXT="0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["shift", "False"]
    assert "ExtensionWarning" not in r.stderr


@pytest.mark.slow
def test_a_version_mismatch_warns_once_and_falls_back():
    code = ("import mlxnote._ext._core as c; c.MLX_VERSION = '0.0.1'; " + PROBE +
            "; from mlxnote.kernels import conv; conv.choose((2, 8, 4), (4, 3, 1), (1,), (1,), "
            "4, (1,))")
    r = _run(code)
    if EXT is None:
        pytest.skip("no extension to mismatch")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["shift", "False"]
    assert r.stderr.count("ExtensionWarning") == 1 and "built against MLX 0.0.1" in r.stderr


def test_enabled_switches_the_formulation_in_process():
    args = ((2, 8, 8, 4), (4, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1))
    with extension.enabled(False):
        assert kconv.choose(*args) == "shift"
    with extension.onednn_enabled(False):  # with oneDNN loaded: 'onednn' (test_dnnl_conv)
        assert kconv.choose(*args) == ("ext" if EXT is not None else "shift")


# -- depthwise against mx.conv_general --------------------------------------------------
DEPTHWISE = [  # x shape, w shape (C*dm, *k, 1), strides, padding, dilations, flip
    ((2, 7, 6, 4), (4, 3, 3, 1), (1, 1), [(1, 1), (1, 1)], (1, 1), False),
    ((2, 7, 6, 4), (8, 3, 2, 1), (2, 1), [(0, 1), (2, 0)], (1, 2), True),
    ((2, 7, 6, 4), (12, 2, 3, 1), (1, 3), [(2, 2), (0, 1)], (2, 1), False),
    ((1, 9, 9, 3), (3, 3, 3, 1), (3, 2), [(0, 0), (0, 0)], (1, 1), False),
    ((2, 11, 4), (8, 3, 1), (2,), [(1, 2)], (1,), False),
    ((2, 11, 4), (4, 2, 1), (1,), [(2, 0)], (3,), True),
    ((3, 5, 5, 16), (32, 3, 3, 1), (1, 1), [(1, 1), (1, 1)], (1, 1), False),
]


def _oracle(x, w, s, p, d, f):
    return kconv.conv(x, w, s, p, d, x.shape[-1], flip=f, method="mlx")


def _ours(x, w, s, p, d, f):
    return EXT.depthwise_conv(x, w, list(s), p, list(d), f)


def _close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=tol, atol=tol)


@needs_ext
@pytest.mark.parametrize("xs,ws,s,p,d,f", DEPTHWISE)
def test_depthwise_forward_and_gradients_match_conv_general(xs, ws, s, p, d, f):
    mx.random.seed(0)
    x, w = mx.random.normal(xs), mx.random.normal(ws)
    want = _oracle(x, w, s, p, d, f)
    got = _ours(x, w, s, p, d, f)
    assert got.shape == want.shape and got.dtype == mx.float32
    _close(got, want)
    ct = mx.random.normal(want.shape)
    g_ours = mx.vjp(lambda a, b: _ours(a, b, s, p, d, f), [x, w], [ct])[1]
    g_want = mx.vjp(lambda a, b: _oracle(a, b, s, p, d, f), [x, w], [ct])[1]
    for a, b in zip(g_ours, g_want):
        _close(a, b)


@needs_ext
@pytest.mark.parametrize("xs,ws,s,p,d,f", DEPTHWISE[:3] + DEPTHWISE[4:5])
def test_depthwise_grad_of_grad_jvp_vmap_compile(xs, ws, s, p, d, f):
    mx.random.seed(1)
    x, w = mx.random.normal(xs), mx.random.normal(ws)

    def loss(fn):
        return lambda a, b: (fn(a, b, s, p, d, f) ** 2).sum()

    # grad of grad: d/dw of sum(d loss / dx)
    gg = [mx.grad(lambda a, b, fn=fn: mx.grad(loss(fn))(a, b).sum(), argnums=1)(x, w)
          for fn in (_ours, _oracle)]
    _close(*gg, tol=1e-4)
    tx, tw = mx.random.normal(xs), mx.random.normal(ws)
    jv = mx.jvp(lambda a, b: _ours(a, b, s, p, d, f), [x, w], [tx, tw])[1][0]
    # MLX's convolution has no jvp; the conv is bilinear: F(tx, w) + F(x, tw).
    _close(jv, _oracle(tx, w, s, p, d, f) + _oracle(x, tw, s, p, d, f))
    xb = mx.random.normal((3, *xs))
    vm = [mx.vmap(lambda a, fn=fn: fn(a, w, s, p, d, f))(xb) for fn in (_ours, _oracle)]
    _close(*vm)
    comp = mx.compile(lambda a, b: _ours(a, b, s, p, d, f))
    _close(comp(x, w), _oracle(x, w, s, p, d, f))
    shapeless = mx.compile(lambda a, b: _ours(a, b, s, p, d, f), shapeless=True)
    _close(shapeless(x, w), _oracle(x, w, s, p, d, f))


# The fused backward: a bias, channel tails (not a multiple of 16), long 1-D rows (several
# column segments), strides, dilation, dm > 1 (the row kernels).
FUSED = [  # x shape, w shape, strides, padding, dilations, flip
    ((2, 9, 7, 20), (20, 3, 3, 1), (1, 1), [(1, 1), (1, 1)], (1, 1), False),
    ((2, 8, 8, 16), (16, 3, 3, 1), (2, 1), [(1, 0), (2, 2)], (1, 2), True),
    ((2, 700, 33), (33, 5, 1), (1,), [(2, 2)], (1,), False),
    ((1, 300, 64), (64, 3, 1), (2,), [(1, 1)], (2,), False),
    ((2, 6, 5, 3), (6, 3, 3, 1), (1, 1), [(1, 1), (1, 1)], (1, 1), False),
]


def _cotangents(shape):
    """Dense, broadcast (the gradient of a sum), broadcast over the channels, and
    transposed (strided rows) cotangents of one shape."""
    swapped = (shape[0], shape[-2], *shape[1:-2], shape[-1]) if len(shape) == 4 else shape
    t = mx.random.normal(swapped)
    return {"dense": mx.random.normal(shape),
            "sum": mx.broadcast_to(mx.array(1.5), shape),
            "per-position": mx.broadcast_to(mx.random.normal((*shape[:-1], 1)), shape),
            "transposed": mx.swapaxes(t, 1, 2) if len(shape) == 4 else t[:, ::-1]}


@needs_ext
@pytest.mark.parametrize("xs,ws,s,p,d,f", FUSED)
def test_depthwise_bias_and_fused_backward_match_conv_general(xs, ws, s, p, d, f):
    """y = conv(x, w) + b and the one-pass gradients of x, w and b (any subset), for
    cotangents laid out in any way, against mx.conv_general's."""
    mx.random.seed(4)
    x, w, b = mx.random.normal(xs), mx.random.normal(ws), mx.random.normal((ws[0],))

    def ours(a, c, e):
        return EXT.depthwise_conv(a, c, list(s), p, list(d), f, e)

    def want(a, c, e):
        return _oracle(a, c, s, p, d, f) + e

    y = want(x, w, b)
    _close(ours(x, w, b), y)
    for ct in _cotangents(y.shape).values():
        for argnums in ((0, 1, 2), (0,), (1,), (2,), (1, 2)):
            def pick(fn, argnums=argnums):
                def g(*sel):
                    args = [x, w, b]
                    for i, v in zip(argnums, sel):
                        args[i] = v
                    return fn(*args)
                return g

            prim = [[x, w, b][i] for i in argnums]
            got = mx.vjp(pick(ours), prim, [ct])[1]
            exp = mx.vjp(pick(want), prim, [ct])[1]
            for a, e in zip(got, exp):
                # relative to the gradient's scale: the oracle's weight and bias gradients
                # are float32 sums over up to 1400 rows (ours: float64 across rows); the
                # worst case here measured 1.5e-6
                a, e = np.array(a), np.array(e)
                assert np.abs(a - e).max() <= 3e-6 * max(1.0, np.abs(e).max())
    # the bias's tangent, vmap over the bias, and grad of grad through the fused backward
    tb = mx.random.normal(b.shape)
    _close(mx.jvp(lambda e: ours(x, w, e), [b], [tb])[1][0],
           mx.broadcast_to(tb, y.shape))
    bb = mx.random.normal((2, ws[0]))
    _close(mx.vmap(lambda e: ours(x, w, e))(bb), mx.vmap(lambda e: want(x, w, e))(bb))
    gg = [mx.grad(lambda c, fn=fn: mx.grad(lambda a, c, e: (fn(a, c, e) ** 2).sum(),
                                           argnums=(0, 2))(x, c, b)[0].sum())(w)
          for fn in (ours, want)]
    _close(*gg, tol=1e-4)
    # forward over reverse (a Hessian-vector product) and per-example gradients (vmap of
    # grad), both through the fused backward's MLX-op form
    tw = mx.random.normal(w.shape)

    def grads(fn):
        return mx.grad(lambda a, c, e: (fn(a, c, e) ** 2).sum(), argnums=(0, 1, 2))

    hv = mx.jvp(lambda c: grads(ours)(x, c, b), [w], [tw])[1]
    # MLX's conv has no jvp: the oracle is the Hessian's symmetry, H[k, w] tw =
    # d/dk (dL/dw . tw), by reverse mode only
    along = [mx.grad(lambda a: (grads(want)(a, w, b)[1] * tw).sum())(x),
             mx.grad(lambda c: (grads(want)(x, c, b)[1] * tw).sum())(w),
             mx.grad(lambda e: (grads(want)(x, w, e)[1] * tw).sum())(b)]
    for a, e in zip(hv, along):
        _close(a, e, tol=1e-4)
    xb = mx.random.normal((2, *xs))
    pe = [mx.vmap(lambda a, fn=fn: grads(fn)(a, w, b))(xb) for fn in (ours, want)]
    for a, e in zip(*pe):
        _close(a, e, tol=1e-4)


@needs_ext
def test_depthwise_dispatch_rule():
    """Depthwise 1-D, and 2-D with one filter per channel, run on the extension's kernels;
    2-D with a depth multiplier and 3-D on oneDNN where it is loaded; shifts without it."""
    dnnl = extension.kernel("dnnl_conv") is not None

    def pick(xs, ws):
        n = len(xs) - 2
        return kconv.choose(xs, ws, (1,) * n, (1,) * n, xs[-1], (1,) * n)

    assert pick((2, 9, 8), (8, 3, 1)) == "ext"
    assert pick((2, 9, 8), (16, 3, 1)) == "ext"
    assert pick((2, 9, 9, 8), (8, 3, 3, 1)) == "ext"
    assert pick((2, 9, 9, 8), (16, 3, 3, 1)) == ("onednn" if dnnl else "ext")
    assert pick((2, 5, 5, 5, 8), (8, 3, 3, 3, 1)) == ("onednn" if dnnl else "shift")
    with extension.enabled(False):
        assert pick((2, 9, 9, 8), (8, 3, 3, 1)) == "shift"


SIMD_PROBE = """
import mlxnote, mlx.core as mx, numpy as np
from mlxnote.kernels import conv as kconv, extension
ext = extension.module()
mx.random.seed(5)
worst = 0.0
for xs, ws, s, p in [((2, 7, 11, 21), (21, 3, 3, 1), (1, 1), ((1, 1), (1, 1))),
                     ((2, 9, 13, 21), (21, 3, 3, 1), (2, 1), ((1, 0), (2, 1))),
                     ((3, 40, 37), (37, 5, 1), (1,), ((2, 2),))]:
    x, w, b = mx.random.normal(xs), mx.random.normal(ws), mx.random.normal((ws[0],))
    ours = lambda a, c, e: ext.depthwise_conv(a, c, list(s), list(p), [1] * len(s), False, e)
    want = lambda a, c, e: kconv.conv(a, c, s, p, 1, xs[-1], method="mlx") + e
    y = want(x, w, b)
    ct = mx.random.normal(y.shape)
    got = [ours(x, w, b), *mx.vjp(ours, [x, w, b], [ct])[1]]
    exp = [y, *mx.vjp(want, [x, w, b], [ct])[1]]
    for a, e in zip(got, exp):
        a, e = np.array(a), np.array(e)
        worst = max(worst, float(np.abs(a - e).max() / max(1.0, np.abs(e).max())))
# the norms' register-blocked moments: 4 x 16 + 16 + 5 = 4 x 8 + 8 + 5 = ... channels
for c in (85, 37, 3):
    x = mx.random.normal((6, 50, c)) * 3 + 2
    xd = np.array(x, np.float64).reshape(-1, c)
    y, mean, var = ext.batch_norm_train(x, mx.ones((c,)), mx.zeros((c,)), 1e-3)
    worst = max(worst, float(np.abs(np.array(mean) - xd.mean(0)).max() / 5),
                float(np.abs(np.array(var) - xd.var(0)).max() / 9))
print(ext.isa().split(", ")[-1].split("-")[0], worst)
"""


@needs_ext
@pytest.mark.skipif(EXT is not None and not EXT.isa().startswith("x86-64"),
                    reason="MLXNOTE_SIMD caps the x86-64 vector width only")
@pytest.mark.parametrize("cap,floats", [("avx2", (8, 4)), ("baseline", (4,))])
def test_narrower_vector_kernels_match_conv_general(cap, floats):
    """The depthwise kernels and the norms' moments run on the CPU's widest vector;
    MLXNOTE_SIMD caps it so that the narrower instances (another machine's) are checked here
    too: channel tails of every width (21 = 16 + 5 = 2 x 8 + 5 = 5 x 4 + 1), strides, 1-D,
    dx/dw/db; the moments' register blocks and tails (85, 37, 3 channels)."""
    r = _run(SIMD_PROBE, MLXNOTE_SIMD=cap)
    assert r.returncode == 0, r.stderr
    width, worst = r.stdout.split()
    assert int(width) in floats
    assert float(worst) <= 3e-6, worst


@needs_ext
def test_one_thread_gives_the_same_result():
    mx.random.seed(2)
    x, w = mx.random.normal((4, 16, 16, 8)), mx.random.normal((8, 3, 3, 1))
    args = ([1, 1], [(1, 1), (1, 1)], [1, 1], False)
    threads = EXT.threads()
    want = EXT.depthwise_conv(x, w, *args)
    g_want = mx.grad(lambda b: (EXT.depthwise_conv(x, b, *args) ** 2).sum())(w)
    try:
        EXT.set_threads(1)
        got = EXT.depthwise_conv(x, w, *args)
        g_got = mx.grad(lambda b: (EXT.depthwise_conv(x, b, *args) ** 2).sum())(w)
    finally:
        EXT.set_threads(threads)
    assert np.array_equal(np.array(got), np.array(want))  # rows do not depend on threads
    _close(g_got, g_want, tol=1e-5)


@needs_ext
def test_depthwise_layer_trains_in_a_compiled_step():
    """The primitive inside nn.value_and_grad of a lazily built model, under mx.compile."""
    mx.random.seed(3)
    model = mnn.Sequential(nn.depthwise_conv2d(3, 2, padding="SAME"), nn.dense(1))
    x, y = mx.random.normal((4, 8, 8, 3)), mx.random.normal((4, 8, 8, 1))
    model(x)  # build
    step_state = [model.state]
    vg = mnn.value_and_grad(model, lambda m, x, y: ((m(x) - y) ** 2).mean())

    def sgd(x, y):
        loss, grads = vg(model, x, y)
        model.update(tree_map(lambda p, g: p - 0.1 * g, model.parameters(), grads))
        return loss

    compiled = mx.compile(sgd, inputs=step_state, outputs=step_state)
    losses = [compiled(x, y).item() for _ in range(5)]
    assert losses[-1] < losses[0]


# -- im2col / col2im ---------------------------------------------------------------------
COLS = [  # x shape, out, kernel, strides, dilations, pad (lo), c0, cg
    ((2, 9, 3), [4], [3], [2], [1], [1], 0, 3),
    ((2, 7, 6, 4), [4, 3], [3, 2], [1, 2], [2, 1], [1, 0], 1, 2),
    ((1, 5, 4, 6, 2), [3, 4, 2], [2, 3, 2], [2, 1, 3], [1, 1, 1], [1, 1, 0], 0, 2),
    ((2, 6, 6, 3), [8, 8], [3, 3], [1, 1], [1, 1], [2, 2], 0, 3),  # padding beyond the input
]


def _cols_oracle(x, out, k, s, d, p, c0, cg):
    """im2col with plain MLX: pad generously, then slice each tap."""
    import itertools

    big = max(k) * max(d) + max(s) * max(out)
    xp = mx.pad(x[..., c0:c0 + cg], [(0, 0)] + [(pi, big) for pi in p] + [(0, 0)])
    taps = []
    for t in itertools.product(*[range(kk) for kk in k]):
        idx = tuple(slice(ti * di, ti * di + (o - 1) * si + 1, si)
                    for ti, di, o, si in zip(t, d, out, s))
        taps.append(xp[(slice(None), *idx)])
    return mx.stack(taps, axis=-2).reshape(x.shape[0], *out, *k, cg)


@needs_ext
@pytest.mark.parametrize("xs,out,k,s,d,p,c0,cg", COLS)
def test_im2col_and_its_transpose(xs, out, k, s, d, p, c0, cg):
    mx.random.seed(4)
    x = mx.random.normal(xs)
    cols = EXT.im2col(x, out, k, s, d, p, c0, cg)
    _close(cols, _cols_oracle(x, out, k, s, d, p, c0, cg), tol=0)
    ct = mx.random.normal(cols.shape)
    g = mx.vjp(lambda a: EXT.im2col(a, out, k, s, d, p, c0, cg), [x], [ct])[1][0]
    g_want = mx.vjp(lambda a: _cols_oracle(a, out, k, s, d, p, c0, cg), [x], [ct])[1][0]
    _close(g, g_want, tol=1e-5)
    # col2im is im2col's transpose: <im2col(x), c> == <x, col2im(c)>
    back = EXT.col2im(ct, list(xs[1:-1]), k, s, d, p)
    lhs = float((cols * ct).sum())
    rhs = float((x[..., c0:c0 + cg] * back).sum())
    assert abs(lhs - rhs) <= 1e-3 * max(1.0, abs(lhs))
    # grad of grad, jvp, vmap, compile
    gg = mx.grad(lambda a: (mx.grad(lambda b: (EXT.im2col(b, out, k, s, d, p, c0, cg) ** 2)
                                    .sum())(a) ** 2).sum())(x)
    gg_want = mx.grad(lambda a: (mx.grad(lambda b: (_cols_oracle(b, out, k, s, d, p, c0, cg)
                                                    ** 2).sum())(a) ** 2).sum())(x)
    _close(gg, gg_want, tol=1e-4)
    t = mx.random.normal(xs)
    _close(mx.jvp(lambda a: EXT.im2col(a, out, k, s, d, p, c0, cg), [x], [t])[1][0],
           EXT.im2col(t, out, k, s, d, p, c0, cg), tol=0)
    xb = mx.random.normal((2, *xs))
    _close(mx.vmap(lambda a: EXT.im2col(a, out, k, s, d, p, c0, cg))(xb),
           mx.stack([EXT.im2col(xb[i], out, k, s, d, p, c0, cg) for i in range(2)]), tol=0)
    _close(mx.compile(lambda a: EXT.im2col(a, out, k, s, d, p, c0, cg))(x), cols, tol=0)


# -- contiguous_rows / column_sums --------------------------------------------------------
def _layouts():
    """Arrays of one logical content in several layouts: dense, broadcast, transposed,
    strided slices, and a 1-D one."""
    mx.random.seed(5)
    base = mx.random.normal((3, 5, 7, 20))
    return {"dense": base, "broadcast": mx.broadcast_to(mx.array(0.5), (3, 5, 7, 20)),
            "per-row": mx.broadcast_to(mx.random.normal((3, 5, 7, 1)), (3, 5, 7, 20)),
            "transposed": mx.swapaxes(base, 1, 2), "channels-strided": base[..., ::2],
            "reversed": base[:, ::-1], "vector": mx.random.normal((9,))}


@needs_ext
@pytest.mark.parametrize("layout", list(_layouts()))
def test_contiguous_rows_and_column_sums_read_any_layout(layout):
    a = _layouts()[layout]
    c = EXT.contiguous_rows(a)
    assert c.shape == a.shape and np.array_equal(np.array(c), np.array(a))
    want = np.array(a).astype(np.float64).reshape(-1, a.shape[-1]).sum(0)
    got = EXT.column_sums(a)
    assert got.shape == (a.shape[-1],)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-6, atol=1e-5)
    # linear maps: vjp, jvp and vmap against their MLX forms
    ct = mx.random.normal(got.shape)
    g = mx.vjp(EXT.column_sums, [a], [ct])[1][0]
    _close(g, mx.broadcast_to(ct, a.shape))
    t = mx.random.normal(a.shape)
    _close(mx.jvp(EXT.column_sums, [a], [t])[1][0],
           t.reshape(-1, a.shape[-1]).sum(0), tol=1e-4)
    _close(mx.vjp(EXT.contiguous_rows, [a], [t])[1][0], t)
    if a.ndim > 1:
        _close(mx.vmap(EXT.column_sums)(a), a.reshape(a.shape[0], -1, a.shape[-1]).sum(1),
               tol=1e-4)


@needs_ext
def test_column_sums_are_accurate_over_many_rows():
    """2^18 rows of one value: a float32 running sum drifts, the chunked sum does not."""
    a = mx.broadcast_to(mx.array(0.1), (1 << 18, 3))
    got = np.array(EXT.column_sums(a))
    want = np.float64(np.float32(0.1)) * (1 << 18)
    assert np.abs(got - want).max() / want < 1e-6
