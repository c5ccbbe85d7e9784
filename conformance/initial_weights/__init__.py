"""Initial weights against their documented distributions (issue 19): the TF references
take their weights from mlxnote, so without these rows nothing checks how mlxnote draws them.

For every layer with weights (:mod:`.specs`: the documented layers, Bidirectional and the
Transformer's blocks), each weight of ``get_weights()`` (Note's layout and creation order)
is built with the documented defaults and with other initializer forms and judged
(:mod:`.dists`) against the distribution ``note-semantics.md`` §0.4 gives it, with the fans
of that section's table computed from the layer's arguments: Note's shape, exact bounds,
mean and std, and a two-sample Kolmogorov-Smirnov statistic against Keras's initializer
(``GlorotUniform``, ``HeNormal``, ...; Keras's fans are Note's for these shapes, and each
reference is itself judged against the documented distribution). Every documented form
(Note's names, the Keras spellings, the list and tuple forms) runs on a dense and a conv2d
kernel and on a large bias (rank-1 fans). Besides: the same seed gives the same weights and
another seed others; no two random weights of a layer are equal; float16 and bfloat16
layers hold their weights in their dtype; malformed initializers are refused naming the
layer and the argument. Everything is seeded, so every verdict is fixed.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from .dists import Dist, expect, judge
from .specs import B_INIT, CONV, W_INIT, Spec, dense_w, specs

SEED = 19
FAN_IN = "He_uniform"  # fan_in only
FAN_OUT = ["VarianceScaling", 1.0, "fan_out", "uniform"]  # fan_out only
NORM_FORMS = ({"beta_initializer": ["normal", 0.5, 2.0], "gamma_initializer": ["uniform", 0.9, 1.1],
               "moving_mean_initializer": "He_uniform",
               "moving_variance_initializer": ["truncated_normal", 0.3]},
              {"beta_initializer": "Xavier", "gamma_initializer": "Lecun",
               "moving_mean_initializer": ["VarianceScaling", 2.0, "fan_out", "truncated_normal"],
               "moving_variance_initializer": "zeros"})
NOTE_NAMES = ("Xavier", "Xavier_normal", "He", "He_normal", "He_uniform", "Lecun",
              "Lecun_normal", "Lecun_uniform", "Orthogonal", "zeros", "ones", "normal",
              "uniform")
KERAS_SPELLINGS = ("glorot_uniform", "glorot_normal", "he_normal", "lecun_normal",
                   "random_uniform", "random_normal", "orthogonal", "zero", "one",
                   "xavier_uniform", "HE_UNIFORM")
LIST_FORMS = (["normal", 0.5, 2.0], ("normal", -1.0, 0.1), ["uniform", -0.3, 0.7],
              ("uniform", 2, 3), ["truncated_normal", 0.2],
              *(["VarianceScaling", s, m, d] for s, m, d in [
                  (1.0, "fan_in", "uniform"), (2.0, "fan_out", "uniform"),
                  (3.0, "fan_avg", "uniform"), (1.0, "fan_in", "truncated_normal"),
                  (0.5, "fan_out", "truncated_normal"), (2.0, "fan_avg", "truncated_normal")]),
              ["Orthogonal", 1.5], ("Orthogonal", 0.5, 11))
MALFORMED = (["normal", 0.0], ["normal", 0.0, "x"], ["normal", "x", 1.0], ["normal", 0, 1, 2],
             ["uniform", 0.0], ["uniform", 0.0, "x"], ["uniform", "x", 1.0],
             ["truncated_normal"], ["truncated_normal", "x"], ["truncated_normal", 1.0, 2.0],
             ["VarianceScaling", 1.0, "fan_in"], ["VarianceScaling", "x", "fan_in", "uniform"],
             ["VarianceScaling", 1.0, "fan_x", "uniform"],
             ["VarianceScaling", 1.0, "fan_in", "normal"], ["Orthogonal"], ["Orthogonal", "x"],
             ["Orthogonal", 1.0, "x"], ["Orthogonal", 1.0, -1], ["Orthogonal", 1.0, 2, 3],
             ["bogus", 1.0], "bogus", "")


def _row(name: str, fn) -> tuple[str, Any]:
    """A row to run: ``(name, fn)``, ``fn()`` giving '' or what went wrong."""
    return f"initial weights: {name}", fn


def build(spec: Spec, dtype: str = "float32", seed: int = SEED, **inits: Any) -> Any:
    mx.random.seed(seed)
    return spec.make(dtype=dtype, **inits)


def _distinct(names: list[str], ws: list[np.ndarray]) -> list[str]:
    """Random weights of one layer are separate draws: no two of them are equal."""
    rnd = [(n, w) for n, w in zip(names, ws) if w.size > 1 and w.min() != w.max()]
    return [f"{a} and {b} are equal" for i, (a, x) in enumerate(rnd) for b, y in rnd[i + 1:]
            if x.shape == y.shape and np.array_equal(x, y)]


def _dtypes(layer: Any, names: list[str], ws: list[np.ndarray], dtype: str) -> list[str]:
    """Every stored array has the layer's dtype; ``get_weights`` gives it (bfloat16 as
    float32 holding bfloat16 values)."""
    from mlx.utils import tree_flatten

    want = getattr(mx, dtype)
    out = [f"{k} stored as {v.dtype}" for k, v in tree_flatten(layer.parameters())
           if v.dtype != want]
    np_want = np.float16 if dtype == "float16" else np.float32
    out += [f"{n}: get_weights gives {w.dtype}" for n, w in zip(names, ws) if w.dtype != np_want]
    if dtype == "bfloat16":
        out += [f"{n}: not bfloat16 values" for n, w in zip(names, ws)
                if not np.array_equal(np.array(mx.array(w).astype(want).astype(mx.float32)), w)]
    return out


def check(spec: Spec, dtype: str = "float32", **inits: Any) -> str:
    """'' when every weight of ``spec``'s layer built with ``inits`` (the rest documented
    defaults) follows its documented distribution, else what does not."""
    layer = build(spec, dtype, **inits)
    ws, names = layer.get_weights(), layer.weight_names
    if len(ws) != len(spec.weights):
        return f"{len(ws)} weights {names}; the documentation has {len(spec.weights)}"
    table = {**spec.defaults, **inits}
    out = []
    for name, w, doc in zip(names, ws, spec.weights):
        if tuple(w.shape) != doc.shape:
            out.append(f"{name}: shape {tuple(w.shape)}, documented {doc.shape}")
            continue
        init = table[doc.arg]
        dist = init if isinstance(init, Dist) else expect(init, doc.fans)
        out += [f"{name} ({doc.arg}={init!r}, fans {doc.fans}, {dist}): {p}"
                for p in judge(w, dist, dtype)]
    out += _distinct(names, ws) + _dtypes(layer, names, ws, dtype)
    return "; ".join(out)


def seeded(spec: Spec) -> str:
    """The same seed gives the same weights, another seed other random weights."""
    def draw(seed: int, other: int) -> Any:
        if spec.own_seed:  # the layer's seed, whatever the global generator did
            mx.random.seed(other)
            return spec.make(seed=seed)
        return build(spec, seed=seed)

    first = draw(5, 1)
    names, a = first.weight_names, first.get_weights()
    b, c = draw(5, 2).get_weights(), draw(6, 1).get_weights()
    out = [f"{n} differs under the same seed" for n, x, y in zip(names, a, b)
           if not np.array_equal(x, y)]
    out += [f"{n} is the same under another seed" for n, x, y in zip(names, a, c)
            if x.size > 1 and x.min() != x.max() and np.array_equal(x, y)]
    return "; ".join(out)


def _kernel_arg(spec: Spec) -> str | None:
    return next((a for a in spec.args if a in (W_INIT, "initializer")), None)


def layer_rows(spec: Spec) -> list:
    rows = [_row(f"{spec.name}: documented defaults", lambda: check(spec))]
    rows += [_row(f"{spec.name}: {dt} defaults, dtype", lambda dt=dt: check(spec, dt))
             for dt in ("float16", "bfloat16")]
    rows.append(_row(f"{spec.name}: seeded", lambda: seeded(spec)))
    k = _kernel_arg(spec)
    if k is not None:
        b = {B_INIT: ["uniform", 0.25, 0.75]} if B_INIT in spec.args else {}
        rows.append(_row(f"{spec.name}: {k}={FAN_IN!r} (fan_in), {b}",
                         lambda: check(spec, **{k: FAN_IN}, **b)))
        b = {B_INIT: "ones"} if B_INIT in spec.args else {}
        rows.append(_row(f"{spec.name}: {k}={FAN_OUT!r} (fan_out), {b}",
                         lambda: check(spec, **{k: FAN_OUT}, **b)))
        rows.append(_row(f"{spec.name}: {k}='Orthogonal'",
                         lambda: check(spec, **{k: "Orthogonal"})))
    for forms in NORM_FORMS:
        given = {a: f for a, f in forms.items() if a in spec.args}
        if given:
            rows.append(_row(f"{spec.name}: {given}", lambda g=given: check(spec, **g)))
    return rows


def form_rows() -> list:
    """Every documented form on a dense kernel [96, 128], a grouped conv2d kernel
    [3, 3, 16, 48] (rank-4 fans) and a bias [8192] (rank-1 fans)."""
    from mlxnote import nn

    by_name = {s.name: s for s in specs()}
    wide = Spec("dense bias [8192]", lambda **kw: nn.dense(8192, 2, **kw), dense_w(2, 8192),
                CONV)
    big = Spec("dense [512, 384]", lambda **kw: nn.dense(384, 512, **kw), dense_w(512, 384),
               CONV)
    rows = [_row(f"{big.name}: weight_initializer='Orthogonal' (sign-corrected)",
                 lambda: check(big, weight_initializer="Orthogonal"))]
    for spec, arg in ((by_name["dense"], W_INIT), (by_name["conv2d"], W_INIT), (wide, B_INIT)):
        for form in (*NOTE_NAMES, *KERAS_SPELLINGS, *LIST_FORMS):
            if arg == B_INIT and "orthogonal" in str(form).lower():
                continue  # rank 1: refused (a row below)
            rows.append(_row(f"{spec.name}: {arg}={form!r}",
                             lambda s=spec, a=arg, f=form: check(s, **{a: f})))
    return rows


def refusal_rows() -> list:
    """Malformed forms (and Orthogonal for a rank-1 weight) are refused at construction,
    lazily built layers too, with a ValueError naming the layer and the argument."""
    from mlxnote import nn

    from ..contracts import _raises

    rows = []
    for bad in MALFORMED:
        rows.append(_row(f"dense: weight_initializer={bad!r} refused", lambda b=bad: _raises(
            lambda: nn.dense(4, 4, weight_initializer=b), ValueError, "dense",
            "'weight_initializer'") or _raises(lambda: nn.dense(4, weight_initializer=b),
                                               ValueError, "dense", "'weight_initializer'")))
    for bad in (3, None, 1.5):
        rows.append(_row(f"dense: bias_initializer={bad!r} refused (TypeError)",
                         lambda b=bad: _raises(lambda: nn.dense(4, 4, bias_initializer=b),
                                               TypeError, "dense", "'bias_initializer'")))
    rows.append(_row("dense: bias_initializer='Orthogonal' refused (rank 1)", lambda: _raises(
        lambda: nn.dense(4, 4, bias_initializer="Orthogonal"), ValueError, "dense",
        "'bias_initializer'")))
    return rows


def orthogonal_seed() -> str:
    """``['Orthogonal', gain, seed]`` draws from its own seed (note-semantics §0.4)."""
    from mlxnote import nn

    def draw(seed: int, other: int) -> np.ndarray:
        mx.random.seed(other)
        return nn.dense(64, 64, weight_initializer=["Orthogonal", 1.0, seed]).get_weights()[0]

    a, b, c = draw(3, 1), draw(3, 2), draw(4, 1)
    return "; ".join(p for p, bad in [
        ("the same seed gave other weights after the global seed changed",
         not np.array_equal(a, b)),
        ("seeds 3 and 4 gave the same weights", np.array_equal(a, c))] if bad)


def run(select: str | None = None) -> list:
    """Every row (those whose name contains ``select``, when given), run."""
    from ..contracts import _row as row

    rows = [r for s in specs() for r in layer_rows(s)]
    rows += form_rows() + refusal_rows()
    rows.append(_row("['Orthogonal', gain, seed] keeps its seed", orthogonal_seed))
    unique = dict(reversed(rows))  # a form that is also a layer row: once
    return [row(name, fn) for name, fn in rows
            if unique.pop(name, None) is not None and (select is None or select in name)]
