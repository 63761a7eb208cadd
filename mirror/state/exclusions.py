"""The state store's exclusions: the projects ``mirror delete`` took out of the mirror
and keeps out, whatever upstream does, until the operator lifts them.

:meth:`Exclusions.exclude` records them first, before anything is deleted: from that
transaction on no change queues them (:meth:`~mirror.state.StateStore.enqueue` leaves
them out, reading this table in its own transaction) and a run finishes the removal
of one a killed ``mirror delete`` left held (:meth:`Exclusions.held_exclusions`).
The same transaction forgets the projects' file history, so that no past view of the
index lists a file the deletion unlinks, and makes their retained files
(``keep-removed``) due for unlinking now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from packaging.utils import NormalizedName

from mirror.models import PackagePath
from mirror.state.core import StoreCore
from mirror.state.inventory import make_garbage_due
from mirror.state.queue import drop_todo
from mirror.state.records import Exclusion
from mirror.state.timeline import forget_history


class Exclusions(StoreCore):
    """The ``excluded`` table: one row per project kept out of the mirror."""

    def exclude(
        self, names: Mapping[NormalizedName, str], *, reason: str, now: float
    ) -> list[PackagePath]:
        """Keep ``names`` (``{project: display name}``) out of the mirror from ``now``
        on, for ``reason``, in one transaction: their todo items go, their file
        history is forgotten and the garbage paths of their retained files are due
        at once. Returns those paths (to unlink). A project already excluded keeps
        its first row."""
        with self._transaction() as connection:
            connection.executemany(
                "INSERT INTO excluded (name, display_name, since, reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                ((name, shown, now, reason) for name, shown in names.items()),
            )
            due: list[PackagePath] = []
            for name in names:
                drop_todo(connection, name)
                due.extend(make_garbage_due(connection, forget_history(connection, name)))
        return due

    def lift_exclusions(self, names: Iterable[NormalizedName]) -> list[NormalizedName]:
        """Let ``names`` back into the mirror; returns those that were excluded."""
        lifted: list[NormalizedName] = []
        with self._transaction() as connection:
            for name in names:
                if connection.execute("DELETE FROM excluded WHERE name = ?", (name,)).rowcount:
                    lifted.append(name)
        return lifted

    def exclusions(self) -> list[Exclusion]:
        """Every excluded project, by name."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT name, display_name, since, reason FROM excluded ORDER BY name"
            ).fetchall()
        return [
            Exclusion(name=NormalizedName(name), display_name=shown, since=since, reason=reason)
            for name, shown, since, reason in rows
        ]

    def excluded_names(self) -> frozenset[NormalizedName]:
        """The names of the excluded projects."""
        with self._reading() as connection:
            rows = connection.execute("SELECT name FROM excluded").fetchall()
        return frozenset(NormalizedName(row[0]) for row in rows)

    def held_exclusions(self) -> list[NormalizedName]:
        """Excluded projects the mirror still holds (a ``mirror delete`` stopped
        before their removal), by name."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT e.name FROM excluded AS e JOIN projects AS p ON p.name = e.name"
                " ORDER BY e.name"
            ).fetchall()
        return [NormalizedName(row[0]) for row in rows]
