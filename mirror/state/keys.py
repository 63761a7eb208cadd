"""The keys of the state store's ``meta`` table, each named and explained once.

The store keeps :data:`SCHEMA_KEY`, :data:`SERIAL_KEY` and :data:`JOURNAL_HORIZON_KEY`
itself (they are :data:`RESERVED_KEYS`); the others belong to the sync run and to ``mirror verify``,
which read and write them through :class:`~mirror.state.StateStore`.
"""

from __future__ import annotations

from typing import Final

SCHEMA_KEY: Final = "schema_version"
"""The schema version of the database (see :data:`mirror.state.schema.SCHEMA_VERSION`)."""

SERIAL_KEY: Final = "mirror_serial"
"""The mirror serial: every upstream change up to it is applied or queued. It moves
only with :meth:`~mirror.state.StateStore.enqueue`."""

JOURNAL_HORIZON_KEY: Final = "journal_horizon"
"""The newest journal serial pruned (see :meth:`~mirror.state.StateStore.prune_journal`):
the journal answers changes since any serial at or above it, and refuses older ones
(a follower then reads the full listing)."""

RESERVED_KEYS: Final = frozenset({SCHEMA_KEY, SERIAL_KEY, JOURNAL_HORIZON_KEY})
"""Keys only the store itself writes."""

UNFINISHED_META_KEY: Final = "run_unfinished"
"""Set (non-empty) while a run is under way and cleared once it has written the root
index and collected its garbage; found set, the last run was killed (or failed)
part-way, or ``mirror verify --repair`` asks for the root index again."""

ROOT_HTML_META_KEY: Final = "root_html_current"
"""The simple API version of the HTML root index on disk while that page names exactly
the committed projects under their display names. A commit that adds a project or
changes a display name, and a removal, clear it in their own transaction; a sync sets
it once it has rewritten the page. The HTML root carries no serial, so a run that only
brings new releases of known projects leaves it alone."""

RECHECK_META_KEY: Final = "last_recheck"
"""Unix time of the last full comparison of upstream's listing with the state store
(a first sync's, or a re-check's, see ``recheck-interval``)."""

FILTERS_META_KEY: Final = "filters_fingerprint"
""":attr:`~mirror.filters.FilterSet.fingerprint` of the last reconciled run."""

NEEDS_META_KEY: Final = "filters_dependencies"
"""The dependency closure, JSON ``{project: [specifiers]}``; read and written through
:meth:`~mirror.state.StateStore.dependency_needs` and
:meth:`~mirror.state.StateStore.set_dependency_needs`."""

ADOPT_PROGRESS_KEY: Final = "adopt_progress"
"""``mirror adopt``: the last project (in name order) whose chunk it finished, so an
interrupted adoption resumes after it; ``"\\x00done"`` once it finished."""

ADOPT_RECONCILE_KEY: Final = "adopt_reconcile"
"""Set by ``mirror adopt`` to bandersnatch's serial: the next sync reads upstream's full
listing besides the changelog (projects bandersnatch never removed are removed, pages
older than the listing's serial brought in step) and clears it."""

ON_DEMAND_META_KEY: Final = "on_demand_projects"
"""The projects ``mirror serve`` added on demand, JSON ``{project: [added, requests]}``
(:class:`~mirror.state.seeds.Seeds`); they join the allowlist's set."""

LOCKED_MISSING_META_KEY: Final = "locked_missing"
"""The allowlist's locked files upstream lacked at their project's last sync, JSON
``{project: [[version, filename, sha256], ...]}``."""
