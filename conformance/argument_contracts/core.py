"""dense, identity, dropout, stochastic_depth, zeropadding1d/2d/3d (decisions.md items 18,
19), and the padding forms of the conv kernel entry point."""

from __future__ import annotations

from .rows import BASE, Accept, Arr, Fits, Oversize, Reads, Refuse, Row, Special, build

T, V = TypeError, ValueError
BASE.update(dense=dict(output_size=4), dropout=dict(rate=0.5),
            stochastic_depth=dict(drop_path_rate=0.5))

DENSE: list[Row] = [
    Refuse("dense", dict(output_size=0), "output_size"),
    Refuse("dense", dict(output_size=2.0), "output_size", T),
    Refuse("dense", dict(output_size=2**31), "output_size"),  # MLX's sizes are 32-bit
    Refuse("dense", dict(input_size=0), "input_size"),
    Refuse("dense", dict(input_size="3"), "input_size", T),
    Refuse("dense", dict(weight_initializer="nope"), "weight_initializer"),
    Refuse("dense", dict(bias_initializer="nope"), "bias_initializer"),
    Refuse("dense", dict(bias_initializer="Orthogonal"), "bias_initializer"),  # rank 1
    Refuse("dense", dict(activation="nope"), "activation"),
    Refuse("dense", dict(use_bias="no"), "use_bias", T),
    Refuse("dense", dict(trainable=0), "trainable", T),
    Refuse("dense", dict(dtype="float64x"), "dtype", T),
    Refuse("dense", dict(name=3), "name", T),
    Refuse("dense", {}, "data", inputs=((),), words=("rank >= 1",)),
    Refuse("dense", {}, "data", T, inputs=(Arr((2, 3), "complex64"),)),
    Refuse("dense", {}, "data", T, inputs=([["a", "b"]],)),
    Refuse("dense", dict(input_size=3), "data", inputs=((2, 4),)),
    Special("dense: a layer built on 4 features refuses 5 naming 'data'",
            lambda: _second_call("dense", {}, (2, 4), (2, 5), "data")),
    Accept("dense", dict(input_size=3), ((2, 3),), (2, 4)),
    Accept("dense", dict(weight_initializer="Orthogonal"), ((2, 3),), (2, 4)),
    Oversize("dense", dict(input_size=3), ((64, 3),), "data", "output", limit=64 * 3 * 4 + 8),
    Fits("dense", dict(input_size=3), ((64, 3),), 64 * 4 * 4, (64, 4)),  # exactly the output
    # a weight too large names the largest of the sizes: output_size, or the input's
    Oversize("dense", dict(output_size=64, input_size=3), None, "output_size", "weight",
             limit=256, words=("got 64",)),
    Oversize("dense", dict(output_size=3), ((2, 64),), "data", "weight", limit=256,
             words=("an input of size 64",)),
    Accept("dense", {}, ((2, 5, 3),), (2, 5, 4)),
    Accept("dense", {}, ((3,),), (4,)),
    Accept("dense", dict(activation="gelu", use_bias=False, name="d", trainable=False,
                         dtype="bfloat16"), ((2, 3),), (2, 4)),
]

IDENTITY: list[Row] = [
    Refuse("identity", dict(input_size=0), "input_size"),
    Refuse("identity", dict(input_size=1.5), "input_size", T),
    Refuse("identity", dict(input_size=3), "data", inputs=((2, 4),)),
    Refuse("identity", dict(input_size=3), "data", inputs=((),)),
    Accept("identity", dict(input_size=3), ((2, 3),), (2, 3)),
    Reads("identity", dict(input_size=3), dict(input_size=3, output_size=3)),
    Accept("identity", {}, ((2, 5, 7),), (2, 5, 7)),
]


