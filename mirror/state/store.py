"""The state store: one object over one SQLite file, made of one class per concern."""

from __future__ import annotations

from mirror.state.exclusions import Exclusions
from mirror.state.history import RunHistory
from mirror.state.inventory import Inventory
from mirror.state.journal import Journal
from mirror.state.meta import Meta
from mirror.state.queue import TodoQueue
from mirror.state.seeds import Seeds
from mirror.state.timeline import Timeline
from mirror.state.validators import PageValidators


class StateStore(
    Inventory, TodoQueue, RunHistory, Journal, Timeline, Seeds, Exclusions, PageValidators, Meta
):
    """The mirror's SQLite state store. Open it with :meth:`open`; close it when done.

    Each concern is a class of its own module, all built on the one connection of
    :class:`~mirror.state.core.StoreCore`: :class:`~mirror.state.inventory.Inventory`
    (projects, files, totals, garbage), :class:`~mirror.state.queue.TodoQueue` (the
    todo / retry queue), :class:`~mirror.state.history.RunHistory` (finished runs),
    :class:`~mirror.state.journal.Journal` (the mirror's own changelog),
    :class:`~mirror.state.timeline.Timeline` (the file history past views read, and
    the files the cooldown holds back), :class:`~mirror.state.seeds.Seeds` (the
    projects added on demand, the locked files upstream lacks),
    :class:`~mirror.state.exclusions.Exclusions` (the projects ``mirror delete`` keeps
    out), :class:`~mirror.state.validators.PageValidators` (what the root-index
    follower last saw upstream) and
    :class:`~mirror.state.meta.Meta` (the mirror serial and named values). A write
    that spans concerns (a commit settles the project's todo item) is one transaction
    of the concern that owns it.

    Safe to call from several threads (calls are serialised). Every method raises
    StateError when SQLite fails; a failed write leaves nothing of itself behind.
    """
