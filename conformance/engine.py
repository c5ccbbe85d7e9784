"""Runs one case: mlxnote against its TensorFlow reference and a float64 oracle.

For a numeric case the engine

1. builds the mlxnote layer (lazily when the case omits ``input_size``), in the case's
   mode and dtype, and fills the inputs with seeded values rounded to that dtype;
2. takes the layer's weights with ``get_weights()`` (Note's layout) and gives the same
   values to the reference, once in the case's dtype and once in float64 (the oracle);
3. runs ``case.steps`` forward calls on every side; on the last one, it takes the
   vector-Jacobian product with one random cotangent (rounded to the dtype):
   ``mx.value_and_grad`` for mlxnote, ``tf.GradientTape`` for TensorFlow;
4. compares outputs, gradients with respect to every differentiable input and every
   trainable weight (mapped to Note's layout), and the layer state if it has any.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlxnote.nn.layer import resolve_path

from .case import Case, Fn, Input, LayerSpec
from .compare import Check, compare

MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}

# Callables that cases name with Fn(...): how mlxnote sees them.
MX_FNS: dict[str, Callable] = {
    "square": mx.square,
    "sin": mx.sin,
}


class Reference:
    """A TensorFlow reference for one case.

    ``fn(*inputs, training=bool, **call_kwargs)`` computes the layer on TF tensors;
    ``variables`` are the tf.Variables it differentiates against; ``grads_to_note`` maps
    the gradients of ``variables`` to Note's layout in ``layer.param`` order (identity by
    default); ``state()`` returns the layer state as ``{name: np.ndarray}``.
    """

    def __init__(self, fn: Callable, variables: Sequence = (),
                 grads_to_note: Callable | None = None, state: Callable | None = None):
        self.fn = fn
        self.variables = list(variables)
        self.grads_to_note = grads_to_note or (lambda grads: list(grads))
        self.state = state


@dataclass
class CaseResult:
    case: Case
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    xfail: Any = None  # the registry's Expected entry, when it expects this case to fail

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks) and bool(self.checks)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.xfail is not None:
            failing = [c.name for c in self.checks if not c.passed]
            if not failing:
                return "xpass"
            return "xfail" if self.xfail.covers(failing) else "fail"
        return "pass" if self.passed else "fail"

    @property
    def ok(self) -> bool:
        """Does this result keep the run green?"""
        return self.status in ("pass", "xfail")

    def worst(self, kind: str) -> float:
        vals = [c.rel for c in self.checks if c.kind == kind and c.meaningful(self.case.dtype)]
        return max(vals) if vals else 0.0

    def to_json(self) -> dict:
        c = self.case
        return {
            "id": c.id, "layer": c.layer, "dtype": c.dtype, "mode": c.mode, "tier": c.tier,
            "kwargs": {k: repr(v) for k, v in c.kwargs.items()},
            "call_kwargs": {k: repr(v) for k, v in c.call_kwargs.items()},
            "inputs": [list(i.shape) for i in c.inputs], "status": self.status,
            "xfail_reason": self.xfail.reason if self.xfail else None, "error": self.error,
            "seconds": round(self.seconds, 3),
            "checks": [ch.to_json() for ch in self.checks],
            "describe": c.describe(),
        }


# -- helpers shared by numeric and random checks ----------------------------------------
def resolve(value: Any, table: dict[str, Callable]) -> Any:
    """Replace :class:`Fn` markers (also inside lists and dicts) by ``table`` entries."""
    if isinstance(value, Fn):
        return table[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, table) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, table) for v in value)
    return value


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """Values of ``a`` rounded to ``dtype`` (and back to float64), as both sides see them."""
    return np.array(mx.array(a.astype(np.float32)).astype(MX_DTYPES[dtype]).astype(mx.float32),
                    dtype=np.float64)


def make_input(spec: Input, rng: np.random.Generator, dtype: str) -> np.ndarray:
    if spec.kind == "normal":
        return round_to(rng.standard_normal(spec.shape), dtype)
    if spec.kind == "uniform":
        return round_to(rng.uniform(-1, 1, spec.shape), dtype)
    if spec.kind == "positive":
        return round_to(rng.uniform(0.5, 1.5, spec.shape), dtype)
    if spec.kind == "mask":
        return rng.uniform(size=spec.shape) < 0.7
    if spec.kind == "int":
        return rng.integers(0, 4, spec.shape)
    raise ValueError(f"unknown input kind {spec.kind!r}")


def to_mx(a: np.ndarray, spec: Input, dtype: str) -> mx.array:
    if spec.differentiable:
        return mx.array(a.astype(np.float32)).astype(MX_DTYPES[dtype])
    return mx.array(a)


def np32(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32) if a.dtype in (mx.bfloat16, mx.float16) else a,
                    dtype=np.float64)


def build_layer(case: Case, spec: LayerSpec):
    from mlxnote import nn

    kwargs = resolve(case.kwargs, MX_FNS)
    if spec.has_dtype:
        kwargs.setdefault("dtype", case.dtype)
    return getattr(nn, case.layer)(**kwargs)


def effective_training(case: Case) -> bool:
    for k in ("train_flag", "training"):
        if case.call_kwargs.get(k) is not None:
            return bool(case.call_kwargs[k])
    return case.mode == "train"


# -- the numeric comparison ------------------------------------------------------------
def prepare(case: Case, spec: LayerSpec, build: Callable | None = None):
    """Seeded set-up of a case's mlxnote side: ``(layer in the case's mode, inputs as
    float64 NumPy rounded to the dtype, the same as mx arrays, resolved call kwargs)``."""
    rng = np.random.default_rng(case.seed)
    mx.random.seed(case.seed)
    layer = (build or build_layer)(case, spec)
    layer.train(case.mode == "train")
    inputs = [make_input(i, rng, case.dtype) for i in case.inputs]
    xs = [to_mx(a, i, case.dtype) for a, i in zip(inputs, case.inputs)]
    return layer, inputs, xs, resolve(case.call_kwargs, MX_FNS)


def run_mlx(case: Case, spec: LayerSpec, build: Callable | None = None):
    """mlxnote side: returns (layer, weights, inputs, outputs, input grads, param grads,
    cotangents), all NumPy float64 except the layer."""
    layer, inputs, xs, call_kwargs = prepare(case, spec, build)
    call = spec.call or (lambda layer, ins, kw: layer(*ins, **kw))
    if not layer.built:  # lazy build, without touching any state
        was = layer.training
        layer.eval()
        call(layer, xs, {k: v for k, v in call_kwargs.items() if k not in ("train_flag",
                                                                            "training")})
        layer.train(was)
    weights = layer.get_weights()
    for _ in range(case.steps - 1):
        mx.eval(call(layer, xs, call_kwargs))

    diff = [k for k, i in enumerate(case.inputs) if i.differentiable]
    pnames = layer.param_names
    params = [resolve_path(layer, n)[2] for n in pnames]
    cts: list[np.ndarray] = []
    ct_rng = np.random.default_rng(case.seed + 7919)

    def forward(*primals):
        ins = list(xs)
        for j, k in enumerate(diff):
            ins[k] = primals[j]
        if pnames:
            layer.update(tree_unflatten(list(zip(pnames, primals[len(diff):]))), strict=False)
        outs = [o for _, o in tree_flatten(call(layer, ins, call_kwargs))]
        loss = mx.array(0.0)
        for j, o in enumerate(outs):
            if not mx.issubdtype(o.dtype, mx.floating):
                continue
            if len(cts) <= j:
                cts.append(round_to(ct_rng.standard_normal(o.shape), case.dtype))
            loss = loss + mx.sum(o * mx.array(cts[j].astype(np.float32)).astype(o.dtype))
        return loss, outs

    primals = [xs[k] for k in diff] + params
    if primals:
        (_, outs), grads = mx.value_and_grad(forward, argnums=list(range(len(primals))))(
            *primals)
        grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        if pnames:
            layer.update(tree_unflatten(list(zip(pnames, params))), strict=False)
    else:
        _, outs = forward()
        grads = []
    mx.eval(outs, grads)
    out_np = [np32(o) for o in outs]
    gin = [np32(g) for g in grads[:len(diff)]]
    gparam = [np32(layer.note_value(n, g)) for n, g in zip(pnames, grads[len(diff):])]
    return layer, weights, inputs, out_np, gin, gparam, cts


def run_tf(case: Case, spec: LayerSpec, weights, inputs, cts, tf_dtype):
    """TensorFlow side in ``tf_dtype``: (outputs, input grads, param grads, state)."""
    import tensorflow as tf

    ref: Reference = spec.reference(case, [np.asarray(w, np.float64) for w in weights],
                                    tf_dtype)
    xs = []
    for a, i in zip(inputs, case.inputs):
        if i.differentiable:
            xs.append(tf.constant(a, dtype=tf_dtype))
        else:
            xs.append(tf.constant(a))
    call_kwargs = {k: v for k, v in case.call_kwargs.items() if k not in ("train_flag",
                                                                           "training")}
    training = effective_training(case)
    for _ in range(case.steps - 1):
        ref.fn(*xs, training=training, **call_kwargs)
    diff = [xs[k] for k, i in enumerate(case.inputs) if i.differentiable]
    with tf.GradientTape() as tape:
        for x in diff:
            tape.watch(x)
        out = ref.fn(*xs, training=training, **call_kwargs)
    outs = tf.nest.flatten(out)
    float_outs = [o for o in outs if o.dtype.is_floating]
    grads = []
    sources = diff + ref.variables
    if sources and float_outs:
        og = [tf.constant(c, dtype=o.dtype) for c, o in zip(cts, float_outs)]
        grads = tape.gradient(float_outs, sources, output_gradients=og,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
    f64 = [np.asarray(tf.cast(o, tf.float64)) if o.dtype.is_floating else np.asarray(o)
           for o in outs]
    g = [np.asarray(tf.cast(x, tf.float64)) for x in grads]
    gparam = [np.asarray(x, np.float64) for x in ref.grads_to_note(g[len(diff):])]
    state = {k: np.asarray(v, np.float64) for k, v in (ref.state() if ref.state else {}).items()}
    return f64, g[:len(diff)], gparam, state


def numeric(case: Case, spec: LayerSpec, build: Callable | None = None) -> list[Check]:
    import tensorflow as tf

    tf_dt = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}[case.dtype]
    layer, weights, inputs, outs, gin, gparam, cts = run_mlx(case, spec, build)
    r_outs, r_gin, r_gparam, r_state = run_tf(case, spec, weights, inputs, cts, tf_dt)
    o_outs, o_gin, o_gparam, o_state = run_tf(case, spec, weights, inputs, cts, tf.float64)
    checks = []
    if len(outs) != len(r_outs):
        return [Check("output", False, detail=f"{len(outs)} outputs, reference has "
                      f"{len(r_outs)}")]
    for j, (a, b, c) in enumerate(zip(outs, r_outs, o_outs)):
        checks.append(compare("output" if len(outs) == 1 else f"output[{j}]", a, b, c,
                              case.dtype))
    names = [i.name for i in case.inputs if i.differentiable]
    for n, a, b, c in zip(names, gin, r_gin, o_gin):
        checks.append(compare(f"grad:{n}", a, b, c, case.dtype))
    pnames = layer.param_names
    if len(gparam) != len(r_gparam):
        checks.append(Check("grad:params", False, detail=f"{len(gparam)} trainable weights, "
                            f"reference has {len(r_gparam)}"))
    else:
        for n, a, b, c in zip(pnames, gparam, r_gparam, o_gparam):
            checks.append(compare(f"grad:{n}", a, b, c, case.dtype))
    if spec.state is not None:
        ours = spec.state(layer)
        for n, a in ours.items():
            checks.append(compare(f"state:{n}", a, r_state[n], o_state.get(n), case.dtype))
    return checks


def run_case(case: Case, spec: LayerSpec, build: Callable | None = None) -> CaseResult:
    t0 = time.perf_counter()
    res = CaseResult(case)
    try:
        res.checks = (spec.check(case, build) if spec.check is not None
                      else numeric(case, spec, build))
    except Exception:  # the report shows it; the run fails
        res.error = traceback.format_exc(limit=6)
    res.seconds = time.perf_counter() - t0
    return res
