"""Conv family: every documented argument and value of the ten conv layers, in float32,
float16 and bfloat16, outputs and gradients, against TensorFlow (``reference/conv.py``).

Covered per layer: SAME (upper and lower case, asymmetric for stride > 1 and even
kernels), VALID and explicit padding; odd and even kernels; strides 1 to 3; dilations > 1
(in the constructor and per call, and with stride > 1); groups > 1 in 1-, 2- and 3-D;
both data formats; output_padding; bias on and off; activations (by name and callable);
initializers; trainable=False; lazy build.
"""

from __future__ import annotations

from ..case import Case, Expected, Fn, Input, LayerSpec, grid
from ..reference import conv as ref

SHAPES = {1: (2, 9, 4), 2: (2, 7, 6, 4), 3: (2, 5, 4, 6, 4)}
FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def _input(n):
    def inputs(kw):
        shape = SHAPES[n]
        if kw.get("data_format") in (FIRST[n], "NCHW"):
            shape = (shape[0], shape[-1], *shape[1:-1])
        return [Input(shape)]

    return inputs


def _k(n, *ks):
    """A per-dimension list from a few values (cycled)."""
    return [ks[i % len(ks)] for i in range(n)]


def conv_args(n):
    explicit = {1: (1, 3), 2: [1, (2, 0)], 3: ((1, 0), 2, (0, 1))}[n]
    return [
        dict(filters=5, kernel_size=3, input_size=4),
        dict(filters=5, kernel_size=3, padding="SAME", strides=2, activation="relu"),  # lazy
        dict(filters=4, kernel_size=2, input_size=4, padding="same", strides=3),
        dict(filters=6, kernel_size=3, input_size=4, padding="SAME", dilations=2),
        dict(filters=6, kernel_size=_k(n, 3, 2), input_size=4, groups=2, activation="tanh",
             padding="SAME"),
        dict(filters=4, kernel_size=_k(n, 2, 3), groups=4, strides=2),  # lazy, depthwise-like
        dict(filters=5, kernel_size=_k(n, 2, 3), input_size=4, padding=explicit,
             use_bias=False),
        dict(filters=5, kernel_size=3, input_size=4, padding=2, strides=_k(n, 1, 2)),
        dict(filters=5, kernel_size=3, input_size=4, data_format=FIRST[n], padding="SAME",
             strides=2, activation="softmax"),
        dict(filters=6, kernel_size=3, data_format=FIRST[n], groups=2),  # lazy, channels first
        dict(filters=5, kernel_size=2, input_size=4, strides=2, dilations=2, padding="SAME"),
        dict(filters=5, kernel_size=3, input_size=4, weight_initializer="He",
             bias_initializer="normal", activation=Fn("square"), trainable=False),
    ]


def transpose_args(n):
    return [
        dict(filters=5, kernel_size=3, input_size=4),
        dict(filters=5, kernel_size=3, strides=2, padding="SAME", activation="relu"),  # lazy
        dict(filters=4, kernel_size=2, input_size=4, strides=2, padding="same"),
        dict(filters=4, kernel_size=3, input_size=4, strides=2, padding="VALID",
             output_padding=1),
        dict(filters=4, kernel_size=_k(n, 4, 3), input_size=4, strides=3, padding="SAME",
             output_padding=_k(n, 2, 1)),
        dict(filters=4, kernel_size=_k(n, 1, 2), input_size=4, strides=3),
        # SAME with the kernel shorter than the stride: the output is longer than the
        # full transposed convolution (TF crops nothing and pads the end)
        dict(filters=4, kernel_size=_k(n, 1, 2), input_size=4, strides=3, padding="SAME"),
        dict(filters=4, kernel_size=3, input_size=4, dilations=2, padding="SAME"),
        dict(filters=3, kernel_size=2, input_size=4, dilations=_k(n, 2, 3), padding="VALID"),
        dict(filters=5, kernel_size=3, data_format=FIRST[n], strides=2, padding="SAME",
             use_bias=False),  # lazy, channels first
        dict(filters=5, kernel_size=3, input_size=4, weight_initializer="Lecun",
             bias_initializer="uniform", activation="sigmoid", trainable=False),
    ]


