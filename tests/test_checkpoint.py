"""Checkpoints: safetensors round trip, strict load, resume, and atomic writes under
SIGKILL."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxnote import Model, Sequential, nn
from mlxnote.training import CheckpointError, ModelCheckpoint, SparseCategoricalCrossentropy

LOGITS = SparseCategoricalCrossentropy(from_logits=True)
HERE = Path(__file__).parent


class Net(Model):
    def __init__(self, hidden=16, rate=0.2):
        super().__init__()
        self.fc1 = nn.dense(hidden, activation="relu")
        self.drop = nn.dropout(rate)
        self.fc2 = nn.dense(3)

    def __call__(self, x):
        return self.fc2(self.drop(self.fc1(x)))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = (rng.normal(0, 2, (3, 5))[y] + rng.normal(0, 1, (n, 5))).astype(np.float32)
    return x, y


def trained(epochs=2, seed=0, **kw):
    mx.random.seed(seed)
    m = Net(**kw)
    x, y = data()
    m.fit(x, y, epochs=epochs, batch_size=16, optimizer="adam", loss=LOGITS, verbose=0)
    return m


def opt_state(m):
    return {k: np.array(v) for k, v in tree_flatten(m.optimizer.state)}


def test_round_trip_weights_optimizer_epoch(tmp_path):
    m = trained()
    p = tmp_path / "ck.safetensors"
    m.save(p)
    keys = set(mx.load(str(p)))
    assert {"model.fc1.weight", "model.fc2.bias", "optimizer.step",
            "optimizer.fc1.weight.m", "optimizer.fc2.bias.v"} <= keys
    mx.random.seed(5)
    n = Net()
    n.compile("adam", LOGITS)
    x, _ = data()
    n(mx.array(x[:1]))  # built, optimizer not yet created
    info = n.load(p)
    assert info["epoch"] == 2 and n.epoch == 2 and info["optimizer"] == "Adam"
    for a, b in zip(n.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    n._init_optimizer()  # the pending optimizer state is applied when it is created
    ref = opt_state(m)
    got = opt_state(n)
    assert got.keys() == ref.keys() and int(got["step"]) == 8
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    # a compiled model restores its optimizer at once
    o = trained(epochs=1, seed=9)
    o.load(p)
    for k, v in opt_state(o).items():
        np.testing.assert_array_equal(v, ref[k])


def test_strict_load_names_every_problem_and_changes_nothing(tmp_path):
    m = trained()
    p = tmp_path / "ck.safetensors"
    m.save(p)
    other = trained(hidden=8)  # fc1 8 wide: shapes differ
    before = other.get_weights()
    with pytest.raises(CheckpointError) as e:
        other.load(p)
    msg = str(e.value)
    for k in ("model.fc1.weight: shape (5, 16) in the checkpoint, (5, 8) in the model",
              "model.fc1.bias", "model.fc2.weight", "optimizer.fc1.weight.m"):
        assert k in msg, msg
    for a, b in zip(other.get_weights(), before):
        np.testing.assert_array_equal(a, b)

    class Extra(Net):
        def __init__(self):
            super().__init__()
            self.fc3 = nn.dense(3, 3)

        def __call__(self, x):
            return self.fc3(super().__call__(x))

    e3 = Extra()
    e3(mx.zeros((1, 5)))
    with pytest.raises(CheckpointError, match="missing from the checkpoint: model.fc3.weight, "
                       "model.fc3.bias"):
        e3.load(p)
    small = Sequential(nn.dense(16, 5, activation="relu"))
    with pytest.raises(CheckpointError, match="not in the model: .*model.fc1.weight"):
        small.load(p)
    half = Net(rate=0.0)
    half.fc1 = nn.dense(16, 5, dtype="bfloat16")
    half.fc2 = nn.dense(3, 16)
    with pytest.raises(CheckpointError, match="model.fc1.weight: dtype mlx.core.float32 in "
                       "the checkpoint, mlx.core.bfloat16"):
        half.load(p)
    sgd = trained()
    sgd.compile(optim.SGD(0.1, momentum=0.9), LOGITS)
    sgd.fit(*data(), epochs=1, verbose=0)
    with pytest.raises(CheckpointError, match="optimizer.fc1.weight.m"):
        sgd.load(p)


def test_load_errors(tmp_path):
    m = trained()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        m.load(tmp_path / "none.safetensors")
    plain = tmp_path / "w.safetensors"
    m.save_weights(str(plain))
    with pytest.raises(CheckpointError, match="not an mlxnote checkpoint"):
        m.load(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        m.load(junk)
    with pytest.raises(RuntimeError, match="unbuilt"):
        Net().load(plain)


def test_resume_continues_exactly(tmp_path):
    """4 epochs straight == 2 epochs, a checkpoint, a new process-like model, resume to
    4: the same weights bit for bit (shuffling, dropout and Adam state included)."""
    x, y = data(n=80)

    def run(epochs, **kw):
        mx.random.seed(0)
        m = Net()
        m.compile("adam", LOGITS, ["accuracy"])
        h = m.fit(x, y, epochs=epochs, batch_size=16, verbose=0, **kw)
        return m, h

    full, hf = run(4)
    p = tmp_path / "ck.safetensors"
    run(2, callbacks=[ModelCheckpoint(p)])
    mx.random.seed(123)  # a different start: the checkpoint must restore everything
    m = Net()
    m.compile("adam", LOGITS, ["accuracy"])
    h = m.fit(x, y, epochs=4, batch_size=16, verbose=0, resume=p)
    assert h.epoch == [2, 3] and m.epoch == 4
    assert h.history["loss"] == hf.history["loss"][2:]
    for a, b in zip(m.get_weights(), full.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(m.optimizer.state["step"]) == int(full.optimizer.state["step"]) == 20


def test_stale_temporary_files_are_removed(tmp_path):
    m = trained()
    p = tmp_path / "ck.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".ck.safetensors.{dead}.deadbeef.tmp.safetensors"
    stale.write_bytes(b"partial")
    mine = tmp_path / f".ck.safetensors.{os.getpid()}.cafe.tmp.safetensors"
    mine.write_bytes(b"in progress")  # a live writer's file is left alone
    m.save(p)
    assert not stale.exists() and mine.exists() and p.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([p.name, mine.name])


def _kill_mid_save(path: Path, mode: str, rng: random.Random):
    """Run the writer and SIGKILL it at a random moment inside a save, after at least
    two complete saves. Returns (last complete save, the save in progress or None,
    temporary files present at the kill)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "checkpoint_writer.py"), str(path),
                             mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        durations, lines = [], []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {proc.stderr.read()}")
            lines.append(line)
            word, i, *rest = line.split()
            if word == "saved":
                durations.append(float(rest[0]))
            elif word == "begin" and len(durations) >= 2:
                time.sleep(rng.uniform(0.0, 0.9 * min(durations[1:])))
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                tmps = [f for f in path.parent.iterdir() if f.name.endswith(".tmp.safetensors")]
                lines += proc.stdout.readlines()  # the writer may have got further
                break
        else:
            raise AssertionError("writer too slow")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [ln.split()[:2] for ln in lines]
    last_saved = max(int(i) for w, i in events if w == "saved")
    begun = max(int(i) for w, i in events if w == "begin")
    return last_saved, (begun if begun > last_saved else None), tmps


