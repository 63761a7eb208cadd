"""The file-system backend: the served tree is a directory on a local disk.

Every write goes to a temporary file in the target's own directory (so the rename
cannot cross file systems), named ``.<filename>.<random>.part`` so it is hidden from
directory listings and recognisable after a ``kill -9``. Only when the bytes are
complete and verified is the temp made ``0644``, fsynced and ``os.replace``-d over the
target; the directory is then fsynced so the rename survives a power cut before the
state store records it. On any failure, cancellation included, the temp is removed.

Disk work and hashing run in the storage's own worker threads (:data:`IO_THREADS`:
disk calls mostly wait, and fsyncs issued side by side share the file system's journal
commits); streamed bytes are batched into writes of about 1 MiB. Small writes (a file
of known size up to :data:`WRITER_BYTES`, a project's pages) go instead to the
storage's pool of :data:`WRITER_PROCESSES` writer processes, each written, verified
and renamed in one step there. Both pools belong to one storage and end with its
``async with`` block (see :mod:`mirror.storage.executors`). Threads in this process would
have to take the GIL back from the event loop after every system call, and on a
small file the system calls are nearly all of the work: measured on 1,000 small
projects, the hand-offs cost more than the writes. A thread or a writer process
cannot be interrupted, so a cancelled operation waits for it to finish before
cleaning up and re-raising: cleanup never races a write.

Creating directories and temps, and pruning directories a delete left empty, take one
lock: a delete can never remove a directory between a store creating it and putting
its temp in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import random
import shutil
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from mirror.errors import IntegrityError
from mirror.layout import check_relative, is_temp_name, temp_name
from mirror.storage.executors import (
    DiskExecutors,
    WriterPoolFactory,
    disk_result,
    storage_error,
    wait_for_thread,
)
from mirror.storage.protocol import Derivation, ListedFile, StoredBlob
from mirror.storage.writers import WriterPool

logger = logging.getLogger(__name__)

IO_THREADS = 16
"""Worker threads for disk work, per storage (started on demand)."""

WRITER_PROCESSES = max(2, min(os.cpu_count() or 1, 4))
"""Writer processes for small writes, per storage; started on the first small write,
so a run that writes none starts none. One per core (2 to 4):
on 2 cores, 4 writers synced 1,000 small projects no faster than 2, and their start
(an interpreter each, ~0.12 s of CPU) made a 500-project incremental sync 0.3 s slower."""

WRITER_BYTES = 1 << 20
"""The largest write sent to a writer process: beyond it, copying the bytes across
costs more than the thread hand-offs it saves. (Tests that inject disk faults into
this process pass ``writer_bytes=-1``, so that every write stays here.)"""

FILE_MODE = 0o644
DIRECTORY_MODE = 0o755

# Streamed chunks are gathered into writes of this size: few thread hops per file,
# bounded memory per download.
_WRITE_BYTES = 1 << 20
_READ_BYTES = 1 << 20
# mkstemp adds ".", 8 random characters and the suffix; keep the temp's name within
# the usual 255-byte limit even for a very long file name (counted in bytes: the limit
# is on the encoded name).
_TEMP_NAME_KEEP_BYTES = 200
# Files listed per thread hop by list_files.
_LIST_BATCH_FILES = 1000


class FileCalls(Protocol):
    """The two system calls that create and fill a temp file: :mod:`os` itself, or a
    stand-in that fails them (a full disk, a read-only file system) in tests."""

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        """:func:`os.open`."""
        ...

    def write(self, fd: int, data: memoryview, /) -> int:
        """:func:`os.write`."""
        ...


def _default_writer_pool(size: int) -> WriterPool:
    return WriterPool(size)


class FileSystemStorage:
    """The served tree in ``web_root`` (the mirror directory's ``web/``).

    Implements :class:`mirror.storage.Storage`; use it as ``async with
    FileSystemStorage(web_root) as storage:``, which releases its worker threads and
    writer processes at the end. Methods raise UnsafePathError for a path that could
    escape ``web_root`` and StorageError (naming the path and the reason) when the
    disk refuses.

    ``io_threads``, ``writer_processes`` and ``writer_bytes`` size the pools and the
    largest write sent to a writer process (see the module constants);
    ``writer_pool_factory`` makes the writer pool; ``file_calls`` creates and writes
    the temps of this process (:mod:`os`).

    A writer process's temps are not in this process's record of live temps: the
    directories where small writes land (a file's own ``packages/.../<hash>/``, a
    project's ``simple/<name>/`` and ``pypi/<name>/``) are only swept by the same
    project's own steps, one after the other, never while a writer works there.
    """

    def __init__(
        self,
        web_root: Path,
        *,
        io_threads: int = IO_THREADS,
        writer_processes: int = WRITER_PROCESSES,
        writer_bytes: int = WRITER_BYTES,
        writer_pool_factory: WriterPoolFactory = _default_writer_pool,
        file_calls: FileCalls = os,
    ) -> None:
        self._web_root = Path(web_root).absolute()
        self._live = _LiveTemps(file_calls)
        self._writer_bytes = writer_bytes
        self._executors = DiskExecutors(
            threads=io_threads,
            writer_processes=writer_processes,
            writer_pool_factory=writer_pool_factory,
        )

    async def __aenter__(self) -> Self:
        self._executors.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._executors.aclose()

    @property
    def web_root(self) -> Path:
        """The absolute directory the tree is served from."""
        return self._web_root

    def path_of(self, relative: str) -> Path:
        """Return the absolute path of ``relative``, a POSIX path under the web root.

        Raises UnsafePathError for an absolute path, an empty, ``.`` or ``..``
        component, a backslash, NUL, DEL or other control character (the rule of
        :func:`mirror.layout.check_relative`). With those gone the result is inside
        ``web_root`` by construction. Symbolic links inside the tree are the operator's
        to make (e.g. ``packages`` on another disk) and are followed.
        """
        return self._web_root.joinpath(*check_relative(relative))

    async def store_stream(
        self,
        relative: str,
        chunks: AsyncIterator[bytes],
        *,
        sha256: str | None,
        size: int | None,
        max_size: int | None = None,
        derivation: Derivation | None = None,
    ) -> StoredBlob:
        """Stream ``chunks`` to ``relative``, replacing it only once they are verified.

        The bytes go to a temp file beside the target and are hashed as they are
        written. More bytes than ``size`` (or ``max_size``, the bound for a file of
        unknown size) stop the stream at once; at the end the size and the sha256 are
        checked when given. Any mismatch raises IntegrityError naming the file, the
        expected and the actual value. Only then is the temp fsynced and renamed over
        the target (parents are created). Whatever happens — IntegrityError,
        StorageError, an exception from ``chunks``, cancellation — no temp is left
        and the target is unchanged, unless the failure comes after the rename (a
        cancellation arriving while the last thread finishes, the directory fsync
        failing): then the target holds the new, verified bytes.

        With a ``derivation``, the same thread step then writes its sidecar from the
        stored file, as :meth:`store_derived` would, and the result carries it in
        ``derived``.

        Disk failures raise StorageError; an exception from ``chunks`` (a network
        error, ``TimeoutError`` included) propagates unchanged, never as a
        StorageError. The caller owns ``chunks`` (closing it is theirs).
        """
        target = self.path_of(relative)
        if size is not None and size <= self._writer_bytes:
            return await self._store_small(
                relative, chunks, sha256=sha256, size=size, derivation=derivation
            )
        temp = _TempFile(target, label=relative, live=self._live)
        sidecar = None if derivation is None else self._sidecar(derivation)
        buffer = bytearray()
        received = 0
        # At most one thread works on the temp at a time; the next batch is gathered
        # from the network while the previous one is being written.
        writing: asyncio.Future[None] | None = None
        committing: asyncio.Future[StoredBlob] | None = None
        try:
            async for chunk in chunks:
                received += len(chunk)
                _check_not_too_long(relative, received, size=size, max_size=max_size)
                buffer += chunk
                if len(buffer) >= _WRITE_BYTES:
                    if writing is not None:
                        await disk_result("store", target, writing)
                    writing = self._executors.start_thread(functools.partial(temp.write, buffer))
                    buffer = bytearray()
            if writing is not None:
                await disk_result("store", target, writing)
            committing = self._executors.start_thread(
                functools.partial(_commit_deriving, temp, buffer, sha256, size, sidecar)
            )
            blob = await disk_result("store", target, committing)
        except BaseException:
            try:
                if writing is not None:
                    await wait_for_thread(writing)
                if committing is not None:
                    await wait_for_thread(committing)
            finally:
                await wait_for_thread(self._executors.start_thread(temp.discard))
            raise
        logger.debug("stored %s (%d bytes)", relative, blob.size)
        return blob

    async def _store_small(
        self,
        relative: str,
        chunks: AsyncIterator[bytes],
        *,
        sha256: str | None,
        size: int,
        derivation: Derivation | None,
    ) -> StoredBlob:
        """:meth:`store_stream` of a small file: gather its bytes here (stopping at
        the first byte too many), then write, verify, rename and derive in one step
        in a writer process."""
        parts: list[bytes] = []
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            _check_not_too_long(relative, received, size=size, max_size=None)
            parts.append(chunk)
        sidecar = None
        if derivation is not None:
            sidecar = (self.path_of(derivation.relative), derivation)
        target = self.path_of(relative)
        land = functools.partial(
            _store_whole,
            target,
            label=relative,
            data=b"".join(parts),
            sha256=sha256,
            size=size,
            sidecar=sidecar,
        )
        blob = await self._executors.in_writer("store", target, land)
        logger.debug("stored %s (%d bytes)", relative, blob.size)
        return blob

    async def write_bytes(self, relative: str, data: bytes) -> None:
        """Replace ``relative`` with ``data`` atomically (temp, fsync, rename, fsync
        of the directory), creating parent directories. Raises StorageError.

        Always in a thread of this process: it writes a single file now and then (the
        ``last-modified`` stamp), and a sync that writes nothing else (a no-op) must
        not pay for starting a writer process."""
        await self._write_files([(relative, data)], in_writer=False)

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Replace each ``(relative, data)`` in order, each atomically as
        :meth:`write_bytes` does, in a single step (in a writer process when they come
        to at most :data:`WRITER_BYTES`) that first removes the stale temps in their
        directories; each directory is fsynced once, after its renames. Raises
        StorageError naming the first file the disk refused (those before it are
        written)."""
        total = sum(len(data) for _, data in files)
        await self._write_files(files, in_writer=total <= self._writer_bytes)

    async def _write_files(self, files: Sequence[tuple[str, bytes]], *, in_writer: bool) -> None:
        items = [(self.path_of(relative), relative, data) for relative, data in files]
        if not items:
            return
        if in_writer:
            removed = await self._executors.in_writer(
                "write", items[0][0], functools.partial(_write_all, items, None)
            )
        else:
            removed = await self._executors.in_thread(
                functools.partial(_write_all, items, self._live)
            )
        if removed:
            logger.info("removed %d stale temporary file(s) beside %s", removed, files[0][0])

    async def write_generated(
        self, relatives: Sequence[str], produce: Callable[[], Iterable[Sequence[bytes]]]
    ) -> None:
        """Replace each of ``relatives`` atomically, as :meth:`write_files` does, with
        bytes made while they are written: ``produce()`` runs in a worker thread and
        yields, step by step, one chunk for each of ``relatives`` in order (the root
        index: both pages a batch of projects at a time, so 740,000 projects are never
        whole in memory). Raises StorageError; an exception from ``produce`` propagates
        unchanged. Either way no temp is left and every target is as it was."""
        temps = [
            _TempFile(self.path_of(relative), label=relative, live=self._live)
            for relative in relatives
        ]
        removed = await self._executors.in_thread(
            functools.partial(_write_generated, temps, self._live, produce)
        )
        if removed:
            logger.info("removed %d stale temporary file(s) beside %s", removed, relatives[0])

    async def read_bytes(self, relative: str) -> bytes:
        """Return the bytes of ``relative``. Raises StorageError (also when missing)."""
        target = self.path_of(relative)
        return await self._executors.on_disk("read", target, target.read_bytes)

    async def delete(self, relative: str) -> None:
        """Remove the file ``relative``; a missing file is fine.

        Parent directories left empty are removed too, up to but not including the
        top-level directory under the web root (``packages``, ``simple``, ``pypi``).
        Raises StorageError when the file cannot be removed.
        """
        target = self.path_of(relative)

        def delete_file() -> None:
            target.unlink(missing_ok=True)
            self._prune_parents(relative)

        await self._executors.on_disk("delete", target, delete_file)

    async def delete_tree(self, relative: str) -> None:
        """Remove the directory ``relative`` and everything in it (e.g.
        ``simple/<project>``); a missing one is fine. Empty parents are pruned as by
        :meth:`delete`. Raises StorageError."""
        target = self.path_of(relative)

        def delete_directory() -> None:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(target)
            self._prune_parents(relative)

        await self._executors.on_disk("delete", target, delete_directory)

    async def exists(self, relative: str) -> bool:
        """Whether ``relative`` exists (following symbolic links). Raises StorageError
        when the disk cannot tell (e.g. permission denied on a parent)."""
        target = self.path_of(relative)
        return await self._executors.on_disk("inspect", target, functools.partial(_exists, target))

    async def remove_stale_temps(self, relative_dir: str) -> int:
        """Remove the ``.*.part`` temp files a killed run left in one directory
        (``""`` is the web root itself) and return how many were removed.

        Temps of stores in flight in this process are spared. A missing directory
        holds none. Raises StorageError.
        """
        directory = self._web_root if relative_dir == "" else self.path_of(relative_dir)
        removed = await self._executors.on_disk(
            "clean", directory, functools.partial(self._live.remove_stale, directory)
        )
        if removed:
            logger.info("removed %d stale temporary file(s) in %s", removed, directory)
        return removed

    async def adopt(
        self, relative: str, *, sha256: str, size: int | None = None
    ) -> StoredBlob | None:
        """Remove the stale temps in ``relative``'s directory (as
        :meth:`remove_stale_temps`) and return the file already at ``relative`` when
        its sha256 (and size, when given) match; None when there is none or it differs.

        One thread hop and one directory read for a file about to be downloaded: a
        missing directory answers both questions at once. Raises StorageError.
        """
        (blob,) = await self.adopt_all([(relative, sha256, size)])
        return blob

    async def adopt_all(
        self, wanted: Sequence[tuple[str, str, int | None]]
    ) -> list[StoredBlob | None]:
        """:meth:`adopt` for each ``(relative, sha256, size)``, in one thread step (a
        project's files before their downloads). Raises StorageError."""
        targets = [self.path_of(relative) for relative, _, _ in wanted]

        def adopt_each() -> list[tuple[int, StoredBlob | None]]:
            found = []
            for target, (_, sha256, size) in zip(targets, wanted, strict=True):
                try:
                    found.append(self._live.adopt(target, sha256=sha256.lower(), size=size))
                except OSError as exc:
                    raise storage_error("inspect", target, exc) from exc
            return found

        results = await self._executors.in_thread(adopt_each)
        for target, (removed, blob) in zip(targets, results, strict=True):
            if removed:
                logger.info("removed %d stale temporary file(s) in %s", removed, target.parent)
            if blob is not None:
                logger.debug("adopted %s already on disk", target)
        return [blob for _, blob in results]

    def _sidecar(self, derivation: Derivation) -> _Sidecar:
        return _Sidecar(
            temp=_TempFile(
                self.path_of(derivation.relative), label=derivation.relative, live=self._live
            ),
            derive=derivation.derive,
            sha256=derivation.sha256.lower(),
        )

    async def store_derived(
        self,
        relative: str,
        *,
        source: str,
        derive: Callable[[BinaryIO], bytes | None],
        sha256: str,
    ) -> StoredBlob | None:
        """Store at ``relative`` the bytes ``derive`` reads from the file ``source``
        (e.g. a wheel's ``METADATA``), atomically as :meth:`write_bytes` does, once
        they hash to ``sha256``. Returns None, writing nothing, when ``derive`` finds
        nothing (returns None) or the bytes hash to anything else: the caller then
        fetches them instead. One thread hop. Raises StorageError (also when
        ``source`` is missing)."""
        origin = self.path_of(source)
        sidecar = self._sidecar(Derivation(relative=relative, derive=derive, sha256=sha256))
        return await self._executors.on_disk(
            "store", sidecar.temp.target, functools.partial(sidecar.store_from, origin)
        )

    async def hash_file(self, relative: str) -> StoredBlob:
        """Return the sha256 and size of the file ``relative``, read in 1 MiB blocks
        in a worker thread. Raises StorageError (also when missing)."""
        target = self.path_of(relative)
        return await self._executors.on_disk("hash", target, functools.partial(_hash_file, target))

    async def list_files(self, top: str) -> AsyncGenerator[ListedFile, None]:
        """Every file under the directory ``top`` (``""``: the whole web root), temps
        included, with its size, following symbolic links (a dangling one is listed
        with its own size). The order is a depth-first walk, each directory's files
        (by name) before its subdirectories (by name). A missing ``top`` holds none.

        The walk runs in a worker thread, a batch of files per hop; each directory's
        entries are read as one list (as :func:`os.walk` does). Raises StorageError
        naming a directory that cannot be read."""
        start = self._web_root if top == "" else self.path_of(top)
        batches = _walk_files(start, "" if top == "" else f"{top}/")
        try:
            while batch := await self._executors.on_disk(
                "list", start, functools.partial(next, batches, [])
            ):
                for listed in batch:
                    yield listed
        finally:
            batches.close()

    def _prune_parents(self, relative: str) -> None:
        """Remove the now-empty directories between ``relative`` and its top-level
        directory, deepest first; stop at the first one still in use."""
        parts = relative.split("/")
        self._live.prune(
            self._web_root.joinpath(*parts[:depth]) for depth in range(len(parts) - 1, 1, -1)
        )


class _LiveTemps:
    """The temps this process is writing, so stale-temp cleanup never removes one, and
    the lock that keeps directory pruning from racing directory creation.

    Creating a temp (with its parents), removing stale temps and pruning empty
    directories all happen under the lock, so a temp is never seen on disk without
    being known here, and a directory a store just made is never pruned before its
    temp is in it.
    """

    def __init__(self, calls: FileCalls = os) -> None:
        self.calls = calls
        """The system calls that create and write the temps."""
        self._lock = threading.Lock()
        self._paths: set[Path] = set()

    def create(self, target: Path) -> tuple[int, Path]:
        """Create ``target``'s missing parents and a temp file beside it (mode 0600);
        return the temp's fd and path."""
        # Cut on a UTF-8 boundary: a name of multi-byte characters near 255 bytes must
        # still give a temp name the file system accepts.
        stem = os.fsencode(target.name)[:_TEMP_NAME_KEEP_BYTES].decode(errors="ignore")
        with self._lock:
            try:
                fd, path = _create_temp(target.parent, stem, self.calls)
            except FileNotFoundError:
                # Most targets land in a directory that does not exist yet (paths are
                # content addressed): try first, and create on demand.
                _make_directories(target.parent)
                fd, path = _create_temp(target.parent, stem, self.calls)
            self._paths.add(path)
        return fd, path

    def prune(self, directories: Iterable[Path]) -> None:
        """Remove ``directories`` (deepest first) while they are empty; stop at the
        first one still in use. Missing ones are skipped."""
        with self._lock:
            for directory in directories:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    # Not empty (another file lives there) or refused: an empty
                    # directory left behind is harmless, and the file itself is gone.
                    return

    def forget(self, path: Path) -> None:
        """The temp at ``path`` was renamed or removed."""
        with self._lock:
            self._paths.discard(path)

    def remove_stale(self, directory: Path) -> int:
        """Unlink the temp files in ``directory`` that no store here is writing.

        The entries are looked at as they are read, never listed: ``simple/`` holds a
        directory per project (600,000 entries would be ~100 MB as a list)."""
        try:
            with os.scandir(directory) as entries:
                return self._remove_stale_entries(entries)
        except FileNotFoundError:
            return 0

    def adopt(
        self, target: Path, *, sha256: str, size: int | None
    ) -> tuple[int, StoredBlob | None]:
        """Remove the stale temps beside ``target``; return how many, and ``target``'s
        blob when it is there with this (lowercase) ``sha256`` and ``size``."""
        try:
            entries = list(os.scandir(target.parent))
        except (FileNotFoundError, NotADirectoryError):
            return 0, None
        removed = self._remove_stale_entries(entries)
        entry = next((e for e in entries if e.name == target.name), None)
        if entry is None:
            return removed, None
        try:
            # Following symbolic links, as a file served through one would be.
            if size is not None and entry.stat().st_size != size:
                return removed, None
            blob = _hash_file(target)
        except (FileNotFoundError, NotADirectoryError):
            return removed, None
        return removed, blob if blob.sha256 == sha256 else None

    def _remove_stale_entries(self, entries: Iterable[os.DirEntry[str]]) -> int:
        removed = 0
        for entry in entries:
            if not is_temp_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            with self._lock:
                if path in self._paths:
                    continue
                path.unlink(missing_ok=True)
            removed += 1
        return removed


class _TempFile:
    """A temp file beside ``target``, hashed as it is written, renamed over the
    target by :meth:`commit` or removed by :meth:`discard`.

    The methods do blocking I/O: they run in worker threads, one at a time (the caller
    awaits each before starting the next). The file is created by the first write, so
    a small payload costs a single thread hop (``commit`` alone).
    """

    def __init__(self, target: Path, *, label: str, live: _LiveTemps) -> None:
        self._target = target
        self._label = label
        self._live = live
        self._fd: int | None = None
        self._path: Path | None = None
        self._digest = hashlib.sha256()
        self._size = 0

    @property
    def target(self) -> Path:
        """The file the temp replaces."""
        return self._target

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data``, creating the temp (and the target's parents) on first use."""
        if self._fd is None:
            self._fd, self._path = self._live.create(self._target)
        view = memoryview(data)
        while view:
            view = view[self._live.calls.write(self._fd, view) :]
        self._digest.update(data)
        self._size += len(data)

    def commit(
        self,
        data: bytes | bytearray,
        *,
        sha256: str | None,
        size: int | None,
        sync_directory: bool = True,
    ) -> StoredBlob:
        """Append the last ``data``, verify, and atomically replace the target; then
        fsync its directory unless the caller does that (``sync_directory=False``,
        for several renames in one directory).

        Raises IntegrityError on a size or sha256 mismatch, OSError when the disk
        refuses; either way the temp is discarded first.
        """
        try:
            self.write(data)
            got = self._verify(sha256=sha256, size=size)
            assert self._fd is not None
            assert self._path is not None
            # The web server must be able to read the file, whatever the umask.
            os.fchmod(self._fd, FILE_MODE)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._path.replace(self._target)
            self._live.forget(self._path)
            self._path = None
        except BaseException:
            self.discard()
            raise
        if sync_directory:
            _fsync_directory(self._target.parent)
        return StoredBlob(sha256=got, size=self._size)

    def _verify(self, *, sha256: str | None, size: int | None) -> str:
        """Return the sha256 of what was written; IntegrityError when it or the size
        differs from the expected value."""
        got = self._digest.hexdigest()
        if size is not None and self._size != size:
            raise IntegrityError(f"{self._label}: expected {size} bytes, got {self._size}")
        if sha256 is not None and got != sha256.lower():
            raise IntegrityError(f"{self._label}: expected sha256 {sha256}, got {got}")
        return got

    def discard(self) -> None:
        """Close and remove the temp, if any. Never raises: it runs while another
        error is on its way up, which must not be masked."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._path is not None:
            try:
                self._path.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("cannot remove temporary file %s: %s", self._path, exc)
            self._live.forget(self._path)
            self._path = None


@dataclass(frozen=True, slots=True)
class _Sidecar:
    """A :class:`~mirror.storage.Derivation` bound to its temp file."""

    temp: _TempFile
    derive: Callable[[BinaryIO], bytes | None]
    sha256: str

    def store_from(self, origin: Path, *, sync_directory: bool = True) -> StoredBlob | None:
        """Derive the sidecar's bytes from ``origin`` and commit them when they hash
        to ``sha256``; None (nothing written) otherwise."""
        with origin.open("rb") as file:
            data = self.derive(file)
        if data is None or hashlib.sha256(data).hexdigest() != self.sha256:
            return None
        return self.temp.commit(
            data, sha256=self.sha256, size=len(data), sync_directory=sync_directory
        )


def _commit_deriving(
    temp: _TempFile,
    data: bytes | bytearray,
    sha256: str | None,
    size: int | None,
    sidecar: _Sidecar | None,
) -> StoredBlob:
    """Commit ``temp``, then write ``sidecar`` from it; one directory fsync when both
    land in the same directory (a wheel and its ``.metadata``)."""
    if sidecar is None:
        return temp.commit(data, sha256=sha256, size=size)
    same_directory = sidecar.temp.target.parent == temp.target.parent
    blob = temp.commit(data, sha256=sha256, size=size, sync_directory=not same_directory)
    try:
        derived = sidecar.store_from(temp.target)
    finally:
        if same_directory:
            _fsync_directory(temp.target.parent)
    return dataclasses.replace(blob, derived=derived)


def _store_whole(
    target: Path,
    *,
    label: str,
    data: bytes,
    sha256: str | None,
    size: int,
    sidecar: tuple[Path, Derivation] | None,
) -> StoredBlob:
    """Write ``data`` to ``target`` as a verified, renamed file, then its sidecar;
    runs in a writer process (picklable arguments only)."""
    # A writer process runs one step at a time, so a record of this step's own temps
    # is all it needs: no other store of that process is in flight meanwhile.
    live = _LiveTemps()
    temp = _TempFile(target, label=label, live=live)
    bound = None
    if sidecar is not None:
        path, derivation = sidecar
        bound = _Sidecar(
            temp=_TempFile(path, label=derivation.relative, live=live),
            derive=derivation.derive,
            sha256=derivation.sha256.lower(),
        )
    return _commit_deriving(temp, data, sha256, size, bound)


def _write_all(items: Sequence[tuple[Path, str, bytes]], live: _LiveTemps | None) -> int:
    """Write each ``(target, label, data)`` for :meth:`FileSystemStorage.write_files`
    after sweeping their directories; return how many stale temps were removed.
    ``live`` None: in a writer process, which runs one step at a time (see
    :func:`_store_whole`)."""
    if live is None:
        live = _LiveTemps()
    temps = [(_TempFile(target, label=label, live=live), data) for target, label, data in items]
    directories = list(dict.fromkeys(temp.target.parent for temp, _ in temps))
    removed = _sweep(directories, live)
    for temp, data in temps:
        commit = functools.partial(temp.commit, data, sha256=None, size=None, sync_directory=False)
        _on_disk_now("write", temp.target, commit)
    _fsync_all(directories)
    return removed


def _write_generated(
    temps: Sequence[_TempFile], live: _LiveTemps, produce: Callable[[], Iterable[Sequence[bytes]]]
) -> int:
    """Write ``temps`` from the chunks ``produce()`` yields and commit them, for
    :meth:`FileSystemStorage.write_generated`, after sweeping their directories; return
    how many stale temps were removed. On any failure every temp is discarded."""
    directories = list(dict.fromkeys(temp.target.parent for temp in temps))
    removed = _sweep(directories, live)
    try:
        for chunks in produce():
            for temp, chunk in zip(temps, chunks, strict=True):
                _on_disk_now("write", temp.target, functools.partial(temp.write, chunk))
        for temp in temps:
            commit = functools.partial(
                temp.commit, b"", sha256=None, size=None, sync_directory=False
            )
            _on_disk_now("write", temp.target, commit)
    except BaseException:
        for temp in temps:
            temp.discard()
        raise
    _fsync_all(directories)
    return removed


def _sweep(directories: Iterable[Path], live: _LiveTemps) -> int:
    """Remove the stale temps in ``directories``; return how many. StorageError."""
    removed = 0
    for directory in directories:
        try:
            removed += live.remove_stale(directory)
        except NotADirectoryError:
            # A file in the way: the write that follows fails, naming it.
            continue
        except OSError as exc:
            raise storage_error("clean", directory, exc) from exc
    return removed


def _fsync_all(directories: Iterable[Path]) -> None:
    """Make the renames in ``directories`` durable. StorageError."""
    for directory in directories:
        _on_disk_now("write", directory, functools.partial(_fsync_directory, directory))


def _on_disk_now(action: str, path: Path, func: Callable[[], object]) -> None:
    """Call ``func`` (in the current worker thread) with an OSError turned into
    StorageError, as :meth:`DiskExecutors.on_disk` does across a thread hop."""
    try:
        func()
    except OSError as exc:
        raise storage_error(action, path, exc) from exc


def _check_not_too_long(
    relative: str, received: int, *, size: int | None, max_size: int | None
) -> None:
    """Stop a stream as soon as it is longer than promised or allowed."""
    if size is not None and received > size:
        raise IntegrityError(f"{relative}: expected {size} bytes, got at least {received}")
    if max_size is not None and received > max_size:
        raise IntegrityError(
            f"{relative}: larger than the {max_size}-byte limit (got at least {received})"
        )


def _create_temp(directory: Path, stem: str, calls: FileCalls) -> tuple[int, Path]:
    """Create a new, empty ``.<stem>.<random>.part`` in ``directory`` (mode
    :data:`FILE_MODE` as the umask allows) and return its fd and path."""
    for _ in range(100):
        path = directory / temp_name(stem, f"{_random.getrandbits(48):012x}")
        try:
            fd = calls.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        return fd, path
    # 100 collisions of 48 random bits: something else is creating these names.
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(directory))


# Temp names only need to differ (O_EXCL guards the rest), not be unpredictable.
_random = random.Random()  # noqa: S311


def _make_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0755 whatever the umask.

    Deepest first: most of the time only the last component or two are missing, and
    one mkdir each is all it costs."""
    try:
        directory.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        # It exists, or a file (or a dangling symbolic link) is in the way: the next
        # step fails with an error that names the problem.
        return
    except FileNotFoundError:
        if directory.parent == directory:
            raise
        _make_directories(directory.parent)
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            return
    # mkdir's mode is filtered by the umask; the web server must be able to list.
    directory.chmod(DIRECTORY_MODE)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exists(path: Path) -> bool:
    """Whether ``path`` exists, following symbolic links. Only "no such file" answers
    False; any other error (permission, name too long, loop) is raised, so a disk
    problem is never mistaken for a missing file."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _walk_files(start: Path, prefix: str) -> Generator[list[ListedFile], None, None]:
    """The files under ``start`` for :meth:`FileSystemStorage.list_files`, in batches,
    as paths beginning with ``prefix``."""
    batch: list[ListedFile] = []
    # (directory, its path as listed) still to read, the next one last.
    pending = [(start, prefix)]
    while pending:
        directory, relative = pending.pop()
        try:
            with os.scandir(directory) as scanned:
                entries = sorted(scanned, key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            continue  # nothing was ever written there (or it is gone)
        # Permissions do not stop root, who runs the tests: an unreadable directory
        # cannot be made there.
        except OSError as exc:  # pragma: no cover
            raise storage_error("list", directory, exc) from exc
        subdirectories = []
        for entry in entries:
            if entry.is_dir():
                subdirectories.append((Path(entry.path), f"{relative}{entry.name}/"))
                continue
            batch.append(ListedFile(path=f"{relative}{entry.name}", size=_listed_size(entry)))
            if len(batch) >= _LIST_BATCH_FILES:
                yield batch
                batch = []
        pending.extend(reversed(subdirectories))
    if batch:
        yield batch


def _listed_size(entry: os.DirEntry[str]) -> int:
    """The size of the file ``entry`` names, through a symbolic link if it is one (a
    dangling link: its own size)."""
    try:
        return entry.stat().st_size
    except FileNotFoundError:
        return entry.stat(follow_symlinks=False).st_size


def _hash_file(path: Path) -> StoredBlob:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(_READ_BYTES):
            digest.update(block)
            size += len(block)
    return StoredBlob(sha256=digest.hexdigest(), size=size)
