"""References for the recurrent family: Keras ``SimpleRNN``, ``GRU`` (``reset_after`` as the
case gives it, ``False`` by default), ``LSTM(unit_forget_bias=False)``, the cells
``SimpleRNNCell``, ``GRUCell``, ``LSTMCell`` and ``Bidirectional``, with Note's weights
transferred; ``mask`` and ``go_backwards`` go to the Keras layers as they are.

The transfer is written from the two documented layouts, not from mlxnote's storage:

* Keras (all six): ``kernel [in, k*H]``, ``recurrent_kernel [H, k*H]``, ``bias [k*H]``
  (``[2, k*H]`` for ``reset_after=True``: input bias, then recurrent bias), gate blocks
  ``z, r, h`` for the GRU and ``i, f, c, o`` for the LSTM.
* Note (``note-semantics.md`` sections 15-24): per-gate matrices for the sequence layers,
  in creation order (``weight_r1, weight_r2, weight_z1, ...``, then ``bias_r, ...``; LSTM
  gates ``i, f, o, c``; RNN ``weight_i, weight_s, bias``); for GRUCell/LSTMCell one joint
  ``weight [in + H, k*H]`` (rows x then h, column blocks ``r, z, h`` / ``i, f, o, c``) and
  ``bias [k*H]``; RNNCell as RNN. A reset-after GRU's biases are ``[2, H]`` per gate
  (``[2, 3H]`` for the cell): rows input and recurrent bias (decisions.md, item 32).
  ``Bidirectional``: the forward layer's weights, then the backward layer's.

Keras builds its recurrent kernel with an orthogonal initializer, whose QR has no bfloat16
kernel on TF's CPU; the reference layers are therefore built with zero initializers (the
values are overwritten by the transfer), after which all Keras recurrent layers run in
float16 and bfloat16 on the CPU.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..case import FNS, Reference
from .activations import tf_activation

KIND = {"RNN": "rnn", "RNNCell": "rnn", "GRU": "gru", "GRUCell": "gru", "LSTM": "lstm",
        "LSTMCell": "lstm"}
NOTE_GATES = {"rnn": ("",), "gru": ("r", "z", "h"), "lstm": ("i", "f", "o", "c")}
KERAS_GATES = {"rnn": ("",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "c", "o")}


def _np(dtype: tf.DType):
    return np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype


def _reorder(a: np.ndarray, src: tuple, dst: tuple, h: int) -> np.ndarray:
    """Column blocks of width ``h`` from gate order ``src`` to gate order ``dst``."""
    blocks = {g: a[..., j * h:(j + 1) * h] for j, g in enumerate(src)}
    return np.concatenate([blocks[g] for g in dst], axis=-1)


def note_names(kind: str, cell: bool, use_bias: bool) -> list[str]:
    """Note's weight names in creation order."""
    if kind == "rnn":
        return ["weight_i", "weight_s"] + (["bias"] if use_bias else [])
    if cell:
        return ["weight"] + (["bias"] if use_bias else [])
    gates = NOTE_GATES[kind]
    names = [f"weight_{g}{n}" for g in gates for n in (1, 2)]
    return names + ([f"bias_{g}" for g in gates] if use_bias else [])


def note_to_keras(kind: str, cell: bool, use_bias: bool, weights: list[np.ndarray],
                  input_size: int, units: int) -> list[np.ndarray]:
    """Note-layout weights -> Keras ``[kernel, recurrent_kernel(, bias)]``."""
    d = dict(zip(note_names(kind, cell, use_bias), weights))
    if kind == "rnn":
        return [d["weight_i"], d["weight_s"]] + ([d["bias"]] if use_bias else [])
    ng, kg = NOTE_GATES[kind], KERAS_GATES[kind]
    if cell:
        w = _reorder(d["weight"], ng, kg, units)
        out = [w[:input_size], w[input_size:]]
        return out + ([_reorder(d["bias"], ng, kg, units)] if use_bias else [])
    kernel = np.concatenate([d[f"weight_{g}1"] for g in kg], axis=1)
    recurrent = np.concatenate([d[f"weight_{g}2"] for g in kg], axis=1)
    out = [kernel, recurrent]
    return out + ([np.concatenate([d[f"bias_{g}"] for g in kg], axis=-1)] if use_bias else [])


def keras_to_note(kind: str, cell: bool, use_bias: bool, arrays: list[np.ndarray],
                  units: int) -> list[np.ndarray]:
    """Keras ``[kernel, recurrent_kernel(, bias)]`` (weights or gradients) -> Note's
    layout and creation order."""
    if not arrays:  # trainable=False: nothing to map
        return []
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if use_bias else None
    if kind == "rnn":
        return [kernel, recurrent] + ([bias] if use_bias else [])
    ng, kg = NOTE_GATES[kind], KERAS_GATES[kind]
    if cell:
        w = _reorder(np.concatenate([kernel, recurrent], axis=0), kg, ng, units)
        return [w] + ([_reorder(bias, kg, ng, units)] if use_bias else [])
    kb = {g: j for j, g in enumerate(kg)}

    def col(a, g):
        j = kb[g]
        return a[..., j * units:(j + 1) * units]

    out = []
    for g in ng:
        out += [col(kernel, g), col(recurrent, g)]
    return out + ([col(bias, g) for g in ng] if use_bias else [])


