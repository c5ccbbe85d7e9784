"""batch_norm, group_norm (group_normalization) and layer_norm (layer_normalization),
decisions.md items 16-17: Keras's argument ranges (momentum in [0, 1], epsilon >= 0), axes
as ints or lists, input_size per axis, masks."""

from __future__ import annotations

from .rows import Accept, Arr, Reads, Refuse, Row

T, V = TypeError, ValueError
X = (4, 3, 5)  # (B, T, C)


def _shared(layer: str) -> list[Row]:
    """The arguments batch_norm and layer_norm share."""
    return [
        Refuse(layer, dict(input_size=0), "input_size"),
        Refuse(layer, dict(input_size="5"), "input_size", T),
        Refuse(layer, dict(input_size=[5, 3]), "input_size", T),  # one axis, two sizes
        Refuse(layer, dict(axis=[1, 2], input_size=5), "input_size"),
        Refuse(layer, dict(axis=[1, 2], input_size=[3, 0]), "input_size"),
        Refuse(layer, dict(axis="-1"), "axis", T),
        Refuse(layer, dict(axis=[]), "axis", T),
        Refuse(layer, dict(axis=[1, 1]), "axis"),
        Refuse(layer, dict(axis=[1.0]), "axis", T),
        Refuse(layer, dict(axis=[-1, 1], input_size=[5, 3]), "axis"),  # order set by the rank
        Refuse(layer, dict(momentum=1.01), "momentum"),
        Refuse(layer, dict(momentum=-0.01), "momentum"),
        Refuse(layer, dict(momentum="0.9"), "momentum", T),
        Refuse(layer, dict(epsilon=-1e-3), "epsilon"),
        Refuse(layer, dict(epsilon=float("inf")), "epsilon"),
        Refuse(layer, dict(epsilon=None), "epsilon", T),
        Refuse(layer, dict(center=1), "center", T),
        Refuse(layer, dict(scale="yes"), "scale", T),
        Refuse(layer, dict(beta_initializer="nope"), "beta_initializer"),
        Refuse(layer, dict(gamma_initializer="nope"), "gamma_initializer"),
        Refuse(layer, dict(gamma_initializer="Orthogonal"), "gamma_initializer"),  # rank 1
        Refuse(layer, dict(beta_initializer="Orthogonal"), "beta_initializer"),
        Refuse(layer, dict(dtype="int8"), "dtype", T),
        # inputs
        Refuse(layer, {}, "data", inputs=((),), words=("rank >= 1",)),
        Refuse(layer, dict(axis=3), "data", inputs=(X,), words=("rank >= 4",)),
        Refuse(layer, dict(axis=-4), "data", inputs=(X,), words=("rank >= 4",)),
        Refuse(layer, dict(axis=[1, -2]), "axis", inputs=(X,)),  # the same axis twice
        Refuse(layer, dict(input_size=4), "data", inputs=(X,), words=("size 4 on axis -1",)),
        Refuse(layer, dict(axis=[1, 2], input_size=[3, 4]), "data", inputs=(X,)),
        Refuse(layer, dict(axis=1, input_size=5), "data", inputs=(X,)),
        # boundaries and forms
        Accept(layer, dict(input_size=5, momentum=1.0, epsilon=0.0), (X,), X),
        Accept(layer, dict(momentum=0.0), (X,), X),
        Accept(layer, dict(axis=[1, 2], input_size=[3, 5]), (X,), X),
        Accept(layer, dict(axis=[2, 1], input_size=[5, 3]), (X,), X),
        Accept(layer, dict(axis=(-1, -2)), (X,), X),
        Accept(layer, dict(axis=[-1, -2], input_size=[5, 3]), (X,), X),  # sorted with them
        Accept(layer, dict(axis=[-1, 1]), (X,), X),
        Accept(layer, dict(axis=[0, 1], input_size=[4, 3]), (X,), X),
        Accept(layer, dict(axis=[2, 0], input_size=[5, 4]), (X,), X),  # sorted with the sizes
        Accept(layer, dict(axis=[1, 2], input_size=[3, 1]), ((4, 3, 1),), (4, 3, 1)),
        Accept(layer, dict(axis=[1, 2], gamma_initializer="Orthogonal"), (X,), X),  # rank 2
        Reads(layer, dict(input_size=[5]), dict(input_size=5)),
        Accept(layer, dict(axis=1, center=False, scale=False, dtype="float16"), (X,), X),
        Accept(layer, dict(axis=[-1], input_size=[5], beta_initializer="ones",
                           gamma_initializer="zeros"), (X,), X),
    ]


