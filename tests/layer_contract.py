"""The layer contract as one reusable check (Keras: ``run_layer_test``), used by every
family's tests. The contract is DESIGN.md's "The layer contract".

A :class:`Contract` describes one layer configuration: the class (or any factory taking
keyword arguments), keywords that build it eagerly, its inputs, and what is particular
to it (a lazy build, Note's weight names and shapes, random or stateful modes, bad
arguments, bad inputs). :func:`check_layer` runs one check of it, or all of them.
:func:`contract_params` expands contracts into pytest parameters, one per (layer, check)
and one per bad argument or bad input, with ids such as ``conv2d-round_trip`` or
``dense-bad_args-use_bias``: ``pytest -k conv2d`` selects conv2d's contract, and a known
library defect is one ``xfail(strict=True)`` case (``Contract.xfail``).

Every check raises ``AssertionError`` naming the layer and what broke; everything is
seeded (``Contract.seed``).
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
from mlx.utils import tree_flatten

#: The checks, in the order :func:`check_layer` runs them.
CHECKS = ("build", "weights", "round_trip", "set_weights_errors", "param", "modes", "dtypes",
          "transforms")
DTYPES = ("float32", "float16", "bfloat16")
#: Output closeness of a 16-bit layer to the float32 one, relative to max(1, max |y|).
TOL = {"float16": 2e-2, "bfloat16": 8e-2}


@dataclass
class Contract:
    """One layer configuration and what its contract test needs to know.

    ``inputs``: a shape (one input) or a list of shapes or arrays (several); shapes become
    seeded standard-normal float32 arrays. Errors must name the layer's class.
    ``bad_args``: ``(overrides, exception type, argument)`` entries; ``bad_inputs``:
    ``(inputs, exception type, argument[, call keywords])`` entries, tried on a built layer.
    """

    layer: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    inputs: Any = ()
    id: str | None = None
    #: overrides that leave the layer unbuilt until its first call, e.g. ``input_size=None``
    lazy: dict | None = None
    #: Note's weight names -> Note shapes, in creation order (or just their count)
    weights: dict[str, tuple[int, ...]] | int | None = None
    #: the weights that are not trainable (batch_norm's moving statistics)
    frozen: tuple[str, ...] = ()
    #: a random layer: the overrides that switch its randomness off (``dict(rate=0.0)``)
    random: dict | None = None
    #: training-mode calls update weights (batch_norm's moving statistics)
    stateful: bool = False
    call_kwargs: dict = field(default_factory=dict)
    bad_args: Sequence[tuple] = ()
    bad_inputs: Sequence[tuple] = ()
    #: 16-bit tolerances overriding :data:`TOL`
    tol: dict[str, float] = field(default_factory=dict)
    #: check key (``'round_trip'``, ``'bad_args-use_bias'``) -> reason of a known defect
    xfail: dict[str, str] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        if self.id is None:
            self.id = getattr(self.layer, "__name__", type(self.layer).__name__)


# -- pytest parameters -------------------------------------------------------------------
def check_keys(c: Contract) -> list[str]:
    """Every check of ``c``: :data:`CHECKS`, then one key per bad argument and bad input."""
    return [*CHECKS, *bad_arg_entries(c), *bad_input_entries(c)]


def contract_params(contracts: Sequence[Contract]) -> list:
    """``pytest.param(contract, key)`` for every check of every contract, with id
    ``'<contract id>-<key>'``; ``Contract.xfail`` entries become strict xfails."""
    import pytest

    out = []
    for c in contracts:
        unknown = set(c.xfail) - set(check_keys(c))
        assert not unknown, f"{c.id}: xfail entries matching no check: {sorted(unknown)}"
        for key in check_keys(c):
            marks = [pytest.mark.xfail(strict=True, reason=c.xfail[key])] if key in c.xfail \
                else []
            out.append(pytest.param(c, key, id=f"{c.id}-{key}", marks=marks))
    return out


def check_layer(c: Contract, *keys: str) -> None:
    """Run the checks ``keys`` of ``c`` (all of them when none are given)."""
    for key in keys or check_keys(c):
        mx.random.seed(c.seed)
        if key in CHECKS:
            globals()[f"check_{key}"](c)
        elif key in (args := bad_arg_entries(c)):
            _check_bad_arg(c, *args[key])
        elif key in (ins := bad_input_entries(c)):
            _check_bad_input(c, *ins[key])
        else:
            raise KeyError(f"{c.id}: no check {key!r}")


# -- helpers -----------------------------------------------------------------------------
def make(c: Contract, **overrides) -> Any:
    """A fresh layer: ``c.kwargs`` updated with ``overrides``."""
    return c.layer(**{**c.kwargs, **overrides})


def inputs(c: Contract, spec: Any = None, seed: int | None = None) -> list:
    """The call's inputs (``spec`` as ``Contract.inputs``; default ``c.inputs``), seeded."""
    spec = c.inputs if spec is None else spec
    rng = np.random.default_rng(c.seed if seed is None else seed)
    items = spec if isinstance(spec, list) else [spec]
    return [mx.array(rng.standard_normal(s).astype(np.float32)) if isinstance(s, tuple) else s
            for s in items]


