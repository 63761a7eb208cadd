"""The writer processes: a few child processes that run small disk steps.

A step is a picklable callable (a module-level function bound with
``functools.partial``) sent down a pipe to one of the writers, which runs it and sends
back its result or its exception. :meth:`WriterPool.submit` returns a
:class:`concurrent.futures.Future` for it, which asyncio code awaits through
:func:`asyncio.wrap_future`.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it routes every call through
two helper threads of the calling process (a queue feeder and a manager), and on the
event loop's process each of those is another GIL hand-off per step; measured on 1,000
small projects they were a quarter of the sync's CPU time. Here the caller pickles and
writes the request itself (a writer's own reader thread drains the pipe at once, so
the write does not wait for the step), and one reader thread per writer takes the
replies.

A writer that dies (killed, out of memory) fails the steps it held with
:class:`WriterLostError`; the next :meth:`~WriterPool.submit` starts a replacement. Writers
ignore SIGINT and SIGTERM (the parent stops the run and waits for its steps), and exit
when :meth:`~WriterPool.close` asks them to (its owner, a storage, closes it when its
``async with`` block ends), or when their pipe closes (the parent died). They are
daemonic: a parent that exits without closing the pool ends them rather than waiting.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

logger = logging.getLogger(__name__)

# Seconds close() waits for a writer to exit after its pipe is closed.
_EXIT_WAIT_SECONDS = 5.0


class WriterLostError(RuntimeError):
    """The writer process running a step died before it answered."""


@dataclass(eq=False)
class _Writer:
    """One writer process, its pipe, and the steps sent to it and not yet answered."""

    process: BaseProcess
    connection: Connection
    pending: dict[int, Future[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    alive: bool = True


class WriterPool:
    """Up to ``size`` writer processes, started on demand (``spawn``: forking a process
    with threads running is unsafe). Thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._writers: list[_Writer] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False

    def submit(self, step: Callable[[], Any]) -> Future[Any]:
        """Send ``step`` to the writer with the fewest steps in hand (starting one while
        there are fewer than ``size`` and all are busy) and return its future."""
        future: Future[Any] = Future()
        # Running from the start: a step cannot be taken back once sent.
        future.set_running_or_notify_cancel()
        call_id = next(self._ids)
        writer = self._choose()
        with writer.lock:
            writer.pending[call_id] = future
            try:
                writer.connection.send((call_id, step))
            except OSError as exc:
                # The writer died after it was chosen (the pipe's far end is closed);
                # its reader fails whatever else it held.
                del writer.pending[call_id]
                future.set_exception(WriterLostError(f"a disk writer process died ({exc})"))
        return future

    def close(self) -> None:
        """Ask every writer to exit once its steps are done, wait for it, and close its
        pipe. Idempotent."""
        with self._lock:
            self._closed = True
            writers, self._writers = self._writers, []
        for writer in writers:
            with writer.lock, contextlib.suppress(OSError):
                writer.connection.send(None)
        for writer in writers:
            writer.process.join(_EXIT_WAIT_SECONDS)
            writer.connection.close()

    def _choose(self) -> _Writer:
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer pool is closed")
            self._writers = [w for w in self._writers if w.alive]
            idle = [w for w in self._writers if not w.pending]
            if idle:
                return idle[0]
            if len(self._writers) < self._size:
                writer = _start_writer()
                self._writers.append(writer)
                return writer
            return min(self._writers, key=lambda w: len(w.pending))


def _start_writer() -> _Writer:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=writer_main, args=(theirs,), name="mirror-writer", daemon=True)
    process.start()
    theirs.close()
    writer = _Writer(process=process, connection=ours)
    threading.Thread(
        target=_read_replies, args=(writer,), name="mirror-writer-replies", daemon=True
    ).start()
    return writer


def _read_replies(writer: _Writer) -> None:
    """In the parent: settle each step's future as its reply arrives; when the pipe
    ends (the writer died, or close()), fail whatever is still pending."""
    while True:
        try:
            call_id, ok, value = writer.connection.recv()
        except (EOFError, OSError):
            break
        with writer.lock:
            future = writer.pending.pop(call_id)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    with writer.lock:
        writer.alive = False
        lost, writer.pending = list(writer.pending.values()), {}
    for future in lost:
        future.set_exception(WriterLostError("a disk writer process died"))
    writer.process.join(_EXIT_WAIT_SECONDS)


def writer_main(connection: Connection) -> None:
    """A writer process's entry point: leave stop signals to the parent, then serve."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(connection)


def serve(connection: Connection) -> None:
    """Run the steps arriving on ``connection`` one at a time, answering each with
    ``(id, True, result)`` or ``(id, False, exception)``, until ``None`` arrives (the
    parent's close) or the pipe closes.

    A thread keeps draining the pipe into a queue, so a parent writing a request never
    waits for the step in progress."""
    requests: queue.SimpleQueue[tuple[int, Callable[[], object]] | None] = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                requests.put(connection.recv())
            except (EOFError, OSError):
                requests.put(None)
                return

    threading.Thread(target=receive, name="requests", daemon=True).start()
    while (request := requests.get()) is not None:
        call_id, step = request
        try:
            reply: tuple[int, bool, object] = (call_id, True, step())
        except Exception as exc:  # noqa: BLE001  # every failure goes back to the caller
            reply = (call_id, False, exc)
        try:
            connection.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001  # a result or error that cannot be pickled
            connection.send((call_id, False, RuntimeError(f"unpicklable reply: {exc!r}")))
