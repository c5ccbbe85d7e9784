"""The fast BLAS and CPU cache set-up of mlxnote/_platform.py (Linux), on and off.

In this process mlxnote was imported first (tests/conftest.py), so on Linux MLX's matmuls go
through OpenBLAS unless MLXNOTE_BLAS=0 is set. Other configurations run in subprocesses: the
BLAS is chosen once per process, before mlx.core loads.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import _platform

LINUX = sys.platform == "linux"
OPTED_OUT = os.environ.get(_platform.ENV_BLAS, "").strip().lower() in _platform.OFF
needs_fast = pytest.mark.skipif(not LINUX or OPTED_OUT, reason="the fast BLAS is Linux-only "
                                "and on by default; this run set MLXNOTE_BLAS=0")


def run_py(code: str, tmp_path=None, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with extra environment variables (None unsets)."""
    e = dict(os.environ)
    for k in (_platform.ENV_BLAS, _platform.ENV_CACHE, _platform.ENV_THREADS,
              _platform.ENV_ADAPTIVE):
        e.pop(k, None)
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=e, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r


def arr(x: np.ndarray) -> mx.array:
    """NumPy -> MLX keeping the dtype (mx.array turns float64 into float32 by default)."""
    return mx.array(x, dtype=getattr(mx, str(x.dtype)))


def loaded(name: str) -> bool:
    with open("/proc/self/maps") as f:
        return name in f.read()


def through_blas(fn):
    """Run ``fn`` and return (result, number of cblas calls MLX made through the shim)."""
    before = _platform.blas_calls()
    out = fn()
    mx.eval(out)
    after = _platform.blas_calls()
    return out, (None if before is None else after - before)


# ------------------------------------------------------------------------- it is active


@needs_fast
def test_fast_blas_is_active():
    s = _platform.STATUS
    assert s.blas == "openblas", s.blas_reason
    assert s.corename and s.version.startswith("OpenBLAS")
    assert loaded("scipy_openblas32") and loaded("libmlxnote_blas-")
    if not any(os.environ.get(v) for v in ("MLXNOTE_BLAS_THREADS", "OPENBLAS_NUM_THREADS",
                                           "OMP_NUM_THREADS")):
        assert s.threads == _platform.usable_cpus()  # one per core, no more
    assert not s.warnings
    glob = ctypes.CDLL(None)  # dlsym on the global scope, which libmlx.so searches first
    assert hasattr(glob, "cblas_sgemm") and hasattr(glob, "sgeqrf_") == s.lapack_forwarded
    # OpenBLAS itself stays private: SciPy & co. keep binding to their own copies
    assert not hasattr(glob, "scipy_cblas_sgemm") and not hasattr(glob, "openblas_cancel")


MATMUL_SHAPES = [((64, 64), (64, 64)), ((257, 130), (130, 65)), ((1, 300), (300, 7)),
                 ((3, 33, 40), (3, 40, 50)), ((512, 384), (384, 256))]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s[0] + s[1])))
def test_matmul_matches_numpy(dtype, shapes):
    rng = np.random.default_rng(0)

    def draw(shape):
        x = rng.standard_normal(shape)
        if dtype == "complex64":
            x = x + 1j * rng.standard_normal(shape)
        return x.astype(dtype)

    a, b = draw(shapes[0]), draw(shapes[1])
    want = a.astype(np.complex128 if dtype == "complex64" else np.float64) @ b
    for ta, tb in ((False, False), (True, False), (False, True)):
        # transposed operands reach BLAS as Trans flags or copies: all must agree
        xa = arr(np.swapaxes(a, -1, -2).copy()) if ta else arr(a)
        xb = arr(np.swapaxes(b, -1, -2).copy()) if tb else arr(b)
        xa = mx.swapaxes(xa, -1, -2) if ta else xa
        xb = mx.swapaxes(xb, -1, -2) if tb else xb
        got, calls = through_blas(lambda xa=xa, xb=xb: mx.matmul(xa, xb, stream=mx.cpu))
        got = np.array(got)
        assert got.dtype == np.dtype(dtype)
        k = a.shape[-1]
        eps = np.finfo(np.float32 if dtype != "float64" else np.float64).eps
        scale = np.abs(a).max() * np.abs(b).max() * k
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * eps * scale)
        if LINUX and not OPTED_OUT:
            assert calls and calls >= 1, "MLX's matmul did not go through OpenBLAS"


