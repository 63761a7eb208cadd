"""Carrying out a plan's downloads: files and their ``.metadata``, verified on disk.

A :class:`Fetcher` belongs to one run. It brings every file a
:class:`~mirror.plan.ProjectPlan` fetches onto the disk (adopted when a matching file
is there already, else downloaded under the run's download semaphore, the wheel's
``.metadata`` derived from it in the same step when its ``METADATA`` hashes right),
then records them in one transaction before any page links them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import posixpath
from collections.abc import Mapping

from mirror.errors import MirrorError
from mirror.models import DistFile, PackagePath
from mirror.plan import FileFetch, ProjectPlan
from mirror.progress import ProgressSink
from mirror.report import Tally
from mirror.state import StateStore, StoredFile
from mirror.storage import Derivation, Storage, StoredBlob
from mirror.upstream import Upstream
from mirror.wheels import wheel_metadata

logger = logging.getLogger(__name__)

MAX_UNSIZED_FILE_BYTES = 64 * 1024 * 1024
"""Largest download whose size upstream does not advertise (a PEP 658 ``.metadata``
file, a few kB in practice): a hostile upstream cannot fill the disk through one."""


class Fetcher:
    """Downloads of one run, at most ``download_concurrency`` at once, counted in
    ``tally``."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        storage: Storage,
        state: StateStore,
        download_concurrency: int,
        tally: Tally,
        progress: ProgressSink,
    ) -> None:
        self._upstream = upstream
        self._storage = storage
        self._state = state
        self._slots = asyncio.Semaphore(download_concurrency)
        self._tally = tally
        self._progress = progress

    async def fetch(self, plan: ProjectPlan) -> dict[PackagePath, StoredFile]:
        """Bring every file of ``plan.fetch`` (and its ``.metadata``) onto the disk,
        concurrently, record them, and return the project's recorded files.

        The paths were noted as garbage before (:attr:`ProjectPlan.expected`). Every
        file is attempted even when one fails (a file that fails today should not stop
        its siblings from landing); the first error is then raised. Stopped
        (cancelled), what landed is recorded all the same.
        """
        state = self._state
        # One look at the disk for every file not recorded as it is upstream: a
        # matching file already there (a run killed after the rename but before
        # recording it, or an existing bandersnatch tree) is adopted, and temps a
        # killed download left are removed, as nothing else would ever find them.
        # The .metadata downloaded beside its file (see _fetch_file) is looked for in
        # the same step: that directory must not be swept while the file lands.
        wanted: list[tuple[PackagePath, str, int | None]] = [
            (f.path, f.sha256, f.size) for f in plan.adopt
        ]
        wanted += _sidecars_beside(plan)
        found = await self._storage.adopt_all(wanted)
        adopted = {path: blob for (path, _, _), blob in zip(wanted, found, strict=True)}
        errors: list[MirrorError] = []
        records: list[StoredFile] = []

        async def fetch(task: FileFetch) -> None:
            dist = task.dist
            try:
                record, metadata_error = await self._fetch_file(plan, task, adopted)
            except MirrorError as exc:
                logger.warning("%s: %s", dist.filename, exc)
                errors.append(exc)
                return
            records.append(record)
            if metadata_error is not None:
                logger.warning("%s.metadata: %s", dist.filename, metadata_error)
                errors.append(metadata_error)

        def record() -> dict[PackagePath, StoredFile]:
            # One transaction for the project's files, once each is verified on disk
            # (and before any page links them); then the rows the pages are built from.
            if records:
                state.record_files(records)
            return state.project_files(plan.name)

        try:
            async with asyncio.TaskGroup() as group:
                for task in plan.fetch:
                    group.create_task(fetch(task))
        except BaseException:
            # Otherwise its garbage rows would have the next run adopt or collect
            # those files.
            if records:
                await asyncio.to_thread(state.record_files, records)
            raise
        recorded = await asyncio.to_thread(record)
        if errors:
            raise errors[0]
        return recorded

    async def _fetch_file(
        self, plan: ProjectPlan, task: FileFetch, found: Mapping[PackagePath, StoredBlob | None]
    ) -> tuple[StoredFile, MirrorError | None]:
        """Bring one file (and its ``.metadata``) onto the disk, verified; return its
        row to record and the sidecar's error, if only the sidecar failed (the file
        itself is then recorded, so that the next run fetches the sidecar alone).
        ``found``: what the look at the disk found (the file's directory was then
        swept)."""
        dist = task.dist
        adopted = found.get(dist.path)
        async with self._slots:
            derive = task.derive_metadata
            metadata: StoredBlob | None = None
            metadata_error: MirrorError | None = None
            if task.recorded is not None:
                blob = StoredBlob(sha256=task.recorded.sha256, size=task.recorded.size)
            elif adopted is not None:
                blob = adopted
            elif derive or not task.fetch_metadata:
                # A wheel's .metadata is written from the wheel in the same step when
                # its METADATA hashes to the advertised sha256: no second request.
                derivation = None
                if derive:
                    assert dist.core_metadata_sha256 is not None
                    derivation = _derivation(dist, dist.core_metadata_sha256)
                blob = await self._download(
                    dist.path, dist.url, dist.sha256, dist.size, derivation=derivation
                )
                derive = False
                if blob.derived is not None:
                    self._tally.derived()
                    return _stored(plan, dist, blob, blob.derived), None
            else:
                # A .metadata that cannot come from the file is fetched beside it, not
                # after it: one round trip for both.
                # (Not a TaskGroup: the file's own error must come out as it is. The
                # sidecar's task returns its error, and is over before this returns.)
                sidecar = asyncio.ensure_future(self._sidecar_beside(dist, found))
                try:
                    blob = await self._download(dist.path, dist.url, dist.sha256, dist.size)
                except BaseException:
                    sidecar.cancel()
                    raise
                finally:
                    await asyncio.wait([sidecar])
                metadata, metadata_error = sidecar.result()
                return _stored(plan, dist, blob, metadata), metadata_error
            if task.fetch_metadata:
                metadata, metadata_error = await self._metadata_or_error(
                    dist, derive=derive, swept=task.recorded is None
                )
        return _stored(plan, dist, blob, metadata), metadata_error

    async def _sidecar_beside(
        self, dist: DistFile, found: Mapping[PackagePath, StoredBlob | None]
    ) -> tuple[StoredBlob | None, MirrorError | None]:
        """The ``.metadata`` downloaded while its file is (adopted when the look at
        the disk found it), without touching the directory the file lands in; its
        MirrorError returned rather than raised."""
        adopted = found.get(dist.metadata_path)
        if adopted is not None:
            return adopted, None
        try:
            sha256 = dist.core_metadata_sha256
            return await self._download(dist.metadata_path, dist.metadata_url, sha256, None), None
        except MirrorError as exc:
            return None, exc

    async def _metadata_or_error(
        self, dist: DistFile, *, derive: bool, swept: bool
    ) -> tuple[StoredBlob | None, MirrorError | None]:
        """:meth:`_fetch_metadata`, its MirrorError returned rather than raised (the
        file itself is recorded all the same)."""
        try:
            return await self._fetch_metadata(dist, derive=derive, swept=swept), None
        except MirrorError as exc:
            return None, exc

    async def _fetch_metadata(self, dist: DistFile, *, derive: bool, swept: bool) -> StoredBlob:
        """The file's PEP 658 sidecar, verified on disk: taken from the wheel on disk
        (``derive``, when not tried yet) when its ``METADATA`` hashes to the advertised
        sha256 (no request), else adopted from the disk or downloaded. ``swept``: the
        directory's stale temps are already gone."""
        sha256 = dist.core_metadata_sha256
        path = dist.metadata_path
        if sha256 is not None:
            if derive:
                derivation = _derivation(dist, sha256)
                derived = await self._storage.store_derived(
                    path, source=dist.path, derive=derivation.derive, sha256=sha256
                )
                if derived is not None:
                    self._tally.derived()
                    return derived
            adopted = await self._storage.adopt(path, sha256=sha256)
            if adopted is not None:
                return adopted
        elif not swept:
            # A run killed mid-download left its temp file in this directory; nothing
            # else would ever find it.
            await self._storage.remove_stale_temps(posixpath.dirname(path))
        return await self._download(path, dist.metadata_url, sha256, None)

    async def _download(
        self,
        path: PackagePath,
        url: str,
        sha256: str | None,
        size: int | None,
        *,
        derivation: Derivation | None = None,
    ) -> StoredBlob:
        limit = MAX_UNSIZED_FILE_BYTES if size is None else None
        blob = await self._upstream.download(
            url,
            lambda chunks: self._storage.store_stream(
                path, chunks, sha256=sha256, size=size, max_size=limit, derivation=derivation
            ),
            size=size,
        )
        self._tally.downloaded(blob.size)
        self._progress.bytes_downloaded(blob.size)
        return blob


