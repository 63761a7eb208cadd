"""The state store's small named values: the mirror serial, the meta keys of the run,
and typed access to the values stored as JSON (the dependency closure)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

from packaging.utils import NormalizedName

from mirror.models import Serial
from mirror.state.core import StoreCore, put_meta
from mirror.state.keys import NEEDS_META_KEY, RESERVED_KEYS, SERIAL_KEY

logger = logging.getLogger(__name__)


class Meta(StoreCore):
    """The ``meta`` table: named strings, and the typed values kept in some of them."""

    def mirror_serial(self) -> Serial | None:
        """The serial every change up to which is applied or queued; None before the
        first sync."""
        value = self.get_meta(SERIAL_KEY)
        return None if value is None else Serial(int(value))

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        with self._reading() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a small string under ``key``.

        Raises ValueError for the keys the store keeps itself (schema version, mirror
        serial): the serial moves only with :meth:`~mirror.state.StateStore.enqueue`.
        """
        if key in RESERVED_KEYS:
            raise ValueError(f"meta key {key!r} is reserved for the state store")
        with self._transaction() as connection:
            put_meta(connection, key, value)

    def dependency_needs(self) -> dict[NormalizedName, tuple[str, ...]]:
        """The dependency closure the last run stored (``{project: specifiers}``), empty
        when none is stored.

        A stored value this code cannot read counts as none, with a warning: the
        closure is derived data, found again by the run's syncs.
        """
        raw = self.get_meta(NEEDS_META_KEY)
        if raw is None:
            return {}
        try:
            loaded = json.loads(raw)
            return {NormalizedName(k): tuple(map(str, v)) for k, v in loaded.items()}
        except (ValueError, AttributeError, TypeError):
            logger.warning("ignoring an unreadable dependency closure in the state store")
            return {}

    def set_dependency_needs(self, needs: Mapping[NormalizedName, Sequence[str]]) -> None:
        """Store the dependency closure ``{project: specifiers}`` (as JSON, in its own
        transaction) for :meth:`dependency_needs` to read back."""
        self.set_meta(
            NEEDS_META_KEY, json.dumps({name: list(specs) for name, specs in needs.items()})
        )
