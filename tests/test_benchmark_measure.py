"""The benchmark's process measurements: exact usage, not inflated by the benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.measure import MIB, run_measured


def test_a_small_command_is_measured_small_however_big_the_benchmark_is(tmp_path: Path) -> None:
    # The benchmark holding a lot of memory (600,000 names at full scale) must not
    # show up in the peak RSS of the commands it measures.
    ballast = bytearray(300 * MIB)
    ballast[::4096] = b"x" * len(ballast[::4096])
    usage = run_measured([sys.executable, "-c", "pass"], log=tmp_path / "log")
    assert usage.exit_code == 0
    assert usage.peak_rss_bytes < 100 * MIB, usage
    assert 0 < usage.wall_seconds < 60
    del ballast


def test_the_exit_code_and_the_output_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "log"
    code = "import sys; print('hello'); sys.exit(3)"
    usage = run_measured([sys.executable, "-c", code], log=log)
    assert usage.exit_code == 3
    assert log.read_text(encoding="utf-8") == "hello\n"


def test_a_command_past_its_time_limit_is_stopped_and_marked(tmp_path: Path) -> None:
    code = "import time; print('started', flush=True); time.sleep(60)"
    usage = run_measured([sys.executable, "-c", code], log=tmp_path / "log", limit_seconds=1)
    assert usage.stopped
    assert usage.exit_code == -15  # SIGTERM
    assert 1 <= usage.wall_seconds < 30, usage
    assert (tmp_path / "log").read_text(encoding="utf-8") == "started\n"


def test_a_command_that_ignores_the_stop_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('deaf', flush=True); time.sleep(120)"
    )
    log = tmp_path / "log"
    usage = run_measured([sys.executable, "-c", code], log=log, limit_seconds=0.5, grace_seconds=1)
    assert usage.stopped
    assert usage.exit_code == -9  # SIGKILL, a second after the SIGTERM
    assert 1.5 <= usage.wall_seconds < 30, usage


def test_a_command_within_its_limit_is_not_stopped(tmp_path: Path) -> None:
    usage = run_measured([sys.executable, "-c", "pass"], log=tmp_path / "log", limit_seconds=60)
    assert not usage.stopped
    assert usage.exit_code == 0


def test_system_time_is_reported_as_part_of_the_cpu_time(tmp_path: Path) -> None:
    # Half a second of system calls: reading /dev/zero in small blocks.
    code = (
        "import os, time\n"
        "fd = os.open('/dev/zero', os.O_RDONLY)\n"
        "end = time.process_time() + 0.5\n"
        "while time.process_time() < end:\n"
        "    os.read(fd, 1)\n"
    )
    usage = run_measured([sys.executable, "-c", code], log=tmp_path / "log")
    assert usage.exit_code == 0
    assert 0 < usage.system_seconds < usage.cpu_seconds
