"""The state store's journal: what changed in this mirror, for the mirrors that follow it.

``mirror serve`` answers PyPI's three mirroring XML-RPC methods from it
(:mod:`mirror.rpc`): each project commit that changes something and each removal
appends one row in its own transaction (:func:`journal_change`), so a row is visible
exactly when the change is. A row's serial is ``max(previous + 1, the upstream
serial committed)``: serials only grow, and a page's own ``_last-serial`` (upstream's)
never exceeds the serial the journal gave its project, which is what a follower asks
the page for (``X-PyPI-Last-Serial``).

The journal is bounded: :meth:`Journal.prune_journal` drops rows older than the
retention window, except each committed project's newest (its serial is what the
listing and the page header give), and records the newest serial it dropped as the
horizon. Changes since a serial below the horizon are refused
(:class:`~mirror.errors.JournalPrunedError`): the follower reads the full listing.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Final, Literal

from packaging.utils import NormalizedName

from mirror.errors import JournalPrunedError
from mirror.models import Serial
from mirror.state.core import StoreCore, put_meta
from mirror.state.keys import JOURNAL_HORIZON_KEY

JournalAction = Literal["create", "update", "remove project"]
"""What a row records: a project first committed, committed with a change, removed
(Warehouse's own words for the last, which followers look for)."""

JOURNAL_PAGE_ROWS: Final = 50_000
"""Rows per ``changelog_since_serial`` answer, PyPI's page size (the client asks again
from the last serial of a full page)."""

# Rows older than the cutoff, except each committed project's newest.
_PRUNABLE: Final = (
    "time < ? AND serial NOT IN (SELECT max(j.serial) FROM journal j"
    " JOIN projects p ON p.name = j.name GROUP BY j.name)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRow:
    """One row of the mirror's journal."""

    serial: Serial
    name: NormalizedName
    display_name: str
    action: JournalAction
    time: float


class Journal(StoreCore):
    """The ``journal`` table: the mirror's own changelog."""

    def journal_last_serial(self) -> Serial:
        """The newest serial the journal gave (0 when it is empty); pruning never
        lowers it."""
        with self._reading() as connection:
            return _last_serial(connection)

    def journal_since(self, serial: Serial, *, limit: int = JOURNAL_PAGE_ROWS) -> list[JournalRow]:
        """The rows after ``serial``, oldest first, at most ``limit``.

        Raises JournalPrunedError when rows after ``serial`` may have been pruned
        (``serial`` below the horizon).
        """
        with self._reading() as connection:
            horizon = _horizon(connection)
            if serial < horizon:
                raise JournalPrunedError(serial, horizon)
            rows = connection.execute(
                "SELECT serial, name, display_name, action, time FROM journal"
                " WHERE serial > ? ORDER BY serial LIMIT ?",
                (serial, limit),
            ).fetchall()
        return [
            JournalRow(
                serial=Serial(row[0]),
                name=NormalizedName(row[1]),
                display_name=row[2],
                action=row[3],
                time=row[4],
            )
            for row in rows
        ]

    def journal_listing(self) -> dict[str, Serial]:
        """Every committed project's display name with its newest journal serial."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT p.display_name, max(j.serial) FROM projects p"
                " JOIN journal j ON j.name = p.name GROUP BY p.name"
            ).fetchall()
        return {str(name): Serial(serial) for name, serial in rows}

    def journal_serial(self, name: NormalizedName) -> Serial | None:
        """The newest journal serial of the committed project ``name``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT max(j.serial) FROM journal j JOIN projects p ON p.name = j.name"
                " WHERE j.name = ?",
                (name,),
            ).fetchone()
        return None if row[0] is None else Serial(row[0])

    def prune_journal(self, *, older_than: float) -> int:
        """Drop the rows written before ``older_than`` (Unix time), except each
        committed project's newest; move the horizon up to the newest serial dropped.
        Returns how many rows went."""
        with self._transaction() as connection:
            (newest, count) = connection.execute(
                f"SELECT max(serial), count(*) FROM journal WHERE {_PRUNABLE}",  # noqa: S608 (constant)
                (older_than,),
            ).fetchone()
            if not count:
                return 0
            connection.execute(f"DELETE FROM journal WHERE {_PRUNABLE}", (older_than,))  # noqa: S608 (constant)
            put_meta(connection, JOURNAL_HORIZON_KEY, str(max(newest, _horizon(connection))))
        return int(count)


def journal_change(
    connection: sqlite3.Connection,
    *,
    name: NormalizedName,
    display_name: str,
    action: JournalAction,
    upstream_serial: Serial | None = None,
) -> Serial:
    """Append a row inside the caller's transaction (the commit or removal it records);
    return its serial: one above the newest, or ``upstream_serial`` when that is higher."""
    serial = max(_last_serial(connection) + 1, upstream_serial or 0)
    connection.execute(
        "INSERT INTO journal (serial, name, display_name, action, time) VALUES (?, ?, ?, ?, ?)",
        (serial, name, display_name, action, time.time()),
    )
    return Serial(serial)


def _last_serial(connection: sqlite3.Connection) -> Serial:
    # AUTOINCREMENT's counter keeps the highest serial ever inserted, pruned or not.
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
    return Serial(0 if row is None else int(row[0]))


def _horizon(connection: sqlite3.Connection) -> Serial:
    row = connection.execute(
        "SELECT value FROM meta WHERE key = ?", (JOURNAL_HORIZON_KEY,)
    ).fetchone()
    return Serial(0 if row is None else int(row[0]))
