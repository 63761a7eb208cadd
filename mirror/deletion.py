"""``mirror delete``: projects taken out of the mirror and kept out (takedowns).

Deleting a project keeps the mirror's promise that a client never sees a link
without its file, in this order:

1. one state transaction records the exclusion (from here on no sync queues the
   project, whatever upstream does), forgets the project's file history (no past
   view lists it) and makes its retained files (``keep-removed``) due for unlinking;
2. the project's pages (``simple/<name>/``, and ``pypi/<name>/``) are deleted;
3. one transaction removes its file rows (their paths to the garbage table), its
   project row and todo item, and journals the removal (``remove project``: mirrors
   that follow this one delete it too);
4. its files and ``.metadata`` sidecars are unlinked and forgotten;
5. the root index is rewritten without it.

A ``mirror delete`` stopped part-way leaves the project excluded: the next sync
finishes the removal (:meth:`~mirror.state.StateStore.held_exclusions`), as does
running the command again. :func:`lift` lets projects back in and queues them, so
the next sync mirrors them again.

The exclusion lives in the state store (``mirror status`` lists it); the config's
``[blocklist] packages`` is the other way to keep a project out, for every mirror
built from that config: :func:`blocklist_lines` is what the operator is told to add.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from humanfriendly import format_size
from packaging.utils import NormalizedName

from mirror.models import PackagePath, Serial
from mirror.pages import PageWriter
from mirror.state import Exclusion, StateStore
from mirror.storage import Storage

logger = logging.getLogger(__name__)

DEFAULT_REASON = "deleted with mirror delete"

KEPT_OUT = "%s is kept out by `mirror delete` (`mirror delete --undo %s` lets it back)"
"""The warning of a run asked to sync an excluded project (its name, twice)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted:
    """One project ``mirror delete`` took out."""

    name: NormalizedName
    display_name: str
    held: bool
    """Whether the mirror held the project (else it is only kept out from now on)."""
    files: int
    """Files unlinked (``.metadata`` sidecars included)."""
    bytes: int
    """Bytes of the project's files, as its row recorded them."""


async def delete_projects(
    *,
    state: StateStore,
    storage: Storage,
    names: Sequence[NormalizedName],
    formats: frozenset[str],
    reason: str = DEFAULT_REASON,
    now: float,
) -> list[Deleted]:
    """Take ``names`` out of the mirror and keep them out (see the module docstring);
    the caller holds the mirror lock. Returns what was deleted, in ``names``' order.

    Raises StateError and StorageError.
    """
    names = list(dict.fromkeys(names))

    def excluded() -> tuple[dict[NormalizedName, tuple[str, bool, int]], list[PackagePath]]:
        rows = {name: state.project(name) for name in names}
        shown = {
            name: (name, False, 0) if row is None else (row.display_name, True, row.total_bytes)
            for name, row in rows.items()
        }
        due = state.exclude({name: s[0] for name, s in shown.items()}, reason=reason, now=now)
        return shown, due

    shown, retained = await asyncio.to_thread(excluded)
    deleted: list[Deleted] = []
    for name in names:
        display_name, held, size = shown[name]
        garbage = await remove_project(state, storage, name, now=now)
        deleted.append(
            Deleted(name=name, display_name=display_name, held=held, files=len(garbage), bytes=size)
        )
    await _unlink(state, storage, retained)
    await rewrite_root(state, storage, formats)
    return deleted


async def remove_project(
    state: StateStore, storage: Storage, name: NormalizedName, *, now: float
) -> list[PackagePath]:
    """Steps 2 to 4 of the module docstring for one excluded project: pages, rows,
    files (at once, whatever ``keep-removed`` says). Returns the paths unlinked."""
    await storage.delete_tree(f"simple/{name}")
    await storage.delete_tree(f"pypi/{name}")
    garbage = await asyncio.to_thread(lambda: state.remove_project(name, keep_removed=0, now=now))
    await _unlink(state, storage, garbage)
    logger.info("deleted %s from the mirror (%d file(s) unlinked)", name, len(garbage))
    return garbage


