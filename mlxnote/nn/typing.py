"""Type aliases of the layer signatures: what each kind of argument accepts.

The layers' modules use ``from __future__ import annotations``, so these hints cost
nothing at run time; the aliases themselves are ordinary objects that user code can
import (``from mlxnote.nn.typing import ArrayLike, Initializer``) for its own hints.
``float`` in a hint accepts ``int`` and ``bool`` as well (Python's numeric tower).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union, get_args

import mlx.core as mx
import numpy as np

from .._config import DTYPES

# -- arrays ----------------------------------------------------------------------------
#: A real scalar: Python ``bool``/``int``/``float`` or a NumPy number.
Scalar: TypeAlias = float | np.number | np.bool_
#: Nested lists (or tuples) of real numbers, as NumPy reads them.
if TYPE_CHECKING:
    NestedNumbers: TypeAlias = Sequence[Union[Scalar, "NestedNumbers"]]  # noqa: UP007
else:  # the recursive alias cannot be resolved by ``typing.get_type_hints`` in other modules
    NestedNumbers = Sequence[Any]
#: Layer input: an ``mx.array``, a NumPy array, nested lists of numbers or a scalar (bool,
#: int or float values; anything else is rejected with the layer's error).
ArrayLike: TypeAlias = mx.array | np.ndarray | NestedNumbers | Scalar
#: An array, or a list/tuple of array-likes; a bare nested list is read as such a list,
#: not as one array. Used for a cross-attention pair ``(key_input, value_input)``.
ArrayOrSeq: TypeAlias = mx.array | np.ndarray | Sequence[ArrayLike]
#: A recurrent state: an array ``(batch, hidden)`` or a list/tuple of them (``[h]``, or
#: ``(h, c)`` for an LSTM).
StateLike: TypeAlias = ArrayOrSeq

# -- dtypes and devices ----------------------------------------------------------------
#: The dtype names a layer accepts (:data:`mlxnote._config.DTYPES`).
DTypeName: TypeAlias = Literal["float32", "float16", "bfloat16"]
#: A layer dtype: one of :data:`DTypeName`, ``mx.float32``/``mx.float16``/``mx.bfloat16``,
#: or the NumPy equivalents (``np.float32``, ``np.dtype('float16')``).
DTypeLike: TypeAlias = DTypeName | mx.Dtype | np.dtype | type[np.generic]
#: Where a Transformer runs: ``'cpu'``, ``'gpu'`` (also ``'cuda'``, ``'mps'``, ``'metal'``,
#: with an optional ``':index'``), an ``mx.Device`` or an ``mx.DeviceType``.
DeviceLike: TypeAlias = str | mx.Device | mx.DeviceType

# -- initializers and activations ------------------------------------------------------
#: A callable initializer ``f(shape, dtype)`` returning an array of ``shape``.
InitializerFn: TypeAlias = Callable[[tuple[int, ...], mx.Dtype], ArrayLike]
#: An initializer list form: ``['normal', mean, std]``, ``['uniform', lo, hi]``,
#: ``['truncated_normal', std]``, ``['VarianceScaling', scale, mode, distribution]``,
#: ``['Orthogonal', gain[, seed]]`` (a list or a tuple).
InitializerForm: TypeAlias = list[str | float] | tuple[str | float, ...]
#: A weight initializer: a name (``'Xavier'``, ``'zeros'``, ...), a list form, an array of
#: the weight's shape (Note's layout) or a callable (:mod:`mlxnote.nn.initializers`).
Initializer: TypeAlias = str | InitializerForm | mx.array | np.ndarray | InitializerFn

#: An activation function ``mx.array -> mx.array``.
ActivationFn: TypeAlias = Callable[[mx.array], mx.array]
#: An activation: a name (:data:`mlxnote.nn.activations.NAMES`), a 2-element list form
#: (``['leaky_relu', alpha]``, ``['gelu', approximate]``), a callable, or ``None`` (linear).
Activation: TypeAlias = str | list[str | float] | tuple[str, float] | ActivationFn | None

# -- shapes and padding ----------------------------------------------------------------
#: An int (used for every dimension) or a sequence of ints, one per dimension.
IntOrSeq: TypeAlias = int | Sequence[int]
#: Explicit zero padding: an int (every side), or per dimension an int or a
#: ``(before, after)`` pair (for one dimension also a bare ``(left, right)``).
PadSpec: TypeAlias = int | Sequence[int | Sequence[int]]
#: A convolution's padding: ``'SAME'``/``'VALID'`` in any case, or explicit :data:`PadSpec`.
ConvPadding: TypeAlias = str | PadSpec
#: A mask: boolean, or float (additive) where a layer says so.
MaskLike: TypeAlias = ArrayLike

#: ``data_format`` of the 1-D, 2-D and 3-D convolutions.
DataFormat1D: TypeAlias = Literal["NWC", "NCW", "channels_last", "channels_first"]
DataFormat2D: TypeAlias = Literal["NHWC", "NCHW", "channels_last", "channels_first"]
DataFormat3D: TypeAlias = Literal["NDHWC", "NCDHW", "channels_last", "channels_first"]
#: 1-D depthwise and separable convolutions also accept Note's 2-D names.
DataFormat1DNote: TypeAlias = DataFormat1D | Literal["NHWC", "NCHW"]

assert set(get_args(DTypeName)) == set(DTYPES)  # the names are those of the one table

__all__ = ["Activation", "ActivationFn", "ArrayLike", "ArrayOrSeq", "ConvPadding",
           "DTypeLike", "DTypeName", "DataFormat1D", "DataFormat1DNote", "DataFormat2D",
           "DataFormat3D", "DeviceLike", "Initializer", "InitializerFn", "InitializerForm",
           "IntOrSeq", "MaskLike", "NestedNumbers", "PadSpec", "Scalar", "StateLike"]
