"""Recurrent layers: RNN, GRU, LSTM and their cells, on one scan core.

Equations (decisions.md, items 20-22): RNN is Keras ``SimpleRNN``, GRU is Keras
``GRU(reset_after=False)`` (the reset gate multiplies the state before the recurrent
matmul), LSTM is Keras ``LSTM`` with ``unit_forget_bias=False``. The cells run the same
step. Every call starts from zeros or from ``initial_state``/``state``: nothing is kept
between calls.

Weights. ``get_weights``/``set_weights``/``param`` use Note's layout and creation order:

=========  =====================================================================
RNN        ``weight_i [in, H]``, ``weight_s [H, H]``, ``bias [H]``
RNNCell    the same
GRU        ``weight_r1, weight_r2, weight_z1, weight_z2, weight_h1, weight_h2``
           (``*1 [in, H]``, ``*2 [H, H]``), ``bias_r, bias_z, bias_h [H]``
LSTM       ``weight_i1, weight_i2, weight_f1, weight_f2, weight_o1, weight_o2,
           weight_c1, weight_c2``, ``bias_i, bias_f, bias_o, bias_c``
GRUCell    ``weight [in + H, 3H]`` (rows: x then h; column blocks r, z, h), ``bias [3H]``
LSTMCell   ``weight [in + H, 4H]`` (column blocks i, f, o, c), ``bias [4H]``
=========  =====================================================================

Storage is what the scan consumes: ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]`` and
``bias [k*H]`` with gate blocks in Note's order (GRU ``r, z, h``; LSTM ``i, f, o, c``), so
that one matmul projects every timestep and one matmul per step does the recurrence.
``parameters()`` (and MLX optimizers, ``save_weights``) see the stored arrays; the Note
names are views of them in the weight registry (:class:`mlxnote.nn.weights.View`): they
read as attributes (``layer.weight_f1``) and :meth:`update` accepts them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .._config import compute_dtype
from .._validation import is_int
from ..kernels.scan import scan
from . import activations, initializers, weights
from .layer import Desc, Layer, arguments, materialize, shape_desc
from .typing import Activation, ArrayLike, DTypeLike, Initializer, StateLike
from .weights import Block, View

_GATES = {"rnn": ("",), "gru": ("r", "z", "h"), "lstm": ("i", "f", "o", "c")}


class _Recurrent(Layer):
    """Shared by the six layers: Note-layout views over fused storage, and the step."""

    kind = "rnn"
    is_cell = False

    def _setup(self, weight_initializer: Initializer, bias_initializer: Initializer,
               activation: Activation, recurrent_activation: Activation) -> None:
        self._set("weight_initializer", self.check_initializer("weight_initializer",
                                                               weight_initializer, rank=2))
        self._set("bias_initializer", self.check_initializer("bias_initializer",
                                                             bias_initializer, rank=1))
        self._set("act", activations.get(activation, self.error_name, "activation"))
        self._set("ract", activations.get(recurrent_activation, self.error_name,
                                          "recurrent_activation"))

    # -- Note layout over fused storage ----------------------------------------------
    def _views_plan(self) -> list[View]:
        """Each Note weight as blocks of the stored arrays, in Note's creation order."""
        i, h, gates = self.input_size, self.output_size, _GATES[self.kind]
        k = len(gates)
        w, b = "weight_initializer", "bias_initializer"
        if self.kind == "rnn":
            views = [View("weight_i", (i, h), (Block("kernel", (0, h)),), w),
                     View("weight_s", (h, h), (Block("recurrent_kernel", (0, h)),), w)]
            biases = [View("bias", (h,), (Block("bias", (0, h)),), b)]
        elif self.is_cell:
            cols = (0, k * h)
            views = [View("weight", (i + h, k * h),
                          (Block("kernel", cols), Block("recurrent_kernel", cols)), w)]
            biases = [View("bias", (k * h,), (Block("bias", cols),), b)]
        else:
            views, biases = [], []
            for g, name in enumerate(gates):
                cols = (g * h, (g + 1) * h)
                views += [View(f"weight_{name}1", (i, h), (Block("kernel", cols),), w),
                          View(f"weight_{name}2", (h, h), (Block("recurrent_kernel", cols),), w)]
                biases.append(View(f"bias_{name}", (h,), (Block("bias", cols),), b))
        return views + (biases if self.use_bias else [])

    def _create(self) -> None:
        """Draw every Note weight in creation order (Note's shapes and fans), then fuse
        them into the stored ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]``, ``bias``."""
        k, h = len(_GATES[self.kind]), self.output_size
        stored = {"kernel": (self.input_size, k * h), "recurrent_kernel": (h, k * h)}
        if self.use_bias:
            stored["bias"] = (k * h,)
        for name, shape in stored.items():
            self.check_weight_size(name, shape)
        for name, shape in stored.items():
            self[name] = mx.zeros(shape, self.dtype)
        values = {}
        for view in self._views_plan():
            self.add_view(view)
            values[view.name] = initializers.initialize(
                getattr(self, view.arg), view.shape, self.dtype, self.error_name, view.arg)
        for name, v in weights.fuse(self, values).items():
            self[name] = v
        materialize([self[name] for name in stored])  # any thread can use the layer
        if not self.trainable:
            self.freeze(keys=list(stored), recurse=False)
        self._set("built", True)

    def _check_sizes(self, x: mx.array) -> None:
        """Refuse an input whose projection ``(B, T, k*H)`` or output ``(B, T, H)`` MLX
        cannot hold (before any compute)."""
        steps = x.shape[1] if x.ndim == 3 else 1
        k, cdt = len(_GATES[self.kind]), compute_dtype(self.dtype)
        self.check_output_size("data", shape_desc(x),
                               (x.shape[0], steps, k * self.output_size), cdt,
                               "input projection")

    def _state(self, value: Any, arg: str, batch: int) -> mx.array:
        s = self.as_input(value, arg, ndim=2)
        if tuple(s.shape) != (batch, self.output_size):
            raise self.error(arg, shape_desc(s), f"shape ({batch}, {self.output_size}) "
                             "(batch, hidden)")
        return s

    def _states(self, state: StateLike | None, arg: str,
                batch: int) -> tuple[mx.array, mx.array | None]:
        """``(h, c)`` from ``None`` (zeros), an array, or a sequence (``(h, c)`` for LSTM)."""
        zeros = mx.zeros((batch, self.output_size), self.dtype)
        lstm = self.kind == "lstm"
        if state is None:
            return zeros, zeros if lstm else None
        if isinstance(state, (list, tuple)):
            n = len(state)
            if n == 1 or (lstm and n == 2):
                h = self._state(state[0], arg, batch)
                c = self._state(state[1], arg, batch) if n == 2 else zeros
                return h, c if lstm else None
            allowed = ("an array (batch, hidden), or (h, c) / [h]" if lstm
                       else "an array (batch, hidden) or a list of one")
            raise self.error(arg, Desc(f"a {type(state).__name__} of {n} arrays"), allowed,
                             TypeError)
        return self._state(state, arg, batch), zeros if lstm else None

    def _run(self, x: mx.array, h0: mx.array,
             c0: mx.array | None) -> tuple[mx.array, mx.array | None]:
        """``x (B, T, in)`` -> ``(hs (B, T, H), c_T)`` through the shared scan core.

        16-bit layers on the CPU run the scan in float32 and round once at the output
        (bfloat16 LSTM b32 T64 128->256 forward: 270 -> 41 ms; MLX's 16-bit CPU matmul is a
        slow loop); elsewhere the scan's own 16-bit path runs."""
        b, t, i = x.shape
        if b == 0:  # an empty batch: the empty result, as Keras
            c = None if c0 is None else mx.zeros((0, self.output_size), self.dtype)
            return mx.zeros((0, t, self.output_size), self.dtype), c
        flat = x.reshape(b * t, i)
        kernel, rkernel = self.kernel, self.recurrent_kernel
        bias = self.bias if self.use_bias else None
        cdt = compute_dtype(self.dtype)  # float32 for 16-bit layers on the CPU
        if cdt != self.dtype:
            flat, kernel, rkernel, h0 = (a.astype(cdt) for a in (flat, kernel, rkernel, h0))
            bias = None if bias is None else bias.astype(cdt)
            c0 = None if c0 is None else c0.astype(cdt)
        xp = flat @ kernel if bias is None else mx.addmm(bias, flat, kernel)
        hs, c = scan(self.kind, xp.reshape(b, t, -1), rkernel, h0, c0, self.act, self.ract)
        if cdt != self.dtype:
            hs, c = hs.astype(self.dtype), None if c is None else c.astype(self.dtype)
        return hs, c