def call(c: Contract, layer: Any, xs: Sequence, **kw) -> list[mx.array]:
    """The output leaves of ``layer(*xs)`` (tuples of outputs flattened, evaluated)."""
    out = leaves(layer(*xs, **{**c.call_kwargs, **kw}))
    mx.eval(out)
    return out


def leaves(out: Any) -> list[mx.array]:
    if isinstance(out, mx.array):
        return [out]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in leaves(o)]
    raise AssertionError(f"an output of type {type(out).__name__}: expected mx.array or "
                         "tuples of them")


def to_np(a: mx.array) -> np.ndarray:
    return np.array(a if a.dtype == mx.float32 else a.astype(mx.float32))


def same(a: Sequence[mx.array], b: Sequence[mx.array]) -> bool:
    """Exactly equal output leaves (shapes, dtypes and values)."""
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(to_np(x), to_np(y))
        for x, y in zip(a, b))


def assert_same(c: Contract, a, b, what: str) -> None:
    assert same(a, b), f"{c.id}: {what}: outputs differ " + _diff(a, b)


def assert_close(c: Contract, got, want, tol: float, what: str) -> None:
    assert len(got) == len(want), f"{c.id}: {what}: {len(got)} outputs, expected {len(want)}"
    for g, w in zip(got, want):
        assert g.shape == w.shape, f"{c.id}: {what}: shape {g.shape}, expected {w.shape}"
        gn, wn = to_np(g), to_np(w)
        scale = max(1.0, float(np.abs(wn).max(initial=0.0)))
        err = float(np.abs(gn - wn).max(initial=0.0))
        assert err <= tol * scale, f"{c.id}: {what}: max abs error {err:.3g} > {tol * scale:.3g}"


def _diff(a, b) -> str:
    if len(a) != len(b):
        return f"({len(a)} vs {len(b)} outputs)"
    for x, y in zip(a, b):
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"(shape/dtype {x.shape} {x.dtype} vs {y.shape} {y.dtype})"
        d = np.abs(to_np(x) - to_np(y))
        if d.size and d.max() > 0:
            return f"(max abs difference {float(d.max()):.3g})"
    return ""


