"""Fast MLX on Linux CPUs: an optimized BLAS and a right-sized CPU buffer cache.

Runs once, when ``mlxnote`` is imported, and must run *before* ``mlx.core`` loads.

BLAS. ``mlx[cpu]`` on Linux binds ``cblas_sgemm``/``cblas_dgemm``/``cblas_cgemm`` and 21 LAPACK
routines to a bundled *reference* BLAS/LAPACK (``mlx_cpu.libs/libblas-*.so``). We load
OpenBLAS from PyPI's ``scipy-openblas32`` (a dependency on Linux) privately, and a tiny
forwarding shim (``_blas_shim.c``: the standard names jump to OpenBLAS's ``scipy_``-prefixed
ones, bound by address) which, once fully bound, is made ``RTLD_GLOBAL``: the dynamic linker
then binds ``libmlx.so``'s references to it, because globally loaded objects are searched
before ``libmlx.so``'s own dependencies. Only those 24 names (and the shim's ``mlxnote_*``
helpers) become global; SciPy & co. keep their own OpenBLAS. The shim is
compiled once with the system C compiler into a cache folder (``MLXNOTE_SHIM_DIR``, else
``$XDG_CACHE_HOME/mlxnote`` or ``~/.cache/mlxnote``, else a temporary folder); ``make install``
builds it. Any failure (no compiler, no ``scipy-openblas32``) leaves MLX's stock BLAS in place
and warns once: importing mlxnote never fails because of this.

Threads. OpenBLAS gets one thread per usable CPU (affinity and cgroup quota), unless
``MLXNOTE_BLAS_THREADS`` says otherwise, or ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` are set
(OpenBLAS reads those itself). This does not oversubscribe: MLX's CPU stream thread makes the
BLAS call and is OpenBLAS's first thread, no other MLX op runs on that stream during the call,
and Python's thread waits in ``mx.eval``; so at most one busy thread per core. Each GEMM then
picks its own thread count (the shim's "Threads" comment): one thread below about 2M
multiply-adds, and one thread for a while for a shape whose multi-threaded call ran slower
than one thread would have, and for every shape once a shape that threads had sped up does
(other processes keep the cores busy: a helper thread then waits for a scheduler slice on
every call). ``MLXNOTE_BLAS_ADAPTIVE=0`` keeps a fixed count
(measurements: ``docs/performance.md``).

oneDNN. When oneDNN is installed (the ``cpu`` extra: ``libdnnl.so.3`` in the environment's
``lib`` folder, where the C++ extension finds it too), it is loaded privately as well and the
shim sends the float32 GEMMs where its ``dnnl_sgemm`` is faster than OpenBLAS's (the shim's
"oneDNN" comment; ``benchmarks/bench_gemm.py``) to it, with the same per-call thread choice
(its OpenMP threads). ``STATUS.gemm`` says which routing is in force.

Cache. MLX's CPU allocator keeps at most 32 MiB of freed buffers; larger temporaries go back to
the OS and are page-faulted in again on every step. On the CPU device only, we raise the limit
to 1/8 of the memory the process may use (RAM, or the cgroup limit), at least 256 MiB. The
cache never holds more than the process had allocated at its peak.

Switches (environment, read at import):

- ``MLXNOTE_BLAS``: ``0``/``off`` keeps MLX's stock BLAS; a path loads that library (it must
  export ``cblas_sgemm``, e.g. MKL's ``libmkl_rt.so``) instead of the bundled OpenBLAS.
- ``MLXNOTE_BLAS_THREADS``: OpenBLAS thread count.
- ``MLXNOTE_DNNL_GEMM``: ``0``/``off`` keeps every float32 GEMM on OpenBLAS; ``all`` sends
  every one to oneDNN (tests). ``MLXNOTE_ONEDNN=0`` (no oneDNN at all) turns it off too.
- ``MLXNOTE_CACHE``: ``0``/``off`` keeps MLX's default; ``2G``, ``512M``, a byte count, or
  ``25%`` of memory sets the limit.

Nothing happens on macOS (MLX uses Accelerate there) or if ``mlx.core`` was imported before
mlxnote (a warning says so once). ``python -m mlxnote info`` shows the outcome (:data:`STATUS`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._host import (  # noqa: F401 (public here: tests, benchmarks and `info` read them)
    CACHE_FLOOR,
    CACHE_FRACTION,
    ENV_CACHE,
    ENV_SHIM_DIR,
    SHIM_SOURCE,
    build_shim,
    default_cache_limit,
    memory_bytes,
    parse_size,
    usable_cpus,
)

ENV_BLAS = "MLXNOTE_BLAS"
ENV_THREADS = "MLXNOTE_BLAS_THREADS"
ENV_ADAPTIVE = "MLXNOTE_BLAS_ADAPTIVE"
ENV_DNNL_GEMM = "MLXNOTE_DNNL_GEMM"
ENV_ONEDNN = "MLXNOTE_ONEDNN"  # oneDNN as a whole (mlxnote/kernels/extension.py)
ROUTES = {"openblas": 0, "auto": 1, "onednn": 2}  # the shim's MLXNOTE_ROUTE_*

OFF = {"0", "off", "false", "no", "stock"}
ON = {"", "1", "on", "true", "yes", "auto"}  # the default choice



class PlatformWarning(RuntimeWarning):
    """The fast-BLAS / cache set-up could not be applied (mlxnote still works, just slower)."""


@dataclass
class Status:
    """What :func:`configure` did. ``blas`` is ``'openblas'``, ``'custom'`` or ``'stock'``."""

    applies: bool = False
    blas: str = "stock"
    blas_reason: str = ""
    library: str = ""
    version: str = ""
    corename: str = ""
    shim: str = ""
    lapack_forwarded: bool = False
    threads: int | None = None
    threads_adaptive: bool = False
    threads_source: str = ""
    gemm: str = "openblas"
    gemm_reason: str = ""
    dnnl_library: str = ""
    gomp_spin: str = ""
    cache_limit: int | None = None
    cache_default: int | None = None
    cache_reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


STATUS = Status()
_done = False
_handles: dict[str, ctypes.CDLL] = {}  # keep the libraries loaded


def _warn(msg: str) -> None:
    STATUS.warnings.append(msg)
    warnings.warn(f"mlxnote: {msg}", PlatformWarning, stacklevel=3)


def configure() -> Status:
    """Load the fast BLAS and size the CPU cache (once; see the module docstring)."""
    global _done
    if _done:
        return STATUS
    _done = True
    if sys.platform != "linux":
        STATUS.blas_reason = STATUS.cache_reason = (
            f"not Linux ({sys.platform}): MLX's own BLAS and cache are used")
        return STATUS
    blas_off = os.environ.get(ENV_BLAS, "").strip().lower() in OFF
    cache_off = os.environ.get(ENV_CACHE, "").strip().lower() in OFF
    if "mlx.core" in sys.modules:
        STATUS.blas_reason = STATUS.cache_reason = "mlx.core was imported before mlxnote"
        if not (blas_off and cache_off):
            _warn("mlx.core was imported before mlxnote, so MLX keeps its slow reference BLAS "
                  "and 32 MiB CPU cache. Import mlxnote before mlx to enable the fast BLAS "
                  f"(or set {ENV_BLAS}=0 {ENV_CACHE}=0 to silence this).")
        return STATUS
    STATUS.applies = True
    if blas_off:
        STATUS.blas_reason = f"turned off by {ENV_BLAS}=0"
    else:
        try:
            _load_blas(os.environ.get(ENV_BLAS, "").strip())
        except Exception as e:  # never break `import mlxnote`
            STATUS.blas, STATUS.blas_reason = "stock", str(e)
            _warn(f"the fast BLAS is not available ({e}); MLX uses its reference BLAS (slow). "
                  f"Set {ENV_BLAS}=0 to silence this.")
    if cache_off:
        STATUS.cache_reason = f"turned off by {ENV_CACHE}=0"
    else:
        try:
            _size_cache(os.environ.get(ENV_CACHE, "").strip())
        except Exception as e:
            STATUS.cache_reason = str(e)
            _warn(f"the CPU cache limit was not set ({e}).")
    return STATUS


# ---------------------------------------------------------------------------------- BLAS


def _load_blas(choice: str) -> None:
    if choice.lower() not in ON | {"openblas"}:  # a library path
        lib = ctypes.CDLL(choice, mode=ctypes.RTLD_LOCAL)
        if not hasattr(lib, "cblas_sgemm"):
            raise OSError(f"{choice} does not export cblas_sgemm")
        _set_threads_custom(lib)
        ctypes.CDLL(choice, mode=ctypes.RTLD_GLOBAL | os.RTLD_NOLOAD)
        _handles["custom"] = lib
        STATUS.blas, STATUS.library = "custom", choice
        return
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scipy-openblas32 is not installed (pip install scipy-openblas32)")
    pkg = Path(list(spec.submodule_search_locations)[0])
    libs = sorted(glob.glob(str(pkg / "lib" / "libscipy_openblas*.so*")))
    if not libs:
        raise OSError(f"no libscipy_openblas*.so in {pkg / 'lib'}")
    shim = build_shim()
    ob = ctypes.CDLL(libs[0], mode=ctypes.RTLD_LOCAL)  # private: SciPy keeps its own copy
    try:
        sh = ctypes.CDLL(str(shim), mode=ctypes.RTLD_LOCAL)
    except OSError:  # a damaged cached copy: build it again, once
        shim.unlink(missing_ok=True)
        shim = build_shim()
        sh = ctypes.CDLL(str(shim), mode=ctypes.RTLD_LOCAL)
    sh.mlxnote_shim_name.restype = ctypes.c_char_p
    sh.mlxnote_shim_bind.argtypes = [ctypes.c_int, ctypes.c_void_p]
    i = 0
    while (name := sh.mlxnote_shim_name(i)) is not None:
        fn = getattr(ob, "scipy_" + name.decode())  # AttributeError: an incompatible OpenBLAS
        if sh.mlxnote_shim_bind(i, ctypes.cast(fn, ctypes.c_void_p).value) != 0:
            raise OSError(f"could not bind {name.decode()}")
        i += 1
    if not sh.mlxnote_shim_ready():
        raise OSError("the BLAS shim has unbound entries")
    sh.mlxnote_blas_calls.restype = ctypes.c_ulonglong
    ob.scipy_openblas_get_config.restype = ctypes.c_char_p
    ob.scipy_openblas_get_corename.restype = ctypes.c_char_p
    version = ob.scipy_openblas_get_config().decode().split(" DYNAMIC")[0]
    corename = ob.scipy_openblas_get_corename().decode()
    n, source = _thread_request()
    if n is not None:
        ob.scipy_openblas_set_num_threads(n)
    threads = ob.scipy_openblas_get_num_threads()
    adaptive = threads > 1 and os.environ.get(ENV_ADAPTIVE, "").strip().lower() not in OFF
    # adaptive: each GEMM picks 1 or all threads (the shim's "Threads" comment); else
    # OpenBLAS keeps its count and oneDNN gets the same
    sh.mlxnote_shim_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
    sh.mlxnote_shim_threads(ctypes.cast(ob.scipy_openblas_set_num_threads, ctypes.c_void_p).value
                            if adaptive else None, threads)
    _bind_dnnl(sh)
    # Everything is bound and set: only now make the standard names visible to libmlx.so.
    ctypes.CDLL(str(shim), mode=ctypes.RTLD_GLOBAL | os.RTLD_NOLOAD)
    _handles.update(openblas=ob, shim=sh)
    STATUS.blas, STATUS.library, STATUS.shim = "openblas", libs[0], str(shim)
    STATUS.version, STATUS.corename, STATUS.threads_source = version, corename, source
    STATUS.lapack_forwarded = bool(sh.mlxnote_lapack_forwarded())
    STATUS.threads = threads
    STATUS.threads_adaptive = adaptive


def dnnl_library() -> Path:
    """Where oneDNN is when the ``cpu`` extra is installed (the C++ extension's path too)."""
    return Path(sys.prefix) / "lib" / "libdnnl.so.3"


def _bind_dnnl(sh: ctypes.CDLL) -> None:
    """Hands oneDNN's sgemm to the shim when installed and not turned off."""
    choice = os.environ.get(ENV_DNNL_GEMM, "").strip().lower()
    if os.environ.get(ENV_ONEDNN, "").strip().lower() in OFF:
        STATUS.gemm_reason = f"turned off by {ENV_ONEDNN}=0"
        return
    if choice in OFF:
        STATUS.gemm_reason = f"turned off by {ENV_DNNL_GEMM}=0"
        return
    if choice not in ON | {"all"}:
        _warn(f"{ENV_DNNL_GEMM}={choice!r} is not 0, 1 or all; the default (1) is used.")
    path = dnnl_library()
    if not path.exists():
        STATUS.gemm_reason = f"oneDNN is not installed ({path} missing: pip install 'mlxnote[cpu]')"
        return
    try:
        with _gomp_spin():
            lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
        sgemm, omp_set = lib.dnnl_sgemm, lib.omp_set_num_threads  # OpenMP: a dependency
    except (OSError, AttributeError) as e:
        STATUS.gemm_reason = f"oneDNN could not be loaded ({e})"
        return
    sh.mlxnote_shim_dnnl.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    route = "onednn" if choice == "all" else "auto"
    sh.mlxnote_shim_dnnl(ctypes.cast(sgemm, ctypes.c_void_p).value,
                         ctypes.cast(omp_set, ctypes.c_void_p).value, ROUTES[route])
    sh.mlxnote_dnnl_gemm_calls.restype = ctypes.c_ulonglong
    _handles["dnnl"] = lib
    STATUS.gemm, STATUS.dnnl_library = route, str(path)
    sh.mlxnote_shim_dnnl_min.restype = ctypes.c_longlong
    STATUS.gemm_reason = ("every float32 GEMM on oneDNN" if route == "onednn" else
                          f"float32 GEMMs of {sh.mlxnote_shim_dnnl_min()} multiply-adds or more "
                          "on oneDNN but for a few shapes with B transposed, the others on "
                          "OpenBLAS")


GOMP_SPINCOUNT = "30000"  # about 1 ms of spinning here (the default 300000: about 10 ms)


@contextlib.contextmanager
def _gomp_spin() -> Iterator[None]:
    """GNU OpenMP (oneDNN's threads) reads its settings once, when it loads: unless the user
    set ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` or it is loaded already, it loads with
    ``GOMP_SPINCOUNT`` = :data:`GOMP_SPINCOUNT`, then the variable is removed again (other
    libraries never see it). An idle worker thread spins that long for the next parallel
    region before it sleeps: measured, the default burnt 9.5 ms of the other core after
    every multi-threaded GEMM (competing with other processes and mlxnote's own thread
    pool); 30000 spins still keep back-to-back GEMMs' workers awake."""
    user = [v for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if os.environ.get(v)]
    try:
        with open("/proc/self/maps") as f:
            loaded = "libgomp" in f.read()
    except OSError:
        loaded = False
    if user or loaded:
        STATUS.gomp_spin = (f"{', '.join(user)} set by the user" if user else
                            "GNU OpenMP was loaded before mlxnote: its settings are kept")
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT
    STATUS.gomp_spin = f"GOMP_SPINCOUNT={GOMP_SPINCOUNT} while it loaded"
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)