BATCH: list[Row] = [
    *_shared("batch_norm"),
    Refuse("batch_norm", dict(moving_mean_initializer="nope"), "moving_mean_initializer"),
    Refuse("batch_norm", dict(moving_variance_initializer=3), "moving_variance_initializer", T),
    Refuse("batch_norm", dict(synchronized=1), "synchronized", T),
    Refuse("batch_norm", dict(moving_mean_initializer="Orthogonal"), "moving_mean_initializer"),
    Refuse("batch_norm", dict(trainable=None), "trainable", T),
    Refuse("batch_norm", dict(axis=[0, 1, 2]), "data", inputs=(X,)),  # nothing to reduce
    Refuse("batch_norm", {}, "mask", inputs=(X,), call=dict(mask=Arr((4, 5)))),
    Refuse("batch_norm", {}, "mask", inputs=(X,), call=dict(mask=Arr((4, 3, 5)))),
    Refuse("batch_norm", {}, "mask", T, inputs=(X,), call=dict(mask=[["a"]])),
    Refuse("batch_norm", {}, "mask", T, inputs=(X,), call=dict(mask=Arr((4, 3), "complex64"))),
    Refuse("batch_norm", {}, "train_flag", T, inputs=(X,), call=dict(train_flag=1)),
    Accept("batch_norm", {}, (X,), X, call=dict(mask=Arr((4, 3), fill=1.0), train_flag=True)),
    Accept("batch_norm", {}, (X,), X, call=dict(mask=Arr((1, 3), "bool"), training=True)),
    Accept("batch_norm", dict(synchronized=True, trainable=False,
                              moving_mean_initializer="ones",
                              moving_variance_initializer="ones"), (X,), X),
    Accept("batch_norm", {}, ((2, 3),), (2, 3)),
]

LAYER: list[Row] = [
    *_shared("layer_norm"),
    Refuse("layer_norm", dict(rms_scaling=0), "rms_scaling", T),
    Accept("layer_norm", dict(rms_scaling=True), (X,), X),
    Accept("layer_normalization", dict(axis=[0, 1, 2]), (X,), X),
    Accept("layer_norm", {}, ((5,),), (5,)),
]

GROUP: list[Row] = [
    Refuse("group_norm", dict(groups=0), "groups"),
    Refuse("group_norm", dict(groups=-2), "groups"),
    Refuse("group_norm", dict(groups=2.0), "groups", T),
    Refuse("group_norm", dict(groups=2, input_size=5), "groups"),
    Refuse("group_norm", dict(groups=2), "groups", inputs=(X,)),
    Refuse("group_norm", dict(input_size=0), "input_size"),
    Refuse("group_norm", dict(input_size=[4]), "input_size", T),
    Refuse("group_norm", dict(axis=0), "axis"),
    Refuse("group_norm", dict(axis=[1]), "axis", T),
    Refuse("group_norm", dict(epsilon=-1.0), "epsilon"),
    Refuse("group_norm", dict(center="no"), "center", T),
    Refuse("group_norm", dict(scale=0), "scale", T),
    Refuse("group_norm", dict(beta_initializer="nope"), "beta_initializer"),
    Refuse("group_norm", dict(gamma_initializer="nope"), "gamma_initializer"),
    Refuse("group_norm", dict(gamma_initializer="Orthogonal"), "gamma_initializer"),  # rank 1
    Refuse("group_norm", dict(beta_initializer="Orthogonal"), "beta_initializer"),
    Refuse("group_norm", dict(mask=[["a"]]), "mask", T),
    Refuse("group_norm", dict(dtype="complex64"), "dtype", T),
    Refuse("group_norm", dict(groups=5), "data", inputs=((4,),),
           words=("rank >= 2",)),  # no batch axis besides
    Refuse("group_norm", dict(groups=-1), "data", inputs=((4, 0),)),  # no channels
    Refuse("group_norm", dict(groups=5, axis=3), "data", inputs=(X,)),
    Refuse("group_norm", dict(groups=5, axis=-3), "axis", inputs=(X,)),  # the batch axis
    Refuse("group_norm", dict(groups=5, input_size=5), "data", inputs=((4, 5, 3),)),
    Refuse("group_norm", dict(groups=5), "mask", inputs=(X,), call=dict(mask=Arr((4, 3, 2)))),
    Refuse("group_norm", dict(groups=5, mask=Arr((2, 3, 5))), "mask", inputs=(X,)),
    Accept("group_norm", dict(groups=5, input_size=5), (X,), X),
    Accept("group_norm", dict(groups=-1), (X,), X),
    Accept("group_norm", dict(groups=1, epsilon=0.0, center=False, scale=False), (X,), X),
    Accept("group_normalization", dict(groups=3, axis=1), (X,), X),
    Accept("group_norm", dict(groups=5, mask=Arr((4, 3, 1), fill=1.0)), (X,), X),
    Accept("group_norm", dict(groups=5), (X,), X, call=dict(mask=Arr((1, 3, 5), "bool"))),
    Accept("group_norm", dict(groups=5, beta_initializer="ones", gamma_initializer="He",
                              dtype="bfloat16"), (X,), X),
]

ROWS: list[Row] = [*BATCH, *LAYER, *GROUP]
