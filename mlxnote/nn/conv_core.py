"""The N-d core behind every conv layer (:mod:`mlxnote.nn.conv` holds the ten public
classes and the conventions they follow): argument checks, Note's weight layouts, TF's SAME
and Keras's transposed output sizes, and the call into :func:`mlxnote.kernels.conv.conv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .._config import compute_dtype
from ..kernels import conv as kconv
from .layer import Desc, Layer, shape_desc
from .typing import Activation, ArrayLike, ConvPadding, DTypeLike, Initializer, IntOrSeq

_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def same_padding(length: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME padding ``(before, after)`` for one dimension."""
    out = -(-length // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
    return total // 2, total - total // 2


def transpose_length(length: int, k: int, s: int, d: int, padding: str,
                     output_padding: int | None) -> int:
    """Keras ``deconv_output_length``: the output length of a transposed convolution."""
    keff = (k - 1) * d + 1
    if output_padding is None:
        return length * s + max(keff - s, 0) if padding == "VALID" else length * s
    pad = keff // 2 if padding == "SAME" else 0
    return (length - 1) * s + keff - 2 * pad + output_padding


class _Conv(Layer):
    """The N-d core of every conv layer (channels-last inside)."""

    rank = 2
    kind = "conv"  # 'conv', 'transpose', 'depthwise' or 'separable'
    kernel_names: tuple[str, ...] = ("weight",)
    note_formats: tuple[str, ...] = ()  # extra data_format names accepted (Note's 2-D names)
    size_args = ("filters", "kernel_size", "input_size", "depth_multiplier")

    def __init__(self, *, filters: int | None = None, kernel_size: IntOrSeq,
                 input_size: int | None = None, strides: IntOrSeq = 1,
                 padding: ConvPadding = "VALID", output_padding: IntOrSeq | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: str | None = None, dilations: IntOrSeq | None = None,
                 groups: int = 1, depth_multiplier: int | None = None, use_bias: bool = True,
                 trainable: bool = True, dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        n = self.rank
        self._set("channels_first", self._check_format(data_format))
        if self.kind != "depthwise":
            self.config(filters=self.check_int("filters", filters))
        self.config(kernel_size=self.check_ints("kernel_size", kernel_size, n),
                    input_size=self.check_int("input_size", input_size, allow_none=True),
                    strides=self._spatial("strides", strides),
                    padding=self._check_padding(padding))
        if self.kind == "transpose":
            op = None
            if output_padding is not None:
                op = self.check_ints("output_padding", output_padding, n, low=0)
                if any(o >= s for o, s in zip(op, self.strides)):
                    raise self.error("output_padding", output_padding,
                                     f"values smaller than the strides {list(self.strides)} "
                                     "(Keras's rule)")
            self.config(output_padding=op)
        if self.kind == "transpose" and dilations is not None:
            self._no_strided_dilation(self._spatial("dilations", dilations))
        if depth_multiplier is not None or self.kind in ("depthwise", "separable"):
            self.config(depth_multiplier=self.check_int("depth_multiplier", depth_multiplier))
        self.config(activation=activation, data_format=data_format,
                    dilations=None if dilations is None else self._spatial("dilations",
                                                                           dilations),
                    use_bias=self.check_bool("use_bias", use_bias))
        if self.kind == "conv":
            self.config(groups=self.check_int("groups", groups))
            if self.filters % self.groups:
                raise self.error("groups", groups, f"a divisor of filters={self.filters}")
        else:
            self._set("groups", 1)
        self._set("weight_initializer", self.check_initializer(
            "weight_initializer", weight_initializer, rank=n + 2))
        self._set("bias_initializer", self.check_initializer("bias_initializer",
                                                             bias_initializer, rank=1))
        self._set("act", self.check_activation(activation))
        if self.input_size is not None:
            self.build(self.input_size)

    # -- argument checks -----------------------------------------------------------
    def _check_format(self, fmt: str | None) -> bool:
        n = self.rank
        last = {_LAST[n], "channels_last", *[f for f in self.note_formats if "C" == f[-1]]}
        first = {_FIRST[n], "channels_first", *[f for f in self.note_formats if f[1] == "C"]}
        if isinstance(fmt, str) and fmt in last:
            return False
        if isinstance(fmt, str) and fmt in first:
            return True
        allowed = " or ".join(repr(f) for f in [_LAST[n], _FIRST[n], *self.note_formats])
        raise self.error("data_format", fmt, allowed,
                         ValueError if isinstance(fmt, str) else TypeError)

    def _spatial(self, arg: str, value: IntOrSeq) -> tuple[int, ...]:
        """An int or ``rank`` ints; also TF's full form ``[1, s.., 1]`` and, for 1-D,
        Note's 2-D form ``[1, s]``."""
        n = self.rank
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) != n:
            v = list(value)
            cax = 1 if self.channels_first else n + 1
            if len(v) == n + 2 and v[0] == 1 and v[cax] == 1:
                value = [a for i, a in enumerate(v) if i not in (0, cax)]
            elif n == 1 and len(v) == 2 and v[0] == 1:
                value = v[1:]
        return self.check_ints(arg, value, n)

    def _no_strided_dilation(self, d):
        if any(v > 1 for v in d) and any(s > 1 for s in self.strides):
            raise self.error("dilations", list(d), "1 when strides > 1 (Keras's rule for "
                             f"transposed convolutions; strides are {list(self.strides)})")

    def _check_padding(self, padding):
        if isinstance(padding, str):
            p = padding.upper()
            if p not in ("SAME", "VALID"):
                raise self.error("padding", padding, "'SAME' or 'VALID' (any case)"
                                 + ("" if self.kind == "transpose" else " or explicit ints"))
            return p
        if self.kind == "transpose":
            raise self.error("padding", padding, "'SAME' or 'VALID' (any case)", TypeError)
        return self.check_pad_pairs("padding", padding, self.rank)

    # -- weights -------------------------------------------------------------------
    def build(self, input_size: int) -> None:
        k, g = list(self.kernel_size), self.groups
        if input_size % g:
            raise self.error("groups", g, f"a divisor of the {input_size} input channels")
        self._set("input_size", input_size)
        w_init = self.weight_initializer
        if self.kind == "conv":
            self.add_weight("weight", k + [input_size // g, self.filters], w_init,
                            "weight_initializer")
            out = self.filters
        elif self.kind == "transpose":
            self.add_weight("weight", k + [self.filters, input_size], w_init,
                            "weight_initializer")
            out = self.filters
        else:
            dm = self.depth_multiplier
            self.add_weight(self.kernel_names[0], k + [input_size, dm], w_init,
                            "weight_initializer")
            out = input_size * dm
            if self.kind == "separable":
                self.add_weight("pointwise_kernel", [1] * self.rank + [out, self.filters],
                                w_init, "weight_initializer")
                out = self.filters
        self._set("output_size", out)
        if self.use_bias:
            self.add_weight("bias", (out,), self.bias_initializer, "bias_initializer")
        self._set("built", True)

    def _layout(self, name: str) -> str:
        if name == "bias":
            return "bias"
        if name == "pointwise_kernel" or self.kind == "conv":
            return "conv"
        return "transpose" if self.kind == "transpose" else "depthwise"

    def from_note(self, name: str, value: mx.array) -> mx.array:
        n, lay = self.rank, self._layout(name)
        if lay == "conv":  # [*k, in/g, out] -> (out, *k, in/g)
            value = value.transpose(n + 1, *range(n), n)
        elif lay == "transpose":  # [*k, out, in] -> (out, *k, in)
            value = value.transpose(n, *range(n), n + 1)
        elif lay == "depthwise":  # [*k, in, dm] -> (in*dm, *k, 1), channel c*dm + m
            value = value.reshape(*value.shape[:n], -1).transpose(n, *range(n))[..., None]
        return mx.contiguous(value)

    def to_note(self, name: str, value: mx.array) -> mx.array:
        n, lay = self.rank, self._layout(name)
        if lay == "conv":
            return value.transpose(*range(1, n + 1), n + 1, 0)
        if lay == "transpose":
            return value.transpose(*range(1, n + 1), 0, n + 1)
        if lay == "depthwise":
            c = self.input_size
            return value[..., 0].transpose(*range(1, n + 1), 0).reshape(
                *value.shape[1:n + 1], c, -1)
        return value

    # -- forward -------------------------------------------------------------------
    def _pads(self, shape, dilations) -> list[tuple[int, int]]:
        if not isinstance(self.padding, str):
            return list(self.padding)
        if self.padding == "VALID":
            return [(0, 0)] * self.rank
        return [same_padding(L, k, s, d) for L, k, s, d in
                zip(shape[1:-1], self.kernel_size, self.strides, dilations)]

    def _check_fits(self, x, pads, dilations):
        for L, (lo, hi), k, d in zip(x.shape[1:-1], pads, self.kernel_size, dilations):
            if L + lo + hi < (k - 1) * d + 1:
                shape = list(x.shape)
                if self.channels_first:
                    shape = [shape[0], shape[-1], *shape[1:-1]]
                keff = [(k_ - 1) * d_ + 1 for k_, d_ in zip(self.kernel_size, dilations)]
                raise self.error("data", Desc(f"an array of shape {tuple(shape)}"),
                                 f"spatial sizes of at least the dilated kernel {keff} "
                                 f"after padding {pads}")

    def __call__(self, data: ArrayLike, dilations: IntOrSeq | None = None) -> mx.array:
        """Apply the layer to ``data`` (rank ``rank + 2`` in ``data_format``).

        ``dilations`` overrides the constructor's for this call.
        """
        x = self.as_input(data, ndim=self.rank + 2)
        given = shape_desc(x)
        cf = self.channels_first
        if x.shape[1 if cf else -1] == 0 and self.kind != "transpose":
            raise self.error("data", given, "at least one input channel (as Keras)")
        self.ensure_built(x, axis=1 if cf else -1)
        if dilations is not None:
            d = self._spatial("dilations", dilations)
        else:
            d = self.dilations or (1,) * self.rank
        if cf:
            x = mx.moveaxis(x, 1, -1)
        b = self.bias if self.use_bias else None
        # reduced dtypes on the CPU: one rounding, at the end
        f32: dict[str, Any] = dict(keep_float32=True)
        if self.kind == "transpose":
            self._no_strided_dilation(d)
            pads = []
        else:
            pads = self._pads(x.shape, d)
            self._check_fits(x, pads, d)
        out = (x.shape[0], *self._out_lengths(x.shape, pads, d), self.output_size)
        if any(L == 0 and o != 0 for L, o in zip(x.shape[1:-1], out[1:-1])):
            raise self.error("data", given, "spatial sizes >= 1 (an empty axis has no VALID "
                             "transposed output, as in Keras)")
        self.check_output_size("data", given, out, compute_dtype(self.dtype))
        if self.kind == "separable":
            self.check_output_size("data", given, (*out[:-1], x.shape[-1] * self.depth_multiplier),
                                   compute_dtype(self.dtype), "depthwise output")
        if x.size == 0:  # an empty batch or axis: the empty result (or the bias), as Keras
            y = mx.zeros(out, self.dtype)
            if b is not None and y.size:
                y = y + b
        elif self.kind == "transpose":
            y = self._transpose(x, d, b, f32)
        else:
            if self.kind == "conv":
                y = kconv.conv(x, self.weight, self.strides, pads, d, self.groups, bias=b,
                               **f32)
            else:
                w = getattr(self, self.kernel_names[0])
                bd = b if self.kind == "depthwise" else None
                sep = self.kind == "separable"
                y = kconv.conv(x, w, self.strides, pads, d, x.shape[-1], bias=bd,
                               **({} if sep else f32))
                if sep:
                    y = kconv.conv(y, self.pointwise_kernel, 1, 0, 1, 1, bias=b, **f32)
        if cf:
            y = mx.moveaxis(y, -1, 1)
        y = self.act(y)
        return y if y.dtype == self.dtype else y.astype(self.dtype)

    def _out_lengths(self, shape, pads, dilations) -> list[int]:
        """The output's spatial sizes for an input of (channels-last) ``shape``."""
        if self.kind == "transpose":
            op = self.output_padding or (None,) * self.rank
            return [transpose_length(L, k, s, d, self.padding, o) for L, k, s, d, o in
                    zip(shape[1:-1], self.kernel_size, self.strides, dilations, op)]
        return [(L + lo + hi - ((k - 1) * d + 1)) // s + 1 for L, (lo, hi), k, s, d in
                zip(shape[1:-1], pads, self.kernel_size, self.strides, dilations)]

    def _transpose(self, x, d, b, f32):
        pads = []
        for i in range(self.rank):
            L, k, s = x.shape[1 + i], self.kernel_size[i], self.strides[i]
            op = None if self.output_padding is None else self.output_padding[i]
            out = transpose_length(L, k, s, d[i], self.padding, op)
            keff = (k - 1) * d[i] + 1
            full = (L - 1) * s + keff
            # The forward conv that this transposes: TF pads it by pb before.
            pb = max(full - out, 0) // 2 if self.padding == "SAME" else 0
            pads.append((keff - 1 - pb, out - (L - 1) * s - 1 + pb))
        return kconv.conv(x, self.weight, 1, pads, d, 1, input_dilation=self.strides,
                          flip=True, bias=b, **f32)
