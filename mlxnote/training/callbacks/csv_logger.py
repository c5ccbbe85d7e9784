"""CSVLogger: one CSV row of logs per epoch."""

from __future__ import annotations

import collections.abc
import csv
import os
from typing import Any

import numpy as np

from ..._validation import check_bool, error
from .base import Callback

__all__ = ["CSVLogger"]


def _cell(v: Any) -> Any:
    """Keras's ``handle_value``: strings as they are, iterables (a metric's array of
    thresholds) as ``"[a, b]"``, numbers as they are."""
    if isinstance(v, str):
        return v
    if isinstance(v, collections.abc.Iterable) and not (isinstance(v, np.ndarray)
                                                        and v.ndim == 0):
        return f'"[{", ".join(map(str, v))}]"'
    return v


class CSVLogger(Callback):
    """Keras's ``CSVLogger(filename, separator=',', append=False)``: after each epoch a
    row ``epoch, <logs sorted by key>`` (``epoch`` from 0). The columns are fixed by the
    first epoch; without validation logs ``val_`` columns are added holding ``NA``, as in
    Keras. ``append=True`` continues an existing file (the header written only if the
    file is empty); otherwise it is overwritten. Written on the rank that writes
    checkpoints (rank 0); flushed after each row, closed at the end of training (also
    when it fails)."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False) -> None:
        if not isinstance(separator, str) or len(separator) != 1:
            raise error("CSVLogger", "separator", separator, "a one-character string",
                        TypeError if not isinstance(separator, str) else ValueError)
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = check_bool("CSVLogger", "append", append)
        self.keys: list[str] | None = None
        self.writer: Any = None
        self.csv_file: Any = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        self.close()
        self.keys, self.writer = None, None
        if not self.model._writes_checkpoints():
            return
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not f.readline()
        else:
            self.append_header = True
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115

    def on_epoch_end(self, epoch, logs=None):
        if self.csv_file is None:
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys],
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch, **{k: _cell(logs.get(k, "NA")) for k in self.keys}}
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file, self.writer = None, None
