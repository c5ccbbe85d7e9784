"""Property-based tests over every documented layer (issue 13, "Also deliver").

For each of the 32 layers, hypothesis draws

* valid arguments and inputs (every documented argument, lazy and eager builds, the three
  dtypes, batches of 0): the call gives outputs of the documented shape, in the layer's
  dtype, with finite values;
* one bad argument on top of valid ones: the constructor raises a ValueError or TypeError
  reading ``"<layer>: argument '<arg>' got ..."`` (never another exception, never later);
* a bad call of a valid layer (wrong ranks, sizes, dtypes, masks, states, call keywords):
  the same, naming the call's argument.

Sizes stay small in this process; bad sizes in-process are at least 2^31 (refused by the
argument checks before anything is allocated). Huge sizes that MLX would have to allocate
(weights and outputs far beyond memory) run in a subprocess (``test_huge_sizes``): a crash
fails that test, not pytest.

Seeded (``derandomize=True``, no example database): ``make test`` runs the same examples
every time, ``MLXNOTE_FUZZ_EXAMPLES`` per layer and property (default 100: about half a
minute in all on 2 cores, the huge sizes 50 examples in a few seconds); ``make fuzz`` runs
2000 (about ten minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from mlxnote import nn

EXAMPLES = int(os.environ.get("MLXNOTE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])

# -- shared strategies ----------------------------------------------------------------------
DTYPES = st.sampled_from(["float32", "float16", "bfloat16"])
INITS = st.sampled_from(["Xavier", "Xavier_normal", "He", "He_uniform", "Lecun",
                         "Lecun_uniform", "zeros", "ones", "normal", "uniform", "glorot_uniform",
                         ["normal", 0.0, 0.2], ["uniform", -0.1, 0.1],
                         ["truncated_normal", 0.1], ["VarianceScaling", 1.0, "fan_in", "uniform"]])
MATRIX_INITS = st.one_of(INITS, st.sampled_from(["Orthogonal", ["Orthogonal", 0.5]]))
ACTS = st.sampled_from([None, "relu", "tanh", "sigmoid", "gelu", "linear", "elu", "softplus",
                        "swish", "selu", "relu6", "softsign", ["leaky_relu", 0.1],
                        ["gelu", True]])
SMALL = st.integers(1, 4)
#: ints MLX cannot hold as a size: refused by the argument checks, nothing is allocated.
#: (Every huge size below is at least 2^31, or makes an array of 2^36 bytes or more: never
#: one this machine could hold, so nothing is ever allocated.)
HUGE_INT = st.one_of(st.integers(2**31, 2**33), st.just(2**64), st.just(10**30))
NOT_INT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                    st.booleans(), st.just([2]), st.just({}), st.just(np.float32(2.0)))
NOT_BOOL = st.one_of(st.integers(0, 2), st.text(max_size=3), st.none(), st.just([True]),
                     st.floats(0, 1))
NOT_INIT = st.one_of(st.text(min_size=1, max_size=6).map(lambda s: "nope_" + s),
                     st.integers(), st.floats(), st.booleans(), st.just([]),
                     st.just(["normal", "a", 1]), st.just(["uniform", 0.0]),
                     st.just(["VarianceScaling", 1.0, "fan_sideways", "uniform"]),
                     st.just({"a": 1}), st.just(["nope", 1.0]))
NOT_ACT = st.one_of(st.text(min_size=1, max_size=6).map(lambda s: "nope_" + s),
                    st.integers(), st.floats(), st.booleans(), st.just(["leaky_relu"]),
                    st.just(["gelu", 1.0, 2.0]), st.just({"a": 1}), st.just(["nope", 1]))
NOT_DTYPE = st.one_of(st.sampled_from(["int8", "float64", "int32", "float", "", "bool",
                                       "complex64", "FLOAT32"]),
                      st.integers(), st.none(), st.just(["float32"]), st.just(np.int32))
NOT_RATE = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0),
                     st.just(float("nan")), st.text(max_size=3), st.none(), st.booleans())


def size_bad(low: int = 1, optional: bool = False) -> st.SearchStrategy:
    """Bad values of an int size argument (``>= low``; None allowed when ``optional``)."""
    bad = [st.integers(max_value=low - 1), HUGE_INT, NOT_INT]
    if not optional:
        bad.append(st.none())
    return st.one_of(*bad)


def ints_bad(n: int, low: int = 1) -> st.SearchStrategy:
    """Bad values of an ``int or n ints`` argument."""
    return st.one_of(st.integers(max_value=low - 1), HUGE_INT,
                     st.lists(st.integers(low, 3), min_size=n + 3, max_size=n + 4),
                     st.lists(st.integers(max_value=low - 1), min_size=n, max_size=n),
                     st.floats(), st.text(max_size=3), st.none(), st.booleans(),
                     st.just([1.5] * n), st.just(["1"] * n))


COMMON_BAD = {"dtype": NOT_DTYPE, "trainable": NOT_BOOL, "use_bias": NOT_BOOL,
              "activation": NOT_ACT, "weight_initializer": NOT_INIT,
              "bias_initializer": NOT_INIT, "input_size": size_bad(optional=True)}


# -- cases ----------------------------------------------------------------------------------
@dataclass
class Case:
    """One valid configuration: constructor keywords, call inputs (shapes of seeded normal
    arrays, or arrays) and keywords, the documented output shapes (of the output leaves)."""

    kwargs: dict
    inputs: list
    shapes: list[tuple[int, ...]]
    call: dict = field(default_factory=dict)


class Spec:
    """How to fuzz one layer: a strategy of valid cases, bad values per argument (applied
    to a valid case), and a function drawing a bad call for a valid case:
    ``bad_call(draw, case) -> (inputs, call keywords, argument named)``."""

    def __init__(self, name: str, valid: Callable[[], st.SearchStrategy[Case]],
                 bad_args: dict[str, st.SearchStrategy],
                 bad_call: Callable[[Any, Case], tuple[list, dict, str]] | None = None):
        self.name, self.valid, self.bad_args, self.bad_call = name, valid, bad_args, bad_call

    @property
    def layer(self):
        return getattr(nn, self.name)

    def __repr__(self) -> str:
        return self.name


def materialize(spec: list, seed: int) -> list:
    rng = np.random.default_rng(seed)

    def one(s):
        if isinstance(s, tuple) and all(isinstance(d, int) for d in s):
            return mx.array(rng.standard_normal(s).astype(np.float32))
        if isinstance(s, (list, tuple)):
            return type(s)(one(v) for v in s)
        return s
    return [one(s) for s in spec]


def leaves(out: Any) -> list[mx.array]:
    if isinstance(out, mx.array):
        return [out]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in leaves(o)]
    raise AssertionError(f"an output of type {type(out).__name__}")


def common(draw, *, trainable=True, bias=True, act=True, inits=True, dtype=True,
           matrix_rank=2) -> dict:
    kw = {}
    if dtype:
        kw["dtype"] = draw(DTYPES)
    if trainable:
        kw["trainable"] = draw(st.booleans())
    if bias:
        kw["use_bias"] = draw(st.booleans())
    if act:
        kw["activation"] = draw(ACTS)
    if inits:
        kw["weight_initializer"] = draw(MATRIX_INITS if matrix_rank >= 2 else INITS)
        kw["bias_initializer"] = draw(INITS)
    return kw


BATCH = st.integers(0, 3)


# -- core -----------------------------------------------------------------------------------
@st.composite
def dense_case(draw):
    i, o = draw(SMALL), draw(SMALL)
    lead = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2))
    kw = dict(output_size=o, input_size=draw(st.sampled_from([None, i])), **common(draw),
              name=draw(st.sampled_from([None, "proj"])))
    return Case(kw, [(*lead, i)], [(*lead, o)])


def dense_bad_call(draw, case):
    i = case.inputs[0][-1]
    return _flat(draw, [([(2, i + 1)], {}, "data"), ([()], {}, "data"),
                        ([np.full((2, i), "a")], {}, "data"),
                        ([mx.zeros((2, i), mx.complex64)], {}, "data")])


def _flat(draw, options):
    """Draw one of ``options`` = [(inputs, call keywords, arg), ...]."""
    return draw(st.sampled_from(options))


@st.composite
def identity_case(draw):
    c = draw(SMALL)
    size = draw(st.sampled_from([None, c]))
    shape = (*draw(st.lists(st.integers(0, 3), max_size=2)), c)
    return Case(dict(input_size=size), [shape], [shape])


@st.composite
def random_case(draw, name):
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))
    noise = draw(st.sampled_from([None, "ones", "same", "none"]))
    ns = {None: None, "ones": [1] * len(shape), "same": list(shape),
          "none": [None] * len(shape)}[noise]
    if ns is not None and 0 in ns:
        ns = None
    arg = "rate" if name == "dropout" else "drop_path_rate"
    kw = {arg: rate, "noise_shape": ns, "seed": draw(st.sampled_from([None, 0, 7, 2**63])),
          "dtype": draw(DTYPES)}
    call = {draw(st.sampled_from(["train_flag", "training"])): draw(
        st.sampled_from([None, True, False]))}
    return Case(kw, [shape], [shape], call)


def random_bad_call(draw, case):
    shape = case.inputs[0]
    opts = [([np.full(shape, "a")], {}, "data"), ([shape], {"train_flag": "yes"}, "train_flag"),
            ([shape], {"training": 1}, "training")]
    rate = case.kwargs.get("rate", case.kwargs.get("drop_path_rate"))
    if case.kwargs["noise_shape"] is not None and rate > 0:
        opts.append(([shape + (2,)], {"train_flag": True}, "noise_shape"))
    return _flat(draw, opts)


@st.composite
def zeropadding_case(draw, n):
    c = draw(SMALL)
    pad_val = st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)))
    pad = draw(st.one_of(st.none(), st.integers(0, 2),
                         st.lists(pad_val, min_size=n, max_size=n).map(tuple),
                         *([st.tuples(st.integers(0, 2), st.integers(0, 2))] if n == 1 else [])))
    if n == 3 and pad is None:
        pad = (1, 1, 1)
    call_pad = draw(st.one_of(st.none(), st.integers(0, 2)))
    spatial = tuple(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    shape = (draw(BATCH), *spatial, c)
    use = call_pad if call_pad is not None else pad
    if use is None:
        use = 1
    pairs = _pairs(use, n)
    out = (shape[0], *(s + lo + hi for s, (lo, hi) in zip(spatial, pairs)), c)
    return Case(dict(input_size=draw(st.sampled_from([None, c])), padding=pad), [shape],
                [out], {} if call_pad is None else {"padding": call_pad})


def _pairs(p, n):
    if isinstance(p, int):
        return [(p, p)] * n
    if n == 1 and len(p) == 2 and all(isinstance(v, int) for v in p):
        return [tuple(p)]
    return [(v, v) if isinstance(v, int) else tuple(v) for v in p]


def zeropadding_bad_call(draw, case):
    shape = case.inputs[0]
    n = len(shape) - 2
    opts = [([shape[1:]], {}, "data"), ([np.full(shape, "a")], {}, "data"),
            ([shape], {"padding": -1}, "padding"), ([shape], {"padding": "1"}, "padding"),
            ([shape], {"padding": [1] * (n + 2)}, "padding"),
            ([shape], {"padding": 2**31}, "padding")]
    if case.kwargs["input_size"] is not None:
        opts.append(([(*shape[:-1], shape[-1] + 1)], {}, "data"))
    return _flat(draw, opts)


PAD_BAD = st.one_of(st.integers(max_value=-1), st.text(max_size=3), st.floats(),
                    st.just([1, 2, 3, 4, 5]), st.just([-1, 1]), HUGE_INT, st.booleans())


# -- conv -----------------------------------------------------------------------------------
CONV = {  # name: (rank, kind)
    "conv1d": (1, "conv"), "conv2d": (2, "conv"), "conv3d": (3, "conv"),
    "conv1d_transpose": (1, "transpose"), "conv2d_transpose": (2, "transpose"),
    "conv3d_transpose": (3, "transpose"), "depthwise_conv1d": (1, "depthwise"),
    "depthwise_conv2d": (2, "depthwise"), "separable_conv1d": (1, "separable"),
    "separable_conv2d": (2, "separable")}
FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}


def conv_len(L, k, s, d, pad):
    keff = (k - 1) * d + 1
    if pad == "SAME":
        return -(-L // s)
    lo, hi = (0, 0) if pad == "VALID" else pad
    return (L + lo + hi - keff) // s + 1


def tconv_len(L, k, s, d, pad, op):
    keff = (k - 1) * d + 1
    if op is None:
        return L * s + max(keff - s, 0) if pad == "VALID" else L * s
    p = keff // 2 if pad == "SAME" else 0
    return (L - 1) * s + keff - 2 * p + op


@st.composite
def conv_case(draw, name):
    n, kind = CONV[name]
    k = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    s = draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
    if kind == "transpose" and any(v > 1 for v in s):
        d = [1] * n
    else:
        d = draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
    kw: dict[str, Any] = {}
    if kind != "depthwise":
        kw["filters"] = draw(SMALL)
    groups = 1
    if kind == "conv":
        groups = draw(st.sampled_from([1, 2]))
        kw["filters"] = kw["filters"] * groups
        kw["groups"] = groups
    c = draw(SMALL) * groups
    if kind in ("depthwise", "separable"):
        kw["depth_multiplier"] = draw(st.integers(1, 2))
    if kind == "transpose":
        pad = draw(st.sampled_from(["SAME", "VALID"]))
        kw["padding"] = draw(st.sampled_from([pad, pad.lower()]))
        op = draw(st.one_of(st.none(), st.just([draw(st.integers(0, v - 1)) for v in s])))
        kw["output_padding"] = op
    else:
        pad = draw(st.one_of(st.sampled_from(["SAME", "VALID", "same", "valid"]),
                             st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                      min_size=n, max_size=n)))
        kw["padding"] = pad
        pad = pad.upper() if isinstance(pad, str) else pad
    spatial = []
    for i in range(n):
        keff = (k[i] - 1) * d[i] + 1
        if isinstance(pad, list):
            low = max(1, keff - pad[i][0] - pad[i][1])
        elif pad == "VALID" and kind != "transpose":
            low = keff
        else:
            low = 1
        spatial.append(draw(st.integers(low, low + 3)))
    if kind == "transpose":
        op = kw["output_padding"]
        out_sp = [tconv_len(L, k[i], s[i], d[i], pad, None if op is None else op[i])
                  for i, L in enumerate(spatial)]
        if any(v < 1 for v in out_sp):
            kw["output_padding"], out_sp = None, [tconv_len(L, k[i], s[i], d[i], pad, None)
                                                  for i, L in enumerate(spatial)]
    else:
        out_sp = [conv_len(L, k[i], s[i], d[i], pad if isinstance(pad, str) else pad[i])
                  for i, L in enumerate(spatial)]
    fmt = draw(st.sampled_from(FORMATS[n]))
    cout = c * kw["depth_multiplier"] if kind == "depthwise" else kw["filters"]
    kw.update(kernel_size=k if draw(st.booleans()) or len(set(k)) > 1 else k[0],
              strides=s if draw(st.booleans()) or len(set(s)) > 1 else s[0],
              dilations=None if all(v == 1 for v in d) and draw(st.booleans()) else d,
              data_format=fmt, input_size=draw(st.sampled_from([None, c])),
              **common(draw, matrix_rank=n + 2))
    b = draw(BATCH)
    first = fmt[1] == "C"
    shape = (b, c, *spatial) if first else (b, *spatial, c)
    out = (b, cout, *out_sp) if first else (b, *out_sp, cout)
    call = {}
    if kind != "transpose" and draw(st.booleans()):
        call["dilations"] = kw["dilations"]  # the same dilations, at call time
    return Case(kw, [shape], [out], call)


def conv_bad_call(draw, case):
    shape = case.inputs[0]
    n = len(shape) - 2
    first = case.kwargs["data_format"][1] == "C"
    cax = 1 if first else -1
    wrong_c = list(shape)
    wrong_c[cax] += 1
    opts = [([shape[1:]], {}, "data"), ([(*shape, 1)], {}, "data"),
            ([np.full(shape, "a")], {}, "data"),
            ([mx.zeros(shape, mx.complex64)], {}, "data"),
            ([shape], {"dilations": 0}, "dilations"), ([shape], {"dilations": "2"}, "dilations"),
            ([shape], {"dilations": [1] * (n + 3)}, "dilations")]
    if case.kwargs["input_size"] is not None:
        opts.append(([tuple(wrong_c)], {}, "data"))
    return _flat(draw, opts)


def conv_bad_args(name):
    n, kind = CONV[name]
    bad = {**COMMON_BAD, "kernel_size": ints_bad(n), "strides": ints_bad(n),
           "data_format": st.one_of(st.sampled_from(["NHWDC", "", "nhwc", "channels_middle"]),
                                    st.just([FORMATS[n][0]]), st.integers(), st.none()),
           "dilations": st.one_of(st.integers(max_value=0), HUGE_INT, st.text(max_size=2),
                                  st.floats(), st.just([0] * n))}
    bad["bias_initializer"] = st.one_of(NOT_INIT, st.just("Orthogonal"))
    if kind != "depthwise":
        bad["filters"] = size_bad()
    if kind == "conv":
        bad["groups"] = st.one_of(size_bad(), st.just(7))  # 7 divides no drawn filters
    if kind in ("depthwise", "separable"):
        bad["depth_multiplier"] = size_bad()
    if kind == "transpose":
        bad["padding"] = st.one_of(st.sampled_from(["FULL", "", "causal"]), st.integers(),
                                   st.just([1] * n))
        bad["output_padding"] = st.one_of(st.integers(max_value=-1), st.just(5),
                                          st.text(max_size=2), st.floats())
    else:
        bad["padding"] = st.one_of(st.sampled_from(["FULL", "", "causal"]), PAD_BAD)
    return bad


# -- norms ----------------------------------------------------------------------------------
@st.composite
def norm_case(draw, name):
    rank = draw(st.integers(2, 4))
    shape = [draw(st.integers(1, 3)) for _ in range(rank)]
    shape[0] = draw(BATCH)
    kw: dict[str, Any] = dict(dtype=draw(DTYPES), center=draw(st.booleans()),
                              scale=draw(st.booleans()), epsilon=draw(
                                  st.sampled_from([1e-3, 1e-5, 0.1])),
                              beta_initializer=draw(INITS), gamma_initializer=draw(INITS))
    call: dict = {}
    if name == "group_norm":
        axis = draw(st.integers(1, rank - 1))
        c = shape[axis] = draw(st.sampled_from([2, 4]))
        kw.update(groups=draw(st.sampled_from([1, 2, -1])), axis=draw(st.sampled_from(
            [axis, axis - rank])), input_size=draw(st.sampled_from([None, c])))
        if draw(st.booleans()):
            call["mask"] = (mx.array(np.random.default_rng(0).random(shape) > 0.3)
                            if 0 not in shape else None)
    else:
        axes = draw(st.lists(st.integers(1 if name == "batch_norm" else 0, rank - 1),
                             min_size=1, max_size=2, unique=True))
        axis = axes[0] if len(axes) == 1 and draw(st.booleans()) else axes
        sizes = [shape[a] for a in axes]
        given = sizes[0] if isinstance(axis, int) else sizes
        kw.update(axis=axis, momentum=draw(st.sampled_from([0.0, 0.5, 0.99, 1.0])),
                  input_size=None if 0 in sizes else draw(st.sampled_from([None, given])))
        if name == "batch_norm":
            kw.update(moving_mean_initializer=draw(INITS), moving_variance_initializer=draw(
                st.sampled_from(["ones", ["uniform", 0.5, 1.5]])),
                trainable=draw(st.booleans()), synchronized=draw(st.booleans()))
            call["train_flag"] = draw(st.sampled_from([None, True, False]))
            if shape[0] == 1 and call["train_flag"] is not False:
                shape[0] = 2  # the batch statistics of a single sample are degenerate
        else:
            kw["rms_scaling"] = draw(st.booleans())
    return Case(kw, [tuple(shape)], [tuple(shape)], call)


def norm_bad_call(draw, case):
    shape = case.inputs[0]
    opts = [([np.full(shape, "a")], {}, "data"), ([()], {}, "data")]
    if "mask" in case.call or case.kwargs.get("groups") is not None:
        opts.append(([shape], {"mask": mx.zeros((*shape, 3))}, "mask"))
        opts.append(([shape], {"mask": np.full(shape, "a")}, "mask"))
    if "train_flag" in case.call:
        opts.append(([shape], {"train_flag": "yes"}, "train_flag"))
    if case.kwargs["input_size"] is not None:
        axis = case.kwargs["axis"]
        a = axis if isinstance(axis, int) else axis[0]
        wrong = list(shape)
        wrong[a] += 1
        opts.append(([tuple(wrong)], {}, "data"))
    return _flat(draw, opts)


def norm_bad_args(name):
    bad = {"dtype": NOT_DTYPE, "center": NOT_BOOL, "scale": NOT_BOOL,
           "epsilon": st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")),
                                st.text(max_size=2), st.none(), st.just(float("inf"))),
           "beta_initializer": st.one_of(NOT_INIT, st.just("Orthogonal")),
           "gamma_initializer": st.one_of(NOT_INIT, st.just("Orthogonal")),
           "input_size": st.one_of(st.integers(max_value=0), HUGE_INT, st.text(max_size=2),
                                   st.floats())}
    if name == "group_norm":
        bad.update(groups=st.one_of(st.integers(max_value=-2), st.just(0), HUGE_INT,
                                    st.text(max_size=2), st.floats(), st.none()),
                   axis=st.one_of(st.just(0), st.text(max_size=2), st.floats(), st.none(),
                                  st.just([1])),
                   mask=st.just(np.array(["a"])))
    else:
        bad.update(axis=st.one_of(st.text(max_size=2), st.floats(), st.none(), st.just([]),
                                  st.just([1, 1]), st.just(["1"])),
                   momentum=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0001),
                                      st.text(max_size=2), st.none()))
        if name == "batch_norm":
            bad.update(trainable=NOT_BOOL, synchronized=NOT_BOOL,
                       moving_mean_initializer=NOT_INIT,
                       moving_variance_initializer=st.one_of(NOT_INIT, st.just("Orthogonal")))
        else:
            bad["rms_scaling"] = NOT_BOOL
    return bad


# -- recurrent ------------------------------------------------------------------------------
KIND = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm", "RNNCell": "rnn", "GRUCell": "gru",
        "LSTMCell": "lstm"}


@st.composite
def recurrent_case(draw, name):
    i, h, b = draw(SMALL), draw(SMALL), draw(BATCH)
    kw = dict(**common(draw, act=False), activation=draw(st.sampled_from(
        [None, "tanh", "relu", "sigmoid", "softsign"])))
    if KIND[name] != "rnn":
        kw["recurrent_activation"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid", "tanh"]))
    lstm = KIND[name] == "lstm"
    if name.endswith("Cell"):
        kw["weight_shape"] = [i, h]
        state = draw(st.sampled_from(["none", "h", "list"] + (["hc"] if lstm else [])))
        st_in = {"none": None, "h": (b, h), "list": [(b, h)], "hc": ((b, h), (b, h))}[state]
        shapes = {"RNNCell": [(b, h)], "GRUCell": [(b, h), (b, h)],
                  "LSTMCell": [(b, h), (b, h), (b, h)]}[name]
        return Case(kw, [(b, i), st_in], shapes)
    t = draw(st.integers(1, 4))
    seq = draw(st.booleans())
    kw.update(output_size=h, input_size=draw(st.sampled_from([None, i])), return_sequence=seq)
    state = draw(st.sampled_from(["none", "h"] + (["hc"] if lstm else [])))
    call = {}
    if state != "none":
        call["initial_state"] = (mx.zeros((b, h)) if state == "h" else
                                 (mx.zeros((b, h)), mx.ones((b, h))))
    return Case(kw, [(b, t, i)], [(b, t, h) if seq else (b, h)], call)


def recurrent_bad_call(draw, case):
    shape = case.inputs[0]
    b = shape[0]
    h = case.shapes[0][-1]
    if len(shape) == 2:  # a cell
        return _flat(draw, [([(b, shape[1], 1), None], {}, "data"),
                            ([(b, shape[1] + 1), None], {}, "data"),
                            ([np.full(shape, "a"), None], {}, "data"),
                            ([shape, (b + 1, h)], {}, "state"),
                            ([shape, [(b, h)] * 3], {}, "state")])
    return _flat(draw, [([shape[1:]], {}, "data"), ([(b, 0, shape[2])], {}, "data"),
                        ([np.full(shape, "a")], {}, "data"),
                        ([shape], {"initial_state": mx.zeros((b + 1, h))}, "initial_state"),
                        ([shape], {"initial_state": [mx.zeros((b, h))] * 3}, "initial_state")]
                 + ([([(b, 2, shape[2] + 1)], {}, "data")]
                    if case.kwargs["input_size"] is not None else []))


def recurrent_bad_args(name):
    bad = {**COMMON_BAD, "bias_initializer": st.one_of(NOT_INIT, st.just("Orthogonal"))}
    del bad["input_size"]
    if KIND[name] != "rnn":
        bad["recurrent_activation"] = NOT_ACT
    if name.endswith("Cell"):
        bad["weight_shape"] = st.one_of(st.integers(1, 3), st.just([0, 2]), st.just([2]),
                                        st.just([2, 2, 2]), st.just([2, 2**31]),
                                        st.just(["2", 2]), st.none())
    else:
        bad.update(output_size=size_bad(), input_size=size_bad(optional=True),
                   return_sequence=NOT_BOOL)
    return bad


# -- attention ------------------------------------------------------------------------------
@st.composite
def attention_case(draw):
    b, tq, tv, d, dv = draw(BATCH), draw(st.integers(0, 3)), draw(st.integers(0, 3)), \
        draw(SMALL), draw(SMALL)
    kw = dict(use_scale=draw(st.booleans()), score_mode=draw(st.sampled_from(["dot", "concat"])),
              dtype=draw(DTYPES))
    inputs: list = [(b, tq, d), (b, tv, dv)]
    if draw(st.booleans()):
        inputs.append((b, tv, d))
    elif dv != d:
        inputs[1] = (b, tv, d)
        dv = d
    call: dict = dict(use_causal_mask=draw(st.booleans()),
                      return_attention_scores=draw(st.booleans()))
    if draw(st.booleans()):
        rng = np.random.default_rng(1)
        call["mask"] = [draw(st.sampled_from([None, mx.array(rng.random((b, tq)) > 0.3)])),
                        draw(st.sampled_from([None, mx.array(rng.random((b, tv)) > 0.3)]))]
    shapes = [(b, tq, dv)] + ([(b, tq, tv)] if call["return_attention_scores"] else [])
    return Case(kw, inputs, shapes, call)


def attention_bad_call(draw, case):
    q, v, *k = case.inputs
    b, tq = q[:2]
    return _flat(draw, [([q[1:], v, *k], {}, "query"), ([q, (*v[:2], v[2], 1), *k], {}, "value"),
                        ([q, v, (*v[:2], q[2] + 1)], {}, "key"),
                        ([q, (v[0] + 1, *v[1:]), *k], {}, "value"),
                        ([q, v, *k], {"mask": mx.ones((2, 5))}, "mask"),
                        ([q, v, *k], {"mask": [mx.ones((b + 1, tq)), None]}, "mask"),
                        ([q, v, *k], {"use_causal_mask": "yes"}, "use_causal_mask"),
                        ([q, v, *k], {"return_attention_scores": 1}, "return_attention_scores")])


@st.composite
def mha_case(draw):
    h = draw(st.integers(1, 3))
    d = h * draw(st.integers(1, 3))
    b, tq, tk = draw(BATCH), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    kdim, vdim = draw(st.sampled_from([None, 2, d])), draw(st.sampled_from([None, 3, d]))
    kw = dict(n_head=h, input_size=draw(st.sampled_from([None, d])), kdim=kdim, vdim=vdim,
              dropout=draw(st.sampled_from([0.0, 0.3])), weight_initializer=draw(MATRIX_INITS),
              bias_initializer=draw(INITS), use_bias=draw(st.booleans()), dtype=draw(DTYPES))
    kd, vd = kdim or d, vdim or d
    if kw["input_size"] is None and kdim is None and vdim is None and draw(st.booleans()):
        inputs: list = [(b, tq, d)]
        tk = tq
    elif kd == vd:
        inputs = [(b, tq, d), (b, tk, kd)]
    else:
        inputs = [(b, tq, d), ((b, tk, kd), (b, tk, vd))]
    call: dict = {"train_flag": draw(st.sampled_from([None, True, False]))}
    mask = draw(st.sampled_from([None, "2d", "3d", "4d", "float", "big"]))
    rng = np.random.default_rng(2)
    if mask is not None:
        shape = {"2d": (tq, tk), "3d": (b, tq, tk), "4d": (b, 1, tq, tk), "float": (tq, tk),
                 "big": (tq + 2, tk + 1)}[mask]
        m = rng.random(shape) > 0.2
        call["mask"] = mx.array(np.where(m, 0.0, -1e4).astype(np.float32)) \
            if mask == "float" else mx.array(m)
    return Case(kw, inputs, [(b, tq, d), (b, h, tq, tk)], call)


def mha_bad_call(draw, case):
    x, *xa = case.inputs
    b, tq, d = x
    return _flat(draw, [([x[1:], *xa], {}, "x"), ([(b, tq, d + 1), *xa], {}, "x"),
                        ([x, (b + 1, 2, d)], {}, "xa"), ([x, [(b, 2, d)] * 3], {}, "xa"),
                        ([x, *xa], {"mask": mx.zeros((7, 7, 7))}, "mask"),
                        ([x, *xa], {"mask": mx.zeros((tq, tq), mx.int32)}, "mask"),
                        ([x, *xa], {"train_flag": "yes"}, "train_flag"),
                        ([np.full(x, "a"), *xa], {}, "x")])


@st.composite
def talking_case(draw):
    n, hd, hv = draw(st.integers(1, 3)), draw(SMALL), draw(SMALL)
    rank = draw(st.integers(4, 5))
    lead = rank - 2  # batch and attention axes
    qsh = [draw(st.integers(1, 3)) for _ in range(lead)]
    qsh[0] = draw(BATCH)
    axes_choice = draw(st.sampled_from(["default", "last", "neg"]))
    axes = {"default": None, "last": (lead - 1,), "neg": (-2,)}[axes_choice]
    norm_axes = (tuple(range(1, lead)) if axes is None else
                 tuple(sorted((rank - 1) + a if a < 0 else a for a in axes)))
    ksh = list(qsh)
    for a in norm_axes:
        ksh[a] = draw(st.integers(0, 3))
    kw = dict(qkv_rank=draw(st.sampled_from([None, rank])), attention_axes=axes,
              dropout_rate=draw(st.sampled_from([0.0, 0.4])), initializer=draw(MATRIX_INITS),
              dtype=draw(DTYPES), num_heads=draw(st.sampled_from([None, n])))
    batch = [a for a in range(lead) if a not in norm_axes]
    bs = [qsh[a] for a in batch]
    tq, tk = [qsh[a] for a in norm_axes], [ksh[a] for a in norm_axes]
    call: dict = {"train_flag": draw(st.sampled_from([None, True, False]))}
    if draw(st.booleans()):
        call["attention_mask"] = mx.array(
            np.random.default_rng(3).random((*bs, *tq, *tk)) > 0.3)
    out = list(qsh) + [n, hv]
    return Case(kw, [(*qsh, n, hd), (*ksh, n, hd), (*ksh, n, hv)],
                [tuple(out), (*bs, n, *tq, *tk)], call)


def talking_bad_call(draw, case):
    q, k, v = case.inputs
    return _flat(draw, [([q[-3:], k[-3:], v[-3:]], {}, "query_tensor"),
                        ([q, (*k[:-2], k[-2] + 1, k[-1]), v], {}, "key_tensor"),
                        ([q, k[:-1] + (k[-1] + 1,), v], {}, "key_tensor"),
                        ([q, k, v], {"attention_mask": mx.ones((9, 9, 9, 9, 9, 9, 9))},
                         "attention_mask"),
                        ([q, k, v], {"train_flag": "no"}, "train_flag")])


@st.composite
def favor_case(draw):
    kd, dv = draw(SMALL), draw(SMALL)
    orth = draw(st.booleans())
    m = draw(st.integers(1, kd if orth else 5))
    b, lk = draw(BATCH), draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    causal = draw(st.booleans())
    lq = lk if causal else draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    kw = dict(key_dim=kd, orthonormal=orth, causal=causal, m=m, redraw=draw(st.booleans()),
              f=draw(st.sampled_from([None, "relu", ["relu", "exponential"], ["softplus"]])),
              eps=draw(st.sampled_from([0.0, 1e-6])), kernel_eps=draw(st.sampled_from(
                  [1e-3, 0.1])), dtype=draw(DTYPES), seed=draw(st.sampled_from([None, 5])),
              chunk_size=draw(st.integers(1, 4)),
              h=draw(st.sampled_from([None, lambda x: 2.0])))
    if kw["f"] == ["relu", "exponential"]:
        kw["kernel_eps"] = 0.1
        if kw["dtype"] == "float16":  # exp(x @ W) overflows float16 past 11: not a defect
            kw["f"] = "relu"
    return Case(kw, [(b, kd, *lk), (b, dv, *lk), (b, kd, *lq)], [(b, dv, *lq)])


def favor_bad_call(draw, case):
    k, v, q = case.inputs
    return _flat(draw, [([k[:2], v, q], {}, "keys"),
                        ([(k[0], k[1] + 1, *k[2:]), v, q], {}, "keys"),
                        ([k, (v[0] + 1, *v[1:]), q], {}, "values"),
                        ([k, v, (q[0], q[1] + 1, *q[2:])], {}, "queries"),
                        ([np.full(k, "a"), v, q], {}, "keys")])


@st.composite
def linformer_case(draw):
    heads = draw(st.integers(1, 3))
    dh = draw(st.sampled_from([None, 2]))
    dim = heads * draw(st.integers(1, 2)) if dh is None else draw(SMALL)
    seq, k = draw(SMALL), draw(SMALL)
    b = draw(BATCH)
    kw = dict(dim=dim, seq_len=seq, k=k, heads=heads, dim_head=dh,
              one_kv_head=draw(st.booleans()), share_kv=draw(st.booleans()),
              dropout=draw(st.sampled_from([0.0, 0.3])), dtype=draw(DTYPES))
    call = {"train_flag": draw(st.sampled_from([None, True, False]))}
    if draw(st.booleans()):
        n = draw(st.integers(0, 3))
        return Case(kw, [(b, n, dim), (b, seq, dim)], [(b, n, dim)], call)
    return Case(kw, [(b, seq, dim)], [(b, seq, dim)], call)


def linformer_bad_call(draw, case):
    x, *ctx = case.inputs
    seq = case.kwargs["seq_len"]
    return _flat(draw, [([x[1:], *ctx], {}, "x"), ([(x[0], x[1], x[2] + 1), *ctx], {}, "x"),
                        ([(x[0], seq + 1, x[2])], {}, "x"),
                        ([x, (x[0], seq + 1, x[2])], {}, "context"),
                        ([x, *ctx], {"train_flag": 2}, "train_flag")])


@st.composite
def transformer_case(draw):
    nhead = draw(st.integers(1, 2))
    d = nhead * draw(st.integers(1, 3))
    b, s, t = draw(BATCH), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    kw = dict(d_model=d, nhead=nhead, num_encoder_layers=draw(st.integers(0, 2)),
              num_decoder_layers=draw(st.integers(0, 2)), dim_feedforward=draw(SMALL),
              dropout=draw(st.sampled_from([0.0, 0.2])),
              activation=draw(st.sampled_from(["relu", "gelu", None])),
              layer_norm_eps=draw(st.sampled_from([1e-5, 1e-3])), norm_first=draw(st.booleans()),
              bias=draw(st.booleans()), device=draw(st.sampled_from([None, "cpu"])),
              dtype=draw(DTYPES))
    call: dict = {"train_flag": draw(st.sampled_from([None, True, False])),
                  "tgt_is_causal": draw(st.sampled_from([None, True, False])),
                  "src_is_causal": draw(st.sampled_from([None, False]))}
    if t and draw(st.booleans()):
        call["tgt_mask"] = nn.Transformer.generate_square_subsequent_mask(t)
    if draw(st.booleans()):
        call["src_key_padding_mask"] = mx.array(np.random.default_rng(4).random((b, s)) > 0.8)
    return Case(kw, [(b, s, d), (b, t, d)], [(b, t, d)], call)


def transformer_bad_call(draw, case):
    src, tgt = case.inputs
    b, s, d = src
    return _flat(draw, [([src[1:], tgt], {}, "src"), ([src, (b + 1, *tgt[1:])], {}, "tgt"),
                        ([(b, s, d + 1), tgt], {}, "src"),
                        ([src, tgt], {"src_key_padding_mask": mx.zeros((b + 1, s), mx.bool_)},
                         "src_key_padding_mask"),
                        ([src, tgt], {"tgt_mask": mx.zeros((9, 9))}, "tgt_mask"),
                        ([src, tgt], {"memory_is_causal": "yes"}, "memory_is_causal"),
                        ([src, tgt], {"train_flag": "no"}, "train_flag")])


# -- the table ------------------------------------------------------------------------------
def random_bad_args(name):
    arg = "rate" if name == "dropout" else "drop_path_rate"
    return {arg: NOT_RATE, "seed": st.one_of(st.integers(max_value=-1), st.just(2**64),
                                              st.text(max_size=2), st.floats()),
            "noise_shape": st.one_of(st.integers(), st.just([0]), st.just(["a"]),
                                     st.text(max_size=2), st.just([1.5])),
            "dtype": NOT_DTYPE}


SPECS = [
    Spec("dense", dense_case, {**COMMON_BAD, "output_size": size_bad(),
                               "name": st.one_of(st.integers(), st.just(["a"]))}, dense_bad_call),
    Spec("identity", identity_case, {"input_size": size_bad(optional=True)},
         lambda draw, c: _flat(draw, [([(*c.inputs[0][:-1], c.inputs[0][-1] + 1)], {}, "data")]
                               if c.kwargs["input_size"] else
                               [([np.full((2, 3), "a")], {}, "data")])),
    Spec("dropout", lambda: random_case("dropout"), random_bad_args("dropout"),
         random_bad_call),
    Spec("stochastic_depth", lambda: random_case("stochastic_depth"),
         random_bad_args("stochastic_depth"), random_bad_call),
    *[Spec(f"zeropadding{n}d", lambda n=n: zeropadding_case(n),
           {"input_size": size_bad(optional=True), "padding": PAD_BAD}, zeropadding_bad_call)
      for n in (1, 2, 3)],
    *[Spec(name, lambda name=name: conv_case(name), conv_bad_args(name), conv_bad_call)
      for name in CONV],
    *[Spec(name, lambda name=name: norm_case(name), norm_bad_args(name), norm_bad_call)
      for name in ("batch_norm", "group_norm", "layer_norm")],
    *[Spec(name, lambda name=name: recurrent_case(name), recurrent_bad_args(name),
           recurrent_bad_call) for name in KIND],
    Spec("attention", attention_case, {"use_scale": NOT_BOOL, "dtype": NOT_DTYPE,
                                       "score_mode": st.one_of(st.sampled_from(
                                           ["add", "", "DOT"]), st.just(["dot"]),
                                           st.integers(), st.none())}, attention_bad_call),
    Spec("multihead_attention", mha_case,
         {"n_head": size_bad(), "input_size": st.one_of(size_bad(optional=True), st.just(7)),
          "kdim": size_bad(optional=True), "vdim": size_bad(optional=True),
          "dropout": NOT_RATE, "weight_initializer": NOT_INIT,
          "bias_initializer": st.one_of(NOT_INIT, st.just("Orthogonal")), "use_bias": NOT_BOOL,
          "dtype": NOT_DTYPE}, mha_bad_call),
    Spec("talking_heads_attention", talking_case,
         {"qkv_rank": st.one_of(st.integers(max_value=3), HUGE_INT, st.text(max_size=2),
                                st.floats()),
          "attention_axes": st.one_of(st.just(()), st.just("1"), st.just([1.5]),
                                      st.floats()),
          "dropout_rate": NOT_RATE, "initializer": st.one_of(NOT_INIT, st.just(["nope"])),
          "dtype": NOT_DTYPE, "num_heads": size_bad(optional=True)}, talking_bad_call),
    Spec("FAVOR_attention", favor_case,
         {"key_dim": size_bad(), "orthonormal": NOT_BOOL, "causal": NOT_BOOL,
          "m": size_bad(), "redraw": NOT_BOOL, "h": st.one_of(st.integers(), st.text()),
          "f": st.one_of(st.just([]), st.just(["nope"]), st.integers(), st.just([3])),
          "randomizer": st.one_of(st.integers(), st.text(max_size=2)),
          "eps": st.one_of(st.floats(max_value=-1e-9), st.text(max_size=2), st.none()),
          "kernel_eps": st.one_of(st.text(max_size=2), st.none(), st.just(float("nan"))),
          "dtype": NOT_DTYPE, "seed": st.one_of(st.integers(max_value=-1), st.just(2**64)),
          "chunk_size": size_bad()}, favor_bad_call),
    Spec("Linformer_self_attention", linformer_case,
         {"dim": size_bad(), "seq_len": size_bad(), "k": size_bad(), "heads": size_bad(),
          "dim_head": size_bad(optional=True), "one_kv_head": NOT_BOOL, "share_kv": NOT_BOOL,
          "dropout": NOT_RATE, "dtype": NOT_DTYPE}, linformer_bad_call),
    Spec("Transformer", transformer_case,
         {"d_model": size_bad(), "nhead": st.one_of(size_bad(), st.just(5)),
          "num_encoder_layers": size_bad(low=0), "num_decoder_layers": size_bad(low=0),
          "dim_feedforward": size_bad(), "dropout": NOT_RATE, "activation": NOT_ACT,
          "custom_encoder": st.one_of(st.integers(), st.text(max_size=2)),
          "custom_decoder": st.just(mx.zeros(2)),
          "layer_norm_eps": st.one_of(st.floats(max_value=-1e-9), st.text(max_size=2)),
          "norm_first": NOT_BOOL, "bias": NOT_BOOL,
          "device": st.one_of(st.just("tpu"), st.integers(), st.just(["cpu"])),
          "dtype": NOT_DTYPE}, transformer_bad_call),
]
assert len(SPECS) == 32 and len({s.name for s in SPECS}) == 32
IDS = [s.name for s in SPECS]


def documented_layers() -> set[str]:
    names = {n for m in nn.FAMILIES for n in sys.modules[f"mlxnote.nn.{m}"].__all__}
    return names - {"group_normalization", "layer_normalization", "TransformerEncoder",
                    "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer"}


def test_every_documented_layer_is_fuzzed():
    assert {s.name for s in SPECS} == documented_layers()


def error_pattern(name: str, arg: str | None) -> str:
    """The one error format (any argument when ``arg`` is None)."""
    a = r"[^']+" if arg is None else re.escape(arg)
    return rf"^{re.escape(name)}: argument '{a}' got .*; allowed: .+"


def check_raises(fn: Callable[[], Any], name: str, arg: str | None, what: str) -> None:
    try:
        out = fn()
        if isinstance(out, (mx.array, tuple, list)):
            mx.eval(leaves(out))
    except (ValueError, TypeError) as e:
        assert re.match(error_pattern(name, arg), str(e), re.S), \
            f"{what}: {type(e).__name__}: {e}"
        return
    except Exception as e:  # noqa: BLE001 - any other exception is the defect
        raise AssertionError(f"{what}: raised {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: did not raise")


# -- the properties -------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_valid_arguments_and_inputs_give_the_documented_shapes(spec, data):
    case = data.draw(spec.valid(), label="case")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    mx.random.seed(seed)
    layer = spec.layer(**case.kwargs)
    inputs = materialize(case.inputs, seed)
    out = leaves(layer(*inputs, **case.call))
    mx.eval(out)
    assert [tuple(o.shape) for o in out] == case.shapes
    dtype = getattr(mx, case.kwargs.get("dtype", "float32"))
    if spec.name != "identity":
        assert all(o.dtype == dtype for o in out), [o.dtype for o in out]
    for o in out:
        assert bool(mx.all(mx.isfinite(o))), f"non-finite output in {o.shape}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_a_bad_argument_fails_at_construction_naming_it(spec, data):
    case = data.draw(spec.valid(), label="case")
    arg = data.draw(st.sampled_from(sorted(a for a in spec.bad_args
                                           if a in _params(spec.layer))), label="arg")
    value = data.draw(spec.bad_args[arg], label="value")
    # Orthogonal is a bad initializer for rank-1 weights only (norms over a list of axes
    # have weights of that list's rank)
    assume(not (isinstance(value, str) and value == "Orthogonal"
                and not isinstance(case.kwargs.get("axis", -1), int)))
    kwargs = {**case.kwargs, arg: value}
    check_raises(lambda: spec.layer(**kwargs), spec.name, arg,
                 f"{spec.name}({arg}={value!r})")


@pytest.mark.parametrize("spec", [s for s in SPECS if s.bad_call], ids=[
    s.name for s in SPECS if s.bad_call])
@FUZZ
@given(data=st.data())
def test_a_bad_call_fails_before_compute_naming_the_argument(spec, data):
    case = data.draw(spec.valid(), label="case")
    mx.random.seed(0)
    layer = spec.layer(**case.kwargs)
    mx.eval(leaves(layer(*materialize(case.inputs, 0), **case.call)))  # built
    before = layer.get_weights()
    inputs, call, arg = spec.bad_call(data.draw, case)
    xs = materialize(inputs, 1)
    check_raises(lambda: layer(*xs, **{**case.call, **call}), spec.name, arg,
                 f"{spec.name} called with {[getattr(x, 'shape', x) for x in xs]} {call}")
    after = layer.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "weights changed"


def _params(layer) -> set[str]:
    import inspect

    return set(inspect.signature(layer).parameters)


# -- huge sizes: in a subprocess ------------------------------------------------------------
BIG = st.one_of(st.integers(2**31, 2**40), st.just(2**64))
FAR = st.integers(2**20, 2**24)  # sizes whose products are far beyond memory


@st.composite
def huge_case(draw):
    """Code building (and calling) a layer with a huge size; it must raise the layer's
    ValueError before MLX allocates anything."""
    big, far = draw(BIG), draw(FAR)
    far2 = draw(st.integers(2**16, 2**20))
    return draw(st.sampled_from([
        ("dense", f"nn.dense({big}, input_size=8)"),
        ("dense", f"nn.dense({far}, input_size={far2})"),
        ("dense", f"nn.dense({far})(mx.zeros((1, {far2})))"),
        ("dense", f"nn.dense({far}, input_size=4)(mx.broadcast_to(mx.zeros((1, 4)), "
                  f"({far * 64}, 4)))"),
        ("zeropadding1d", f"nn.zeropadding1d(padding={far})(mx.broadcast_to("
                          f"mx.zeros((1, 1, 1)), (1, 1, {far2 * 16})))"),
        ("zeropadding2d", f"nn.zeropadding2d(padding={far})(mx.zeros((1, 1, 1, 1)))"),
        ("zeropadding3d", f"nn.zeropadding3d()(mx.zeros((1, 1, 1, 1, 1)), padding={big})"),
        ("conv2d", f"nn.conv2d({far}, {far2 // 256}, input_size=64)"),
        ("conv1d", f"nn.conv1d({big}, 3)"),
        ("conv3d_transpose", f"nn.conv3d_transpose(8, 3, strides={far2}, input_size=1)"
                             "(mx.zeros((1, 2, 2, 2, 1)))"),
        ("conv1d_transpose", f"nn.conv1d_transpose(8, 1, strides={big})"),
        ("depthwise_conv2d", f"nn.depthwise_conv2d(3, {far}, input_size={far2})"),
        ("separable_conv1d", f"nn.separable_conv1d(4, 3, {far * 1024})(mx.zeros((1, 5, 64)))"),
        ("batch_norm", f"nn.batch_norm(input_size=[{far}, {far2}], axis=[1, 2])"),
        ("layer_norm", f"nn.layer_norm(input_size={big})"),
        ("group_norm", f"nn.group_norm(1, {big})"),
        ("LSTM", f"nn.LSTM({far}, input_size={far2})"),
        ("GRU", f"nn.GRU({2**29 + far})(mx.zeros((1, 1, 1)))"),
        ("RNNCell", f"nn.RNNCell([{far}, {far2}])"),
        ("LSTMCell", f"nn.LSTMCell([4, {big}])"),
        ("RNN", f"nn.RNN(64, input_size=4)(mx.broadcast_to(mx.zeros((1, 1, 4)), "
                f"({far}, 4096, 4)))"),
        ("attention", f"nn.attention()(mx.zeros((1, {far}, 2)), mx.zeros((1, {far}, 2)))"),
        ("multihead_attention", f"nn.multihead_attention(1, {far2 * 16})"),
        ("multihead_attention", f"nn.multihead_attention(1, 8)(mx.zeros((1, {far // 4}, 8)))"),
        ("talking_heads_attention", f"nn.talking_heads_attention(num_heads={far * 16})"),
        ("talking_heads_attention", "nn.talking_heads_attention()(*[mx.zeros((1, "
                                    f"{far // 8}, 1, 2))] * 3)"),
        ("FAVOR_attention", f"nn.FAVOR_attention({far}, orthonormal=False, m={far2})"),
        ("Linformer_self_attention", f"nn.Linformer_self_attention(8, {far}, k={far2})"),
        ("Transformer", f"nn.Transformer({far2 * 4}, 1, 1, 1, 8)"),
        ("Transformer", f"nn.Transformer(8, 2, 1, 1, {big})"),
        ("identity", f"nn.identity({big})"),
        ("dropout", f"nn.dropout(0.5, seed={2**64 + far})"),
        ("stochastic_depth", f"nn.stochastic_depth(0.5, noise_shape=[{big}])"),
        ("GRUCell", f"nn.GRUCell([{big}, 2])"),
        ("conv2d_transpose", f"nn.conv2d_transpose({far}, {far2 // 256}, input_size=64)"),
        ("conv3d", f"nn.conv3d(4, [1, 1, {big}])"),
        ("depthwise_conv1d", f"nn.depthwise_conv1d({big})"),
        ("separable_conv2d", f"nn.separable_conv2d({far}, 3, input_size={far2})"),
    ]))


@pytest.mark.skipif(os.environ.get("MLXNOTE_FUZZ_HUGE") != "1",
                    reason="run by test_huge_sizes in a subprocess")
@settings(max_examples=max(40, EXAMPLES // 2), deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(case=huge_case())
def test_huge_sizes_in_this_process(case):
    name, code = case
    print(f"\nCASE {name}: {code}", flush=True)
    check_raises(lambda: eval(code, {"nn": nn, "mx": mx}), name, None, code)


@pytest.mark.slow
def test_huge_sizes():
    """Huge sizes (weights and outputs far beyond memory, sizes of 2^31 and more) raise the
    layer's ValueError; run in a subprocess so that a crash fails this test."""
    env = {**os.environ, "MLXNOTE_FUZZ_HUGE": "1", "MLXNOTE_BLAS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
         f"{__file__}::test_huge_sizes_in_this_process"],
        capture_output=True, text=True, timeout=600, env=env, cwd=os.path.dirname(__file__))
    cases = [ln for ln in proc.stdout.splitlines() if ln.startswith("CASE ")]
    assert proc.returncode == 0, (f"rc={proc.returncode} after {len(cases)} cases, the last "
                                  f"{cases[-1:]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert len(cases) >= 40


def test_conv_output_formulas_are_keras():
    """The fuzzer's own expectations, checked once against hand-computed values."""
    assert conv_len(5, 3, 2, 1, "SAME") == 3 and conv_len(5, 3, 2, 1, "VALID") == 2
    assert conv_len(5, 3, 1, 2, (1, 0)) == 2
    assert tconv_len(4, 3, 2, 1, "VALID", None) == 9 and tconv_len(4, 3, 2, 1, "SAME", None) == 8
    assert tconv_len(4, 3, 2, 1, "SAME", 1) == 8