def weights_equal(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def perturbed(c: Contract, layer: Any) -> list[np.ndarray]:
    """The layer's weights plus seeded noise (float32): values no initializer gives, so a
    round trip that drops them shows (variances stay positive)."""
    rng = np.random.default_rng(c.seed + 1)
    return [(w + 0.1 * rng.standard_normal(w.shape)).astype(np.float32)
            for w in layer.get_weights()]


def params_of(fn: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def call_params(layer: Any) -> dict[str, inspect.Parameter]:
    return params_of(type(layer).__call__)


def layer_name(layer: Any) -> str:
    """The name the layer's errors must start with."""
    return type(layer).__name__


def raises(c: Contract, exc: type | tuple, pattern: str, fn: Callable, what: str) -> str:
    """Call ``fn``; assert it raises ``exc`` with a message matching ``pattern``."""
    try:
        fn()
    except exc as e:
        msg = str(e)
        assert re.search(pattern, msg, re.S), \
            f"{c.id}: {what}: the message {msg!r} does not match {pattern!r}"
        return msg
    except Exception as e:
        raise AssertionError(f"{c.id}: {what}: raised {type(e).__name__} ({e}), expected "
                             f"{getattr(exc, '__name__', exc)}") from e
    raise AssertionError(f"{c.id}: {what}: did not raise {getattr(exc, '__name__', exc)}")


def _error_pattern(name: str, arg: str) -> str:
    """The one error format: ``"<layer>: argument '<arg>' got <given>; allowed: ..."``."""
    return rf"^{re.escape(name)}: argument '{re.escape(arg)}' got .+; allowed: .+"


# -- the checks ----------------------------------------------------------------------------
def check_build(c: Contract) -> None:
    """Eager keywords build at construction; the lazy variant builds on its first call,
    to the same weights and output shapes; ``set_weights`` before that is refused."""
    xs = inputs(c)
    eager = make(c)
    assert eager.built, f"{c.id}: not built at construction by {c.kwargs}"
    y = call(c, eager, xs)
    if c.lazy is None:
        return
    lazy = make(c, **c.lazy)
    assert not lazy.built, f"{c.id}: built at construction with {c.lazy}"
    assert lazy.param == [] and lazy.weight_names == [] and lazy.get_weights() == [], \
        f"{c.id}: an unbuilt layer lists weights"
    raises(c, RuntimeError, rf"^{re.escape(layer_name(lazy))}: .*unbuilt",
           lambda: lazy.set_weights(eager.get_weights()), "set_weights before the build")
    yl = call(c, lazy, xs)
    assert lazy.built, f"{c.id}: not built by its first call"
    assert [a.shape for a in yl] == [a.shape for a in y], \
        f"{c.id}: lazy output shapes {[a.shape for a in yl]} != eager {[a.shape for a in y]}"
    assert lazy.weight_names == eager.weight_names, \
        f"{c.id}: lazy weights {lazy.weight_names} != eager {eager.weight_names}"
    assert [w.shape for w in lazy.get_weights()] == [w.shape for w in eager.get_weights()], \
        f"{c.id}: lazy weight shapes differ from the eager ones"
    if hasattr(eager, "input_size"):
        assert lazy.input_size == eager.input_size, \
            f"{c.id}: lazy input_size {lazy.input_size} != {eager.input_size}"


def check_weights(c: Contract) -> None:
    """``get_weights()``: NumPy copies in Note's layout, one per ``weight_names`` entry."""
    layer = make(c)
    ws, names = layer.get_weights(), layer.weight_names
    assert isinstance(ws, list) and all(isinstance(w, np.ndarray) for w in ws), \
        f"{c.id}: get_weights() must return a list of NumPy arrays"
    assert all(w.dtype == np.float32 for w in ws), f"{c.id}: float32 weights expected"
    assert len(ws) == len(names) == len(set(names)), \
        f"{c.id}: {len(ws)} arrays for the weight names {names}"
    if isinstance(c.weights, dict):
        assert names == list(c.weights), f"{c.id}: weight names {names} != {list(c.weights)}"
        got = {n: w.shape for n, w in zip(names, ws)}
        want = {n: tuple(s) for n, s in c.weights.items()}
        assert got == want, f"{c.id}: Note shapes {got} != {want}"
    elif c.weights is not None:
        assert len(ws) == c.weights, f"{c.id}: {len(ws)} weights, expected {c.weights}"
    assert layer.count_params() == sum(w.size for w in ws), \
        f"{c.id}: count_params() {layer.count_params()} != {sum(w.size for w in ws)}"
    if ws:
        ws[0][...] = 7.0  # a copy: the layer keeps its values
        assert not np.array_equal(layer.get_weights()[0], ws[0]), \
            f"{c.id}: get_weights() returned the layer's own buffer"


def check_round_trip(c: Contract) -> None:
    """``set_weights`` then ``get_weights`` gives back the values set; a fresh layer loaded
    with ``get_weights()`` (or through ``save_weights``/``load_weights``) computes the same
    outputs exactly."""
    xs = inputs(c)
    a = make(c)
    a.eval()
    new = perturbed(c, a)
    a.set_weights(new)
    assert weights_equal(a.get_weights(), new), \
        f"{c.id}: get_weights() after set_weights() differs from the values set"
    ya = call(c, a, xs)
    b = make(c)
    b.eval()
    if new:
        assert not same(call(c, b, xs), ya), \
            f"{c.id}: a fresh layer already computes the loaded outputs (weak check)"
    b.set_weights(a.get_weights())
    assert_same(c, call(c, b, xs), ya, "after set_weights(get_weights())")
    if new:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.safetensors")
            a.save_weights(path)
            d = make(c)
            d.eval()
            d.load_weights(path)
        assert_same(c, call(c, d, xs), ya, "after save_weights/load_weights")


def check_set_weights_errors(c: Contract) -> None:
    """A wrong count or a wrong shape raises ValueError naming the layer (and the weight),
    and changes nothing."""
    layer = make(c)
    name, names = layer_name(layer), layer.weight_names
    before = layer.get_weights()
    pat = rf"^{re.escape(name)}: argument 'weights' got "
    raises(c, ValueError, pat, lambda: layer.set_weights(before + [np.zeros(1, np.float32)]),
           "set_weights with one array too many")
    if not before:
        layer.set_weights([])
        return
    raises(c, ValueError, pat, lambda: layer.set_weights(before[:-1]),
           "set_weights with one array too few")
    for i in sorted({0, len(before) - 1}):
        bad = [w + 1.0 for w in before]
        bad[i] = np.zeros(before[i].shape + (2,), np.float32)
        raises(c, ValueError, pat + rf".*'{re.escape(names[i])}'",
               lambda bad=bad: layer.set_weights(bad), f"set_weights with a wrong shape for "
               f"{names[i]!r}")
        assert weights_equal(layer.get_weights(), before), \
            f"{c.id}: a refused set_weights changed the weights"


def check_param(c: Contract) -> None:
    """``param`` lists the trainable weights in Note's order (the arrays optimizers see);
    ``trainable=False`` lists none."""
    layer = make(c)
    names = layer.weight_names
    assert set(c.frozen) <= set(names), f"{c.id}: frozen {c.frozen} not among {names}"
    want = [n for n in names if n not in c.frozen]
    assert layer.param_names == want, f"{c.id}: param_names {layer.param_names} != {want}"
    param = layer.param
    assert len(param) == len(want) and all(isinstance(p, mx.array) for p in param), \
        f"{c.id}: param has {len(param)} entries for {want}"
    note = dict(zip(names, layer.get_weights()))
    for n, p in zip(want, param):  # the same values, in whatever layout they are stored
        assert np.array_equal(np.sort(to_np(p), axis=None), np.sort(note[n], axis=None)), \
            f"{c.id}: param entry for {n!r} does not hold that weight's values"
    trainable = sum(v.size for _, v in tree_flatten(layer.trainable_parameters()))
    assert sum(p.size for p in param) == trainable, \
        f"{c.id}: param holds {sum(p.size for p in param)} values, trainable_parameters() " \
        f"{trainable}"
    if "trainable" in params_of(c.layer):
        frozen = make(c, trainable=False)
        assert frozen.param == [] and frozen.param_names == [], \
            f"{c.id}: trainable=False still lists {len(frozen.param)} arrays in param " \
            f"({frozen.param_names})"
        assert tree_flatten(frozen.trainable_parameters()) == [], \
            f"{c.id}: trainable=False leaves trainable_parameters()"
        assert frozen.weight_names == names, f"{c.id}: trainable=False changes the weights"


def check_modes(c: Contract) -> None:
    """``.eval()`` is deterministic and leaves the weights alone; ``train_flag=``/
    ``training=`` override the module's mode; deterministic layers give the same output in
    both modes, random ones a seeded draw in training and (in eval) the output of the
    layer with its randomness off, stateful ones update their state in training only."""
    xs = inputs(c)
    layer = make(c)
    flags = [f for f in ("train_flag", "training") if f in call_params(layer)]
    if c.random is not None or c.stateful:
        assert "train_flag" in flags, f"{c.id}: a random/stateful layer without train_flag"
    layer.eval()
    w0 = layer.get_weights()
    e = call(c, layer, xs)
    assert_same(c, call(c, layer, xs), e, "two calls in eval mode")
    assert weights_equal(layer.get_weights(), w0), f"{c.id}: an eval-mode call changed weights"
    layer.train()
    for flag in flags:
        assert_same(c, call(c, layer, xs, **{flag: False}), e, f"train() with {flag}=False")
    assert weights_equal(layer.get_weights(), w0), \
        f"{c.id}: an inference-mode call changed weights"
    if c.random is not None:
        mx.random.seed(c.seed + 1)
        t1 = call(c, layer, xs)
        t2 = call(c, layer, xs)
        assert not same(t1, t2), f"{c.id}: two training calls drew the same randomness"
        assert not same(t1, e), f"{c.id}: the training call equals the eval output"
        mx.random.seed(c.seed + 1)
        assert_same(c, call(c, layer, xs), t1, "a training call after the same mx.random.seed")
        layer.eval()
        for flag in flags:
            mx.random.seed(c.seed + 1)
            assert_same(c, call(c, layer, xs, **{flag: True}), t1, f"eval() with {flag}=True")
        off = make(c, **c.random)
        off.set_weights(w0)
        assert_same(c, call(c, off, xs), e, f"eval mode vs the layer with {c.random}")
    elif c.stateful:
        t = call(c, layer, xs)
        assert not weights_equal(layer.get_weights(), w0), \
            f"{c.id}: a training call left the state unchanged"
        assert not same(t, e), f"{c.id}: training output equals the eval output"
        layer.eval()
        for flag in flags:
            w1 = layer.get_weights()
            assert_same(c, call(c, layer, xs, **{flag: True}), t, f"eval() with {flag}=True")
            assert not weights_equal(layer.get_weights(), w1), \
                f"{c.id}: eval() with {flag}=True left the state unchanged"
    else:
        assert_same(c, call(c, layer, xs), e, "train() vs eval()")
        layer.eval()
        for flag in flags:
            assert_same(c, call(c, layer, xs, **{flag: True}), e, f"eval() with {flag}=True")
        assert weights_equal(layer.get_weights(), w0), f"{c.id}: a call changed weights"


def check_dtypes(c: Contract) -> None:
    """float32, float16 and bfloat16 layers (loaded with the same weights) store and
    compute in their dtype, give finite outputs close to float32's, and take NumPy float64
    arrays and (first input) nested lists. Layers without ``dtype`` keep their input's dtype."""
    xs = inputs(c)
    ref = make(c)
    ref.eval()
    want = call(c, ref, xs)
    has_dtype = "dtype" in params_of(c.layer)
    for dt in DTYPES:
        dtype = getattr(mx, dt)
        if has_dtype:
            layer = make(c, dtype=dt)
            layer.eval()
            layer.set_weights(ref.get_weights())
            stored = [(k, v.dtype) for k, v in tree_flatten(layer.parameters())
                      if v.dtype != dtype]
            assert not stored, f"{c.id}: a {dt} layer stores {stored}"
            np_dt = np.float16 if dt == "float16" else np.float32
            assert all(w.dtype == np_dt for w in layer.get_weights()), \
                f"{c.id}: a {dt} layer's get_weights() is not {np_dt.__name__}"
            got = call(c, layer, xs)
            from_np = call(c, layer, [np.array(to_np(x), np.float64) for x in xs])
            assert_same(c, from_np, got, f"{dt}: NumPy float64 inputs vs mx.array inputs")
            # (only the first input: a list state is read as a list of states)
            from_list = call(c, layer, [to_np(xs[0]).tolist(), *xs[1:]])
            assert_same(c, from_list, got, f"{dt}: a nested-list input vs mx.array inputs")
        else:
            got = call(c, ref, [x.astype(dtype) for x in xs])
        bad = [a.dtype for a in got if a.dtype != dtype]
        assert not bad, f"{c.id}: a {dt} call returned {bad}"
        assert all(bool(mx.all(mx.isfinite(a))) for a in got), f"{c.id}: {dt}: not finite"
        if dt == "float32":
            assert_same(c, got, want, "float32 twin")
        else:
            assert_close(c, got, want, c.tol.get(dt, TOL[dt]), f"{dt} vs float32")


def check_transforms(c: Contract) -> None:
    """``mx.compile`` gives the eager output; ``nn.value_and_grad`` gives finite gradients
    for exactly the trainable parameters (nonzero ones), also compiled; ``mx.grad`` reaches
    the inputs."""
    xs = inputs(c)
    layer = make(c)
    if c.random is not None or c.stateful:
        layer.eval()  # (their training mode under compile is their family's test)
    y = call(c, layer, xs)
    try:
        yc = leaves(mx.compile(lambda *a: layer(*a, **c.call_kwargs))(*xs))
    except Exception as e:
        raise AssertionError(f"{c.id}: mx.compile failed: {type(e).__name__}: {e}") from e
    assert_close(c, yc, y, 1e-5, "mx.compile vs eager")
    rng = np.random.default_rng(c.seed + 2)
    cts = [mx.array(rng.standard_normal(a.shape).astype(np.float32)) for a in y]

    def loss(*a):
        out = leaves(layer(*a, **c.call_kwargs))
        return sum((o.astype(mx.float32) * ct).sum() for o, ct in zip(out, cts))

    params = dict(tree_flatten(layer.trainable_parameters()))
    if params:
        _check_value_and_grad(c, layer, loss, xs, params)
    gx = mx.grad(loss, argnums=tuple(range(len(xs))))(*xs)
    gx = gx if isinstance(gx, (tuple, list)) else [gx]
    for x, g in zip(xs, gx):
        assert g.shape == x.shape and bool(mx.all(mx.isfinite(g))), \
            f"{c.id}: input gradient {g.shape} for an input {x.shape}"
    zero = [i for i, g in enumerate(gx) if not bool(mx.any(g != 0))]
    assert not zero, f"{c.id}: zero gradients for the inputs {zero}"


def _check_value_and_grad(c: Contract, layer: Any, loss: Callable, xs: list,
                          params: dict) -> None:
    """``nn.value_and_grad`` (eager and compiled): finite gradients for exactly the
    trainable parameters, nonzero ones."""
    vg = mnn.value_and_grad(layer, loss)
    try:
        val, grads = vg(*xs)
        mx.eval(val, grads)
    except Exception as e:
        raise AssertionError(f"{c.id}: nn.value_and_grad failed: {type(e).__name__}: {e}") \
            from e
    grads = dict(tree_flatten(grads))
    assert np.isfinite(float(val)), f"{c.id}: loss {float(val)}"
    assert sorted(grads) == sorted(params), \
        f"{c.id}: gradients for {sorted(grads)}, trainable {sorted(params)}"
    for k, g in grads.items():
        assert g.shape == params[k].shape, f"{c.id}: gradient of {k}: shape {g.shape}"
        assert bool(mx.all(mx.isfinite(g))), f"{c.id}: gradient of {k} not finite"
    zero = [k for k, g in grads.items() if not bool(mx.any(g != 0))]
    assert not zero, f"{c.id}: zero gradients for {zero}"
    try:
        cval, cgrads = mx.compile(vg, inputs=layer.state, outputs=layer.state)(*xs)
    except Exception as e:
        raise AssertionError(f"{c.id}: compiled value_and_grad failed: {e}") from e
    assert_close(c, [cval], [val], 1e-5, "compiled loss")
    cgrads = dict(tree_flatten(cgrads))
    assert sorted(cgrads) == sorted(grads), f"{c.id}: compiled gradients for {sorted(cgrads)}"
    assert_close(c, [cgrads[k] for k in grads], list(grads.values()), 1e-4,
                 "compiled gradients")


# -- bad arguments and bad inputs ----------------------------------------------------------
def _label(out: dict, prefix: str, arg: str, entry: tuple) -> None:
    key, i = f"{prefix}-{arg}", 2
    while key in out:
        key, i = f"{prefix}-{arg}-{i}", i + 1
    out[key] = entry


def bad_arg_entries(c: Contract) -> dict[str, tuple]:
    """``'bad_args-<arg>'`` -> ``(overrides, exception, arg)``: ``c.bad_args`` and, for the
    documented arguments the constructor has, a bad dtype, trainable, input_size,
    activation and initializers (those on the lazy variant: they fail at construction)."""
    out: dict[str, tuple] = {}
    accepted = params_of(c.layer)
    lazy = c.lazy or {}
    auto = [("dtype", "int8", TypeError, {}), ("trainable", "yes", TypeError, {}),
            ("input_size", 0, ValueError, {}), ("activation", "nope", ValueError, lazy),
            ("weight_initializer", "nope", ValueError, lazy),
            ("bias_initializer", "nope", ValueError, lazy),
            ("initializer", "nope", ValueError, lazy)]
    for arg, value, exc, base in auto:
        if arg in accepted:
            _label(out, "bad_args", arg, ({**base, arg: value}, exc, arg))
    for overrides, exc, arg in c.bad_args:
        _label(out, "bad_args", arg, (overrides, exc, arg))
    return out


def _check_bad_arg(c: Contract, overrides: dict, exc: type, arg: str) -> None:
    name = layer_name(make(c))
    raises(c, exc, _error_pattern(name, arg), lambda: make(c, **overrides),
           f"constructor with {overrides}")


def bad_input_entries(c: Contract) -> dict[str, tuple]:
    """``'bad_inputs-<arg>'`` -> ``(inputs, exception, arg, call keywords)``:
    ``c.bad_inputs`` and a string array as the first input."""
    out: dict[str, tuple] = {}
    first = None
    shapes = c.inputs if isinstance(c.inputs, list) else [c.inputs]
    if isinstance(shapes[0], tuple):
        first = np.full(shapes[0], "a")
    for entry in c.bad_inputs:
        ins, exc, arg, *kw = entry
        _label(out, "bad_inputs", arg, (ins, exc, arg, kw[0] if kw else {}))
    if first is not None:
        out["bad_inputs-strings"] = ([first, *shapes[1:]], TypeError, None, {})
    return out


def _check_bad_input(c: Contract, ins: Any, exc: type, arg: str | None, kw: dict) -> None:
    layer = make(c)
    good = inputs(c)
    call(c, layer, good)  # built, also when lazy
    if arg is None:  # the first argument of the call
        arg = list(call_params(layer))[1]
    bad = inputs(c, ins, seed=c.seed + 3)
    before = layer.get_weights()
    raises(c, exc, _error_pattern(layer_name(layer), arg),
           lambda: layer(*bad, **{**c.call_kwargs, **kw}),
           f"a call with inputs {[tuple(getattr(b, 'shape', ())) for b in bad]}"
           + (f" and {kw}" if kw else ""))
    assert weights_equal(layer.get_weights(), before), f"{c.id}: a refused call changed weights"
