"""Core layers: dense, identity, dropout, stochastic_depth and zero padding."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from .._config import compute_dtype
from .._validation import MAX_DIM, MAX_SEED, is_int, is_sequence
from ..kernels import dropout as dropout_kernels
from ..kernels.linear import linear
from .layer import Layer, materialize, shape_desc
from .typing import Activation, ArrayLike, DTypeLike, Initializer, PadSpec


class dense(Layer):
    """``y = activation(x @ W + b)`` over the last axis.

    Args:
        output_size (int): features out.
        input_size (int, optional): features in; built from the first input if ``None``.
        weight_initializer, bias_initializer: initializers (``'Xavier'``, ``'zeros'``).
        activation: a name, a list form, a callable or ``None`` (linear).
        use_bias (bool), trainable (bool), dtype (str), name (str, optional).

    Shapes: ``(..., input_size) -> (..., output_size)``. Weights: ``weight [in, out]``,
    ``bias [out]``.
    """

    size_args = ("output_size", "input_size")

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = None,
                 use_bias: bool = True, trainable: bool = True, dtype: DTypeLike = "float32",
                 name: str | None = None) -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        self.config(output_size=self.check_int("output_size", output_size),
                    input_size=self.check_int("input_size", input_size, allow_none=True),
                    activation=activation, use_bias=self.check_bool("use_bias", use_bias))
        if name is not None:
            if not isinstance(name, str):
                raise self.error("name", name, "None or a str", TypeError)
            self.config(layer_name=name)
        self._set("weight_initializer",
                  self.check_initializer("weight_initializer", weight_initializer, rank=2))
        self._set("bias_initializer",
                  self.check_initializer("bias_initializer", bias_initializer, rank=1))
        self._set("act", self.check_activation(activation))
        if input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int) -> None:
        self._set("input_size", input_size)
        self.add_weight("weight", (input_size, self.output_size), self.weight_initializer,
                        "weight_initializer")
        if self.use_bias:
            self.add_weight("bias", (self.output_size,), self.bias_initializer,
                            "bias_initializer")
        self._set("built", True)

    def project(self, x: mx.array) -> mx.array:
        """``x @ W + b`` without the activation, in :func:`compute_dtype` (float32 for
        16-bit layers on the CPU) and not rounded: what composites (attention) build on,
        rounding once at their own output."""
        cdt = compute_dtype(self.dtype)
        b = self.bias.astype(cdt) if self.use_bias else None
        return linear(x.astype(cdt), self.weight.astype(cdt), b)

    def check_project(self, x: mx.array, arg: str = "data") -> None:
        """Refuse an input whose projection MLX cannot hold (before any compute)."""
        self.check_output_size(arg, shape_desc(x), (*x.shape[:-1], self.output_size),
                               compute_dtype(self.dtype))

    def __call__(self, data: ArrayLike) -> mx.array:
        x = self.as_input(data, min_ndim=1)
        self.ensure_built(x)
        self.check_project(x)
        if 0 in x.shape[:-1]:  # the empty result, with no graph: MLX's CPU sum over an
            # empty axis (the bias gradient) can loop forever
            return mx.zeros((*x.shape[:-1], self.output_size), self.dtype)
        return self.act(self.project(x)).astype(self.dtype)


class identity(Layer):
    """Returns its input unchanged (``mx.array`` in, the same array out).

    Args:
        input_size (int, optional): when given, inputs must have that many features on
            the last axis, and ``output_size`` equals it.
    """

    def __init__(self, input_size: int | None = None) -> None:
        super().__init__()
        self.config(input_size=self.check_int("input_size", input_size, allow_none=True))
        self._set("output_size", self.input_size)
        self._set("built", True)

    def __call__(self, data: ArrayLike) -> mx.array:
        x = data if isinstance(data, mx.array) else self.as_input(data, cast=False)
        if self.input_size is not None and (x.ndim == 0 or x.shape[-1] != self.input_size):
            raise self.error("data", shape_desc(x),
                             f"{self.input_size} features on the last axis (input_size)")
        return x


class _RandomLayer(Layer):
    """Shared by dropout and stochastic_depth: rate, noise shape, seeded key, mode."""

    rate_arg = "rate"

    def __init__(self, rate: float, noise_shape: Sequence[int | None] | None,
                 seed: int | None, dtype: DTypeLike) -> None:
        super().__init__(dtype=dtype)
        rate = self.check_float(self.rate_arg, rate, 0.0, 1.0)
        if noise_shape is not None:
            ok = is_sequence(noise_shape) and all(d is None or (is_int(d) and d >= 1)
                                                 for d in noise_shape)
            if not ok:
                raise self.error("noise_shape", noise_shape,
                                 "None or a list of ints >= 1 (None entries take the input's "
                                 "size)", TypeError)
            if any(d is not None and d > MAX_DIM for d in noise_shape):
                raise self.error("noise_shape", noise_shape,
                                 f"None or a list of ints in [1, {MAX_DIM}]")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        if seed is not None:
            seed = self.check_int("seed", seed, low=0, high=MAX_SEED)
            # Own key, kept in the module state so mx.compile(inputs=model.state) carries it.
            self._key = mx.random.key(seed)
            materialize(self._key)
        self.config(**{self.rate_arg: rate}, noise_shape=noise_shape, seed=seed)
        self._set("built", True)

    def _noise_shape(self, x: mx.array) -> tuple[int, ...]:
        ns = self.noise_shape if self.noise_shape is not None else self.default_noise_shape(x)
        if len(ns) != x.ndim:
            raise self.error("noise_shape", self.noise_shape,
                             f"a shape of rank {x.ndim} broadcastable to the input "
                             f"{tuple(x.shape)}")
        ns = tuple(x.shape[i] if d is None else d for i, d in enumerate(ns))
        for d, s in zip(ns, x.shape):
            if d not in (1, s):
                raise self.error("noise_shape", self.noise_shape,
                                 f"a shape broadcastable to the input {tuple(x.shape)}")
        return ns

    def default_noise_shape(self, x: mx.array) -> tuple[int, ...]:
        return tuple(x.shape)

    def __call__(self, data: ArrayLike, train_flag: bool | None = None,
                 training: bool | None = None) -> mx.array:
        x = self.as_input(data)
        rate = getattr(self, self.rate_arg)
        if not self.mode(train_flag, training) or rate == 0.0:
            return x
        keep = 1.0 - rate
        shape = self._noise_shape(x)
        if x.size == 0:
            return x
        sub = None
        if self.seed is not None:
            self._key, sub = mx.random.split(self._key)
            materialize(self._key, wait=False)  # any thread can draw the next mask
        return dropout_kernels.apply(x, keep, shape, dropout_kernels.draw_seed(sub))


class dropout(_RandomLayer):
    """Keras ``Dropout``: zero entries with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``; the identity in inference mode.

    Args:
        rate (float): drop probability in ``[0, 1)``.
        noise_shape (list, optional): shape of the mask, broadcast against the input;
            ``None`` entries take the input's size (e.g. ``[B, 1]`` drops whole rows).
        seed (int, optional): the layer draws from its own key; otherwise from
            MLX's global generator (``mx.random.seed``).
        dtype (str): computation dtype.

    Call: ``(data, train_flag=None)``; shapes unchanged.
    """

    def __init__(self, rate: float, noise_shape: Sequence[int | None] | None = None,
                 seed: int | None = None, dtype: DTypeLike = "float32") -> None:
        super().__init__(rate, noise_shape, seed, dtype)


class stochastic_depth(_RandomLayer):
    """Drop whole samples with probability ``drop_path_rate`` and scale survivors by
    ``1 / (1 - drop_path_rate)`` (mask shape ``(B, 1, ..., 1)`` unless ``noise_shape``).

    Args:
        drop_path_rate (float): in ``[0, 1)``.
        noise_shape (list, optional), seed (int, optional), dtype (str): as dropout.

    Call: ``(data, train_flag=None)``; shapes unchanged.
    """

    rate_arg = "drop_path_rate"

    def __init__(self, drop_path_rate: float, noise_shape: Sequence[int | None] | None = None,
                 seed: int | None = None, dtype: DTypeLike = "float32") -> None:
        super().__init__(drop_path_rate, noise_shape, seed, dtype)

    def default_noise_shape(self, x: mx.array) -> tuple[int, ...]:
        return (x.shape[0],) + (1,) * (x.ndim - 1)


class _ZeroPadding(Layer):
    """One implementation for zeropadding1d/2d/3d on channels-last inputs."""

    n = 1
    default: PadSpec = 1

    def __init__(self, input_size: int | None = None, padding: PadSpec | None = None) -> None:
        super().__init__()
        pad = None if padding is None else self.check_pad_pairs("padding", padding, self.n)
        self.config(input_size=self.check_int("input_size", input_size, allow_none=True),
                    padding=padding)
        self._set("_pad", pad)
        self._set("output_size", self.input_size)
        self._set("built", True)

    def __call__(self, data: ArrayLike, padding: PadSpec | None = None) -> mx.array:
        x = data if isinstance(data, mx.array) else self.as_input(data, cast=False)
        if x.ndim != self.n + 2:
            raise self.error("data", shape_desc(x),
                             f"rank {self.n + 2} (batch, {self.n} spatial, channels)")
        if self.input_size is not None and x.shape[-1] != self.input_size:
            raise self.error("data", shape_desc(x),
                             f"{self.input_size} channels on the last axis (input_size)")
        if padding is not None:
            pad = self.check_pad_pairs("padding", padding, self.n)
        elif self._pad is not None:
            pad, padding = self._pad, self.padding
        else:
            pad = self.check_pad_pairs("padding", self.default, self.n)
        if not any(p for pair in pad for p in pair):
            return x
        out = (x.shape[0], *(n + lo + hi for n, (lo, hi) in zip(x.shape[1:-1], pad)),
               x.shape[-1])
        self.check_output_size("padding", padding if padding is not None else self.default,
                               out, x.dtype)
        return mx.pad(x, [(0, 0), *pad, (0, 0)])


class zeropadding1d(_ZeroPadding):
    """Zero padding of ``(B, L, C)`` along ``L``.

    Args:
        input_size (int, optional): channels; checked when given.
        padding: an int ``p`` (both sides) or ``(left, right)``. A call-time
            ``padding=`` overrides it; with neither, 1.

    Shapes: ``(B, L, C) -> (B, left + L + right, C)``.
    """

    n = 1
    default = 1

    def __init__(self, input_size: int | None = None, padding: PadSpec | None = None) -> None:
        super().__init__(input_size=input_size, padding=padding)


class zeropadding2d(_ZeroPadding):
    """Zero padding of ``(B, H, W, C)``: ``padding`` is an int, or ``(h, w)`` where each
    entry is an int or a ``(before, after)`` pair. Call-time ``padding=`` overrides.

    Shapes: ``(B, H, W, C) -> (B, H + top + bottom, W + left + right, C)``.
    """

    n = 2
    default = (1, 1)

    def __init__(self, input_size: int | None = None, padding: PadSpec | None = None) -> None:
        super().__init__(input_size=input_size, padding=padding)


class zeropadding3d(_ZeroPadding):
    """Zero padding of ``(B, D, H, W, C)``: ``padding`` is an int, or ``(d, h, w)`` where
    each entry is an int or a ``(before, after)`` pair; defaults to ``(1, 1, 1)``.

    Shapes: ``(B, D, H, W, C) -> (B, D + pd, H + ph, W + pw, C)``.
    """

    n = 3
    default = (1, 1, 1)

    def __init__(self, input_size: int | None = None, padding: PadSpec = (1, 1, 1)) -> None:
        super().__init__(input_size=input_size, padding=padding)


__all__ = ["dense", "identity", "dropout", "stochastic_depth", "zeropadding1d",
           "zeropadding2d", "zeropadding3d"]

