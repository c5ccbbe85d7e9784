"""What this host offers mlxnote's set-up (:mod:`mlxnote._platform`): the CPUs and memory this
process may use (affinity and cgroup v2 limits), the CPU cache size that follows from them, and
the compiled BLAS shim (``_blas_shim.c``, built once into a cache folder)."""

from __future__ import annotations

import math
import os
import platform
import zlib
from pathlib import Path

ENV_CACHE = "MLXNOTE_CACHE"
ENV_SHIM_DIR = "MLXNOTE_SHIM_DIR"
CACHE_FRACTION = 8  # 1/8 of the memory the process may use
CACHE_FLOOR = 256 * 2**20
SHIM_SOURCE = Path(__file__).with_name("_blas_shim.c")


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _shim_dirs():
    """Candidate folders for the compiled shim, best first (lazy: tempfile costs an import)."""
    if os.environ.get(ENV_SHIM_DIR):
        yield Path(os.environ[ENV_SHIM_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    yield Path(base) / "mlxnote"
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    yield Path(tempfile.gettempdir()) / f"mlxnote-{uid}"


def build_shim() -> Path:
    """Path of the compiled shim, compiling ``_blas_shim.c`` once if no cached copy exists."""
    src = SHIM_SOURCE.read_bytes()
    tag = f"{zlib.crc32(src + platform.machine().encode()):08x}-{len(src)}"
    name = f"libmlxnote_blas-{tag}.so"
    for d in _shim_dirs():
        if (d / name).is_file():
            return d / name
    import shlex
    import shutil
    import subprocess

    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")
                                                    or ""]
    if not cc[0] or not shutil.which(cc[0]):
        raise OSError("no C compiler (cc or gcc) to build the small BLAS shim; install gcc")
    errors = []
    for d in _shim_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{name}.{os.getpid()}.tmp"
            r = subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-o", str(tmp),
                                str(SHIM_SOURCE)], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise OSError(f"{' '.join(cc)} failed: {r.stderr.strip()[-400:]}")
            os.replace(tmp, d / name)  # atomic: concurrent imports never see a partial file
            return d / name
        except PermissionError as e:
            errors.append(f"{d}: {e}")
    raise OSError("no writable folder for the BLAS shim: " + "; ".join(errors))


def memory_bytes() -> int:
    """Memory this process may use: physical RAM, capped by a cgroup v2 memory limit."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        lim = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if lim != "max":
            mem = min(mem, int(lim))
    except (OSError, ValueError):
        pass
    return mem


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str, total: int) -> int:
    """``'2G'``, ``'512MiB'``, ``'1048576'`` or ``'25%'`` (of ``total``) -> bytes."""
    t = text.strip().lower().replace(" ", "")
    try:
        if t.endswith("%"):
            return int(total * float(t[:-1]) / 100)
        t = t.removesuffix("ib").removesuffix("b")
        unit = t[-1] if t and t[-1] in _UNITS else ""
        return int(float(t[: len(t) - len(unit)]) * _UNITS[unit])
    except (ValueError, IndexError):
        raise ValueError(f"{ENV_CACHE}={text!r} is not a size like 2G, 512M, 25% or 0") from None


def default_cache_limit(total: int | None = None) -> int:
    total = memory_bytes() if total is None else total
    return max(CACHE_FLOOR, total // CACHE_FRACTION)
