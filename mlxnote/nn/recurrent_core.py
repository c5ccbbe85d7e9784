"""The core shared by the six recurrent layers (:mod:`mlxnote.nn.recurrent` holds the
public classes and their conventions): Note-layout views over fused storage, the states,
masks and the call into :func:`mlxnote.kernels.scan.scan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .._config import compute_dtype
from .._validation import as_array, is_int
from ..kernels.linear import addmm
from ..kernels.scan import scan
from . import activations, initializers, weights
from .layer import Desc, Layer, materialize, shape_desc
from .typing import Activation, ArrayLike, DTypeLike, Initializer, MaskLike, StateLike
from .weights import Block, View

GATES = {"rnn": ("",), "gru": ("r", "z", "h"), "lstm": ("i", "f", "o", "c")}


class _Recurrent(Layer):
    """Shared by the six layers: Note-layout views over fused storage, and the step."""

    kind = "rnn"
    is_cell = False
    reset_after = False

    def _setup(self, weight_initializer: Initializer, bias_initializer: Initializer,
               activation: Activation, recurrent_activation: Activation,
               reset_after: bool = False) -> None:
        self._set("reset_after", self.check_bool("reset_after", reset_after))
        self._set("weight_initializer", self.check_initializer("weight_initializer",
                                                               weight_initializer, rank=2))
        self._set("bias_initializer", self.check_initializer(
            "bias_initializer", bias_initializer, rank=2 if self.reset_after else 1))
        self._set("act", activations.get(activation, self.error_name, "activation"))
        self._set("ract", activations.get(recurrent_activation, self.error_name,
                                          "recurrent_activation"))

    # -- Note layout over fused storage ----------------------------------------------
    def _views_plan(self) -> list[View]:
        """Each Note weight as blocks of the stored arrays, in Note's creation order.
        A reset-after GRU's stored ``bias (2, 3H)`` holds the input bias in row 0 and the
        recurrent bias in row 1; its Note biases are column blocks of it (decisions.md,
        item 32)."""
        i, h, gates = self.input_size, self.output_size, GATES[self.kind]
        k = len(gates)
        w, b = "weight_initializer", "bias_initializer"
        rows = (2,) if self.reset_after else ()
        if self.kind == "rnn":
            views = [View("weight_i", (i, h), (Block("kernel", (0, h)),), w),
                     View("weight_s", (h, h), (Block("recurrent_kernel", (0, h)),), w)]
            biases = [View("bias", (h,), (Block("bias", (0, h)),), b)]
        elif self.is_cell:
            cols = (0, k * h)
            views = [View("weight", (i + h, k * h),
                          (Block("kernel", cols), Block("recurrent_kernel", cols)), w)]
            biases = [View("bias", (*rows, k * h), (Block("bias", cols),), b)]
        else:
            views, biases = [], []
            for g, name in enumerate(gates):
                cols = (g * h, (g + 1) * h)
                views += [View(f"weight_{name}1", (i, h), (Block("kernel", cols),), w),
                          View(f"weight_{name}2", (h, h), (Block("recurrent_kernel", cols),), w)]
                biases.append(View(f"bias_{name}", (*rows, h), (Block("bias", cols),), b))
        return views + (biases if self.use_bias else [])

    def _create(self) -> None:
        """Draw every Note weight in creation order (Note's shapes and fans), then fuse
        them into the stored ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]``, ``bias``
        (``[k*H]``, or ``[2, k*H]`` for a reset-after GRU)."""
        k, h = len(GATES[self.kind]), self.output_size
        stored = {"kernel": (self.input_size, k * h), "recurrent_kernel": (h, k * h)}
        if self.use_bias:
            stored["bias"] = (2, k * h) if self.reset_after else (k * h,)
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
        k, cdt = len(GATES[self.kind]), compute_dtype(self.dtype)
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

    def _run(self, x: mx.array, h0: mx.array, c0: mx.array | None,
             mask: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
        """``x (B, T, in)`` -> ``(hs (B, T, H), c_T)`` through the shared scan core
        (``hs``: the states after each step; a masked step carries them over).

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
        rbias = None
        if bias is not None and self.reset_after:
            bias, rbias = bias[0], bias[1]
        cdt = compute_dtype(self.dtype)  # float32 for 16-bit layers on the CPU
        if cdt != self.dtype:
            flat, kernel, rkernel, h0 = (a.astype(cdt) for a in (flat, kernel, rkernel, h0))
            bias = None if bias is None else bias.astype(cdt)
            rbias = None if rbias is None else rbias.astype(cdt)
            c0 = None if c0 is None else c0.astype(cdt)
        xp = flat @ kernel if bias is None else addmm(bias, flat, kernel)
        hs, c = scan(self.kind, xp.reshape(b, t, -1), rkernel, h0, c0, self.act, self.ract,
                     mask=mask, reset_after=self.reset_after, recurrent_bias=rbias)
        if cdt != self.dtype:
            hs, c = hs.astype(self.dtype), None if c is None else c.astype(self.dtype)
        return hs, c


