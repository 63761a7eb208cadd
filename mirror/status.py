"""``mirror status``: what the mirror holds, how far behind upstream it is, what fails.

Everything comes from the state store (:func:`read_status`): serial, running totals,
the last runs and the retry queue, a handful of indexed reads whatever the mirror's
size; nothing walks the tree. Only ``--remote`` asks upstream for its serial (one
XML-RPC call) and only ``--recount`` lists the storage, disk or bucket
(:func:`list_packages`, :func:`recount_store`).

The JSON form (:func:`status_json`) is for scripts; its keys are stable:

``mirror_serial``, ``upstream_serial`` (int or null), ``upstream_serial_source``
(``"remote"``, ``"last_run"`` or null), ``lag`` (serials behind, or null),
``projects``, ``files``, ``bytes``, ``pending`` (queued projects), ``held_back``
(files downloaded but held back by the cooldown), ``downloaded_bytes_total``,
``last_success`` (Unix time or null),
``seconds_since_last_success`` (or null), ``last_run`` (null or an object with
``started``, ``finished``, ``duration_seconds``, ``ok``, ``projects_synced``,
``projects_removed``, ``projects_failed``, ``files_downloaded``, ``bytes_downloaded``,
``files_deleted``, ``serial``, ``upstream_serial``), ``failures`` (a list of objects
with ``name``, ``attempts``, ``last_error``, ``next_attempt``), ``on_demand`` (the
projects ``mirror serve`` added on demand: ``name``, ``added``, ``requests``),
``on_demand_requests`` (their requests in all), ``missing_locked`` (locked files
upstream no longer has: ``name``, ``version``, ``filename``, ``sha256``), ``excluded``
(the projects ``mirror delete`` keeps out: objects with ``name``, ``display_name``,
``since``, ``reason``), and, when asked for,
``history`` (a list of ``finished``, ``serial``, ``projects``, ``files``, ``bytes``)
and ``recount`` (see :class:`RecountReport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from humanfriendly import format_size, format_timespan

from mirror.errors import StateError
from mirror.filters.lockfiles import LockedFile
from mirror.models import Serial
from mirror.state import DemandedProject, Exclusion, RunRecord, StateStore, TodoItem, Totals
from mirror.storage import Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorStatus:
    """The mirror's state at one moment, as read from the state store."""

    now: float
    mirror_serial: Serial | None
    upstream_serial: Serial | None
    upstream_serial_source: str | None
    """``remote`` (asked just now), ``last_run`` (as the last run saw it) or None."""
    totals: Totals
    pending: int
    failures: tuple[TodoItem, ...]
    last_run: RunRecord | None
    last_success: RunRecord | None
    downloaded_bytes_total: int
    held_back: int = 0
    """Files downloaded but not yet published: the cooldown holds them back."""
    on_demand: tuple[DemandedProject, ...] = ()
    """The projects ``mirror serve`` added on demand."""
    missing_locked: tuple[LockedFile, ...] = ()
    """The allowlist's locked files upstream no longer had at their project's last sync."""

    @property
    def on_demand_requests(self) -> int:
        """Requests answered by an on-demand fetch, in all."""
        return sum(project.requests for project in self.on_demand)

    excluded: tuple[Exclusion, ...] = ()
    """The projects ``mirror delete`` keeps out."""

    @property
    def lag(self) -> int | None:
        """Serials the mirror is behind upstream; None when either is unknown."""
        if self.mirror_serial is None or self.upstream_serial is None:
            return None
        return max(0, self.upstream_serial - self.mirror_serial)

    @property
    def seconds_since_last_success(self) -> float | None:
        """Time since the last successful run ended; None before the first."""
        return None if self.last_success is None else self.now - self.last_success.finished


@dataclass(frozen=True, slots=True, kw_only=True)
class RecountReport:
    """An audit of the running totals against the project rows and the disk."""

    counted: Totals
    """The running totals before the audit."""
    recounted: Totals
    """The totals summed from the project rows; the counters now hold these."""
    disk_files: int
    """Listed files (sidecars not counted) found on disk."""
    disk_bytes: int
    """Bytes on disk of the listed files and their sidecars."""
    missing: tuple[str, ...]
    """Listed paths (files or sidecars) not on disk."""
    wrong_size: tuple[str, ...]
    """Listed paths whose size on disk differs from the state's."""
    stray: tuple[str, ...]
    """Files under ``packages/`` the state neither lists nor is about to delete."""

    @property
    def counters_drifted(self) -> bool:
        """Whether the running totals differed from the project rows (and were fixed)."""
        return self.counted != self.recounted

    @property
    def disk_drifted(self) -> bool:
        """Whether the disk differs from what the state lists."""
        return bool(self.missing or self.wrong_size or self.stray)


