"""What seeds a partial mirror beyond its config: the projects ``mirror serve`` fetched
on demand (they join the allowlist's set), and the locked files upstream lacks.

Both are JSON values in the ``meta`` table (no schema change), each read-modify-written
in one transaction: the serve process adds names and counts requests while a sync
process reads them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.utils import NormalizedName

from mirror.filters.lockfiles import LockedFile
from mirror.state.core import StoreCore, put_meta
from mirror.state.keys import LOCKED_MISSING_META_KEY, ON_DEMAND_META_KEY

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemandedProject:
    """A project ``mirror serve`` added on demand: when, and how many requests it
    answered by fetching."""

    name: NormalizedName
    added: float
    """Unix time of the first on-demand request."""
    requests: int
    """Requests answered after an on-demand fetch (each waiting one counts)."""


class Seeds(StoreCore):
    """The on-demand projects and the missing locked files (``meta`` JSON values)."""

    def on_demand_projects(self) -> list[DemandedProject]:
        """The projects added on demand, by name."""
        with self._reading() as connection:
            raw = _demanded(connection)
        return [
            DemandedProject(name=name, added=added, requests=requests)
            for name, (added, requests) in sorted(raw.items())
        ]

    def on_demand_names(self) -> frozenset[NormalizedName]:
        """The names of the projects added on demand."""
        with self._reading() as connection:
            return frozenset(_demanded(connection))

    def add_on_demand(self, name: NormalizedName, *, now: float) -> None:
        """Add ``name`` to the on-demand set (no change when it is there)."""
        with self._transaction() as connection:
            demanded = _demanded(connection)
            if name not in demanded:
                demanded[name] = (now, 0)
                put_meta(connection, ON_DEMAND_META_KEY, _dumps(demanded))

    def drop_on_demand(self, name: NormalizedName) -> None:
        """Take ``name`` out of the on-demand set (upstream lacks it, or its fetch
        failed before anything was mirrored)."""
        with self._transaction() as connection:
            demanded = _demanded(connection)
            if demanded.pop(name, None) is not None:
                put_meta(connection, ON_DEMAND_META_KEY, _dumps(demanded))

    def count_on_demand_requests(self, name: NormalizedName, count: int) -> None:
        """``count`` more requests for ``name`` were answered by an on-demand fetch."""
        with self._transaction() as connection:
            demanded = _demanded(connection)
            if name in demanded:
                added, requests = demanded[name]
                demanded[name] = (added, requests + count)
                put_meta(connection, ON_DEMAND_META_KEY, _dumps(demanded))

    def missing_locked(self) -> list[LockedFile]:
        """The locked files upstream no longer had when their projects last synced."""
        with self._reading() as connection:
            raw = _missing(connection)
        return sorted(f for files in raw.values() for f in files)

    def update_missing_locked(
        self, checked: Mapping[NormalizedName, tuple[LockedFile, ...]]
    ) -> None:
        """Replace what is stored of each of ``checked``'s projects by the locked files
        its sync found missing (none: the project is dropped from the list)."""
        if not checked:
            return
        with self._transaction() as connection:
            missing = _missing(connection)
            for name, files in checked.items():
                if files:
                    missing[name] = files
                else:
                    missing.pop(name, None)
            value = {
                name: [[f.version, f.filename, f.sha256] for f in files]
                for name, files in sorted(missing.items())
            }
            put_meta(connection, LOCKED_MISSING_META_KEY, json.dumps(value))


def _meta_json(connection: sqlite3.Connection, key: str) -> object:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return {}
    try:
        return json.loads(str(row[0]))
    except ValueError:
        return None


def _demanded(connection: sqlite3.Connection) -> dict[NormalizedName, tuple[float, int]]:
    loaded = _meta_json(connection, ON_DEMAND_META_KEY)
    try:
        assert isinstance(loaded, dict)
        return {NormalizedName(k): (float(v[0]), int(v[1])) for k, v in loaded.items()}
    except (AssertionError, ValueError, TypeError, IndexError, KeyError):
        logger.warning("ignoring an unreadable on-demand project list in the state store")
        return {}


def _missing(connection: sqlite3.Connection) -> dict[NormalizedName, tuple[LockedFile, ...]]:
    loaded = _meta_json(connection, LOCKED_MISSING_META_KEY)
    try:
        assert isinstance(loaded, dict)
        return {
            NormalizedName(k): tuple(
                LockedFile(name=NormalizedName(k), version=str(v), filename=str(f), sha256=str(h))
                for v, f, h in files
            )
            for k, files in loaded.items()
        }
    except (AssertionError, ValueError, TypeError):
        # Derived data: the next sync of each locked project finds it again.
        logger.warning("ignoring an unreadable list of missing locked files in the state store")
        return {}


def _dumps(demanded: Mapping[NormalizedName, tuple[float, int]]) -> str:
    return json.dumps({name: list(value) for name, value in sorted(demanded.items())})
