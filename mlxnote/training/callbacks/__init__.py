"""Keras-style callbacks, one module each: the hooks and History (:mod:`.base`),
EarlyStopping, ModelCheckpoint, the progress bar (:class:`ProgbarLogger`),
LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN and
BackupAndRestore.

``fit`` runs ``[*callbacks, History, ProgbarLogger]`` (Keras's order: the History
records what callbacks add to the logs, such as ``learning_rate``), ``evaluate`` and
``predict`` ``[ProgbarLogger, *callbacks]``, through a :class:`CallbackList`. Logs are dicts of
floats: the running means of the loss and metrics after each batch, the epoch's means
(and the ``val_`` ones) at the end of an epoch.
"""

from .backup_and_restore import BackupAndRestore
from .base import Callback, CallbackList, History, mode_sign
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .learning_rate import get_learning_rate, set_learning_rate
from .learning_rate_scheduler import LearningRateScheduler
from .model_checkpoint import ModelCheckpoint
from .progbar_logger import ProgbarLogger
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "History", "ModelCheckpoint", "EarlyStopping",
           "ProgbarLogger", "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger",
           "TerminateOnNaN", "BackupAndRestore", "get_learning_rate", "set_learning_rate",
           "mode_sign"]
