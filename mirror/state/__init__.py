"""The state store: what the mirror holds and what it still owes, in one SQLite file.

The store keeps the mirror serial, a row per committed project (serial, status, file
count, bytes), a row per verified file on disk, the todo / retry queue, the garbage
list (paths dropped from the state whose files may still be on disk), the history
of runs and the history of every file (what past views of the index list). It is
what makes the mirror cheap: size and serial are known without walking the tree,
the root index comes from the project rows, an interrupted run resumes from the todo
table and a failing project backs off on its own.

The store is synchronous: the sync engine calls it from a worker thread. The package
is split by concern (``docs/architecture.md``): :mod:`~mirror.state.core` (connection,
lock, transactions, migrations), :mod:`~mirror.state.schema`,
:mod:`~mirror.state.keys` (every meta key), :mod:`~mirror.state.records`,
:mod:`~mirror.state.meta`, :mod:`~mirror.state.inventory`,
:mod:`~mirror.state.queue`, :mod:`~mirror.state.history`, :mod:`~mirror.state.journal`,
:mod:`~mirror.state.timeline` (file history, held files), :mod:`~mirror.state.seeds`
(on-demand projects, missing locked files),
:mod:`~mirror.state.exclusions` (the projects ``mirror delete`` keeps out),
:mod:`~mirror.state.validators` (what the root-index follower last saw), and
:mod:`~mirror.state.store`, whose :class:`StateStore` is all of them on one
connection. Import from here.
"""

from mirror.state.core import STATE_NAME
from mirror.state.journal import JOURNAL_PAGE_ROWS, JournalRow
from mirror.state.keys import (
    ADOPT_PROGRESS_KEY,
    ADOPT_RECONCILE_KEY,
    FILTERS_META_KEY,
    NEEDS_META_KEY,
    RECHECK_META_KEY,
    ROOT_HTML_META_KEY,
    UNFINISHED_META_KEY,
)
from mirror.state.records import (
    Exclusion,
    HistoryFile,
    Moment,
    ProjectRow,
    RunRecord,
    StoredFile,
    TodoItem,
    Totals,
)
from mirror.state.schema import SCHEMA_VERSION
from mirror.state.seeds import DemandedProject
from mirror.state.store import StateStore
from mirror.state.timeline import HistoryEntry

__all__ = [
    "ADOPT_PROGRESS_KEY",
    "ADOPT_RECONCILE_KEY",
    "FILTERS_META_KEY",
    "JOURNAL_PAGE_ROWS",
    "NEEDS_META_KEY",
    "RECHECK_META_KEY",
    "ROOT_HTML_META_KEY",
    "SCHEMA_VERSION",
    "STATE_NAME",
    "UNFINISHED_META_KEY",
    "DemandedProject",
    "Exclusion",
    "HistoryEntry",
    "HistoryFile",
    "JournalRow",
    "Moment",
    "ProjectRow",
    "RunRecord",
    "StateStore",
    "StoredFile",
    "TodoItem",
    "Totals",
]
