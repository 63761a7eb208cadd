"""The state store's todo / retry queue: the projects the mirror still has to bring up
to a serial, when each is next due, and how often each has failed.

:meth:`TodoQueue.enqueue` advances the mirror serial in the transaction that queues
the changes, so every change up to the mirror serial is always applied or queued.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Iterator, Mapping

from packaging.utils import NormalizedName

from mirror.models import Serial
from mirror.state.core import StoreCore, put_meta
from mirror.state.keys import SERIAL_KEY
from mirror.state.records import TodoItem

logger = logging.getLogger(__name__)

_DUE_PAGE_ROWS = 5_000

_COLUMNS = "name, serial, display_name, attempts, next_attempt, last_error, gone"


class TodoQueue(StoreCore):
    """The ``todo`` table: one item per project still owed, with its retry state."""

    def enqueue(
        self,
        changes: Mapping[NormalizedName, Serial],
        *,
        display_names: Mapping[NormalizedName, str] | None = None,
        gone: Collection[NormalizedName] = (),
        mirror_serial: Serial | None = None,
        now: float,
    ) -> None:
        """Queue ``changes`` and advance the mirror serial, in one transaction.

        Each project's todo serial becomes the larger of the queued and the new one,
        and the item is due at ``now`` (its attempt count and last error are kept).
        A project in ``gone`` (upstream confirmed its removal) is marked so; a change
        queued later at a higher serial (the project made again) clears the mark.
        Then, when ``mirror_serial`` is given, the mirror serial is set to it. Because
        both happen or neither does, every change up to the mirror serial is always
        applied or queued. Projects ``mirror delete`` keeps out
        (:mod:`~mirror.state.exclusions`) are left out.
        """
        names = display_names or {}
        with self._transaction() as connection:
            excluded = _excluded(connection)
            if excluded:
                changes = {name: s for name, s in changes.items() if name not in excluded}
            # The SET expressions read the row as it was before this update.
            connection.executemany(
                "INSERT INTO todo"
                " (name, serial, display_name, attempts, next_attempt, last_error, gone)"
                " VALUES (?, ?, ?, 0, ?, NULL, ?)"
                " ON CONFLICT (name) DO UPDATE SET serial = max(todo.serial, excluded.serial),"
                " display_name = coalesce(excluded.display_name, todo.display_name),"
                " next_attempt = excluded.next_attempt,"
                " gone = CASE WHEN excluded.gone THEN 1"
                " WHEN excluded.serial > todo.serial THEN 0 ELSE todo.gone END",
                (
                    (name, serial, names.get(name), now, name in gone)
                    for name, serial in changes.items()
                ),
            )
            if mirror_serial is not None:
                put_meta(connection, SERIAL_KEY, str(int(mirror_serial)))
        logger.debug("queued %d changes; mirror serial %s", len(changes), mirror_serial)

    def due(self, now: float, *, after: str = "", limit: int | None = None) -> list[TodoItem]:
        """Todo items whose next attempt is at or before ``now``, ordered by name,
        those after the name ``after`` only, at most ``limit`` of them."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM todo"  # noqa: S608  # constant column list
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
                f"SELECT {_COLUMNS} FROM todo WHERE name = ?",  # noqa: S608  # constant
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
                f"SELECT {_COLUMNS} FROM todo WHERE name = ?",  # noqa: S608  # constant
                (name,),
            ).fetchone()
            if row is None:
                raise KeyError(name)
        return _todo_item(row)

    def failures(self) -> list[TodoItem]:
        """Todo items that have failed at least once, ordered by name."""
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM todo"  # noqa: S608  # constant column list
                " WHERE attempts > 0 ORDER BY name"
            ).fetchall()
        return [_todo_item(row) for row in rows]


def settle_todo(connection: sqlite3.Connection, name: NormalizedName, serial: Serial) -> None:
    """Inside the caller's transaction, drop the todo item of ``name`` once the project
    is committed at ``serial``, unless it asks for a newer serial (a change queued
    meanwhile must survive)."""
    connection.execute("DELETE FROM todo WHERE name = ? AND serial <= ?", (name, serial))


def drop_todo(connection: sqlite3.Connection, name: NormalizedName) -> None:
    """Inside the caller's transaction, drop the todo item of ``name`` (a project
    removed from the mirror)."""
    connection.execute("DELETE FROM todo WHERE name = ?", (name,))


def _excluded(connection: sqlite3.Connection) -> frozenset[str]:
    """The projects kept out of the queue: the ``excluded`` table, read in the
    caller's transaction (its writes are :mod:`mirror.state.exclusions`')."""
    return frozenset(row[0] for row in connection.execute("SELECT name FROM excluded"))


def _todo_item(row: tuple[str, int, str | None, int, float, str | None, int]) -> TodoItem:
    name, serial, display_name, attempts, next_attempt, last_error, gone = row
    return TodoItem(
        name=NormalizedName(name),
        serial=Serial(serial),
        display_name=display_name,
        attempts=attempts,
        next_attempt=next_attempt,
        last_error=last_error,
        gone=bool(gone),
    )