def _random(layer: str, rate: str) -> list[Row]:
    return [
        Refuse(layer, {rate: 1.0}, rate), Refuse(layer, {rate: -0.1}, rate),
        Refuse(layer, {rate: float("nan")}, rate), Refuse(layer, {rate: "0.5"}, rate, T),
        Refuse(layer, {rate: True}, rate, T),
        Refuse(layer, dict(noise_shape=[0, 1]), "noise_shape", T),
        Refuse(layer, dict(noise_shape=3), "noise_shape", T),
        Refuse(layer, dict(noise_shape=[2, "1"]), "noise_shape", T),
        Refuse(layer, dict(seed=-1), "seed"), Refuse(layer, dict(seed=1.5), "seed", T),
        Refuse(layer, dict(seed=2**64), "seed"),
        Refuse(layer, dict(noise_shape=[2**31, 1]), "noise_shape"),
        Refuse(layer, dict(dtype="int32"), "dtype", T),
        Refuse(layer, dict(noise_shape=[2, 1, 1]), "noise_shape", inputs=((2, 3),),
               call=dict(train_flag=True)),
        Refuse(layer, dict(noise_shape=[2, 2]), "noise_shape", inputs=((2, 3),),
               call=dict(train_flag=True)),
        Refuse(layer, {}, "train_flag", T, inputs=((2, 3),), call=dict(train_flag="yes")),
        Refuse(layer, {}, "training", T, inputs=((2, 3),), call=dict(training=1)),
        Accept(layer, {rate: 0.999}, ((4, 3),), (4, 3), call=dict(train_flag=True)),
        Accept(layer, {rate: 0.0}, ((4, 3),), (4, 3), call=dict(training=True)),
        Accept(layer, dict(noise_shape=[None, 1], seed=0), ((4, 3),), (4, 3),
               call=dict(train_flag=True)),
        Accept(layer, dict(noise_shape=[4, 3], seed=2**64 - 1, dtype="float16"), ((4, 3),),
               (4, 3), call=dict(train_flag=False)),
    ]


def _padding(n: int) -> list[Row]:
    layer = f"zeropadding{n}d"
    x = (1, *(3,) * n, 2)
    grown = (1, *(5,) * n, 2)
    rows: list[Row] = [
        Refuse(layer, dict(input_size=0), "input_size"),
        Refuse(layer, dict(input_size="2"), "input_size", T),
        Refuse(layer, dict(padding=-1), "padding",
               words=("(left, right) pair",) if n == 1 else (f"{n} entries each",)),
        Refuse(layer, dict(padding="1"), "padding", T),
        Refuse(layer, dict(padding=1.0), "padding", T),
        Refuse(layer, dict(padding=[1] * (n + 1) if n > 1 else [1, 1, 1]), "padding"),
        Refuse(layer, dict(padding=[(1, 2, 3)] * n), "padding"),
        Refuse(layer, dict(padding=[(1, -2)] * n), "padding"),
        Refuse(layer, dict(padding=[(1, 1.5)] * n), "padding", T),
        Refuse(layer, dict(padding=2**31), "padding"),
        Refuse(layer, {}, "data", inputs=(x[:-1],), words=(f"rank {n + 2}",)),
        Refuse(layer, dict(input_size=3), "data", inputs=(x,)),
        Refuse(layer, {}, "padding", inputs=(x,), call=dict(padding=-1)),
        Refuse(layer, {}, "padding", T, inputs=(x,), call=dict(padding="2")),
        Accept(layer, dict(input_size=2, padding=1), (x,), grown),
        Accept(layer, dict(padding=[(1, 1)] * n), (x,), grown),
        Accept(layer, dict(padding=0), (x,), x),
        Accept(layer, dict(padding=5), (x,), grown, call=dict(padding=1)),  # call overrides
        Accept(layer, {}, (x,), grown),  # the default: 1 on every side
    ]
    if n == 1:
        rows += [Accept(layer, dict(padding=(0, 2)), (x,), grown),
                 Accept(layer, dict(padding=[(2, 0)]), (x,), grown)]
    else:
        rows += [Accept(layer, dict(padding=[1] * n), (x,), grown),
                 Accept(layer, dict(padding=[(0, 2)] + [1] * (n - 1)), (x,), grown)]
    return rows


def _second_call(layer: str, kwargs: dict, first: tuple, second: tuple, arg: str) -> str:
    from ..contracts import _raises
    from .rows import build, call

    lyr = build(layer, kwargs)
    call(lyr, (first,), {})
    return _raises(lambda: call(lyr, (second,), {}), ValueError, f"{layer}:", f"'{arg}'")


