"""RNN, GRU, LSTM, their cells (decisions.md items 20-22) and Bidirectional (item 34):
arguments, states, masks and the inputs a built layer refuses."""

from __future__ import annotations

from .rows import BASE, Accept, Arr, Fits, Oversize, Reads, Refuse, Row, new

T, V = TypeError, ValueError
B, S, I, H = 2, 3, 4, 5  # batch, steps, input features, hidden units
SEQ = ("RNN", "GRU", "LSTM")
CELLS = ("RNNCell", "GRUCell", "LSTMCell")
for _name in SEQ:
    BASE[_name] = dict(output_size=H)
for _name in CELLS:
    BASE[_name] = dict(weight_shape=[I, H])
BASE["Bidirectional"] = dict(layer=new("GRU", output_size=H))


def _common(layer: str) -> list[Row]:
    """The arguments every recurrent layer has."""
    rows: list[Row] = [
        Refuse(layer, dict(weight_initializer="nope"), "weight_initializer"),
        Refuse(layer, dict(bias_initializer="nope"), "bias_initializer"),
        Refuse(layer, dict(bias_initializer="Orthogonal"), "bias_initializer"),  # rank 1
        Refuse(layer, dict(activation="nope"), "activation"),
        Refuse(layer, dict(activation=1), "activation", T),
        Refuse(layer, dict(use_bias=1), "use_bias", T),
        Refuse(layer, dict(trainable="no"), "trainable", T),
        Refuse(layer, dict(dtype="float64"), "dtype", T)]
    if not layer.startswith("RNN"):
        rows.append(Refuse(layer, dict(recurrent_activation="nope"), "recurrent_activation"))
    if layer.startswith("GRU"):
        rows.append(Refuse(layer, dict(reset_after="yes"), "reset_after", T))
    return rows


def _sequence(layer: str) -> list[Row]:
    x = (B, S, I)
    state = Arr((B, H))
    rows: list[Row] = [
        *_common(layer),
        Refuse(layer, dict(output_size=0), "output_size"),
        Refuse(layer, dict(output_size=None), "output_size", T),
        Refuse(layer, dict(output_size=2**31), "output_size"),
        Refuse(layer, dict(input_size=0), "input_size"),
        Refuse(layer, dict(input_size=4.0), "input_size", T),
        Refuse(layer, dict(return_sequence="yes"), "return_sequence", T),
        Refuse(layer, dict(go_backwards=1), "go_backwards", T),
        Refuse(layer, {}, "data", inputs=((B, I),), words=("rank 3",)),
        Refuse(layer, {}, "data", inputs=((B, 0, I),)),
        Refuse(layer, dict(input_size=I + 1), "data", inputs=(x,)),
        Refuse(layer, {}, "initial_state", inputs=(x,), call=dict(initial_state=Arr((B, H + 1)))),
        Refuse(layer, {}, "initial_state", inputs=(x,), call=dict(initial_state=Arr((H,)))),
        Refuse(layer, {}, "initial_state", T, inputs=(x,),
               call=dict(initial_state=[state, state, state])),
        Refuse(layer, {}, "mask", inputs=(x,), call=dict(mask=Arr((B, S + 1), "bool")),
               words=(f"shape {(B, S)}",)),
        Refuse(layer, {}, "mask", inputs=(x,), call=dict(mask=Arr((B,), "bool"))),
        Oversize(layer, dict(input_size=I), (x,), "data", "input projection",
                 limit=B * S * I * 4 + 8),
        Accept(layer, {}, (x,), (B, H)),
        Accept(layer, dict(return_sequence=True, go_backwards=True), (x,), (B, S, H),
               call=dict(initial_state=state, mask=Arr((B, S), "bool"))),
        Accept(layer, dict(input_size=I, use_bias=False, activation=None, dtype="float16"),
               (x,), (B, H), call=dict(initial_state=[state])),
    ]
    if layer == "LSTM":
        rows.append(Accept(layer, {}, (x,), (B, H), call=dict(initial_state=(state, state))))
        rows.append(Refuse(layer, {}, "initial_state", inputs=(x,),
                           call=dict(initial_state=(state, Arr((B, H + 1))))))
    else:
        rows.append(Refuse(layer, {}, "initial_state", T, inputs=(x,),
                           call=dict(initial_state=[state, state])))
    if layer == "GRU":
        rows.append(Accept(layer, dict(reset_after=True, recurrent_activation="hard_sigmoid",
                                       bias_initializer="Orthogonal"), (x,), (B, H)))
    return rows


