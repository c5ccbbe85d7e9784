"""Convolutions: conv1d/2d/3d, their transposes, depthwise and separable convs.

All ten layers share one N-d implementation (:class:`~mlxnote.nn.conv_core._Conv`) and one
kernel entry point,
:func:`mlxnote.kernels.conv.conv`, which picks the fastest formulation for the device.

Conventions (``decisions.md`` items 8-15):

* padding: ``'SAME'``/``'VALID'`` in any case with TensorFlow's rules (asymmetric SAME for
  stride > 1 and even kernels), or explicit zero padding (an int, or per dimension an int
  or a ``(before, after)`` pair) followed by VALID;
* transposed convs follow Keras ``Conv{1,2,3}DTranspose`` (SAME gives ``L*s``; VALID gives
  ``L*s + max(k_eff - s, 0)``; with ``output_padding``, ``(L-1)*s + k_eff - 2*pad + op``);
* the activation is applied last, after the bias, on the output in ``data_format``;
* channels-first formats work by a layout change at the edges;
* a call-time ``dilations=`` overrides the constructor's;
* depthwise output channel ``c*depth_multiplier + m``.

Weights are stored in the layout MLX's kernels consume, ``(out, *kernel, in/groups)``
(depthwise: ``(in*depth_multiplier, *kernel, 1)``), and converted to and from Note's
TensorFlow layout only by :meth:`get_weights`/:meth:`set_weights`: kernels
``[*k, in/groups, out]``, transposed kernels ``[*k, out, in]``, depthwise ``[*k, in, dm]``.
"""

from __future__ import annotations

from .conv_core import _Conv, same_padding, transpose_length  # noqa: F401  (the shape rules)
from .layer import arguments
from .typing import (
    Activation,
    ConvPadding,
    DataFormat1D,
    DataFormat1DNote,
    DataFormat2D,
    DataFormat3D,
    DTypeLike,
    Initializer,
    IntOrSeq,
)


# -- the public layers -----------------------------------------------------------------
class conv1d(_Conv):
    """1-D convolution: ``(B, L, C) -> (B, L_out, filters)`` (``'NCW'``: channels first).

    Args: filters, kernel_size (int or [k]), input_size (built lazily when None),
    strides, padding ('SAME'/'VALID' or explicit ints), weight_initializer,
    bias_initializer, activation, data_format ('NWC'/'NCW'), dilations, groups, use_bias,
    trainable, dtype. Call: ``(data, dilations=None)``. Weights (Note's layout):
    ``weight [k, in/groups, filters]``, ``bias [filters]``.
    """

    rank = 1

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1], padding: ConvPadding = "VALID",  # noqa: B006 (documented default)
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat1D = "NWC", dilations: IntOrSeq | None = None,
                 groups: int = 1, use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class conv2d(_Conv):
    """2-D convolution: ``(B, H, W, C) -> (B, H_out, W_out, filters)`` (or ``'NCHW'``).

    Args as :class:`conv1d`, with 2-D kernel_size/strides/dilations (an int is used for
    both). Weights: ``weight [kh, kw, in/groups, filters]``, ``bias [filters]``.
    """

    rank = 2

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1, 1], padding: ConvPadding = "VALID",  # noqa: B006 (documented default)
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat2D = "NHWC", dilations: IntOrSeq | None = None,
                 groups: int = 1, use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class conv3d(_Conv):
    """3-D convolution: ``(B, D, H, W, C) -> (B, D', H', W', filters)`` (or ``'NCDHW'``).

    Args as :class:`conv2d` in 3-D, ``groups`` included (MLX's conv3d has none: split per
    group). Weights: ``weight [kd, kh, kw, in/groups, filters]``, ``bias [filters]``.
    """

    rank = 3

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1, 1, 1], padding: ConvPadding = "VALID",  # noqa: B006 (documented default)
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat3D = "NDHWC", dilations: IntOrSeq | None = None,
                 groups: int = 1, use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class _Transpose(_Conv):
    kind = "transpose"