class _Sequence(_Recurrent):
    size_args = ("output_size", "input_size")

    def __init__(self, *, output_size: int, input_size: int | None,
                 weight_initializer: Initializer, bias_initializer: Initializer,
                 return_sequence: bool, use_bias: bool, trainable: bool, dtype: DTypeLike,
                 activation: Activation, recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        cfg: dict[str, Any] = dict(output_size=self.check_int("output_size", output_size),
                   input_size=self.check_int("input_size", input_size, allow_none=True),
                   weight_initializer=weight_initializer, bias_initializer=bias_initializer,
                   activation=activation)
        if self.kind != "rnn":
            cfg["recurrent_activation"] = recurrent_activation
        cfg.update(return_sequence=self.check_bool("return_sequence", return_sequence),
                   use_bias=self.check_bool("use_bias", use_bias))
        self.config(**cfg)
        self._setup(weight_initializer, bias_initializer, activation, recurrent_activation)
        if self.input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int) -> None:
        self._set("input_size", input_size)
        self._create()

    def __call__(self, data: ArrayLike, initial_state: StateLike | None = None) -> mx.array:
        x = self.as_input(data, ndim=3)
        if x.shape[1] == 0:
            raise self.error("data", shape_desc(x), "at least one timestep (batch, time, "
                             "features)")
        self.ensure_built(x)
        self._check_sizes(x)
        h0, c0 = self._states(initial_state, "initial_state", x.shape[0])
        hs, _ = self._run(x, h0, c0)
        return hs if self.return_sequence else hs[:, -1]


