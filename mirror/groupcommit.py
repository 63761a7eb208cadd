"""Group commit: the run's state-store calls, those waiting together made in one go.

With dozens of projects in flight, each wanting a few short transactions (its plan's
garbage notes, its file rows, its commit), a thread hop and a ``COMMIT`` per call
cost more CPU than the SQL. :class:`GroupCommit` gathers them instead: the first
caller runs its call at once in a worker thread; the calls that arrive meanwhile
wait, and the first of them then runs all of them in one thread hop and one
transaction (:meth:`~mirror.state.core.StoreCore.batch`, each call a savepoint).
Nothing waits for a batch to fill: an idle run commits each call alone, as before.

The order of effects is unchanged: a caller resumes only once its call is
committed, so what it does next (write pages, unlink files) still comes after.
A call that raises fails its caller alone; a batch whose commit fails fails all of
its callers (none of their writes happened).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from mirror.state import StateStore

_T = TypeVar("_T")

MAX_BATCH_CALLS = 256
"""Most calls in one transaction: a batch holds the store's lock while it runs."""


class GroupCommit:
    """The state-store calls of one run, batched; safe for any number of tasks on
    one event loop."""

    def __init__(self, state: StateStore, *, max_calls: int = MAX_BATCH_CALLS) -> None:
        self._state = state
        self._max_calls = max_calls
        self._waiting: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._turn = asyncio.Lock()

    async def call(self, func: Callable[[], _T]) -> _T:
        """Return ``func()`` (a function of the state store, run in a worker thread)
        once the transaction it ran in is committed; raise what it raised."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiting.append((func, future))
        async with self._turn:
            if not future.done():
                batch = self._waiting[: self._max_calls]
                del self._waiting[: self._max_calls]
                await self._run(batch)
        return await future

    async def _run(self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]) -> None:
        """Run ``batch`` in a worker thread and settle its futures. A cancellation
        meanwhile waits for the thread (it cannot be stopped, and the others wait for
        its outcome), then is raised."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(
            None, functools.partial(_execute, self._state, [func for func, _ in batch])
        )
        cancelled = False
        while not work.done():
            try:
                await asyncio.wait([work])
            except asyncio.CancelledError:
                cancelled = True
        failure = work.exception()
        outcomes = work.result() if failure is None else [(False, failure)] * len(batch)
        # Nobody awaits a future before it is settled here (a caller cancelled while
        # waiting its turn just never looks at its own), so none is done yet.
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if cancelled:
            raise asyncio.CancelledError


def _execute(state: StateStore, funcs: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    """Call each of ``funcs`` inside one batch of ``state`` (in a worker thread), each
    in a savepoint of its own: ``(True, result)``, or ``(False, exception)`` with its
    writes undone. Raises when the commit fails."""
    with state.batch():
        return [_outcome(state, func) for func in funcs]


def _outcome(state: StateStore, func: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        with state.step():
            return True, func()
    except Exception as exc:  # noqa: BLE001  # handed to the caller, which raises it
        return False, exc
