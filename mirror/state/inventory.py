"""The mirror's inventory in the state store: committed projects, verified files, the
running totals and the garbage list.

Order of effects (``docs/architecture.md``): a file row is recorded only once the file
is verified on disk; :meth:`Inventory.commit_project` moves the rows of files a project
no longer links to the garbage table in the same transaction that updates the project
row; the caller unlinks the garbage files and then forgets them. A crash at any point
leaves at worst garbage rows (or orphan files) that a later run collects, never a row
without its file.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import cast

from packaging.utils import NormalizedName

from mirror.layout import provenance_path
from mirror.models import ListingRow, PackagePath, Serial
from mirror.state.core import StoreCore, put_meta
from mirror.state.journal import journal_change
from mirror.state.keys import ROOT_HTML_META_KEY, SERIAL_KEY
from mirror.state.queue import drop_todo, settle_todo
from mirror.state.records import ProjectRow, StoredFile, Totals
from mirror.state.timeline import HistoryEntry, mark_removed, set_held, write_history

logger = logging.getLogger(__name__)

_FILE_COLUMNS = (
    "path, project, filename, size, sha256, metadata_sha256, metadata_size,"
    " provenance_sha256, provenance_size"
)
"""The columns of a file row, in :func:`_stored_file`'s order."""

# Rows per page when streaming projects: big enough to amortise the query, small
# enough that a 600k-project root index never holds more than a page in memory.
_PAGE_ROWS = 1000
# The root index reads every project: larger pages, fewer queries.
_LISTING_PAGE_ROWS = 10_000


