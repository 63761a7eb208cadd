"""One sync run: find what changed upstream, bring those projects in step, write pages.

This module is the run and nothing else: it reads the changes (``mirror/changes.py``
decides what they queue), drives a pool of workers over the todo queue (each
project synced by ``mirror/project.py``), records each project's outcome, follows
the dependency closure (``mirror/closure.py``), then writes the root index, collects
the garbage and appends the run to the history.

A project that fails stays in the todo queue with its error and a next-attempt time;
it never holds back the mirror's serial, which advances as soon as the changes are
safely queued. A full or read-only disk is not a project's failure: it ends the run at
once (StorageError), every project staying queued.

A run killed at any moment leaves nothing the next one does not settle: downloads are
noted in the garbage table before they start (collected at the end of the next run
unless adopted), and a marker in the state's meta table, cleared only once the root
index is written, tells the next run to rewrite it and remove stale temps.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal

from packaging.utils import NormalizedName

from mirror import changes, closure, deletion
from mirror.config import UpstreamApi
from mirror.errors import (
    JournalPrunedError,
    MirrorError,
    NoXmlRpcError,
    StorageError,
    XmlRpcFaultError,
)
from mirror.fetch import Fetcher
from mirror.filters import FilterSet
from mirror.groupcommit import GroupCommit
from mirror.models import Serial
from mirror.pages import PageWriter
from mirror.progress import NoProgress, ProgressSink
from mirror.project import ProjectSync
from mirror.report import ProjectFailure, SyncReport, Tally
from mirror.rootfollow import RootFollower, full_listing
from mirror.state import (
    ADOPT_RECONCILE_KEY,
    FILTERS_META_KEY,
    RECHECK_META_KEY,
    ROOT_HTML_META_KEY,
    UNFINISHED_META_KEY,
    RunRecord,
    StateStore,
    TodoItem,
    Totals,
)
from mirror.storage import Storage
from mirror.upstream import Upstream

__all__ = ["ProjectFailure", "SyncOptions", "SyncReport", "Syncer", "is_disk_full_or_read_only"]

logger = logging.getLogger(__name__)

_MAX_CLOSURE_ROUNDS = 20

_QUEUED_ITEMS = 1_000
"""Todo items handed to the workers ahead of them (the rest stay in the state store)."""

Needs = Mapping[NormalizedName, tuple[str, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOptions:
    """How a run behaves; built from the config by the CLI."""

    workers: int = 4
    download_concurrency: int = 16
    formats: frozenset[str] = frozenset({"html", "json"})
    keep_json: bool = False
    verify_provenance: bool = False
    """Refuse a file whose provenance does not attest its sha256 (``verify-provenance``)."""
    metadata_source: Literal["simple", "json"] = "simple"
    upstream_api: UpstreamApi = "auto"
    """How changes are found (``upstream-api``): the XML-RPC changelog, the PEP 691
    root index, or the first upstream offers."""
    retry_base_seconds: float = 300.0
    retry_max_seconds: float = 86_400.0
    metrics_file: Path | None = None
    """Where to write Prometheus metrics at the end of each run (None: nowhere)."""
    filters: FilterSet = field(default_factory=FilterSet)
    """What the mirror keeps (``[plugins] enabled``); empty keeps everything."""
    journal_retention_seconds: float = 30 * 86_400.0
    """How long the mirror's own journal keeps a row (``journal-retention``): each run
    prunes older ones at its end."""
    keep_removed: float = 0.0
    """Seconds a removed file stays on disk for past views (``keep-removed``)."""
    cooldown: float = 0.0
    """Seconds after its upload before a file is published (``cooldown``)."""
    recheck_interval: float = 0.0
    """Seconds between full re-checks of the listing against the state store
    (``recheck-interval``, 7 days in the config); 0: none."""


class Syncer:
    """Runs syncs of one mirror directory against one upstream.

    The caller owns the resources (upstream session, storage, state store) and holds
    the mirror directory's lock for the whole run.
    """

    def __init__(
        self,
        *,
        upstream: Upstream,
        storage: Storage,
        state: StateStore,
        options: SyncOptions,
        clock: Callable[[], float] = time.time,
        progress: ProgressSink | None = None,
    ) -> None:
        self._progress: ProgressSink = progress if progress is not None else NoProgress()
        self._upstream = upstream
        self._storage = storage
        self._state = state
        self._options = options
        self._clock = clock

    async def run(self, *, projects: Sequence[NormalizedName] | None = None) -> SyncReport:
        """Bring the mirror in step with upstream.

        With ``projects``, sync just those (whatever their serial) and leave the
        mirror's serial and todo queue alone. Otherwise read upstream's changes since
        the mirror serial (the full listing on the first run), queue them, advance the
        serial, and work through every due item in the queue.
        """
        # The projects `mirror serve` added on demand join the allowlist's set (not
        # its fingerprint: they never make a run reconcile every project).
        on_demand = await asyncio.to_thread(self._state.on_demand_names)
        filters = self._options.filters.with_on_demand(on_demand)
        run = _Run(
            upstream=self._upstream,
            storage=self._storage,
            state=self._state,
            options=replace(self._options, filters=filters),
            clock=self._clock,
            progress=self._progress,
        )
        return await run.run(projects)


class _Run:
    """One run: its tally, its downloads, its pool of workers."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        storage: Storage,
        state: StateStore,
        options: SyncOptions,
        clock: Callable[[], float],
        progress: ProgressSink,
    ) -> None:
        self._upstream = upstream
        self._storage = storage
        self._state = state
        self._options = options
        self._clock = clock
        self._progress = progress
        self._tally = Tally()
        self._root = RootFollower(upstream=upstream, state=state, clock=clock)
        self._listing = partial(first_listing, upstream, api=options.upstream_api)
        self._pages = PageWriter(storage=storage, state=state, formats=options.formats)
        self._projects = ProjectSync(
            upstream=upstream,
            storage=storage,
            state=state,
            fetcher=run_fetcher(upstream, storage, state, options, tally=self._tally, p=progress),
            pages=self._pages,
            tally=self._tally,
            metadata_source=options.metadata_source,
            keep_json=options.keep_json,
            keep_removed=options.keep_removed,
            cooldown=options.cooldown,
            clock=clock,
        )

    async def run(self, projects: Sequence[NormalizedName] | None) -> SyncReport:
        """See :meth:`Syncer.run`."""
        started = time.monotonic()
        started_at = now = self._clock()
        tally = self._tally
        upstream_serial: Serial | None = None
        await self._begin()
        self._excluded, removed = await deletion.finish_stopped(self._state, self._storage, now)
        tally.root_dirty |= removed
        needs = await self._load_needs()
        # The filters of this run, with the dependency closure the last run found.
        filters = (
            self._options.filters if needs is None else self._options.filters.with_needs(needs)
        )
        pages: Iterator[list[TodoItem]]
        if projects is not None:
            items = [TodoItem.fresh(n) for n in deletion.admitted(projects, self._excluded)]
            count, pages = len(items), iter([items])
        else:
            await self._follow_filters(filters)
            upstream_serial = await self._queue_changes(filters)
            await recheck(
                self._upstream,
                self._state,
                filters,
                interval_seconds=self._options.recheck_interval,
                now=self._clock(),
                api=self._options.upstream_api,
            )
            line = self._clock() - self._options.cooldown  # held files now due, queued
            await asyncio.to_thread(self._state.queue_due_held, line, self._clock())
            now = self._clock()  # after the queueing: what it queued is due
            count = await asyncio.to_thread(self._state.due_count, now)
            pages = self._state.due_pages(now)
        logger.info("%d project(s) to sync", count)
        self._progress.start(count)
        try:
            await self._sync_projects(pages, filters)
            if needs is not None:
                await self._follow_dependencies(needs)
        finally:
            self._progress.finish()
        if tally.files_derived:
            logger.info(
                "%d .metadata file(s) taken from their wheels instead of downloaded",
                tally.files_derived,
            )
        serial = await asyncio.to_thread(self._state.mirror_serial)
        await self._pages.write_root(serial, changed=tally.root_dirty)
        await self._storage.write_bytes(
            "last-modified", datetime.now(UTC).strftime("%Y%m%dT%H:%M:%S\n").encode()
        )
        # Last, so that files a killed run left on disk unrecorded were adopted by the
        # syncs above (when still wanted) before the rest is removed.
        await self._collect_garbage()
        await asyncio.to_thread(self._state.set_meta, UNFINISHED_META_KEY, "")
        await asyncio.to_thread(self._prune_journal)
        pending = await asyncio.to_thread(self._state.todo_count)
        report = tally.report(
            serial=serial,
            pending=pending,
            elapsed_seconds=time.monotonic() - started,
            upstream_serial=upstream_serial,
        )
        await asyncio.to_thread(self._record_run, report, started_at)
        return report

    def _prune_journal(self) -> None:
        """Drop the journal rows older than the retention window (in a worker thread)."""
        cutoff = self._clock() - self._options.journal_retention_seconds
        pruned = self._state.prune_journal(older_than=cutoff)
        if pruned:
            logger.info("pruned %d journal row(s) past the retention window", pruned)

    def _record_run(self, report: SyncReport, started_at: float) -> None:
        """Append the run to the state's history and refresh the metrics file
        (in a worker thread)."""
        finished = self._clock()
        self._state.update_missing_locked(self._tally.locked)
        self._state.record_run(run_record(report, started_at, finished, self._state.totals()))
        if self._options.metrics_file is not None:
            # Only when asked for: it brings in aiohttp's server half, which a sync
            # otherwise never loads.
            from mirror.metrics import write_metrics_file  # noqa: PLC0415

            write_metrics_file(self._options.metrics_file, self._state, now=self._clock())

    # --- change detection -----------------------------------------------------------

    async def _queue_changes(self, filters: FilterSet) -> Serial:
        """Queue upstream's changes since the mirror serial and advance it (one
        transaction); the serial upstream is at, by ``upstream-api`` (see rootfollow)."""
        changelog = partial(self._queue_changelog, filters)
        return await self._root.queue(self._options.upstream_api, filters, changelog=changelog)

    async def _queue_changelog(self, filters: FilterSet) -> Serial:
        """:meth:`_queue_changes` by XML-RPC (NoXmlRpcError, nothing queued, without)."""
        serial = await asyncio.to_thread(self._state.mirror_serial)
        display_names: Mapping[NormalizedName, str] = {}
        if serial is None:
            found, display_names = await self._listed_changes(filters, "first sync")
        else:
            try:
                entries = await self._upstream.changelog_since_serial(serial)
            except XmlRpcFaultError as exc:
                if exc.code != JournalPrunedError.FAULT_CODE:
                    raise
                # A mirror upstream of us no longer keeps its journal back to our
                # serial: what it holds now, against what we hold, is the whole story.
                logger.warning("%s; reading the full listing", exc.fault_string)
                found, display_names = await self._listed_changes(filters, "full listing")
            else:
                found = changes.since(entries, serial)
                display_names = found.display_names
                logger.info(
                    "%d changelog rows since serial %d: %d project(s) changed, upstream at %d",
                    len(entries),
                    serial,
                    len(found.projects),
                    found.serial,
                )
        adopted = await asyncio.to_thread(self._state.get_meta, ADOPT_RECONCILE_KEY)
        if adopted and serial is not None:
            found = await reconcile_adopted(self._state, found, self._listing(filters))
            display_names = found.display_names
        queued = admitted(found.projects, filters)
        await asyncio.to_thread(
            lambda: self._state.enqueue(
                queued,
                display_names=display_names,
                gone=found.gone,
                mirror_serial=found.serial,
                now=self._clock(),
            )
        )
        if adopted:
            await asyncio.to_thread(self._state.set_meta, ADOPT_RECONCILE_KEY, "")
        return found.serial

    async def _listed_changes(
        self, filters: FilterSet, why: str
    ) -> tuple[changes.Changes, Mapping[NormalizedName, str]]:
        """The changes a full listing gives (every listed project, and every held one
        it no longer lists), with the listing's display names."""
        # Read the last serial first: a change that lands while the listing is built
        # is then seen again by the next run's changelog, never missed.
        last = await self._upstream.changelog_last_serial()
        listed, display_names, complete = await self._listing(filters)
        found = changes.first_sync(listed, await self._held(), last_serial=last, complete=complete)
        # As full a comparison as a re-check (an allowlist's names are all queued): the
        # next re-check is due an interval from now.
        await asyncio.to_thread(self._state.set_meta, RECHECK_META_KEY, repr(self._clock()))
        logger.info("%s: %d project(s) to consider, serial %d", why, len(found.projects), last)
        return found, display_names

    async def _held(self) -> list[NormalizedName]:
        """The projects the mirror holds."""
        return await asyncio.to_thread(lambda: [row.name for row in self._state.iter_projects()])

    # --- filters ------------------------------------------------------------------

    async def _follow_filters(self, filters: FilterSet) -> None:
        """Reconcile the mirror with its filters when their config changed since the
        last run (the fingerprint in the state's meta table).

        Every project the mirror holds is queued again: its sync removes it when the
        filters now leave it out (pages first, then files) and otherwise trims or
        grows it to what the filters keep. The projects an allowlist names are queued
        too; without an allowlist the full listing is read once, so projects a looser
        filter now admits are found. Nothing walks the tree. The fingerprint is stored
        only after the queue is, so a crash in between repeats the reconciliation.
        """
        fingerprint = self._options.filters.fingerprint
        known = await asyncio.to_thread(self._state.get_meta, FILTERS_META_KEY)
        decision = changes.reconciliation(self._options.filters, known)
        if decision == "current":
            return
        if decision == "requeue":
            listed: Mapping[NormalizedName, Serial] = {}
            display_names: Mapping[NormalizedName, str] = {}
            held = await self._held()
            gone: frozenset[NormalizedName] = frozenset()
            if await asyncio.to_thread(self._state.mirror_serial) is not None:
                listing, display_names, complete = await self._listing(filters)
                listed = admitted(listing, filters)
                if complete:
                    gone = changes.unlisted(listing, held)
            queued = changes.requeued(listed, held)
            if queued:
                logger.info("the filters changed: re-evaluating %d project(s)", len(queued))
            await asyncio.to_thread(
                lambda: self._state.enqueue(
                    queued, display_names=display_names, gone=gone, now=self._clock()
                )
            )
        await asyncio.to_thread(self._state.set_meta, FILTERS_META_KEY, fingerprint)

    # --- the dependency closure -----------------------------------------------------

    async def _load_needs(self) -> Needs | None:
        """The dependency closure the last run found, for an allowlist that follows
        dependencies (``[allowlist] dependencies = true``); None for other filters."""
        if self._options.filters.marker_environments() is None:
            return None
        # An unreadable stored closure reads as none: it is found again after the syncs.
        return await asyncio.to_thread(self._state.dependency_needs)

    async def _follow_dependencies(self, needs: Needs) -> None:
        """Read the requirements of what is mirrored, admit and sync what changed in
        the closure (``needs``: the one the run started with), and repeat until the
        closure stops changing."""
        environments = self._options.filters.marker_environments()
        assert environments is not None
        for _ in range(_MAX_CLOSURE_ROUNDS):
            found = await self._dependency_closure(environments)
            if found == needs:
                return
            changed = closure.changed(needs, found)
            logger.info("dependencies: %d project(s) needed, %d changed", len(found), len(changed))
            await asyncio.to_thread(self._state.set_dependency_needs, found)
            needs = found
            # Queued, so that one failing now is retried by later runs.
            await asyncio.to_thread(
                self._state.enqueue, dict.fromkeys(changed, Serial(0)), now=self._clock()
            )
            await self._sync_projects(
                iter([[TodoItem.fresh(n) for n in deletion.admitted(changed, self._excluded)]]),
                self._options.filters.with_needs(needs),
            )
        logger.warning("the dependency closure still changes after %d rounds", _MAX_CLOSURE_ROUNDS)

    async def _dependency_closure(
        self, environments: Sequence[Mapping[str, str]]
    ) -> dict[NormalizedName, tuple[str, ...]]:
        """``{project: specifiers}`` needed by the allowlisted projects and, in turn,
        by those, from the ``Requires-Dist`` of the ``.metadata`` files mirrored."""
        walk = closure.ClosureWalk(self._options.filters.included_names() or (), environments)
        while (name := walk.next_project()) is not None:
            stored = await asyncio.to_thread(self._state.project_files, name)
            for path, known in sorted(stored.items()):
                if known.metadata_sha256 is not None:
                    walk.read(await self._storage.read_bytes(f"{path}.metadata"))
        return walk.needs()

    # --- the worker pool ----------------------------------------------------------

    async def _sync_projects(self, pages: Iterator[list[TodoItem]], filters: FilterSet) -> None:
        """Sync every item of ``pages`` under ``filters`` with the configured number of
        workers. Each page is read (in a worker thread) once the workers have taken
        most of the one before, so a page and :data:`_QUEUED_ITEMS` items at most are
        held at once."""
        workers = self._options.workers
        queue: asyncio.Queue[TodoItem | None] = asyncio.Queue(maxsize=_QUEUED_ITEMS)

        async def feed() -> None:
            none_left: list[TodoItem] = []
            while page := await asyncio.to_thread(next, pages, none_left):
                for item in page:
                    await queue.put(item)
            for _ in range(workers):
                await queue.put(None)

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                await self._sync_one(item, filters)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(feed())
                for _ in range(workers):
                    group.create_task(worker())
        except* MirrorError as group:
            # A full or read-only disk (see _sync_one), or a state store that fails
            # even to record a failure: the other workers are cancelled, their temps
            # removed, and the run ends with the first error (the CLI's exit code 4).
            raise group.exceptions[0] from None

    async def _sync_one(self, item: TodoItem, filters: FilterSet) -> None:
        """Sync one project and record its outcome."""
        started = time.monotonic()
        try:
            removed = await self._projects.sync(item, filters)
        except MirrorError as exc:
            if is_disk_full_or_read_only(exc):
                # Every other project would fail the same way, one by one, and count
                # failed attempts that are not theirs: stop the run instead.
                raise
            failure = await self._record_failure(item, exc)
            self._tally.failed(failure)
            self._progress.project_done(ok=False)
            logger.error(
                "project %s failed (attempt %d, next try in %.0fs): %s",
                item.name,
                failure.attempts,
                max(0.0, failure.next_attempt - self._clock()),
                exc,
            )
            return
        self._tally.project_done(removed=removed)
        self._progress.project_done(ok=True)
        logger.debug("project %s done in %.2fs", item.name, time.monotonic() - started)

    async def _record_failure(self, item: TodoItem, exc: MirrorError) -> ProjectFailure:
        current = await asyncio.to_thread(self._state.todo_item, item.name)
        attempts = current.attempts if current is not None else item.attempts
        delay = min(
            self._options.retry_max_seconds,
            self._options.retry_base_seconds * (2**attempts),
        )
        next_attempt = self._clock() + delay
        if current is None:
            # An explicitly requested project (``--project``) is not in the queue: report
            # it without queueing, the operator asked for a one-off.
            return ProjectFailure(
                name=item.name, error=str(exc), attempts=1, next_attempt=next_attempt
            )
        updated = await asyncio.to_thread(
            lambda: self._state.record_failure(item.name, error=str(exc), next_attempt=next_attempt)
        )
        return ProjectFailure(
            name=item.name,
            error=str(exc),
            attempts=updated.attempts,
            next_attempt=updated.next_attempt,
        )

    # --- the run's edges ------------------------------------------------------------

    async def _begin(self) -> None:
        """Mark the run under way. When the last one did not finish (``kill -9``, a
        full disk), the root index may be out of step with the committed projects and
        temps may be left where no later sync of a project looks: remove those and
        have the root index rewritten. (Temps beside downloads are collected with the
        garbage, see :meth:`StateStore.expect_files`; those in a project's page
        directory when that project is synced again, as it is still queued.)"""
        unfinished = await asyncio.to_thread(self._state.get_meta, UNFINISHED_META_KEY)
        await asyncio.to_thread(self._state.set_meta, UNFINISHED_META_KEY, str(self._clock()))
        if unfinished:
            logger.info("the last run did not finish: rewriting the root index")
            self._tally.root_dirty = True
            await asyncio.to_thread(self._state.set_meta, ROOT_HTML_META_KEY, "")
            await self._storage.remove_stale_temps("")
            await self._storage.remove_stale_temps("simple")

    async def _collect_garbage(self) -> None:
        """Unlink the garbage paths: files a run committed away but did not get to
        delete, and downloads a failed or killed run did not record (see
        :meth:`StateStore.expect_files`), with any temps beside them."""
        garbage = await asyncio.to_thread(self._state.garbage, now=self._clock())
        if garbage:
            logger.info(
                "collecting %d garbage path(s): files the state dropped, or downloads a"
                " failed or interrupted run did not record",
                len(garbage),
            )
            await self._projects.delete_files(garbage)


