"""The compiled train, eval and predict steps of a :class:`~mlxnote.training.Model`.

Each step is an ``mx.compile`` of one batch's work that captures the state it changes:
the model's state (so that batch norm's moving statistics update), the optimizer's
state (train), and ``mx.random.state`` (or dropout would repeat its mask on every call).
Train and eval are compiled separately, because the train/eval mode is baked into a trace.

* train ``step(x, y, w, scale) -> stats``: forward, ``loss_sum * scale`` backward,
  gradients averaged over the group, the optimizer update;
* eval ``step(x, y, w) -> stats``; predict ``step(*x) -> outputs``;

where ``x`` is a tuple of inputs, ``w`` the per-sample weights ``[B]`` (0 on padding),
and ``stats`` = ``[sum(loss * w), sum(metric * w) for each metric, sum(w)]``, summed over
the group's ranks. With ``scale = size / n`` (``n`` rows in the whole batch) the averaged
gradient is the gradient of the whole batch's mean loss.

:class:`StepCache` traces each step once per configuration and reuses it across
``fit``/``evaluate``/``predict`` calls; :func:`run_train`, :func:`run_eval` and
:func:`run_predict` run a step over one epoch of an :class:`~.data.EpochIterator`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
from mlx.utils import tree_flatten

from .._validation import Desc, error
from .metrics import Totals

if TYPE_CHECKING:  # pragma: no cover
    from .callbacks import CallbackList
    from .data import EpochIterator
    from .model import Model

__all__ = ["StepCache", "train_step", "eval_step", "predict_step", "scale", "seed_epoch",
           "run_train", "run_eval", "run_predict"]


def _stats(model: Model, y: mx.array, pred: mx.array, w: mx.array) -> list[mx.array]:
    vals = [mx.sum(model.loss(y, pred) * w)]
    for _, f in model.metric_specs:
        vals.append(mx.sum(f(y, pred) * w))
    return vals


def train_step(model: Model, group: Any) -> Callable:
    """The compiled training step of ``model`` (its optimizer must be initialized)."""
    opt = model.optimizer
    state = [model.state, opt.state, mx.random.state]

    def loss_fn(x, y, w, scale):
        vals = _stats(model, y, model(*x), w)
        return vals[0] * scale, vals

    vg = mnn.value_and_grad(model, loss_fn)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y, w, scale):
        (_, vals), grads = vg(x, y, w, scale)
        if group is not None:
            grads = mnn.average_gradients(grads, group=group)
        opt.update(model, grads)
        stats = mx.stack(vals + [w.sum()])
        if group is not None:
            stats = mx.distributed.all_sum(stats, group=group)
        return stats

    return step


def eval_step(model: Model, group: Any) -> Callable:
    """The compiled evaluation step (run it with the model in eval mode)."""
    state = [model.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y, w):
        stats = mx.stack(_stats(model, y, model(*x), w) + [w.sum()])
        if group is not None:
            stats = mx.distributed.all_sum(stats, group=group)
        return stats

    return step


def predict_step(model: Model, group: Any = None) -> Callable:
    """The compiled forward pass ``step(*x)`` (run it in eval mode)."""
    state = [model.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*xs):
        return model(*xs)

    return step


_BUILDERS = {"train": train_step, "eval": eval_step, "predict": predict_step}


class StepCache:
    """The compiled steps of one model, keyed by (kind, optimizer, group, the weights'
    paths, shapes and dtypes): a new or rebuilt layer is a new key, and ``compile``
    :meth:`clear`\\ s the cache."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.steps: dict[tuple, Callable] = {}

    def get(self, kind: str, group: Any = None) -> Callable:
        """The ``'train'``, ``'eval'`` or ``'predict'`` step, traced on first use."""
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
    return Totals([n for n, _ in model.metric_specs])


def run_train(model: Model, step: Callable, it: EpochIterator, cbs: CallbackList,
              shuffle_seed: Any, owner: str) -> dict[str, float]:
    """One training epoch (model in train mode); returns the epoch's logs.
    ``on_train_batch_end`` gets the running logs after each step."""
    totals = _totals(model)
    model.train()
    for i, (x, y, w, n) in it.enumerate_epoch(shuffle_seed):
        stats = step(x, y, w, scale(it.size, n))
        mx.eval(stats, model.state, model.optimizer.state)
        totals.add(stats)
        cbs.on_train_batch_end(i, totals.logs())
    if not totals.batches:
        raise error(owner, "x", Desc("no batches"), "at least one batch per epoch")
    return totals.logs()


def run_eval(model: Model, step: Callable, it: EpochIterator, owner: str,
             cbs: CallbackList | None = None) -> Totals:
    """One pass of the eval step over ``it`` (run it in eval mode); the totals.
    ``on_test_batch_end`` gets the running logs after each step when ``cbs`` is given."""
    totals = _totals(model)
    for i, (x, y, w, _) in it.enumerate_epoch():
        stats = step(x, y, w)
        mx.eval(stats)
        totals.add(stats)
        if cbs is not None:
            cbs.on_test_batch_end(i, totals.logs())
    if not totals.batches:
        raise error(owner, "x", Desc("no batches"), "at least one batch")
    return totals


def run_predict(step: Callable, it: EpochIterator, cbs: CallbackList) -> list[mx.array]:
    """The predict step's outputs for every batch of ``it`` (run it in eval mode)."""
    outs = []
    for i, (x, _, _, _) in it.enumerate_epoch():
        outs.append(step(*x))
        mx.eval(outs[-1])
        cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
    return outs
