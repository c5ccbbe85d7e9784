"""The compiled train, eval and predict steps of a :class:`~mlxnote.training.Model`.

Each step is an ``mx.compile`` of one batch's work that captures the state it changes:
the model's state (so that batch norm's moving statistics update), the optimizer's
state (train), and ``mx.random.state`` (or dropout would repeat its mask on every call).
Train and eval are compiled separately, because the train/eval mode is baked into a trace.
The forward runs under the model's dtype policy (:func:`~.mixed_precision.forward`: 16-bit
compute on float32 weights), and a :class:`~.mixed_precision.LossScaleOptimizer` scales the
loss it differentiates.

* train ``step(x, y, w, scale, sw=None) -> stats``: forward, ``loss_sum * scale``
  backward, gradients averaged over the group, the optimizer update;
* eval ``step(x, y, w, sw=None) -> stats``; predict ``step(*x) -> outputs``;

where ``x`` is a tuple of inputs, ``w`` the per-sample weights ``[B]`` (0 on padding),
``sw`` the sample weights times ``w`` (``w`` itself without ``sample_weight``): the loss
and ``weighted_metrics`` are weighted by ``sw``, the metrics by ``w`` (:mod:`.weighting`);
and ``stats`` = ``[sum(loss * sw), each metric's sums (:func:`~.metrics.weighted_sums`:
``sum(metric * w)``, or a stateful metric's counts), sum(w)]``, summed over the group's
ranks. With ``scale = size / n`` (``n`` rows in the whole batch) the averaged gradient
is the gradient of the whole batch's mean loss.

:class:`StepCache` traces each step once per configuration and reuses it across
``fit``/``evaluate``/``predict`` calls; :func:`run_train`, :func:`run_eval` and
:func:`run_predict` run a step over one epoch of an :class:`~.data.EpochIterator`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
from mlx.utils import tree_flatten

from .._validation import Desc, error
from . import checkpoint, labels, mixed_precision
from .metrics import Totals, weighted_sums

if TYPE_CHECKING:  # pragma: no cover
    from .callbacks import CallbackList
    from .data import EpochIterator
    from .model import Model

__all__ = ["Step", "StepCache", "train_step", "eval_step", "predict_step", "scale",
           "seed_epoch", "run_train", "run_eval", "run_predict", "snapshot", "restore", "build",
           "init_optimizer", "note_thread"]


# -- the state a step captures, put back when the step fails ---------------------------
def _containers(tree: Any, out: list) -> list:
    """Every dict and list of ``tree`` (a module's or an optimizer's state) with a shallow
    copy of its items, outermost first."""
    if isinstance(tree, dict):
        out.append((tree, dict(tree)))
        for v in tree.values():
            _containers(v, out)
    elif isinstance(tree, list):
        out.append((tree, list(tree)))
        for v in tree:
            _containers(v, out)
    return out


def snapshot(trees: list[Any]) -> tuple[list, mx.array]:
    """What :func:`restore` needs to put ``trees`` (module/optimizer state) and
    ``mx.random.state`` back: references, no copies of arrays, no evaluation."""
    out: list = []
    for t in trees:
        _containers(t, out)
    return out, mx.random.state[0]


def restore(saved: tuple[list, mx.array]) -> None:
    """Put back what :func:`snapshot` saw: every container's items (keys a failed trace
    added are dropped) and MLX's random key (through ``mx.random.seed``, which sets the
    key ``[seed >> 32, seed & 0xffffffff]``: the same key, so the same draws)."""
    containers, key = saved
    for node, items in containers:
        if isinstance(node, dict):
            for k in [k for k in node if k not in items]:
                dict.__delitem__(node, k)
            for k, v in items.items():
                if dict.get(node, k) is not v:
                    dict.__setitem__(node, k, v)
        else:
            node[:] = items
    hi, lo = key.tolist()
    mx.random.seed((int(hi) << 32) | int(lo))


class Step:
    """A compiled step, the state trees it captures, and what its last trace saw.

    ``step(*args)`` runs the compiled function (lazily). :meth:`run` runs it and evaluates
    its outputs with the captured state, and on any exception (in the trace, in a
    ``check``, in the evaluation; a ``KeyboardInterrupt`` too) puts the state back as it
    was before the call: a failed trace otherwise leaves tracers in the model, the
    optimizer and ``mx.random.state``, and every later random op or ``fit`` in the
    process fails (``[eval] Attempting to eval an array without a primitive``).

    ``info`` is filled while tracing: ``classes`` (the predictions' last axis) and
    ``sparse`` (the loss and metrics that read the labels as class indices).
    """

    def __init__(self, fn: Callable, state: list[Any]) -> None:
        self.fn, self.state = fn, state
        self.info: dict[str, Any] = {}

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def run(self, *args: Any, check: Callable[[dict], None] | None = None,
            guard: Any = None) -> Any:
        """The step's outputs for ``args``, evaluated (and the captured state with them,
        so that any thread can use them next). ``check(info)`` runs after the trace and
        before the evaluation; ``guard`` (a context manager: the collective watchdog)
        wraps the evaluation."""
        saved = snapshot(self.state)
        try:
            out = self.fn(*args)
            if check is not None:
                check(self.info)
            with guard if guard is not None else contextlib.nullcontext():
                mx.eval(out, self.state, mx.random.state)
        except BaseException:
            restore(saved)
            raise
        return out


def _stats(model: Model, y: mx.array, pred: mx.array, w: mx.array, sw: mx.array,
           info: dict[str, Any]) -> list[mx.array]:
    """The weighted sums of the loss (by ``sw``), the metrics (by ``w``) and the weighted
    metrics (by ``sw``); records what the trace saw in ``info``."""
    info["classes"] = pred.shape[-1] if pred.ndim else 0
    specs = model.metric_specs + model.weighted_specs
    info["sparse"] = labels.users(model.loss, specs, y, pred)
    vals = [mx.sum(model.loss(y, pred) * sw).reshape(1)]
    for _, f in model.metric_specs:
        vals.append(weighted_sums(f, y, pred, w))
    for _, f in model.weighted_specs:
        vals.append(weighted_sums(f, y, pred, sw))
    return vals


def train_step(model: Model, group: Any) -> Step:
    """The compiled training step of ``model`` (its optimizer must be initialized)."""
    opt = model.optimizer
    state = [model.state, opt.state, mx.random.state]
    info: dict[str, Any] = {}

    def loss_fn(x, y, w, sw, scale):
        vals = _stats(model, y, mixed_precision.forward(model, x), w, sw, info)
        loss = vals[0][0] * scale
        if isinstance(opt, mixed_precision.LossScaleOptimizer):
            loss = opt.scale_loss(loss)
        return loss, vals

    vg = mnn.value_and_grad(model, loss_fn)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y, w, scale, sw=None):
        (_, vals), grads = vg(x, y, w, w if sw is None else sw, scale)
        if group is not None:
            grads = mnn.average_gradients(grads, group=group)
        opt.update(model, grads)
        stats = mx.concatenate(vals + [w.sum().reshape(1)])
        if group is not None:
            stats = mx.distributed.all_sum(stats, group=group)
        return stats

    out = Step(step, [model.state, opt.state])
    out.info = info
    return out


def eval_step(model: Model, group: Any) -> Step:
    """The compiled evaluation step (run it with the model in eval mode)."""
    state = [model.state, mx.random.state]
    info: dict[str, Any] = {}

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y, w, sw=None):
        pred = mixed_precision.forward(model, x)
        stats = mx.concatenate(_stats(model, y, pred, w, w if sw is None else sw, info)
                               + [w.sum().reshape(1)])
        if group is not None:
            stats = mx.distributed.all_sum(stats, group=group)
        return stats

    out = Step(step, [model.state])
    out.info = info
    return out


def predict_step(model: Model, group: Any = None) -> Step:
    """The compiled forward pass ``step(*x)`` (run it in eval mode)."""
    state = [model.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*xs):
        return mixed_precision.forward(model, xs)

    return Step(step, [model.state])


def build(model: Model, first: tuple[mx.array, ...]) -> None:
    """Build ``model``'s lazy layers with one forward pass on ``first`` (in eval mode)."""
    if not model.unbuilt():
        return
    mode = model.training
    model.eval()
    try:
        mx.eval(model(*first))
    finally:
        model.train(mode)
    model._check_built("compiling")


