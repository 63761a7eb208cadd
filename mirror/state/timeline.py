"""The state store's file history and the cooldown's held files: what a past view of
the index lists, and which projects have files waiting to be published.

The history is written inside the commits of :mod:`~mirror.state.inventory`
(:func:`write_history`, :func:`mark_removed`): one read of the project's live rows,
then a write only for each file added, changed (yank state, ``.metadata``) or dropped,
so a sync costs no more than the rows it writes. A file is in the view of a moment
when:

- by time ``T``: upstream uploaded it at or before ``T`` (files without an upload
  time: the mirror committed it at or before ``T``) and it was not removed by ``T``;
- by mirror serial ``S``: it was committed at a project serial ``<= S`` and not
  removed at one ``<= S``;

and in both cases only when it is published now too: never before its cooldown is
over (a view of a recent moment cannot be used to get round the cooldown), never
once its file is collected from disk (removed more than ``keep-removed`` ago), and
never for a project upstream quarantines (PEP 792).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from packaging.utils import NormalizedName

from mirror.models import PackagePath, Serial
from mirror.state.core import StoreCore
from mirror.state.records import HistoryFile, Moment

logger = logging.getLogger(__name__)

_COLUMNS = (
    "h.path, h.project, h.filename, h.size, h.sha256, h.metadata_sha256, h.requires_python,"
    " h.yanked, h.provenance, h.upload_time, h.mirrored_at, h.mirrored_serial,"
    " h.removed_at, h.removed_serial"
)

# Projects per page of a past root index.
_ROOT_PAGE_ROWS = 5000

_HistoryRow = tuple[
    str,
    str,
    str,
    int,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    float | None,
    float,
    int,
    float | None,
    int | None,
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """What a commit records of one file it keeps (published or held back)."""

    path: PackagePath
    filename: str
    size: int
    sha256: str
    metadata_sha256: str | None
    requires_python: str | None
    yanked: str | None
    """None when not yanked, else the reason (``""`` for none)."""
    provenance: str | None
    upload_time: float | None

    def values(self) -> tuple[object, ...]:
        """The columns a commit compares with the recorded row."""
        return (
            self.filename,
            self.size,
            self.sha256,
            self.metadata_sha256,
            self.requires_python,
            self.yanked,
            self.provenance,
            self.upload_time,
        )


class Timeline(StoreCore):
    """Reads of the ``file_history`` and ``held`` tables."""

    def file_history(self, name: NormalizedName) -> list[HistoryFile]:
        """Every history row of project ``name``, removed files included, by path."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM file_history AS h WHERE h.project = ?"  # noqa: S608 (constant)
                " ORDER BY h.path",
                (name,),
            ).fetchall()
        return [_history_file(row) for row in rows]

    def files_at(self, name: NormalizedName, moment: Moment) -> list[HistoryFile]:
        """The files of ``name`` in the view of ``moment`` (see the module docstring),
        by filename; none for a quarantined project."""
        where, params = _visible(moment)
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM file_history AS h"  # noqa: S608 (constant parts)
                " LEFT JOIN projects AS p ON p.name = h.project"
                f" WHERE h.project = ? AND {where} ORDER BY h.filename",
                (name, *params),
            ).fetchall()
        return [_history_file(row) for row in rows]

    def projects_at(self, moment: Moment) -> Iterator[list[tuple[NormalizedName, str, Serial]]]:
        """The projects with a file in the view of ``moment``, by name, as root index
        rows (name, display name, newest serial of their files in view), a page at a
        time. A project the mirror no longer holds is shown by its normalized name."""
        where, params = _visible(moment)
        after = ""
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    "SELECT h.project, coalesce(p.display_name, h.project),"  # noqa: S608
                    " max(h.mirrored_serial) FROM file_history AS h"
                    " LEFT JOIN projects AS p ON p.name = h.project"
                    f" WHERE h.project > ? AND {where}"
                    " GROUP BY h.project ORDER BY h.project LIMIT ?",
                    (after, *params, _ROOT_PAGE_ROWS),
                ).fetchall()
            yield [(NormalizedName(name), str(shown), Serial(last)) for name, shown, last in rows]
            if len(rows) < _ROOT_PAGE_ROWS:
                return
            after = rows[-1][0]

    def held_count(self) -> int:
        """Files downloaded but held back by the cooldown, across projects."""
        with self._reading() as connection:
            (count,) = connection.execute("SELECT coalesce(sum(files), 0) FROM held").fetchone()
        return int(count)

    def queue_due_held(self, uploaded_before: float, now: float) -> list[NormalizedName]:
        """Queue, due at ``now``, the projects holding back a file uploaded at or
        before ``uploaded_before`` (now less the cooldown), at their committed serial,
        so that the run publishes what became due: one indexed read and one insert,
        in one transaction. A project already queued is left alone: its queued sync
        publishes what is due, and queueing it again would cut its back-off short.
        Returns the projects queued."""
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT h.project, coalesce(p.serial, 0) FROM held AS h"
                " LEFT JOIN projects AS p ON p.name = h.project"
                " WHERE h.earliest_upload <= ?"
                " AND NOT EXISTS (SELECT 1 FROM todo AS t WHERE t.name = h.project)"
                " ORDER BY h.project",
                (uploaded_before,),
            ).fetchall()
            connection.executemany(
                "INSERT INTO todo (name, serial, display_name, attempts, next_attempt,"
                " last_error) VALUES (?, ?, NULL, 0, ?, NULL)",
                [(name, serial, now) for name, serial in rows],
            )
        if rows:
            logger.info("%d project(s) have held-back files now due", len(rows))
        return [NormalizedName(name) for name, _ in rows]


