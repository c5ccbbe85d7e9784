"""Checkpoint integrity: a CRC-32 of every tensor's bytes, and the file's layout.

:func:`checksums` gives the metadata field ``crc32`` (JSON: tensor name -> 8 hex
digits of ``zlib.crc32`` over the tensor's bytes as safetensors stores them, C order,
little endian); :func:`verify` reads the file's header, refuses bytes after the last
tensor (appended garbage) or before it (a hole), and recomputes every tensor's CRC from
the file. CRC-32 finds every single flipped byte and every burst of up to 32 bits: it
guards against corruption (a bad disk, a truncated copy, an edited file), not against
someone who rewrites the checksums on purpose.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from typing import Any

import mlx.core as mx
import numpy as np

__all__ = ["FIELD", "tensor_bytes", "checksums", "header", "verify"]

FIELD = "crc32"
_UINT = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32, 8: mx.uint64}


def tensor_bytes(a: mx.array) -> memoryview:
    """``a``'s bytes as safetensors stores them (C order; the platform's little-endian
    layout): a bit-for-bit view as unsigned integers of the same width, so that every
    dtype (bfloat16 and bool included) goes through NumPy unchanged."""
    if a.dtype.size in _UINT and a.dtype != _UINT[a.dtype.size]:
        a = a.view(_UINT[a.dtype.size])
    arr = np.ascontiguousarray(np.array(a, copy=False))
    if arr.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts
        arr = arr.byteswap()
    return memoryview(arr).cast("B")


def checksums(arrays: dict[str, mx.array]) -> str:
    """The metadata value: ``{"name": "1a2b3c4d", ...}`` for every array."""
    return json.dumps({k: f"{zlib.crc32(tensor_bytes(v)):08x}" for k, v in arrays.items()},
                      sort_keys=True)


def header(path: str) -> tuple[dict[str, Any], int]:
    """``(the JSON header, offset of the data)`` of safetensors file ``path``;
    ``ValueError`` when the header cannot be read."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > os.path.getsize(path) - 8:
            raise ValueError(f"header length {n} exceeds the file")
        return json.loads(f.read(n)), 8 + n


def _layout(info: dict[str, Any], start: int, size: int) -> list[str]:
    """Problems with where the tensors lie: overlaps, holes, bytes after the last one."""
    spans = sorted(tuple(v["data_offsets"]) for k, v in info.items() if k != "__metadata__")
    end = 0
    for a, b in spans:
        if a != end:
            return [f"its tensors are not contiguous (a gap or overlap at byte {start + a})"]
        end = b
    extra = size - start - end
    if extra > 0:
        return [f"{extra} bytes after its last tensor (appended data)"]
    if extra < 0:
        return [f"{-extra} bytes missing from its last tensor (truncated)"]
    return []


def verify(path: str, stored: str) -> list[str]:
    """Every integrity problem of safetensors file ``path`` whose ``crc32`` metadata is
    ``stored`` (empty when the file is whole)."""
    try:
        expect = json.loads(stored)
        if not isinstance(expect, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        return [f"its {FIELD!r} metadata is not readable ({e})"]
    info, start = header(path)
    size = os.path.getsize(path)
    problems = _layout(info, start, size)
    if problems:
        return problems
    names = [k for k in info if k != "__metadata__"]
    problems += [f"tensor {k!r} has no checksum" for k in names if k not in expect]
    problems += [f"a checksum for {k!r}, which is not in the file" for k in expect
                 if k not in info]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            for k in names:
                if k not in expect:
                    continue
                a, b = info[k]["data_offsets"]
                got = f"{zlib.crc32(view[start + a:start + b]):08x}"
                if got != expect[k]:
                    problems.append(f"tensor {k!r} fails its checksum (crc32 {expect[k]} "
                                    f"stored, {got} computed from the file): corrupt data")
        finally:
            view.release()
    return problems

