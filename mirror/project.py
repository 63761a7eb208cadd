"""One project brought in step: its detail, its plan carried out, its pages, its commit.

The order of effects is what keeps a client from ever seeing a broken mirror (see
``docs/architecture.md``): verified files land and are recorded first
(``mirror/fetch.py``), then the pages that link them are replaced atomically, then
one state transaction commits the project and moves the files the pages no longer
link to the garbage table, and only then are those files unlinked. What to fetch,
publish, keep and delete is decided by ``mirror/plan.py``; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from packaging.utils import NormalizedName

from mirror import changes
from mirror.errors import MirrorError, ProjectNotFoundError, UnconfirmedNotFoundError
from mirror.fetch import Fetcher
from mirror.filters import FilterSet
from mirror.filters.lockfiles import LockedFile
from mirror.models import DistFile, PackagePath, ProjectDetail, Serial
from mirror.pages import PageWriter
from mirror.plan import ProjectPlan, plan_project
from mirror.report import Tally
from mirror.state import HistoryEntry, StateStore, TodoItem
from mirror.storage import Storage
from mirror.upstream import Upstream

logger = logging.getLogger(__name__)


class ProjectSync:
    """Syncs (or removes) single projects for one run, counting in ``tally``."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        storage: Storage,
        state: StateStore,
        fetcher: Fetcher,
        pages: PageWriter,
        tally: Tally,
        metadata_source: Literal["simple", "json"],
        keep_json: bool,
        keep_removed: float = 0.0,
        cooldown: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._upstream = upstream
        self._storage = storage
        self._state = state
        self._fetcher = fetcher
        self._commits = fetcher.commits
        self._pages = pages
        self._tally = tally
        self._metadata_source = metadata_source
        self._keep_json = keep_json
        self._keep_removed = keep_removed
        self._cooldown = cooldown
        self._clock = clock

    async def sync(self, item: TodoItem, filters: FilterSet) -> bool:
        """Bring one project in step under ``filters``. Returns True when it was
        removed (gone upstream, or left out by the filters).

        Raises UnconfirmedNotFoundError for a 404 nothing confirms (the project is
        left as it is), and the errors of the upstream client and the storage.
        """
        excluded = filters.check_name(item.name)
        if excluded is not None:
            await self.remove(item.name, why=f"left out by {excluded}")
            return True
        # A project first seen without its display name (``--project``, the
        # dependency closure) has it looked up beside its page, not after it. Not in
        # a TaskGroup: that would wrap the project's own error in a group. The task
        # never raises (it returns its error), and it is over when this returns.
        lookup = (
            asyncio.ensure_future(self._display_name_aside(item.name))
            if item.display_name is None and self._metadata_source == "simple"
            else None
        )
        try:
            return await self._sync_detail(item, filters, lookup)
        finally:
            if lookup is not None:
                lookup.cancel()
                await asyncio.wait([lookup])

    async def _sync_detail(
        self,
        item: TodoItem,
        filters: FilterSet,
        lookup: asyncio.Task[str | MirrorError | None] | None,
    ) -> bool:
        """:meth:`sync` once past the name filters; ``lookup`` gives the display name
        when the plan does not know it."""
        fetched = await self._detail(item)
        if fetched is None:
            if filters.locked_files(item.name):
                self._check_locks(item.name, filters.locked_files(item.name))
            await self.remove(item.name)
            return True
        if filters.locked_files(item.name):
            self._check_locks(item.name, filters.missing_locked(fetched))
        outcome = filters.apply(fetched)
        for drop in outcome.drops:
            logger.debug("%s: filters leave out %s", item.name, drop)
        if outcome.detail is None:
            await self.remove(item.name, why=f"left out by {outcome.drops[-1]}")
            return True
        plan = await self._carry_out_downloads(outcome.detail, item)
        display_name = plan.display_name
        if display_name is None:
            found = await lookup if lookup is not None else None
            if isinstance(found, MirrorError):
                raise found
            display_name = found or await self._display_name_from_json(item.name)
        await self._pages.write_project(plan.publish, display_name)
        if self._keep_json:
            await self._write_json_api(item.name)
        detail = outcome.detail
        garbage = await self._commits.call(
            lambda: self._state.commit_project(
                name=item.name,
                display_name=display_name,
                serial=detail.published_serial,
                status=detail.status.status,
                delete=plan.delete,
                kept=[history_entry(dist) for dist in (*plan.publish.files, *plan.held)],
                held_uploads=[d.upload_time.timestamp() for d in plan.held if d.upload_time],
                keep_removed=self._keep_removed,
                now=self._clock(),
            )
        )
        await self.delete_files(garbage)
        logger.info(
            "synced %s at serial %d: %d file(s) listed, %d held back, %d removed",
            item.name,
            detail.published_serial,
            len(plan.publish.files),
            len(plan.held),
            len(garbage),
        )
        return False

    def _check_locks(self, name: NormalizedName, missing: tuple[LockedFile, ...]) -> None:
        """Count and log the locked files of ``name`` upstream no longer has."""
        for locked in missing:
            logger.warning("locked file no longer upstream: %s", locked)
        self._tally.checked_locks(name, missing)

    async def _detail(self, item: TodoItem) -> ProjectDetail | None:
        """The project's detail; None when upstream answers 404 and that is a removal.

        A 404 is a removal only when upstream confirmed it (``item.gone``: the
        changelog or the full listing says so). Otherwise the page is asked for
        again with a cache-busting query (``?<serial>``), since CDNs answer stale
        404s for new projects and now and then for existing ones; still 404, the
        project is removed only when the mirror holds nothing of it and nothing
        claimed it exists (:func:`mirror.changes.on_not_found`), and is otherwise
        kept, its item left queued with back-off (UnconfirmedNotFoundError).
        """
        name = item.name
        min_serial = item.serial if item.serial > 0 else None
        source = self._metadata_source
        try:
            return await self._upstream.project_detail(name, min_serial=min_serial, source=source)
        except ProjectNotFoundError:
            if item.gone:
                return None
        row, serial = await asyncio.to_thread(
            lambda: (self._state.project(name), self._state.mirror_serial())
        )
        bust = Serial(max(item.serial, serial or 0))
        try:
            return await self._upstream.project_detail(
                name, min_serial=min_serial, source=source, cache_bust=bust
            )
        except ProjectNotFoundError:
            verdict = changes.on_not_found(gone=False, held=row is not None, serial=item.serial)
        if verdict == "remove":
            return None
        raise UnconfirmedNotFoundError(name)

    async def _carry_out_downloads(self, detail: ProjectDetail, item: TodoItem) -> ProjectPlan:
        """Plan the project against what is recorded, fetch what the plan fetches,
        and return the plan the resulting inventory gives (which fetches nothing)."""
        state = self._state
        uploaded_before = (
            datetime.fromtimestamp(self._clock() - self._cooldown, UTC)
            if self._cooldown > 0
            else None
        )

        def planned() -> ProjectPlan:
            # One thread hop: what is recorded, the plan, and the garbage notes for
            # what it fetches, before the first byte lands: a run killed from here on
            # leaves garbage rows that lead a later run to what it left on disk.
            row = state.project(detail.name)
            plan = plan_project(
                detail,
                state.project_files(detail.name),
                queued_display_name=item.display_name,
                recorded_display_name=row.display_name if row is not None else None,
                uploaded_before=uploaded_before,
            )
            if plan.fetch:
                state.expect_files(plan.expected)
            return plan

        plan = await self._commits.call(planned)
        if not plan.fetch:
            return plan
        recorded = await self._fetcher.fetch(plan)
        # The display names are the same ones: the queue's and the committed row's.
        return plan_project(
            detail,
            recorded,
            queued_display_name=item.display_name,
            recorded_display_name=plan.display_name,
            uploaded_before=uploaded_before,
        )

    async def _display_name_aside(self, name: NormalizedName) -> str | MirrorError | None:
        """The display name of a project queued without one: the committed one, else
        upstream's JSON API's. Runs beside the project's page; its failure is returned
        (raised only if the name turns out to be needed)."""
        row = await asyncio.to_thread(self._state.project, name)
        if row is not None:
            return row.display_name
        try:
            return await self._display_name_from_json(name)
        except MirrorError as exc:
            return exc

    async def _display_name_from_json(self, name: NormalizedName) -> str:
        """The project's name as its author spells it, for a project first seen through
        ``--project``: PEP 691 pages carry only the normalized name, the JSON API has
        the other. One extra request, made once per project."""
        try:
            detail = await self._upstream.project_detail(name, min_serial=None, source="json")
        except ProjectNotFoundError:
            # The JSON API 404s for a project without releases.
            return name
        return detail.display_name or name

    async def _write_json_api(self, name: NormalizedName) -> None:
        """Mirror ``/pypi/<name>/json`` as upstream serves it (``keep_json``)."""
        try:
            raw = await self._upstream.project_json_raw(name)
        except ProjectNotFoundError:
            # The JSON API 404s for a project without releases; its simple page exists.
            await self._storage.remove_stale_temps(f"pypi/{name}")
            await self._storage.delete(f"pypi/{name}/json")
        else:
            await self._storage.write_files([(f"pypi/{name}/json", raw)])

    async def remove(self, name: NormalizedName, *, why: str = "gone upstream") -> None:
        """Upstream no longer has the project: pages go first, then its files."""
        await self._storage.delete_tree(f"simple/{name}")
        await self._storage.delete_tree(f"pypi/{name}")
        garbage = await asyncio.to_thread(
            lambda: self._state.remove_project(
                name, keep_removed=self._keep_removed, now=self._clock()
            )
        )
        await self.delete_files(garbage)
        logger.info("removed %s: %s (%d file(s) deleted)", name, why, len(garbage))

    async def delete_files(self, paths: Iterable[PackagePath]) -> None:
        """Unlink garbage ``paths`` (and temps beside them), then forget them."""
        paths = list(paths)
        for path in paths:
            # A download killed mid-stream left its temp beside the file; once the
            # file goes, no sync would ever look in this directory again.
            await self._storage.remove_stale_temps(posixpath.dirname(path))
            await self._storage.delete(path)
        if paths:
            await asyncio.to_thread(self._state.forget_garbage, paths)
            self._tally.deleted(len(paths))


def history_entry(dist: DistFile) -> HistoryEntry:
    """What the file history records of a file a commit keeps."""
    return HistoryEntry(
        path=dist.path,
        filename=dist.filename,
        size=dist.size,
        sha256=dist.sha256,
        metadata_sha256=dist.core_metadata_sha256 if dist.core_metadata else None,
        requires_python=dist.requires_python,
        yanked=dist.yanked_reason if dist.yanked else None,
        # Only a provenance the mirror holds: what past views may link.
        provenance=dist.provenance if dist.provenance_kept else None,
        upload_time=None if dist.upload_time is None else dist.upload_time.timestamp(),
    )
