"""oneDNN's convolutions (``_core.dnnl_conv``, the ``'onednn'`` formulation of
``mlxnote.kernels.conv``) against ``mx.conv_general``: 1-D/2-D/3-D, strides, dilations,
lo/hi padding, groups, flip; the forward, both gradients (also under ``mx.compile``), grad
of grad, jvp and vmap. Skipped when oneDNN is not loaded (the ``cpu`` extra)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from ext_helpers import thread_counts, threads

from mlxnote.kernels import conv as kconv
from mlxnote.kernels import extension

pytestmark = pytest.mark.skipif(extension.kernel("dnnl_conv") is None,
                                reason="oneDNN not loaded (pip install 'mlxnote[cpu]')")

# (x shape, w shape, strides, ((lo...), (hi...)), dilations, groups)
CASES = [
    ((2, 11, 5), (6, 3, 5), (1,), ((1,), (1,)), (1,), 1),
    ((2, 13, 4), (6, 3, 2), (2,), ((0,), (2,)), (2,), 2),
    ((2, 9, 8, 6), (4, 3, 3, 6), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((1, 10, 9, 6), (8, 3, 2, 3), (2, 1), ((1, 0), (2, 1)), (1, 2), 2),
    ((2, 7, 7, 4), (5, 1, 1, 4), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    ((1, 6, 5, 7, 4), (3, 2, 3, 2, 4), (1, 2, 1), ((1, 0, 1), (0, 1, 1)), (1, 1, 2), 1),
    ((1, 5, 6, 6, 4), (6, 3, 3, 3, 2), (2, 1, 1), ((1, 1, 1), (1, 1, 1)), (1, 1, 1), 2),
    ((2, 9, 8, 4), (8, 3, 3, 1), (2, 1), ((1, 1), (1, 0)), (1, 2), 4),  # depthwise, dm 2
    ((2, 12, 4), (4, 5, 1), (1,), ((2,), (2,)), (1,), 4),  # depthwise 1-D
    # stride-1 depthwise: the input gradient as a forward conv (dm 2, dilated, lo != hi)
    ((2, 9, 8, 4), (8, 3, 3, 1), (1, 1), ((1, 2), (0, 1)), (2, 1), 4),
    ((2, 9, 8, 4), (4, 3, 3, 1), (1, 1), ((3, 0), (0, 1)), (1, 1), 4),  # beyond reach
    # stride 1, groups 1: the weight gradient as one GEMM per tap over a padded grid
    ((2, 10, 3), (4, 2, 3), (1,), ((0,), (0,)), (3,), 1),  # no padding, dilated
    ((2, 7, 6, 3), (5, 2, 3, 3), (1, 1), ((3, 0), (1, 2)), (2, 1), 1),  # lo past the reach
    ((1, 4, 5, 6, 3), (4, 3, 2, 3, 3), (1, 1, 1), ((1, 0, 2), (1, 1, 0)), (1, 2, 1), 1),
]


def _args(case, seed=0):
    xs, ws, *_ = case
    k = mx.random.split(mx.random.key(seed))
    return mx.random.normal(xs, key=k[0]), mx.random.normal(ws, key=k[1])


def _ref(x, w, strides, pads, dil, groups, flip=False):
    # mx.conv_general (kconv's 'mlx': per group on 3-D, where MLX has no groups)
    return kconv.conv(x, w, strides, list(zip(*pads)), dil, groups, flip=flip, method="mlx")


def _ours(x, w, strides, pads, dil, groups, flip=False):
    return kconv.conv(x, w, strides, list(zip(*pads)), dil, groups, flip=flip,
                      method="onednn")


def _close(a, b, tol=2e-5):
    a, b = np.array(a), np.array(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


@pytest.fixture(params=["1", "0"], ids=["taps", "onednn-wgrad"])
def wgrad(request, monkeypatch):
    """Groups-1 weight gradients as one GEMM per tap at any size ("1"), or oneDNN's kernel
    ("0"); by default the taps from 4M multiply-adds per tap, so small tests need "1"."""
    monkeypatch.setenv("MLXNOTE_DNNL_WGRAD", request.param)
    return request.param


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[0]) - 2}d-s{c[2]}-g{c[5]}")
@pytest.mark.parametrize("flip", [False, True])
def test_forward_and_gradients(case, flip, wgrad):
    x, w = _args(case)
    _, _, s, p, d, g = case
    y = _ours(x, w, s, p, d, g, flip)
    _close(y, _ref(x, w, s, p, d, g, flip))
    ct = mx.random.normal(y.shape, key=mx.random.key(3))

    def loss(fn):
        return lambda a, b: (fn(a, b, s, p, d, g, flip) * ct).sum()

    got = mx.grad(loss(_ours), argnums=(0, 1))(x, w)
    want = mx.grad(loss(_ref), argnums=(0, 1))(x, w)
    for a, b in zip(got, want):
        _close(a, b, 1e-4)
    compiled = mx.compile(mx.grad(loss(_ours), argnums=(0, 1)))(x, w)
    for a, b in zip(compiled, want):
        _close(a, b, 1e-4)


# (x shape, w shape, input_dilation, padding, dilations, flip): transposed convs
TRANSPOSED = [
    ((2, 5, 6, 4), (3, 3, 3, 4), (2, 2), [(2, 2), (1, 2)], (1, 1), False),
    ((2, 7, 3), (5, 3, 3), (3,), [(2, 1)], (1,), True),
    ((1, 3, 4, 3, 2), (2, 3, 2, 3, 2), (2, 1, 3), [(1, 2), (1, 0), (2, 2)], (1, 2, 1), False),
]


@pytest.mark.parametrize("case", TRANSPOSED, ids=lambda c: f"{len(c[0]) - 2}d-i{c[2]}")
def test_transposed(case, wgrad):
    xs, ws, idil, pads, dil, flip = case
    x, w = mx.random.normal(xs, key=mx.random.key(5)), mx.random.normal(ws, key=mx.random.key(6))
    n = len(xs) - 2
    assert kconv.choose(xs, ws, (1,) * n, dil, 1, idil, pads) == "onednn"
    kw = dict(padding=pads, dilations=dil, input_dilation=idil, flip=flip)
    ref = kconv.conv(x, w, **kw, method="mlx")
    _close(kconv.conv(x, w, **kw, method="onednn"), ref)
    ct = mx.random.normal(ref.shape, key=mx.random.key(7))

    def loss(method):
        return lambda a, b: (kconv.conv(a, b, **kw, method=method) * ct).sum()

    for a, b in zip(mx.grad(loss("onednn"), argnums=(0, 1))(x, w),
                    mx.grad(loss("mlx"), argnums=(0, 1))(x, w)):
        _close(a, b, 1e-4)
    # the bias, added in the same primitive: y, every gradient (a weighted loss and a sum,
    # whose cotangent is broadcast), its tangent, a vmap over it, a wrong shape refused
    b = mx.random.normal((ref.shape[-1],), key=mx.random.key(8))
    _close(kconv.conv(x, w, **kw, bias=b, method="onednn"), ref + b)

    def with_bias(method, weigh):
        return lambda a, c, d: weigh(kconv.conv(a, c, **kw, bias=d, method=method))

    for weigh in (lambda y: (y * ct).sum(), lambda y: y.sum()):
        for a, e in zip(mx.grad(with_bias("onednn", weigh), argnums=(0, 1, 2))(x, w, b),
                        mx.grad(with_bias("mlx", weigh), argnums=(0, 1, 2))(x, w, b)):
            _close(a, e, 1e-4)
    tb = mx.random.normal(b.shape, key=mx.random.key(9))
    _close(mx.jvp(lambda d: kconv.conv(x, w, **kw, bias=d, method="onednn"), [b], [tb])[1][0],
           mx.broadcast_to(tb, ref.shape))
    bs = mx.stack([b, 2 * b])
    _close(mx.vmap(lambda d: kconv.conv(x, w, **kw, bias=d, method="onednn"))(bs),
           mx.stack([ref + b, ref + 2 * b]))
    with pytest.raises(ValueError, match="bias must be"):
        mx.eval(kconv.conv(x, w, **kw, bias=mx.zeros((ref.shape[-1] + 1,)), method="onednn"))
    # padding beyond the kernel's reach keeps col2im
    assert kconv.choose(xs, ws, (1,) * n, dil, 1, idil, [(9, 0)] * n) == "col2im"


def test_bias_gradients(wgrad):
    """The bias oneDNN adds (its gradient the cotangent's column sums) against y + b, for a
    sum and a weighted loss, also grad of grad."""
    x, w = _args(CASES[2])
    b = mx.random.normal((w.shape[0],), key=mx.random.key(4))
    ct = mx.random.normal((2, 9, 8, 4), key=mx.random.key(8))
    def loss(method, weigh):
        return lambda a, c, d: weigh(kconv.conv(a, c, 1, 1, bias=d, method=method))

    for weigh in (lambda y: y.sum(), lambda y: (y * ct).sum(), lambda y: (y ** 2).sum()):
        got = mx.grad(loss("onednn", weigh), argnums=(0, 1, 2))(x, w, b)
        for g, r in zip(got, mx.grad(loss("mlx", weigh), argnums=(0, 1, 2))(x, w, b)):
            _close(g, r, 1e-4)

    def gg(method):
        inner = mx.grad(loss(method, lambda y: (y ** 2).sum()), argnums=2)
        return mx.grad(lambda d: inner(x, w, d).sum())(b)

    _close(gg("onednn"), gg("mlx"), 1e-4)


def test_fused_bias_jvp_vmap_and_accuracy():
    """The bias oneDNN adds: its tangent, a vmap over the bias, a bias of the wrong shape
    refused, and its gradient over many rows summed in chunks (within float32 rounding of
    the float64 sum, where one sequential float32 sum drifts)."""
    x, w = _args(CASES[0])
    b, tb = (mx.random.normal((6,), key=mx.random.key(k)) for k in (9, 10))
    tx, tw = _args(CASES[0], 3)
    fn = extension.kernel("dnnl_conv")
    pads = [(1, 1)]
    _, jo = mx.jvp(lambda a, c, d: fn(a, c, [1], pads, [1], 1, d), [x, w, b], [tx, tw, tb])
    ref = _ref(tx, w, (1,), ((1,), (1,)), (1,), 1) + _ref(x, tw, (1,), ((1,), (1,)), (1,), 1)
    _close(jo[0], ref + tb, 1e-4)
    bs = mx.stack([b, 2 * b])
    vo = mx.vmap(lambda d: fn(x, w, [1], pads, [1], 1, d))(bs)
    y0 = _ref(x, w, (1,), ((1,), (1,)), (1,), 1)
    _close(vo, mx.stack([y0 + b, y0 + 2 * b]))
    with pytest.raises(ValueError, match="bias"):
        fn(x, w, [1], pads, [1], 1, mx.zeros((5,)))
    # 2^16 rows of a cotangent 1 + small: the exact sum is known in float64
    xl = mx.ones((64, 1024, 1))
    ct = 1.0 + mx.random.uniform(shape=(64, 1024, 1), key=mx.random.key(11)) * 1e-3
    db = mx.grad(lambda d: (fn(xl, mx.ones((1, 1, 1)), [1], [(0, 0)], [1], 1, d) * ct).sum())(
        mx.zeros((1,)))
    exact = np.array(ct, dtype=np.float64).sum()
    assert abs(float(db[0]) - exact) / exact < 1e-6


@pytest.mark.parametrize("at", [3, -2], ids=["strided", "stride1-taps"])
def test_grad_of_grad_jvp_vmap(at, wgrad):
    case = CASES[at]
    x, w = _args(case, 1)
    _, _, s, p, d, g = case

    def inner(fn, wrt):  # the sum of the input's (0) or the weight's (1) gradient
        return lambda a, b: mx.grad(lambda u, v: (fn(u, v, s, p, d, g) ** 2).sum(),
                                    argnums=wrt)(a, b).sum()

    for wrt in (0, 1):
        for argnums in (0, 1):
            got = mx.grad(inner(_ours, wrt), argnums=argnums)(x, w)
            _close(got, mx.grad(inner(_ref, wrt), argnums=argnums)(x, w), 1e-4)
    tx, tw = _args(case, 2)
    _, jo = mx.jvp(lambda a, b: _ours(a, b, s, p, d, g), [x, w], [tx, tw])
    # MLX's conv has no jvp; the conv is bilinear: conv(tx, w) + conv(x, tw)
    _close(jo[0], _ref(tx, w, s, p, d, g) + _ref(x, tw, s, p, d, g), 1e-4)
    xs = mx.stack([x, 2 * x])
    vo = mx.vmap(lambda a: _ours(a, w, s, p, d, g))(xs)
    _close(vo, mx.stack([_ref(x, w, s, p, d, g), _ref(2 * x, w, s, p, d, g)]))


@pytest.mark.parametrize("case", [
    ((3, 1500, 4), (5, 3, 4), (1,), ((1,), (1,)), (2,)),  # 4506 grid rows: 5 chunks
    ((2, 40, 50, 3), (4, 3, 2, 3), (2, 1), ((1, 0), (1, 1)), (1, 1)),  # strided 2-D
], ids=["1d", "2d-s2"])
def test_weight_gradient_over_row_chunks(case, monkeypatch):
    """The per-tap weight gradient over several row chunks (on the pool, added in order):
    within float32 rounding of a float64 sum over every tap, the same bits on one thread
    and on the pool, and its vmap."""
    monkeypatch.setenv("MLXNOTE_DNNL_WGRAD", "1")
    xs, ws, s, (lo, hi), d = case
    x, w = mx.random.normal(xs, key=mx.random.key(12)), mx.random.normal(ws, key=mx.random.key(13))
    y = _ours(x, w, s, (lo, hi), d, 1)
    ct = mx.random.normal(y.shape, key=mx.random.key(14))

    def dw(a):
        return mx.grad(lambda b: (_ours(a, b, s, (lo, hi), d, 1) * ct).sum())(w)

    ext = extension.module()
    got = []
    for count in thread_counts(ext):
        with threads(ext, count):
            got.append(np.array(dw(x)))
    first, *rest = got
    for other in rest:
        assert np.array_equal(first, other)  # the chunks do not depend on the threads
    # float64: dw[o, *k, c] = sum over n and output m of x_pad[n, m*s + k*d, c] * ct[n, m, o]
    n = len(xs) - 2
    xp = np.pad(np.array(x, np.float64), [(0, 0), *zip(lo, hi), (0, 0)])
    g = np.array(ct, np.float64)
    want = np.zeros(ws, np.float64)
    for k in np.ndindex(*ws[1:-1]):
        idx = tuple(slice(k[j] * d[j], k[j] * d[j] + s[j] * (g.shape[1 + j] - 1) + 1, s[j])
                    for j in range(n))
        tap = xp[(slice(None), *idx)].reshape(-1, xs[-1])
        want[(slice(None), *k)] = g.reshape(-1, ws[0]).T @ tap
    np.testing.assert_allclose(first, want, rtol=0, atol=2e-6 * np.abs(want).max())
    vo = mx.vmap(dw)(mx.stack([x, -x]))
    _close(vo, np.stack([first, -first]))


def test_chosen_on_cpu_and_16_bit_inputs():
    xs, ws = (2, 8, 8, 4), (6, 3, 3, 4)
    assert kconv.choose(xs, ws, (1, 1), (1, 1), 1, (1, 1), ((1, 1), (1, 1))) == "onednn"
    assert kconv.choose(xs, (8, 3, 3, 1), (1, 1), (1, 1), 4, (1, 1)) == "onednn"  # depthwise
    assert kconv.choose((2, 8, 4), (8, 3, 1), (1,), (1,), 4, (1,)) == "ext"  # 1-D: ours
    # transposed (input-dilated) without its padding (or beyond the kernel's reach): col2im
    assert kconv.choose(xs, ws, (1, 1), (1, 1), 1, (2, 2)) == "col2im"
    for off in (extension.enabled(False), extension.onednn_enabled(False)):
        with off:
            assert kconv.choose(xs, ws, (1, 1), (1, 1), 1, (1, 1), ((1, 1), (1, 1))) == \
                "mlx+gemmw"
    x, w = mx.random.normal(xs).astype(mx.bfloat16), mx.random.normal(ws).astype(mx.bfloat16)
    y = kconv.conv(x, w, 1, 1)
    assert y.dtype == mx.bfloat16
    ref = mx.conv_general(x.astype(mx.float32), w.astype(mx.float32), padding=1)
    _close(y.astype(mx.float32), ref, 2e-2)


def test_errors_name_the_argument():
    x, w = mx.zeros((1, 5, 5, 4)), mx.zeros((2, 3, 3, 4))
    with pytest.raises(ValueError, match="input_dilation"):
        kconv.conv(x, w, strides=2, input_dilation=2, method="onednn")
    with pytest.raises(ValueError, match="groups"):
        extension.kernel("dnnl_conv")(x, mx.zeros((2, 3, 3, 3)), [1, 1], [(0, 0)] * 2,
                                      [1, 1], 3)


def test_off_switch_and_info():
    code = ("import mlxnote; from mlxnote.kernels import extension as e; "
            "print(e.kernel('dnnl_conv') is None, e.status()['onednn'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MLXNOTE_ONEDNN": "0"}, check=True).stdout
    assert out.startswith("True not used: turned off by MLXNOTE_ONEDNN=0"), out
    assert extension.status()["onednn"].startswith("3.")
