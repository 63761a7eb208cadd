"""Whole-process measurements: wall time, CPU time and peak RSS of one command.

``os.wait4`` returns the child's resource usage as the kernel counted it: user and
system CPU seconds and ``ru_maxrss`` (KiB on Linux), each including the child's own
reaped children. That is exact and needs no ``/usr/bin/time`` parsing.

The command is not started by the benchmark itself but by a small reaper process
(``python -c`` :data:`_REAPER`) that starts it with ``posix_spawn`` and reports its
usage: Linux carries the high-water RSS of the memory a process had before ``execve``
into its ``ru_maxrss``, so a command started straight from the benchmark (which holds
600,000 project names at full scale, ~86 MiB) would never show less than that.

With a time limit the reaper stops the command when it runs out (SIGTERM, then
SIGKILL if it is still there ``grace_seconds`` later) and says so: bandersnatch's first sync of
100,000 projects rewrites its todo file after every project and would take hours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """What one finished process cost."""

    wall_seconds: float
    cpu_seconds: float
    """User plus system time."""
    system_seconds: float = 0.0
    """The system (kernel) part of ``cpu_seconds``."""
    peak_rss_bytes: int
    exit_code: int
    stopped: bool = False
    """The command ran out of its time limit and was stopped."""


def run_measured(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    limit_seconds: float | None = None,
    grace_seconds: float = 30.0,
) -> Measurement:
    """Run ``argv`` to completion (or until ``limit_seconds`` have passed) with stdout
    and stderr appended to ``log``. A command stopped at its limit gets SIGTERM, and
    SIGKILL ``grace_seconds`` later if it has not exited."""
    limit = "none" if limit_seconds is None else repr(float(limit_seconds))
    with log.open("ab") as out, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "usage.json"
        reaper = [sys.executable, "-c", _REAPER, str(report), limit, repr(grace_seconds), *argv]
        subprocess.run(  # noqa: S603  # argv is built by the benchmark itself
            reaper, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, check=True
        )
        usage = json.loads(report.read_text(encoding="utf-8"))
    return Measurement(
        wall_seconds=usage["wall"],
        cpu_seconds=usage["cpu"],
        system_seconds=usage["system"],
        peak_rss_bytes=usage["maxrss_kib"] * KIB,
        exit_code=usage["exit"],
        stopped=usage["stopped"],
    )


# Spawns argv[4:], waits for it (stopping it when the limit argv[2], seconds or
# "none", runs out, and killing it argv[3] seconds later: SIGALRM interrupts the wait,
# which Python then resumes) and writes
# its usage to argv[1] as JSON. Small on purpose: the command's ru_maxrss starts from
# this process's RSS, not the benchmark's.
_REAPER = """
import json, os, signal, sys, time
report, limit, grace, argv = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
stopped = []
def stop(signum, frame):
    stopped.append(True)
    os.kill(pid, signal.SIGTERM if len(stopped) == 1 else signal.SIGKILL)
    signal.setitimer(signal.ITIMER_REAL, grace)
signal.signal(signal.SIGALRM, stop)
start = time.monotonic()
pid = os.posix_spawnp(argv[0], argv, os.environ)
if limit != "none":
    signal.setitimer(signal.ITIMER_REAL, float(limit))
_, status, usage = os.wait4(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
wall = time.monotonic() - start
with open(report, "w", encoding="utf-8") as out:
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "system": usage.ru_stime,
               "maxrss_kib": usage.ru_maxrss, "exit": os.waitstatus_to_exitcode(status),
               "stopped": bool(stopped)}, out)
"""
