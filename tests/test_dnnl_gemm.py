"""float32 GEMMs on oneDNN through mlxnote's BLAS shim (mlxnote/_blas_shim.c, "oneDNN").

When the ``cpu`` extra is installed (libdnnl.so.3 in the environment's lib folder), the
shim's cblas_sgemm sends calls of at least ``mlxnote_shim_dnnl_min()`` multiply-adds to
``dnnl_sgemm``. Each case is checked against NumPy in float64, with the route forced
(``_platform.gemm_route``) and the shim's counters proving which library ran; the switches
(``MLXNOTE_DNNL_GEMM``, ``MLXNOTE_ONEDNN``) and the OpenMP set-up run in subprocesses.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os

import mlx.core as mx
import numpy as np
import pytest
from test_blas import run_py

from mlxnote import _platform

ROW, COL, NO, TR = 101, 102, 111, 112
F32P = ctypes.POINTER(ctypes.c_float)
INSTALLED = _platform.dnnl_library().exists()
SWITCHED_OFF = any(os.environ.get(v, "").strip().lower() in _platform.OFF
                   for v in (_platform.ENV_DNNL_GEMM, _platform.ENV_ONEDNN, _platform.ENV_BLAS))
pytestmark = pytest.mark.skipif(
    not INSTALLED or SWITCHED_OFF or _platform.STATUS.blas != "openblas",
    reason="needs oneDNN (pip install 'mlxnote[cpu]') and the shim, not switched off")


def test_bound_when_installed():
    s = _platform.STATUS
    assert s.dnnl_library == str(_platform.dnnl_library()) and s.gemm in _platform.ROUTES
    assert "GOMP_SPINCOUNT" not in os.environ or s.gomp_spin.endswith("by the user")
    with pytest.raises(ValueError, match="gemm_route: route must be one of"):
        _platform.gemm_route("mkl")


@contextlib.contextmanager
def route(name: str):
    old = _platform.gemm_route(name)
    try:
        yield
    finally:
        _platform.gemm_route(old)


def sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> tuple[int, int]:
    """cblas_sgemm through the shim on NumPy buffers; (calls on oneDNN, calls in all) made."""
    sh = _platform._handles["shim"]
    sh.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, F32P, ctypes.c_int, F32P,
                                                    ctypes.c_int, ctypes.c_float, F32P,
                                                    ctypes.c_int]
    before = _platform.dnnl_gemm_calls(), _platform.blas_calls()
    sh.cblas_sgemm(order, ta, tb, m, n, k, alpha, a.ctypes.data_as(F32P), lda,
                   b.ctypes.data_as(F32P), ldb, beta, c.ctypes.data_as(F32P), ldc)
    return _platform.dnnl_gemm_calls() - before[0], _platform.blas_calls() - before[1]


def stored(x: np.ndarray, order: int, pad: int) -> tuple[np.ndarray, int]:
    """``x`` laid out in ``order`` with ``pad`` unused elements after each stored row (row
    major) or column (column major): the buffer and its leading dimension."""
    rows = x if order == ROW else x.T
    buf = np.full((rows.shape[0], rows.shape[1] + pad), np.nan, np.float32)
    buf[:, :rows.shape[1]] = rows
    return buf, buf.shape[1]


def unstored(buf: np.ndarray, order: int, shape: tuple[int, int]) -> np.ndarray:
    return buf[:, :shape[1]] if order == ROW else buf[:, :shape[0]].T


def check(order, ta, tb, m, n, k, alpha, beta, pad, seed=0):
    """One call on the forced route: its result against float64, and which library ran."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta == TR else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb == TR else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    op = lambda x, t: x.T if t == TR else x  # noqa: E731
    want = alpha * (op(a, ta).astype(np.float64) @ op(b, tb)) + beta * c.astype(np.float64)
    (ab, lda), (bb, ldb), (cb, ldc) = (stored(x, order, pad) for x in (a, b, c))
    if beta == 0.0:
        cb[:] = np.nan  # BLAS: C is not read when beta is 0 (MLX's outputs are uninitialized)
    calls = sgemm(order, ta, tb, m, n, k, alpha, ab, lda, bb, ldb, beta, cb, ldc)
    got = unstored(cb, order, (m, n))
    tol = 8 * np.finfo(np.float32).eps * (abs(alpha) * k * 16 + abs(beta) * 8)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    if pad:  # the padding past each leading dimension's used part is never written
        assert np.isnan(cb[:, (n if order == ROW else m):]).all()
    return calls


