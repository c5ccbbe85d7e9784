"""Recurrent family: RNN, GRU, LSTM and their cells against Keras ``SimpleRNN``,
``GRU(reset_after=False)``, ``LSTM`` and ``SimpleRNNCell``, ``GRUCell``, ``LSTMCell``.

The engine compares outputs and gradients from inside ``mx.value_and_grad``. The scan core
chooses its code path by how it is traced (``mlxnote.kernels.scan.policy``): untraced
float32 calls on the CPU run a compiled forward loop with fast exp-based activations. So
each float32 case also compares the untraced outputs (the inference path) against the same
TensorFlow reference and float64 oracle.

Initial states are differentiable positional inputs (``initial_state``, and
``initial_state_c`` for an LSTM's cell state; ``state``/``state_c`` for the cells), so the
gradient with respect to them is compared too. The ``call`` hooks group them as the layers
take them: ``initial_state=(h, c)`` or a single ``h``.
"""

from __future__ import annotations

import numpy as np
from mlx.utils import tree_flatten

from ..case import Case, Fn, Input, LayerSpec, grid
from ..compare import compare
from ..engine import effective_training, np32, numeric, prepare
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

def check_recurrent(case: Case, build=None) -> list:
    """The engine's numeric comparison, plus (float32) the untraced forward against TF."""
    import tensorflow as tf

    spec = SPEC_BY_NAME[case.layer]
    checks = numeric(case, spec, build)
    if case.dtype != "float32":
        return checks  # reduced dtypes take the same code path traced or not
    layer, inputs, xs, kw = prepare(case, spec, build)
    spec.call(layer, xs, kw)  # builds lazily; later calls find the compiled loop cached
    outs = [np32(o) for _, o in tree_flatten(spec.call(layer, xs, kw))]
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    refs = []
    for dt in (tf.float32, tf.float64):
        fn = spec.reference(case, weights, dt).fn
        tf_in = [tf.constant(a, dtype=dt) for a in inputs]
        refs.append([np.asarray(tf.cast(o, tf.float64)) for o in tf.nest.flatten(
            fn(*tf_in, training=effective_training(case)))])
    for j, (a, b, c) in enumerate(zip(outs, *refs)):
        checks.append(compare(f"output[{j}] untraced", a, b, c, case.dtype))
    return checks


SEQ_DOC = ["output_size", "input_size", "weight_initializer", "bias_initializer",
           "return_sequence", "use_bias", "trainable", "dtype", "activation", "data",
           "initial_state"]
CELL_DOC = ["weight_shape", "weight_initializer", "bias_initializer", "use_bias", "trainable",
            "dtype", "activation", "data", "state"]
SPECS = [
    LayerSpec("RNN", SEQ_DOC, reference=ref.recurrent, call=call_sequence),
    LayerSpec("GRU", SEQ_DOC + ["recurrent_activation"], reference=ref.recurrent,
              call=call_sequence),
    LayerSpec("LSTM", SEQ_DOC + ["recurrent_activation"], reference=ref.recurrent,
              call=call_sequence),
    LayerSpec("RNNCell", CELL_DOC, reference=ref.recurrent, call=call_cell),
    LayerSpec("GRUCell", CELL_DOC + ["recurrent_activation"], reference=ref.recurrent,
              call=call_cell),
    LayerSpec("LSTMCell", CELL_DOC + ["recurrent_activation"], reference=ref.recurrent,
              call=call_cell),
]
for _s in SPECS:
    _s.check = check_recurrent
SPEC_BY_NAME = {s.name: s for s in SPECS}
