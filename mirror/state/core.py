"""The state store's core: the one SQLite connection, its lock, its transactions and
its schema migrations.

:class:`StoreCore` opens (or creates and migrates) the database and gives the concern
classes built on it (:mod:`~mirror.state.meta`, :mod:`~mirror.state.inventory`,
:mod:`~mirror.state.queue`, :mod:`~mirror.state.history`) the two ways in:
:meth:`StoreCore._reading` for one read and :meth:`StoreCore._transaction` for one
write transaction. One connection is shared by every thread and guarded by a lock, so
calls never interleave; every write is one short ``BEGIN IMMEDIATE`` transaction.
Every ``sqlite3.Error`` is raised as :class:`~mirror.errors.StateError`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from mirror import layout
from mirror.errors import StateError
from mirror.state.keys import SCHEMA_KEY
from mirror.state.schema import MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

STATE_NAME = layout.STATE_NAME
"""The state store's file name inside the mirror directory (defined in mirror.layout)."""

# Seconds a statement waits for another process (e.g. a status command) to release
# the database before failing.
_BUSY_TIMEOUT_SECONDS = 30.0


class StoreCore:
    """The connection to a state store, its lock and its schema. Open it with
    :meth:`open` (or :meth:`open_read_only`); close it when done.

    Safe to call from several threads (calls are serialised). A failed write leaves
    nothing of itself behind.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        """Wrap an open connection; use :meth:`open` instead."""
        self._path = path
        self._connection = connection
        # Reentrant: the transactions of a batch take it again in the same thread.
        self._lock = threading.RLock()
        self._batch_thread: int | None = None
        """The thread inside :meth:`batch`, if any (only its transactions join it)."""

    @classmethod
    def open(cls, path: Path) -> Self:
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
    def open_read_only(cls, path: Path) -> Self:
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

    # --- the ways in, for the concern classes ----------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for one read; each statement sees one consistent snapshot."""
        with self._lock, self._translated():
            yield self._connection

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the write transactions this thread makes inside the block into one
        (a group commit): each becomes a savepoint, so one that raises undoes only
        itself, and a single COMMIT ends the block. Other threads wait meanwhile.
        Raises StateError when the commit fails: then none of them happened."""
        with self._lock, self._translated():
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            self._batch_thread = threading.get_ident()
            try:
                yield
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
            finally:
                self._batch_thread = None

    def step(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Inside :meth:`batch` (in its thread): one part of it, undone alone when the
        block raises. Elsewhere: a transaction of its own."""
        return self._transaction()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, committed when the block ends
        and rolled back when it raises (inside :meth:`batch`: a savepoint, released or
        rolled back to)."""
        if self._batch_thread == threading.get_ident():
            with self._savepoint() as connection:
                yield connection
            return
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

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        """One transaction of a batch."""
        with self._lock, self._translated():
            connection = self._connection
            if not connection.in_transaction:
                # SQLite rolled the batch back itself (a full disk): what follows must
                # not run outside it, in autocommit.
                raise sqlite3.OperationalError("the batch's transaction was rolled back")
            connection.execute("SAVEPOINT step")
            try:
                yield connection
                connection.execute("RELEASE step")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK TO step")
                    connection.execute("RELEASE step")
                raise

    # --- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(f"state store {self._path}: {exc}") from exc

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
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                put_meta(connection, SCHEMA_KEY, str(target))
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
                "SELECT value FROM meta WHERE key = ?", (SCHEMA_KEY,)
            ).fetchone()
        if row is None:
            raise StateError(f"{self._path} is an SQLite database but not a mirror state store")
        try:
            return int(row[0])
        except ValueError as exc:
            raise StateError(
                f"state store {self._path}: unreadable schema version {row[0]!r}"
            ) from exc


def put_meta(connection: sqlite3.Connection, key: str, value: str) -> None:
    """Store ``value`` under the meta ``key`` inside the caller's transaction (the one
    write of the ``meta`` table, shared by the migrations and every concern)."""
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
