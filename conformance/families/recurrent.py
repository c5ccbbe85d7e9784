"""Recurrent family: RNN, GRU, LSTM and their cells against Keras ``SimpleRNN``,
``GRU(reset_after=False)``, ``LSTM`` and ``SimpleRNNCell``, ``GRUCell``, ``LSTMCell``.

The engine compares outputs and gradients from inside ``mx.value_and_grad``. The scan core
chooses its code path by how it is traced (``mlxnote.kernels.scan.policy``): in float32 on
the CPU, untraced calls run a compiled forward loop with fast exp-based activations, and
calls inside an outer ``mx.compile`` (a compiled training step) the fast activations fused
by that compile. So the specs declare the engine's 'untraced' and 'compiled' modes too:
each float32 case also compares those outputs against the same TensorFlow reference and
float64 oracle (reduced dtypes take the same code path however they are traced).

Initial states are differentiable positional inputs (``initial_state``, and
``initial_state_c`` for an LSTM's cell state; ``state``/``state_c`` for the cells), so the
gradient with respect to them is compared too. The ``call`` hooks group them as the layers
take them: ``initial_state=(h, c)`` or a single ``h``.
"""

from __future__ import annotations

from ..case import ABSENT, Case, Expected, Fn, Input, LayerSpec, grid
from ..reference import recurrent as ref

B, T, IN, H = 3, 5, 4, 6
X = Input((B, T, IN))
X1 = Input((B, IN))
H0 = Input((B, H), name="initial_state")
C0 = Input((B, H), name="initial_state_c")
S = Input((B, H), name="state")
SC = Input((B, H), name="state_c")


def call_sequence(layer, ins, kw):
    """``layer(x)``, ``layer(x, initial_state=h)`` or ``layer(x, initial_state=(h, c))``."""
    if len(ins) == 1:
        return layer(ins[0], **kw)
    state = ins[1] if len(ins) == 2 else (ins[1], ins[2])
    return layer(ins[0], initial_state=state, **kw)


def call_cell(layer, ins, kw):
    """``cell(x)``, ``cell(x, state=h)`` or ``cell(x, state=(h, c))``."""
    if len(ins) == 1:
        return layer(ins[0], **kw)
    state = ins[1] if len(ins) == 2 else (ins[1], ins[2])
    return layer(ins[0], state=state, **kw)


# Sequence layers: each argument set runs with return_sequence False and True.
SEQ_COMMON = [
    dict(output_size=H, input_size=IN),
    dict(output_size=H),  # lazy build
    dict(output_size=H, input_size=IN, use_bias=False),
    dict(output_size=H, input_size=IN, weight_initializer="He", bias_initializer="normal"),
    dict(output_size=H, input_size=IN, weight_initializer="Orthogonal",
         bias_initializer="uniform", trainable=False),
    dict(output_size=H, input_size=IN, activation="relu"),
    dict(output_size=H, input_size=IN, activation=None),  # linear
    dict(output_size=H, input_size=IN, activation=Fn("sin")),  # a callable
    dict(output_size=H, input_size=IN, activation="softsign"),
]
GATED_EXTRA = [
    dict(output_size=H, input_size=IN, recurrent_activation="hard_sigmoid"),
    # Not elementwise: Keras applies it to each gate separately, and so must we.
    dict(output_size=H, input_size=IN, recurrent_activation="softmax"),
    dict(output_size=H, input_size=IN, activation="elu", recurrent_activation=Fn("sin"),
         weight_initializer=["normal", 0.0, 0.5]),
]


def _with_return(sets):
    out = []
    for kw in sets:
        out += [dict(kw), dict(kw, return_sequence=True)]
    return out


CASES: list[Case] = []
for name in ("RNN", "GRU", "LSTM"):
    sets = SEQ_COMMON + ([] if name == "RNN" else GATED_EXTRA)
    CASES += grid(name, _with_return(sets), [X], smoke=2)
    CASES += grid(name, [dict(output_size=3, input_size=7)], [Input((2, 4, 7))],
                  modes=("eval",))
    # Initial states: h (and c) differentiable.
    states = [X, H0, C0] if name == "LSTM" else [X, H0]
    CASES += grid(name, _with_return([dict(output_size=H, input_size=IN)]), states, smoke=1)
    CASES += grid(name, [dict(output_size=H, input_size=IN, use_bias=False,
                              return_sequence=True)], states, dtypes=("float32",))
    if name == "LSTM":  # a single h: c starts at zero
        CASES += grid(name, _with_return([dict(output_size=H, input_size=IN)]), [X, H0],
                      dtypes=("float32", "bfloat16"))
    # A longer sequence, wider state.
    CASES += grid(name, [dict(output_size=16, input_size=8, return_sequence=True)],
                  [Input((4, 12, 8))] + ([Input((4, 16), name="initial_state")]
                                         if name != "LSTM" else []))