def gemm_route(route: str) -> str:
    """Sets where float32 GEMMs go from now on: ``'auto'`` (by shape), ``'onednn'`` (all) or
    ``'openblas'`` (none to oneDNN); returns the previous route. Tests and benchmarks use it;
    ValueError names the routes, RuntimeError says why oneDNN is not bound."""
    if route not in ROUTES:
        raise ValueError(f"gemm_route: route must be one of {sorted(ROUTES)}, got {route!r}")
    if "dnnl" not in _handles:
        raise RuntimeError(f"gemm_route: oneDNN's sgemm is not bound ({STATUS.gemm_reason})")
    sh = _handles["shim"]
    if sh.mlxnote_shim_dnnl_forked() and route != "openblas":
        raise RuntimeError("gemm_route: this process was forked after oneDNN was loaded; its "
                           "OpenMP threads are gone, so every GEMM stays on OpenBLAS")
    old = sh.mlxnote_shim_dnnl(None, None, ROUTES[route])
    STATUS.gemm = route
    return {v: k for k, v in ROUTES.items()}[old]


def _set_threads_custom(lib: ctypes.CDLL) -> None:
    n, STATUS.threads_source = _thread_request()
    for setter, getter in (("openblas_set_num_threads", "openblas_get_num_threads"),
                           ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads")):
        if hasattr(lib, setter):
            if n is not None:
                getattr(lib, setter)(n)
            STATUS.threads = getattr(lib, getter)()
            return
    STATUS.threads_source = "left to the library (no known thread setter)"


def _thread_request() -> tuple[int | None, str]:
    v = os.environ.get(ENV_THREADS, "").strip()
    if v:
        try:
            n = int(v)
            if n >= 1:
                return n, f"{ENV_THREADS}={v}"
        except ValueError:
            pass
        _warn(f"{ENV_THREADS}={v!r} is not a positive integer; ignored.")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip():
            return None, f"{var}={os.environ[var]} (read by OpenBLAS)"
    cpus = usable_cpus()
    return cpus, f"one per usable CPU ({cpus})"


def blas_calls() -> int | None:
    """cblas_*gemm calls MLX made through the shim so far (None without the shim)."""
    sh = _handles.get("shim")
    return None if sh is None else int(sh.mlxnote_blas_calls())


def dnnl_gemm_calls() -> int | None:
    """cblas_sgemm calls oneDNN computed so far (None when it is not bound)."""
    sh = _handles.get("shim")
    return None if sh is None or "dnnl" not in _handles else int(sh.mlxnote_dnnl_gemm_calls())


def stock_blas_library() -> str:
    """The reference BLAS bundled with mlx[cpu] (what MLX uses without mlxnote)."""
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return ""
    site = Path(list(spec.submodule_search_locations)[0]).parent
    hits = sorted(glob.glob(str(site / "mlx_cpu.libs" / "libblas*.so*")))
    return hits[0] if hits else ""


# --------------------------------------------------------------------------------- cache


def _size_cache(spec: str) -> None:
    import mlx.core as mx

    if mx.default_device().type != mx.DeviceType.cpu or mx.is_available(mx.gpu):
        STATUS.cache_reason = "a GPU is available: MLX's own cache policy is kept"
        return
    limit = parse_size(spec, memory_bytes()) if spec.lower() not in ON else default_cache_limit()
    STATUS.cache_default = mx.set_cache_limit(limit)
    STATUS.cache_limit = limit


configure()
