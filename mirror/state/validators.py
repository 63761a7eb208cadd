"""The state store's page validators: what the root-index follower last saw of each
project upstream lists (``upstream-api = simple``), so that the next run queues only
the projects whose serial or ETag changed (:mod:`mirror.rootdiff` compares)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from packaging.utils import NormalizedName

from mirror.models import PageValidator, Serial
from mirror.state.core import StoreCore


class PageValidators(StoreCore):
    """The ``page_validators`` table."""

    def page_validators(self) -> dict[NormalizedName, PageValidator]:
        """Every recorded validator, by project."""
        with self._reading() as connection:
            rows = connection.execute("SELECT name, etag, serial FROM page_validators").fetchall()
        return {
            NormalizedName(name): PageValidator(
                etag=etag, serial=None if serial is None else Serial(serial)
            )
            for name, etag, serial in rows
        }

    def record_page_validators(
        self,
        record: Mapping[NormalizedName, PageValidator],
        *,
        forget: Iterable[NormalizedName] = (),
    ) -> None:
        """Record (replace) the validators of ``record`` and drop those of ``forget``,
        in one transaction."""
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO page_validators (name, etag, serial) VALUES (?, ?, ?)",
                ((name, v.etag, v.serial) for name, v in record.items()),
            )
            connection.executemany(
                "DELETE FROM page_validators WHERE name = ?", ((name,) for name in forget)
            )
