"""The baseline of a mutation run: the worker processes, every case's status and the target
lines it executes (under a line tracer), and the TensorFlow references, cached per case."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# -- workers -----------------------------------------------------------------------------
class WorkerProcess:
    """``python -m conformance.mutation.worker`` with a request/answer line protocol."""

    command = (sys.executable, "-m", "conformance.mutation.worker")

    def __init__(self, log: Path, refs: Path | None, targets: list[str] = (),
                 suite: bool = False):
        env = dict(os.environ, MLXNOTE_MUTATION_TARGETS=json.dumps(list(targets)),
                   MLXNOTE_MUTATION_SUITE="1" if suite else "0")
        if refs is not None:
            env["MLXNOTE_MUTATION_REFS"] = str(refs)
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            list(self.command), cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        ready = self._read(1800)
        if ready is None:
            raise RuntimeError(f"mutation worker did not start: see {log}")
        self.suite_seconds = ready.get("suite_seconds", 0.0)

    def _read(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise EOFError("the worker exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, msg: dict, timeout: float) -> dict | None:
        """The answer, or None after ``timeout`` seconds (the worker is then killed)."""
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        try:
            reply = self._read(timeout)
        except EOFError:
            self.close(kill=True)
            return {"status": "killed", "by": "crash",
                    "detail": f"the worker died (exit {self.proc.wait()})"}
        if reply is None:
            self.close(kill=True)
        return reply

    def close(self, kill: bool = False):
        if self.proc.poll() is None:
            if kill:
                os.killpg(self.proc.pid, 9)
            else:
                try:
                    self.proc.stdin.write(b'{"cmd": "quit"}\n')
                    self.proc.stdin.flush()
                except BrokenPipeError:
                    pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


# -- the baseline ------------------------------------------------------------------------
def _digest(paths) -> str:
    h = hashlib.sha1(sys.version.encode())
    for p in paths:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def case_keys(cases, specs, targets: list[str]) -> dict[str, str]:
    """A key per case id that changes when what its baseline depends on changes, the target
    files aside (:func:`fresh` checks those the case executed): the target list, mlxnote's
    top-level modules, the case's family module and the modules of its spec's reference and
    check (the engine is left out: ``--refresh`` recomputes everything after changing it)."""
    common = _digest(sorted(ROOT.glob("mlxnote/*.py"))) + hashlib.sha1(
        json.dumps(targets).encode()).hexdigest()[:8]
    memo: dict = {}

    def of(path: Path) -> str:
        if path not in memo:
            memo[path] = _digest([path]) if path.exists() else "-"
        return memo[path]

    out = {}
    for c in cases:
        spec = specs[c.layer]
        parts = [of(ROOT / "conformance" / "families" / f"{spec.family}.py")]
        for fn in (spec.reference, spec.check):
            mod = sys.modules.get(getattr(fn, "__module__", None) or "")
            if getattr(mod, "__file__", None):
                parts.append(of(Path(mod.__file__)))
        out[c.id] = "-".join([common, *parts])
    return out


def fresh(row: dict, key: str, memo: dict) -> bool:
    """Is a stored baseline row still valid: the same key, and the same contents of the
    target files the case executed?"""
    if row.get("key") != key:
        return False
    for f in row["lines"]:
        if f not in memo:
            memo[f] = _digest([ROOT / f]) if (ROOT / f).exists() else "-"
    return row.get("files") == {f: memo[f] for f in row["lines"]}


def target_files(patterns) -> list[str]:
    out = set()
    for pat in patterns:
        for p in glob.glob(str(ROOT / pat), recursive=True):
            if p.endswith(".py"):
                out.add(str(Path(p).relative_to(ROOT)))
    return sorted(out)


def baseline(cache: Path, targets: list[str], jobs: int, log, say,
             layers=None, refresh: bool = False) -> tuple[list, Path]:
    """Every case's status and executed target lines, and the reference cache's file. Kept
    in ``cache`` per case (:func:`case_keys`): only the cases whose key changed, or new
    ones, run again (all of them with ``refresh``)."""
    from .. import families

    fam = families.load()
    chosen = [c for c in fam.cases if not layers or c.layer in layers]
    keys = case_keys(chosen, fam.specs, targets)
    rows_file, refs = cache / "baseline.json", cache / "refs.pkl"
    stored = json.loads(rows_file.read_text()) if rows_file.exists() and not refresh else {}
    memo: dict = {}
    todo = [c.id for c in chosen if not fresh(stored.get(c.id, {}), keys[c.id], memo)]
    if todo:
        say(f"baseline: {len(todo)} of {len(chosen)} cases under the line tracer, "
            f"{jobs} worker(s) ...")
        t0 = time.perf_counter()
        rows_new, new_refs = _baseline_run(cache, todo, targets, jobs, log)
        memo = {}
        for r in rows_new:
            r["key"] = keys[r["id"]]
            for f in r["lines"]:
                if f not in memo:
                    memo[f] = _digest([ROOT / f])
            r["files"] = {f: memo[f] for f in r["lines"]}
            stored[r["id"]] = r
        old = {}
        if refs.exists() and not refresh:
            with open(refs, "rb") as fh:
                old = pickle.load(fh)
        redone = set(todo)
        old = {k: v for k, v in old.items() if k[0] not in redone}
        old.update(new_refs)
        with open(refs, "wb") as fh:
            pickle.dump(old, fh, protocol=pickle.HIGHEST_PROTOCOL)
        rows_file.write_text(json.dumps(stored))
        say(f"baseline: {time.perf_counter() - t0:.0f} s")
    rows = [stored[c.id] for c in chosen]
    bad = sum(not r["ok"] for r in rows)
    say(f"baseline: {len(rows)} cases ({len(rows) - len(todo)} cached), {bad} not ok on "
        f"the unmutated code")
    return rows, refs


def _baseline_run(cache: Path, ids: list[str], targets: list[str], jobs: int, log):
    jobs = max(1, min(jobs, len(ids)))
    chunks = [ids[k::jobs] for k in range(jobs)]
    errors = []

    def one(k):
        w = WorkerProcess(log, None)
        r = w.request({"cmd": "baseline", "cases": chunks[k], "targets": targets,
                       "out": str(cache), "tag": str(k)}, timeout=4 * 3600)
        w.close()
        if not r or not r.get("ok"):
            errors.append(r)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"baseline failed: {errors}")
    rows, refs = [], {}
    for k in range(jobs):
        rows += json.loads((cache / f"baseline-{k}.json").read_text())
        with open(cache / f"refs-{k}.pkl", "rb") as fh:
            refs.update(pickle.load(fh))
        (cache / f"baseline-{k}.json").unlink()
        (cache / f"refs-{k}.pkl").unlink()
    return rows, refs