def _keras_layer(name: str, kw: dict, dtype: tf.DType):
    """The Keras layer of the mlxnote layer ``name`` built with the arguments ``kw``."""
    kind = KIND[name]
    cell = name.endswith("Cell")
    units = kw["weight_shape"][1] if cell else kw["output_size"]
    common = dict(activation=tf_activation(kw.get("activation", "tanh")),
                  use_bias=kw.get("use_bias", True), trainable=kw.get("trainable", True),
                  kernel_initializer="zeros", recurrent_initializer="zeros",
                  bias_initializer="zeros", dtype=dtype.name)
    if kind != "rnn":
        common["recurrent_activation"] = tf_activation(kw.get("recurrent_activation",
                                                              "sigmoid"))
    if kind == "gru":
        common["reset_after"] = kw.get("reset_after", False)
    if kind == "lstm":
        common["unit_forget_bias"] = False
    if cell:
        cls = {"rnn": keras.layers.SimpleRNNCell, "gru": keras.layers.GRUCell,
               "lstm": keras.layers.LSTMCell}[kind]
        return cls(units, **common), kind, cell, units
    cls = {"rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU,
           "lstm": keras.layers.LSTM}[kind]
    return cls(units, return_sequences=kw.get("return_sequence", False),
               go_backwards=kw.get("go_backwards", False), **common), kind, cell, units


def split_mask(given: tuple) -> tuple[list, object]:
    """``(states, mask)`` from the inputs after the data: a boolean input is the mask."""
    given = list(given)
    mask = given.pop() if given and given[-1].dtype == tf.bool else None
    return given, mask


def _transfer(layer, name: str, kw: dict, weights: list, dtype: tf.DType) -> None:
    kind, cell = KIND[name], name.endswith("Cell")
    units = kw["weight_shape"][1] if cell else kw["output_size"]
    keras_w = note_to_keras(kind, cell, kw.get("use_bias", True), weights, layer_input(layer),
                            units)
    layer.set_weights([w.astype(_np(dtype)) for w in keras_w])


def layer_input(layer) -> int:
    """The input size of a built Keras recurrent layer or cell (its kernel's rows)."""
    cell = getattr(layer, "cell", layer)
    return int(cell.kernel.shape[0])


def _to_note(name: str, kw: dict):
    kind, cell = KIND[name], name.endswith("Cell")
    units = kw["weight_shape"][1] if cell else kw["output_size"]
    return lambda g: keras_to_note(kind, cell, kw.get("use_bias", True), g, units)


def recurrent(case, weights, dtype):
    """The reference for all six layers (the case's layer name picks the Keras class)."""
    layer, kind, cell, units = _keras_layer(case.layer, case.kwargs, dtype)
    in_shape = case.inputs[0].shape
    input_size = in_shape[-1]
    layer.build((None, input_size) if cell else (None, in_shape[1], input_size))
    _transfer(layer, case.layer, case.kwargs, weights, dtype)
    variables = [v.value for v in layer.trainable_variables]

    def states(x, given):
        given = list(given)
        zeros = tf.zeros((x.shape[0], units), dtype)
        if not given:
            given = [zeros]
        if kind == "lstm" and len(given) == 1:
            given.append(zeros)  # a single h: c starts at zero
        return given

    if cell:
        def fn(x, *given, training):
            out, new = layer(x, states(x, given))
            if kind == "rnn":
                return out
            if kind == "gru":
                return out, new[0]
            return out, (new[0], new[1])
    else:
        def fn(x, *given, training):
            given, mask = split_mask(given)
            return layer(x, initial_state=states(x, given) if given else None, mask=mask)

    return Reference(fn, variables, grads_to_note=_to_note(case.layer, case.kwargs))


def bidirectional(case, weights, dtype):
    """Keras ``Bidirectional`` over the Keras twins of the case's layers (``layer`` and
    ``backward_layer`` are ``Fn`` markers of ``conformance.families.recurrent``'s sequence
    layers), each loaded with its share of the Note weights."""
    inner = [FNS[case.kwargs["layer"].name]]
    back = case.kwargs.get("backward_layer")
    if back is not None:
        inner.append(FNS[back.name])
    pairs = [(m.layer, m.kwargs) for m in inner]
    fwd = _keras_layer(*pairs[0], dtype)[0]
    bwd = _keras_layer(*pairs[1], dtype)[0] if back is not None else None
    bi = keras.layers.Bidirectional(fwd, merge_mode=case.kwargs.get("merge_mode", "concat"),
                                    backward_layer=bwd, dtype=dtype.name)
    in_shape = case.inputs[0].shape
    bi.build((None, *in_shape[1:]))
    if back is None:
        pairs.append((pairs[0][0], dict(pairs[0][1], go_backwards=True)))
    sublayers = [bi.forward_layer, bi.backward_layer]
    n_fwd = len(note_names(KIND[pairs[0][0]], False, pairs[0][1].get("use_bias", True)))
    for layer, (name, kw), w in zip(sublayers, pairs, (weights[:n_fwd], weights[n_fwd:])):
        _transfer(layer, name, kw, w, dtype)
    trainable = [[v.value for v in layer.trainable_variables] for layer in sublayers]
    convert = [_to_note(name, kw) for name, kw in pairs]

    def grads_to_note(g):
        n = len(trainable[0])
        return convert[0](g[:n]) + convert[1](g[n:])

    def fn(x, *given, training):
        given, mask = split_mask(given)
        return bi(x, initial_state=given or None, mask=mask)

    return Reference(fn, trainable[0] + trainable[1], grads_to_note=grads_to_note)
