"""The state store: what the mirror holds and what it still owes, in one SQLite file.

The store keeps the mirror serial, a row per committed project (serial, status, file
count, bytes), a row per verified file on disk, the todo / retry queue and the garbage
list (paths dropped from the state whose files may still be on disk). It is what makes
the mirror cheap: size and serial are known without walking the tree, the root index
comes from the project rows, an interrupted run resumes from the todo table and a
failing project backs off on its own.

Order of effects (``docs/architecture.md``): a file row is recorded only once the file
is verified on disk; :meth:`StateStore.commit_project` moves the rows of files a project
no longer links to the garbage table in the same transaction that updates the project
row; the caller unlinks the garbage files and then forgets them. A crash at any point
leaves at worst garbage rows (or orphan files) that a later run collects, never a row
without its file.

The store is synchronous: the sync engine calls it from a worker thread. One
connection is shared by every thread and guarded by a lock, so calls never interleave;
every write is one short ``BEGIN IMMEDIATE`` transaction. Every ``sqlite3.Error`` is
raised as :class:`~mirror.errors.StateError`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, cast

from packaging.utils import NormalizedName

from mirror.errors import StateError
from mirror.models import ListingRow, PackagePath, Serial

UNFINISHED_META_KEY = "run_unfinished"
"""State meta key set (non-empty) while a run is under way and cleared once it has
written the root index and collected its garbage; found set, the last run was killed
(or failed) part-way, or ``mirror verify --repair`` asks for the root index again."""

ROOT_HTML_META_KEY = "root_html_current"
"""State meta key holding the simple API version of the HTML root index on disk while
that page names exactly the committed projects under their display names. A commit
that adds a project or changes a display name, and a removal, clear it in their own
transaction; a sync sets it once it has rewritten the page. The HTML root carries no
serial, so a run that only brings new releases of known projects leaves it alone."""

logger = logging.getLogger(__name__)

STATE_NAME = "mirror.db"
"""The state store's file name inside the mirror directory."""

SCHEMA_VERSION = 2
"""The schema version this code writes; older stores are migrated, newer ones refused."""

_DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE projects (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    serial       INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active',
    file_count   INTEGER NOT NULL,
    total_bytes  INTEGER NOT NULL
) WITHOUT ROWID;

-- No foreign key to projects: files are recorded as they land, before the project's
-- first commit creates its row.
CREATE TABLE files (
    path            TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    filename        TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    metadata_sha256 TEXT,
    metadata_size   INTEGER
);
CREATE INDEX files_project ON files (project);

CREATE TABLE todo (
    name         TEXT PRIMARY KEY,
    serial       INTEGER NOT NULL,
    display_name TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT
) WITHOUT ROWID;
CREATE INDEX todo_next_attempt ON todo (next_attempt);

CREATE TABLE garbage (
    path TEXT PRIMARY KEY
) WITHOUT ROWID;
"""
"""Schema version 1, the whole schema in one place."""

_DDL_2 = """
-- Running totals of the committed projects, kept in the transactions that change
-- project rows, so that size and counts are one indexed read on any mirror size.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) SELECT 'projects', count(*) FROM projects;
INSERT INTO counters (name, value) SELECT 'files', coalesce(sum(file_count), 0) FROM projects;
INSERT INTO counters (name, value) SELECT 'bytes', coalesce(sum(total_bytes), 0) FROM projects;
INSERT INTO counters (name, value) VALUES ('downloaded_bytes', 0);