def read_status(
    state: StateStore, *, now: float, upstream_serial: Serial | None = None
) -> MirrorStatus:
    """Gather the status from ``state``. ``upstream_serial`` is a serial just asked
    for; without it the one the last run saw is used."""
    source: str | None = "remote"
    if upstream_serial is None:
        upstream_serial = state.last_upstream_serial()
        source = None if upstream_serial is None else "last_run"
    return MirrorStatus(
        now=now,
        mirror_serial=state.mirror_serial(),
        upstream_serial=upstream_serial,
        upstream_serial_source=source,
        totals=state.totals(),
        pending=state.todo_count(),
        failures=tuple(state.failures()),
        last_run=state.last_run(),
        last_success=state.last_run(ok=True),
        downloaded_bytes_total=state.downloaded_bytes_total(),
        held_back=state.held_count(),
        on_demand=tuple(state.on_demand_projects()),
        missing_locked=tuple(state.missing_locked()),
        excluded=tuple(state.exclusions()),
    )


async def recount_store(state: StateStore, storage: Storage) -> RecountReport:
    """Audit the running totals: sum them afresh from the project rows (and store
    them when they differ), and compare the files the state lists with what
    ``storage`` holds under ``packages/`` (the store's part runs in a thread).

    Raises StorageError when the tree cannot be listed.
    """
    listed = await list_packages(storage)
    return await asyncio.to_thread(audit_store, state, listed)


async def list_packages(storage: Storage) -> dict[str, int]:
    """Every file ``storage`` holds under ``packages/``: its path under the web root
    and its size. One listing, on disk or in a bucket alike."""
    return {listed.path: listed.size async for listed in storage.list_files("packages")}


def audit_store(state: StateStore, on_disk: Mapping[str, int]) -> RecountReport:
    """:func:`recount_store`, given the files under ``packages/`` and their sizes
    (``on_disk``, from :func:`list_packages`). Blocking: run it in a thread."""
    counted = state.totals()
    recounted = state.recount_totals()
    if recounted != counted:
        state.set_totals(recounted)
        logger.warning("running totals drifted (%s, rows say %s); fixed", counted, recounted)
    listed: set[str] = set()
    missing: list[str] = []
    wrong_size: list[str] = []
    disk_files = 0
    disk_bytes = 0
    for stored in state.iter_files():
        expected = [(str(stored.path), stored.size)]
        if stored.metadata_size is not None:
            expected.append((f"{stored.path}.metadata", stored.metadata_size))
        if stored.provenance_size is not None:
            expected.append((f"{stored.path}.provenance", stored.provenance_size))
        for position, (path, size) in enumerate(expected):
            listed.add(path)
            actual = on_disk.get(path)
            if actual is None:
                missing.append(path)
                continue
            disk_bytes += actual
            disk_files += position == 0
            if actual != size:
                wrong_size.append(path)
    stray = [path for path in on_disk if path not in listed]
    stray = [path for path in stray if not state.is_garbage(path)]
    return RecountReport(
        counted=counted,
        recounted=recounted,
        disk_files=disk_files,
        disk_bytes=disk_bytes,
        missing=tuple(missing),
        wrong_size=tuple(wrong_size),
        stray=tuple(sorted(stray)),
    )


# --- rendering -------------------------------------------------------------------------


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(count: int) -> str:
    return str(format_size(count, binary=True))


def _serial(serial: Serial | None) -> str:
    return "none" if serial is None else str(serial)