class _Cell(_Recurrent):
    is_cell = True
    size_args = ("weight_shape",)

    def __init__(self, *, weight_shape: Sequence[int], weight_initializer: Initializer,
                 bias_initializer: Initializer, use_bias: bool, trainable: bool,
                 dtype: DTypeLike, activation: Activation,
                 recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        shape = self.check_ints("weight_shape", weight_shape, 2)
        if is_int(weight_shape):
            raise self.error("weight_shape", weight_shape, "a list [input_size, hidden_size]",
                             TypeError)
        cfg: dict[str, Any] = dict(weight_shape=list(shape), weight_initializer=weight_initializer,
                   bias_initializer=bias_initializer, activation=activation)
        if self.kind != "rnn":
            cfg["recurrent_activation"] = recurrent_activation
        cfg["use_bias"] = self.check_bool("use_bias", use_bias)
        self.config(**cfg)
        self._set("input_size", shape[0])
        self._set("output_size", shape[1])
        self._setup(weight_initializer, bias_initializer, activation, recurrent_activation)
        self._create()

    def _step(self, data: ArrayLike,
              state: StateLike | None) -> tuple[mx.array, mx.array | None]:
        x = self.as_input(data, ndim=2)
        self.ensure_built(x)
        self._check_sizes(x)
        h0, c0 = self._states(state, "state", x.shape[0])
        hs, c = self._run(x[:, None], h0, c0)
        return hs[:, 0], c


class RNN(_Sequence):
    """Simple recurrent layer (Keras ``SimpleRNN``): ``h_t = act(x_t W_i + h_{t-1} W_s + b)``.

    Args:
        output_size (int): hidden units ``H``.
        input_size (int, optional): features in; built from the first input if ``None``.
        weight_initializer, bias_initializer: initializers (``'Xavier'``, ``'zeros'``).
        activation: a name, a callable or ``None`` (linear); default ``'tanh'``.
        return_sequence (bool): return every step ``(B, T, H)`` instead of the last
            ``(B, H)``.
        use_bias (bool), trainable (bool), dtype (str).

    Call: ``(data (B, T, in), initial_state=None (B, H))``; stateless across calls.
    Weights: ``weight_i [in, H]``, ``weight_s [H, H]``, ``bias [H]``.
    """

    kind = "rnn"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = "tanh",
                 return_sequence: bool = False, use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))