-- One row per finished sync run: its result and a sample of the mirror's size.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    started          REAL NOT NULL,
    finished         REAL NOT NULL,
    ok               INTEGER NOT NULL,
    projects_synced  INTEGER NOT NULL,
    projects_removed INTEGER NOT NULL,
    projects_failed  INTEGER NOT NULL,
    files_downloaded INTEGER NOT NULL,
    bytes_downloaded INTEGER NOT NULL,
    files_deleted    INTEGER NOT NULL,
    serial           INTEGER,
    upstream_serial  INTEGER,
    projects         INTEGER NOT NULL,
    files            INTEGER NOT NULL,
    bytes            INTEGER NOT NULL
);
"""
"""Schema version 2: incremental totals and the run history (data of version 1 kept)."""

# Migration to version N runs _MIGRATIONS[N]. An empty database is version 0.
_MIGRATIONS: Mapping[int, str] = {1: _DDL, 2: _DDL_2}

_SCHEMA_KEY = "schema_version"
_SERIAL_KEY = "mirror_serial"
_RESERVED_KEYS = frozenset({_SCHEMA_KEY, _SERIAL_KEY})

# Rows per page when streaming projects: big enough to amortise the query, small
# enough that a 600k-project root index never holds more than a page in memory.
_PAGE_ROWS = 1000
# The root index reads every project: larger pages, fewer queries.
_LISTING_PAGE_ROWS = 10_000
_DUE_PAGE_ROWS = 5_000

# Seconds a statement waits for another process (e.g. a status command) to release
# the database before failing.
_BUSY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """A distribution file verified on disk, and its PEP 658 ``.metadata`` sidecar.

    ``metadata_sha256`` and ``metadata_size`` are set together, when the sidecar
    (``<path>.metadata``) is on disk and verified, and are both None otherwise.
    """

    path: PackagePath
    project: NormalizedName
    filename: str
    size: int
    sha256: str
    metadata_sha256: str | None = None
    metadata_size: int | None = None

    def __post_init__(self) -> None:
        if (self.metadata_sha256 is None) != (self.metadata_size is None):
            raise ValueError(f"{self.path}: metadata_sha256 and metadata_size must be set together")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectRow:
    """A committed project."""

    name: NormalizedName
    display_name: str
    serial: Serial
    status: str
    """PEP 792 status: ``active`` unless upstream says otherwise."""
    file_count: int
    """Distribution files (``.metadata`` sidecars not counted)."""
    total_bytes: int
    """Bytes of the files and their ``.metadata`` sidecars."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TodoItem:
    """A project the mirror still has to bring up to ``serial``."""

    name: NormalizedName
    serial: Serial
    """The serial the project must reach."""
    display_name: str | None
    """The display name, when the change source knew it (a listing); else None."""
    attempts: int
    """Failed attempts so far."""
    next_attempt: float
    """Unix time before which the project is not retried."""
    last_error: str | None

    @classmethod
    def fresh(cls, name: NormalizedName) -> Self:
        """An item for ``name`` named explicitly rather than read from the queue: due at
        once, never tried, with no serial to reach (``Serial(0)``: whatever upstream
        serves now)."""
        return cls(
            name=name,
            serial=Serial(0),
            display_name=None,
            attempts=0,
            next_attempt=0.0,
            last_error=None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """What the committed projects add up to."""

    projects: int
    files: int
    bytes: int
    """Bytes of the files and their ``.metadata`` sidecars."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One finished sync run: what it did, and the mirror's size when it ended."""

    started: float
    """Unix time the run started."""
    finished: float
    """Unix time the run ended."""
    ok: bool
    """True when every project the run attempted is in step."""
    projects_synced: int
    projects_removed: int
    projects_failed: int
    files_downloaded: int
    bytes_downloaded: int
    files_deleted: int
    serial: Serial | None
    """The mirror serial at the end of the run."""
    upstream_serial: Serial | None
    """Upstream's serial as the run saw it; None when the run did not ask
    (``--project`` runs)."""
    totals: Totals
    """The committed projects' totals at the end of the run."""


class StateStore:
    """The mirror's SQLite state store. Open it with :meth:`open`; close it when done.

    Safe to call from several threads (calls are serialised). Every method raises
    StateError when SQLite fails; a failed write leaves nothing of itself behind.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        """Wrap an open connection; use :meth:`open` instead."""
        self._path = path
        self._connection = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> StateStore:
        """Open the store at ``path``, creating the file and schema when needed.

        Raises StateError when the file is not an SQLite database, is not a mirror
        state store, or was written by a newer version of mirror.
        """
        try:
            connection = sqlite3.connect(
                path,
                timeout=_BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # shared by threads, serialised by our lock
            )
        except sqlite3.Error as exc:
            raise StateError(f"state store {path}: {exc}") from exc
        store = cls(path, connection)
        try:
            store._prepare()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_read_only(cls, path: Path) -> StateStore:
        """Open an existing store at ``path`` for reading only (a status page, a
        process without write access); nothing is created or migrated.

        Raises StateError when the file is missing, is not a mirror state store, or
        has another schema version than this code's (a sync migrates it).
        """
        try:
            connection = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=_BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StateError(f"state store {path}: {exc}") from exc
        store = cls(path, connection)
        try:
            with store._reading() as reading:
                version = store._schema_version(reading)
        except BaseException:
            store.close()
            raise
        if version != SCHEMA_VERSION:
            store.close()
            raise StateError(
                f"state store {path} has schema version {version}, this mirror reads "
                f"version {SCHEMA_VERSION}: run `mirror sync` with this version first"
            )
        return store

    def close(self) -> None:
        """Close the connection. Later calls raise StateError; closing twice is fine."""
        with self._lock, self._translated():
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- mirror serial and meta keys -------------------------------------------------

    def mirror_serial(self) -> Serial | None:
        """The serial every change up to which is applied or queued; None before the
        first sync."""
        value = self.get_meta(_SERIAL_KEY)
        return None if value is None else Serial(int(value))

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        with self._reading() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a small string under ``key``.

        Raises ValueError for the keys the store keeps itself (schema version, mirror
        serial): the serial moves only with :meth:`enqueue`.
        """
        if key in _RESERVED_KEYS:
            raise ValueError(f"meta key {key!r} is reserved for the state store")
        with self._transaction() as connection:
            _set_meta(connection, key, value)

    # --- projects and files ----------------------------------------------------------

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
        """Every committed project's name, display name and serial, ordered by name,
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
                        "SELECT name, display_name, serial FROM projects"
                        " WHERE name > ? ORDER BY name LIMIT ?",
                        (after, _LISTING_PAGE_ROWS),
                    ).fetchall(),
                )
            yield rows
            if len(rows) < _LISTING_PAGE_ROWS:
                return
            after = rows[-1][0]

    def project_files(self, name: NormalizedName) -> dict[PackagePath, StoredFile]:
        """Every recorded file of ``name`` (committed or not yet), by path."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT path, project, filename, size, sha256, metadata_sha256, metadata_size"
                " FROM files WHERE project = ?",
                (name,),
            ).fetchall()
        files = (_stored_file(row) for row in rows)
        return {stored.path: stored for stored in files}

    def file(self, path: PackagePath) -> StoredFile | None:
        """The recorded file at ``path``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT path, project, filename, size, sha256, metadata_sha256, metadata_size"
                " FROM files WHERE path = ?",
                (path,),
            ).fetchone()
        return None if row is None else _stored_file(row)

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

    def commit_project(
        self,
        *,
        name: NormalizedName,
        display_name: str,
        serial: Serial,
        status: str,
        keep: Collection[PackagePath],
    ) -> list[PackagePath]:
        """Commit ``name`` at ``serial`` once its pages are written, in one transaction.

        File rows of ``name`` whose path is not in ``keep`` are deleted and their paths
        (with their ``.metadata`` sidecars) put in the garbage table; the project row
        is upserted with the count and bytes of the remaining file rows; the todo
        row goes unless it asks for a newer serial than ``serial`` (a change queued
        meanwhile must survive). Returns the garbage paths this commit added.
        """
        kept = set(keep)
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT path, metadata_sha256 FROM files WHERE project = ?", (name,)
            ).fetchall()
            garbage = _drop_files(connection, [row for row in rows if row[0] not in kept])
            shown = connection.execute(
                "SELECT display_name FROM projects WHERE name = ?", (name,)
            ).fetchone()
            if shown is None or shown[0] != display_name:
                _set_meta(connection, ROOT_HTML_META_KEY, "")
            file_count, total_bytes = connection.execute(
                "SELECT count(*), coalesce(sum(size + coalesce(metadata_size, 0)), 0)"
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
            connection.execute("DELETE FROM todo WHERE name = ? AND serial <= ?", (name, serial))
        logger.debug(
            "committed %s at serial %d: %d files, %d bytes, %d garbage paths",
            name,
            serial,
            file_count,
            total_bytes,
            len(garbage),
        )
        return garbage

    def remove_project(self, name: NormalizedName) -> list[PackagePath]:
        """Forget ``name`` (gone upstream) in one transaction: its project row, file
        rows (paths and sidecars to the garbage table) and todo row. Returns the
        garbage paths this added."""
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT path, metadata_sha256 FROM files WHERE project = ?", (name,)
            ).fetchall()
            garbage = _drop_files(connection, rows)
            _add_project_to_counters(connection, name, sign=-1)
            if connection.execute("DELETE FROM projects WHERE name = ?", (name,)).rowcount:
                _set_meta(connection, ROOT_HTML_META_KEY, "")
            connection.execute("DELETE FROM todo WHERE name = ?", (name,))
        logger.debug("removed %s: %d garbage paths", name, len(garbage))
        return garbage

    def garbage(self) -> list[PackagePath]:
        """Paths no longer in the state whose files may still be on disk, sorted."""
        with self._reading() as connection:
            rows = connection.execute("SELECT path FROM garbage ORDER BY path").fetchall()
        return [PackagePath(row[0]) for row in rows]

    def forget_garbage(self, paths: Iterable[PackagePath]) -> None:
        """Drop ``paths`` from the garbage table once their files are unlinked."""
        with self._transaction() as connection:
            connection.executemany("DELETE FROM garbage WHERE path = ?", ((p,) for p in paths))

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

    def forget_files(self, paths: Iterable[PackagePath]) -> list[PackagePath]:
        """Drop the file rows at ``paths`` (files found missing or corrupt) in one
        transaction, their paths and sidecars going to the garbage table; return those
        garbage paths. Their projects' rows keep their counts until their next commit."""
        with self._transaction() as connection:
            rows = [
                row
                for path in paths
                for row in connection.execute(
                    "SELECT path, metadata_sha256 FROM files WHERE path = ?", (path,)
                )
            ]
            return _drop_files(connection, rows)

    # --- todo / retry queue ----------------------------------------------------------

    def enqueue(
        self,
        changes: Mapping[NormalizedName, Serial],
        *,
        display_names: Mapping[NormalizedName, str] | None = None,
        mirror_serial: Serial | None = None,
        now: float,
    ) -> None:
        """Queue ``changes`` and advance the mirror serial, in one transaction.

        Each project's todo serial becomes the larger of the queued and the new one,
        and the item is due at ``now`` (its attempt count and last error are kept).
        Then, when ``mirror_serial`` is given, the mirror serial is set to it. Because
        both happen or neither does, every change up to the mirror serial is always
        applied or queued.
        """
        names = display_names or {}
        with self._transaction() as connection:
            connection.executemany(
                "INSERT INTO todo"
                " (name, serial, display_name, attempts, next_attempt, last_error)"
                " VALUES (?, ?, ?, 0, ?, NULL)"
                " ON CONFLICT (name) DO UPDATE SET serial = max(todo.serial, excluded.serial),"
                " display_name = coalesce(excluded.display_name, todo.display_name),"
                " next_attempt = excluded.next_attempt",
                ((name, serial, names.get(name), now) for name, serial in changes.items()),
            )
            if mirror_serial is not None:
                _set_meta(connection, _SERIAL_KEY, str(int(mirror_serial)))
        logger.debug("queued %d changes; mirror serial %s", len(changes), mirror_serial)

    def due(self, now: float, *, after: str = "", limit: int | None = None) -> list[TodoItem]:
        """Todo items whose next attempt is at or before ``now``, ordered by name,
        those after the name ``after`` only, at most ``limit`` of them."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT name, serial, display_name, attempts, next_attempt, last_error FROM todo"
                " WHERE next_attempt <= ? AND name > ? ORDER BY name LIMIT ?",
                (now, after, -1 if limit is None else limit),  # LIMIT -1: no limit
            ).fetchall()
        return [_todo_item(row) for row in rows]

    def due_pages(self, now: float) -> Iterator[list[TodoItem]]:
        """:meth:`due` a page of :data:`_DUE_PAGE_ROWS` items at a time, each page read
        when the one before is taken: a first sync's 600,000 items would be ~160 MB
        as one list. Items that leave the queue meanwhile never disturb the order."""
        after = ""
        while page := self.due(now, after=after, limit=_DUE_PAGE_ROWS):
            yield page
            after = page[-1].name

    def due_count(self, now: float) -> int:
        """How many todo items are due at ``now``."""
        with self._reading() as connection:
            (count,) = connection.execute(
                "SELECT count(*) FROM todo WHERE next_attempt <= ?", (now,)
            ).fetchone()
        return int(count)

    def todo_count(self) -> int:
        """How many projects are queued, due or backing off."""
        with self._reading() as connection:
            (count,) = connection.execute("SELECT count(*) FROM todo").fetchone()
        return int(count)

    def todo_item(self, name: NormalizedName) -> TodoItem | None:
        """The todo item of ``name``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT name, serial, display_name, attempts, next_attempt, last_error"
                " FROM todo WHERE name = ?",
                (name,),
            ).fetchone()
        return None if row is None else _todo_item(row)

    def record_failure(self, name: NormalizedName, *, error: str, next_attempt: float) -> TodoItem:
        """Count a failed attempt at ``name``: attempts + 1, ``error`` kept, not due
        before ``next_attempt``. Returns the updated item.

        Raises KeyError when ``name`` has no todo item.
        """
        with self._transaction() as connection:
            connection.execute(
                "UPDATE todo SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
                " WHERE name = ?",
                (error, next_attempt, name),
            )
            row = connection.execute(
                "SELECT name, serial, display_name, attempts, next_attempt, last_error"
                " FROM todo WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                raise KeyError(name)
        return _todo_item(row)

    def failures(self) -> list[TodoItem]:
        """Todo items that have failed at least once, ordered by name."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT name, serial, display_name, attempts, next_attempt, last_error"
                " FROM todo WHERE attempts > 0 ORDER BY name"
            ).fetchall()
        return [_todo_item(row) for row in rows]

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

    def downloaded_bytes_total(self) -> int:
        """Bytes downloaded by every recorded run, added up."""
        with self._reading() as connection:
            return _counters(connection).get("downloaded_bytes", 0)

    def iter_files(self) -> Iterator[StoredFile]:
        """Every recorded file, ordered by path, read a page at a time (as
        :meth:`iter_projects`)."""
        after = ""
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    "SELECT path, project, filename, size, sha256, metadata_sha256,"
                    " metadata_size FROM files WHERE path > ? ORDER BY path LIMIT ?",
                    (after, _PAGE_ROWS),
                ).fetchall()
            for row in rows:
                yield _stored_file(row)
            if len(rows) < _PAGE_ROWS:
                return
            after = rows[-1][0]

    def is_garbage(self, path: str) -> bool:
        """Whether ``path`` waits in the garbage table to be unlinked."""
        with self._reading() as connection:
            row = connection.execute("SELECT 1 FROM garbage WHERE path = ?", (path,)).fetchone()
        return row is not None

    # --- run history -----------------------------------------------------------------

    def record_run(self, run: RunRecord) -> None:
        """Append a finished run to the history and add its downloads to the running
        total, in one transaction."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO runs (started, finished, ok, projects_synced, projects_removed,"
                " projects_failed, files_downloaded, bytes_downloaded, files_deleted, serial,"
                " upstream_serial, projects, files, bytes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.started,
                    run.finished,
                    int(run.ok),
                    run.projects_synced,
                    run.projects_removed,
                    run.projects_failed,
                    run.files_downloaded,
                    run.bytes_downloaded,
                    run.files_deleted,
                    run.serial,
                    run.upstream_serial,
                    run.totals.projects,
                    run.totals.files,
                    run.totals.bytes,
                ),
            )
            connection.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'downloaded_bytes'",
                (run.bytes_downloaded,),
            )

    def runs(self, *, limit: int | None = None) -> list[RunRecord]:
        """The last ``limit`` runs (all when None), oldest first."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?",  # noqa: S608 (constant)
                (-1 if limit is None else limit,),
            ).fetchall()
        return [_run_record(row) for row in reversed(rows)]

    def last_run(self, *, ok: bool | None = None) -> RunRecord | None:
        """The newest run (the newest successful one with ``ok=True``), or None."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 (constant)
        if ok is not None:
            query += f" WHERE ok = {int(ok)}"
        with self._reading() as connection:
            row = connection.execute(query + " ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _run_record(row)

    def last_upstream_serial(self) -> Serial | None:
        """Upstream's serial as seen by the newest run that asked, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT upstream_serial FROM runs WHERE upstream_serial IS NOT NULL"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else Serial(row[0])

    # --- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(f"state store {self._path}: {exc}") from exc

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for one read; each statement sees one consistent snapshot."""
        with self._lock, self._translated():
            yield self._connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, committed when the block ends
        and rolled back when it raises."""
        with self._lock, self._translated():
            connection = self._connection
            # IMMEDIATE takes the write lock up front, so a transaction that has read
            # never fails to upgrade half-way.
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                # The original error is the one worth reporting; ROLLBACK can only fail
                # when SQLite already rolled back on its own.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise

    def _prepare(self) -> None:
        """Set the connection up and bring the schema to SCHEMA_VERSION."""
        with self._lock, self._translated():
            connection = self._connection
            # PRAGMAs first: journal_mode and foreign_keys cannot change inside a
            # transaction. On a file that is not a database this is where it fails.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
        with self._transaction() as connection:
            version = self._schema_version(connection)
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state store {self._path} has schema version {version}, but this "
                    f"mirror knows only up to {SCHEMA_VERSION}: it was written by a "
                    "newer mirror; upgrade mirror or use another mirror directory"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                # Statement by statement: executescript() would COMMIT first and
                # break the transaction that makes the migration atomic.
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                _set_meta(connection, _SCHEMA_KEY, str(target))
                logger.info("state store %s: schema version %d", self._path, target)

    def _schema_version(self, connection: sqlite3.Connection) -> int:
        """The schema version of the database; 0 for an empty one."""
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return 0
        row = None
        if "meta" in tables:
            row = connection.execute(
                "SELECT value FROM meta WHERE key = ?", (_SCHEMA_KEY,)
            ).fetchone()
        if row is None:
            raise StateError(f"{self._path} is an SQLite database but not a mirror state store")
        try:
            return int(row[0])
        except ValueError as exc:
            raise StateError(
                f"state store {self._path}: unreadable schema version {row[0]!r}"
            ) from exc


def _sidecar(path: str) -> PackagePath:
    """The PEP 658 ``.metadata`` path of the file at ``path``."""
    return PackagePath(f"{path}.metadata")


def _record_file(connection: sqlite3.Connection, stored: StoredFile) -> None:
    """Upsert one file row inside the caller's transaction (see ``record_file``)."""
    sidecar = _sidecar(stored.path)
    old = connection.execute(
        "SELECT metadata_sha256 FROM files WHERE path = ?", (stored.path,)
    ).fetchone()
    connection.execute(
        "INSERT INTO files"
        " (path, project, filename, size, sha256, metadata_sha256, metadata_size)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET project = excluded.project,"
        " filename = excluded.filename, size = excluded.size,"
        " sha256 = excluded.sha256, metadata_sha256 = excluded.metadata_sha256,"
        " metadata_size = excluded.metadata_size",
        (
            stored.path,
            stored.project,
            stored.filename,
            stored.size,
            stored.sha256,
            stored.metadata_sha256,
            stored.metadata_size,
        ),
    )
    connection.execute("DELETE FROM garbage WHERE path = ?", (stored.path,))
    if stored.metadata_sha256 is not None:
        connection.execute("DELETE FROM garbage WHERE path = ?", (sidecar,))
    elif old is not None and old[0] is not None:
        connection.execute("INSERT OR IGNORE INTO garbage (path) VALUES (?)", (sidecar,))


def _drop_files(
    connection: sqlite3.Connection, rows: Sequence[tuple[str, str | None]]
) -> list[PackagePath]:
    """Delete the file rows ``(path, metadata_sha256)`` and put their paths and sidecars
    in the garbage table; return those garbage paths."""
    garbage: list[PackagePath] = []
    for path, metadata_sha256 in rows:
        garbage.append(PackagePath(path))
        if metadata_sha256 is not None:
            garbage.append(_sidecar(path))
    connection.executemany("DELETE FROM files WHERE path = ?", ((row[0],) for row in rows))
    connection.executemany(
        "INSERT OR IGNORE INTO garbage (path) VALUES (?)", ((p,) for p in garbage)
    )
    return garbage


_RUN_COLUMNS = (
    "started, finished, ok, projects_synced, projects_removed, projects_failed,"
    " files_downloaded, bytes_downloaded, files_deleted, serial, upstream_serial,"
    " projects, files, bytes"
)


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


# started, finished, ok, 6 run counts, serial, upstream serial, 3 totals.
_RunRow = tuple[
    float, float, int, int, int, int, int, int, int, int | None, int | None, int, int, int
]


def _run_record(row: _RunRow) -> RunRecord:
    (
        started,
        finished,
        ok,
        synced,
        removed,
        failed,
        files_downloaded,
        bytes_downloaded,
        files_deleted,
        serial,
        upstream_serial,
        projects,
        files,
        total_bytes,
    ) = row
    return RunRecord(
        started=started,
        finished=finished,
        ok=bool(ok),
        projects_synced=synced,
        projects_removed=removed,
        projects_failed=failed,
        files_downloaded=files_downloaded,
        bytes_downloaded=bytes_downloaded,
        files_deleted=files_deleted,
        serial=None if serial is None else Serial(serial),
        upstream_serial=None if upstream_serial is None else Serial(upstream_serial),
        totals=Totals(projects=projects, files=files, bytes=total_bytes),
    )


def _set_meta(connection: sqlite3.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
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


def _stored_file(row: tuple[str, str, str, int, str, str | None, int | None]) -> StoredFile:
    path, project, filename, size, sha256, metadata_sha256, metadata_size = row
    return StoredFile(
        path=PackagePath(path),
        project=NormalizedName(project),
        filename=filename,
        size=size,
        sha256=sha256,
        metadata_sha256=metadata_sha256,
        metadata_size=metadata_size,
    )


def _todo_item(row: tuple[str, int, str | None, int, float, str | None]) -> TodoItem:
    name, serial, display_name, attempts, next_attempt, last_error = row
    return TodoItem(
        name=NormalizedName(name),
        serial=Serial(serial),
        display_name=display_name,
        attempts=attempts,
        next_attempt=next_attempt,
        last_error=last_error,
    )