def init_optimizer(model: Model) -> None:
    """Create the optimizer state for ``model``'s trainable weights (kept if it covers
    them all), apply a pending state from :meth:`~.Model.load`, and evaluate it (so that
    any thread can use it)."""
    opt = model.optimizer
    params = model.trainable_parameters()
    keys = {k for k, _ in tree_flatten(params)}
    have = {k.rsplit(".", 1)[0] for k, _ in tree_flatten(opt.state)
            if k not in ("step", "learning_rate")}
    if not opt._initialized or not keys <= have:
        opt.init(params)
    if model._pending_opt is not None:
        pending, path = model._pending_opt
        model._set("_pending_opt", None)
        checkpoint.restore_optimizer(opt, pending, f"{model.name}.load", path)
    mx.eval(opt.state)


_BUILDERS = {"train": train_step, "eval": eval_step, "predict": predict_step}


class StepCache:
    """The compiled steps of one model, keyed by (kind, optimizer, group, the weights'
    paths, shapes and dtypes): a new or rebuilt layer is a new key, and ``compile``
    :meth:`clear`\\ s the cache."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.steps: dict[tuple, Step] = {}

    def get(self, kind: str, group: Any = None) -> Step:
        """The ``'train'``, ``'eval'`` or ``'predict'`` step, traced on first use."""
        note_thread()
        m = self.model
        sig = tuple((k, v.shape, v.dtype) for k, v in tree_flatten(m.parameters()))
        key = (kind, id(m.optimizer), id(group), sig)
        if key not in self.steps:
            self.steps[key] = _BUILDERS[kind](m, group)
        return self.steps[key]

    def clear(self) -> None:
        self.steps.clear()

    def __len__(self) -> int:
        return len(self.steps)


@lru_cache(maxsize=64)
def scale(size: int, n: int) -> mx.array:
    """The loss scale ``size / n`` of a train step (a cached scalar array)."""
    return mx.array(size / n, mx.float32)


def seed_epoch(base: int, epoch: int, rank: int) -> None:
    """Seed MLX's global generator for ``epoch`` on ``rank`` from fit's base seed, so
    that dropout is reproducible and a resumed run draws what the uninterrupted one did."""
    mx.random.seed(int(np.random.SeedSequence([base, epoch, rank]).generate_state(1)[0]))


def _totals(model: Model) -> Totals:
    return Totals(model.metric_specs + model.weighted_specs)


_WORKERS: set[int] = set()  # native ids of the non-main threads that ran a step


def note_thread() -> None:
    """Remember a thread other than the main one that runs fit/evaluate/predict: at exit,
    :func:`_wait_for_workers` lets it finish ending first."""
    if threading.current_thread() is threading.main_thread():
        return
    if not _WORKERS:
        atexit.register(_wait_for_workers)
    _WORKERS.add(threading.get_native_id())


def _wait_for_workers(timeout: float = 2.0) -> None:
    """Wait (at most ``timeout`` s) until the threads :func:`note_thread` saw have ended
    at the OS level. MLX 0.32 tears a thread's streams down in thread-local destructors
    that take the GIL; they run after ``Thread.join`` returns, and when the interpreter is
    finalizing by then, the process aborts ('terminate called without an active
    exception': 11 of 12 runs of a script that fits in a thread and exits at once)."""
    deadline = time.monotonic() + timeout
    if not os.path.isdir("/proc/self/task"):  # pragma: no cover - not Linux
        time.sleep(min(0.25, timeout))
        return
    for tid in _WORKERS:
        while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
            time.sleep(0.005)


def _guard(watch: Any, what: str) -> Any:
    return None if watch is None else watch.guard(what)


def run_train(model: Model, step: Step, it: EpochIterator, cbs: CallbackList,
              shuffle_seed: Any, owner: str, watch: Any = None,
              resume: dict[str, Any] | None = None) -> dict[str, float]:
    """One training epoch (model in train mode); returns the epoch's logs.
    ``on_train_batch_end`` gets the running logs after each step; a callback setting
    ``model.stop_training`` there ends the epoch after that step. ``watch``: the
    collective watchdog (:class:`~.distributed.Watchdog`) or ``None``. ``resume``
    (``batch``, ``sums``, ``key``: a mid-epoch backup) skips the batches done, starts
    from their sums and sets MLX's random key; the running totals are
    ``model._epoch_totals``."""
    totals = _totals(model)
    skip = 0
    if resume is not None:
        skip, totals.sums, totals.batches = resume["batch"], list(resume["sums"]), \
            resume["batch"]
        hi, lo = resume["key"]
        mx.random.seed((int(hi) << 32) | int(lo))  # the key [hi, lo] (see restore)
    model._set("_epoch_totals", totals)
    model.train()
    for i, (x, y, w, sw, n) in it.enumerate_epoch(shuffle_seed):
        if i < skip:  # done before the backup
            continue
        stats = step.run(x, y, w, scale(it.size, n), sw, check=it.check_labels,
                         guard=_guard(watch, f"training batch {i + 1}"))
        totals.add(stats)
        cbs.on_train_batch_end(i, totals.logs())
        if model.stop_training:  # a callback stopped mid-epoch (TerminateOnNaN), as Keras
            break
    if not totals.batches:
        raise error(owner, "x", Desc("no batches"), "at least one batch per epoch")
    return totals.logs()


def run_eval(model: Model, step: Step, it: EpochIterator, owner: str,
             cbs: CallbackList | None = None, watch: Any = None) -> Totals:
    """One pass of the eval step over ``it`` (run it in eval mode); the totals.
    ``on_test_batch_end`` gets the running logs after each step when ``cbs`` is given."""
    totals = _totals(model)
    for i, (x, y, w, sw, _) in it.enumerate_epoch():
        stats = step.run(x, y, w, sw, check=it.check_labels,
                         guard=_guard(watch, f"evaluation batch {i + 1}"))
        totals.add(stats)
        if cbs is not None:
            cbs.on_test_batch_end(i, totals.logs())
    if not totals.batches:
        raise error(owner, "x", Desc("no batches"), "at least one batch")
    return totals


def run_predict(step: Step, it: EpochIterator, cbs: CallbackList) -> list[mx.array]:
    """The predict step's outputs for every batch of ``it`` (run it in eval mode)."""
    outs = []
    for i, (x, *_) in it.enumerate_epoch():
        outs.append(step.run(*x))
        cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
    return outs
