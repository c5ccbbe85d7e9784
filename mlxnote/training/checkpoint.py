"""Checkpoints: safetensors files written atomically, checksummed, and loaded strictly.

A checkpoint holds flat ``model.<path>`` and ``optimizer.<path>`` arrays and string
metadata (``format``, ``epoch``, ``model``, ``optimizer``, ``seed``, ``crc32``).

* :func:`write` is atomic: a temporary file in the same directory, fsynced, then
  ``os.replace``; a process killed mid-save leaves the previous file intact. Temporary
  files of earlier writers that have died are removed (:func:`clean_stale`; ``fit``
  also does it for its ModelCheckpoint paths when it starts). A folder that cannot be
  written gives an ``OSError`` (``PermissionError``, ``FileNotFoundError``, ...) naming
  the checkpoint's path.
* :func:`read` checks that the file is an mlxnote checkpoint, that it is whole (every
  tensor's CRC-32, nothing appended: :mod:`~.integrity`) and that its metadata is valid,
  before anything is changed; :func:`compare` lists every missing, unexpected and
  mismatched key, and :func:`assign` sets a live tree only once everything matched (all
  or nothing).

Checkpoints of format ``mlxnote-checkpoint/1`` (before checksums) still load, with a
warning that their integrity cannot be checked: refusing them would strand every run
saved before, and the strict key, shape and dtype checks still apply. A file that says
it is format 2 must have every checksum.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from . import integrity

__all__ = ["CheckpointError", "FORMAT", "FORMAT_V1", "write", "require", "read",
           "model_shapes", "compare", "mismatch", "assign", "clean_stale", "clean_stale_like",
           "contents", "restore", "restore_optimizer", "parse_metadata"]

FORMAT = "mlxnote-checkpoint/2"
FORMAT_V1 = "mlxnote-checkpoint/1"  # no checksums: loaded with a warning
_TMP = ".tmp.safetensors"
_TMP_NAME = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)\.[0-9a-f]+" + re.escape(_TMP) + "$")


class CheckpointError(ValueError):
    """A checkpoint that does not match the model, is corrupt, or has invalid metadata
    (the path and every offending key or field are named)."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(tmp: str, path: str, owner: str) -> None:
    """Create the temporary file (so that an unwritable folder gives Python's own
    ``OSError``, naming the checkpoint, rather than MLX's ``RuntimeError``)."""
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as e:
        raise OSError(e.errno, f"{owner}: cannot write the checkpoint {path!r} "
                      f"({e.strerror} in its folder)", path) from e


def write(path: str | os.PathLike, arrays: dict[str, mx.array], metadata: dict[str, str],
          owner: str = "Model.save") -> None:
    """Write ``arrays`` and ``metadata`` (plus a CRC-32 per array) to ``path`` atomically
    (see the module doc)."""
    path = os.fspath(path)
    mx.eval(list(arrays.values()))
    metadata = {**metadata, integrity.FIELD: integrity.checksums(arrays)}
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    clean_stale(d, base)
    tmp = os.path.join(d, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP}")
    _create(tmp, path, owner)
    try:
        try:
            mx.save_safetensors(tmp, arrays, metadata=metadata)
        except RuntimeError as e:
            raise OSError(f"{owner}: could not write the checkpoint {path!r}: {e}") from e
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