def render_status(status: MirrorStatus) -> str:
    """The human-readable status, several lines ending with a newline."""
    lines = [f"mirror serial:    {_serial(status.mirror_serial)}"]
    if status.upstream_serial is not None:
        seen = "now" if status.upstream_serial_source == "remote" else "at the last run"
        lines.append(f"upstream serial:  {status.upstream_serial} ({seen})")
        lines.append(f"lag:              {status.lag} serial(s)")
    since = status.seconds_since_last_success
    lines.append(
        "last success:     "
        + ("never" if since is None else f"{format_timespan(round(since))} ago")
    )
    totals = status.totals
    lines.append(
        f"size:             {totals.projects} projects, {totals.files} files, {_size(totals.bytes)}"
    )
    run = status.last_run
    if run is None:
        lines.append("last run:         none recorded")
    else:
        lines.append(
            f"last run:         {'ok' if run.ok else 'incomplete'}, ended {_when(run.finished)} "
            f"after {format_timespan(run.finished - run.started)}: "
            f"{run.projects_synced} synced, {run.projects_removed} removed, "
            f"{run.projects_failed} failed; {run.files_downloaded} files "
            f"({_size(run.bytes_downloaded)}) downloaded; serial {_serial(run.serial)}"
        )
    lines.append(f"queued:           {status.pending} project(s)")
    lines.append(f"held back:        {status.held_back} file(s) (cooldown)")
    lines.append(f"failing:          {len(status.failures)} project(s)")
    lines.extend(
        f"  {item.name}: {item.attempts} attempt(s), next retry {_when(item.next_attempt)}: "
        f"{item.last_error}"
        for item in status.failures
    )
    if status.on_demand:
        lines.append(
            f"on demand:        {len(status.on_demand)} project(s) added, "
            f"{status.on_demand_requests} request(s) served by fetching"
        )
        lines.extend(
            f"  {p.name}: added {_when(p.added)}, {p.requests} request(s)" for p in status.on_demand
        )
    if status.missing_locked:
        lines.append(
            f"locked, missing:  {len(status.missing_locked)} file(s) upstream no longer has"
        )
        lines.extend(f"  {locked}" for locked in status.missing_locked)
    lines.append(f"kept out:         {len(status.excluded)} project(s)")
    lines.extend(
        f"  {item.name}: since {_when(item.since)}: {item.reason}" for item in status.excluded
    )
    return "\n".join(lines) + "\n"


def render_history(runs: list[RunRecord]) -> str:
    """A table of the runs, oldest first: date, serial, projects, files, size and
    the size's change since the run before."""
    header = f"{'date':<23} {'serial':>10} {'projects':>9} {'files':>9} {'size':>11} {'delta':>12}"
    lines = [header]
    previous: int | None = None
    for run in runs:
        delta = "" if previous is None else _signed_size(run.totals.bytes - previous)
        previous = run.totals.bytes
        lines.append(
            f"{_when(run.finished):<23} {_serial(run.serial):>10} {run.totals.projects:>9} "
            f"{run.totals.files:>9} {_size(run.totals.bytes):>11} {delta:>12}"
        )
    return "\n".join(lines) + "\n"


def _signed_size(delta: int) -> str:
    return ("-" if delta < 0 else "+") + _size(abs(delta))


def render_recount(report: RecountReport) -> str:
    """What the audit found and fixed, several lines ending with a newline."""
    lines: list[str] = []
    if report.counters_drifted:
        old, new = report.counted, report.recounted
        lines.append(
            f"counters drifted and were fixed: {old.projects} -> {new.projects} projects, "
            f"{old.files} -> {new.files} files, {old.bytes} -> {new.bytes} bytes"
        )
    else:
        lines.append("counters match the project rows")
    lines.append(
        f"on disk: {report.disk_files} listed files, {_size(report.disk_bytes)} "
        f"({report.disk_bytes} bytes, state says {report.recounted.bytes})"
    )
    for label, paths in (
        ("missing", report.missing),
        ("wrong size", report.wrong_size),
        ("not listed", report.stray),
    ):
        if paths:
            lines.append(f"{label}: {len(paths)}")
            lines.extend(f"  {path}" for path in paths)
    if not report.disk_drifted:
        lines.append("the disk matches the state")
    return "\n".join(lines) + "\n"


