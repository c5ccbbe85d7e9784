"""BackupAndRestore: a backup of the training state that a rerun of ``fit`` resumes."""

from __future__ import annotations

import json
import os
from typing import Any

import mlx.core as mx

from ..._validation import check_bool, error, is_int
from .. import checkpoint
from .base import Callback

__all__ = ["BackupAndRestore"]

LATEST = "latest.safetensors"


class BackupAndRestore(Callback):
    """Keras's ``BackupAndRestore``: back up the training state in ``backup_dir``; a
    ``fit`` started again (after a crash, in a new process) with this callback continues
    from the backup and ends as an uninterrupted run would, bit for bit.

    The backup is an mlxnote checkpoint (:meth:`Model.save`: atomic, checksummed; the
    weights, the optimizer state with its learning rate, the epoch, fit's seed), and,
    when written mid-epoch, the batches done, the epoch's running sums and MLX's random
    key, so that the rerun skips those batches and draws what the first run did. When
    ``fit`` starts and a backup exists, it is loaded and training starts at its epoch
    (and batch), like ``fit(resume=...)``.

    Args:
        backup_dir (str): the folder of the backup (created when needed); it belongs to
            this callback (not to be shared with another run or a ModelCheckpoint).
        save_freq: ``'epoch'`` (after every epoch) or an int ``n`` (after every ``n``
            training batches, counted across epochs).
        double_checkpoint (bool): keep the previous backup too (``latest.safetensors.bkp``)
            and fall back to it when the latest one cannot be loaded (corrupt).
        delete_checkpoint (bool): remove the backup files (and the folder, if then
            empty) when training ends normally (True, Keras's default); a run that
            raises keeps them.

    As in Keras, the callbacks' own state (EarlyStopping's patience count, ...) is not
    part of the backup, and the model must be built with the same layers and compiled
    the same way (a mismatch is a :class:`~mlxnote.training.CheckpointError`).
    """

    def __init__(self, backup_dir: str | os.PathLike, save_freq: Any = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True) -> None:
        owner = "BackupAndRestore"
        if not backup_dir:
            raise error(owner, "backup_dir", backup_dir, "a folder path")
        if save_freq != "epoch" and not (is_int(save_freq) and save_freq >= 1):
            raise error(owner, "save_freq", save_freq, "'epoch' or an int >= 1",
                        ValueError if isinstance(save_freq, str) or is_int(save_freq)
                        else TypeError)
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = check_bool(owner, "double_checkpoint", double_checkpoint)
        self.delete_checkpoint = check_bool(owner, "delete_checkpoint", delete_checkpoint)
        self.path = os.path.join(self.backup_dir, LATEST)
        self.prev_path = self.path + ".bkp"
        self._since_save = 0

    # -- restoring ---------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._since_save = 0
        meta = self._load()
        if meta is None:
            return
        self.model._set("_initial_epoch", meta["epoch"])  # Keras's model._initial_epoch
        if "batch" in meta:
            hi, lo = (int(v) for v in meta["random_key"].split(","))
            self.model._set("_initial_batch", {"batch": int(meta["batch"]), "key": (hi, lo),
                                               "sums": json.loads(meta["sums"])})

    def _load(self) -> dict[str, Any] | None:
        """The backup's metadata after loading it (the previous one if the latest cannot
        be read and ``double_checkpoint`` kept one); ``None`` when there is none."""
        paths = [self.path] + ([self.prev_path] if self.double_checkpoint else [])
        paths = [p for p in paths if os.path.exists(p)]
        for i, p in enumerate(paths):
            try:
                return self.model.load(p)
            except (checkpoint.CheckpointError, OSError):
                if i == len(paths) - 1:
                    raise
        return None

    # -- saving ------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._since_save += 1
        if self._since_save >= self.save_freq:
            self._since_save = 0
            totals = self.model._epoch_totals
            hi, lo = mx.random.state[0].tolist()
            self._save({"batch": str(batch + 1), "sums": json.dumps(totals.sums),
                        "random_key": f"{int(hi)},{int(lo)}"})

    def _save(self, extra: dict[str, str] | None = None) -> None:
        if not self.model._writes_checkpoints():
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self.path):
            os.replace(self.path, self.prev_path)
        arrays, meta = self.model._checkpoint_arrays()
        checkpoint.write(self.path, arrays, {**meta, **(extra or {})},
                         owner="BackupAndRestore")

    def on_train_end(self, logs=None):
        if not (self.delete_checkpoint and self.model._writes_checkpoints()):
            return
        for p in (self.path, self.prev_path):
            if os.path.exists(p):
                os.remove(p)
        try:
            os.rmdir(self.backup_dir)
        except OSError:  # not empty (other files) or gone
            pass