SHAPES = [(1, 1, 1), (3, 5, 7), (33, 17, 65), (1, 300, 40), (128, 96, 80)]


@pytest.mark.parametrize("order", [ROW, COL], ids=["row", "col"])
@pytest.mark.parametrize("ta,tb", [(NO, NO), (TR, NO), (NO, TR), (TR, TR)],
                         ids=["NN", "TN", "NT", "TT"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_onednn_matches_float64(order, ta, tb, shape):
    m, n, k = shape
    with route("onednn"):
        for alpha, beta, pad in ((1.0, 0.0, 0), (0.5, -2.0, 3), (-1.5, 1.0, 1)):
            assert check(order, ta, tb, m, n, k, alpha, beta, pad) == (1, 1)


@pytest.mark.parametrize("order", [ROW, COL], ids=["row", "col"])
def test_openblas_route_matches_too(order):
    with route("openblas"):
        assert check(order, TR, NO, 33, 17, 65, 0.5, -2.0, 3) == (0, 1)


def test_auto_route_by_size():
    """Calls of at least mlxnote_shim_dnnl_min() multiply-adds go to oneDNN, smaller ones to
    OpenBLAS."""
    low = _platform._handles["shim"].mlxnote_shim_dnnl_min()
    assert low == 32**3
    with route("auto"):
        assert check(ROW, NO, NO, 16, 16, 16, 1.0, 0.0, 0) == (0, 1)
        assert check(ROW, NO, TR, 31, 32, 33, 1.0, 0.5, 2) == (0, 1)  # 32736 < 32768
        assert check(ROW, NO, NO, 32, 32, 32, 1.0, 0.0, 0) == (1, 1)
        assert check(COL, TR, TR, 64, 48, 40, 2.0, 1.0, 1) == (1, 1)
        # B transposed, few rows, long K, narrow N: OpenBLAS (the shim's dnnl_wins)
        assert check(ROW, NO, TR, 32, 64, 1024, 1.0, 0.0, 0) == (0, 1)
        assert check(ROW, TR, TR, 32, 256, 512, 1.0, 0.0, 0) == (0, 1)
        assert check(ROW, NO, TR, 32, 128, 1024, 1.0, 0.0, 0) == (1, 1)
        assert check(ROW, NO, TR, 128, 64, 1024, 1.0, 0.0, 0) == (1, 1)
        assert check(ROW, NO, NO, 32, 64, 1024, 1.0, 0.0, 0) == (1, 1)
        # the same as column-major problems: C^T = B^T A^T, M and N swapped
        assert check(COL, TR, NO, 64, 32, 1024, 1.0, 0.0, 0) == (0, 1)
        assert check(COL, TR, NO, 128, 32, 1024, 1.0, 0.0, 0) == (1, 1)


def test_zero_sizes_and_refused_calls_stay_on_openblas():
    """k = 0 scales C by beta (no multiply-adds: OpenBLAS, even when all go to oneDNN); a
    call oneDNN refuses (lda smaller than a row) goes to OpenBLAS, which rejects it as BLAS
    does, leaving C alone."""
    with route("onednn"):
        c = np.full((4, 3), 2.0, np.float32)
        e = np.zeros((4, 1), np.float32)
        assert sgemm(ROW, NO, NO, 4, 3, 0, 1.0, e, 1, e, 3, 0.5, c, 3) == (0, 1)
        np.testing.assert_array_equal(c, 1.0)
        a, b, c = np.ones((8, 8), np.float32), np.ones((8, 8), np.float32), np.zeros((8, 8),
                                                                                     np.float32)
        assert sgemm(ROW, NO, NO, 8, 8, 8, 1.0, a, 4, b, 8, 0.0, c, 8) == (0, 1)
        assert not c.any()


def test_mlx_matmul_goes_to_onednn():
    """MLX's own calls (row-major, transposed operands as flags or copies, batched, addmm's
    alpha/beta) through the automatic route, against float64."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 70, 50)).astype(np.float32)
    b = rng.standard_normal((3, 50, 40)).astype(np.float32)
    c = rng.standard_normal((70, 40)).astype(np.float32)
    want = a.astype(np.float64) @ b
    with route("auto"):
        for xa, xb in ((mx.array(a), mx.array(b)),
                       (mx.swapaxes(mx.array(a.transpose(0, 2, 1).copy()), 1, 2),
                        mx.swapaxes(mx.array(b.transpose(0, 2, 1).copy()), 1, 2))):
            before = _platform.dnnl_gemm_calls()
            got = np.array(mx.matmul(xa, xb, stream=mx.cpu))
            assert _platform.dnnl_gemm_calls() - before >= 3  # one per batch element
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        before = _platform.dnnl_gemm_calls()
        got = np.array(mx.addmm(mx.array(c), mx.array(a[0]), mx.array(b[0]), alpha=0.5,
                                beta=-2.0, stream=mx.cpu))
        assert _platform.dnnl_gemm_calls() - before == 1
        np.testing.assert_allclose(got, 0.5 * want[0] - 2.0 * c, rtol=0, atol=1e-4)


# ------------------------------------------------------------ switches, OpenMP threads

PROBE = """
    import ctypes, json, os, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import mlxnote
        from mlxnote import _platform
    import mlx.core as mx, numpy as np
    a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    before = _platform.dnnl_gemm_calls()
    ok = bool(np.allclose(np.array(mx.matmul(mx.array(a), mx.array(a), stream=mx.cpu)),
                          a.astype(np.float64) @ a, atol=1e-4))
    after = _platform.dnnl_gemm_calls()
    small = np.array(mx.matmul(mx.ones((4, 4)), mx.ones((4, 4)), stream=mx.cpu))
    small_calls = None if after is None else _platform.dnnl_gemm_calls() - after
    omp = None
    if "dnnl" in _platform._handles:  # oneDNN's OpenMP count for this (the calling) thread
        from test_dnnl_gemm import sgemm, ROW, NO
        sgemm(ROW, NO, NO, 64, 64, 64, 1.0, a, 64, a, 64, 0.0, np.zeros_like(a), 64)
        omp = _platform._handles["dnnl"].omp_get_max_threads()
        b = np.ones((256, 1024), np.float32)  # B^T, 32 rows, K >= N: one thread
        sgemm(ROW, NO, 112, 32, 256, 1024, 1.0, b, 1024, b, 1024, 0.0, np.zeros((32, 256),
              np.float32), 256)
        omp = [omp, _platform._handles["dnnl"].omp_get_max_threads()]
    s = _platform.STATUS
    print(json.dumps({"ok": ok and bool((small == 4).all()), "gemm": s.gemm,
                      "reason": s.gemm_reason, "spin": s.gomp_spin,
                      "calls": None if before is None else after - before,
                      "small_calls": small_calls, "omp": omp,
                      "env_spin": os.environ.get("GOMP_SPINCOUNT"),
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, _platform.PlatformWarning)]}))
"""


def probe(tmp_path, **env) -> dict:
    env.setdefault("PYTHONPATH", os.path.dirname(__file__))
    for v in (_platform.ENV_DNNL_GEMM, _platform.ENV_ONEDNN, "OMP_WAIT_POLICY",
              "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(v, None)
    return json.loads(run_py(PROBE, tmp_path, **env).stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_switches(tmp_path):
    d = probe(tmp_path)
    assert d["ok"] and d["gemm"] == "auto" and d["calls"] == 1 and d["warnings"] == []
    assert d["spin"].startswith("GOMP_SPINCOUNT=") and d["env_spin"] is None
    for env, why in (({"MLXNOTE_DNNL_GEMM": "0"}, "MLXNOTE_DNNL_GEMM=0"),
                     ({"MLXNOTE_ONEDNN": "off"}, "MLXNOTE_ONEDNN=0")):
        d = probe(tmp_path, **env)  # the fallback: every call on OpenBLAS, as before
        assert d["ok"] and d["gemm"] == "openblas" and why in d["reason"]
        assert d["calls"] is None and d["warnings"] == []
    code = "import sys; sys.prefix = '/nonexistent'\n" + PROBE.replace("\n    ", "\n")
    d = json.loads(run_py(code, tmp_path, PYTHONPATH=os.path.dirname(__file__))
                   .stdout.strip().splitlines()[-1])  # oneDNN not installed: as before
    assert d["ok"] and d["gemm"] == "openblas" and "not installed" in d["reason"]
    assert d["calls"] is None and d["spin"] == "" and d["warnings"] == []
    d = probe(tmp_path, MLXNOTE_DNNL_GEMM="all")
    assert d["ok"] and d["gemm"] == "onednn" and d["calls"] == 1 and d["small_calls"] == 1
    d = probe(tmp_path, MLXNOTE_DNNL_GEMM="maybe")
    assert d["ok"] and d["gemm"] == "auto" and len(d["warnings"]) == 1
    assert "MLXNOTE_DNNL_GEMM='maybe'" in d["warnings"][0]


@pytest.mark.slow
def test_openmp_threads_and_spin(tmp_path):
    """oneDNN's OpenMP threads follow the shim's choice for OpenBLAS: a fixed count without
    adaptation, one thread for a call below the multi-threading size; the user's
    OMP_WAIT_POLICY is left to OpenMP."""
    d = probe(tmp_path, MLXNOTE_BLAS_THREADS="2", MLXNOTE_BLAS_ADAPTIVE="0")
    assert d["ok"] and d["omp"] == [2, 1]  # the B^T shape threads do not speed up: one
    d = probe(tmp_path, MLXNOTE_BLAS_THREADS="2")
    assert d["ok"] and d["omp"] == [1, 1]  # 262144 multiply-adds: one thread
    d = probe(tmp_path, MLXNOTE_BLAS_THREADS="1")
    assert d["ok"] and d["omp"] == [1, 1]
    d = probe(tmp_path, OMP_WAIT_POLICY="PASSIVE")
    assert d["ok"] and d["spin"] == "OMP_WAIT_POLICY set by the user" and d["env_spin"] is None


FORK = """
    import os, time
    import numpy as np
    import mlxnote
    from mlxnote import _platform
    from test_dnnl_gemm import sgemm, ROW, NO
    a = np.ones((256, 256), np.float32)
    c = np.zeros_like(a)
    for _ in range(3):  # oneDNN on 2 OpenMP threads: its worker threads exist now
        assert sgemm(ROW, NO, NO, 256, 256, 256, 1.0, a, 256, a, 256, 0.0, c, 256)[0] == 1
    pid = os.fork()
    if pid == 0:
        calls = sgemm(ROW, NO, NO, 256, 256, 256, 1.0, a, 256, a, 256, 0.0, c, 256)
        try:
            _platform.gemm_route("auto")
            refused = False
        except RuntimeError as e:
            refused = "forked" in str(e)
        os._exit(0 if calls == (0, 1) and (c == 256).all() and refused else 1)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("exit", os.waitstatus_to_exitcode(status))
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        print("hung")
"""


@pytest.mark.slow
def test_forked_child_stays_on_openblas(tmp_path):
    """GNU OpenMP's workers do not survive fork (a child's next parallel region waits for
    them forever): a forked child's GEMMs go to OpenBLAS, and gemm_route refuses oneDNN."""
    r = run_py(FORK, tmp_path, PYTHONPATH=os.path.dirname(__file__), MLXNOTE_DNNL_GEMM="all",
               MLXNOTE_BLAS_THREADS="2", MLXNOTE_BLAS_ADAPTIVE="0")
    assert r.stdout.strip().splitlines()[-1] == "exit 0"


@pytest.mark.slow
def test_info_shows_onednn(tmp_path):
    code = "import sys; from mlxnote.__main__ import main; sys.exit(main(['info', '--json']))"
    d = json.loads(run_py(code, tmp_path).stdout)
    assert d["gemm"] == "auto" and d["mlx_called_onednn"] is True and d["dnnl_gemm_calls"] >= 1
    text = run_py("from mlxnote.__main__ import main; main(['info'])", tmp_path).stdout
    assert "GEMM     float32: auto" in text and "probe did reach it" in text
