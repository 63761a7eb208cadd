"""Progress of a sync run, as the run goes: a live line on a terminal, log lines elsewhere.

The sync engine reports to a :class:`ProgressSink` (``start``, ``project_done``,
``bytes_downloaded``, ``finish``); it never formats anything itself. Two renderers:

* :class:`TerminalProgress` redraws one line in place (``\\r`` and erase-to-end-of-line)
  at most ``min_interval_seconds`` apart (4 times a second by default);
* :class:`LogProgress` logs a plain INFO line at most every ``interval_seconds`` (30 s
  by default), for cron mail and journald, where redrawing makes no sense.

:func:`progress_for` picks one by whether the stream is a terminal. Both are driven by
the sync's own events (no timer task): while nothing happens, nothing is drawn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

from humanfriendly import format_size, format_timespan

logger = logging.getLogger(__name__)


class ProgressSink(Protocol):
    """What the sync engine tells about a run in progress. Calls come from the event
    loop and must return at once."""

    def start(self, projects: int) -> None:
        """The run has ``projects`` projects to do."""

    def project_done(self, *, ok: bool) -> None:
        """One project was synced or removed (``ok``), or failed."""

    def bytes_downloaded(self, count: int) -> None:
        """A file of ``count`` bytes was downloaded and verified."""

    def finish(self) -> None:
        """The run is over (whether or not it succeeded)."""


class NoProgress:
    """The sink that shows nothing (the default)."""

    def start(self, projects: int) -> None:
        """Ignore."""

    def project_done(self, *, ok: bool) -> None:
        """Ignore."""

    def bytes_downloaded(self, count: int) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressSnapshot:
    """Where a run stands; what a renderer draws."""

    projects_total: int
    projects_done: int
    projects_failed: int
    files: int
    bytes: int
    elapsed_seconds: float

    @property
    def bytes_per_second(self) -> float:
        """Download rate since the run started (0 before any time has passed)."""
        return self.bytes / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left if the remaining projects go as fast as the done ones; None
        before the first project is done."""
        if self.projects_done == 0:
            return None
        remaining = max(0, self.projects_total - self.projects_done)
        return self.elapsed_seconds / self.projects_done * remaining


def format_progress(snapshot: ProgressSnapshot) -> str:
    """One line: ``12/40 projects (1 failed), 30 files, 1.5 MiB, 512 KiB/s, ETA 3 seconds``."""
    failed = f" ({snapshot.projects_failed} failed)" if snapshot.projects_failed else ""
    eta = snapshot.eta_seconds
    return (
        f"{snapshot.projects_done}/{snapshot.projects_total} projects{failed}, "
        f"{snapshot.files} files, {format_size(snapshot.bytes, binary=True)}, "
        f"{format_size(round(snapshot.bytes_per_second), binary=True)}/s, "
        f"ETA {'unknown' if eta is None else format_timespan(round(eta))}"
    )


class _Counting:
    """The counters both renderers keep; subclasses decide when to draw."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started = clock()
        self._total = 0
        self._done = 0
        self._failed = 0
        self._files = 0
        self._bytes = 0

    def snapshot(self) -> ProgressSnapshot:
        """Where the run stands now."""
        return ProgressSnapshot(
            projects_total=self._total,
            projects_done=self._done,
            projects_failed=self._failed,
            files=self._files,
            bytes=self._bytes,
            elapsed_seconds=self._clock() - self._started,
        )

    def start(self, projects: int) -> None:
        """Count ``projects`` to do, from now."""
        self._started = self._clock()
        self._total = projects
        self._changed(force=True)

    def project_done(self, *, ok: bool) -> None:
        """Count a project done (and failed, unless ``ok``)."""
        self._done += 1
        if not ok:
            self._failed += 1
        self._changed(force=False)

    def bytes_downloaded(self, count: int) -> None:
        """Count a downloaded file of ``count`` bytes."""
        self._files += 1
        self._bytes += count
        self._changed(force=False)

    def _changed(self, *, force: bool) -> None:
        raise NotImplementedError


class TerminalProgress(_Counting):
    """A live line on a terminal, redrawn in place at most every
    ``min_interval_seconds``; :meth:`finish` erases it (the run's summary follows)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval_seconds: float = 0.25,
    ) -> None:
        super().__init__(clock)
        self._stream = stream
        self._min_interval = min_interval_seconds
        self._drawn_at: float | None = None

    def _changed(self, *, force: bool) -> None:
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self._min_interval:
            return
        self._drawn_at = now
        self._stream.write(f"\r\x1b[K{format_progress(self.snapshot())}")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the line (before a log line is written over it); the next event
        redraws it."""
        self._stream.write("\r\x1b[K")
        self._stream.flush()
        self._drawn_at = None

    def finish(self) -> None:
        """Erase the line for good."""
        self.clear()

    def log_filter(self) -> logging.Filter:
        """A filter for the terminal's log handler that erases the progress line before
        each record is written, so log lines never run into it."""
        return ClearProgressFirst(self)


class ClearProgressFirst(logging.Filter):
    """Log-handler filter that erases a terminal progress line before each record."""

    def __init__(self, progress: TerminalProgress) -> None:
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        del record
        self._progress.clear()
        return True


class LogProgress(_Counting):
    """Plain INFO log lines, at most one every ``interval_seconds``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_seconds: float = 30.0,
    ) -> None:
        super().__init__(clock)
        self._interval = interval_seconds
        self._logged_at = clock()

    def _changed(self, *, force: bool) -> None:
        # The start is not logged: the sync logs how many projects it has to do.
        now = self._clock()
        if force or now - self._logged_at < self._interval:
            return
        self._logged_at = now
        logger.info("progress: %s", format_progress(self.snapshot()))

    def finish(self) -> None:
        """Nothing: the run's summary line says where it ended."""


def progress_for(stream: TextIO) -> TerminalProgress | LogProgress:
    """The renderer for ``stream``: live on a terminal, log lines otherwise."""
    return TerminalProgress(stream) if stream.isatty() else LogProgress()