def _derivation(dist: DistFile, sha256: str) -> Derivation:
    """How to take ``dist``'s ``.metadata`` from the wheel on disk."""
    return Derivation(
        relative=dist.metadata_path,
        derive=functools.partial(
            wheel_metadata, filename=dist.filename, max_bytes=MAX_UNSIZED_FILE_BYTES
        ),
        sha256=sha256,
    )


def _sidecars_beside(plan: ProjectPlan) -> list[tuple[PackagePath, str, int | None]]:
    """``(path, sha256, None)`` of the ``.metadata`` (of known sha256) fetched beside
    its file, being one that cannot be derived from it."""
    return [
        (task.dist.metadata_path, sha256, None)
        for task in plan.fetch
        if task.recorded is None
        and task.fetch_metadata
        and not task.derive_metadata
        and (sha256 := task.dist.core_metadata_sha256) is not None
    ]


def _stored(
    plan: ProjectPlan, dist: DistFile, blob: StoredBlob, metadata: StoredBlob | None
) -> StoredFile:
    """The row to record for ``dist`` stored as ``blob`` (with its sidecar)."""
    return StoredFile(
        path=dist.path,
        project=plan.name,
        filename=dist.filename,
        size=blob.size,
        sha256=blob.sha256,
        metadata_sha256=metadata.sha256 if metadata is not None else None,
        metadata_size=metadata.size if metadata is not None else None,
    )