def depthwise_args(n, separable=False):
    f = dict(filters=6) if separable else {}
    explicit = {1: (2, 1), 2: [1, (0, 2)]}[n]
    return [
        dict(**f, kernel_size=3, depth_multiplier=2, input_size=4),
        dict(**f, kernel_size=3, strides=2, padding="SAME", activation="relu"),  # lazy
        dict(**f, kernel_size=2, depth_multiplier=3, input_size=4, padding="same", strides=3),
        dict(**f, kernel_size=3, depth_multiplier=2, input_size=4, padding="SAME", dilations=2),
        dict(**f, kernel_size=_k(n, 2, 3), input_size=4, padding=explicit, use_bias=False),
        dict(**f, kernel_size=3, depth_multiplier=2, input_size=4, data_format=FIRST[n],
             padding="SAME", strides=2, activation="tanh"),
        dict(**f, kernel_size=2, input_size=4, strides=2, dilations=2, padding="SAME"),
        dict(**f, kernel_size=3, depth_multiplier=2, input_size=4, weight_initializer="He",
             bias_initializer="normal", activation=Fn("square"), trainable=False),
    ] + ([dict(**f, kernel_size=3, input_size=4, data_format="NHWC", dilations=[1, 2])]
         if n == 1 else [])


DILATION_CALL = [{}, {"dilations": 2}]
CASES: list[Case] = []
for n in (1, 2, 3):
    CASES += grid(f"conv{n}d", conv_args(n), _input(n), smoke=2)
    CASES += grid(f"conv{n}d", [dict(filters=5, kernel_size=3, input_size=4, dilations=3,
                                    padding="SAME")],
                  _input(n), call_kwargs=DILATION_CALL[1:])
    # 1x1 kernels: the plain-GEMM formulation (stride 1), and strided, which must not take it
    CASES += grid(f"conv{n}d", [dict(filters=5, kernel_size=1, input_size=4),
                                dict(filters=5, kernel_size=1, input_size=4, strides=2)],
                  _input(n), dtypes=("float32",))
    CASES += grid(f"conv{n}d_transpose", transpose_args(n), _input(n), smoke=2)
    CASES += grid(f"conv{n}d_transpose", [dict(filters=5, kernel_size=3, input_size=4)],
                  _input(n), call_kwargs=DILATION_CALL[1:])
for n in (1, 2):
    for kind, sep in (("depthwise", False), ("separable", True)):
        CASES += grid(f"{kind}_conv{n}d", depthwise_args(n, sep), _input(n), smoke=1)
        CASES += grid(f"{kind}_conv{n}d", [dict(**(dict(filters=6) if sep else {}),
                                                kernel_size=3, input_size=4)],
                      _input(n), call_kwargs=DILATION_CALL[1:])

_COMMON = ["kernel_size", "input_size", "strides", "padding", "weight_initializer",
           "bias_initializer", "activation", "data_format", "dilations", "use_bias",
           "trainable", "dtype"]
_CALL = ["data", "dilations"]
SPECS = []
for n in (1, 2, 3):
    SPECS.append(LayerSpec(f"conv{n}d", ["filters", *_COMMON, "groups"], _CALL,
                           reference=ref.conv(n)))
    SPECS.append(LayerSpec(f"conv{n}d_transpose", ["filters", *_COMMON, "output_padding"],
                           _CALL, reference=ref.conv_transpose(n)))
for n in (1, 2):
    SPECS.append(LayerSpec(f"depthwise_conv{n}d", ["depth_multiplier", *_COMMON], _CALL,
                           reference=ref.depthwise(n)))
    SPECS.append(LayerSpec(f"separable_conv{n}d", ["filters", "depth_multiplier", *_COMMON],
                           _CALL, reference=ref.depthwise(n, separable=True)))


EXPECTED = [
    Expected(
        "conv3d_transpose", kwargs=dict(kernel_size=[1, 2, 1], strides=3, padding="SAME"),
        reason="TensorFlow's gradient is wrong here: tf.nn.conv3d_transpose's input gradient "
        "(SAME, a kernel shorter than the stride on two axes) is not the adjoint of its own "
        "forward (max abs difference 16.6 against 10.7 for the gradient built from the "
        "forward on basis vectors, in float64). Our forward matches TF's, and our gradient "
        "is the adjoint of our forward (contracts.py: 'conv3d_transpose: the input gradient "
        "is the adjoint of the forward'); 1-D and 2-D pass against TF.",
        checks=("grad:data",)),
]