def _kernel_padding() -> str:
    """mlxnote.kernels.conv.conv's padding forms: per-axis ints or (lo, hi) pairs, and
    mx.conv_general's ((lo...), (hi...)) for rank != 2; a wrong count is refused."""
    import mlx.core as mx

    from mlxnote.kernels import conv as kconv

    from ..contracts import _raises

    problems = []
    for n, padding, lengths in ((1, ((1,), (2,)), (6,)), (1, [(1, 2)], (6,)),
                                (3, ((1, 0, 0), (0, 0, 2)), (4, 3, 5)),
                                (2, ((1, 1), (2, 2)), (5, 7)), (2, [1, (0, 2)], (5, 5))):
        x = mx.ones((1, *(4,) * n, 1))
        w = mx.ones((1, *(2,) * n, 1))
        got = tuple(kconv.conv(x, w, 1, padding).shape[1:-1])
        if got != lengths:
            problems.append(f"{n}-D padding {padding}: spatial {got}, expected {lengths}")
    for n, bad, word in ((2, [1, 1, 1], "must have 2 entries"),
                         (1, ((1, 1, 1), (1, 1, 1)), "padding"),
                         (3, ((1, 1), (1, 1)), "must have 3 entries")):
        x, w = mx.ones((1, *(4,) * n, 1)), mx.ones((1, *(2,) * n, 1))
        p = _raises(lambda x=x, w=w, b=bad: kconv.conv(x, w, 1, b), ValueError, "conv:",
                    "padding", word)
        if p:
            problems.append(f"{n}-D padding {bad}: {p}")
    x, w = mx.ones((1, 4, 4, 1)), mx.ones((1, 2, 2, 1))
    for what, make in (("strides", lambda: kconv.conv(x, w, [1, 1, 1], 0)),
                       ("dilations", lambda: kconv.conv(x, w, 1, 0, [2]))):
        p = _raises(make, ValueError, "conv:", what, "must have 2 entries")
        if p:
            problems.append(f"{what}: {p}")
    return "; ".join(problems)


def _mode(layer: str, kwargs: dict) -> str:
    """``train_flag`` (Note's mode attribute) and ``train(mode)`` take a bool only."""
    from ..contracts import _raises

    lyr = build(layer, kwargs)
    problems = [_raises(lambda: setattr(lyr, "train_flag", 1), TypeError, f"{layer}:",
                        "'train_flag'"),
                _raises(lambda: lyr.train("yes"), TypeError, f"{layer}:", "'mode'"),
                _raises(lambda: lyr.train(True, False), TypeError, f"{layer}:", "'mode'")]
    lyr.train_flag = False
    if lyr.training or lyr.train_flag:
        problems.append("train_flag = False left the layer in training mode")
    return "; ".join(p for p in problems if p)


def _train_flag() -> str:
    """A call's ``train_flag`` overrides the mode, ``training=`` too, ``train_flag`` first
    (decisions.md item 2)."""
    import mlx.core as mx

    lyr = build("dropout", dict(rate=0.999, seed=0))
    x = mx.ones((64,))
    dropped = {}
    for mode, kw in (("eval", dict(training=True)), ("eval", dict(train_flag=True)),
                     ("train", dict(train_flag=False)), ("train", dict(training=False)),
                     ("eval", dict(train_flag=True, training=False)),
                     ("train", dict(train_flag=False, training=True))):
        lyr.train(mode == "train")
        out = lyr(x, **kw)
        dropped[(mode, *kw.items())] = not mx.array_equal(out, x).item()
    want = [True, True, False, False, True, False]
    wrong = [k for (k, got), w in zip(dropped.items(), want) if got != w]
    return f"the mode of these calls is wrong: {wrong}" if wrong else ""


MODE: list[Row] = [Special("dropout: train_flag= then training= override the mode",
                           _train_flag)]
MODE += [Special(f"{name}: train_flag and train(mode) refuse a non-bool",
                           lambda n=name, k=kw: _mode(n, k))
                   for name, kw in (("dense", {}), ("batch_norm", {}), ("dropout", {}),
                                    ("Transformer", dict(d_model=8, nhead=2,
                                                         dim_feedforward=8)))]

ROWS: list[Row] = [*DENSE, *IDENTITY, *MODE, *_random("dropout", "rate"),
                   *_random("stochastic_depth", "drop_path_rate"),
                   *_padding(1), *_padding(2), *_padding(3),
                   Special("kernels.conv.conv: every padding form, a wrong count refused",
                           _kernel_padding)]