def status_json(
    status: MirrorStatus,
    *,
    history: list[RunRecord] | None = None,
    recount_report: RecountReport | None = None,
) -> str:
    """The status as a JSON document (keys in the module docstring)."""
    run = status.last_run
    document: dict[str, object] = {
        "mirror_serial": status.mirror_serial,
        "upstream_serial": status.upstream_serial,
        "upstream_serial_source": status.upstream_serial_source,
        "lag": status.lag,
        "projects": status.totals.projects,
        "files": status.totals.files,
        "bytes": status.totals.bytes,
        "pending": status.pending,
        "held_back": status.held_back,
        "downloaded_bytes_total": status.downloaded_bytes_total,
        "last_success": None if status.last_success is None else status.last_success.finished,
        "seconds_since_last_success": status.seconds_since_last_success,
        "last_run": None
        if run is None
        else {
            "started": run.started,
            "finished": run.finished,
            "duration_seconds": run.finished - run.started,
            "ok": run.ok,
            "projects_synced": run.projects_synced,
            "projects_removed": run.projects_removed,
            "projects_failed": run.projects_failed,
            "files_downloaded": run.files_downloaded,
            "bytes_downloaded": run.bytes_downloaded,
            "files_deleted": run.files_deleted,
            "serial": run.serial,
            "upstream_serial": run.upstream_serial,
        },
        "failures": [
            {
                "name": item.name,
                "attempts": item.attempts,
                "last_error": item.last_error,
                "next_attempt": item.next_attempt,
            }
            for item in status.failures
        ],
        "on_demand": [
            {"name": p.name, "added": p.added, "requests": p.requests} for p in status.on_demand
        ],
        "on_demand_requests": status.on_demand_requests,
        "missing_locked": [
            {"name": f.name, "version": f.version, "filename": f.filename, "sha256": f.sha256}
            for f in status.missing_locked
        ],
        "excluded": [
            {
                "name": item.name,
                "display_name": item.display_name,
                "since": item.since,
                "reason": item.reason,
            }
            for item in status.excluded
        ],
    }
    if history is not None:
        document["history"] = [
            {
                "finished": sample.finished,
                "serial": sample.serial,
                "projects": sample.totals.projects,
                "files": sample.totals.files,
                "bytes": sample.totals.bytes,
            }
            for sample in history
        ]
    if recount_report is not None:
        document["recount"] = {
            "counters_drifted": recount_report.counters_drifted,
            "counted": _totals_json(recount_report.counted),
            "recounted": _totals_json(recount_report.recounted),
            "disk_files": recount_report.disk_files,
            "disk_bytes": recount_report.disk_bytes,
            "missing": list(recount_report.missing),
            "wrong_size": list(recount_report.wrong_size),
            "stray": list(recount_report.stray),
        }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _totals_json(totals: Totals) -> dict[str, int]:
    return {"projects": totals.projects, "files": totals.files, "bytes": totals.bytes}


def require_store(path: Path) -> None:
    """Raise StateError unless a state store exists at ``path``: ``mirror status``
    reads a mirror, it never makes one. Blocking (a stat)."""
    if not path.is_file():
        raise StateError(f"no state store at {path}: run `mirror sync` first")


async def status_text(
    path: Path,
    *,
    upstream_serial: Serial | None = None,
    on_disk: Mapping[str, int] | None = None,
    as_json: bool = False,
    history: bool = False,
) -> str:
    """What ``mirror status`` prints for the state store at ``path``: ``upstream_serial``
    just asked for (else the last run's), the recount's audit against ``on_disk`` (see
    :func:`list_packages`) when given, every run with ``history``; JSON with ``as_json``.
    The resources behind the arguments are built by :func:`mirror.app.status`.

    Raises StateError when there is no state store at ``path`` (or an unreadable one).
    """

    def gather() -> str:
        require_store(path)
        # Opened read-write: a store from an older mirror is migrated, and --recount
        # may fix the counters. Every transaction is short, so a running sync is not
        # held up.
        with StateStore.open(path) as state:
            audit = None if on_disk is None else audit_store(state, on_disk)
            status = read_status(state, now=time.time(), upstream_serial=upstream_serial)
            runs = state.runs() if history else None
        if as_json:
            return status_json(status, history=runs, recount_report=audit)
        text = render_status(status)
        if runs is not None:
            text += "\n" + render_history(runs)
        if audit is not None:
            text += "\n" + render_recount(audit)
        return text

    return await asyncio.to_thread(gather)
