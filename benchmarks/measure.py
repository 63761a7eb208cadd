"""Whole-process measurements: wall time, CPU time and peak RSS of one command.

``os.wait4`` returns the child's resource usage as the kernel counted it: user and
system CPU seconds and ``ru_maxrss`` (KiB on Linux), each including the child's own
reaped children. That is exact and needs no ``/usr/bin/time`` parsing.
"""

from __future__ import annotations

import os
import subprocess
import time
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
    with log.open("ab") as out:
        start = time.monotonic()
        process = subprocess.Popen(  # noqa: S603  # argv is built by the benchmark itself
            list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - start
    exit_code = os.waitstatus_to_exitcode(status)
    process.returncode = exit_code  # reaped here, so Popen must not wait for it again
    return Measurement(
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * KIB,
        exit_code=exit_code,
    )
