"""``python -m mlxnote.launch``: ``mlx.launch`` that fails when a rank fails.

``mlx.launch`` starts the ranks and, when one exits with an error, ends the others, but
then exits 0 itself, so a script or a CI job cannot tell a failed run from a good one.
This wrapper runs ``mlx.launch``'s own ``main`` (every option is the same: ``--backend``,
``--hosts``, ``-n``, ``--hostfile``, ...) and records how each rank ended:

* it exits with the first failed rank's status (``128 + signal`` for a rank killed by a
  signal) as soon as ``mlx.launch`` has ended the others, and names every rank that failed
  by itself (a peer that lost the failed rank usually fails too, within milliseconds: the
  order of those is not reliable); 0 only when every rank exited 0;
* a rank about to be ended gets 2 s to end by itself first (a rank that raised takes that
  long to exit, while its peer fails at once on the lost connection): a rank that does
  end by itself then is named as failed, not as ended;
* a rank that does not end within 10 s of ``mlx.launch``'s SIGTERM gets SIGKILL;
* ``--collective-timeout SECONDS`` sets ``MLXNOTE_COLLECTIVE_TIMEOUT`` for every rank, so
  that ``fit`` ends a rank that waits longer than that for a hung peer (and then this
  launcher ends the run);
* a script ending in ``.py`` run on local ranks without ``--python`` gets this
  interpreter (``mlx.launch`` would try to execute the file itself).

Example::

    python -m mlxnote.launch --backend ring -n 2 --collective-timeout 120 train.py

It relies on ``mlx._distributed_utils.launch`` (mlx 0.32): its ``_launch_with_io`` and the
``RemoteProcess`` class it is given (the MPI backend: ``mpirun``'s own status).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .distributed import TIMEOUT_ENV

__all__ = ["main", "GRACE"]

GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a rank being ended
SETTLE = 2.0  # seconds a rank may take to end by itself before it is ended (a rank that
# raised takes that long to exit while its peer, losing it, fails within milliseconds)


class _Run:
    """How each rank of one launch ended: ``codes[rank]`` (``None`` while running),
    ``ended`` (ranks the launcher terminated), ``order`` (ranks in the order their ends
    were seen: ranks that end within the same second may be seen in either order)."""

    def __init__(self) -> None:
        self.codes: dict[int, int | None] = {}
        self.ended: set[int] = set()
        self.order: list[int] = []
        self.mpi: int | None = None

    def saw(self, rank: int, code: int | None) -> None:
        """Rank ``rank`` was seen ended with ``code`` (the first sighting counts)."""
        if code is not None and self.codes.get(rank) is None:
            self.codes[rank] = code
            self.order.append(rank)

    def failures(self) -> list[tuple[int, int]]:
        """``(rank, status)`` of the ranks that failed by themselves, first first."""
        return [(r, self.codes[r]) for r in self.order
                if self.codes[r] not in (0, None) and r not in self.ended]


def _rank_class(base: type, run: _Run) -> type:
    """``base`` (mlx's ``RemoteProcess``) recording into ``run``, with SIGKILL after
    :data:`GRACE` seconds when terminating, and a default ``--python`` for scripts."""

    class Rank(base):
        def __init__(self, rank: int, host: str, python: Any, *rest: Any) -> None:
            command = rest[-1] if rest else []
            if python is None and host == "127.0.0.1" and command \
                    and str(command[0]).endswith(".py"):
                python = sys.executable
            super().__init__(rank, host, python, *rest)
            self._rank = rank
            run.codes[rank] = None
            poll = self.process.poll

            def seen_poll() -> int | None:  # mlx's I/O loop polls about every second
                code = poll()
                run.saw(rank, code)
                return code

            self.process.poll = seen_poll

        @property
        def exit_status(self) -> tuple[Any, Any]:
            code, killed = super().exit_status
            run.saw(self._rank, code)
            return code, killed

        def terminate(self) -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a rank already failing
                run.saw(self._rank, self.process.wait(SETTLE))  # by itself ends on its own
            if run.codes.get(self._rank) is None:
                run.ended.add(self._rank)
            timer = threading.Timer(GRACE, self._kill)
            timer.daemon = True
            timer.start()
            try:
                super().terminate()
            finally:
                timer.cancel()

        def _kill(self) -> None:
            if self.process.poll() is None:
                self.process.kill()

    return Rank


@contextlib.contextmanager
def _recording(run: _Run) -> Iterator[None]:
    """Patch mlx's launcher module for the duration of one launch."""
    from mlx._distributed_utils import launch as mlx_launch

    real_io, real_run = mlx_launch._launch_with_io, mlx_launch.run

    def launch_with_io(command_class: type, arguments: Any, verbose: Any) -> Any:
        return real_io(_rank_class(command_class, run), arguments, verbose)

    def run_mpi(cmd: Any, *args: Any, **kwargs: Any) -> Any:
        proc = real_run(cmd, *args, **kwargs)
        if not kwargs.get("check"):  # mpirun itself (the lookups run with check=True)
            run.mpi = proc.returncode
        return proc

    mlx_launch._launch_with_io, mlx_launch.run = launch_with_io, run_mpi
    try:
        yield
    finally:
        mlx_launch._launch_with_io, mlx_launch.run = real_io, real_run


def _status(code: int) -> int:
    return 128 + (-code) if code < 0 else code


def _how(rank: int, code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"rank {rank} was killed by {signal.Signals(-code).name}"
    return f"rank {rank} exited with status {code}"


def _verdict(run: _Run) -> int:
    """The exit status of the launch (the first failed rank's), with a line on stderr
    naming every rank that failed by itself (in the order their ends were seen)."""
    failed = run.failures()
    if failed:
        others = "" if len(run.codes) < 2 else "; mlxnote.launch ended the other ranks"
        print("mlxnote.launch: " + "; ".join(_how(r, c) for r, c in failed) + others,
              file=sys.stderr, flush=True)
        return _status(failed[0][1])
    if run.mpi:
        print(f"mlxnote.launch: mpirun exited with status {run.mpi}", file=sys.stderr)
        return _status(run.mpi)
    unfinished = sorted(r for r, c in run.codes.items() if c != 0)
    if unfinished:  # ended by the launcher with no rank failing by itself (interrupted)
        print(f"mlxnote.launch: ranks {unfinished} did not finish", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``mlx.launch`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print("python -m mlxnote.launch [--collective-timeout SECONDS] [mlx.launch options] "
              "script.py ...\n  mlx.launch that exits non-zero when a rank fails "
              "(mlxnote.training.launch); mlx.launch's options:\n")
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--collective-timeout", type=float, default=None)
    opts, rest = ours.parse_known_args(argv)
    if opts.collective_timeout is not None:
        rest = ["--env", f"{TIMEOUT_ENV}={opts.collective_timeout:g}", *rest]
    from mlx._distributed_utils import launch as mlx_launch

    run = _Run()
    saved = sys.argv
    sys.argv = ["mlxnote.launch", *rest]
    try:
        with _recording(run):
            mlx_launch.main()
    finally:
        sys.argv = saved
    return _verdict(run)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
