"""Saving and loading a :class:`~mlxnote.training.model.Model`: its weights alone
(Keras 3's ``.weights.h5``, MLX's ``.npz``/``.safetensors``) and whole checkpoints (the
weights, the optimizer state, the epoch and fit's seed; :mod:`~.checkpoint`)."""

from __future__ import annotations

import os
from typing import Any

import mlx.core as mx

from .._validation import error
from . import checkpoint, keras_h5, rebuild
from . import distributed as dist


class Persistence:
    """``save_weights``/``load_weights`` and ``save``/``load`` (a mixin of ``Model``, before
    :class:`mlx.nn.Module`, whose own weight files it extends)."""

    # -- weight files --------------------------------------------------------------
    def save_weights(self, file: str | os.PathLike, overwrite: bool = True) -> None:
        """The weights alone: a name ending in ``.weights.h5`` writes Keras 3's file
        (:mod:`~.keras_h5`; Keras's ``load_weights`` reads it into a model of the
        corresponding layers), ``.npz``/``.safetensors`` MLX's (parameter paths, as
        ``mlx.nn.Module.save_weights``). ``overwrite=False`` refuses an existing file."""
        if keras_h5.is_keras_file(file):
            keras_h5.save(self, file, f"{self.name}.save_weights", overwrite)
            return
        file = os.fspath(file)
        if not overwrite and os.path.exists(file):
            raise FileExistsError(f"{self.name}.save_weights: {file!r} exists (overwrite=False)")
        if file.endswith(".h5"):
            raise error(f"{self.name}.save_weights", "file", file,
                        "a name ending in '.weights.h5' (Keras 3's weights file), '.npz' or "
                        "'.safetensors'")
        super().save_weights(file)

    def load_weights(self, file_or_weights: Any, strict: bool = True) -> Persistence:
        """Load weights saved by :meth:`save_weights`: Keras 3's ``.weights.h5`` (also
        one Keras wrote; strict, all or nothing: :mod:`~.keras_h5`), MLX's
        ``.npz``/``.safetensors`` or a list of ``(path, array)`` pairs
        (``mlx.nn.Module.load_weights``; ``strict`` as there)."""
        if keras_h5.is_keras_file(file_or_weights):
            keras_h5.load(self, file_or_weights, f"{self.name}.load_weights")
            return self
        if isinstance(file_or_weights, os.PathLike):
            file_or_weights = os.fspath(file_or_weights)
        super().load_weights(file_or_weights, strict=strict)
        return self

    # -- checkpoints ---------------------------------------------------------------
    def _checkpoint_arrays(self) -> tuple[dict[str, mx.array], dict[str, str]]:
        meta = {"epoch": str(self.epoch), "model": self.name,
                "optimizer": type(self.optimizer).__name__ if self.optimizer else ""}
        if self._seed is not None:
            meta["seed"] = str(self._seed)
        return checkpoint.contents(self, self.optimizer, meta)

    def _writes_checkpoints(self) -> bool:
        """Rank 0 of the run's group (or of the default one) writes checkpoints."""
        group = self._group if self._group is not None else dist.resolve(None)
        return group is None or group.rank() == 0

    def save(self, path: str | os.PathLike, all_ranks: bool = False) -> None:
        """Write a safetensors checkpoint: every weight (``model.<path>``, as stored),
        the optimizer state (``optimizer.<path>``); metadata: the epoch, fit's seed and a
        CRC-32 per tensor (checked by :meth:`load`).

        The write is atomic: a temporary file in the same directory, flushed to disk,
        then ``os.replace``: a process killed mid-save leaves the previous file intact
        (its temporary file is removed by the next save to that name or fit with a
        ModelCheckpoint to it). An unwritable folder raises an ``OSError``
        (``PermissionError``, ...) naming ``path``. In a distributed run only rank 0
        writes (unless ``all_ranks``).
        """
        if not (all_ranks or self._writes_checkpoints()):
            return
        checkpoint.write(path, *self._checkpoint_arrays(), owner=f"{self.name}.save")

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a checkpoint written by :meth:`save`, strictly and all or nothing.

        Before anything changes, the file must be whole (every tensor's checksum, nothing
        appended), its metadata valid (``epoch`` and ``seed`` integers >= 0), and every
        weight present with the same shape and dtype, with nothing extra: otherwise a
        :class:`CheckpointError` names the path and every offending tensor, key or field.
        The optimizer state is restored when the checkpoint has one (applied when the
        optimizer is created, if it is not yet). A checkpoint from before checksums
        (format 1) loads with a warning (see :mod:`~mlxnote.training.checkpoint`). Returns
        ``{'epoch': int, ...metadata}`` (``seed`` an int); ``self.epoch`` is set.

        Layers not built yet (no ``input_size``, never called) are first built for the
        input sizes the checkpoint's weight shapes imply (:mod:`~.rebuild`; they stay
        built if the load then fails).
        """
        where, path = f"{self.name}.load", os.fspath(path)
        checkpoint.require(path, where)
        if self.unbuilt():
            rebuild.build_from_shapes(self, checkpoint.model_shapes(path, where))
        self._check_built("load")
        meta, pending = checkpoint.restore(path, where, self, self.optimizer)
        if pending is not None:
            self._set("_pending_opt", (pending, path))
        self._set("epoch", meta["epoch"])
        if "seed" in meta:
            self._set("_seed", meta["seed"])
        return meta
