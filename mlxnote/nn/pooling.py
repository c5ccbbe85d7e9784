"""Pooling: max_pool1d/2d/3d and avg_pool1d/2d/3d (Note's signatures, TensorFlow's
``tf.nn.max_pool``/``tf.nn.avg_pool`` semantics; decisions.md, item 35), on one N-d
implementation (:class:`_Pool`) and the kernel :func:`mlxnote.kernels.pool.pool`.

* ``kernel_size`` and ``strides``: an int, one int per spatial dimension, or TensorFlow's
  ``ksize`` forms (a list of 1, or of ``n + 2`` with 1 for the batch and channel axes);
  ``strides=None`` is ``kernel_size``.
* ``padding``: ``'SAME'``/``'VALID'`` in any case with TensorFlow's rules (SAME pads are
  never a maximum and are not counted by an average), or Note's explicit zero padding (an
  int, or per dimension an int or a ``(before, after)`` pair; default 0), after which the
  window slides VALID: the zeros take part in the max and count in the average.
* ``data_format``: channels last (``'NWC'``, ``'NHWC'``, ``'NDHWC'``, default) or first
  (``'NCW'``, ``'NCHW'``, ``'NCDHW'``), or ``'channels_last'``/``'channels_first'``.
* No weights and no ``dtype``: a float input keeps its dtype (others become float32).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .._validation import is_sequence
from ..kernels.pool import out_length, pool
from .conv_core import same_padding
from .layer import Desc, Layer, shape_desc
from .typing import ArrayLike, ConvPadding, DataFormat1D, DataFormat2D, DataFormat3D, IntOrSeq

_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


class _Pool(Layer):
    """The N-d core of the six pooling layers."""

    rank = 2
    op = "max"
    size_args = ()

    def __init__(self, kernel_size: IntOrSeq, strides: IntOrSeq | None, padding: ConvPadding,
                 data_format: str) -> None:
        super().__init__()
        n = self.rank
        self._set("channels_first", self._check_format(data_format))
        window = self._spatial("kernel_size", kernel_size)
        self.config(kernel_size=window,
                    strides=window if strides is None else self._spatial("strides", strides),
                    padding=self._check_padding(padding), data_format=data_format)
        self._set("_axes", tuple(range(2, n + 2)) if self.channels_first
                  else tuple(range(1, n + 1)))
        self._set("output_size", None)
        self._set("built", True)

    # -- argument checks -----------------------------------------------------------
    def _check_format(self, fmt: Any) -> bool:
        n = self.rank
        if isinstance(fmt, str) and fmt in (_LAST[n], "channels_last"):
            return False
        if isinstance(fmt, str) and fmt in (_FIRST[n], "channels_first"):
            return True
        raise self.error("data_format", fmt, f"{_LAST[n]!r}, {_FIRST[n]!r}, 'channels_last' "
                         "or 'channels_first'", ValueError if isinstance(fmt, str) else TypeError)

    def _spatial(self, arg: str, value: Any) -> tuple[int, ...]:
        """An int, ``rank`` ints, or TensorFlow's forms: 1 int, or ``rank + 2`` with 1 for
        the batch and channel axes."""
        n = self.rank
        if is_sequence(value) and len(value) != n:
            v = list(value)
            cax = 1 if self.channels_first else n + 1
            if len(v) == 1:
                value = v * n
            elif len(v) == n + 2 and v[0] == 1 and v[cax] == 1:
                value = [a for i, a in enumerate(v) if i not in (0, cax)]
        return self.check_ints(arg, value, n)

    def _check_padding(self, padding: Any) -> str | tuple[tuple[int, int], ...]:
        if isinstance(padding, str):
            p = padding.upper()
            if p not in ("SAME", "VALID"):
                raise self.error("padding", padding, "'SAME' or 'VALID' (any case), or "
                                 "explicit zero padding (ints or (before, after) pairs)")
            return p
        return self.check_pad_pairs("padding", padding, self.rank)

    # -- call ----------------------------------------------------------------------
    def _input(self, data: ArrayLike) -> mx.array:
        x = data if isinstance(data, mx.array) else self.as_input(data, cast=False)
        n = self.rank
        if x.ndim != n + 2:
            layout = _FIRST[n] if self.channels_first else _LAST[n]
            raise self.error("data", shape_desc(x), f"rank {n + 2} ({layout})")
        if not mx.issubdtype(x.dtype, mx.floating):
            x = x.astype(mx.float32)
        return x

    def _pads(self, x: mx.array) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(zero padding, SAME padding)`` per spatial axis."""
        none = [(0, 0)] * self.rank
        lengths = [x.shape[a] for a in self._axes]
        if self.padding == "VALID":
            return none, none
        if self.padding == "SAME":
            return none, [same_padding(L, k, s, 1) for L, k, s in
                          zip(lengths, self.kernel_size, self.strides)]
        return list(self.padding), none

    def __call__(self, data: ArrayLike) -> mx.array:
        x = self._input(data)
        given = shape_desc(x)
        zero, same = self._pads(x)
        lengths = [x.shape[a] + lo + hi for a, (lo, hi) in zip(self._axes, zero)]
        if min(x.shape[a] for a in self._axes) == 0:
            raise self.error("data", given, "spatial sizes >= 1 (an empty axis has no "
                             "window, as in TensorFlow)")
        if any(L + lo + hi < k for L, (lo, hi), k in zip(lengths, same, self.kernel_size)):
            raise self.error("data", given, f"spatial sizes of at least the window "
                             f"{list(self.kernel_size)} after padding {zero}")
        out = list(x.shape)
        for a, L, k, s, p in zip(self._axes, lengths, self.kernel_size, self.strides, same):
            out[a] = out_length(L, k, s, p)
        padded = None
        if any(lo or hi for lo, hi in zero):  # Note's zero padding, then VALID
            padded = list(x.shape)
            for a, L in zip(self._axes, lengths):
                padded[a] = L
            self.check_output_size("padding", Desc(repr(self._config["padding"])), padded,
                                   x.dtype, "padded input")
        self.check_output_size("data", given, out, x.dtype)
        if x.size == 0:  # an empty batch (or no channels): the empty result, no graph
            return mx.zeros(out, x.dtype)
        if padded is not None:
            widths = [(0, 0)] * x.ndim
            for a, p in zip(self._axes, zero):
                widths[a] = p
            x = mx.pad(x, widths)
        return pool(x, self.op, self.kernel_size, self.strides, same, self._axes)