class Inventory(StoreCore):
    """What the mirror holds: project rows, file rows, their totals, and the garbage
    paths dropped from them whose files may still be on disk."""

    # --- projects ---------------------------------------------------------------------

    def project(self, name: NormalizedName) -> ProjectRow | None:
        """The committed project ``name``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT name, display_name, serial, status, file_count, total_bytes"
                " FROM projects WHERE name = ?",
                (name,),
            ).fetchone()
        return None if row is None else _project_row(row)

    def iter_projects(self) -> Iterator[ProjectRow]:
        """Every committed project, ordered by name, read a page at a time.

        The lock is held only while a page is read, so the caller may use the store
        between items. Each page is a consistent snapshot; a project committed or
        removed during the iteration shows up (or not) according to where the
        iteration stands.
        """
        after = ""
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    "SELECT name, display_name, serial, status, file_count, total_bytes"
                    " FROM projects WHERE name > ? ORDER BY name LIMIT ?",
                    (after, _PAGE_ROWS),
                ).fetchall()
            for row in rows:
                yield _project_row(row)
            if len(rows) < _PAGE_ROWS:
                return
            after = rows[-1][0]

    def listing_pages(self) -> Iterator[list[ListingRow]]:
        """Every committed project's name, display name and serial (its newest journal
        serial: the one this mirror's changelog, listing and page header give it, so
        that a follower, bandersnatch included, sees one number), ordered by name,
        :data:`_LISTING_PAGE_ROWS` at a time: what the root index lists, read in
        three columns only and as the rows come (at 600,000 projects that takes a
        third of the time :meth:`iter_projects` does) and never all in memory. The
        lock is held only while a page is read; each page is a consistent snapshot,
        as there."""
        after = ""
        while True:
            with self._reading() as connection:
                # The rows are the columns' own values: TEXT, TEXT and INTEGER NOT NULL.
                rows = cast(
                    "list[ListingRow]",
                    connection.execute(
                        "SELECT p.name, p.display_name, coalesce((SELECT max(j.serial)"
                        " FROM journal j WHERE j.name = p.name), p.serial) FROM projects p"
                        " WHERE p.name > ? ORDER BY p.name LIMIT ?",
                        (after, _LISTING_PAGE_ROWS),
                    ).fetchall(),
                )
            yield rows
            if len(rows) < _LISTING_PAGE_ROWS:
                return
            after = rows[-1][0]

    # --- files ------------------------------------------------------------------------

    def project_files(self, name: NormalizedName) -> dict[PackagePath, StoredFile]:
        """Every recorded file of ``name`` (committed or not yet), by path."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE project = ?",  # noqa: S608 (constant)
                (name,),
            ).fetchall()
        files = (_stored_file(row) for row in rows)
        return {stored.path: stored for stored in files}

    def file(self, path: PackagePath) -> StoredFile | None:
        """The recorded file at ``path``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?",  # noqa: S608 (constant)
                (path,),
            ).fetchone()
        return None if row is None else _stored_file(row)

    def iter_files(self) -> Iterator[StoredFile]:
        """Every recorded file, ordered by path, read a page at a time (as
        :meth:`iter_projects`)."""
        after = ""
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    f"SELECT {_FILE_COLUMNS} FROM files"  # noqa: S608 (constant)
                    " WHERE path > ? ORDER BY path LIMIT ?",
                    (after, _PAGE_ROWS),
                ).fetchall()
            for row in rows:
                yield _stored_file(row)
            if len(rows) < _PAGE_ROWS:
                return
            after = rows[-1][0]

    def record_file(self, stored: StoredFile) -> None:
        """Record (or replace) a file that is verified on disk, in its own transaction.

        The file, and its sidecar when it has one, leave the garbage table: a path
        dropped earlier and stored again must not be unlinked by a later collection.
        When the replaced row had a sidecar and ``stored`` has none, the sidecar
        path goes to the garbage table.
        """
        self.record_files([stored])

    def record_files(self, files: Iterable[StoredFile]) -> None:
        """Record (or replace) files verified on disk, all in one transaction, each as
        :meth:`record_file` does (a sync records a project's downloads together)."""
        with self._transaction() as connection:
            for stored in files:
                _record_file(connection, stored)

    def forget_files(self, paths: Iterable[PackagePath]) -> list[PackagePath]:
        """Drop the file rows at ``paths`` (files found missing or corrupt) in one
        transaction, their paths and sidecars going to the garbage table; return those
        garbage paths. Their projects' rows keep their counts until their next commit."""
        with self._transaction() as connection:
            rows = [
                row
                for path in paths
                for row in connection.execute(
                    "SELECT path, metadata_sha256, provenance_sha256 FROM files WHERE path = ?",
                    (path,),
                )
            ]
            return _drop_files(connection, rows, not_before=0.0)

    # --- commits ----------------------------------------------------------------------

    def commit_project(
        self,
        *,
        name: NormalizedName,
        display_name: str,
        serial: Serial,
        status: str,
        delete: Collection[PackagePath],
        kept: Sequence[HistoryEntry] | None = None,
        held_uploads: Sequence[float] = (),
        keep_removed: float = 0.0,
        now: float | None = None,
    ) -> list[PackagePath]:
        """Commit ``name`` at ``serial`` once its pages are written, in one transaction.

        The file rows of ``name`` at the paths of ``delete`` (what the plan no longer
        publishes) are deleted and their paths (with their ``.metadata`` sidecars) put
        in the garbage table, to be unlinked ``keep_removed`` seconds after ``now``
        (the time of the commit; None: the clock's); the project row
        is upserted with the count and bytes of the remaining file rows; the todo
        row goes unless it asks for a newer serial than ``serial`` (a change queued
        meanwhile must survive); when the project is new or anything of it changed, a
        journal row records it (:mod:`~mirror.state.journal`). ``kept`` (every file
        the project keeps, published or held back) brings the file history in step
        (None leaves it alone), and ``held_uploads`` are the upload times of the files
        the cooldown holds back. Returns the garbage paths this commit added that are
        due for unlinking now.
        """
        dropped = set(delete)
        at = time.time() if now is None else now
        not_before = at + keep_removed if keep_removed > 0 else 0.0
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT path, metadata_sha256, provenance_sha256 FROM files WHERE project = ?",
                (name,),
            ).fetchall()
            garbage = _drop_files(
                connection, [row for row in rows if row[0] in dropped], not_before=not_before
            )
            before = connection.execute(
                "SELECT display_name, serial, status, file_count, total_bytes"
                " FROM projects WHERE name = ?",
                (name,),
            ).fetchone()
            if before is None or before[0] != display_name:
                put_meta(connection, ROOT_HTML_META_KEY, "")
            file_count, total_bytes = connection.execute(
                "SELECT count(*), coalesce(sum(size + coalesce(metadata_size, 0)"
                " + coalesce(provenance_size, 0)), 0)"
                " FROM files WHERE project = ?",
                (name,),
            ).fetchone()
            _add_project_to_counters(connection, name, sign=-1)
            connection.execute(
                "INSERT INTO projects"
                " (name, display_name, serial, status, file_count, total_bytes)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name,"
                " serial = excluded.serial, status = excluded.status,"
                " file_count = excluded.file_count, total_bytes = excluded.total_bytes",
                (name, display_name, serial, status, file_count, total_bytes),
            )
            _add_project_to_counters(connection, name, sign=1)
            if kept is not None:
                write_history(connection, name, kept, serial=serial, now=at)
            set_held(connection, name, held_uploads)
            settle_todo(connection, name, serial)
            after = (display_name, serial, status, file_count, total_bytes)
            if before is None or tuple(before) != after or garbage:
                journal_change(
                    connection,
                    name=name,
                    display_name=display_name,
                    action="create" if before is None else "update",
                    upstream_serial=serial,
                )
        logger.debug(
            "committed %s at serial %d: %d files, %d bytes, %d garbage paths",
            name,
            serial,
            file_count,
            total_bytes,
            len(garbage),
        )
        return garbage if keep_removed <= 0 else []

    def remove_project(
        self, name: NormalizedName, *, keep_removed: float = 0.0, now: float | None = None
    ) -> list[PackagePath]:
        """Forget ``name`` (gone upstream) in one transaction: its project row, file
        rows (paths and sidecars to the garbage table, to be unlinked ``keep_removed``
        seconds after ``now``), todo row and held files; a journal row records the
        removal of a committed project; its history rows are marked removed at ``now``
        and the mirror serial. Returns the garbage paths this added that are due for
        unlinking now."""
        at = time.time() if now is None else now
        not_before = at + keep_removed if keep_removed > 0 else 0.0
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT path, metadata_sha256, provenance_sha256 FROM files WHERE project = ?",
                (name,),
            ).fetchall()
            garbage = _drop_files(connection, rows, not_before=not_before)
            _add_project_to_counters(connection, name, sign=-1)
            shown = connection.execute(
                "SELECT display_name FROM projects WHERE name = ?", (name,)
            ).fetchone()
            if shown is not None:
                connection.execute("DELETE FROM projects WHERE name = ?", (name,))
                put_meta(connection, ROOT_HTML_META_KEY, "")
                journal_change(
                    connection, name=name, display_name=shown[0], action="remove project"
                )
            serial = connection.execute(
                "SELECT value FROM meta WHERE key = ?", (SERIAL_KEY,)
            ).fetchone()
            mark_removed(connection, name, serial=Serial(int(serial[0]) if serial else 0), now=at)
            set_held(connection, name, ())
            drop_todo(connection, name)
        logger.debug("removed %s: %d garbage paths", name, len(garbage))
        return garbage if keep_removed <= 0 else []

    # --- garbage ----------------------------------------------------------------------

    def garbage(self, *, now: float | None = None) -> list[PackagePath]:
        """Paths no longer in the state whose files may still be on disk, sorted; with
        ``now``, only those due for unlinking then (removed files are kept on disk
        for ``keep-removed``, see :meth:`commit_project`)."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT path FROM garbage WHERE not_before <= ? ORDER BY path",
                (float("inf") if now is None else now,),
            ).fetchall()
        return [PackagePath(row[0]) for row in rows]

    def is_retained(self, path: str) -> bool:
        """Whether ``path`` is a removed file kept on disk for past views (a garbage
        path not yet due), which ``mirror verify`` must not take for an orphan."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT 1 FROM garbage WHERE path = ? AND not_before > 0", (path,)
            ).fetchone()
        return row is not None

    def is_garbage(self, path: str) -> bool:
        """Whether ``path`` waits in the garbage table to be unlinked."""
        with self._reading() as connection:
            row = connection.execute("SELECT 1 FROM garbage WHERE path = ?", (path,)).fetchone()
        return row is not None

    def expect_files(self, paths: Iterable[PackagePath]) -> None:
        """Note paths about to be downloaded, in one transaction: those without a file
        row go to the garbage table, which :meth:`record_file` takes them out of.

        A run killed between a file landing (or its temp being created) and its row
        being recorded thus leaves a garbage path, and a later collection removes the
        file and the temps beside it unless a sync has adopted it meanwhile. A path
        with a row is left alone: it is linked, and must never be collected.
        """
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO garbage (path) SELECT ?"
                " WHERE NOT EXISTS (SELECT 1 FROM files WHERE path = ?)",
                ((p, p) for p in paths),
            )

    def forget_garbage(self, paths: Iterable[PackagePath]) -> None:
        """Drop ``paths`` from the garbage table once their files are unlinked."""
        with self._transaction() as connection:
            connection.executemany("DELETE FROM garbage WHERE path = ?", ((p,) for p in paths))

    # --- totals -----------------------------------------------------------------------

    def totals(self) -> Totals:
        """Projects, files and bytes of the committed projects.

        Read from running counters that every commit and removal updates in its own
        transaction: a few indexed rows, whatever the mirror's size.
        """
        with self._reading() as connection:
            counters = _counters(connection)
        return Totals(
            projects=counters.get("projects", 0),
            files=counters.get("files", 0),
            bytes=counters.get("bytes", 0),
        )

    def recount_totals(self) -> Totals:
        """The totals summed afresh from every project row (a full scan, for audits)."""
        with self._reading() as connection:
            projects, files, total_bytes = connection.execute(
                "SELECT count(*), coalesce(sum(file_count), 0), coalesce(sum(total_bytes), 0)"
                " FROM projects"
            ).fetchone()
        return Totals(projects=int(projects), files=int(files), bytes=int(total_bytes))

    def set_totals(self, totals: Totals) -> None:
        """Overwrite the running counters (after an audit found them drifted)."""
        with self._transaction() as connection:
            connection.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [
                    ("projects", totals.projects),
                    ("files", totals.files),
                    ("bytes", totals.bytes),
                ],
            )