class conv1d_transpose(_Transpose):
    """1-D transposed convolution (Keras ``Conv1DTranspose``): ``(B, L, C) -> (B, L', filters)``
    with ``L' = L*s`` (SAME), ``L*s + max(k_eff - s, 0)`` (VALID), or
    ``(L-1)*s + k_eff - 2*pad + output_padding`` when ``output_padding`` is given.

    Args: filters, kernel_size, input_size, strides, padding ('SAME'/'VALID'),
    output_padding (int or list, < strides), weight_initializer, bias_initializer,
    activation, data_format ('NWC'/'NCW'), dilations, use_bias, trainable, dtype.
    Weights: ``weight [k, filters, in]``, ``bias [filters]``.
    """

    rank = 1

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1], padding: str = "VALID",  # noqa: B006 (documented default)
                 output_padding: IntOrSeq | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat1D = "NWC", dilations: IntOrSeq | None = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class conv2d_transpose(_Transpose):
    """2-D transposed convolution (Keras ``Conv2DTranspose``), per dimension as
    :class:`conv1d_transpose`: ``(B, H, W, C) -> (B, H', W', filters)`` (or ``'NCHW'``).
    Weights: ``weight [kh, kw, filters, in]``, ``bias [filters]``.
    """

    rank = 2

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1, 1], padding: str = "VALID",  # noqa: B006 (documented default)
                 output_padding: IntOrSeq | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat2D = "NHWC", dilations: IntOrSeq | None = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class conv3d_transpose(_Transpose):
    """3-D transposed convolution (Keras ``Conv3DTranspose``):
    ``(B, D, H, W, C) -> (B, D', H', W', filters)`` (or ``'NCDHW'``).
    Weights: ``weight [kd, kh, kw, filters, in]``, ``bias [filters]``.
    """

    rank = 3

    def __init__(self, filters: int, kernel_size: IntOrSeq, input_size: int | None = None,
                 strides: IntOrSeq = [1, 1, 1], padding: str = "VALID",  # noqa: B006 (documented default)
                 output_padding: IntOrSeq | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat3D = "NDHWC", dilations: IntOrSeq | None = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class depthwise_conv1d(_Conv):
    """1-D depthwise convolution: ``(B, L, C) -> (B, L', C*depth_multiplier)``, output
    channel ``c*depth_multiplier + m``.

    Args: kernel_size, depth_multiplier, input_size, strides, padding, weight_initializer,
    bias_initializer, activation, data_format ('NWC'/'NCW'; Note's 'NHWC'/'NCHW' accepted),
    dilations (int, [d] or Note's [1, d]), use_bias, trainable, dtype.
    Weights: ``depthwise_kernel [k, in, depth_multiplier]``, ``bias [in*depth_multiplier]``.
    """

    rank = 1
    kind = "depthwise"
    kernel_names = ("depthwise_kernel",)
    note_formats = ("NHWC", "NCHW")

    def __init__(self, kernel_size: IntOrSeq, depth_multiplier: int = 1,
                 input_size: int | None = None, strides: IntOrSeq = 1,
                 padding: ConvPadding = "VALID",
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat1DNote = "NWC", dilations: IntOrSeq | None = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class depthwise_conv2d(_Conv):
    """2-D depthwise convolution (``tf.nn.depthwise_conv2d``):
    ``(B, H, W, C) -> (B, H', W', C*depth_multiplier)`` (or ``'NCHW'``).
    Weights: ``weight [kh, kw, in, depth_multiplier]``, ``bias [in*depth_multiplier]``.
    """

    rank = 2
    kind = "depthwise"

    def __init__(self, kernel_size: IntOrSeq, depth_multiplier: int = 1,
                 input_size: int | None = None, strides: IntOrSeq = [1, 1],  # noqa: B006 (documented default)
                 padding: ConvPadding = "VALID",
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 data_format: DataFormat2D = "NHWC", dilations: IntOrSeq | None = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class separable_conv1d(_Conv):
    """1-D separable convolution: depthwise (``depth_multiplier``) then a pointwise 1x1
    conv to ``filters``: ``(B, L, C) -> (B, L', filters)``.

    Args (Note's order): filters, kernel_size, depth_multiplier (default 1), input_size,
    strides, padding, data_format ('NWC'/'NCW'; 'NHWC'/'NCHW' accepted), dilations,
    weight_initializer, bias_initializer, activation, use_bias, trainable, dtype.
    Weights: ``depthwise_kernel [k, in, dm]``, ``pointwise_kernel [1, in*dm, filters]``,
    ``bias [filters]``.
    """

    rank = 1
    kind = "separable"
    kernel_names = ("depthwise_kernel",)
    note_formats = ("NHWC", "NCHW")

    def __init__(self, filters: int, kernel_size: IntOrSeq, depth_multiplier: int = 1,
                 input_size: int | None = None, strides: IntOrSeq = [1],  # noqa: B006 (documented default)
                 padding: ConvPadding = "VALID", data_format: DataFormat1DNote = "NWC",
                 dilations: IntOrSeq | None = None, weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class separable_conv2d(_Conv):
    """2-D separable convolution (``tf.nn.separable_conv2d``):
    ``(B, H, W, C) -> (B, H', W', filters)`` (or ``'NCHW'``). Args as
    :class:`separable_conv1d` in 2-D. Weights: ``depthwise_kernel [kh, kw, in, dm]``,
    ``pointwise_kernel [1, 1, in*dm, filters]``, ``bias [filters]``.
    """

    rank = 2
    kind = "separable"
    kernel_names = ("depthwise_kernel",)

    def __init__(self, filters: int, kernel_size: IntOrSeq, depth_multiplier: int = 1,
                 input_size: int | None = None, strides: IntOrSeq = [1, 1],  # noqa: B006 (documented default)
                 padding: ConvPadding = "VALID", data_format: DataFormat2D = "NHWC",
                 dilations: IntOrSeq | None = None, weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


__all__ = ["conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
           "conv3d_transpose", "depthwise_conv1d", "depthwise_conv2d", "separable_conv1d",
           "separable_conv2d"]