class max_pool1d(_Pool):
    """1-D max pooling: ``(B, L, C) -> (B, L_out, C)`` (``'NCW'``: channels first).

    Args:
        kernel_size (int): the window; default 2.
        strides (int, optional): default ``kernel_size``.
        padding: ``'SAME'``/``'VALID'``, or zero padding (int or ``(left, right)``); default 0.
        data_format: ``'NWC'`` (default) or ``'NCW'``.

    ``L_out``: VALID ``(L + pads - k) // s + 1``, SAME ``ceil(L / s)``.
    """

    rank = 1
    op = "max"

    def __init__(self, kernel_size: IntOrSeq = 2, strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat1D = "NWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


class max_pool2d(_Pool):
    """2-D max pooling: ``(B, H, W, C) -> (B, H_out, W_out, C)`` (``'NCHW'``: channels first).

    Args:
        kernel_size (int or 2 ints): the window; default ``(2, 2)``.
        strides (int or 2 ints, optional): default ``kernel_size``.
        padding: ``'SAME'``/``'VALID'``, or zero padding (int, or per dimension an int or a
            ``(before, after)`` pair); default 0.
        data_format: ``'NHWC'`` (default) or ``'NCHW'``.
    """

    rank = 2
    op = "max"

    def __init__(self, kernel_size: IntOrSeq = (2, 2), strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat2D = "NHWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


class max_pool3d(_Pool):
    """3-D max pooling: ``(B, D, H, W, C) -> (B, D_out, H_out, W_out, C)`` (``'NCDHW'``:
    channels first). Args as :class:`max_pool2d`, with 3 ints; ``kernel_size`` defaults
    to ``(2, 2, 2)``, ``data_format`` to ``'NDHWC'``."""

    rank = 3
    op = "max"

    def __init__(self, kernel_size: IntOrSeq = (2, 2, 2), strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat3D = "NDHWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


class avg_pool1d(_Pool):
    """1-D average pooling: ``(B, L, C) -> (B, L_out, C)`` (``'NCW'``: channels first).

    Args:
        kernel_size (int): the window.
        strides (int, optional): default ``kernel_size``.
        padding: ``'SAME'`` (pads not counted), ``'VALID'``, or zero padding (counted);
            default 0.
        data_format: ``'NWC'`` (default) or ``'NCW'``.
    """

    rank = 1
    op = "avg"

    def __init__(self, kernel_size: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat1D = "NWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


class avg_pool2d(_Pool):
    """2-D average pooling: ``(B, H, W, C) -> (B, H_out, W_out, C)``. Args as
    :class:`avg_pool1d` with 2 ints; ``data_format`` ``'NHWC'`` (default) or ``'NCHW'``."""

    rank = 2
    op = "avg"

    def __init__(self, kernel_size: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat2D = "NHWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


class avg_pool3d(_Pool):
    """3-D average pooling: ``(B, D, H, W, C) -> (B, D_out, H_out, W_out, C)``. Args as
    :class:`avg_pool1d` with 3 ints; ``data_format`` ``'NDHWC'`` (default) or ``'NCDHW'``."""

    rank = 3
    op = "avg"

    def __init__(self, kernel_size: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: ConvPadding = 0, data_format: DataFormat3D = "NDHWC") -> None:
        super().__init__(kernel_size, strides, padding, data_format)


__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
           "avg_pool3d"]