def _sidecar(path: str) -> PackagePath:
    """The PEP 658 ``.metadata`` path of the file at ``path``."""
    return PackagePath(f"{path}.metadata")


def _record_file(connection: sqlite3.Connection, stored: StoredFile) -> None:
    """Upsert one file row inside the caller's transaction (see ``record_file``)."""
    old = connection.execute(
        "SELECT metadata_sha256, provenance_sha256 FROM files WHERE path = ?", (stored.path,)
    ).fetchone()
    connection.execute(
        f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 (constant)
        " ON CONFLICT (path) DO UPDATE SET project = excluded.project,"
        " filename = excluded.filename, size = excluded.size,"
        " sha256 = excluded.sha256, metadata_sha256 = excluded.metadata_sha256,"
        " metadata_size = excluded.metadata_size,"
        " provenance_sha256 = excluded.provenance_sha256,"
        " provenance_size = excluded.provenance_size",
        (
            stored.path,
            stored.project,
            stored.filename,
            stored.size,
            stored.sha256,
            stored.metadata_sha256,
            stored.metadata_size,
            stored.provenance_sha256,
            stored.provenance_size,
        ),
    )
    connection.execute("DELETE FROM garbage WHERE path = ?", (stored.path,))
    for position, (sidecar, now_sha256) in enumerate(
        (
            (_sidecar(stored.path), stored.metadata_sha256),
            (provenance_path(stored.path), stored.provenance_sha256),
        )
    ):
        if now_sha256 is not None:
            connection.execute("DELETE FROM garbage WHERE path = ?", (sidecar,))
        elif old is not None and old[position] is not None:
            connection.execute("INSERT OR IGNORE INTO garbage (path) VALUES (?)", (sidecar,))


