"""Following an upstream without XML-RPC through its PEP 691 root index.

``upstream-api = simple`` (or ``auto`` when ``POST /pypi`` finds no XML-RPC endpoint):
each run reads ``/simple/`` as PEP 691 JSON. When every project there carries a
``_last-serial`` (Warehouse, ``mirror serve``) those are compared with the serials
recorded last time; otherwise (devpi, bandersnatch's tree behind nginx, a company
index) each listed project's page is asked for its ``X-PyPI-Last-Serial`` and
``ETag``, with ``If-None-Match``, so an unchanged page costs a 304.
:mod:`mirror.rootdiff` decides what to queue; this module does the reading, queues
the changes (with the mirror serial, in one transaction) and only then records the
validators, so that a crash in between queues the same projects again rather than
missing one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from packaging.utils import NormalizedName

from mirror import changes, rootdiff
from mirror.config import UpstreamApi
from mirror.errors import NoXmlRpcError, UpstreamError
from mirror.filters import FilterSet
from mirror.models import PageValidator, Serial, SimpleRoot
from mirror.state import StateStore
from mirror.upstream import Upstream

logger = logging.getLogger(__name__)


class RootFollower:
    """Queues upstream's changes as its root index (and pages) show them."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        state: StateStore,
        concurrency: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._upstream = upstream
        self._state = state
        self._concurrency = concurrency
        self._clock = clock

    async def queue(
        self,
        api: UpstreamApi,
        filters: FilterSet,
        *,
        changelog: Callable[[], Awaitable[Serial]],
    ) -> Serial:
        """Queue upstream's changes and advance the mirror serial; return the serial
        reached. With ``xmlrpc`` by ``changelog`` (the run's XML-RPC reading, which
        raises NoXmlRpcError before it queues anything when upstream has none); with
        ``simple``, or ``auto`` and no XML-RPC, through the root index
        (:meth:`queue_from_root`)."""
        if api != "simple":
            try:
                return await changelog()
            except NoXmlRpcError as exc:
                if api == "xmlrpc":
                    raise
                logger.info("%s; following the PEP 691 root index instead", exc)
        return await self.queue_from_root(filters)

    async def queue_from_root(self, filters: FilterSet) -> Serial:
        """Queue every project whose page changed since the last run (new ones
        included) and every held project the root no longer lists, advance the
        mirror serial, then record what was seen. Returns the serial reached.
        Raises UpstreamError when the root index cannot be read."""
        root = await self._upstream.simple_root()
        known = await asyncio.to_thread(self._state.page_validators)
        if root.has_serials:
            seen = rootdiff.root_validators(root)
        else:
            seen = await self._page_validators(root, known)
        held = await asyncio.to_thread(lambda: [row.name for row in self._state.iter_projects()])
        mirror_serial = await asyncio.to_thread(self._state.mirror_serial)
        found = rootdiff.diff(root, seen, known=known, held=held, mirror_serial=mirror_serial)
        queued = changes.admitted(found.changes.projects, filters)
        logger.info(
            "root index: %d project(s) listed (%s), %d to sync; serial %d",
            len(root.projects),
            "by their serials" if root.has_serials else "by their pages' serial or ETag",
            len(queued),
            found.changes.serial,
        )
        await asyncio.to_thread(
            lambda: self._state.enqueue(
                queued,
                display_names=found.changes.display_names,
                gone=found.changes.gone,
                mirror_serial=found.changes.serial,
                now=self._clock(),
            )
        )
        await asyncio.to_thread(
            lambda: self._state.record_page_validators(found.record, forget=found.forget)
        )
        return found.changes.serial

    async def _page_validators(
        self, root: SimpleRoot, known: Mapping[NormalizedName, PageValidator]
    ) -> dict[NormalizedName, PageValidator]:
        """Each listed page's validator, ``concurrency`` requests at a time. A page
        that cannot be read counts as changed: its sync retries it with back-off."""
        names = iter([name for name, _, _ in root.projects])
        seen: dict[NormalizedName, PageValidator] = {}

        async def check() -> None:
            for name in names:
                try:
                    seen[name] = await self._upstream.page_validator(name, known.get(name))
                except UpstreamError as exc:
                    logger.warning("%s: %s; queued to be synced", name, exc)
                    seen[name] = PageValidator()

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, max(1, len(root.projects)))):
                group.create_task(check())
        return seen


async def full_listing(
    upstream: Upstream, api: UpstreamApi
) -> tuple[Mapping[NormalizedName, Serial], Mapping[NormalizedName, str]]:
    """``({project: serial}, {project: display name})`` of every project upstream
    has: ``list_packages_with_serial`` or (``simple``, or ``auto`` and no XML-RPC)
    the root index, serial 0 where it gives none."""
    if api != "simple":
        try:
            listed = await upstream.list_packages_with_serial()
        except NoXmlRpcError:
            if api == "xmlrpc":
                raise
        else:
            return listed.serials, listed.display_names
    root = await upstream.simple_root()
    serials = {name: serial or Serial(0) for name, _, serial in root.projects}
    return serials, {name: display for name, display, _ in root.projects}
