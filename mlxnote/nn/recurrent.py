"""Recurrent layers: RNN, GRU, LSTM and their cells, on one scan core.

Equations (decisions.md, items 20-22): RNN is Keras ``SimpleRNN``, GRU is Keras
``GRU(reset_after=False)`` (the reset gate multiplies the state before the recurrent
matmul) or, with ``reset_after=True``, Keras 3's default ``GRU`` (item 32), LSTM is Keras
``LSTM`` with ``unit_forget_bias=False``. The cells run the same step. Every call starts
from zeros or from ``initial_state``/``state``: nothing is kept between calls.

Keras's sequence options (item 33): ``mask=`` ``(B, T)`` boolean skips steps (a masked
step carries the state and the output over; the output is zeros before the first counted
step), ``go_backwards=True`` runs the steps from last to first and returns the sequence in
that order. :class:`~mlxnote.nn.bidirectional.Bidirectional` wraps a sequence layer.

Weights. ``get_weights``/``set_weights``/``param`` use Note's layout and creation order:

=========  =====================================================================
RNN        ``weight_i [in, H]``, ``weight_s [H, H]``, ``bias [H]``
RNNCell    the same
GRU        ``weight_r1, weight_r2, weight_z1, weight_z2, weight_h1, weight_h2``
           (``*1 [in, H]``, ``*2 [H, H]``), ``bias_r, bias_z, bias_h [H]``
           (``reset_after=True``: ``[2, H]``, row 0 the input bias, row 1 the recurrent)
LSTM       ``weight_i1, weight_i2, weight_f1, weight_f2, weight_o1, weight_o2,
           weight_c1, weight_c2``, ``bias_i, bias_f, bias_o, bias_c``
GRUCell    ``weight [in + H, 3H]`` (rows: x then h; column blocks r, z, h), ``bias [3H]``
           (``reset_after=True``: ``[2, 3H]``, rows input and recurrent bias)
LSTMCell   ``weight [in + H, 4H]`` (column blocks i, f, o, c), ``bias [4H]``
=========  =====================================================================

Storage is what the scan consumes: ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]`` and
``bias [k*H]`` (``[2, k*H]`` reset-after) with gate blocks in Note's order (GRU ``r, z,
h``; LSTM ``i, f, o, c``), so that one matmul projects every timestep and one matmul per
step does the recurrence. ``parameters()`` (and MLX optimizers, ``save_weights``) see the
stored arrays; the Note names are views of them in the weight registry
(:class:`mlxnote.nn.weights.View`): they read as attributes (``layer.weight_f1``) and
:meth:`update` accepts them too. The shared core is :mod:`mlxnote.nn.recurrent_core`.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from .layer import arguments
from .recurrent_core import _Cell, _Sequence
from .typing import Activation, ArrayLike, DTypeLike, Initializer, StateLike


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
        go_backwards (bool): run from the last step to the first; a returned sequence is
            in that (reversed) order, as Keras's.

    Call: ``(data (B, T, in), initial_state=None (B, H), mask=None (B, T) boolean)``;
    stateless across calls. A masked step carries the state and the output over.
    Weights: ``weight_i [in, H]``, ``weight_s [H, H]``, ``bias [H]``.
    """

    kind = "rnn"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", activation: Activation = "tanh",
                 return_sequence: bool = False, use_bias: bool = True, trainable: bool = True,
                 dtype: DTypeLike = "float32", go_backwards: bool = False) -> None:
        super().__init__(**arguments(locals()))


class GRU(_Sequence):
    """Gated recurrent unit (Keras ``GRU(reset_after=False)``)::

        r = ract(x W_r1 + h W_r2 + b_r)      z = ract(x W_z1 + h W_z2 + b_z)
        hh = act(x W_h1 + (r * h) W_h2 + b_h)  h = z * h + (1 - z) * hh

    With ``reset_after=True`` (Keras 3's default GRU) each gate has an input and a
    recurrent bias, ``bias_* [2, H]``, and ``hh = act(x W_h1 + b_h[0] + r * (h W_h2 +
    b_h[1]))`` (decisions.md, item 32).

    Args:
        output_size (int): hidden units ``H``.
        input_size (int, optional): features in; built from the first input if ``None``.
        weight_initializer, bias_initializer: initializers (``'Xavier'``, ``'zeros'``).
        return_sequence (bool): ``(B, T, H)`` instead of the last step ``(B, H)``.
        use_bias (bool), trainable (bool), dtype (str).
        activation: candidate activation, default ``'tanh'``.
        recurrent_activation: gate activation, default ``'sigmoid'``.
        go_backwards (bool): as :class:`RNN`.
        reset_after (bool): the reset gate after the recurrent matmul; default False.

    Call: ``(data (B, T, in), initial_state=None (B, H), mask=None (B, T))``.
    Weights: ``weight_r1, weight_r2, weight_z1, weight_z2, weight_h1, weight_h2``,
    ``bias_r, bias_z, bias_h`` (``[H]``, or ``[2, H]`` with ``reset_after``).
    """

    kind = "gru"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", return_sequence: bool = False,
                 use_bias: bool = True, trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid", go_backwards: bool = False,
                 reset_after: bool = False) -> None:
        super().__init__(**arguments(locals()))


class LSTM(_Sequence):
    """Long short-term memory (Keras ``LSTM``, ``unit_forget_bias=False``)::

        i, f, o = ract(x W_*1 + h W_*2 + b_*)   cc = act(x W_c1 + h W_c2 + b_c)
        c = f * c + i * cc                     h = o * act(c)

    Args: as :class:`GRU` (no ``reset_after``).

    Call: ``(data (B, T, in), initial_state=None, mask=None (B, T))`` where
    ``initial_state`` is ``(h, c)`` or a single ``h`` (then ``c`` starts at zero), each
    ``(B, H)``. Returns ``h`` only: ``(B, H)`` or ``(B, T, H)``.
    """

    kind = "lstm"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", return_sequence: bool = False,
                 use_bias: bool = True, trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid",
                 go_backwards: bool = False) -> None:
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
        reset_after (bool): Keras 3's GRU step (:class:`GRU`); default False.

    Call: ``(data (B, in), state (B, H))``; ``state=None`` means zeros.
    Weights: ``weight [in + H, 3H]`` (rows: x then h; column blocks r, z, h), ``bias [3H]``
    (``reset_after=True``: ``[2, 3H]``, row 0 the input bias, row 1 the recurrent one).
    """

    kind = "gru"

    def __init__(self, weight_shape: Sequence[int], weight_initializer: Initializer = "Xavier",
                 bias_initializer: Initializer = "zeros", use_bias: bool = True,
                 trainable: bool = True, dtype: DTypeLike = "float32",
                 activation: Activation = "tanh",
                 recurrent_activation: Activation = "sigmoid",
                 reset_after: bool = False) -> None:
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
