"""Training: :class:`Model` and :class:`Sequential` with a Keras-style loop on MLX.

``from mlxnote.training import Model, Sequential, Adam, ModelCheckpoint, ...``

Modules:

* :mod:`.model`, :mod:`.sequential`: Model and Sequential (thin fit/evaluate/predict);
* :mod:`.steps`: the compiled train/eval/predict steps, their cache, one epoch's run;
* :mod:`.data`: data adapters, the epoch iterator, per-rank sharding;
  :mod:`.weighting`: ``sample_weight``, ``class_weight`` and ``weighted_metrics`` with
  Keras's semantics;
* :mod:`.mixed_precision`: Keras's ``mixed_bfloat16``/``mixed_float16`` policies
  (``set_global_policy``, ``model.dtype_policy``; float32 weights, 16-bit compute) and
  :class:`LossScaleOptimizer` (dynamic loss scaling, skipped non-finite steps);
* :mod:`.optimizers`, :mod:`.losses`, :mod:`.metrics`: Keras semantics and names
  (:mod:`.confusion`: Precision, Recall, AUC, accumulated over batches and ranks);
* :mod:`.callbacks` (one module each): History, EarlyStopping, ModelCheckpoint,
  ProgbarLogger, LearningRateScheduler, ReduceLROnPlateau (the learning rate set in the
  optimizer's state between compiled steps, no new trace), CSVLogger, TerminateOnNaN,
  BackupAndRestore (a backup that a rerun of ``fit`` resumes exactly);
  :mod:`.display`: the progress display and the summary table;
* :mod:`.checkpoint`: atomic safetensors save, strict all-or-nothing load (into a lazily
  built model too: :mod:`.rebuild` builds its layers from the checkpoint's shapes);
  :mod:`.keras_h5`: Keras 3's ``.weights.h5`` (``save_weights``/``load_weights``);
  :mod:`.integrity`: a CRC-32 per tensor; :mod:`.labels`: class labels checked;
* :mod:`.distributed`: data-parallel helpers on ``mx.distributed`` and the collective
  timeout; :mod:`.launch`: ``python -m mlxnote.launch``, which fails when a rank fails.

Optimizers, losses and metrics by name follow Keras: ``'adam'`` is Keras's Adam
(learning rate 1e-3, betas 0.9/0.999, epsilon 1e-7, Keras's update rule), ``'sgd'`` has
learning rate 0.01, ``'sparse_categorical_crossentropy'`` expects probabilities unless
``SparseCategoricalCrossentropy(from_logits=True)`` is given. Every optimizer here takes
Keras's ``clipnorm``, ``clipvalue`` or ``global_clipnorm``.
"""

from . import (  # noqa: F401  (the modules)
    callbacks,
    checkpoint,
    confusion,
    data,
    display,
    distributed,
    integrity,
    labels,
    losses,
    metrics,
    mixed_precision,
    optimizers,
    steps,
    weighting,
)
from .callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .checkpoint import CheckpointError
from .confusion import AUC, Precision, Recall
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    get_loss,
)
from .metrics import SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy, get_metric
from .mixed_precision import LossScaleOptimizer, set_global_policy
from .model import Model
from .optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    RMSprop,
    get_optimizer,
)
from .sequential import Sequential

__all__ = [
    "Model", "Sequential",
    "Callback", "History", "ModelCheckpoint", "EarlyStopping", "ProgbarLogger",
    "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "TerminateOnNaN",
    "BackupAndRestore", "Precision", "Recall", "AUC", "SparseTopKCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "Adam", "AdamW", "Adamax", "RMSprop", "Adagrad", "SGD", "Adadelta", "Lion",
    "get_optimizer", "LossScaleOptimizer", "set_global_policy",
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "Huber", "get_loss", "get_metric",
    "CheckpointError",
    "callbacks", "checkpoint", "data", "display", "distributed", "losses", "metrics",
    "optimizers", "steps", "mixed_precision", "weighting",
]