def write_history(
    connection: sqlite3.Connection,
    name: NormalizedName,
    kept: Sequence[HistoryEntry],
    *,
    serial: Serial,
    now: float,
) -> None:
    """Bring ``name``'s history in step with the files a commit keeps, inside the
    caller's transaction: new and changed files are upserted (a file seen again after
    its removal starts a new life), files no longer kept are marked removed."""
    live = {
        row[0]: tuple(row[1:])
        for row in connection.execute(
            "SELECT path, filename, size, sha256, metadata_sha256, requires_python, yanked,"
            " provenance, upload_time FROM file_history"
            " WHERE project = ? AND removed_at IS NULL",
            (name,),
        )
    }
    changed = [entry for entry in kept if live.get(entry.path) != entry.values()]
    connection.executemany(
        "INSERT INTO file_history (path, project, filename, size, sha256, metadata_sha256,"
        " requires_python, yanked, provenance, upload_time, mirrored_at, mirrored_serial)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET project = excluded.project,"
        " filename = excluded.filename, size = excluded.size, sha256 = excluded.sha256,"
        " metadata_sha256 = excluded.metadata_sha256,"
        " requires_python = excluded.requires_python, yanked = excluded.yanked,"
        " provenance = excluded.provenance, upload_time = excluded.upload_time,"
        " mirrored_at = CASE WHEN removed_at IS NULL THEN mirrored_at"
        " ELSE excluded.mirrored_at END,"
        " mirrored_serial = CASE WHEN removed_at IS NULL THEN mirrored_serial"
        " ELSE excluded.mirrored_serial END,"
        " removed_at = NULL, removed_serial = NULL",
        [(entry.path, name, *entry.values(), now, serial) for entry in changed],
    )
    kept_paths = {entry.path for entry in kept}
    connection.executemany(
        "UPDATE file_history SET removed_at = ?, removed_serial = ? WHERE path = ?",
        [(now, serial, path) for path in live if path not in kept_paths],
    )


def mark_removed(
    connection: sqlite3.Connection, name: NormalizedName, *, serial: Serial, now: float
) -> None:
    """Mark every live history row of ``name`` removed (the project went), inside the
    caller's transaction."""
    connection.execute(
        "UPDATE file_history SET removed_at = ?, removed_serial = ?"
        " WHERE project = ? AND removed_at IS NULL",
        (now, serial, name),
    )


def forget_history(connection: sqlite3.Connection, name: NormalizedName) -> list[str]:
    """Delete every history row of ``name`` (a project ``mirror delete`` took out: no
    view, past or present, may list it again), inside the caller's transaction.
    Returns the paths the rows named, ``.metadata`` sidecars included."""
    rows = connection.execute(
        "SELECT path, metadata_sha256 FROM file_history WHERE project = ?", (name,)
    ).fetchall()
    connection.execute("DELETE FROM file_history WHERE project = ?", (name,))
    paths = [str(path) for path, _ in rows]
    paths += [f"{path}.metadata" for path, metadata_sha256 in rows if metadata_sha256]
    return paths


def set_held(
    connection: sqlite3.Connection, name: NormalizedName, uploads: Sequence[float]
) -> None:
    """Record the upload times of ``name``'s held-back files (none: forget the
    project), inside the caller's transaction."""
    if not uploads:
        connection.execute("DELETE FROM held WHERE project = ?", (name,))
        return
    connection.execute(
        "INSERT INTO held (project, earliest_upload, files) VALUES (?, ?, ?)"
        " ON CONFLICT (project) DO UPDATE SET earliest_upload = excluded.earliest_upload,"
        " files = excluded.files",
        (name, min(uploads), len(uploads)),
    )


def _visible(moment: Moment) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause (over ``file_history AS h`` joined to ``projects AS p``) and
    its parameters that keep the files in the view of ``moment``."""
    published = (
        "coalesce(p.status, 'active') != 'quarantined'"
        " AND (h.upload_time IS NULL OR h.upload_time <= ?)"
        " AND (h.removed_at IS NULL OR h.removed_at >= ?)"
    )
    params: tuple[object, ...] = (moment.now - moment.cooldown, moment.now - moment.keep_removed)
    if moment.at is not None:
        where = (
            " AND coalesce(h.upload_time, h.mirrored_at) <= ?"
            " AND (h.removed_at IS NULL OR h.removed_at > ?)"
        )
        return published + where, (*params, moment.at, moment.at)
    where = " AND h.mirrored_serial <= ? AND (h.removed_serial IS NULL OR h.removed_serial > ?)"
    return published + where, (*params, moment.serial, moment.serial)


def _history_file(row: _HistoryRow) -> HistoryFile:
    (
        path,
        project,
        filename,
        size,
        sha256,
        metadata_sha256,
        requires_python,
        yanked,
        provenance,
        upload_time,
        mirrored_at,
        mirrored_serial,
        removed_at,
        removed_serial,
    ) = row
    return HistoryFile(
        path=PackagePath(path),
        project=NormalizedName(project),
        filename=filename,
        size=size,
        sha256=sha256,
        metadata_sha256=metadata_sha256,
        requires_python=requires_python,
        yanked=yanked,
        provenance=provenance,
        upload_time=upload_time,
        mirrored_at=mirrored_at,
        mirrored_serial=Serial(mirrored_serial),
        removed_at=removed_at,
        removed_serial=None if removed_serial is None else Serial(removed_serial),
    )
