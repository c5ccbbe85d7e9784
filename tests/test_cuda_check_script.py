"""scripts/cuda_check.sh where no NVIDIA GPU is: it stops with a clear message, and the part
it can run anywhere (rebuilding the split mlx-cuda-13 wheel) is checked on fake wheels."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cuda_check.sh"
WHEEL = "mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl"


def run(*args: str, env: dict | None = None, path_dir: Path | None = None):
    e = {k: v for k, v in os.environ.items() if k not in ("OUT", "MLXNOTE_WHEELS")}
    e.update(env or {})
    if path_dir is not None:
        e["PATH"] = f"{path_dir}:{e['PATH']}"
    e.setdefault("PYTHON", sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=e, timeout=120)


def fake_wheel(path: Path, size: int = 300_000) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mlx/lib/libmlx.so", os.urandom(size))
        z.writestr("mlx_cuda_13-0.32.4.dist-info/METADATA", "Name: mlx-cuda-13\n")
    return path.read_bytes()


def test_script_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="an NVIDIA driver is here")
def test_stops_clearly_without_a_gpu(tmp_path):
    res = run(env={"OUT": str(tmp_path / "out")})
    assert res.returncode == 2
    assert "no NVIDIA GPU here: nvidia-smi is not installed" in res.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the GPU check


def _fake_nvidia_smi(bin_dir: Path, listing: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{listing}'\n")
    exe.chmod(0o755)
    return bin_dir


def test_stops_when_the_driver_lists_no_gpu(tmp_path):
    bin_dir = _fake_nvidia_smi(tmp_path / "bin", "No devices were found")
    res = run(path_dir=bin_dir)
    assert res.returncode == 2 and "nvidia-smi -L lists none" in res.stderr


def test_stops_when_the_wheels_are_missing(tmp_path):
    bin_dir = _fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA H200 (UUID: GPU-0)")
    empty = tmp_path / "wheels"
    empty.mkdir()
    res = run(str(empty), path_dir=bin_dir,
              env={"OUT": str(tmp_path / "out"), "CUDA_CHECK_WORK": str(tmp_path / "w")})
    assert res.returncode == 3, res.stderr
    assert "no mlx_cuda_13-0.32.4 wheel (or its parts)" in res.stderr
    assert "GPU: GPU 0: NVIDIA H200" in res.stderr


def test_reassembles_a_wheel_split_in_two(tmp_path):
    src, dest = tmp_path / "wheels", tmp_path / "dest"
    src.mkdir()
    data = fake_wheel(tmp_path / WHEEL)
    half = len(data) // 2
    (src / f"{WHEEL}.part1").write_bytes(data[:half])
    (src / f"{WHEEL}.part2").write_bytes(data[half:])
    (src / f"{WHEEL}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {WHEEL}\n")
    res = run("--assemble", str(src), str(dest))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(dest / WHEEL)
    assert (dest / WHEEL).read_bytes() == data
    assert "from 2 parts" in res.stderr and "sha256 matches" in res.stderr


def test_split_parts_named_by_split(tmp_path):
    src = tmp_path / "wheels"
    src.mkdir()
    data = fake_wheel(tmp_path / WHEEL)
    third = len(data) // 3
    for suffix, chunk in zip(("aa", "ab", "ac"),
                             (data[:third], data[third:2 * third], data[2 * third:])):
        (src / f"{WHEEL}.{suffix}").write_bytes(chunk)
    res = run("--assemble", str(src), str(tmp_path / "dest"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "dest" / WHEEL).read_bytes() == data


def test_refuses_a_missing_or_corrupt_part(tmp_path):
    src = tmp_path / "wheels"
    src.mkdir()
    data = fake_wheel(tmp_path / WHEEL)
    (src / f"{WHEEL}.part1").write_bytes(data[: len(data) // 2])
    res = run("--assemble", str(src), str(tmp_path / "dest"))
    assert res.returncode == 3 and "the rest did not arrive" in res.stderr
    (src / f"{WHEEL}.part2").write_bytes(data[len(data) // 2 + 10:])  # bytes lost
    res = run("--assemble", str(src), str(tmp_path / "dest"))
    assert res.returncode == 3 and "not a complete wheel" in res.stderr
    (src / f"{WHEEL}.part2").write_bytes(data[len(data) // 2:])
    (src / f"{WHEEL}.sha256").write_text("0" * 64 + "\n")
    res = run("--assemble", str(src), str(tmp_path / "dest"))
    assert res.returncode == 3 and "sha256" in res.stderr


def test_a_whole_wheel_is_used_as_it_is(tmp_path):
    src = tmp_path / "wheels"
    src.mkdir()
    fake_wheel(src / WHEEL)
    res = run("--assemble", str(src), str(tmp_path / "dest"))
    assert res.returncode == 0 and res.stdout.strip() == str(src / WHEEL)
    assert not (tmp_path / "dest").exists()


@pytest.mark.slow
def test_dry_run_writes_both_reports(tmp_path):
    """Steps 4 and 5 (the suite and the benchmarks into OUT) with this Python, no GPU:
    CUDA_CHECK_DRY=1, one conformance case and one quick benchmark family."""
    out = tmp_path / "out"
    res = run(env={"CUDA_CHECK_DRY": "1", "OUT": str(out),
                   "CUDA_CHECK_WORK": str(tmp_path / "work"),
                   "CONFORMANCE_ARGS": "--layer identity --dtype float32",
                   "BENCH_ARGS": "--family norm --quick"})
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((out / "conformance" / "conformance.json").read_text())["meta"]
    assert meta["formulation"] == "cpu" and meta["device"] == "Device(cpu, 0)"
    assert json.loads((out / "bench.json").read_text())["rows"]
    summary = (out / "summary.txt").read_text()
    assert "conformance: exit 0:" in summary and "benchmarks: exit 0" in summary
    assert "python -m mlxnote info" in (out / "env.txt").read_text()