async def reconcile_adopted(
    state: StateStore,
    found: changes.Changes,
    listing: Awaitable[tuple[Mapping[NormalizedName, Serial], Mapping[NormalizedName, str], bool]],
) -> changes.Changes:
    """The changelog's changes plus what upstream's full ``listing`` (and whether it
    is complete) says a mirror ``mirror adopt`` took over lacks (see
    :func:`mirror.changes.reconciled`)."""
    listed, display_names, complete = await listing
    held = await asyncio.to_thread(lambda: {row.name: row.serial for row in state.iter_projects()})
    result = changes.reconciled(found, listed, held, display_names, complete=complete)
    logger.info(
        "reconciling the adopted mirror with upstream's listing: %d project(s) to bring "
        "in step, serial %d",
        len(result.projects),
        result.serial,
    )
    return result


def admitted(
    projects: Mapping[NormalizedName, Serial], filters: FilterSet
) -> Mapping[NormalizedName, Serial]:
    """:func:`mirror.changes.admitted`, logging how many the name filters leave out."""
    kept = changes.admitted(projects, filters)
    if len(kept) != len(projects):
        logger.info("filters leave out %d project(s) by name", len(projects) - len(kept))
    return kept


_Listed = tuple[Mapping[NormalizedName, Serial], Mapping[NormalizedName, str], bool]


