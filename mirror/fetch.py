"""Carrying out a plan's downloads: files and their ``.metadata``, verified on disk.

A :class:`Fetcher` belongs to one run. It brings every file a
:class:`~mirror.plan.ProjectPlan` fetches onto the disk (adopted when a matching file
is there already, else downloaded under the run's download semaphore, the wheel's
``.metadata`` derived from it in the same step when its ``METADATA`` hashes right),
then records them in one transaction before any page links them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import posixpath
from collections.abc import AsyncIterator, Mapping

from mirror.errors import MirrorError, ProvenanceError
from mirror.groupcommit import GroupCommit
from mirror.models import DistFile, PackagePath
from mirror.plan import FileFetch, ProjectPlan, Recorded
from mirror.progress import ProgressSink
from mirror.provenance import MAX_PROVENANCE_BYTES, check_provenance
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
        commits: GroupCommit,
        download_concurrency: int,
        tally: Tally,
        progress: ProgressSink,
        verify_provenance: bool = False,
    ) -> None:
        self._upstream = upstream
        self._verify_provenance = verify_provenance
        self._storage = storage
        self._state = state
        self._commits = commits
        self._slots = asyncio.Semaphore(download_concurrency)
        self._tally = tally
        self._progress = progress

    @property
    def commits(self) -> GroupCommit:
        """The run's group commit, which records the downloads."""
        return self._commits

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
        refused: list[PackagePath] = []

        async def fetch(task: FileFetch) -> None:
            dist = task.dist
            try:
                record, metadata_error = await self._fetch_file(plan, task, adopted)
            except MirrorError as exc:
                logger.warning("%s: %s", dist.filename, exc)
                errors.append(exc)
                return
            if record is None:
                # Left out, as a filter would: the project's other files and pages go
                # on (a failure would hold its new releases back at every retry).
                logger.warning("%s refused: %s", dist.filename, metadata_error)
                if task.recorded is not None:
                    refused.append(dist.path)
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
            if refused:
                # Recorded before, refused now (verify-provenance): the pages written
                # next leave them out, the garbage collection unlinks them.
                state.forget_files(refused)
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
        recorded = await self._commits.call(record)
        if errors:
            raise errors[0]
        return recorded

    async def _fetch_file(
        self, plan: ProjectPlan, task: FileFetch, found: Mapping[PackagePath, StoredBlob | None]
    ) -> tuple[StoredFile | None, MirrorError | None]:
        """:meth:`_file_and_metadata` with the file's PEP 740 provenance fetched beside
        it (concurrently, not after it). A provenance that cannot be had leaves the
        file without one, unless ``verify_provenance``: then the file is refused (no
        row; the error)."""
        dist = task.dist
        recorded = task.recorded
        kept = _kept_provenance(recorded)
        if not task.fetch_provenance or kept is not None:
            record, error = await self._file_and_metadata(plan, task, found)
            return _with_provenance(record, kept), error
        provenance_task = asyncio.ensure_future(self._fetch_provenance(dist))
        try:
            if recorded is not None and (recorded.metadata_sha256 or not task.fetch_metadata):
                # Only the provenance was missing.
                record = _stored(
                    plan,
                    dist,
                    StoredBlob(sha256=recorded.sha256, size=recorded.size),
                    _kept_metadata(recorded),
                )
                error = None
            else:
                record, error = await self._file_and_metadata(plan, task, found)
        except BaseException:
            provenance_task.cancel()
            raise
        finally:
            # (Not a TaskGroup, as for the .metadata beside the file: the file's own
            # error must come out as it is; the provenance's task returns its error.)
            await asyncio.wait([provenance_task])
        provenance = provenance_task.result()
        if not isinstance(provenance, MirrorError):
            return _with_provenance(record, provenance), error
        if self._verify_provenance:
            return None, provenance
        logger.warning("%s: provenance not mirrored: %s", dist.filename, provenance)
        return record, error

    async def _fetch_provenance(self, dist: DistFile) -> StoredBlob | MirrorError:
        """The file's PEP 740 provenance, checked (:func:`check_provenance`) and written
        beside it, or why not (never raised: the caller decides what it costs)."""
        assert dist.provenance is not None
        filename = dist.filename

        async def collect(chunks: AsyncIterator[bytes]) -> bytes:
            body = bytearray()
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_PROVENANCE_BYTES:
                    # Refused as it arrives: an endless body costs the cap, no more.
                    raise ProvenanceError(
                        f"{filename}: provenance over {MAX_PROVENANCE_BYTES} bytes"
                    )
            return bytes(body)

        try:
            body = await self._upstream.download(dist.provenance, collect)
            await asyncio.to_thread(
                check_provenance,
                body,
                filename=filename,
                sha256=dist.sha256,
                verify_subjects=self._verify_provenance,
            )
            # A verified store, not write_files: that one first sweeps the directory's
            # temps, and this directory is the file's, whose temp is being written now.
            stored = await self._storage.store_stream(
                dist.provenance_path,
                _once(body),
                sha256=hashlib.sha256(body).hexdigest(),
                size=len(body),
            )
        except MirrorError as exc:
            return exc
        self._tally.downloaded(len(body))
        return stored

    async def _file_and_metadata(
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


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a stream of one chunk."""
    yield data


def _kept_provenance(recorded: Recorded | None) -> StoredBlob | None:
    """The provenance copy ``recorded`` has on disk already, if any."""
    if recorded is None or recorded.provenance_sha256 is None:
        return None
    assert recorded.provenance_size is not None
    return StoredBlob(sha256=recorded.provenance_sha256, size=recorded.provenance_size)


def _kept_metadata(recorded: Recorded) -> StoredBlob | None:
    """The ``.metadata`` ``recorded`` has on disk already, if any."""
    if recorded.metadata_sha256 is None:
        return None
    assert recorded.metadata_size is not None
    return StoredBlob(sha256=recorded.metadata_sha256, size=recorded.metadata_size)


def _with_provenance(record: StoredFile, provenance: StoredBlob | None) -> StoredFile:
    """``record`` with its provenance copy (or none)."""
    if provenance is None:
        return record
    return dataclasses.replace(
        record, provenance_sha256=provenance.sha256, provenance_size=provenance.size
    )


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
