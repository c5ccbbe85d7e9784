"""A mutation worker: one process that imports TensorFlow, MLX, mlxnote and the suite once,
then runs requests read as JSON lines from stdin and answers each with one JSON line.

* ``{"cmd": "baseline", "cases": [ids], "targets": [paths], "out": dir, "tag": str}`` runs
  the cases on the unmutated code under a line tracer (only frames of the target files are
  traced, TensorFlow never) and writes ``dir/baseline-<tag>.json`` (each case's status and
  the target lines it executed) and ``dir/refs-<tag>.pkl`` (the reference cache).
* ``{"cmd": "mutant", "path": p, "site": {...}, "variant": k, "cases": [ids]}`` applies the
  mutant, runs the cases until one is no longer ok, restores the code and answers
  ``killed`` (``by``: ``crash`` or ``numeric``) or ``survived``, or ``not-applied``.

A mutant is applied in place: the mutated module is compiled with the original line
numbers and its code objects replace those of the live functions that enclose the mutated
node (``function.__code__``), so every reference to them (methods, imports elsewhere,
``mx.custom_function`` wrappers) runs the mutant. The target modules' ``lru_cache``\\ s are
cleared and their dict globals reset to their import-time contents around each mutant, so
nothing built by the other code (compiled graphs, kernels) is reused.

The TensorFlow references do not depend on mlxnote's code, only on the weights, inputs and
cotangents it hands them: ``engine.run_tf`` is wrapped by a cache keyed by the case id, the
TF dtype and a digest of those arrays, so a mutant that changes none of them reuses the
baseline's reference and one that does gets a fresh one.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import pickle
import sys
import time
import types
from pathlib import Path

from . import operators

ROOT = Path(__file__).resolve().parents[2]
_REFS: dict = {}
# The suite-level checks a full run makes besides the cases (modules of ``conformance``
# with ``run() -> rows``, each row with ``.name`` and ``.passed``), where they exist.
SUITE_CHECKS = ("kernel_forms", "contracts", "precision")


def _digest(arrays) -> str:
    import numpy as np

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def install_reference_cache(engine) -> None:
    """Wrap ``engine.run_tf`` (looked up by ``engine.numeric`` at each call) in the cache."""
    original = getattr(engine.run_tf, "__wrapped__", engine.run_tf)

    def run_tf(case, spec, weights, inputs, cts, tf_dtype):
        key = (case.id, tf_dtype.name, _digest([*weights, *inputs, *cts]))
        if key not in _REFS:
            trace = sys.gettrace()
            sys.settrace(None)  # the references are not the code under test
            try:
                _REFS[key] = original(case, spec, weights, inputs, cts, tf_dtype)
            finally:
                sys.settrace(trace)
        return _REFS[key]

    run_tf.__wrapped__ = original
    engine.run_tf = run_tf


def module_name(path: str) -> str:
    p = Path(path).with_suffix("")
    parts = list(p.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class Worker:
    """``run(case id) -> result`` (``.ok``, ``.error``, ``.status``, ``.checks``) judges a
    mutant; by default the conformance engine on the suite's cases. ``root`` is where the
    target paths are relative to (and importable from)."""

    def __init__(self, root: Path = ROOT, run=None):
        self.root = Path(root)
        if run is None:
            import mlxnote  # noqa: F401  before mlx.core: the fast BLAS

            from .. import engine, families, suite

            self.engine, self.suite = engine, suite
            self.fam = families.load()
            self.cases = {c.id: c for c in self.fam.cases}
            install_reference_cache(engine)
            run = self._run_case
        self.run_case = run
        self.modules: dict[str, types.ModuleType] = {}
        self.snapshots: list[tuple[dict, dict]] = []
        self.caches: list = []
        self.suite_ok: set[str] | None = None  # suite-level rows passing unmutated

    # -- the suite-level checks ------------------------------------------------------------
    def suite_rows(self) -> list[tuple[str, bool, str]]:
        """``(name, passed, detail)`` of every suite-level check row."""
        rows = []
        for name in SUITE_CHECKS:
            try:
                mod = importlib.import_module(f"conformance.{name}")
            except ImportError:
                continue
            if not callable(getattr(mod, "run", None)):
                continue
            try:
                found = mod.run()
            except Exception as e:  # a mutant may break them
                rows.append((name, False, f"{type(e).__name__}: {e}"))
                continue
            rows += [(f"{name}:{r.name}", bool(r.passed), str(getattr(r, "detail", "")))
                     for r in found]
        return rows

    def suite_baseline(self) -> float:
        """Run the suite-level checks unmutated; returns their seconds."""
        t0 = time.perf_counter()
        self.suite_ok = {n for n, ok, _ in self.suite_rows() if ok}
        return time.perf_counter() - t0

    # -- the target modules' caches ------------------------------------------------------
    def targets(self, paths):
        for p in paths:
            if p in self.modules:
                continue
            mod = importlib.import_module(module_name(p))
            self.modules[p] = mod
            for name, v in list(vars(mod).items()):
                if name.startswith("__"):
                    continue
                if isinstance(v, dict):
                    self.snapshots.append((v, dict(v)))
                elif callable(getattr(v, "cache_clear", None)) and \
                        getattr(v, "__module__", None) == mod.__name__:
                    self.caches.append(v)

    def reset(self):
        for d, snap in self.snapshots:
            d.clear()
            d.update(snap)
        for c in self.caches:
            c.cache_clear()

    # -- one case ------------------------------------------------------------------------
    def _run_case(self, cid: str):
        c = self.cases[cid]
        r = self.engine.run_case(c, self.fam.specs[c.layer])
        r.xfail = self.suite.expected_for(c, self.fam.expected)
        return r

    def baseline(self, msg) -> dict:
        targets = {str(self.root / p): p for p in msg["targets"]}
        self.targets(msg["targets"])
        out, rows = Path(msg["out"]), []
        for cid in msg["cases"]:
            lines: set = set()

            def local(frame, event, arg, lines=lines):
                if event == "line":
                    lines.add((frame.f_code.co_filename, frame.f_lineno))
                return local

            def glob(frame, event, arg, local=local):
                return local if frame.f_code.co_filename in targets else None

            t0 = time.perf_counter()
            sys.settrace(glob)
            try:
                r = self.run_case(cid)
            finally:
                sys.settrace(None)
            by_file: dict[str, list[int]] = {}
            for f, n in lines:
                by_file.setdefault(targets[f], []).append(n)
            rows.append({"id": cid, "layer": r.case.layer, "dtype": r.case.dtype,
                         "status": r.status, "ok": r.ok,
                         "seconds": round(time.perf_counter() - t0, 4),
                         "lines": {f: sorted(v) for f, v in by_file.items()}})
        tag = msg["tag"]
        (out / f"baseline-{tag}.json").write_text(json.dumps(rows))
        with open(out / f"refs-{tag}.pkl", "wb") as fh:
            pickle.dump(_REFS, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return {"ok": True, "cases": len(rows)}

    # -- one mutant ----------------------------------------------------------------------
    def apply(self, path: str, site: operators.Site, variant: int):
        """Swap in the mutated code; returns ``[(function, original code)]``."""
        src = (self.root / path).read_text()
        tree, _ = operators.mutate(src, site, variant)
        filename = str(self.root / path)
        code = compile(tree, filename, "exec")
        new: dict = {}
        stack = [code]
        while stack:
            c = stack.pop()
            for k in c.co_consts:
                if isinstance(k, types.CodeType):
                    new[(k.co_qualname, k.co_firstlineno)] = k
                    stack.append(k)
        wanted = {k: new[k] for k in operators.function_chain(src, site) if k in new}
        swapped = []
        for f in gc.get_objects():
            if type(f) is types.FunctionType and f.__code__.co_filename == filename:
                k = (f.__code__.co_qualname, f.__code__.co_firstlineno)
                if k in wanted and wanted[k].co_freevars == f.__code__.co_freevars:
                    swapped.append((f, f.__code__))
                    f.__code__ = wanted[k]
        return swapped

    def mutant(self, msg) -> dict:
        self.targets([msg["path"]])
        site = operators.Site(**msg["site"])
        self.reset()
        swapped = self.apply(msg["path"], site, msg["variant"])
        if not swapped:
            return {"status": "not-applied", "detail": "no live function holds the line, "
                    "or the mutant changes its closure (e.g. drops its only super())"}
        t0 = time.perf_counter()
        try:
            for n, cid in enumerate(msg["cases"]):
                r = self.run_case(cid)
                if not r.ok:
                    failing = [f"{c.name} (rel {c.rel:.3g})" for c in r.checks
                               if not c.passed][:3]
                    detail = (r.error.strip().splitlines()[-1] if r.error
                              else ", ".join(failing) or r.status)
                    return {"status": "killed", "by": "crash" if r.error else "numeric",
                            "case": cid, "cases_run": n + 1, "detail": detail[:300],
                            "seconds": round(time.perf_counter() - t0, 3)}
            if msg.get("suite") and self.suite_ok:
                for name, ok, detail in self.suite_rows():
                    if name in self.suite_ok and not ok:
                        return {"status": "killed", "by": "suite-check", "case": name,
                                "cases_run": len(msg["cases"]), "detail": detail[:300],
                                "seconds": round(time.perf_counter() - t0, 3)}
            return {"status": "survived", "cases_run": len(msg["cases"]),
                    "suite_checks": bool(msg.get("suite") and self.suite_ok),
                    "seconds": round(time.perf_counter() - t0, 3)}
        finally:
            for f, c in swapped:
                f.__code__ = c
            self.reset()


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to the log
    sys.stdout = sys.stderr
    refs = os.environ.get("MLXNOTE_MUTATION_REFS")
    if refs and Path(refs).exists():
        with open(refs, "rb") as fh:
            _REFS.update(pickle.load(fh))
    from mlxnote import _config

    worker = Worker()
    # Snapshot the targets' caches before any case fills them (a cache filled by the
    # unmutated code would hide a mutant of the code it caches).
    worker.targets(json.loads(os.environ.get("MLXNOTE_MUTATION_TARGETS", "[]")))
    with _config.formulation(_config.formulation_setting()):
        suite_seconds = worker.suite_baseline() if os.environ.get(
            "MLXNOTE_MUTATION_SUITE") == "1" else 0.0
        worker.reset()
        proto.write(json.dumps({"ready": True, "suite_seconds": suite_seconds,
                                "suite_rows": len(worker.suite_ok or ())}) + "\n")
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "quit":
                break
            try:
                reply = getattr(worker, msg["cmd"])(msg)
            except Exception as e:  # the driver reports it; the worker goes on
                reply = {"status": "error", "detail": f"{type(e).__name__}: {e}"[:300]}
            proto.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
