"""Runs one case: mlxnote against its TensorFlow reference and a float64 oracle.

For a numeric case the engine

1. builds the mlxnote layer (lazily when the case omits ``input_size``), in the case's
   mode and dtype, and fills the inputs with seeded values rounded to that dtype;
2. takes the layer's weights with ``get_weights()`` (Note's layout) and gives the same
   values to the reference, once in the case's dtype and once in float64 (the oracle);
3. runs ``case.steps`` forward calls on every side; on the last one, it takes the
   vector-Jacobian product with one random cotangent (rounded to the dtype):
   ``mx.value_and_grad`` for mlxnote, ``tf.GradientTape`` for TensorFlow (mode 'vjp');
4. compares outputs, gradients with respect to every differentiable input and every
   trainable weight (mapped to Note's layout), and the layer state if it has any; and, as
   the check ``dtypes``, the dtype of each of them (and of every weight) before any
   conversion against the contract (:func:`expected_dtype`);
5. before it computes, a ``set_weights`` round trip through the layer and every mlxnote
   layer inside it (:func:`weight_round_trip`, the check ``set_weights``): new values must
   come back from ``get_weights`` exactly, and the old ones restore every array;
6. after the compared call, the check ``attributes`` (:mod:`conformance.attributes`): the
   layer and its parts are built, ``output_size`` is the output's feature size, and
   ``from_config(get_config())`` with the same weights computes the same outputs;
7. for each further execution mode the spec declares (``LayerSpec.modes``: 'untraced', a
   plain forward call; 'compiled', the forward call under ``mx.compile``), runs a fresh
   set-up of the case that way and compares its outputs with the same references.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlxnote.nn.layer import resolve_path

from . import arrays, attributes
from .arrays import make_input, np32, round_to, to_mx
from .case import TRAIN_FLAGS, Case, Expected, LayerSpec, Trial, resolve
from .compare import NEARBY_DRAWS, Check, compare, exact, nearby, reexaminable


@dataclass
class CaseResult:
    case: Case
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    xfail: Expected | None = None  # the entry that expects this case to fail

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


# -- the mlxnote side ------------------------------------------------------------------
def build_layer(case: Case, spec: LayerSpec, cls: type | None = None):
    """The case's layer (``cls`` replaces the mlxnote class: the self-test's mutants)."""
    from mlxnote import nn

    kwargs = resolve(case.kwargs, "mlx")
    if spec.build is not None and cls is None:
        return spec.build(kwargs, case.dtype)
    if spec.has_dtype:
        kwargs.setdefault("dtype", case.dtype)
    return (cls or getattr(nn, case.layer))(**kwargs)


def prepare(case: Case, spec: LayerSpec, cls: type | None = None, nudge: int = 0) -> Trial:
    """One seeded set-up of a case's mlxnote side (see :class:`Trial`); ``nudge > 0``: the
    nearby problem of that number (float32 inputs moved here, weights in :func:`_ready`)."""
    rng = np.random.default_rng(case.seed)
    mx.random.seed(case.seed)

    def build():
        layer = build_layer(case, spec, cls)
        layer.train(case.mode == "train")
        return layer

    layer = build()
    inputs = [make_input(i, rng, case.dtype) for i in case.inputs]
    if nudge:
        moves = np.random.default_rng([case.seed, nudge])
        inputs = [arrays.nudge(a, moves) if i.differentiable and i.given in (None, "float32")
                  else a for a, i in zip(inputs, case.inputs)]
    xs = [to_mx(a, i, case.dtype) for a, i in zip(inputs, case.inputs)]
    return Trial(case, layer, inputs, xs, resolve(case.call_kwargs, "mlx"), rng, build,
                 numeric=lambda: numeric(case, spec, cls), nudge=nudge)


def _call(spec: LayerSpec) -> Callable:
    return spec.call or (lambda layer, ins, kw: layer(*ins, **kw))


def _ready(trial: Trial, spec: LayerSpec) -> list[np.ndarray]:
    """Build lazily in eval mode and without train flags, so that no state changes; run the
    ``steps - 1`` calls before the compared one; return the weights (Note's layout) the
    references get."""
    layer, call = trial.layer, _call(spec)
    if not layer.built:
        was = layer.training
        layer.eval()
        call(layer, trial.xs, {k: v for k, v in trial.call_kwargs.items()
                               if k not in TRAIN_FLAGS})
        layer.train(was)
    if trial.nudge:
        moves = np.random.default_rng([trial.case.seed, trial.nudge, 1])
        layer.set_weights([arrays.nudge(w, moves) if np.asarray(w).dtype.kind == "f" else w
                           for w in layer.get_weights()])
    trial.round_trip = weight_round_trip(layer, trial.case)
    weights = layer.get_weights()
    for _ in range(trial.case.steps - 1):
        mx.eval(call(layer, trial.xs, trial.call_kwargs))
    return weights


def dtype_name(a) -> str:
    """``'float32'`` for an mx array of dtype ``mx.float32`` (and so on)."""
    return str(a.dtype).rsplit(".", 1)[-1]


def expected_dtype(case: Case) -> str:
    """The dtype every floating output, gradient, weight and state of a case must have.

    decisions.md 3: ``dtype`` is the dtype of the weights and of the computation, inputs
    are cast to it (16-bit layers on the CPU compute in float32 but round at their output:
    the output is still in the layer's dtype); a layer without ``dtype`` (pooling, flatten;
    decision 35) keeps its input's dtype, which the engine gives in the case's dtype. A
    gradient has its primal's dtype (MLX's rule). So every floating quantity is in the
    case's dtype; an integer or boolean output is not checked.
    """
    return case.dtype


def dtype_check(case: Case, named: list[tuple], label: str = "dtypes") -> Check:
    """One check over the dtypes of ``named`` arrays, ``(name, array)`` or ``(name,
    array, expected dtype)`` (default :func:`expected_dtype`), before any conversion."""
    floats = [(n[0], dtype_name(n[1]), n[2] if len(n) > 2 else expected_dtype(case))
              for n in named
              if isinstance(n[1], mx.array) and mx.issubdtype(n[1].dtype, mx.floating)]
    bad = [f"{n} is {d}, not {w}" for n, d, w in floats if d != w]
    return exact(label, not bad, "; ".join(bad), value=float(len(floats)))


def _tree_arrays(layer) -> list[tuple[str, mx.array]]:
    return [(k, v) for k, v in tree_flatten(layer.parameters()) if isinstance(v, mx.array)]


def weight_round_trip(layer, case: Case) -> list[str]:
    """``set_weights`` through the layer and every mlxnote layer inside it: new values
    (the old ones perturbed, rounded to the case dtype) must come back from
    ``get_weights`` exactly, and setting the old ones back must restore every stored
    array bit for bit. Returns the failures (empty: it held); the layer ends as it began."""
    from mlxnote.nn.layer import Layer

    rng = np.random.default_rng(case.seed + 104729)
    found = []
    inner = [("", layer)] + [(p, m) for p, m in layer.named_modules()
                             if p and isinstance(m, Layer)]
    for path, lyr in inner:
        name = f"{type(lyr).__name__}{' at ' + path if path else ''}"
        try:
            before = [(k, mx.array(v)) for k, v in _tree_arrays(lyr)]
            w0 = lyr.get_weights()
            if not w0:
                continue
            w1 = [round_to(np.asarray(w, np.float64) * rng.uniform(0.5, 1.5, np.shape(w))
                           + rng.uniform(0.01, 0.1, np.shape(w)), case.dtype) for w in w0]
            lyr.set_weights([w.astype(np.float32) for w in w1])
            got = lyr.get_weights()
            bad = [j for j, (a, b) in enumerate(zip(got, w1))
                   if np.shape(a) != np.shape(b) or not np.array_equal(
                       np.asarray(a, np.float64), b)]
            if len(got) != len(w1) or bad:
                found.append(f"{name}: get_weights after set_weights differs at {bad}")
            lyr.set_weights(w0)
            after = dict(_tree_arrays(lyr))
            changed = [k for k, v in before if k not in after or after[k].dtype != v.dtype
                       or not mx.array_equal(after[k], v).item()]
            if changed:
                found.append(f"{name}: set_weights(get_weights()) changed {changed[:4]}")
            if not lyr.built:
                found.append(f"{name}: not built after set_weights")
        except Exception as e:  # the check reports it
            found.append(f"{name}: {type(e).__name__}: {e}")
    return found


def run_mlx(trial: Trial, spec: LayerSpec):
    """Mode 'vjp': returns (weights, outputs, input grads, param grads, cotangents), all
    NumPy float64, and the arrays before conversion (named) for the dtype check."""
    case, layer, xs, call_kwargs = trial.case, trial.layer, trial.xs, trial.call_kwargs
    call = _call(spec)
    weights = _ready(trial, spec)
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
    names = [i.name for i in case.inputs if i.differentiable]
    raw = [(_out_name(j, len(outs)), o) for j, o in enumerate(outs)]
    # an input's gradient has the dtype the input was given in (MLX's rule)
    raw += [(f"grad:{n}", g, case.inputs[k].given or case.dtype)
            for n, g, k in zip(names, grads[:len(diff)], diff)]
    raw += [(f"grad:{n}", g) for n, g in zip(pnames, grads[len(diff):])]
    raw += [(f"weight:{k}", v) for k, v in _tree_arrays(layer)]
    out_np = [np32(o) for o in outs]
    gin = [np32(g) for g in grads[:len(diff)]]
    gparam = [np32(layer.note_value(n, g)) for n, g in zip(pnames, grads[len(diff):])]
    return weights, out_np, gin, gparam, cts, raw


def _out_name(j: int, n: int) -> str:
    return "output" if n == 1 else f"output[{j}]"


def run_forward(trial: Trial, spec: LayerSpec, mode: str):
    """Modes 'untraced' and 'compiled': the outputs of one forward call, right after the
    'vjp' mode's traced one (the layers must tell the two apart by themselves), as NumPy
    float64 and as they came (for the dtype check)."""
    layer, kw, call = trial.layer, trial.call_kwargs, _call(spec)
    _ready(trial, spec)

    def forward(*xs):
        return [o for _, o in tree_flatten(call(layer, list(xs), kw))]

    if mode == "compiled":  # as a compiled training step does it
        state = [layer.state, mx.random.state]
        forward = mx.compile(forward, inputs=state, outputs=state)
    outs = forward(*trial.xs)
    mx.eval(outs)
    return [np32(o) for o in outs], outs


# -- the reference side ----------------------------------------------------------------
def run_tf(case: Case, spec: LayerSpec, weights, inputs, cts, tf_dtype):
    """TensorFlow side in ``tf_dtype``: (outputs, input grads, param grads, state)."""
    import tensorflow as tf

    ref = spec.reference(case, [np.asarray(w, np.float64) for w in weights], tf_dtype)
    xs = []
    for a, i in zip(inputs, case.inputs):
        if i.differentiable:
            xs.append(tf.constant(a, dtype=tf_dtype))
        else:
            xs.append(tf.constant(a))
    call_kwargs = case.reference_call_kwargs()
    for _ in range(case.steps - 1):
        ref.fn(*xs, training=case.training, **call_kwargs)
    diff = [xs[k] for k, i in enumerate(case.inputs) if i.differentiable]
    with tf.GradientTape() as tape:
        for x in diff:
            tape.watch(x)
        out = ref.fn(*xs, training=case.training, **call_kwargs)
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


# -- the comparison --------------------------------------------------------------------
def numeric(case: Case, spec: LayerSpec, cls: type | None = None,
            reexamine: bool = True) -> list[Check]:
    """Every execution mode of the spec against the reference and the oracle; float32
    failures by a few ulps are re-examined on nearby problems (``compare.py``) unless
    ``reexamine`` is off."""
    checks = _numeric(case, spec, cls, 0)
    failed = [c for c in checks if reexaminable(c, case.dtype)] if reexamine else []
    if failed:
        draws = [{c.name: c for c in _numeric(case, spec, cls, k)}
                 for k in range(1, NEARBY_DRAWS)]
        for c in failed:
            found = [d.get(c.name) for d in draws]
            if all(f is not None and f.meaningful(case.dtype) for f in found):
                nearby(c, [c.rel] + [f.rel for f in found],
                       [c.tf_rel] + [f.tf_rel for f in found], case.dtype)
    return checks


def _numeric(case: Case, spec: LayerSpec, cls: type | None, nudge: int) -> list[Check]:
    import tensorflow as tf

    tf_dt = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}[case.dtype]
    trial = prepare(case, spec, cls, nudge)
    weights, outs, gin, gparam, cts, raw = run_mlx(trial, spec)
    r_outs, r_gin, r_gparam, r_state = run_tf(case, spec, weights, trial.inputs, cts, tf_dt)
    o_outs, o_gin, o_gparam, o_state = run_tf(case, spec, weights, trial.inputs, cts,
                                              tf.float64)
    if len(outs) != len(r_outs):
        return [Check("output", False, detail=f"{len(outs)} outputs, reference has "
                      f"{len(r_outs)}")]
    checks = [compare(_out_name(j, len(outs)), a, b, c, case.dtype)
              for j, (a, b, c) in enumerate(zip(outs, r_outs, o_outs))]
    names = [i.name for i in case.inputs if i.differentiable]
    for n, a, b, c in zip(names, gin, r_gin, o_gin):
        checks.append(compare(f"grad:{n}", a, b, c, case.dtype))
    pnames = trial.layer.param_names
    if len(gparam) != len(r_gparam):
        checks.append(Check("grad:params", False, detail=f"{len(gparam)} trainable weights, "
                            f"reference has {len(r_gparam)}"))
    else:
        for n, a, b, c in zip(pnames, gparam, r_gparam, o_gparam):
            checks.append(compare(f"grad:{n}", a, b, c, case.dtype))
    if spec.state is not None:
        for n, a in spec.state(trial.layer).items():
            checks.append(compare(f"state:{n}", a, r_state[n], o_state.get(n), case.dtype))
    checks.append(exact("set_weights", not trial.round_trip, "; ".join(trial.round_trip)))
    checks.append(dtype_check(case, raw))
    found = attributes.problems(trial, _call(spec), [r[1] for r in raw
                                                     if r[0].startswith("output")])
    checks.append(exact("attributes", not found, "; ".join(found)))
    for mode in spec.modes[1:] if case.dtype in spec.mode_dtypes else ():
        m_outs, m_raw = run_forward(prepare(case, spec, cls, nudge), spec, mode)
        checks.append(dtype_check(case, [(f"{n} {mode}", o) for (n, _), o in
                                         zip(raw, m_raw)], f"dtypes {mode}"))
        if len(m_outs) != len(r_outs):
            checks.append(Check(f"output {mode}", False, detail=f"{len(m_outs)} outputs, "
                                f"reference has {len(r_outs)}"))
            continue
        checks += [compare(f"output[{j}] {mode}", a, b, c, case.dtype)
                   for j, (a, b, c) in enumerate(zip(m_outs, r_outs, o_outs))]
    return checks


def run_case(case: Case, spec: LayerSpec, cls: type | None = None) -> CaseResult:
    """One case's checks (``cls`` replaces the layer's class: the self-test's mutants)."""
    t0 = time.perf_counter()
    res = CaseResult(case)
    try:
        res.checks = (spec.check(prepare(case, spec, cls)) if spec.check is not None
                      else numeric(case, spec, cls))
    except Exception:  # the report shows it; the run fails
        res.error = traceback.format_exc(limit=6)
    res.seconds = time.perf_counter() - t0
    return res