async def first_listing(upstream: Upstream, filters: FilterSet, *, api: UpstreamApi) -> _Listed:
    """``({project: serial}, {project: display name}, complete)`` for a first sync.
    With an allowlist that is the allowed names (not ``complete``: they confirm no
    removal), so the full listing of hundreds of thousands of names is never
    fetched; otherwise the full listing by ``api`` (:func:`mirror.rootfollow.full_listing`)."""
    allowed = changes.allowlisted(filters)
    if allowed is not None:
        return allowed, {}, False
    serials, display_names = await full_listing(upstream, api)
    return serials, display_names, True


async def recheck(
    upstream: Upstream,
    state: StateStore,
    filters: FilterSet,
    *,
    interval_seconds: float,
    now: float,
    api: UpstreamApi = "auto",
) -> None:
    """When the last full comparison is older than ``interval_seconds``
    (``recheck-interval``; 0: never), read the full listing and queue every project
    the name filters admit whose serial disagrees with the state store's: held at
    another serial, not held, or no longer listed (then a confirmed removal, removed
    through the usual path). Cheap insurance against a change the changelog (or a
    CDN) missed. The time is recorded once the queue is (a crash in between only
    makes the next run re-check again)."""
    raw = await asyncio.to_thread(state.get_meta, RECHECK_META_KEY)
    try:
        last = float(raw) if raw else None
    except ValueError:
        last = None
    # Through the root index (``upstream-api = simple``, or ``auto`` without XML-RPC)
    # every run compares the whole root already.
    if api == "simple" or not changes.is_recheck_due(
        last, now=now, interval_seconds=interval_seconds
    ):
        return
    try:
        listing = await upstream.list_packages_with_serial()
    except NoXmlRpcError:
        return
    held = await asyncio.to_thread(lambda: {row.name: row.serial for row in state.iter_projects()})
    found = changes.recheck(admitted(listing.serials, filters), held)
    logger.info(
        "re-check of %d listed project(s): %d disagree with the mirror, %d of them gone",
        len(listing.serials),
        len(found.projects),
        len(found.gone),
    )

    def queue() -> None:
        state.enqueue(found.projects, display_names=listing.display_names, gone=found.gone, now=now)
        state.set_meta(RECHECK_META_KEY, repr(now))

    await asyncio.to_thread(queue)


