"""``python -m mlxnote info [--json]``: which BLAS MLX uses, its threads, the CPU cache limit,
and mlxnote's C++ kernels (loaded or why not, the ISA they run with, their threads)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from . import __version__, _platform


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def probe() -> dict:
    """Run one small float32 matmul on the CPU and report whether it went through the shim."""
    import mlx.core as mx

    before, dnnl_before = _platform.blas_calls(), _platform.dnnl_gemm_calls()
    a = mx.ones((64, 64), dtype=mx.float32)
    mx.eval(mx.matmul(a, a, stream=mx.cpu))
    after, dnnl_after = _platform.blas_calls(), _platform.dnnl_gemm_calls()
    return {"shim_calls_before": before, "shim_calls_after": after,
            "mlx_called_openblas": before is not None and after > before,
            "dnnl_gemm_calls": dnnl_after,
            "mlx_called_onednn": dnnl_before is not None and dnnl_after > dnnl_before}


def info() -> dict:
    import mlx.core as mx

    s = _platform.STATUS
    out = {"mlxnote": __version__, "mlx": mx.__version__, "python": platform.python_version(),
           "platform": f"{sys.platform} {platform.machine()}", **s.as_dict(),
           "stock_blas": _platform.stock_blas_library(), "memory": _platform.memory_bytes()
           if sys.platform == "linux" else None}
    out.update(probe())
    from .kernels import extension

    out["extension"] = extension.status()
    from . import _config

    out["formulation"] = {"setting": _config.formulation_setting(),
                          "active": _config.formulation_name(),
                          "device": str(mx.default_device())}
    return out


def render(d: dict) -> str:
    lines = [f"mlxnote {d['mlxnote']}  mlx {d['mlx']}  Python {d['python']}  ({d['platform']})"]
    if d["blas"] == "openblas":
        verified = "verified: MLX's matmul called it" if d["mlx_called_openblas"] else \
            "NOT verified: MLX's matmul did not reach the shim"
        lines += [f"BLAS     {d['version']} from scipy-openblas32, {d['corename']} kernels "
                  f"({verified})",
                  f"         library {d['library']}",
                  f"         shim    {d['shim']}",
                  "         forwards cblas_sgemm/dgemm/cgemm"
                  + (" and MLX's LAPACK routines" if d["lapack_forwarded"] else
                     "; LAPACK stays MLX's reference")]
        lines.append(f"GEMM     float32: {d['gemm']} ({d['gemm_reason']}"
                     + (f"; {d['dnnl_gemm_calls']} calls on oneDNN so far, the 64x64 probe "
                        f"{'did' if d['mlx_called_onednn'] else 'did NOT'} reach it; "
                        f"{d['gomp_spin']}" if d["dnnl_library"] else "") + ")")
    elif d["blas"] == "custom":
        lines.append(f"BLAS     {d['library']} (from {_platform.ENV_BLAS})")
    else:
        lines.append(f"BLAS     stock: MLX's bundled reference BLAS {d['stock_blas']}".rstrip())
        lines.append(f"         why: {d['blas_reason']}")
    if d["threads"] is not None:
        lines.append(f"threads  {d['threads']} BLAS threads: {d['threads_source']}")
    if d["cache_limit"] is not None:
        env = _env(_platform.ENV_CACHE)
        how = (f"{_platform.ENV_CACHE}={env}" if env.lower() not in _platform.ON else
               f"1/{_platform.CACHE_FRACTION} of {_size(d['memory'])} memory, at least "
               f"{_size(_platform.CACHE_FLOOR)}")
        lines.append(f"cache    {_size(d['cache_limit'])} CPU buffer cache ({how}; "
                     f"MLX's default {_size(d['cache_default'])})")
    else:
        lines.append(f"cache    MLX's default ({d['cache_reason']})")
    f = d["formulation"]
    lines.append(f"layers   {f['active']} formulation on {f['device']} (MLXNOTE_FORMULATION="
                 f"{f['setting']})")
    ext = d["extension"]
    if ext["loaded"]:
        lines.append(f"kernels  mlxnote's C++ extension: {', '.join(ext['kernels'])} "
                     f"({ext['isa']}, {ext['threads']} threads; built for MLX {ext['mlx_built']})")
        lines.append(f"oneDNN   {ext['onednn']}")
    else:
        lines.append(f"kernels  pure MLX (the C++ extension is not used: {ext['reason']})")
    lines.append(f"switches {_platform.ENV_BLAS}=0 (stock BLAS), {_platform.ENV_CACHE}=0 (stock "
                 f"cache), {_platform.ENV_CACHE}=2G|25%, {_platform.ENV_THREADS}=N, MLXNOTE_EXT=0 "
                 "(no C++ kernels), MLXNOTE_THREADS=N, MLXNOTE_FORMULATION=cpu|gpu|auto, "
                 "MLXNOTE_BLAS_ADAPTIVE=0, MLXNOTE_ONEDNN=0 (no oneDNN convs), "
                 "MLXNOTE_DNNL_WGRAD=0|1 (conv weight gradients on oneDNN's kernel | as one "
                 "GEMM per tap at any size), "
                 "MLXNOTE_SIMD=avx2|baseline (narrower vectors), "
                 f"{_platform.ENV_DNNL_GEMM}=0|all (float32 GEMMs on oneDNN by shape)")
    return "\n".join(lines)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlxnote")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="show the BLAS MLX uses, its threads and the CPU cache limit")
    i.add_argument("--json", action="store_true", help="print a JSON object instead")
    a = p.parse_args(argv)
    if a.cmd == "info":
        d = info()
        print(json.dumps(d, indent=1) if a.json else render(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
