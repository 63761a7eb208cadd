"""One sync run: find what changed upstream, bring those projects in step, write pages.

The order of effects for a project is what keeps a client from ever seeing a broken
mirror (see ``docs/architecture.md``): verified files land and are recorded first,
then the pages that link them are replaced atomically, then one state transaction
commits the project and moves files the page no longer links to the garbage table,
and only then are those files unlinked.

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
import functools
import logging
import posixpath
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from packaging.utils import NormalizedName

from mirror.errors import MirrorError, ProjectNotFoundError, StorageError
from mirror.filters import FilterSet
from mirror.filters.dependencies import merge as merge_needs
from mirror.filters.dependencies import needs_of, requires_dist
from mirror.models import DistFile, ListingRow, PackagePath, ProjectDetail, Serial
from mirror.models import changed_projects as fold_changelog
from mirror.progress import NoProgress, ProgressSink
from mirror.simple import (
    API_VERSION,
    render_project_html,
    render_project_json,
    root_pages_chunks,
)
from mirror.state import (
    FILTERS_META_KEY,
    ROOT_HTML_META_KEY,
    UNFINISHED_META_KEY,
    ProjectRow,
    RunRecord,
    StateStore,
    StoredFile,
    TodoItem,
)
from mirror.storage import Derivation, Storage, StoredBlob
from mirror.upstream import Upstream
from mirror.wheels import wheel_metadata

logger = logging.getLogger(__name__)

PageFormat = Literal["html", "json"]

_MAX_CLOSURE_ROUNDS = 20

_QUEUED_ITEMS = 1_000
"""Todo items handed to the workers ahead of them (the rest stay in the state store)."""

MAX_UNSIZED_FILE_BYTES = 64 * 1024 * 1024
"""Largest download whose size upstream does not advertise (a PEP 658 ``.metadata``
file, a few kB in practice): a hostile upstream cannot fill the disk through one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOptions:
    """How a run behaves; built from the config by the CLI."""

    workers: int = 4
    download_concurrency: int = 16
    formats: frozenset[str] = frozenset({"html", "json"})
    keep_json: bool = False
    metadata_source: Literal["simple", "json"] = "simple"
    retry_base_seconds: float = 300.0
    retry_max_seconds: float = 86_400.0
    metrics_file: Path | None = None
    """Where to write Prometheus metrics at the end of each run (None: nowhere)."""
    filters: FilterSet = field(default_factory=FilterSet)
    """What the mirror keeps (``[plugins] enabled``); empty keeps everything."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectFailure:
    """A project that could not be brought in step during a run."""

    name: NormalizedName
    error: str
    attempts: int
    next_attempt: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """What a run did; ``ok`` is what the exit code reports."""

    serial: Serial | None
    projects_synced: int
    projects_removed: int
    failures: tuple[ProjectFailure, ...]
    files_downloaded: int
    bytes_downloaded: int
    files_deleted: int
    pending: int
    """Projects still in the todo queue (failed ones waiting for their next attempt)."""
    elapsed_seconds: float
    upstream_serial: Serial | None = None
    """Upstream's serial as this run saw it; None for a ``--project`` run."""

    @property
    def ok(self) -> bool:
        """True when every project this run attempted is in step."""
        return not self.failures