def _check_loadable(path: Path, last_saved: int, in_progress: int | None):
    from checkpoint_writer import make_model

    m = make_model()
    m(mx.zeros((1, 2048)))
    info = m.load(path)
    epoch = info["epoch"]
    # the previous checkpoint, or the new one if the kill came after the rename
    assert epoch in (last_saved, in_progress), (epoch, last_saved, in_progress)
    w, b = m.get_weights()
    assert float(w.min()) == float(w.max()) == epoch and float(b[0]) == epoch
    m._init_optimizer()  # the optimizer state came through whole as well
    assert int(m.optimizer.state["step"]) == 1


@pytest.mark.slow  # subprocesses killed mid-save
def test_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    sys.path.insert(0, str(HERE))
    rng = random.Random()
    landed = 0
    for trial in range(6):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        path = d / "ck.safetensors"
        last_saved, in_progress, tmps = _kill_mid_save(path, "atomic", rng)
        _check_loadable(path, last_saved, in_progress)
        landed += bool(tmps) and in_progress is not None
        if landed >= 2:
            break
    print(f"{landed} kills landed inside a save in {trial + 1} trials")
    assert landed >= 1, "no kill landed inside a save"


@pytest.mark.slow  # subprocesses killed mid-save
def test_control_a_direct_write_killed_mid_save_is_corrupt(tmp_path):
    """The same kill against a plain in-place write corrupts the file: the kill test
    above can fail."""
    sys.path.insert(0, str(HERE))
    rng = random.Random()
    for trial in range(6):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        path = d / "ck.safetensors"
        last_saved, in_progress, _ = _kill_mid_save(path, "direct", rng)
        try:
            _check_loadable(path, last_saved, in_progress)
        except (CheckpointError, AssertionError):
            return
    pytest.fail("six kills of an in-place write never corrupted it")
