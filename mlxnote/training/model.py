"""Note-style models with a Keras-style training loop on MLX.

:class:`Model` is an :class:`mlx.nn.Module`: layers assigned in ``__init__`` (mlxnote
layers, plain ``mlx.nn`` modules, or lists of them) register themselves in assignment
order, and ``__call__`` defines the forward pass. On top of that it gives

* ``param`` / ``get_weights`` / ``set_weights`` in Note's layout and creation order
  (the registry in :mod:`mlxnote.nn.weights`, shared with the layers);
* ``compile`` / ``fit`` / ``evaluate`` / ``predict`` on compiled steps
  (:mod:`~mlxnote.training.steps`), data adapters (:mod:`~mlxnote.training.data`) and
  callbacks (:mod:`~mlxnote.training.callbacks`, the progress bar among them);
* ``save`` / ``load``: atomic, strictly checked safetensors checkpoints
  (:mod:`~mlxnote.training.checkpoint`); ``fit(..., resume=path)`` continues;
* data-parallel training when the process runs in an ``mx.distributed`` group of
  more than one rank (``python -m mlxnote.launch``), with a collective timeout;
* failures that leave the process usable: a ``fit``/``evaluate``/``predict`` that raises
  (in a trace, in a callback, a ``KeyboardInterrupt``) leaves the model, the optimizer and
  MLX's random state as the last completed step left them (:class:`~.steps.Step`); bad
  class labels are refused before a step runs (:mod:`~mlxnote.training.labels`); and
  ``fit``/``evaluate``/``predict`` work from any thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
from mlx.utils import tree_flatten

from .._validation import check_bool, check_float, check_int, error
from ..nn import weights
from ..nn.layer import Layer, TrainMode
from . import data, display, mixed_precision, steps, weighting
from . import distributed as dist
from .callbacks import Callback, CallbackList, History, ProgbarLogger
from .losses import get_loss
from .metrics import Metric, get_metrics
from .optimizers import get_optimizer
from .persistence import Persistence

__all__ = ["Model"]


def _as_list(metrics: Any) -> list:
    """``compile``'s metrics as a list (``None``: none; one name, object or callable)."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric)) or callable(metrics):
        return [metrics]
    return list(metrics)