def test_addmm_alpha_beta_matches_numpy():
    rng = np.random.default_rng(1)
    c, a, b = (rng.standard_normal(s).astype(np.float32) for s in ((48, 40), (48, 96), (96, 40)))
    got, _ = through_blas(lambda: mx.addmm(mx.array(c), mx.array(a), mx.array(b), alpha=0.5,
                                           beta=-2.0))
    np.testing.assert_allclose(np.array(got), 0.5 * (a.astype(np.float64) @ b) - 2.0 * c,
                               rtol=1e-5, atol=1e-4)


def test_conv_goes_through_blas_and_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 9, 5)).astype(np.float32)
    w = rng.standard_normal((6, 3, 3, 5)).astype(np.float32)
    got, calls = through_blas(lambda: mx.conv2d(mx.array(x), mx.array(w), padding=1))
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((2, 9, 9, 6))
    for i in range(3):
        for j in range(3):
            want += np.einsum("nhwc,oc->nhwo", xp[:, i:i + 9, j:j + 9], w[:, i, j].astype(float))
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-4)
    if LINUX and not OPTED_OUT:
        assert calls >= 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forwarded_lapack_matches_numpy(dtype):
    """qr, inv, svd, eigh, cholesky, lu go to OpenBLAS's LAPACK through the shim's jumps."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 40)).astype(dtype)
    spd = (a @ a.T + 40 * np.eye(40)).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    cpu = dict(stream=mx.cpu)
    q, r = (np.array(t) for t in mx.linalg.qr(arr(a), **cpu))
    np.testing.assert_allclose(q @ r, a, **tol)
    np.testing.assert_allclose(q.T @ q, np.eye(40), **tol)
    np.testing.assert_allclose(np.array(mx.linalg.inv(arr(a), **cpu)) @ a, np.eye(40),
                               rtol=1e-3 if dtype == "float32" else 1e-9,
                               atol=1e-3 if dtype == "float32" else 1e-9)
    s = np.array(mx.linalg.svd(arr(a), compute_uv=False, **cpu))
    np.testing.assert_allclose(s, np.linalg.svd(a.astype(np.float64), compute_uv=False), **tol)
    w = np.array(mx.linalg.eigvalsh(arr(spd), **cpu))
    np.testing.assert_allclose(w, np.linalg.eigvalsh(spd.astype(np.float64)), rtol=1e-5)
    ch = np.array(mx.linalg.cholesky(arr(spd), **cpu))
    np.testing.assert_allclose(ch @ ch.T, spd, rtol=0,
                               atol=40 * np.finfo(dtype).eps * np.abs(spd).max())
    p, lo, up = (np.array(t) for t in mx.linalg.lu(arr(a), **cpu))
    np.testing.assert_allclose(lo[p] @ up, a, **tol)  # MLX: A = L[P] @ U


# ---------------------------------------------------------------------------- the cache


def test_cache_limit_policy():
    if not LINUX or os.environ.get(_platform.ENV_CACHE, "").strip():
        pytest.skip("the default cache policy applies on Linux without MLXNOTE_CACHE")
    lim = _platform.default_cache_limit()
    assert _platform.STATUS.cache_limit == lim
    assert lim == max(256 * 2**20, _platform.memory_bytes() // 8)
    prev = mx.set_cache_limit(lim)  # returns the limit in force: ours
    assert prev == lim
    assert _platform.STATUS.cache_default == 32 * 2**20  # MLX's CPU default, kept for info


@pytest.mark.parametrize("text,want", [("2G", 2 * 2**30), ("512MiB", 512 * 2**20),
                                       ("1048576", 2**20), ("1.5g", 3 * 2**29), ("25%", 250),
                                       ("64 KB", 64 * 2**10)])
def test_parse_size(text, want):
    assert _platform.parse_size(text, total=1000) == want


@pytest.mark.parametrize("text", ["abc", "G", "12Q", "%"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="MLXNOTE_CACHE"):
        _platform.parse_size(text, total=1000)


# ------------------------------------------------------------- other configurations

CHECK = """
    import json, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import mlxnote
        from mlxnote import _platform
    import mlx.core as mx, numpy as np
    rng = np.random.default_rng(0)
    ok = True
    for dt in ("float32", "float64", "complex64"):
        a = rng.standard_normal((70, 50)).astype(dt); b = rng.standard_normal((50, 30)).astype(dt)
        x, y = (mx.array(t, dtype=getattr(mx, dt)) for t in (a, b))
        got = np.array(mx.matmul(x, y, stream=mx.cpu))
        ok &= got.dtype == np.dtype(dt)
        ok &= bool(np.allclose(got, a.astype(np.complex128) @ b, rtol=1e-4, atol=1e-4))
    import os
    maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
    limit = mx.set_cache_limit(0)
    print(json.dumps({"status": _platform.STATUS.as_dict(), "ok": ok, "limit": limit,
                      "openblas_loaded": "scipy_openblas32" in maps,
                      "shim_loaded": "libmlxnote_blas-" in maps,
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, _platform.PlatformWarning)]}))
"""


def check(tmp_path, **env) -> dict:
    return json.loads(run_py(CHECK, tmp_path, **env).stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_opt_out_is_stock(tmp_path):
    d = check(tmp_path, MLXNOTE_BLAS="0", MLXNOTE_CACHE="0")
    assert d["ok"] and not d["openblas_loaded"] and not d["shim_loaded"]
    assert d["status"]["blas"] == "stock" and "MLXNOTE_BLAS=0" in d["status"]["blas_reason"]
    assert d["limit"] == 32 * 2**20 and d["status"]["cache_limit"] is None
    assert d["warnings"] == []


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_default_in_fresh_process_and_overrides(tmp_path):
    d = check(tmp_path, MLXNOTE_CACHE="512M", MLXNOTE_BLAS_THREADS="1")
    assert d["ok"] and d["openblas_loaded"] and d["shim_loaded"], d["status"]
    assert d["status"]["blas"] == "openblas" and d["status"]["threads"] == 1
    assert d["limit"] == 512 * 2**20 == d["status"]["cache_limit"]
    d = check(tmp_path, OPENBLAS_NUM_THREADS="1")
    assert d["status"]["threads"] == 1 and "OPENBLAS_NUM_THREADS" in d["status"]["threads_source"]


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_mlx_imported_first_warns_once_and_does_nothing(tmp_path):
    code = "import mlx.core\n" + textwrap.dedent(CHECK)
    d = json.loads(run_py(code, tmp_path).stdout.strip().splitlines()[-1])
    assert d["ok"] and not d["openblas_loaded"] and d["limit"] == 32 * 2**20
    assert len(d["warnings"]) == 1 and "Import mlxnote before mlx" in d["warnings"][0]


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_missing_compiler_or_library_falls_back_with_one_warning(tmp_path):
    empty = {"MLXNOTE_SHIM_DIR": str(tmp_path / "s"), "XDG_CACHE_HOME": str(tmp_path / "x"),
             "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "t")}
    (tmp_path / "t").mkdir()
    d = check(tmp_path, CC="/nonexistent/cc", **empty)
    assert d["ok"] and not d["openblas_loaded"] and d["status"]["blas"] == "stock"
    assert len(d["warnings"]) == 1 and "C compiler" in d["warnings"][0]
    d = check(tmp_path, MLXNOTE_BLAS=str(tmp_path / "missing.so"))
    assert d["ok"] and d["status"]["blas"] == "stock" and len(d["warnings"]) == 1


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_shim_is_built_on_first_import(tmp_path):
    shim_dir = tmp_path / "shim"
    (tmp_path / "t").mkdir()
    d = check(tmp_path, MLXNOTE_SHIM_DIR=str(shim_dir), XDG_CACHE_HOME=str(tmp_path / "x"),
              HOME=str(tmp_path), TMPDIR=str(tmp_path / "t"))
    assert d["ok"] and d["status"]["blas"] == "openblas" and d["shim_loaded"]
    built = list(shim_dir.glob("libmlxnote_blas-*.so"))
    assert [str(p) for p in built] == [d["status"]["shim"]]
    assert not list(shim_dir.glob(".*tmp"))  # the temporary file was renamed into place


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_damaged_cached_shim_is_rebuilt(tmp_path):
    shim_dir = tmp_path / "shim"
    (tmp_path / "t").mkdir()
    env = dict(MLXNOTE_SHIM_DIR=str(shim_dir), XDG_CACHE_HOME=str(tmp_path / "x"),
               HOME=str(tmp_path), TMPDIR=str(tmp_path / "t"))
    first = check(tmp_path, **env)["status"]["shim"]
    with open(first, "wb") as f:
        f.write(b"not an ELF file")
    d = check(tmp_path, **env)
    assert d["ok"] and d["status"]["blas"] == "openblas" and d["warnings"] == []
    assert open(first, "rb").read(4) == b"\x7fELF"


def test_nothing_happens_off_linux(tmp_path):
    code = "import sys; sys.platform = 'darwin'\n" + textwrap.dedent(CHECK)
    d = json.loads(run_py(code, tmp_path).stdout.strip().splitlines()[-1])
    assert not d["status"]["applies"] and "not Linux" in d["status"]["blas_reason"]
    assert not d["shim_loaded"] and d["status"]["cache_limit"] is None and d["warnings"] == []


def test_info_command(tmp_path):
    r = run_py("import sys; from mlxnote.__main__ import main; sys.exit(main(['info', '--json']))",
               tmp_path)
    d = json.loads(r.stdout)
    assert {"blas", "threads", "cache_limit", "mlx_called_openblas"} <= d.keys()
    if LINUX:
        assert d["blas"] == "openblas" and d["mlx_called_openblas"] is True
    text = run_py("from mlxnote.__main__ import main; main(['info'])", tmp_path).stdout
    assert "BLAS" in text and "cache" in text


ADAPTIVE = """
import ctypes, json
import mlxnote
import mlx.core as mx
from mlxnote import _platform
ob, sh = _platform._handles["openblas"], _platform._handles["shim"]
sh.mlxnote_shim_multi_calls.restype = ctypes.c_ulonglong
out = {"adaptive": _platform.STATUS.threads_adaptive, "threads": _platform.STATUS.threads}
a = mx.ones((32, 32))
mx.eval(a @ a)                      # 32k multiply-adds: below the multi-threading size
out["after_small"] = ob.scipy_openblas_get_num_threads()
b = mx.ones((256, 256))
mx.eval(b @ b)                      # 16M: the first call of its size class measures 1 thread
out["after_first_large"] = ob.scipy_openblas_get_num_threads()
print(json.dumps(out))
"""


OPENBLAS_ONLY = {"MLXNOTE_DNNL_GEMM": "0"}  # every float32 GEMM on OpenBLAS

SHAPES = """
import ctypes, json
import mlxnote
from mlxnote import _platform
sh = _platform._handles["shim"]
sh.mlxnote_shim_observe.argtypes = [ctypes.c_int] * 5 + [ctypes.c_double]
machine, shape = ctypes.c_double(), ctypes.c_double()