class GRU(_Sequence):
    """Gated recurrent unit (Keras ``GRU(reset_after=False)``)::

        r = ract(x W_r1 + h W_r2 + b_r)      z = ract(x W_z1 + h W_z2 + b_z)
        hh = act(x W_h1 + (r * h) W_h2 + b_h)  h = z * h + (1 - z) * hh

    Args:
        output_size (int): hidden units ``H``.
        input_size (int, optional): features in; built from the first input if ``None``.
        weight_initializer, bias_initializer: initializers (``'Xavier'``, ``'zeros'``).
        return_sequence (bool): ``(B, T, H)`` instead of the last step ``(B, H)``.
        use_bias (bool), trainable (bool), dtype (str).
        activation: candidate activation, default ``'tanh'``.
        recurrent_activation: gate activation, default ``'sigmoid'``.

    Call: ``(data (B, T, in), initial_state=None (B, H))``; stateless across calls.
    """

    kind = "gru"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", return_sequence: bool = False,
                 use_bias: bool = True, trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(**arguments(locals()))


class LSTM(_Sequence):
    """Long short-term memory (Keras ``LSTM``, ``unit_forget_bias=False``)::

        i, f, o = ract(x W_*1 + h W_*2 + b_*)   cc = act(x W_c1 + h W_c2 + b_c)
        c = f * c + i * cc                     h = o * act(c)

    Args: as :class:`GRU`.

    Call: ``(data (B, T, in), initial_state=None)`` where ``initial_state`` is ``(h, c)``
    or a single ``h`` (then ``c`` starts at zero), each ``(B, H)``. Returns ``h`` only:
    ``(B, H)`` or ``(B, T, H)``.
    """

    kind = "lstm"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", return_sequence: bool = False,
                 use_bias: bool = True, trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(**arguments(locals()))


class RNNCell(_Cell):
    """One :class:`RNN` step: ``h = act(x W_i + state W_s + b)``; returns ``h``.

    Args:
        weight_shape (list): ``[input_size, hidden_size]``.
        weight_initializer, bias_initializer, activation (default ``'tanh'``),
        use_bias, trainable, dtype: as :class:`RNN`.

    Call: ``(data (B, in), state (B, H))`` -> ``(B, H)``; ``state=None`` means zeros.
    """

    kind = "rnn"

    def __init__(self, weight_shape: Sequence[int], weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = "tanh",
                 use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(**arguments(locals()))

    def __call__(self, data: ArrayLike, state: StateLike | None = None) -> mx.array:
        return self._step(data, state)[0]


class GRUCell(_Cell):
    """One :class:`GRU` step (the reset gate is used); returns ``(output, new_state)``,
    both the new ``h`` ``(B, H)``.

    Args:
        weight_shape (list): ``[input_size, hidden_size]``.
        weight_initializer, bias_initializer, use_bias, trainable, dtype, activation
        (default ``'tanh'``), recurrent_activation (default ``'sigmoid'``).

    Call: ``(data (B, in), state (B, H))``; ``state=None`` means zeros.
    Weights: ``weight [in + H, 3H]`` (rows: x then h; column blocks r, z, h), ``bias [3H]``.
    """

    kind = "gru"

    def __init__(self, weight_shape: Sequence[int], weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", use_bias: bool = True,
                 trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(**arguments(locals()))

    def __call__(self, data: ArrayLike,
                 state: StateLike | None = None) -> tuple[mx.array, mx.array]:
        h = self._step(data, state)[0]
        return h, h


class LSTMCell(_Cell):
    """One :class:`LSTM` step; returns ``(output, (h, c))`` with ``output == h``.

    Args:
        weight_shape (list): ``[input_size, hidden_size]``.
        weight_initializer, bias_initializer, use_bias, trainable, dtype, activation
        (default ``'tanh'``), recurrent_activation (default ``'sigmoid'``).

    Call: ``(data (B, in), state)`` where ``state`` is ``(h, c)`` or a single ``h`` (then
    ``c`` starts at zero), each ``(B, H)``; ``state=None`` means zeros.
    Weights: ``weight [in + H, 4H]`` (rows: x then h; column blocks i, f, o, c), ``bias [4H]``.
    """

    kind = "lstm"

    def __init__(self, weight_shape: Sequence[int], weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", use_bias: bool = True,
                 trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid") -> None:
        super().__init__(**arguments(locals()))

    def __call__(self, data: ArrayLike, state: StateLike | None = None
                 ) -> tuple[mx.array, tuple[mx.array, mx.array]]:
        h, c = self._step(data, state)
        return h, (h, c)  # type: ignore[return-value]  # c is an array for an LSTM


__all__ = ["RNN", "RNNCell", "GRU", "GRUCell", "LSTM", "LSTMCell"]
