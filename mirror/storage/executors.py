"""Where a file-system storage's disk work runs: its own worker threads and writer
processes, and how the event loop waits for them.

Each :class:`~mirror.storage.FileSystemStorage` owns one :class:`DiskExecutors`: a
thread pool (started on first use, its threads on demand) and a
:class:`~mirror.storage.writers.WriterPool` (its processes started on the first small
write, so a run that writes none starts none). Both are released by :meth:`aclose`,
when the storage's ``async with`` block ends; nothing lives past it and nothing is
shared between storages.

A thread or a writer process cannot be interrupted, so a cancelled wait waits on for
it to finish before re-raising: cleanup never races a write. Disk failures
(:class:`OSError`) become :class:`~mirror.errors.StorageError` naming the action and
the path.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mirror.errors import StorageError
from mirror.storage.writers import WriterLostError, WriterPool

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "is a directory",
}

WriterPoolFactory = Callable[[int], WriterPool]
"""Makes the writer pool of ``size`` processes (a parameter, so tests can watch or
refuse it)."""


def storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    """The StorageError for ``exc``: ``cannot <action> <path>: <reason>``."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return StorageError(f"cannot {action} {path}: {reason}")


class DiskExecutors:
    """The worker threads and writer processes of one storage.

    Usable once :meth:`open` is called (the storage's ``__aenter__``) until
    :meth:`aclose` (its ``__aexit__``); outside that, every call raises RuntimeError,
    so a storage used outside ``async with`` fails loudly instead of leaking threads
    and processes.
    """

    def __init__(
        self, *, threads: int, writer_processes: int, writer_pool_factory: WriterPoolFactory
    ) -> None:
        self._threads = threads
        self._writer_processes = writer_processes
        self._writer_pool_factory = writer_pool_factory
        self._executor: ThreadPoolExecutor | None = None
        self._writers: WriterPool | None = None
        self._open = False

    def open(self) -> None:
        """Accept work from now on (the pools themselves start on first use)."""
        if self._open:
            raise RuntimeError("the storage is already open")
        self._open = True

    async def aclose(self) -> None:
        """Stop the threads and writer processes, once the work handed to them is done
        (every operation waits for its own, so there is none in flight by now).
        Idempotent."""
        self._open = False
        executor, self._executor = self._executor, None
        writers, self._writers = self._writers, None
        # Joining threads and processes blocks; not on the event loop.
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if writers is not None:
            await asyncio.to_thread(writers.close)

    def start_thread(self, func: Callable[[], _T]) -> asyncio.Future[_T]:
        """Run ``func`` in a worker thread and return its future.

        A bare executor future rather than an ``asyncio.to_thread`` task: a task can be
        cancelled from outside (``asyncio.run`` cancels every task at shutdown), which
        would mark it done while its thread still runs, and cleanup would then race the
        write. Nothing outside the storage holds these futures, and it only ever
        shields them.
        """
        return asyncio.get_running_loop().run_in_executor(self._executor_now(), func)

    async def in_thread(self, func: Callable[[], _T]) -> _T:
        """Return ``func()`` run in a worker thread.

        If the caller is cancelled meanwhile, wait for the thread to finish before
        re-raising: the thread cannot be stopped, and whatever the caller does next
        (cleanup, a retry writing the same file) must not race it.
        """
        future = self.start_thread(func)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await wait_for_thread(future)
            raise

    async def on_disk(self, action: str, path: Path, func: Callable[[], _T]) -> _T:
        """:meth:`in_thread`, with an OSError turned into StorageError ("cannot
        ``action`` ``path``: reason")."""
        try:
            return await self.in_thread(func)
        except OSError as exc:
            raise storage_error(action, path, exc) from exc

    async def in_writer(self, action: str, path: Path, func: Callable[[], _T]) -> _T:
        """Return ``func()`` run in a writer process (``func`` and its result must
        pickle), waiting for it as :meth:`in_thread` does when cancelled.

        Its OSError becomes StorageError (``cannot <action> <path>: reason``), as does
        the death of the writer process (killed, out of memory): the operation is then
        unfinished, and leaves at most a temp for a later sweep."""
        future: asyncio.Future[_T] = asyncio.wrap_future(self._writers_now().submit(func))
        try:
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                await wait_for_thread(future)
                raise
        except OSError as exc:
            raise storage_error(action, path, exc) from exc
        except WriterLostError as exc:
            raise StorageError(f"cannot {action} {path}: a disk writer process died") from exc

    def _executor_now(self) -> ThreadPoolExecutor:
        self._check_open()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix="mirror-disk"
            )
        return self._executor

    def _writers_now(self) -> WriterPool:
        self._check_open()
        if self._writers is None:
            self._writers = self._writer_pool_factory(self._writer_processes)
        return self._writers

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("a storage is used inside `async with`, and this one is not")


async def disk_result(action: str, path: Path, future: asyncio.Future[_T]) -> _T:
    """Await a disk thread's result without cancelling it; its OSError becomes
    StorageError here, so only disk failures are translated, never the caller's."""
    try:
        return await asyncio.shield(future)
    except OSError as exc:
        raise storage_error(action, path, exc) from exc


async def wait_for_thread(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, absorbing cancellations meanwhile, and consume
    its outcome (the caller is already handling an error). A cancellation that
    arrived while waiting is re-raised once the thread is done: it is never lost."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    future.exception()
    if cancelled:
        raise asyncio.CancelledError