def single_ms(s):  # (machine's, shape's) milliseconds left on one thread, rounded up
    sh.mlxnote_shim_single_ns(*s, 0, ctypes.byref(machine), ctypes.byref(shape))
    return [-int(-machine.value // 1e6), -int(-shape.value // 1e6)]

A, B, C = (256, 256, 32), (128, 512, 32), (512, 128, 32)  # one size class (2M multiply-adds)
macs = 256 * 256 * 32
out = {}
sh.mlxnote_shim_observe(*A, 0, 1, macs / 2.0)       # one thread: 2 multiply-adds per ns
sh.mlxnote_shim_observe(*A, 0, 2, macs / 1.0)       # threads slower than that
out["A slow"] = [single_ms(A), single_ms(B)]
sh.mlxnote_shim_observe(*A, 0, 2, macs / 1.0)       # again: twice as long
out["A slow again"] = single_ms(A)
sh.mlxnote_shim_observe(*B, 0, 2, macs / 4.0)       # B threads well
out["B fast"] = [single_ms(A), single_ms(B), single_ms(C)]
sh.mlxnote_shim_observe(*B, 0, 2, macs / 1.0)       # then slow: the machine is busy
out["B slow"] = [single_ms(B), single_ms(C)]
print(json.dumps(out))
"""


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_a_shape_threads_never_speed_up_keeps_only_itself_on_one_thread(tmp_path):
    """A shape whose threaded calls are slower than one thread (on an idle machine too: a
    per-head matmul's 256x256x32) backs off alone, for 5 ms, then 10, ...; only a shape that
    threaded well before and then ran slow marks the machine busy (every shape on one
    thread for a while)."""
    d = json.loads(run_py(SHAPES, tmp_path, **OPENBLAS_ONLY, MLXNOTE_BLAS_THREADS="2").stdout)
    # (the ms left, rounded up: a few ms less if this process was kept off a core between
    # the observation and the reading)
    (machine, a), (_, b) = d["A slow"]
    assert machine == 0 and 0 < a <= 5 and b == 0
    assert d["A slow again"][0] == 0 and 5 < d["A slow again"][1] <= 10
    assert d["B fast"][1:] == [[0, 0], [0, 0]] and d["B fast"][0][0] == 0
    (m_b, s_b), (m_c, s_c) = d["B slow"]
    assert 0 < m_b <= 5 and 0 < s_b <= 5 and 0 < m_c <= 5 and s_c == 0


@pytest.mark.skipif(not LINUX, reason="Linux only")
@pytest.mark.slow
def test_gemm_threads_are_chosen_per_call(tmp_path):
    """With 2 BLAS threads, small GEMMs run on one thread and a size class is measured on
    one thread before threads are used for it (the shim's adaptive threading, which keeps a
    busy machine from stalling every call); MLXNOTE_BLAS_ADAPTIVE=0 keeps the count fixed.
    OpenBLAS's count is read, so oneDNN's GEMMs are off (tests/test_dnnl_gemm.py checks its
    threads)."""
    d = json.loads(run_py(ADAPTIVE, tmp_path, **OPENBLAS_ONLY, MLXNOTE_BLAS_THREADS="2").stdout)
    assert d == {"adaptive": True, "threads": 2, "after_small": 1, "after_first_large": 1}
    d = json.loads(run_py(ADAPTIVE, tmp_path, **OPENBLAS_ONLY, MLXNOTE_BLAS_THREADS="2",
                          MLXNOTE_BLAS_ADAPTIVE="0").stdout)
    assert d == {"adaptive": False, "threads": 2, "after_small": 2, "after_first_large": 2}
    d = json.loads(run_py(ADAPTIVE, tmp_path, **OPENBLAS_ONLY, MLXNOTE_BLAS_THREADS="1").stdout)
    assert d["adaptive"] is False and d["after_small"] == 1