def _cell(layer: str) -> list[Row]:
    x, s = (B, I), Arr((B, H))
    lstm = layer == "LSTMCell"
    outs = [(B, H)] * (3 if lstm else 2) if layer != "RNNCell" else (B, H)
    rows: list[Row] = [
        *_common(layer),
        Refuse(layer, dict(weight_shape=[I]), "weight_shape", T),
        Refuse(layer, dict(weight_shape=I), "weight_shape", T),
        Refuse(layer, dict(weight_shape=[I, H, 1]), "weight_shape", T),
        Refuse(layer, dict(weight_shape=[0, H]), "weight_shape"),
        Refuse(layer, dict(weight_shape=[I, 0]), "weight_shape"),
        Refuse(layer, dict(weight_shape="45"), "weight_shape", T),
        Refuse(layer, {}, "data", inputs=((B, 1, I),), words=("rank 2",)),
        Refuse(layer, {}, "data", inputs=((B, I + 1),), call=dict(state=s)),
        Refuse(layer, {}, "state", inputs=(x,), call=dict(state=Arr((B + 1, H)))),
        Refuse(layer, {}, "state", inputs=(x,), call=dict(state=Arr((B, 1, H)))),
        Oversize(layer, {}, (x,), "data", "input projection", limit=B * H * 4 - 4),
        Fits(layer, {}, (x,), B * H * 4 * (4 if lstm else 3 if layer == "GRUCell" else 1),
             outs),  # exactly its projection (B, 1, k*H)
        Accept(layer, {}, (x,), outs, call=dict(state=s)),
        Accept(layer, {}, (x,), outs),
        Accept(layer, dict(use_bias=False, dtype="bfloat16"), (x,), outs, call=dict(state=[s])),
    ]
    if lstm:
        rows += [Accept(layer, {}, (x,), outs, call=dict(state=(s, s))),
                 Refuse(layer, {}, "state", T, inputs=(x,), call=dict(state=[s, s, s]))]
    if layer == "GRUCell":
        rows.append(Accept(layer, dict(reset_after=True), (x,), outs, call=dict(state=s)))
    return rows


_gru = dict(output_size=H, return_sequence=True)
BIDIRECTIONAL: list[Row] = [
    Refuse("Bidirectional", dict(layer=new("dense", output_size=H)), "layer", T),
    Refuse("Bidirectional", dict(layer=new("GRUCell", weight_shape=[I, H])), "layer", T),
    Refuse("Bidirectional", dict(layer=new("GRU", output_size=H, go_backwards=True)), "layer"),
    Refuse("Bidirectional", dict(merge_mode="max"), "merge_mode"),
    Refuse("Bidirectional", dict(merge_mode=1), "merge_mode", T),
    Refuse("Bidirectional", dict(backward_layer=new("dense", output_size=H)),
           "backward_layer", T),
    Refuse("Bidirectional", dict(backward_layer=new("GRU", output_size=H)), "backward_layer"),
    Refuse("Bidirectional", dict(layer=new("GRU", **_gru),
                                 backward_layer=new("GRU", output_size=H, go_backwards=True)),
           "backward_layer"),
    Refuse("Bidirectional", dict(backward_layer=new("GRU", output_size=H, go_backwards=True,
                                                    dtype="float16")), "backward_layer"),
    Refuse("Bidirectional", dict(merge_mode="sum", backward_layer=new(
        "LSTM", output_size=H + 1, go_backwards=True)), "backward_layer"),
    Refuse("Bidirectional", dict(layer=new("GRU", output_size=H, input_size=I), backward_layer=new(
        "GRU", output_size=H, input_size=I + 1, go_backwards=True)), "backward_layer"),
    Refuse("Bidirectional", {}, "initial_state", T, inputs=((B, S, I),),
           call=dict(initial_state=[Arr((B, H))])),
    Refuse("Bidirectional", {}, "initial_state", T, inputs=((B, S, I),),
           call=dict(initial_state=Arr((B, H)))),
    Refuse("Bidirectional", dict(layer=new("GRU", output_size=H, input_size=I)), "data",
           inputs=((B, S, I + 1),)),
    Refuse("Bidirectional", {}, "data", inputs=((B, I),), words=("rank 3",)),
    Refuse("Bidirectional", {}, "mask", owner="Bidirectional", inputs=((B, S, I),),
           call=dict(mask=Arr((B, S + 1), "bool"))),
    Accept("Bidirectional", {}, ((B, S, I),), (B, 2 * H)),
    Reads("Bidirectional", {}, dict(output_size=2 * H, dtype=lambda d: str(d) == "mlx.core.float32",
                                    backward_layer=lambda b: b.go_backwards is True,
                                    forward_layer=lambda f: f.go_backwards is False)),
    Reads("Bidirectional", dict(merge_mode="sum", layer=new("LSTM", output_size=H,
                                                          dtype="float16")),
          dict(output_size=H, dtype=lambda d: str(d) == "mlx.core.float16")),
    Accept("Bidirectional", dict(layer=new("GRU", **_gru), merge_mode=None), ((B, S, I),),
           [(B, S, H), (B, S, H)]),
    Accept("Bidirectional", dict(merge_mode="concat", backward_layer=new(
        "LSTM", output_size=H + 1, go_backwards=True)), ((B, S, I),), (B, 2 * H + 1)),
    Accept("Bidirectional", dict(layer=new("LSTM", output_size=H), merge_mode="ave"),
           ((B, S, I),), (B, H), call=dict(initial_state=[Arr((B, H))] * 4)),
    Accept("Bidirectional", dict(merge_mode="mul"), ((B, S, I),), (B, H),
           call=dict(initial_state=[Arr((B, H))] * 2, mask=Arr((B, S), "bool"))),
    Accept("Bidirectional", dict(layer=new("RNN", output_size=H), merge_mode="sum"),
           ((B, S, I),), (B, H)),
]

ROWS: list[Row] = [*(r for n in SEQ for r in _sequence(n)),
                   *(r for n in CELLS for r in _cell(n)), *BIDIRECTIONAL]
