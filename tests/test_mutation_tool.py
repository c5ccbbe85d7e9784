"""The mutation tool (conformance/mutation) on a tiny planted module and a planted suite:
a killable mutant is killed (by a numeric check, or by a crash), an equivalent one
survives and counts as equivalent once listed with a reason, and the code is restored."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from types import SimpleNamespace

import pytest

from conformance.mutation import driver, operators
from conformance.mutation.worker import Worker

PLANTED = textwrap.dedent('''
    import functools

    _SEEN = {}


    def double(x):
        y = x * 2
        return y


    def relu(x):
        if x >= 0:
            return x
        return 0


    @functools.lru_cache(maxsize=8)
    def cached_double(x):
        _SEEN[x] = True
        return double(x)
''')

# The planted suite: case id -> check; a check returns False (a numeric failure) or raises.
SUITE = {
    "double": lambda m: m.double(3) == 6,
    "cached": lambda m: m.cached_double(5) == 10,
    "relu": lambda m: m.relu(-1) == 0 and m.relu(2) == 2,  # relu(0) is never asked
}


@pytest.fixture
def planted(tmp_path, monkeypatch):
    (tmp_path / "planted_mod.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("planted_mod", None)
    import planted_mod

    def run(cid):
        try:
            ok = bool(SUITE[cid](planted_mod))
            return SimpleNamespace(ok=ok, error=None, status="pass" if ok else "fail",
                                   checks=[])
        except Exception as e:
            return SimpleNamespace(ok=False, error=f"{type(e).__name__}: {e}", status="error",
                                   checks=[])

    yield Worker(root=tmp_path, run=run), planted_mod
    sys.modules.pop("planted_mod", None)


def _site(op, qualname):
    found = [s for s in operators.sites("planted_mod.py", PLANTED)
             if s.op == op and s.qualname == qualname]
    assert found, (op, qualname)
    return found[0]


def _judge(worker, site, variant=0, cases=tuple(SUITE)):
    return worker.mutant({"path": "planted_mod.py", "site": dataclasses.asdict(site),
                          "variant": variant, "cases": list(cases)})


def test_killable_mutant_is_killed_and_the_code_restored(planted):
    worker, mod = planted
    assert mod.cached_double(5) == 10  # filled before the mutant: the cache must not hide it
    site = _site("binop", "double")
    _, m = operators.mutate(PLANTED, site, 0)
    assert m.after == "y = x / 2"
    r = _judge(worker, site, cases=["cached"])  # reached only through the cached wrapper
    assert (r["status"], r["by"], r["case"]) == ("killed", "numeric", "cached")
    assert mod.double(3) == 6 and mod.cached_double(5) == 10  # restored, cache reset


def test_crash_is_a_kill_by_crash(planted):
    worker, _ = planted
    r = _judge(worker, _site("drop", "double"), cases=["relu", "double"])  # y never set
    assert (r["status"], r["by"], r["case"]) == ("killed", "crash", "double")
    assert "NameError" in r["detail"] and r["cases_run"] == 2
    r = _judge(worker, _site("return", "double"), cases=["double"])  # returns None
    assert (r["status"], r["by"]) == ("killed", "numeric")


def test_equivalent_mutant_survives_and_is_listed(planted, tmp_path):
    worker, _ = planted
    site = _site("compare", "relu")  # x >= 0 -> x > 0: relu(0) is 0 either way
    tree, m = operators.mutate(PLANTED, site, 0)
    assert m.after == "if x > 0:"
    r = _judge(worker, site)
    assert r["status"] == "survived" and r["cases_run"] == len(SUITE)
    killed = _judge(worker, _site("binop", "double"))
    rows = [dict(r, id=m.id), dict(killed, id="k")]
    toml = tmp_path / "equivalent.toml"
    toml.write_text(f'[[equivalent]]\nid = "{m.id}"\nfile = "planted_mod.py"\n'
                    f'reason = "relu(0) = 0 on both branches"\n')
    s = driver.summarize(rows, driver.load_equivalents(toml))
    assert (s["killed"], s["survived"], s["equivalent"], s["kill_rate"]) == (1, 0, 1, 1.0)
    s = driver.summarize([dict(r, id=m.id)], {})  # not listed: a survivor
    assert (s["survived"], s["kill_rate"]) == (1, 0.0)
    toml.write_text(f'[[equivalent]]\nid = "{m.id}"\nreason = " "\n')
    with pytest.raises(ValueError, match="no reason"):
        driver.load_equivalents(toml)


def test_every_operator_compiles_on_the_library():
    """Each site of the real targets mutates to code that compiles, with a one-line diff."""
    ops = set()
    for path in driver.target_files(driver.DEFAULT_FILES)[:6]:
        src = (driver.ROOT / path).read_text()
        for s in operators.sites(path, src)[::7]:
            tree, m = operators.mutate(src, s, s.nvariants - 1)
            compile(tree, path, "exec")
            assert "\n" not in m.diff and m.before != m.after
            ops.add(s.op)
    assert {"binop", "compare", "constant", "return", "drop"} <= ops


def test_a_hang_is_a_kill_by_timeout_and_a_dead_worker_a_crash(tmp_path, monkeypatch):
    """The driver's side: no answer within the limit kills the worker (the run counts a
    timeout); a worker that exits mid-request is a crash."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text(textwrap.dedent('''
        import json, sys, time
        print(json.dumps({"ready": True, "suite_seconds": 0.0}), flush=True)
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "hang":
                time.sleep(60)
            if msg["cmd"] == "die":
                sys.exit(3)
            print(json.dumps({"status": "survived"}), flush=True)
    '''))
    monkeypatch.setattr(driver.WorkerProcess, "command", (sys.executable, str(fake)))
    w = driver.WorkerProcess(tmp_path / "log", None)
    assert w.request({"cmd": "mutant"}, 20) == {"status": "survived"}
    assert w.request({"cmd": "hang"}, 0.5) is None and not w.alive
    w = driver.WorkerProcess(tmp_path / "log", None)
    r = w.request({"cmd": "die"}, 20)
    assert (r["status"], r["by"]) == ("killed", "crash") and "exit 3" in r["detail"]
