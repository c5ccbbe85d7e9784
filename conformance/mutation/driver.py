"""Drives a mutation run: the baseline (coverage and references, cached), the seeded
sample, the workers with their timeouts, the equivalents list, and the reports."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

from . import operators
from .baseline import ROOT, WorkerProcess, baseline, target_files  # noqa: F401  (re-exported)

DEFAULT_FILES = ("mlxnote/nn/*.py", "mlxnote/kernels/**/*.py")
EQUIVALENT = Path(__file__).with_name("equivalent.toml")


# -- the sample --------------------------------------------------------------------------
def coverage_map(rows: list) -> dict:
    """``(file, line) -> [row index]`` over the cases ok on the unmutated code."""
    cover: dict = defaultdict(list)
    for i, r in enumerate(rows):
        if r["ok"]:
            for f, lines in r["lines"].items():
                for ln in lines:
                    cover[(f, ln)].append(i)
    return cover


def covering(cover: dict, site: operators.Site) -> list[int]:
    return sorted(set(cover.get((site.path, site.lineno), ()))
                  | set(cover.get((site.path, site.stmt_lineno), ())))


def _rank(seed: int, *parts) -> int:
    return int(hashlib.sha1(repr((seed, *parts)).encode()).hexdigest()[:15], 16)


def plan(rows: list, targets: list[str], n: int, seed: int, max_cases: int):
    """The seeded sample: the ``n`` covered sites ranked first by a hash of the seed and the
    site's text (file, function, statement, operator, occurrence; no line numbers), so that
    the sample stays the same when cases, files or lines elsewhere are added; one variant
    each (also by hash), with the cases that execute the site's line (those ok on the
    unmutated code), float32 first and the layers taken in turn, at most ``max_cases``."""
    cover = coverage_map(rows)
    ranked = []
    for path in targets:
        src = (ROOT / path).read_text()
        lines = src.splitlines()
        seen: dict = defaultdict(int)
        for s in operators.sites(path, src):
            key = (path, s.qualname, lines[s.stmt_lineno - 1].strip(), s.op)
            seen[key] += 1
            idx = covering(cover, s)
            if idx:
                ranked.append((_rank(seed, *key, seen[key]), s, idx, key + (seen[key],)))
    ranked.sort(key=lambda t: t[0])
    out = []
    for _, s, idx, key in ranked[:n]:
        variant = _rank(seed, *key, "variant") % s.nvariants
        _, m = operators.mutate((ROOT / s.path).read_text(), s, variant)
        out.append((m, _order([rows[i] for i in idx], max_cases)))
    return out, len(ranked)


def replan(rows: list, previous: list[dict], max_cases: int):
    """The mutants of a previous report, with the cases that execute them now."""
    cover, out = coverage_map(rows), []
    for r in previous:
        m = _find(r)
        if m is None:
            raise ValueError(f"mutant {r['id']} ({r['diff']}) no longer matches its file "
                             "(its statement changed): run a fresh sample")
        out.append((m, _order([rows[i] for i in covering(cover, m.site)], max_cases)))
    return out


def _find(r: dict):
    """A previous report's mutant in today's file: at its stored site, else at the site
    whose same mutation has its id (the file changed elsewhere); None if it is gone."""
    s = operators.Site(**r["site"])
    path = ROOT / s.path
    if not path.exists():
        return None
    source = path.read_text()
    candidates = [s] + [t for t in operators.sites(s.path, source)
                        if t.op == s.op and t.nvariants == s.nvariants]
    for site in candidates:
        try:
            _, m = operators.mutate(source, site, r["variant"])
        except (ValueError, TypeError, IndexError):
            continue
        if m.id == r["id"]:
            return m
    return None


def _order(rows: list, max_cases: int) -> list:
    by_layer: dict = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["dtype"] != "float32"):
        by_layer[r["layer"]].append(r)
    queues, out = list(by_layer.values()), []
    while queues and len(out) < max_cases:
        for q in list(queues):
            out.append(q.pop(0))
            if not q:
                queues.remove(q)
            if len(out) >= max_cases:
                break
    return out


def load_equivalents(path: Path = EQUIVALENT) -> dict[str, dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    out = {}
    for e in data.get("equivalent", []):
        if not str(e.get("reason", "")).strip():
            raise ValueError(f"{path}: equivalent mutant {e.get('id')} has no reason")
        out[e["id"]] = e
    return out


# -- the run -----------------------------------------------------------------------------
def run(sample: int = 150, seed: int = 0, time_budget: float = 3600.0,
        files=DEFAULT_FILES, out: str | Path = "reports", jobs: int = 1,
        max_cases: int = 300, recycle: int = 40, equivalents: Path = EQUIVALENT,
        layers=None, refresh: bool = False, rejudge: str | Path | None = None,
        suite: bool = True, say=print) -> dict:
    """Run a seeded sample of ``sample`` mutants of the covered lines of ``files`` (globs
    relative to the repository) for at most ``time_budget`` seconds after the baseline;
    ``layers`` restricts the suite to those layers' cases. ``rejudge`` (a previous
    ``mutation.json``) runs that report's mutants again instead of a new sample, except
    those it found killed (carried over, marked ``carried``). ``suite``: a mutant that
    survives its cases also meets the suite-level checks (kernel forms, contracts,
    precision bounds: :data:`worker.SUITE_CHECKS`) that pass unmutated. Writes ``out/mutation.json``
    and ``out/mutation.txt``; returns the summary, the mutants and the text."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "mutation-cache"
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "workers.log"
    targets = target_files(files)
    t_start = time.perf_counter()
    rows, refs = baseline(cache, targets, jobs, log, say, layers, refresh)
    t_base = time.perf_counter() - t_start
    mutants, n_sites = plan(rows, targets, sample, seed, max_cases)
    results: list[dict | None] = [None] * len(mutants)
    if rejudge:
        prev = json.loads(Path(rejudge).read_text())
        mutants = replan(rows, prev["mutants"], max_cases)
        results = [dict(r, carried=True) if r["status"] == "killed" else None
                   for r in prev["mutants"]]
        seed, sample = prev["summary"]["seed"], prev["summary"]["sample"]
    say(f"sample: {len(mutants)} of {n_sites} covered sites in {len(targets)} files "
        f"(seed {seed}); time budget {time_budget:.0f} s"
        + (f"; {sum(r is not None for r in results)} killed in {rejudge} carried over"
           if rejudge else ""))
    lock = threading.Lock()
    next_i = [0]
    t0 = time.perf_counter()

    def take():
        with lock:
            while next_i[0] < len(mutants) and results[next_i[0]] is not None:
                next_i[0] += 1
            i = next_i[0]
            if i >= len(mutants) or time.perf_counter() - t0 > time_budget:
                return None
            next_i[0] += 1
            return i

    def work():
        w, used = None, 0
        while (i := take()) is not None:
            m, cases = mutants[i]
            if w is None or not w.alive or used >= recycle:
                if w is not None:
                    w.close()
                w, used = WorkerProcess(log, refs, targets, suite), 0
            used += 1
            limit = 60 + 5 * sum(r["seconds"] for r in cases) + 5 * w.suite_seconds
            msg = {"cmd": "mutant", "path": m.site.path, "suite": suite,
                   "site": dataclasses.asdict(m.site), "variant": m.variant,
                   "cases": [r["id"] for r in cases]}
            r = w.request(msg, limit)
            if r is None:
                r = {"status": "killed", "by": "timeout",
                     "detail": f"no answer within {limit:.0f} s"}
            if r.get("status") == "error":
                r = {"status": "not-applied", "detail": r.get("detail")}
            r.update(id=m.id, diff=m.diff, op=m.site.op, file=m.site.path,
                     site=dataclasses.asdict(m.site), variant=m.variant,
                     line=m.site.lineno, function=m.site.qualname,
                     layers=sorted({c["layer"] for c in cases}), cases_planned=len(cases))
            results[i] = r
            say(f"[{sum(x is not None for x in results)}/{len(mutants)}] {r['status']:<11}"
                f" {r.get('by', ''):<8} {m.diff[:110]}")
        if w is not None:
            w.close()

    threads = [threading.Thread(target=work) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    summary = summarize(done, load_equivalents(equivalents))
    summary.update(seed=seed, sample=sample, rejudged_from=str(rejudge) if rejudge else None,
                   carried=sum(bool(r.get("carried")) for r in done), judged=len(done),
                   covered_sites=n_sites,
                   files=targets, baseline_seconds=round(t_base, 1),
                   mutant_seconds=round(time.perf_counter() - t0, 1), max_cases=max_cases,
                   suite_checks=suite,
                   time_budget=time_budget)
    (out / "mutation.json").write_text(json.dumps({"summary": summary, "mutants": done},
                                                  indent=1))
    text = report_text(summary, done)
    (out / "mutation.txt").write_text(text)
    return {"summary": summary, "mutants": done, "text": text}


def summarize(done: list[dict], equivalents: dict) -> dict:
    for r in done:
        r["equivalent"] = r["id"] in equivalents
        if r["equivalent"]:
            r["equivalent_reason"] = equivalents[r["id"]]["reason"]
    applied = [r for r in done if r["status"] != "not-applied"]
    killed = [r for r in applied if r["status"] == "killed"]
    equiv = [r for r in applied if r["equivalent"] and r["status"] == "survived"]
    survivors = [r for r in applied if r["status"] == "survived" and not r["equivalent"]]
    wrongly = [r["id"] for r in killed if r["equivalent"]]
    considered = len(killed) + len(survivors)
    by = defaultdict(int)
    for r in killed:
        by[r["by"]] += 1
    return {"mutants": len(done), "not_applied": len(done) - len(applied),
            "killed": len(killed), "equivalent": len(equiv), "survived": len(survivors),
            "kill_rate": round(len(killed) / considered, 4) if considered else None,
            "killed_by": dict(by), "listed_equivalent_but_killed": wrongly}


def report_text(s: dict, done: list[dict]) -> str:
    rate = "n/a" if s["kill_rate"] is None else f"{100 * s['kill_rate']:.1f}%"
    by = ", ".join(f"{k} {v}" for k, v in sorted(s["killed_by"].items()))
    lines = [f"mlxnote mutation testing (conformance suite alone), seed {s['seed']}: "
             f"{s['mutants']} mutants of {s['covered_sites']} covered sites",
             f"kill rate {rate}: {s['killed']} killed ({by}), {s['survived']} survived, "
             f"{s['equivalent']} equivalent (conformance/mutation/equivalent.toml), "
             f"{s['not_applied']} not applied"
             + (f"; {s['carried']} kills carried over from {s['rejudged_from']}"
                if s.get("rejudged_from") else ""),
             f"time: baseline {s['baseline_seconds']} s, mutants {s['mutant_seconds']} s "
             f"(at most {s['max_cases']} cases per mutant"
             + ("; then the suite-level checks)" if s.get("suite_checks") else ")"), ""]
    if s["listed_equivalent_but_killed"]:
        lines += ["listed as equivalent but killed (remove them from the list): "
                  + ", ".join(s["listed_equivalent_but_killed"]), ""]
    for title, pick in (("survivors", lambda r: r["status"] == "survived" and
                         not r["equivalent"]),
                        ("equivalent (reviewed)", lambda r: r["status"] == "survived" and
                         r["equivalent"]),
                        ("not applied", lambda r: r["status"] == "not-applied")):
        chosen = [r for r in done if pick(r)]
        if chosen:
            lines.append(f"{title}:")
            for r in chosen:
                extra = (f"  [{r['equivalent_reason']}]" if r.get("equivalent") else
                         f"  [{r.get('detail')}]" if r["status"] == "not-applied" else
                         f"  ({r['cases_run']} cases of {', '.join(r['layers'][:4])})")
                lines.append(f"  {r['id']} {r['op']:<8} {r['diff']}{extra}")
            lines.append("")
    return "\n".join(lines) + "\n"
