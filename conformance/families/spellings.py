"""Every accepted spelling of an argument, as cases of the layers other family modules
specify (this module adds no specs): TensorFlow's full-form ``strides``/``dilations``
(``[1, s.., 1]``), Note's 2-D form ``[1, s]`` for 1-D convs, every padding form (upper,
lower and mixed case names, an int, per-dimension ints, per-dimension ``(before, after)``
pairs, a 1-D bare pair), so that the coverage report lists each as a tested value; and
16-bit layers handed float32 inputs (decisions.md 3: inputs are cast to the layer's dtype,
so outputs keep the layer's dtype and each input's gradient its input's).
"""

from __future__ import annotations

from ..case import Case, Fn, Input, grid
from .conv import SHAPES
from .transformer_blocks import B

SPECS: list = []
CASES: list[Case] = []
F32 = ("float32",)
_full = {1: [1, 2, 1], 2: [1, 2, 1, 1], 3: [1, 1, 2, 2, 1]}
for n in (1, 2, 3):
    x = [Input(SHAPES[n])]
    base = dict(filters=4, kernel_size=3, input_size=4)
    forms = [dict(base, strides=_full[n], padding="SAME"),  # TF's full form
             dict(base, strides=2, padding="Same"), dict(base, padding="valid"),
             dict(base, padding="Valid"), dict(base, padding=1),
             dict(base, padding=[1] * n), dict(base, padding=[(1, 0)] * n),
             dict(base, dilations=[1] + [2] * n + [1], padding="SAME")]
    if n == 1:
        forms += [dict(base, strides=[1, 2]), dict(base, dilations=[1, 2]),  # Note's 2-D form
                  dict(base, padding=(2, 1))]  # a bare (left, right) pair
    if n == 2:
        forms += [dict(base, padding=[(1, 2), 0])]
    CASES += grid(f"conv{n}d", forms, x, dtypes=F32)
    CASES += grid(f"conv{n}d", [dict(base, padding="SAME")], x,
                  call_kwargs=[{"dilations": [1] + [2] * n + [1]}], dtypes=F32)
    CASES += grid(f"conv{n}d_transpose", [dict(base, strides=_full[n], padding="same"),
                                          dict(base, strides=2, padding="valid")], x,
                  dtypes=F32)
    if n == 1:
        CASES += grid("conv1d_transpose", [dict(base, strides=[1, 2], padding="SAME")], x,
                      dtypes=F32)
for n in (1, 2):
    x = [Input(SHAPES[n])]
    CASES += grid(f"depthwise_conv{n}d", [dict(kernel_size=3, input_size=4,
                                               strides=_full[n] if n == 1 else [1, 2, 2, 1],
                                               padding="same"),
                                          dict(kernel_size=3, input_size=4, padding=1)],
                  x, dtypes=F32)
    CASES += grid(f"separable_conv{n}d", [dict(filters=6, kernel_size=3, input_size=4,
                                               strides=_full[n] if n == 1 else [1, 2, 2, 1],
                                               padding="valid")], x, dtypes=F32)

# 16-bit layers given float32 inputs: their outputs stay in the layer's dtype.
_f32 = dict(given="float32")
HALF = ("float16", "bfloat16")
CASES += grid("dense", [dict(output_size=5, input_size=4)], [Input((3, 4), **_f32)],
              dtypes=HALF)
CASES += grid("conv2d", [dict(filters=4, kernel_size=3, input_size=4)],
              [Input(SHAPES[2], **_f32)], dtypes=HALF)
CASES += grid("layer_norm", [dict(input_size=6)], [Input((3, 6), **_f32)], dtypes=HALF)
CASES += grid("LSTM", [dict(output_size=4, input_size=3, return_sequence=True)],
              [Input((2, 5, 3), **_f32)], dtypes=HALF)
CASES += grid("TransformerEncoderLayer", [dict(B, norm_first=True), B],
              [Input((2, 8, 32), name="src", **_f32)],
              call_kwargs=[{"inputs": ("src",)}], dtypes=HALF)
CASES += grid("TransformerDecoderLayer", [dict(B, norm_first=True)],
              [Input((2, 6, 32), name="tgt", **_f32), Input((2, 8, 32), name="memory")],
              call_kwargs=[{"inputs": ("tgt", "memory")}], dtypes=HALF)

# Attention dropout at its bounds (0 and 1 excluded are contracts: conformance/contracts.py):
# no dropout, and a rate just inside 1 (most weights dropped, the rest scaled by 1 / 0.05),
# checked numerically in training with the masks mlxnote drew.
_x8 = Input((2, 5, 8), name="x")
for rate in (0.0, 0.95):
    CASES += grid("multihead_attention", [dict(n_head=2, input_size=8, dropout=rate)], [_x8],
                  call_kwargs=[{"inputs": ("x",)}], dtypes=("float32", "bfloat16"))
    CASES += grid("talking_heads_attention", [dict(dropout_rate=rate)],
                  [Input((2, 5, 3, 4), name="query_tensor"),
                   Input((2, 6, 3, 4), name="key_tensor"),
                   Input((2, 6, 3, 4), name="value_tensor")], dtypes=("float32",))
# FAVOR's uniform randomizer drawing from the layer's seed (the features are weights: the
# reference reads them; contracts.py checks the seed itself).
CASES += grid("FAVOR_attention", [dict(key_dim=4, m=6, orthonormal=False, redraw=False,
                                       randomizer=Fn("uniform_key_randomizer"), seed=3)],
              [Input((2, 4, 6), name="keys"), Input((2, 3, 6), name="values"),
               Input((2, 4, 5), name="queries")], dtypes=("float32",))

# data_format's other names: Keras's 'channels_last'/'channels_first'.
for n in (1, 2):
    last, first = SHAPES[n], (SHAPES[n][0], SHAPES[n][-1], *SHAPES[n][1:-1])
    CASES += grid(f"conv{n}d", [dict(filters=4, kernel_size=3, input_size=4,
                                     data_format="channels_last")], [Input(last)], dtypes=F32)
    CASES += grid(f"conv{n}d", [dict(filters=4, kernel_size=3, input_size=4,
                                     data_format="channels_first")], [Input(first)],
                  dtypes=F32)
