"""The ten convolutions (decisions.md items 8-15): every constructor argument refused when
invalid, TF's full-form strides/dilations in both data formats, every padding form, and
the inputs a built layer refuses."""

from __future__ import annotations

from typing import Any

from .rows import BASE, Accept, Refuse, Row

C = 3  # input channels
L = {1: 5, 2: 5, 3: 4}  # spatial length per rank
LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
# name: (rank, kind)
LAYERS = {"conv1d": (1, "conv"), "conv2d": (2, "conv"), "conv3d": (3, "conv"),
          "conv1d_transpose": (1, "transpose"), "conv2d_transpose": (2, "transpose"),
          "conv3d_transpose": (3, "transpose"), "depthwise_conv1d": (1, "depthwise"),
          "depthwise_conv2d": (2, "depthwise"), "separable_conv1d": (1, "separable"),
          "separable_conv2d": (2, "separable")}
for _name, (_n, _kind) in LAYERS.items():
    BASE[_name] = dict(kernel_size=2) if _kind == "depthwise" else dict(filters=2, kernel_size=2)

T, V = TypeError, ValueError


def out_len(n: int, kind: str, s: int = 1, d: int = 1, pad: Any = 0, op: int | None = None,
            k: int = 2) -> int:
    """The output length by hand: VALID/explicit ``(L + lo + hi - k_eff) // s + 1``, SAME
    ``ceil(L / s)``; transposed as Keras (``L*s``, ``L*s + max(k_eff - s, 0)``, or with
    ``output_padding``)."""
    length, keff = L[n], (k - 1) * d + 1
    if kind == "transpose":
        if op is not None:
            return (length - 1) * s + keff - 2 * (keff // 2 if pad == "SAME" else 0) + op
        return length * s if pad == "SAME" else length * s + max(keff - s, 0)
    if pad == "SAME":
        return -(-length // s)
    lo, hi = pad if isinstance(pad, tuple) else (pad, pad)
    return (length + lo + hi - keff) // s + 1


def shape(n: int, first: bool = False, c: int = C, length: int | None = None) -> tuple:
    sp = (L[n] if length is None else length,) * n
    return (1, c, *sp) if first else (1, *sp, c)


def channels(kind: str, dm: int = 1) -> int:
    return C * dm if kind == "depthwise" else 2


def out(n: int, kind: str, lengths: Any, first: bool = False, dm: int = 1) -> tuple:
    sp = tuple(lengths) if isinstance(lengths, (list, tuple)) else (lengths,) * n
    c = channels(kind, dm)
    return (1, c, *sp) if first else (1, *sp, c)


def _constructor(name: str, n: int, kind: str) -> list[Row]:
    bad: list[tuple[dict, str, type]] = [
        (dict(kernel_size=0), "kernel_size", V),
        (dict(kernel_size=[2] * (n + 1)), "kernel_size", T),
        (dict(kernel_size="2"), "kernel_size", T), (dict(kernel_size=[2.0] * n), "kernel_size", T),
        (dict(input_size=0), "input_size", V), (dict(kernel_size=2**31), "kernel_size", V),
        (dict(input_size=2.0), "input_size", T), (dict(strides=0), "strides", V),
        (dict(strides=[1] * (n + 3)), "strides", T), (dict(strides=2.0), "strides", T),
        # neither n values, nor a full form, nor (1-D) Note's [1, s]
        (dict(strides=[2, 2] if n == 1 else [1] + [2] * n), "strides", T),
        (dict(dilations=[2, 2] if n == 1 else [1] + [2] * n), "dilations", T),
        # TF's full form [1, s.., 1] (channels last) / [1, 1, s..] (channels first) only
        (dict(strides=[2] * (n + 1) + [1]), "strides", T),
        (dict(strides=[1] + [2] * (n + 1)), "strides", T),
        (dict(strides=[1, 2] + [2] * n, data_format=FIRST[n]), "strides", T),
        (dict(strides=[2, 1] + [2] * n, data_format=FIRST[n]), "strides", T),
        (dict(dilations=0), "dilations", V), (dict(dilations=[2] * (n + 1) + [1]), "dilations", T),
        (dict(dilations=[1, 2] + [2] * n, data_format=FIRST[n]), "dilations", T),
        (dict(padding="FULL"), "padding", V), (dict(padding=None), "padding", T),
        (dict(weight_initializer="nope"), "weight_initializer", V),
        (dict(bias_initializer="Orthogonal"), "bias_initializer", V),  # rank 1
        (dict(bias_initializer="nope"), "bias_initializer", V),
        (dict(activation="nope"), "activation", V), (dict(activation=3), "activation", T),
        (dict(data_format="NCDHW" if n != 3 else "NCHW"), "data_format", V),
        (dict(data_format="channels_middle"), "data_format", V),
        (dict(data_format=3), "data_format", T),
        (dict(use_bias=1), "use_bias", T), (dict(trainable="yes"), "trainable", T),
        (dict(dtype="int8"), "dtype", T)]
    if kind != "depthwise":
        bad += [(dict(filters=0), "filters", V), (dict(filters=2.5), "filters", T),
                (dict(filters=2**31), "filters", V),
                (dict(filters=None), "filters", T)]
    if kind == "conv":
        bad += [(dict(groups=0), "groups", V), (dict(groups=3), "groups", V),
                (dict(groups="2"), "groups", T)]
    if kind in ("depthwise", "separable"):
        bad += [(dict(depth_multiplier=0), "depth_multiplier", V),
                (dict(depth_multiplier=1.5), "depth_multiplier", T)]
    if kind == "transpose":
        bad += [(dict(padding=[1] * n), "padding", T), (dict(padding=1), "padding", T),
                (dict(strides=2, output_padding=2), "output_padding", V),
                (dict(strides=2, output_padding=-1), "output_padding", V),
                (dict(strides=2, output_padding=[0] * (n + 1)), "output_padding", T),
                (dict(strides=2, dilations=2), "dilations", V)]
    else:
        bad += [(dict(padding=[-1] * n), "padding", V), (dict(padding=[1] * (n + 2)), "padding", V),
                (dict(padding=1.5), "padding", T), (dict(padding=[(1, 1, 1)] * n), "padding", V),
                (dict(padding=[(1, -1)] * n), "padding", V)]
    return [Refuse(name, kw, arg, exc) for kw, arg, exc in bad]


def _calls(name: str, n: int, kind: str) -> list[Row]:
    first = FIRST[n]
    rows: list[Row] = [
        Refuse(name, {}, "data", V, inputs=(shape(n)[:-1],), words=(f"rank {n + 2}",)),
        Refuse(name, {}, "data", V, inputs=((*shape(n), 1),), words=(f"rank {n + 2}",)),
        Refuse(name, dict(input_size=C), "data", V, inputs=(shape(n, c=C + 1),)),
        Refuse(name, dict(input_size=C, data_format=first), "data", V,
               inputs=(shape(n, True, c=C + 1),)),
        Refuse(name, {}, "dilations", V, inputs=(shape(n),), call=dict(dilations=0)),
        Refuse(name, {}, "dilations", T, inputs=(shape(n),),
               call=dict(dilations=[2] * (n + 1) + [1]))]
    if kind == "transpose":
        rows += [Refuse(name, dict(strides=2), "dilations", V, inputs=(shape(n),),
                        call=dict(dilations=2)),
                 Refuse(name, {}, "data", V, inputs=(shape(n, length=0),)),  # VALID: no output
                 Refuse(name, dict(strides=2**30, padding="SAME"), "data", V,
                        inputs=(shape(n),), words=("32-bit",))]  # an output of 5 * 2^30
    else:
        rows += [Refuse(name, {}, "data", V, inputs=(shape(n, length=1),), words=(f"{[2] * n}",)),
                 Refuse(name, {}, "data", V, inputs=(shape(n, c=0),)),
                 Refuse(name, dict(kernel_size=3), "data", V, inputs=(shape(n, length=3),),
                        call=dict(dilations=2), words=(f"{[5] * n}",)),
                 Refuse(name, dict(padding="FULL"), "padding", V, words=("explicit ints",))]
    if kind == "conv":
        rows.append(Refuse(name, dict(groups=2), "groups", V, inputs=(shape(n),)))
    return rows


def _accepts(name: str, n: int, kind: str) -> list[Row]:
    last, first = LAST[n], FIRST[n]
    x, xf = shape(n), shape(n, True)
    s_last = [1] + [2] * n + [1]  # TF's full forms
    s_first = [1, 1] + [2] * n
    rows: list[Row] = [
        Accept(name, {}, (x,), out(n, kind, out_len(n, kind))),
        Accept(name, dict(input_size=C, data_format=first), (xf,),
               out(n, kind, out_len(n, kind), True)),
        Accept(name, dict(data_format="channels_first"), (xf,),
               out(n, kind, out_len(n, kind), True)),
        Accept(name, dict(data_format=last, strides=s_last), (x,),
               out(n, kind, out_len(n, kind, s=2))),
        Accept(name, dict(data_format=first, strides=s_first), (xf,),
               out(n, kind, out_len(n, kind, s=2), True)),
        Accept(name, dict(strides=[2] * n), (x,), out(n, kind, out_len(n, kind, s=2))),
        Accept(name, dict(padding="same"), (x,), out(n, kind, out_len(n, kind, pad="SAME"))),
        Accept(name, dict(padding="SAME", kernel_size=3), (x,),
               out(n, kind, out_len(n, kind, pad="SAME", k=3))),  # (1, 1)
        Accept(name, dict(padding="SAME", kernel_size=1, strides=3), (x,),
               out(n, kind, out_len(n, kind, s=3, pad="SAME", k=1))),  # nothing to pad
        Accept(name, dict(padding="Valid", strides=2), (x,),
               out(n, kind, out_len(n, kind, s=2))),
        Accept(name, dict(padding="SAME", strides=2), (x,),
               out(n, kind, out_len(n, kind, s=2, pad="SAME"))),
        Accept(name, dict(weight_initializer="Orthogonal"), (x,), out(n, kind, out_len(n, kind))),
        Accept(name, dict(use_bias=False, trainable=False, activation="relu",
                          weight_initializer="He", bias_initializer="ones", dtype="float16"),
               (x,), out(n, kind, out_len(n, kind)))]
    if n == 1:  # Note's 2-D form [1, s]
        rows.append(Accept(name, dict(strides=[1, 2]), (x,), out(n, kind, out_len(n, kind, s=2))))
    if kind != "transpose":
        rows += [
            Accept(name, dict(data_format=last, dilations=[1] + [2] * n + [1]), (x,),
                   out(n, kind, out_len(n, kind, d=2))),
            Accept(name, dict(data_format=first, dilations=[1, 1] + [2] * n), (xf,),
                   out(n, kind, out_len(n, kind, d=2), True)),
            Accept(name, {}, (x,), out(n, kind, out_len(n, kind, d=2)), call=dict(dilations=2)),
            Accept(name, dict(padding=1), (x,), out(n, kind, out_len(n, kind, pad=1))),
            Accept(name, dict(padding=0), (x,), out(n, kind, out_len(n, kind))),
            Accept(name, dict(padding=[(1, 0)] * n), (shape(n, length=1),),
                   out(n, kind, 1)),  # fits once padded before
            Accept(name, dict(padding=[(1, 2)] * n), (x,),
                   out(n, kind, out_len(n, kind, pad=(1, 2)))),
            Accept(name, dict(padding=[2] + [(0, 1)] * (n - 1)), (x,),
                   out(n, kind, [out_len(n, kind, pad=2)] + [out_len(n, kind, pad=(0, 1))]
                       * (n - 1)))]
        if n == 1:
            rows.append(Accept(name, dict(padding=(0, 2)), (x,),
                               out(n, kind, out_len(n, kind, pad=(0, 2)))))
    else:
        rows += [Accept(name, dict(dilations=2), (x,), out(n, kind, out_len(n, kind, d=2))),
                 Accept(name, dict(strides=2, output_padding=1), (x,),
                        out(n, kind, out_len(n, kind, s=2, op=1))),
                 Accept(name, dict(strides=2, output_padding=0, padding="SAME"), (x,),
                        out(n, kind, out_len(n, kind, s=2, op=0, pad="SAME")))]
    if kind == "conv":
        rows.append(Accept(name, dict(filters=2, groups=2), (shape(n, c=2),),
                           out(n, kind, out_len(n, kind))))
    if kind in ("depthwise", "separable"):
        rows.append(Accept(name, dict(depth_multiplier=2), (x,),
                           out(n, kind, out_len(n, kind), dm=2)))
    if n == 1 and kind in ("depthwise", "separable"):  # Note's 2-D names
        rows += [Accept(name, dict(data_format="NHWC"), (x,), out(n, kind, out_len(n, kind))),
                 Accept(name, dict(data_format="NCHW"), (xf,),
                        out(n, kind, out_len(n, kind), True))]
    return rows


ROWS: list[Row] = [r for name, (n, kind) in LAYERS.items()
                   for part in (_constructor, _calls, _accepts) for r in part(name, n, kind)]
