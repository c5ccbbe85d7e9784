"""Checkpoints: safetensors files written atomically and loaded strictly.

A checkpoint holds flat ``model.<path>`` and ``optimizer.<path>`` arrays and string
metadata (``format``, ``epoch``, ``model``, ``optimizer``, ``seed``).

* :func:`write` is atomic: a temporary file in the same directory, fsynced, then
  ``os.replace``; a process killed mid-save leaves the previous file intact. Temporary
  files of earlier writers that have died are removed.
* :func:`read` checks that the file is an mlxnote checkpoint and splits it; :func:`compare` lists
  every missing, unexpected and mismatched key, and :func:`assign` sets a live tree only
  once everything matched (all or nothing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

__all__ = ["CheckpointError", "FORMAT", "write", "require", "read", "compare", "mismatch",
           "assign", "clean_stale", "contents", "restore", "restore_optimizer"]

FORMAT = "mlxnote-checkpoint/1"
_TMP = ".tmp.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that does not match the model (every offending key is named)."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: str | os.PathLike, arrays: dict[str, mx.array], metadata: dict[str, str]) -> None:
    """Write ``arrays`` and ``metadata`` to ``path`` atomically (see the module doc)."""
    path = os.fspath(path)
    mx.eval(list(arrays.values()))
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    clean_stale(d, base)
    tmp = os.path.join(d, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP}")
    try:
        mx.save_safetensors(tmp, arrays, metadata=metadata)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:
        _fsync(d)
    except OSError:  # pragma: no cover - directories cannot be fsynced everywhere
        pass


def clean_stale(d: str, base: str) -> None:
    """Remove temporary files of earlier saves of ``base`` whose writer has died."""
    prefix = f".{base}."
    try:
        names = os.listdir(d)
    except OSError:  # pragma: no cover
        return
    for n in names:
        if not (n.startswith(prefix) and n.endswith(_TMP)):
            continue
        try:
            pid = int(n[len(prefix):].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            try:
                os.remove(os.path.join(d, n))
            except OSError:  # pragma: no cover
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    return True


def require(path: str | os.PathLike, owner: str) -> None:
    """``FileNotFoundError`` (naming ``owner``) unless ``path`` exists."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{owner}: no checkpoint at {os.fspath(path)!r}")


def read(path: str | os.PathLike, owner: str
         ) -> tuple[dict[str, mx.array], dict[str, mx.array], dict[str, str]]:
    """``(model arrays, optimizer arrays, metadata)`` of an mlxnote checkpoint, the
    ``model.``/``optimizer.`` prefixes removed; otherwise ``FileNotFoundError`` or
    :class:`CheckpointError`, naming ``owner``."""
    path = os.fspath(path)
    require(path, owner)
    try:
        arrays, meta = mx.load(path, format="safetensors", return_metadata=True)
    except Exception as e:
        raise CheckpointError(f"{owner}: {path!r} is not a readable safetensors "
                              f"file ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{owner}: {path!r} is not an mlxnote checkpoint "
                              f"(metadata format {meta.get('format')!r}, expected "
                              f"{FORMAT!r}); use load_weights for plain weight files")
    model = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    opt = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    return model, opt, meta


def compare(current: Sequence[tuple[str, mx.array]], saved: dict[str, mx.array],
            prefix: str) -> list[str]:
    """Every difference between a flattened live tree and saved arrays: missing keys,
    unexpected keys, shapes and dtypes (keys shown with ``prefix``)."""
    cur = dict(current)
    out = []
    missing = [k for k in cur if k not in saved]
    extra = [k for k in saved if k not in cur]
    if missing:
        out.append("missing from the checkpoint: " + ", ".join(prefix + k for k in missing))
    if extra:
        out.append("not in the model: " + ", ".join(prefix + k for k in extra))
    for k, v in cur.items():
        if k not in saved:
            continue
        s = saved[k]
        if tuple(s.shape) != tuple(v.shape):
            out.append(f"{prefix}{k}: shape {tuple(s.shape)} in the checkpoint, "
                       f"{tuple(v.shape)} in the model")
        elif s.dtype != v.dtype:
            out.append(f"{prefix}{k}: dtype {s.dtype} in the checkpoint, {v.dtype} in "
                       "the model")
    return out


def mismatch(owner: str, path: Any, what: str, problems: list[str]) -> CheckpointError:
    """The error listing ``problems`` of checkpoint ``path`` against ``what``."""
    return CheckpointError(f"{owner}: {os.fspath(path)!r} does not match the {what}:\n  "
                           + "\n  ".join(problems))


def assign(root: Any, current: Sequence[tuple[str, mx.array]],
           values: dict[str, mx.array]) -> None:
    """Set every leaf of ``current`` (``tree_flatten`` of ``root``) in ``root`` (a module
    or an optimizer state: nested dicts and lists) to ``values[key]``."""
    for k, _ in current:
        *head, leaf = k.split(".")
        node = root
        for p in head:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(leaf)] = values[k]
        else:
            node[leaf] = values[k]
    mx.eval(list(values.values()))


def contents(module: Any, optimizer: Any, metadata: dict[str, str]
             ) -> tuple[dict[str, mx.array], dict[str, str]]:
    """The arrays of a checkpoint of ``module`` (every parameter, as stored) and of
    ``optimizer``'s state once it exists, and ``metadata`` with the format added."""
    arrays = {f"model.{k}": v for k, v in tree_flatten(module.parameters())}
    if optimizer is not None and optimizer._initialized:
        arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    return arrays, {"format": FORMAT, **metadata}


def restore(path: str, owner: str, module: Any, optimizer: Any
            ) -> tuple[dict[str, str], dict[str, mx.array] | None]:
    """Load checkpoint ``path`` into ``module`` and, if its state exists, ``optimizer``:
    all or nothing (a :class:`CheckpointError` lists every problem first).

    Returns ``(metadata, optimizer arrays still to apply)``: the second is ``None`` unless
    the checkpoint has an optimizer state and ``optimizer`` has none yet (then
    :func:`restore_optimizer` applies it once it is created).
    """
    model_part, opt_part, meta = read(path, owner)
    current = tree_flatten(module.parameters())
    problems = compare(current, model_part, "model.")
    ready = optimizer is not None and optimizer._initialized
    if opt_part and ready:
        problems += compare(tree_flatten(optimizer.state), opt_part, "optimizer.")
    if problems:
        raise mismatch(owner, path, "model", problems)
    assign(module, current, model_part)
    if not opt_part:
        return meta, None
    if not ready:
        return meta, opt_part
    restore_optimizer(optimizer, opt_part, owner, path)
    return meta, None


def restore_optimizer(optimizer: Any, values: dict[str, mx.array], owner: str,
                      path: str) -> None:
    """Set ``optimizer``'s state from a checkpoint's optimizer arrays, strictly."""
    current = tree_flatten(optimizer.state)
    problems = compare(current, values, "optimizer.")
    if problems:
        raise mismatch(owner, path, "optimizer", problems)
    assign(optimizer.state, current, values)