def _drop_files(
    connection: sqlite3.Connection,
    rows: Sequence[tuple[str, str | None, str | None]],
    *,
    not_before: float,
) -> list[PackagePath]:
    """Delete the file rows ``(path, metadata_sha256, provenance_sha256)`` and put their
    paths and sidecars in the garbage table, to be unlinked from ``not_before`` on;
    return those paths."""
    garbage: list[PackagePath] = []
    for path, metadata_sha256, provenance_sha256 in rows:
        garbage.append(PackagePath(path))
        if metadata_sha256 is not None:
            garbage.append(_sidecar(path))
        if provenance_sha256 is not None:
            garbage.append(provenance_path(PackagePath(path)))
    connection.executemany("DELETE FROM files WHERE path = ?", ((row[0],) for row in rows))
    connection.executemany(
        "INSERT INTO garbage (path, not_before) VALUES (?, ?)"
        " ON CONFLICT (path) DO UPDATE SET not_before = excluded.not_before",
        ((p, not_before) for p in garbage),
    )
    return garbage


def make_garbage_due(connection: sqlite3.Connection, paths: Iterable[str]) -> list[PackagePath]:
    """Inside the caller's transaction, make those of ``paths`` that wait in the garbage
    table (retained for ``keep-removed``) due for unlinking now; return them."""
    due: list[PackagePath] = []
    for path in paths:
        if connection.execute("UPDATE garbage SET not_before = 0 WHERE path = ?", (path,)).rowcount:
            due.append(PackagePath(path))
    return due