class Model(TrainMode, weights.NoteWeights, Persistence, mnn.Module):
    """Base class for models: assign layers in ``__init__``, define ``__call__``.

    Example::

        class MLP(Model):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.dense(64, activation='relu')
                self.drop = nn.dropout(0.2)
                self.fc2 = nn.dense(10)

            def __call__(self, x):
                return self.fc2(self.drop(self.fc1(x)))

        model = MLP()
        model.compile('adam', SparseCategoricalCrossentropy(from_logits=True),
                      metrics=['accuracy'])
        history = model.fit(x, y, epochs=5, batch_size=32, validation_data=(xv, yv))

    Layers may be mlxnote layers, plain ``mlx.nn`` modules, other Models, or lists and
    dicts of them. ``train()`` / ``eval()`` (or Note's ``model.train_flag = False``) reach
    every layer; ``train`` takes a bool only (Note's ``model.train(train_ds, epochs)`` is
    :meth:`fit` here, and is refused with an error saying so).
    """

    train_hint = ("; to train on data use fit(x, y, epochs=...) (Note's "
                  "model.train(train_ds, epochs) is fit here)")

    def __init__(self) -> None:
        super().__init__()
        for name, value in (("optimizer", None), ("loss", None), ("metric_specs", []),
                            ("_metric_raw", []), ("history", None), ("stop_training", False),
                            ("epoch", 0), ("_seed", None), ("_pending_opt", None),
                            ("weighted_specs", []), ("_weighted_raw", []),
                            ("_group", None), ("_initial_epoch", None),
                            ("_initial_batch", None), ("_epoch_totals", None)):
            self._set(name, value)
        self._set("_steps", steps.StepCache(self))
        self._set("_dtype_policy", mixed_precision.global_policy())
        self._set("_auto_scale_loss", True)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @property
    def dtype_policy(self) -> mixed_precision.Policy:
        """Keras's dtype policy (:mod:`.mixed_precision`): ``'float32'``,
        ``'mixed_bfloat16'`` or ``'mixed_float16'`` (float32 weights, 16-bit compute in
        fit/evaluate/predict); the global policy when the model was created. Setting it
        (a name or a Policy) re-traces the steps and, for ``'mixed_float16'``, wraps a
        compiled optimizer in a LossScaleOptimizer as ``compile`` does."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, policy: Any) -> None:
        self._set("_dtype_policy", mixed_precision.Policy(policy))
        self._steps.clear()
        self._scale_loss()

    def _scale_loss(self) -> None:
        """Keras's ``auto_scale_loss``: ``mixed_float16`` wraps the optimizer in a
        :class:`~.mixed_precision.LossScaleOptimizer` (once)."""
        opt = self.optimizer
        if self._auto_scale_loss and self._dtype_policy.name == "mixed_float16" \
                and opt is not None and not isinstance(opt, mixed_precision.LossScaleOptimizer):
            self._set("optimizer", mixed_precision.LossScaleOptimizer(opt))

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- weights (the registry in mlxnote.nn.weights, shared with the layers) ------------
    def unbuilt(self) -> list[str]:
        return [p for p, e in weights.modules(self) if isinstance(e, Layer) and not e.built]

    @property
    def error_name(self) -> str:
        return self.name

    def _weights_ready(self, what: str) -> None:
        self._check_built(what)

    def _check_built(self, what: str) -> None:
        missing = self.unbuilt()
        if missing:
            raise RuntimeError(f"{self.name}: {what} needs built layers; unbuilt: {missing}. "
                               "Give input_size or run the model once on a batch.")

    def count_params(self) -> int:
        return sum(int(np.prod(v.shape)) for _, v in tree_flatten(self.parameters()))

    def summary(self, print_fn: Callable | None = None) -> None:
        """A table of the layers (path, type, weights, parameter count), printed or
        passed as text to ``print_fn``."""
        display.print_table(display.summary_table(self), print_fn)

    def _repr_html_(self) -> str:
        """Jupyter display: the summary table."""
        return display.table_html(display.summary_table(self))

    # -- configuration -------------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None,
                weighted_metrics: Any = None, auto_scale_loss: bool = True) -> None:
        """Set the optimizer (name or object), the loss and the metrics (Keras-style).

        Args:
            optimizer: a Keras name (``'adam'``, ``'sgd'``, ``'rmsprop'``, ``'adamw'``,
                ``'adagrad'``, ``'adamax'``, ``'adadelta'``, ``'lion'``; Keras defaults)
                or an ``mlx.optimizers.Optimizer``.
            loss: a Keras name (``'sparse_categorical_crossentropy'``, ``'mse'``, ...),
                a loss object (``SparseCategoricalCrossentropy(from_logits=True)``), an
                ``mlx.nn.losses`` function, or ``fn(y_true, y_pred)``.
            metrics: a list of names (``'accuracy'``, ``'mae'``, ``'precision'``,
                ``'auc'``, ``'sparse_top_k_categorical_accuracy'``, ...), metric objects
                (``AUC(num_thresholds=50)``, ...) or callables (:mod:`.metrics`); not
                weighted by ``sample_weight``/``class_weight`` (as in Keras).
            weighted_metrics: metrics as ``metrics``, weighted by the sample weights
                (Keras's; a name ``metrics`` has gets the prefix ``weighted_``).
            auto_scale_loss (bool): with the ``'mixed_float16'`` policy, wrap the
                optimizer in a :class:`~.mixed_precision.LossScaleOptimizer` (Keras's).
        """
        self._set("optimizer", get_optimizer(optimizer, self.name))
        self._set("_auto_scale_loss", check_bool(self.name, "auto_scale_loss",
                                                 auto_scale_loss))
        self._scale_loss()
        mx.eval(self.optimizer.state)  # a scheduled learning rate is lazy: any thread may fit
        self._set("loss", None if loss is None else get_loss(loss, self.name))
        metrics, weighted_metrics = _as_list(metrics), _as_list(weighted_metrics)
        self._set("metric_specs", get_metrics(metrics, self.loss, self.name))
        self._set("_metric_raw", metrics)
        self._set("weighted_specs", weighting.weighted_specs(
            get_metrics(weighted_metrics, self.loss, self.name),
            [n for n, _ in self.metric_specs]))
        self._set("_weighted_raw", weighted_metrics)
        self._steps.clear()

    def _configure(self, optimizer: Any, loss: Any, metrics: Any, where: str) -> None:
        """``compile`` with fit's overrides (when any are given); a loss is required."""
        if optimizer is not None or loss is not None or metrics is not None \
                or self.optimizer is None:
            self.compile(optimizer if optimizer is not None else (self.optimizer or "adam"),
                         loss if loss is not None else self.loss,
                         metrics if metrics is not None else self._metric_raw,
                         self._weighted_raw)
        if self.loss is None:
            raise error(where, "loss", None, "a loss name, object or callable (compile(loss="
                        "...) or fit(loss=...))")

    def _build(self, first: tuple[mx.array, ...]) -> None:
        """Build lazy layers with one forward pass (in eval mode) before compiling."""
        steps.build(self, first)

    def _init_optimizer(self) -> None:
        """Create the optimizer state (:func:`~.steps.init_optimizer`)."""
        steps.init_optimizer(self)

    # -- training ------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, epochs: int = 1, batch_size: int = 32,
            validation_data: Any = None, shuffle: bool = True,
            callbacks: Sequence[Callback] | None = None, verbose: int | str = "auto",
            validation_split: float = 0.0, initial_epoch: int = 0,
            resume: str | os.PathLike | None = None, optimizer: Any = None, loss: Any = None,
            metrics: Any = None, group: Any = None,
            collective_timeout: float | None = None, sample_weight: Any = None,
            class_weight: dict[int, float] | None = None) -> History:
        """Train for ``epochs`` epochs; returns a :class:`History` of per-epoch numbers.

        Args:
            x, y: arrays (NumPy or MLX; ``x`` may be a tuple of arrays for several
                inputs), or ``x`` an iterable of ``(x, y)`` or ``(x, y, sample_weight)``
                batches (a list, a re-iterable, or a callable returning an iterator; a
                one-shot generator allows one epoch) with ``y=None``.
            epochs (int): train until this epoch count (Keras's ``epochs``).
            batch_size (int): rows per step for array inputs (32).
            validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``
                arrays or an iterable of batches; evaluated after every epoch (``val_``
                logs).
            shuffle (bool): reshuffle array inputs every epoch. Randomness is
                reproducible and resumable: a base seed is drawn from MLX's generator
                when ``fit`` starts (``mx.random.seed`` fixes it; checkpoints save it);
                every epoch reseeds MLX from (base seed, epoch, rank) and shuffles from
                (base seed, epoch).
            callbacks (list): :class:`Callback` objects (:class:`ModelCheckpoint`,
                :class:`EarlyStopping`, :class:`LearningRateScheduler`, ...), run before
                the History and the progress bar (as in Keras: logs a callback adds, such
                as ``learning_rate``, are recorded).
            verbose: ``'auto'``/1 a progress bar (terminal or Jupyter; a line per epoch
                when the output is not a terminal), 2 a line per epoch, 0 silent.
            validation_split (float): hold out this last fraction of array inputs.
            initial_epoch (int): the epoch to start at.
            resume (str): a checkpoint written by :meth:`save` (or ModelCheckpoint):
                restores the weights, the optimizer state, the epoch and the base seed
                and continues: the result of an uninterrupted run (except for dropout
                layers given their own ``seed``, whose keys are not saved).
            optimizer, loss, metrics: as in :meth:`compile` (override it).
            group: an ``mx.distributed`` group; by default ``mx.distributed.init()``.
                With more than one rank, each rank trains on its shard of every batch,
                gradients are averaged, and only rank 0 prints and writes checkpoints.
            collective_timeout (float): distributed: the seconds a step may wait for the
                other ranks (default ``$MLXNOTE_COLLECTIVE_TIMEOUT``, unset: no limit); a
                rank waiting longer ends naming itself and the step (:class:`.Watchdog`).
            sample_weight: ``[N]`` (or ``[N, 1]``) weights of the samples of array
                inputs: the loss of a batch of ``B`` samples is ``sum(loss_i * w_i) / B``
                (Keras's ``sum_over_batch_size``); ``weighted_metrics`` use them,
                ``metrics`` do not (:mod:`.weighting`).
            class_weight: ``{class index: weight}``: each training sample weighs its
                class's weight (1 for a class not given; the label, or a one-hot
                label's argmax); not with ``sample_weight``, as in Keras.
        """
        where = f"{self.name}.fit"
        self._configure(optimizer, loss, metrics, where)
        epochs = check_int(where, "epochs", epochs, 0)
        batch_size = check_int(where, "batch_size", batch_size, 1)
        initial_epoch = check_int(where, "initial_epoch", initial_epoch, 0)
        shuffle = check_bool(where, "shuffle", shuffle)
        validation_split = check_float(where, "validation_split", validation_split, 0, 1)
        group = dist.resolve(group)
        watch = dist.watchdog(dist.collective_timeout(collective_timeout, where), group, where)
        rank, size = dist.rank_and_size(group)
        progbar = ProgbarLogger(0 if rank else verbose, where)
        train, val = data.fit_adapters(x, y, batch_size, validation_data, validation_split,
                                       epochs - initial_epoch, where, sample_weight,
                                       class_weight)
        initial_epoch = self._start(train, resume, initial_epoch, group, watch)
        history = History()
        cbs = CallbackList([*(callbacks or []), history, progbar], self,
                           {"epochs": epochs, "steps": train.num_batches, "verbose": verbose})
        its = [None if d is None else data.EpochIterator(d, where, rank, size, arg)
               for d, arg in ((train, "x"), (val, "y"))]
        self._set("history", history)
        self._fit_epochs(*its, cbs, group, range(initial_epoch, epochs), shuffle, where, watch)
        return history

    def _start(self, train: data.Adapter, resume: Any, initial_epoch: int, group: Any,
               watch: Any) -> int:
        """Build, create the optimizer state, load ``resume``; then rank 0's weights on
        every rank and a new base seed unless resuming. Returns the first epoch."""
        self._build(train.first())
        self._init_optimizer()
        if resume is not None:
            initial_epoch = self.load(resume)["epoch"]
        with contextlib.nullcontext() if watch is None else watch.guard("the start of fit"):
            if group is not None:
                self.update(dist.broadcast(self.parameters(), group))
            if self._seed is None or resume is None:
                seed = int(mx.random.randint(0, 2**31 - 1, ()).item())
                self._set("_seed", dist.agree(seed, group))
        return initial_epoch

    def _fit_epochs(self, it: data.EpochIterator, val: data.EpochIterator | None,
                    cbs: CallbackList, group: Any, epochs: range, shuffle: bool,
                    where: str, watch: Any) -> None:
        """The epoch loop: train, validate, callbacks; the mode is restored, the callbacks
        and the watchdog closed also when something raised. A callback's
        ``on_train_begin`` may set ``_initial_epoch`` (and ``_initial_batch``: the batches
        done, the sums and the random key of a backup written mid-epoch) to start there
        (:class:`~.callbacks.BackupAndRestore`)."""
        self._set("stop_training", False)
        self._set("_group", group)
        mode = self.training
        try:
            step = self._steps.get("train", group)
            vstep = None if val is None else self._steps.get("eval", group)
            self._set("_initial_epoch", None)
            self._set("_initial_batch", None)
            cbs.on_train_begin()
            if self._initial_epoch is not None:  # a callback restored a backup
                epochs = range(self._initial_epoch, epochs.stop)
            resume, self._initial_batch = self._initial_batch, None
            for epoch in epochs:
                cbs.on_epoch_begin(epoch)
                if watch is not None:
                    watch.context = f"epoch {epoch + 1}/{epochs.stop}"
                steps.seed_epoch(self._seed, epoch, it.rank)
                logs = steps.run_train(self, step, it, cbs,
                                       [self._seed, epoch] if shuffle else None, where, watch,
                                       resume)
                resume = None
                if val is not None:
                    self.eval()
                    logs.update(steps.run_eval(self, vstep, val, where, None, watch)
                                .logs("val_"))
                self.train(mode)
                self._set("epoch", epoch + 1)
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cbs.on_train_end()
        finally:
            cbs.close()
            self.train(mode)
            self._set("_group", None)
            if watch is not None:
                watch.close()

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int = 32,
                 verbose: int | str = "auto", return_dict: bool = False, group: Any = None,
                 callbacks: Sequence[Callback] | None = None,
                 collective_timeout: float | None = None, sample_weight: Any = None) -> Any:
        """Loss and metrics in eval mode: a float (no metrics), ``[loss, *metrics]``,
        or a dict with ``return_dict``. Distributed: each rank evaluates its shard and
        the sums are combined, so every rank gets the full-data numbers
        (``collective_timeout`` as in :meth:`fit`). ``sample_weight`` as in
        :meth:`fit` (Keras's ``evaluate`` has no ``class_weight``)."""
        where = f"{self.name}.evaluate"
        if self.loss is None:
            raise error(where, "loss", None, "a compiled loss (compile(loss=...) or fit)")
        batch_size = check_int(where, "batch_size", batch_size, 1)
        group = dist.resolve(group)
        watch = dist.watchdog(dist.collective_timeout(collective_timeout, where), group, where)
        rank, size = dist.rank_and_size(group)
        progbar = ProgbarLogger(0 if rank else verbose, where)
        it = data.EpochIterator(data.adapter(x, y, batch_size, where, sample_weight), where,
                                rank, size, "y")
        self._build(it.data.first())
        with self._inference([progbar, *(callbacks or [])], it, verbose, watch) as cbs:
            cbs.on_test_begin()
            step = self._steps.get("eval", group)
            logs = steps.run_eval(self, step, it, where, cbs, watch).logs()
            cbs.on_test_end(logs)
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def predict(self, x: Any, batch_size: int = 32, verbose: int | str = 0,
                callbacks: Sequence[Callback] | None = None) -> Any:
        """Outputs in eval mode, batch by batch (compiled), concatenated on axis 0.

        Returns NumPy when ``x`` is NumPy (bfloat16 as float32), MLX otherwise; under a
        mixed policy, in the compute dtype (:mod:`.mixed_precision`).

        ``predict`` (and ``evaluate``) always run in eval mode and put the mode back. A
        direct call ``model(x)`` runs in the model's mode, which is training by default
        and after ``fit`` (Note's convention, decisions.md items 2 and 40): dropout is
        active and batch norm uses (and updates) batch statistics, so two calls on the
        same ``x`` can differ. Call ``model.eval()`` before calling the model for
        inference (``model.train()`` to go back).
        """
        where = f"{self.name}.predict"
        batch_size = check_int(where, "batch_size", batch_size, 1)
        progbar = ProgbarLogger(verbose, where)
        it = data.EpochIterator(data.adapter(x, None, batch_size, where), where, labels=None)
        self._build(it.data.first())
        fwd = self._steps.get("predict")
        with self._inference([progbar, *(callbacks or [])], it, verbose) as cbs:
            cbs.on_predict_begin()
            outs = steps.run_predict(fwd, it, cbs)
            cbs.on_predict_end()
        return data.collate(outs, x, where)

    @contextlib.contextmanager
    def _inference(self, callbacks: list[Callback], it: data.EpochIterator,
                   verbose: Any, watch: Any = None) -> Iterator[CallbackList]:
        """Eval mode and the callbacks of an evaluate/predict run; the mode is restored,
        the callbacks and the watchdog closed also when something raised."""
        cbs = CallbackList(callbacks, self, {"steps": it.num_batches, "verbose": verbose})
        mode = self.training
        self.eval()
        try:
            yield cbs
        finally:
            cbs.close()
            self.train(mode)
            if watch is not None:
                watch.close()

