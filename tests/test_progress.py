"""Progress renderers: a throttled live line on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from mirror.progress import (
    LogProgress,
    NoProgress,
    ProgressSnapshot,
    TerminalProgress,
    format_progress,
    progress_for,
)
from tests.harness import Clock, MirrorRunner


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def snapshot(**overrides: float) -> ProgressSnapshot:
    values: dict[str, float] = {
        "projects_total": 40,
        "projects_done": 10,
        "projects_failed": 0,
        "files": 30,
        "bytes": 3 * 1024 * 1024,
        "elapsed_seconds": 6.0,
    }
    values.update(overrides)
    return ProgressSnapshot(
        projects_total=int(values["projects_total"]),
        projects_done=int(values["projects_done"]),
        projects_failed=int(values["projects_failed"]),
        files=int(values["files"]),
        bytes=int(values["bytes"]),
        elapsed_seconds=values["elapsed_seconds"],
    )


def test_progress_line_shows_counts_rate_and_eta() -> None:
    assert format_progress(snapshot()) == (
        "10/40 projects, 30 files, 3 MiB, 512 KiB/s, ETA 18 seconds"
    )


def test_progress_line_names_failures_and_unknown_eta_before_the_first_project() -> None:
    line = format_progress(snapshot(projects_done=0, projects_failed=2, elapsed_seconds=0.0))
    assert line == "0/40 projects (2 failed), 30 files, 3 MiB, 0 bytes/s, ETA unknown"


def test_terminal_line_is_redrawn_in_place_at_most_every_quarter_second() -> None:
    clock = Clock(now=0.0)
    stream = TtyStream()
    progress = TerminalProgress(stream, clock=clock)
    progress.start(3)
    assert stream.getvalue() == "\r\x1b[K0/3 projects, 0 files, 0 bytes, 0 bytes/s, ETA unknown"
    clock.now = 0.1
    progress.bytes_downloaded(2048)
    progress.project_done(ok=True)
    assert stream.getvalue().count("\r") == 1, "too soon to redraw"
    clock.now = 0.5
    progress.project_done(ok=False)
    assert stream.getvalue().endswith(
        "\r\x1b[K2/3 projects (1 failed), 1 files, 2 KiB, 4 KiB/s, ETA 0 seconds"
    )
    progress.finish()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_terminal_log_filter_erases_the_line_before_a_log_record() -> None:
    clock = Clock(now=0.0)
    stream = TtyStream()
    progress = TerminalProgress(stream, clock=clock)
    progress.start(1)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert progress.log_filter().filter(record)
    assert stream.getvalue().endswith("\r\x1b[K")
    progress.project_done(ok=True)
    assert stream.getvalue().endswith("1/1 projects, 0 files, 0 bytes, 0 bytes/s, ETA 0 seconds")


def test_log_progress_logs_a_line_every_thirty_seconds_and_nothing_at_start_or_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mirror.progress")
    clock = Clock(now=0.0)
    progress = LogProgress(clock=clock)
    progress.start(2)
    clock.now = 10.0
    progress.project_done(ok=True)
    assert caplog.messages == []
    clock.now = 31.0
    progress.bytes_downloaded(10)
    clock.now = 40.0
    progress.project_done(ok=True)
    progress.finish()
    assert caplog.messages == [
        "progress: 1/2 projects, 1 files, 10 bytes, 0 bytes/s, ETA 31 seconds"
    ]


def test_progress_for_picks_the_live_line_only_on_a_terminal() -> None:
    assert isinstance(progress_for(TtyStream()), TerminalProgress)
    assert isinstance(progress_for(io.StringIO()), LogProgress)


def test_no_progress_accepts_every_event() -> None:
    sink = NoProgress()
    sink.start(1)
    sink.project_done(ok=True)
    sink.bytes_downloaded(1)
    sink.finish()


class Recording:
    """A sink that keeps what the sync told it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | bool]] = []

    def start(self, projects: int) -> None:
        self.events.append(("start", projects))

    def project_done(self, *, ok: bool) -> None:
        self.events.append(("done", ok))

    def bytes_downloaded(self, count: int) -> None:
        self.events.append(("bytes", count))

    def finish(self) -> None:
        self.events.append(("finish", True))


async def test_sync_reports_projects_and_downloads_to_its_progress_sink(
    runner: MirrorRunner,
) -> None:
    runner.upstream.add_release("alpha", "1.0")
    runner.upstream.add_release("beta", "1.0", wheel=False)
    runner.upstream.fail_next("/simple/beta", 500, times=10)
    sink = Recording()
    report = await runner.sync(progress=sink)
    assert sink.events[0] == ("start", 2)
    assert sink.events[-1] == ("finish", True)
    assert sorted(e for e in sink.events if e[0] == "done") == [("done", False), ("done", True)]
    downloaded = [count for kind, count in sink.events if kind == "bytes"]
    assert len(downloaded) == report.files_downloaded
    assert sum(downloaded) == report.bytes_downloaded