def clean_stale(d: str, base: str, pattern: bool = False) -> None:
    """Remove temporary files of earlier saves to ``base`` (a file name; an ``fnmatch``
    pattern with ``pattern``) in folder ``d`` whose writer has died."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    base = base if pattern else glob.escape(base)
    for n in names:
        m = _TMP_NAME.match(n)
        if m is None or not fnmatch.fnmatchcase(m["base"], base):
            continue
        pid = int(m["pid"])
        if pid != os.getpid() and not _alive(pid):
            try:
                os.remove(os.path.join(d, n))
            except OSError:  # pragma: no cover
                pass


def clean_stale_like(path: str | os.PathLike) -> None:
    """:func:`clean_stale` for a checkpoint path whose name may hold ``{epoch}``-style
    fields (ModelCheckpoint's): every name the template can give."""
    d, base = os.path.split(os.path.abspath(os.fspath(path)))
    clean_stale(d, "*".join(glob.escape(p) for p in re.split(r"\{[^{}]*\}", base)), True)


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


def model_shapes(path: str | os.PathLike, owner: str) -> dict[str, tuple[int, ...]]:
    """``{path: shape}`` of the ``model.`` tensors of checkpoint ``path`` (the prefix
    removed), from its header alone; a :class:`CheckpointError` naming ``owner`` when
    the header cannot be read (:func:`read` checks the rest)."""
    path = os.fspath(path)
    try:
        info, _ = integrity.header(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{owner}: {path!r} is not a readable safetensors "
                              f"file ({e})") from e
    return {k[len("model."):]: tuple(v["shape"]) for k, v in info.items()
            if k.startswith("model.") and isinstance(v, dict) and "shape" in v}


def read(path: str | os.PathLike, owner: str
         ) -> tuple[dict[str, mx.array], dict[str, mx.array], dict[str, Any]]:
    """``(model arrays, optimizer arrays, metadata)`` of an mlxnote checkpoint, the
    ``model.``/``optimizer.`` prefixes removed, the arrays evaluated and the metadata
    parsed (:func:`parse_metadata`); otherwise ``FileNotFoundError`` or
    :class:`CheckpointError`, naming ``owner`` and the path. Nothing is changed."""
    path = os.fspath(path)
    require(path, owner)
    try:
        arrays, meta = mx.load(path, format="safetensors", return_metadata=True)
    except Exception as e:
        raise CheckpointError(f"{owner}: {path!r} is not a readable safetensors "
                              f"file ({e})") from e
    if meta.get("format") not in (FORMAT, FORMAT_V1):
        raise CheckpointError(f"{owner}: {path!r} is not an mlxnote checkpoint "
                              f"(metadata format {meta.get('format')!r}, expected "
                              f"{FORMAT!r}); use load_weights for plain weight files")
    _verify(path, owner, meta)
    parsed = parse_metadata(meta, path, owner)
    mx.eval(list(arrays.values()))  # loaded once, usable from any thread
    model = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    opt = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    return model, opt, parsed


def _verify(path: str, owner: str, meta: dict[str, str]) -> None:
    """Integrity (:mod:`~.integrity`) of a format-2 file; a warning for format 1."""
    if meta["format"] == FORMAT_V1:
        warnings.warn(f"{owner}: {path!r} is a {FORMAT_V1} checkpoint, written before "
                      "checkpoints had checksums: its data cannot be checked for corruption",
                      stacklevel=5)
        return
    if integrity.FIELD not in meta:
        raise CheckpointError(f"{owner}: {path!r}: metadata field {integrity.FIELD!r} is "
                              f"missing (a {FORMAT} checkpoint has a checksum per tensor)")
    try:
        problems = integrity.verify(path, meta[integrity.FIELD])
    except (OSError, ValueError) as e:
        problems = [f"its header cannot be read ({e})"]
    if problems:
        raise CheckpointError(f"{owner}: {path!r} is corrupt: " + "; ".join(problems))


def _nonnegative_int(meta: dict[str, str], field: str, path: str, owner: str,
                     limit: int) -> int | None:
    if field not in meta:
        return None
    v = meta[field]
    if not (v.isascii() and v.isdigit()) or int(v) >= limit:
        raise CheckpointError(f"{owner}: {path!r}: metadata field {field!r} is {v!r}; "
                              f"allowed: an integer in [0, {limit})")
    return int(v)


def parse_metadata(meta: dict[str, str], path: str, owner: str) -> dict[str, Any]:
    """The metadata with ``epoch`` (0 when absent) and ``seed`` (when present) as ints;
    :class:`CheckpointError` naming the path and the field for anything else (a
    negative, fractional or non-numeric value)."""
    out: dict[str, Any] = {k: v for k, v in meta.items() if k != integrity.FIELD}
    epoch = _nonnegative_int(meta, "epoch", path, owner, 2**31)
    out["epoch"] = 0 if epoch is None else epoch
    seed = _nonnegative_int(meta, "seed", path, owner, 2**63)
    if seed is not None:
        out["seed"] = seed
    return out


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
