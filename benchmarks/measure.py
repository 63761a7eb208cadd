"""Whole-process measurements: wall time, CPU time and peak RSS of one command.

``os.wait4`` returns the child's resource usage as the kernel counted it: user and
system CPU seconds and ``ru_maxrss`` (KiB on Linux), each including the child's own
reaped children. That is exact and needs no ``/usr/bin/time`` parsing.

The command is not started by the benchmark itself but by a small reaper process
(``python -c`` :data:`_REAPER`) that starts it with ``posix_spawn`` and reports its
usage: Linux carries the high-water RSS of the memory a process had before ``execve``
into its ``ru_maxrss``, so a command started straight from the benchmark (which holds
600,000 project names at full scale, ~86 MiB) would never show less than that.
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
    peak_rss_bytes: int
    exit_code: int


def run_measured(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Measurement:
    """Run ``argv`` to completion with stdout and stderr appended to ``log``."""
    with log.open("ab") as out, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "usage.json"
        reaper = [sys.executable, "-c", _REAPER, str(report), *argv]
        subprocess.run(  # noqa: S603  # argv is built by the benchmark itself
            reaper, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, check=True
        )
        usage = json.loads(report.read_text(encoding="utf-8"))
    return Measurement(
        wall_seconds=usage["wall"],
        cpu_seconds=usage["cpu"],
        peak_rss_bytes=usage["maxrss_kib"] * KIB,
        exit_code=usage["exit"],
    )


# Spawns argv[2:], waits for it and writes its usage to argv[1] as JSON. Small on
# purpose: the command's ru_maxrss starts from this process's RSS, not the benchmark's.
_REAPER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.monotonic()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - start
with open(report, "w", encoding="utf-8") as out:
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
               "maxrss_kib": usage.ru_maxrss, "exit": os.waitstatus_to_exitcode(status)}, out)
"""