@dataclass(slots=True)
class _Tally:
    """Counters shared by the workers of one run (only touched on the event loop)."""

    synced: int = 0
    removed: int = 0
    files_downloaded: int = 0
    bytes_downloaded: int = 0
    files_deleted: int = 0
    files_derived: int = 0
    """``.metadata`` files taken from their wheel on disk instead of downloaded."""
    failures: list[ProjectFailure] = field(default_factory=list)
    root_dirty: bool = False


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
        self._download_slots = asyncio.Semaphore(options.download_concurrency)
        self._filters = options.filters  # plus the dependency closure, once loaded
        self._needs: dict[NormalizedName, tuple[str, ...]] = {}

    async def run(self, *, projects: Sequence[NormalizedName] | None = None) -> SyncReport:
        """Bring the mirror in step with upstream.

        With ``projects``, sync just those (whatever their serial) and leave the
        mirror's serial and todo queue alone. Otherwise read upstream's changes since
        the mirror serial (the full listing on the first run), queue them, advance the
        serial, and work through every due item in the queue.
        """
        started = time.monotonic()
        started_at = self._clock()
        tally = _Tally()
        upstream_serial: Serial | None = None
        await self._begin(tally)
        await self._load_needs()
        pages: Iterator[list[TodoItem]]
        if projects is not None:
            items = [TodoItem.fresh(name) for name in dict.fromkeys(projects)]
            count, pages = len(items), iter([items])
        else:
            await self._follow_filters()
            upstream_serial = await self._queue_changes()
            now = self._clock()
            count = await asyncio.to_thread(self._state.due_count, now)
            pages = self._state.due_pages(now)
        logger.info("%d project(s) to sync", count)
        self._progress.start(count)
        try:
            await self._sync_following_dependencies(pages, tally)
        finally:
            self._progress.finish()
        if tally.files_derived:
            logger.info(
                "%d .metadata file(s) taken from their wheels instead of downloaded",
                tally.files_derived,
            )
        serial = await asyncio.to_thread(self._state.mirror_serial)
        await self._write_root(serial, changed=tally.root_dirty)
        await self._storage.write_bytes(
            "last-modified", datetime.now(UTC).strftime("%Y%m%dT%H:%M:%S\n").encode()
        )
        # Last, so that files a killed run left on disk unrecorded were adopted by the
        # syncs above (when still wanted) before the rest is removed.
        await self._collect_garbage(tally)
        await asyncio.to_thread(self._state.set_meta, UNFINISHED_META_KEY, "")
        pending = await asyncio.to_thread(self._state.todo_count)
        report = SyncReport(
            serial=serial,
            projects_synced=tally.synced,
            projects_removed=tally.removed,
            failures=tuple(sorted(tally.failures, key=lambda f: f.name)),
            files_downloaded=tally.files_downloaded,
            bytes_downloaded=tally.bytes_downloaded,
            files_deleted=tally.files_deleted,
            pending=pending,
            elapsed_seconds=time.monotonic() - started,
            upstream_serial=upstream_serial,
        )
        await asyncio.to_thread(self._record_run, report, started_at)
        return report

    def _record_run(self, report: SyncReport, started_at: float) -> None:
        """Append the run to the state's history and refresh the metrics file
        (in a worker thread)."""
        self._state.record_run(
            RunRecord(
                started=started_at,
                finished=self._clock(),
                ok=report.ok,
                projects_synced=report.projects_synced,
                projects_removed=report.projects_removed,
                projects_failed=len(report.failures),
                files_downloaded=report.files_downloaded,
                bytes_downloaded=report.bytes_downloaded,
                files_deleted=report.files_deleted,
                serial=report.serial,
                upstream_serial=report.upstream_serial,
                totals=self._state.totals(),
            )
        )
        if self._options.metrics_file is not None:
            # Only when asked for: it brings in aiohttp's server half, which a sync
            # otherwise never loads.
            from mirror.metrics import write_metrics_file  # noqa: PLC0415

            write_metrics_file(self._options.metrics_file, self._state, now=self._clock())

    # --- change detection -----------------------------------------------------------

    async def _queue_changes(self) -> Serial:
        """Queue every upstream change since the mirror serial and advance the serial;
        return the serial upstream is at, as far as this run knows.

        The queue insert and the serial update are one transaction, so a crash either
        loses both (the next run reads the same changes again) or keeps both.
        """
        serial = await asyncio.to_thread(self._state.mirror_serial)
        display_names: dict[NormalizedName, str] = {}
        if serial is None:
            # Read the last serial first: a change that lands while the listing is built
            # is then seen again by the next run's changelog, never missed.
            last = await self._upstream.changelog_last_serial()
            changes, display_names = await self._first_listing()
            # Projects we hold that upstream no longer lists are queued too: they will
            # answer 404 and be removed.
            for row in await asyncio.to_thread(lambda: list(self._state.iter_projects())):
                changes.setdefault(row.name, Serial(0))
            new_serial = max([last, *changes.values()])
            logger.info("first sync: %d project(s) to consider, serial %d", len(changes), last)
        else:
            entries = await self._upstream.changelog_since_serial(serial)
            changes = fold_changelog(entries)
            new_serial = max([serial, *(e.serial for e in entries)])
            logger.info(
                "%d changelog rows since serial %d: %d project(s) changed, upstream at %d",
                len(entries),
                serial,
                len(changes),
                new_serial,
            )
        changes = self._admitted(changes)
        await asyncio.to_thread(
            lambda: self._state.enqueue(
                changes,
                display_names=display_names,
                mirror_serial=Serial(new_serial),
                now=self._clock(),
            )
        )
        return Serial(new_serial)

    # --- filters ------------------------------------------------------------------

    async def _first_listing(
        self,
    ) -> tuple[dict[NormalizedName, Serial], dict[NormalizedName, str]]:
        """``({project: serial}, {project: display name})`` for a first sync. With an
        allowlist that is the allowed names (serial 0: any page is fresh enough), so
        the full listing of hundreds of thousands of names is never fetched."""
        allowed = self._filters.included_names()
        if allowed is not None:
            return dict.fromkeys(sorted(allowed), Serial(0)), {}
        listing = await self._upstream.list_packages_with_serial()
        return listing.serials, listing.display_names

    def _admitted(self, changes: dict[NormalizedName, Serial]) -> dict[NormalizedName, Serial]:
        """``changes`` without the projects the name filters leave out."""
        filters = self._filters
        if all(filters.check_name(name) is None for name in changes):
            return changes  # no copy of a first sync's 600,000 names
        admitted = {name: s for name, s in changes.items() if filters.check_name(name) is None}
        logger.info("filters leave out %d project(s) by name", len(changes) - len(admitted))
        return admitted

    async def _follow_filters(self) -> None:
        """Reconcile the mirror with its filters when their config changed since the
        last run (the fingerprint in the state's meta table).

        Every project the mirror holds is queued again: its sync removes it when the
        filters now leave it out (pages first, then files) and otherwise trims or
        grows it to what the filters keep. The projects an allowlist names are queued
        too; without an allowlist the full listing is read once, so projects a looser
        filter now admits are found. Nothing walks the tree. The fingerprint is stored
        only after the queue is, so a crash in between repeats the reconciliation.
        """
        filters = self._options.filters
        fingerprint = filters.fingerprint
        known = await asyncio.to_thread(self._state.get_meta, FILTERS_META_KEY)
        if known == fingerprint:
            return
        if known is None and not filters.filters:
            # A mirror from before filters existed: it was unfiltered, so it still is.
            await asyncio.to_thread(self._state.set_meta, FILTERS_META_KEY, fingerprint)
            return
        changes: dict[NormalizedName, Serial] = {}
        display_names: dict[NormalizedName, str] = {}
        if await asyncio.to_thread(self._state.mirror_serial) is not None:
            listed, display_names = await self._first_listing()
            changes = self._admitted(listed)
        for row in await asyncio.to_thread(lambda: list(self._state.iter_projects())):
            changes.setdefault(row.name, Serial(0))
        if changes:
            logger.info("the filters changed: re-evaluating %d project(s)", len(changes))
        await asyncio.to_thread(
            lambda: self._state.enqueue(changes, display_names=display_names, now=self._clock())
        )
        await asyncio.to_thread(self._state.set_meta, FILTERS_META_KEY, fingerprint)

    async def _load_needs(self) -> None:
        """Admit the dependency closure the last run found (``[allowlist]
        dependencies = true``)."""
        if self._options.filters.marker_environments() is None:
            return
        # An unreadable stored closure reads as none: it is found again after the syncs.
        needs = await asyncio.to_thread(self._state.dependency_needs)
        self._needs = needs
        self._filters = self._options.filters.with_needs(needs)

    async def _sync_following_dependencies(
        self, pages: Iterator[list[TodoItem]], tally: _Tally
    ) -> None:
        """Sync the items of ``pages``; then, for an allowlist that follows dependencies, read the
        requirements of what is mirrored, admit and sync what changed in the closure,
        and repeat until the closure stops changing."""
        await self._sync_projects(pages, tally)
        environments = self._options.filters.marker_environments()
        if environments is None:
            return
        for _ in range(_MAX_CLOSURE_ROUNDS):
            needs = await self._dependency_closure(environments)
            if needs == self._needs:
                return
            changed = sorted(
                name
                for name in needs.keys() | self._needs.keys()
                if needs.get(name) != self._needs.get(name)
            )
            logger.info("dependencies: %d project(s) needed, %d changed", len(needs), len(changed))
            await asyncio.to_thread(self._state.set_dependency_needs, needs)
            self._needs = needs
            self._filters = self._options.filters.with_needs(needs)
            # Queued, so that one failing now is retried by later runs.
            await asyncio.to_thread(
                self._state.enqueue, dict.fromkeys(changed, Serial(0)), now=self._clock()
            )
            await self._sync_projects(iter([[TodoItem.fresh(name) for name in changed]]), tally)
        logger.warning("the dependency closure still changes after %d rounds", _MAX_CLOSURE_ROUNDS)

    async def _dependency_closure(
        self, environments: Sequence[Mapping[str, str]]
    ) -> dict[NormalizedName, tuple[str, ...]]:
        """``{project: specifiers}`` needed by the allowlisted projects and, in turn,
        by those, from the ``Requires-Dist`` of the ``.metadata`` files mirrored."""
        needs: dict[NormalizedName, set[str]] = {}
        frontier = sorted(self._options.filters.included_names() or ())
        seen: set[NormalizedName] = set()
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            stored = await asyncio.to_thread(self._state.project_files, name)
            for path, known in sorted(stored.items()):
                if known.metadata_sha256 is None:
                    continue
                metadata = await self._storage.read_bytes(f"{path}.metadata")
                for dependency, specs in needs_of(requires_dist(metadata), environments).items():
                    needs.setdefault(dependency, set()).update(specs)
                    frontier.append(dependency)
        return merge_needs(needs)

    # --- the worker pool ----------------------------------------------------------

    async def _sync_projects(self, pages: Iterator[list[TodoItem]], tally: _Tally) -> None:
        """Sync every item of ``pages`` with the configured number of workers. Each
        page is read (in a worker thread) once the workers have taken most of the one
        before, so a page and :data:`_QUEUED_ITEMS` items at most are held at once."""
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
                await self._sync_one(item, tally)

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

    async def _sync_one(self, item: TodoItem, tally: _Tally) -> None:
        started = time.monotonic()
        try:
            removed = await self._sync_project(item, tally)
        except MirrorError as exc:
            if is_disk_full_or_read_only(exc):
                # Every other project would fail the same way, one by one, and count
                # failed attempts that are not theirs: stop the run instead.
                raise
            failure = await self._record_failure(item, exc)
            tally.failures.append(failure)
            self._progress.project_done(ok=False)
            logger.error(
                "project %s failed (attempt %d, next try in %.0fs): %s",
                item.name,
                failure.attempts,
                max(0.0, failure.next_attempt - self._clock()),
                exc,
            )
            return
        if removed:
            tally.removed += 1
        else:
            tally.synced += 1
        tally.root_dirty = True
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

    # --- one project ----------------------------------------------------------------

    async def _sync_project(self, item: TodoItem, tally: _Tally) -> bool:
        """Bring one project in step. Returns True when it was removed (404 upstream, or
        left out by the filters)."""
        excluded = self._filters.check_name(item.name)
        if excluded is not None:
            await self._remove_project(item.name, tally, why=f"left out by {excluded}")
            return True
        min_serial = item.serial if item.serial > 0 else None
        try:
            detail = await self._upstream.project_detail(
                item.name, min_serial=min_serial, source=self._options.metadata_source
            )
        except ProjectNotFoundError:
            await self._remove_project(item.name, tally)
            return True
        outcome = self._filters.apply(detail)
        for drop in outcome.drops:
            logger.debug("%s: filters leave out %s", item.name, drop)
        if outcome.detail is None:
            await self._remove_project(item.name, tally, why=f"left out by {outcome.drops[-1]}")
            return True
        detail = outcome.detail
        stored, row = await self._fetch_files(detail, tally)
        published = _published(detail, stored)
        display_name = (
            detail.display_name
            or item.display_name
            or (row.display_name if row is not None else None)
            or await self._display_name_from_json(item.name)
        )
        await self._write_project_pages(published, display_name)
        garbage = await asyncio.to_thread(
            lambda: self._state.commit_project(
                name=item.name,
                display_name=display_name,
                serial=detail.serial,
                status=detail.status.status,
                keep={f.path for f in published.files},
            )
        )
        await self._delete_files(garbage, tally)
        logger.info(
            "synced %s at serial %d: %d file(s) listed, %d removed",
            item.name,
            detail.serial,
            len(published.files),
            len(garbage),
        )
        return False

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

    async def _fetch_files(
        self, detail: ProjectDetail, tally: _Tally
    ) -> tuple[dict[PackagePath, StoredFile], ProjectRow | None]:
        """Download every file (and ``.metadata``) the project lacks, concurrently;
        return the project's recorded files afterwards, and its committed row.

        Every file is attempted even when one fails (a file that fails today should
        not stop its siblings from landing); the first error is then raised.
        """
        state = self._state

        def files_to_fetch() -> tuple[dict[PackagePath, StoredFile], list[DistFile]]:
            # One thread hop: what is recorded, and the garbage notes for the rest.
            stored = state.project_files(detail.name)
            wanted = [f for f in detail.files if _needs_fetch(f, stored.get(f.path))]
            if wanted:
                # Before the first byte lands: a run killed from here on leaves
                # garbage rows that lead a later run to what it left on disk.
                expected = [f.path for f in wanted]
                expected += [f.metadata_path for f in wanted if f.core_metadata]
                state.expect_files(expected)
            return stored, wanted

        stored, wanted = await asyncio.to_thread(files_to_fetch)
        if not wanted:
            return stored, await asyncio.to_thread(state.project, detail.name)
        # One look at the disk for every file not recorded as it is upstream: a
        # matching file already there (a run killed after the rename but before
        # recording it, or an existing bandersnatch tree) is adopted, and temps a
        # killed download left are removed, as nothing else would ever find them.
        missing = [f for f in wanted if not _recorded(f, stored.get(f.path))]
        found = await self._storage.adopt_all([(f.path, f.sha256, f.size) for f in missing])
        adopted = {f.path: blob for f, blob in zip(missing, found, strict=True)}
        errors: list[MirrorError] = []
        records: list[StoredFile] = []

        async def fetch(dist: DistFile) -> None:
            try:
                record, metadata_error = await self._fetch_file(
                    detail.name, dist, stored.get(dist.path), adopted.get(dist.path), tally
                )
            except MirrorError as exc:
                logger.warning("%s: %s", dist.filename, exc)
                errors.append(exc)
                return
            records.append(record)
            if metadata_error is not None:
                logger.warning("%s.metadata: %s", dist.filename, metadata_error)
                errors.append(metadata_error)

        def record() -> tuple[dict[PackagePath, StoredFile], ProjectRow | None]:
            # One transaction for the project's files, once each is verified on disk
            # (and before any page links them); then the rows the pages are built from.
            if records:
                state.record_files(records)
            return state.project_files(detail.name), state.project(detail.name)

        try:
            async with asyncio.TaskGroup() as group:
                for dist in wanted:
                    group.create_task(fetch(dist))
        except BaseException:
            # Stopped (cancelled): what landed is recorded all the same. Otherwise its
            # garbage rows would have the next run adopt or collect those files.
            if records:
                await asyncio.to_thread(state.record_files, records)
            raise
        recorded = await asyncio.to_thread(record)
        if errors:
            raise errors[0]
        return recorded

    async def _fetch_file(
        self,
        project: NormalizedName,
        dist: DistFile,
        known: StoredFile | None,
        adopted: StoredBlob | None,
        tally: _Tally,
    ) -> tuple[StoredFile, MirrorError | None]:
        """Bring one file (and its ``.metadata``) onto the disk, verified; return its
        row to record and the sidecar's error, if only the sidecar failed (the file
        itself is then recorded, so that the next run fetches the sidecar alone).
        ``adopted``: the file found on disk already (its directory is then swept)."""
        async with self._download_slots:
            derivable = dist.core_metadata_sha256 is not None and dist.filename.endswith(".whl")
            swept = not _recorded(dist, known)
            if not swept:
                assert known is not None
                blob = StoredBlob(sha256=known.sha256, size=known.size)
            elif adopted is not None:
                blob = adopted
            else:
                # A wheel's .metadata is written from the wheel in the same step when
                # its METADATA hashes to the advertised sha256: no second request.
                derivation = None
                if derivable:
                    assert dist.core_metadata_sha256 is not None
                    derivation = self._derivation(dist, dist.core_metadata_sha256)
                blob = await self._download(
                    dist.path, dist.url, dist.sha256, dist.size, tally, derivation=derivation
                )
                derivable = False
            metadata: StoredBlob | None = None
            metadata_error: MirrorError | None = None
            if dist.core_metadata:
                try:
                    if blob.derived is not None:
                        tally.files_derived += 1
                        metadata = blob.derived
                    else:
                        metadata = await self._fetch_metadata(
                            dist, tally, derive=derivable, swept=swept
                        )
                except MirrorError as exc:
                    metadata_error = exc
        record = StoredFile(
            path=dist.path,
            project=project,
            filename=dist.filename,
            size=blob.size,
            sha256=blob.sha256,
            metadata_sha256=metadata.sha256 if metadata is not None else None,
            metadata_size=metadata.size if metadata is not None else None,
        )
        return record, metadata_error

    @staticmethod
    def _derivation(dist: DistFile, sha256: str) -> Derivation:
        return Derivation(
            relative=dist.metadata_path,
            derive=functools.partial(
                wheel_metadata, filename=dist.filename, max_bytes=MAX_UNSIZED_FILE_BYTES
            ),
            sha256=sha256,
        )

    async def _fetch_metadata(
        self, dist: DistFile, tally: _Tally, *, derive: bool, swept: bool
    ) -> StoredBlob:
        """The file's PEP 658 sidecar, verified on disk: taken from the wheel on disk
        (``derive``, when not tried yet) when its ``METADATA`` hashes to the advertised
        sha256 (no request), else adopted from the disk or downloaded. ``swept``: the
        directory's stale temps are already gone."""
        sha256 = dist.core_metadata_sha256
        path = dist.metadata_path
        if sha256 is not None:
            if derive:
                derivation = self._derivation(dist, sha256)
                derived = await self._storage.store_derived(
                    path, source=dist.path, derive=derivation.derive, sha256=sha256
                )
                if derived is not None:
                    tally.files_derived += 1
                    return derived
            adopted = await self._storage.adopt(path, sha256=sha256)
            if adopted is not None:
                return adopted
        elif not swept:
            # A run killed mid-download left its temp file in this directory; nothing
            # else would ever find it.
            await self._storage.remove_stale_temps(posixpath.dirname(path))
        return await self._download(path, dist.metadata_url, sha256, None, tally)

    async def _download(
        self,
        path: PackagePath,
        url: str,
        sha256: str | None,
        size: int | None,
        tally: _Tally,
        *,
        derivation: Derivation | None = None,
    ) -> StoredBlob:
        limit = MAX_UNSIZED_FILE_BYTES if size is None else None
        blob = await self._upstream.download(
            url,
            lambda chunks: self._storage.store_stream(
                path, chunks, sha256=sha256, size=size, max_size=limit, derivation=derivation
            ),
        )
        tally.files_downloaded += 1
        tally.bytes_downloaded += blob.size
        self._progress.bytes_downloaded(blob.size)
        return blob

    async def _write_project_pages(self, detail: ProjectDetail, display_name: str) -> None:
        base = f"simple/{detail.name}"
        pages: list[tuple[str, bytes]] = []
        if "html" in self._options.formats:
            html = render_project_html(detail, display_name=display_name)
            pages += [(f"{base}/index.html", html), (f"{base}/index.v1_html", html)]
        if "json" in self._options.formats:
            pages.append((f"{base}/index.v1_json", render_project_json(detail)))
        await self._storage.write_files(pages)
        if self._options.keep_json:
            try:
                raw = await self._upstream.project_json_raw(detail.name)
            except ProjectNotFoundError:
                # The JSON API 404s for a project without releases; its simple page exists.
                await self._storage.remove_stale_temps(f"pypi/{detail.name}")
                await self._storage.delete(f"pypi/{detail.name}/json")
            else:
                await self._storage.write_files([(f"pypi/{detail.name}/json", raw)])

    async def _remove_project(
        self, name: NormalizedName, tally: _Tally, *, why: str = "gone upstream"
    ) -> None:
        """Upstream no longer has the project: pages go first, then its files."""
        await self._storage.delete_tree(f"simple/{name}")
        await self._storage.delete_tree(f"pypi/{name}")
        garbage = await asyncio.to_thread(self._state.remove_project, name)
        await self._delete_files(garbage, tally)
        logger.info("removed %s: %s (%d file(s) deleted)", name, why, len(garbage))

    async def _delete_files(self, paths: Iterable[PackagePath], tally: _Tally) -> None:
        paths = list(paths)
        for path in paths:
            # A download killed mid-stream left its temp beside the file; once the
            # file goes, no sync would ever look in this directory again.
            await self._storage.remove_stale_temps(posixpath.dirname(path))
            await self._storage.delete(path)
        if paths:
            await asyncio.to_thread(self._state.forget_garbage, paths)
            tally.files_deleted += len(paths)

    async def _begin(self, tally: _Tally) -> None:
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
            tally.root_dirty = True
            await asyncio.to_thread(self._state.set_meta, ROOT_HTML_META_KEY, "")
            await self._storage.remove_stale_temps("")
            await self._storage.remove_stale_temps("simple")

    async def _collect_garbage(self, tally: _Tally) -> None:
        """Unlink the garbage paths: files a run committed away but did not get to
        delete, and downloads a failed or killed run did not record (see
        :meth:`StateStore.expect_files`), with any temps beside them."""
        garbage = await asyncio.to_thread(self._state.garbage)
        if garbage:
            logger.info(
                "collecting %d garbage path(s): files the state dropped, or downloads a"
                " failed or interrupted run did not record",
                len(garbage),
            )
            await self._delete_files(garbage, tally)

    async def _write_root(self, serial: Serial | None, *, changed: bool) -> None:
        """Rewrite the root index pages that are out of date (or missing) from the
        state store, a page of rows at a time.

        The JSON page carries every project's serial, so it is rewritten whenever a
        project changed (``changed``). The HTML pages only name the projects, so they
        are rewritten only when the state says the names changed (see
        :data:`ROOT_HTML_META_KEY`): at 600,000 projects that is 50 MB not written on
        most runs.
        """
        html_stale = "html" in self._options.formats and not await self._html_root_current()
        json_stale = "json" in self._options.formats and (
            changed or not await self._storage.exists("simple/index.v1_json")
        )
        if not html_stale and not json_stale:
            return
        relatives = ["simple/index.html", "simple/index.v1_html"] if html_stale else []
        if json_stale:
            relatives.append("simple/index.v1_json")
        counted = [0]

        def produce() -> Iterator[list[bytes]]:
            pages = self._state.listing_pages()
            for page_html, page_json in root_pages_chunks(_counting(pages, counted), serial=serial):
                chunks = [page_html, page_html] if html_stale else []
                if json_stale:
                    chunks.append(page_json)
                yield chunks

        await self._storage.write_generated(relatives, produce)
        if html_stale:
            await asyncio.to_thread(self._state.set_meta, ROOT_HTML_META_KEY, API_VERSION)
        logger.info("wrote the root index (%s): %d project(s)", ", ".join(relatives), counted[0])

    async def _html_root_current(self) -> bool:
        """Whether both HTML root pages are on disk and name the committed projects."""
        current = await asyncio.to_thread(self._state.get_meta, ROOT_HTML_META_KEY)
        return (
            current == API_VERSION
            and await self._storage.exists("simple/index.html")
            and await self._storage.exists("simple/index.v1_html")
        )