def _counters(connection: sqlite3.Connection) -> dict[str, int]:
    return {str(name): int(value) for name, value in connection.execute("SELECT * FROM counters")}


def _add_project_to_counters(connection: sqlite3.Connection, name: str, *, sign: int) -> None:
    """Add (``sign=1``) or take away (``sign=-1``) project ``name``'s row, when it has
    one, to or from the running counters; called inside the caller's transaction
    around the change of the row."""
    row = connection.execute(
        "SELECT file_count, total_bytes FROM projects WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return
    connection.executemany(
        "UPDATE counters SET value = value + ? WHERE name = ?",
        [(sign, "projects"), (sign * row[0], "files"), (sign * row[1], "bytes")],
    )


def _project_row(row: tuple[str, str, int, str, int, int]) -> ProjectRow:
    name, display_name, serial, status, file_count, total_bytes = row
    return ProjectRow(
        name=NormalizedName(name),
        display_name=display_name,
        serial=Serial(serial),
        status=status,
        file_count=file_count,
        total_bytes=total_bytes,
    )


_FileRow = tuple[str, str, str, int, str, str | None, int | None, str | None, int | None]


def _stored_file(row: _FileRow) -> StoredFile:
    path, project, filename, size, sha256 = row[:5]
    metadata_sha256, metadata_size, provenance_sha256, provenance_size = row[5:]
    return StoredFile(
        path=PackagePath(path),
        project=NormalizedName(project),
        filename=filename,
        size=size,
        sha256=sha256,
        metadata_sha256=metadata_sha256,
        metadata_size=metadata_size,
        provenance_sha256=provenance_sha256,
        provenance_size=provenance_size,
    )
