"""Shared by the C++ kernel tests: the comparison (absolute error scaled by the oracle's
largest value) and running with one thread and with the pool's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np


def close(a, b, tol: float = 3e-6) -> None:
    """``|a - b| <= tol * max(1, max|b|)`` elementwise, and the same shape."""
    a, b = np.array(a), np.array(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max())))


@contextlib.contextmanager
def threads(ext, n: int) -> Iterator[None]:
    """The extension's pool at ``n`` threads inside the block."""
    old = ext.threads()
    ext.set_threads(n)
    try:
        yield
    finally:
        ext.set_threads(old)


def thread_counts(ext) -> tuple[int, ...]:
    """One thread, and the pool's count."""
    return tuple(sorted({1, ext.threads()}))