CELL_COMMON = [
    dict(weight_shape=[IN, H]),
    dict(weight_shape=[IN, H], use_bias=False),
    dict(weight_shape=[IN, H], weight_initializer="Xavier_normal", bias_initializer="ones"),
    dict(weight_shape=[IN, H], weight_initializer="Lecun", trainable=False),
    dict(weight_shape=[IN, H], activation="relu"),
    dict(weight_shape=[IN, H], activation=None),
    dict(weight_shape=[IN, H], activation=Fn("sin")),
]
CELL_GATED = [
    dict(weight_shape=[IN, H], recurrent_activation="hard_sigmoid"),
    dict(weight_shape=[IN, H], recurrent_activation="softmax"),
]
for name in ("RNNCell", "GRUCell", "LSTMCell"):
    sets = CELL_COMMON + ([] if name == "RNNCell" else CELL_GATED)
    full = [X1, S, SC] if name == "LSTMCell" else [X1, S]
    CASES += grid(name, sets, full, smoke=1)
    CASES += grid(name, [dict(weight_shape=[IN, H])], [X1])  # state=None: zeros
    # hidden smaller than input; the module's eval mode (no effect: nothing is random)
    CASES += grid(name, [dict(weight_shape=[7, 3])],
                  [Input((2, 7)), Input((2, 3), name="state")], modes=("eval",))
    if name == "LSTMCell":  # a single h: c starts at zero
        CASES += grid(name, [dict(weight_shape=[IN, H])], [X1, S])

SEQ_DOC = ["output_size", "input_size", "weight_initializer", "bias_initializer",
           "return_sequence", "use_bias", "trainable", "dtype", "activation"]
CELL_DOC = ["weight_shape", "weight_initializer", "bias_initializer", "use_bias", "trainable",
            "dtype", "activation"]
# Every execution mode; the untraced and compiled paths differ from the traced one in float32.
EVERY_MODE = dict(modes=("vjp", "untraced", "compiled"), mode_dtypes=("float32",))
SPECS = [
    LayerSpec("RNN", SEQ_DOC, ["data", "initial_state"], reference=ref.recurrent,
              call=call_sequence, **EVERY_MODE),
    *[LayerSpec(name, SEQ_DOC + ["recurrent_activation"], ["data", "initial_state"],
                reference=ref.recurrent, call=call_sequence, **EVERY_MODE)
      for name in ("GRU", "LSTM")],
    LayerSpec("RNNCell", CELL_DOC, ["data", "state"], reference=ref.recurrent, call=call_cell,
              **EVERY_MODE),
    *[LayerSpec(name, CELL_DOC + ["recurrent_activation"], ["data", "state"],
                reference=ref.recurrent, call=call_cell, **EVERY_MODE)
      for name in ("GRUCell", "LSTMCell")],
]

EXPECTED = [
    Expected(
        "LSTM", dtype="bfloat16", formulation="gpu", device="cpu",
        kwargs=dict(activation="relu", return_sequence=ABSENT),
        reason="the GPU formulation computes a bfloat16 LSTM in bfloat16 (as TensorFlow "
        "does): at t=3 one cell-candidate pre-activation (x W_c + b_c) + h U_c rounds to "
        "exactly 0 where its exact value is 2.2e-3, so relu' is 0 instead of 1 and that "
        "path's gradient is lost (64 ulps of the largest value; TensorFlow sums in "
        "another order and keeps it positive). A discontinuous derivative in 16-bit "
        "arithmetic, not a formulation error: 1 of 10 seeds fails, and over the 10 the "
        "median ratio of our error to TF's is 0.60; the CPU formulation (float32 inside) "
        "passes at 0.19. Measured on a CPU: Metal's and CUDA's bfloat16 roundings differ.",
        checks=("grad:data", "grad:weight_i*", "grad:weight_o*", "grad:weight_c*",
                "grad:bias_i", "grad:bias_o", "grad:bias_c")),
]
