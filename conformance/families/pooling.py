"""Pooling family: max_pool1d/2d/3d and avg_pool1d/2d/3d against ``tf.nn.max_pool`` and
``tf.nn.avg_pool``, and flatten against ``keras.layers.Flatten``, forward and backward, in
the three dtypes (the layers keep their input's dtype: no ``dtype`` argument).

Every padding form (TF's SAME/VALID in any case, Note's explicit zero padding as an int or
per-dimension pairs), the ``ksize`` forms, strides below, equal to and above the window,
and both data formats. Inputs are standard normals, so a max has no ties in float32; in
16-bit ties can occur, and TensorFlow's rule (the gradient goes to the first maximum in
row-major order) is the kernel's.
"""

from __future__ import annotations

from ..case import Case, Expected, Input, LayerSpec, grid
from ..reference import pooling as ref

SHAPE = {1: (2, 9, 3), 2: (2, 7, 8, 3), 3: (2, 5, 6, 4, 2)}
FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def _channels_first(shape):
    return (shape[0], shape[-1], *shape[1:-1])


def _sets(n: int, op: str) -> list[dict]:
    k2 = [2, 3, 2][:n]
    pairs = [(1, 0), (0, 2), (1, 1)][:n]
    sets = [
        dict(kernel_size=3, strides=2, padding="SAME"),
        dict(kernel_size=2),  # strides = kernel_size, padding 0
        dict(kernel_size=3, strides=1, padding="same"),
        dict(kernel_size=2, strides=3, padding="VALID"),
        dict(kernel_size=3, strides=2, padding="valid"),
        dict(kernel_size=k2, strides=[1, 2, 1][:n], padding="SAME"),
        dict(kernel_size=[1, *[2] * n, 1], strides=[1, *[2] * n, 1], padding="VALID"),
        dict(kernel_size=[3], strides=[2], padding="SAME"),
        dict(kernel_size=2, padding=1),  # Note's zero padding, then VALID
        dict(kernel_size=3, strides=2, padding=pairs if n > 1 else (1, 2)),
        dict(kernel_size=2, strides=2, padding=2 if n == 1 else [1] * n),
    ]
    if op == "max":
        sets.append(dict())  # Note's default window (2 per axis)
    return sets


def _first(n: int) -> list[dict]:
    return [dict(kernel_size=2, strides=2, padding="SAME", data_format=FIRST[n]),
            dict(kernel_size=[1, 1, *[3] * n], strides=1, padding="VALID",
                 data_format="channels_first"),
            dict(kernel_size=2, strides=1, padding=1, data_format=FIRST[n])]


CASES: list[Case] = []
SPECS: list[LayerSpec] = []
for n in (1, 2, 3):
    for op in ("max", "avg"):
        name = f"{op}_pool{n}d"
        CASES += grid(name, _sets(n, op), [SHAPE[n]], smoke=1)
        CASES += grid(name, _first(n), [_channels_first(SHAPE[n])])
        CASES += grid(name, [dict(kernel_size=2, strides=1, padding="SAME",
                                  data_format="channels_last")], [(3, *[4] * n, 1)])
        # One output position per axis (the window covers the input): the uniform-count
        # division reads the only count there is.
        CASES += grid(name, [dict(kernel_size=3, padding="VALID")], [(2, *[3] * n, 2)],
                      dtypes=("float32",))
        SPECS.append(LayerSpec(name, ["kernel_size", "strides", "padding", "data_format"],
                               reference=ref.pooling(n, op), has_dtype=False))

CASES += grid("flatten", [dict()], [Input((2, 3, 4, 5))], smoke=1)
CASES += grid("flatten", [dict()], [Input((4, 3, 5))])
CASES += grid("flatten", [dict()], [Input((5,))])
CASES += grid("flatten", [dict()], [Input((3, 2, 1, 2, 2))])
SPECS.append(LayerSpec("flatten", [], reference=ref.flatten, has_dtype=False))

EXPECTED: list[Expected] = []
