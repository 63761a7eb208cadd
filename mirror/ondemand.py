"""On-demand projects for ``mirror serve`` (``[serve] on-demand = true``).

A request for the page of a project the mirror lacks comes here (the server's
``on_missing`` hook). When the filters admit the name (an allowlist admits any name
fetched on demand: it joins the allowlist's set, held in the state store; the
blocklist and the other filters still apply), the project is synced the way
``mirror sync --project`` syncs it: under the mirror directory's lock, through the
normal verified path. Then the request is answered from the disk as usual.

* Requests for one project share one fetch (one future per name).
* Fetches run in batches, one at a time: a batch takes every name waiting, holds the
  lock for one ``--project`` run over them, whose workers (``[mirror] workers``) bound
  how many projects are fetched at once. While another run holds the lock the batch
  waits for it.
* A name upstream lacks, or the filters leave out once its detail is read, is
  remembered for a while (a negative cache): the next request is a 404 at once.
* A request never waits beyond ``on-demand-timeout``: it gets a 503 with
  ``Retry-After`` and the fetch goes on, so a retry finds the project.

Every task lives in the :func:`on_demand` context's task group.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from packaging.utils import NormalizedName

from mirror.errors import LockedError, MirrorError
from mirror.filters import FilterSet
from mirror.report import SyncReport
from mirror.server import FetchAnswer
from mirror.state import StateStore

logger = logging.getLogger(__name__)

NEGATIVE_TTL_SECONDS: Final = 600.0
"""How long a name upstream lacks is answered 404 without asking again."""

NEGATIVE_CACHE_SIZE: Final = 10_000
"""The most names the negative cache holds (a scanner asking for random names must
not grow it without bound); the oldest go first."""

LOCK_RETRY_SECONDS: Final = 1.0
"""How often a waiting batch tries the mirror lock while another run holds it."""

RETRY_AFTER_MAX_SECONDS: Final = 5
"""The most a 503 tells a client to wait (pip's retries honour ``Retry-After``)."""

SyncProjects = Callable[[Sequence[NormalizedName]], Awaitable[SyncReport]]
"""A ``mirror sync --project`` run over the names (raises LockedError when another
run holds the lock)."""

Outcome = Literal["ready", "absent", "failed"]


@dataclass(slots=True)
class _Fetch:
    """One name's fetch: the future its requests share, and how many wait on it."""

    future: asyncio.Future[Outcome]
    waiting: int = 0


@dataclass(slots=True)
class _Batches:
    """The names waiting for the next batch, and the signal that there are some."""

    waiting: dict[NormalizedName, _Fetch] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class OnDemand:
    """The ``on_missing`` hook of :func:`mirror.server.create_app`; build it with
    :func:`on_demand`."""

    def __init__(
        self,
        *,
        filters: FilterSet,
        state: StateStore,
        sync: SyncProjects,
        timeout_seconds: float,
        negative_ttl_seconds: float = NEGATIVE_TTL_SECONDS,
        negative_cache_size: int = NEGATIVE_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._filters = filters
        self._state = state
        self._sync = sync
        self._timeout_seconds = timeout_seconds
        self._negative_ttl_seconds = negative_ttl_seconds
        self._negative_cache_size = negative_cache_size
        self._clock = clock
        self._wall_clock = wall_clock
        self._fetches: dict[NormalizedName, _Fetch] = {}
        self._absent: dict[NormalizedName, float] = {}
        self._batches = _Batches()

    async def __call__(self, name: NormalizedName) -> FetchAnswer:
        """Fetch ``name`` (or join its fetch) and say how the request is answered."""
        if self._is_known_absent(name):
            return FetchAnswer(status="absent")
        dropped = self._filters.with_on_demand(frozenset({name})).check_name(name)
        if dropped is not None:
            logger.debug("on demand: %s is left out by %s", name, dropped)
            return FetchAnswer(status="absent")
        fetch = self._fetches.get(name)
        if fetch is None:
            fetch = _Fetch(future=asyncio.get_running_loop().create_future())
            self._fetches[name] = fetch
            self._batches.waiting[name] = fetch
            self._batches.wake.set()
        fetch.waiting += 1
        try:
            async with asyncio.timeout(self._timeout_seconds):
                outcome = await asyncio.shield(fetch.future)
        except TimeoutError:
            fetch.waiting -= 1
            logger.info("on demand: %s not fetched within %.0fs: 503", name, self._timeout_seconds)
            return FetchAnswer(status="busy", retry_after_seconds=self._retry_after())
        if outcome == "failed":
            return FetchAnswer(status="busy", retry_after_seconds=self._retry_after())
        return FetchAnswer(status=outcome)

    def _retry_after(self) -> int:
        return max(1, min(RETRY_AFTER_MAX_SECONDS, math.ceil(self._timeout_seconds)))

    def _is_known_absent(self, name: NormalizedName) -> bool:
        until = self._absent.get(name)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._absent[name]
        return False

    def _remember_absent(self, name: NormalizedName) -> None:
        now = self._clock()
        if len(self._absent) >= self._negative_cache_size:
            self._absent = {n: t for n, t in self._absent.items() if t > now}
            while len(self._absent) >= self._negative_cache_size:
                del self._absent[next(iter(self._absent))]
        self._absent[name] = now + self._negative_ttl_seconds

    async def run_batches(self) -> None:
        """Fetch the waiting names, a batch at a time, until cancelled."""
        batches = self._batches
        while True:
            await batches.wake.wait()
            batches.wake.clear()
            batch, batches.waiting = batches.waiting, {}
            try:
                outcomes = await self._fetch(sorted(batch))
            except MirrorError as exc:
                logger.error("on demand: fetching %s failed: %s", ", ".join(sorted(batch)), exc)
                outcomes = dict.fromkeys(batch, "failed")
            for name, fetch in batch.items():
                del self._fetches[name]
                fetch.future.set_result(outcomes[name])
                if outcomes[name] == "ready" and fetch.waiting:
                    await self._count(name, fetch.waiting)

    async def _count(self, name: NormalizedName, requests: int) -> None:
        """Add ``requests`` served by fetching ``name`` to its count in the state."""
        try:
            await asyncio.to_thread(self._state.count_on_demand_requests, name, requests)
        except MirrorError as exc:
            logger.warning("on demand: cannot count the requests for %s: %s", name, exc)

    async def _fetch(self, names: list[NormalizedName]) -> dict[NormalizedName, Outcome]:
        """One ``--project`` run over ``names`` (waiting for the lock), and each
        name's outcome."""
        now = self._wall_clock()
        listed = self._filters.included_names() or frozenset()
        for name in names:
            if name not in listed:  # an allowlisted name is not one added on demand
                await asyncio.to_thread(self._state.add_on_demand, name, now=now)
        logger.info("on demand: fetching %s", ", ".join(names))
        while True:
            try:
                report = await self._sync(names)
                break
            except LockedError:
                logger.debug("on demand: the mirror is locked by another run; waiting")
                await asyncio.sleep(LOCK_RETRY_SECONDS)
        failed = {failure.name for failure in report.failures}
        outcomes: dict[NormalizedName, Outcome] = {}
        for name in names:
            held = await asyncio.to_thread(self._state.project, name)
            if held is not None:
                outcomes[name] = "ready"
                continue
            # Nothing mirrored: the name leaves the on-demand set again.
            if name not in listed:
                await asyncio.to_thread(self._state.drop_on_demand, name)
            if name in failed:
                outcomes[name] = "failed"
            else:
                logger.info("on demand: %s is not upstream (or the filters leave it out)", name)
                self._remember_absent(name)
                outcomes[name] = "absent"
        return outcomes


@asynccontextmanager
async def on_demand(
    *,
    filters: FilterSet,
    state_path: Path,
    sync: SyncProjects,
    timeout_seconds: float,
) -> AsyncIterator[OnDemand]:
    """An :class:`OnDemand` whose batches run for the duration of the block, over its
    own connection to the state store at ``state_path`` (created when missing)."""
    state = await asyncio.to_thread(StateStore.open, state_path)
    try:
        fetcher = OnDemand(filters=filters, state=state, sync=sync, timeout_seconds=timeout_seconds)
        async with asyncio.TaskGroup() as group:
            batches = group.create_task(fetcher.run_batches())
            try:
                yield fetcher
            finally:
                batches.cancel()
    finally:
        await asyncio.to_thread(state.close)