def _counting(pages: Iterable[list[ListingRow]], counted: list[int]) -> Iterator[list[ListingRow]]:
    """``pages`` as they are, adding up their projects in ``counted[0]``."""
    for page in pages:
        counted[0] += len(page)
        yield page


def is_disk_full_or_read_only(exc: BaseException) -> bool:
    """Whether ``exc`` is a StorageError caused by a full disk, an exhausted quota or a
    read-only file system: trouble no project can get past, so the run stops."""
    if not isinstance(exc, StorageError):
        return False
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _DISK_FATAL_ERRNOS


_DISK_FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _needs_fetch(dist: DistFile, known: StoredFile | None) -> bool:
    if not _recorded(dist, known):
        return True
    assert known is not None
    return dist.core_metadata and known.metadata_sha256 is None


def _recorded(dist: DistFile, known: StoredFile | None) -> bool:
    """Whether the state store holds ``dist`` itself as upstream has it."""
    return known is not None and known.sha256 == dist.sha256


def _published(detail: ProjectDetail, stored: dict[PackagePath, StoredFile]) -> ProjectDetail:
    """The detail as the mirror publishes it: only files verified on disk, each
    advertising the ``.metadata`` hash we verified ourselves."""
    files = tuple(
        replace(
            dist,
            core_metadata=known.metadata_sha256 is not None,
            core_metadata_sha256=known.metadata_sha256,
        )
        for dist in detail.files
        if (known := stored.get(dist.path)) is not None and known.sha256 == dist.sha256
    )
    return replace(detail, files=files)