async def finish_stopped(
    state: StateStore, storage: Storage, now: float
) -> tuple[frozenset[NormalizedName], bool]:
    """At the start of a run: the names kept out, once the removal of those a stopped
    ``mirror delete`` left held is finished; and whether any was (the root index is
    then out of date)."""
    excluded = await asyncio.to_thread(state.excluded_names)
    held = await asyncio.to_thread(state.held_exclusions) if excluded else []
    for name in held:
        await remove_project(state, storage, name, now=now)
    return excluded, bool(held)


def admitted(
    names: Iterable[NormalizedName], excluded: Container[NormalizedName]
) -> list[NormalizedName]:
    """``names`` (once each) but those kept out, each of which is warned about: a run
    asked for them by name (``--project``, the dependency closure), not the queue."""
    kept: list[NormalizedName] = []
    for name in dict.fromkeys(names):
        if name in excluded:
            logger.warning(KEPT_OUT, name, name)
        else:
            kept.append(name)
    return kept


async def rewrite_root(state: StateStore, storage: Storage, formats: frozenset[str]) -> None:
    """Write the root index pages again from the project rows."""
    serial: Serial | None = await asyncio.to_thread(state.mirror_serial)
    await PageWriter(storage=storage, state=state, formats=formats).write_root(serial, changed=True)


async def _unlink(state: StateStore, storage: Storage, paths: Sequence[PackagePath]) -> None:
    """Unlink garbage ``paths`` (and temps beside them), then forget them."""
    for path in paths:
        await storage.remove_stale_temps(posixpath.dirname(path))
        await storage.delete(path)
    if paths:
        await asyncio.to_thread(state.forget_garbage, paths)


def lift(state: StateStore, names: Sequence[NormalizedName], *, now: float) -> list[NormalizedName]:
    """Let ``names`` back into the mirror and queue them (the next sync mirrors them
    again); returns those that were excluded. Blocking: run it in a thread."""
    lifted = state.lift_exclusions(names)
    if lifted:
        state.enqueue(dict.fromkeys(lifted, Serial(0)), now=now)
    return lifted


def blocklist_lines(names: Sequence[str]) -> list[str]:
    """The config lines that keep ``names`` out of every mirror built from it (the
    names join any ``packages`` the section already has)."""
    return ["[blocklist]", "packages =", *(f"    {name}" for name in names)]


def render_deleted(deleted: Sequence[Deleted]) -> list[str]:
    """What ``mirror delete`` prints: a line per project, then the blocklist lines."""
    lines = [
        f"deleted {item.name}: {item.files} file(s) ({format_size(item.bytes, binary=True)});"
        " kept out of later syncs"
        if item.held
        else f"{item.name} was not mirrored; kept out of later syncs"
        for item in deleted
    ]
    if deleted:
        names = [item.name for item in deleted]
        lines.append(f"lift with: mirror delete --undo {' '.join(names)}")
        lines.append("or keep them out through the config instead (every mirror built from it):")
        lines.extend(f"  {line}" for line in blocklist_lines(names))
    return lines


def render_lifted(names: Sequence[NormalizedName], lifted: Sequence[NormalizedName]) -> list[str]:
    """``mirror delete --undo``: a line per name asked for."""
    return [
        f"{name} may come back: queued for the next sync"
        if name in lifted
        else f"{name} was not kept out"
        for name in names
    ]


def render_exclusions(exclusions: Sequence[Exclusion]) -> list[str]:
    """``mirror delete --list``: a line per excluded project."""
    if not exclusions:
        return ["no project is kept out by mirror delete"]
    return [
        f"{item.name} ({item.display_name}): since "
        f"{datetime.fromtimestamp(item.since, UTC):%Y-%m-%d %H:%M:%S} UTC: {item.reason}"
        for item in exclusions
    ]