class _Sequence(_Recurrent):
    size_args = ("output_size", "input_size")

    def __init__(self, *, output_size: int, input_size: int | None,
                 weight_initializer: Initializer, bias_initializer: Initializer,
                 return_sequence: bool, use_bias: bool, trainable: bool, dtype: DTypeLike,
                 activation: Activation, recurrent_activation: Activation = "sigmoid",
                 go_backwards: bool = False, reset_after: bool = False) -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        cfg: dict[str, Any] = dict(output_size=self.check_int("output_size", output_size),
                   input_size=self.check_int("input_size", input_size, allow_none=True),
                   weight_initializer=weight_initializer, bias_initializer=bias_initializer,
                   activation=activation)
        if self.kind != "rnn":
            cfg["recurrent_activation"] = recurrent_activation
        cfg.update(return_sequence=self.check_bool("return_sequence", return_sequence),
                   use_bias=self.check_bool("use_bias", use_bias),
                   go_backwards=self.check_bool("go_backwards", go_backwards))
        if self.kind == "gru":
            cfg["reset_after"] = self.check_bool("reset_after", reset_after)
        self.config(**cfg)
        self._setup(weight_initializer, bias_initializer, activation, recurrent_activation,
                    reset_after)
        if self.input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int) -> None:
        self._set("input_size", input_size)
        self._create()

    def _mask(self, mask: MaskLike, x: mx.array) -> mx.array:
        m = as_array(self.error_name, mask, "mask")
        if tuple(m.shape) != tuple(x.shape[:2]):
            raise self.error("mask", shape_desc(m), f"shape {tuple(x.shape[:2])} (batch, "
                             "time) of the data, True where a step counts")
        return m.astype(mx.bool_)

    def sequence(self, data: ArrayLike, initial_state: StateLike | None = None,
                 mask: MaskLike | None = None, zero_masked: bool = False) -> mx.array:
        """The call; ``zero_masked`` gives zeros instead of the carried output at masked
        steps of a returned sequence (Keras's ``zero_output_for_mask``, which its
        ``Bidirectional`` sets)."""
        x = self.as_input(data, ndim=3)
        if x.shape[1] == 0:
            raise self.error("data", shape_desc(x), "at least one timestep (batch, time, "
                             "features)")
        m = None if mask is None else self._mask(mask, x)
        self.ensure_built(x)
        self._check_sizes(x)
        h0, c0 = self._states(initial_state, "initial_state", x.shape[0])
        if self.go_backwards:  # Keras: the steps run backwards, outputs in that order
            x = x[:, ::-1]
            m = None if m is None else m[:, ::-1]
        hs, _ = self._run(x, h0, c0, m)
        if m is not None and hs.shape[0]:
            # Keras: a masked step's output is the previous step's output (zeros before
            # the first counted step), or zeros with zero_masked
            seen = m if zero_masked and self.return_sequence else mx.cummax(m, axis=1)
            hs = mx.where(seen[..., None], hs, mx.array(0, hs.dtype))
        return hs if self.return_sequence else hs[:, -1]

    def __call__(self, data: ArrayLike, initial_state: StateLike | None = None,
                 mask: MaskLike | None = None) -> mx.array:
        return self.sequence(data, initial_state, mask)


class _Cell(_Recurrent):
    is_cell = True
    size_args = ("weight_shape",)

    def __init__(self, *, weight_shape: Sequence[int], weight_initializer: Initializer,
                 bias_initializer: Initializer, use_bias: bool, trainable: bool,
                 dtype: DTypeLike, activation: Activation,
                 recurrent_activation: Activation = "sigmoid",
                 reset_after: bool = False) -> None:
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
        if self.kind == "gru":
            cfg["reset_after"] = self.check_bool("reset_after", reset_after)
        self.config(**cfg)
        self._set("input_size", shape[0])
        self._set("output_size", shape[1])
        self._setup(weight_initializer, bias_initializer, activation, recurrent_activation,
                    reset_after)
        self._create()

    def _step(self, data: ArrayLike,
              state: StateLike | None) -> tuple[mx.array, mx.array | None]:
        x = self.as_input(data, ndim=2)
        self.ensure_built(x)
        self._check_sizes(x)
        h0, c0 = self._states(state, "state", x.shape[0])
        hs, c = self._run(x[:, None], h0, c0)
        return hs[:, 0], c