def run_fetcher(
    upstream: Upstream,
    storage: Storage,
    state: StateStore,
    options: SyncOptions,
    *,
    tally: Tally,
    p: ProgressSink,
) -> Fetcher:
    """The downloads of one run, as ``options`` set them, reporting to ``p``, with the
    run's group commit (shared by the projects in flight)."""
    return Fetcher(
        upstream=upstream,
        storage=storage,
        state=state,
        commits=GroupCommit(state),
        download_concurrency=options.download_concurrency,
        tally=tally,
        progress=p,
        verify_provenance=options.verify_provenance,
    )


def run_record(report: SyncReport, started: float, finished: float, totals: Totals) -> RunRecord:
    """The history row of a run that started and finished at those Unix times."""
    return RunRecord(
        started=started,
        finished=finished,
        ok=report.ok,
        projects_synced=report.projects_synced,
        projects_removed=report.projects_removed,
        projects_failed=len(report.failures),
        files_downloaded=report.files_downloaded,
        bytes_downloaded=report.bytes_downloaded,
        files_deleted=report.files_deleted,
        serial=report.serial,
        upstream_serial=report.upstream_serial,
        totals=totals,
    )


def is_disk_full_or_read_only(exc: BaseException) -> bool:
    """Whether ``exc`` is a StorageError caused by a full disk, an exhausted quota or a
    read-only file system: trouble no project can get past, so the run stops."""
    if not isinstance(exc, StorageError):
        return False
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _DISK_FATAL_ERRNOS


_DISK_FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
