"""Snapshot views in ``mirror serve``: the index as it stood at a past moment.

``/snapshot/<when>/simple/`` and ``/snapshot/<when>/simple/<project>/`` list exactly
the files published at ``<when>`` (see :mod:`mirror.state.timeline` for the rule),
where ``<when>`` is an ISO 8601 date (``2026-11-01``: midnight UTC at its start), a
timestamp (``2026-11-01T12:00:00Z``; without an offset, UTC) or a mirror serial
(``123456``). The pages are PEP 503 HTML and PEP 691 JSON, negotiated as the live
ones (:func:`mirror.server.negotiate`), rendered per request from the state store
(opened read-only) by :mod:`mirror.simple`, with file URLs that lead to the live
``/packages/`` (files never change under a path). Rendered pages are kept in a
bounded LRU cache for a short while; a root page is streamed a page of rows at a
time, never whole in memory (and cached only when small).

Yank state is the current one: a file yanked after ``<when>`` shows as yanked.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from aiohttp import hdrs, web
from aiohttp.web_response import ContentCoding
from packaging.utils import NormalizedName

from mirror.errors import MalformedResponseError, StateError
from mirror.models import (
    DistFile,
    ListingRow,
    ProjectDetail,
    ProjectStatus,
    Serial,
    project_name,
    versions_from_files,
)
from mirror.server import (
    INDEX_CACHE_CONTROL,
    TEXT_HTML,
    V1_HTML,
    V1_JSON,
    accepts_gzip,
    negotiate,
)
from mirror.simple import render_project_html, render_project_json, root_pages_chunks
from mirror.state import STATE_NAME, HistoryFile, Moment, StateStore

FILES_BASE: Final = "../../../../"
"""From ``/snapshot/<when>/simple/<project>/`` up to the site root, where the live
``/packages/`` are."""

CACHE_ENTRIES: Final = 256
"""Rendered pages the cache holds at most."""
CACHE_BYTES: Final = 32 * 1024 * 1024
"""Bytes the cache holds at most; a page larger than an eighth of it is not cached."""
CACHE_SECONDS: Final = 60.0
"""How long a rendered page is reused: the view of a moment changes only as files
come out of their cooldown or leave the disk, and with the yank state."""

_SERIAL_RE: Final = re.compile(r"[0-9]{1,18}")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_CONTENT_TYPES: Final = {
    TEXT_HTML: "text/html",
    V1_HTML: V1_HTML,
    V1_JSON: V1_JSON,
}


@dataclass(frozen=True, slots=True)
class When:
    """A parsed ``<when>``: a Unix time or a mirror serial (exactly one)."""

    at: float | None
    serial: Serial | None


def parse_when(text: str) -> When | None:
    """``<when>`` as a :class:`When`, or None when it is neither an ISO 8601 date or
    timestamp nor a serial."""
    if _SERIAL_RE.fullmatch(text):
        return When(at=None, serial=Serial(int(text)))
    try:
        if _DATE_RE.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return When(at=moment.timestamp(), serial=None)


class PageCache:
    """A least-recently-used cache of rendered pages, bounded in entries and bytes,
    each entry reused for ``seconds``."""

    def __init__(
        self,
        *,
        entries: int = CACHE_ENTRIES,
        max_bytes: int = CACHE_BYTES,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries = entries
        self._max_bytes = max_bytes
        self._seconds = seconds
        self._clock = clock
        self._pages: OrderedDict[tuple[object, ...], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    @property
    def largest(self) -> int:
        """The largest page worth caching."""
        return self._max_bytes // 8

    def get(self, key: tuple[object, ...]) -> bytes | None:
        """The page cached under ``key`` when still fresh, else None."""
        found = self._pages.get(key)
        if found is None:
            return None
        stored, body = found
        if self._clock() - stored > self._seconds:
            self._drop(key)
            return None
        self._pages.move_to_end(key)
        return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        """Cache ``body`` under ``key`` (not when larger than :attr:`largest`),
        evicting the least recently used pages beyond the bounds."""
        if len(body) > self.largest:
            return
        self._drop(key)
        self._pages[key] = (self._clock(), body)
        self._bytes += len(body)
        while len(self._pages) > self._entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._pages)))

    def __len__(self) -> int:
        return len(self._pages)

    def _drop(self, key: tuple[object, ...]) -> None:
        found = self._pages.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1])


def project_detail(
    name: NormalizedName, files: list[HistoryFile], status: ProjectStatus
) -> ProjectDetail:
    """The detail a snapshot page renders: ``files`` (in view) as upstream listed them."""
    dists = tuple(_dist(row) for row in files)
    return ProjectDetail(
        name=name,
        serial=Serial(max((row.mirrored_serial for row in files), default=0)),
        files=dists,
        versions=versions_from_files(dists),
        status=status,
    )


def _dist(row: HistoryFile) -> DistFile:
    return DistFile(
        filename=row.filename,
        url="",
        path=row.path,
        sha256=row.sha256,
        size=row.size,
        upload_time=None
        if row.upload_time is None
        else datetime.fromtimestamp(row.upload_time, UTC),
        requires_python=row.requires_python,
        yanked=row.yanked is not None,
        yanked_reason=row.yanked or "",
        core_metadata=row.metadata_sha256 is not None,
        core_metadata_sha256=row.metadata_sha256,
        provenance=row.provenance,
        # The history keeps a provenance only while the mirror holds its copy.
        provenance_kept=row.provenance is not None,
    )


@dataclass(frozen=True, slots=True)
class _Views:
    """The snapshot handlers over one mirror directory's state store."""

    directory: Path
    cooldown: float
    keep_removed: float
    clock: Callable[[], float]
    cache: PageCache
    formats: frozenset[str]

    def moment(self, when: When) -> Moment:
        return Moment(
            at=when.at,
            serial=when.serial,
            now=self.clock(),
            cooldown=self.cooldown,
            keep_removed=self.keep_removed,
        )

    def available(self) -> list[str]:
        offers = [TEXT_HTML, V1_HTML] if "html" in self.formats else []
        return offers + ([V1_JSON] if "json" in self.formats else [])

    async def add_slash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(f"{request.path}/")

    async def root(self, request: web.Request) -> web.StreamResponse:
        when, media_type = self._parse(request)
        key = (when, None, media_type)
        cached = self.cache.get(key)
        if cached is not None:
            return _page(request, cached, media_type)
        moment = self.moment(when)
        response = web.StreamResponse(headers=_headers(media_type))
        if accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING)):
            response.enable_compression(ContentCoding.gzip)
        kept: list[bytes] | None = []
        size = 0
        state = await asyncio.to_thread(_open_state, self.directory)
        try:
            pages = state.projects_at(moment)
            chunks = _root_chunks(pages, json=media_type == V1_JSON, serial=when.serial)
            await response.prepare(request)
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                await response.write(chunk)
                size += len(chunk)
                if kept is not None:
                    kept.append(chunk)
                    if size > self.cache.largest:
                        kept = None
        finally:
            await asyncio.to_thread(state.close)
        await response.write_eof()
        if kept is not None:
            self.cache.put(key, b"".join(kept))
        return response

    async def project(self, request: web.Request) -> web.StreamResponse:
        when, media_type = self._parse(request)
        raw = request.match_info["project"]
        try:
            name = project_name(raw)
        except MalformedResponseError:
            raise web.HTTPNotFound from None
        if raw != name or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"/snapshot/{request.match_info['when']}/simple/{name}/")
        key = (when, name, media_type)
        body = self.cache.get(key)
        if body is None:
            body = await asyncio.to_thread(self._render_project, name, when, media_type)
            if body is None:
                raise web.HTTPNotFound
            self.cache.put(key, body)
        return _page(request, body, media_type)

    def _render_project(self, name: NormalizedName, when: When, media_type: str) -> bytes | None:
        """The page of ``name`` at ``when``, or None when it had no file then
        (blocking)."""
        with _open_state(self.directory) as state:
            files = state.files_at(name, self.moment(when))
            row = state.project(name)
        if not files:
            return None
        status = ProjectStatus() if row is None else ProjectStatus(status=row.status)
        detail = project_detail(name, files, status)
        if media_type == V1_JSON:
            return render_project_json(detail, files_base=FILES_BASE)
        shown = row.display_name if row is not None else name
        return render_project_html(detail, display_name=shown, files_base=FILES_BASE)

    def _parse(self, request: web.Request) -> tuple[When, str]:
        when = parse_when(request.match_info["when"])
        if when is None:
            raise web.HTTPNotFound
        media_type = negotiate(request.headers.get(hdrs.ACCEPT), self.available())
        if media_type is None:
            raise web.HTTPNotAcceptable(headers={hdrs.VARY: "Accept"})
        return when, media_type


def snapshot_routes(
    directory: Path,
    *,
    cooldown: float = 0.0,
    keep_removed: float = 0.0,
    formats: frozenset[str] = frozenset({"html", "json"}),
    clock: Callable[[], float] = time.time,
    cache: PageCache | None = None,
) -> list[web.RouteDef]:
    """The ``/snapshot/`` routes over the state store in ``directory``, under the
    mirror's ``cooldown`` and ``keep-removed`` (seconds) and page ``formats``."""
    views = _Views(
        directory=directory,
        cooldown=cooldown,
        keep_removed=keep_removed,
        clock=clock,
        cache=cache if cache is not None else PageCache(),
        formats=formats,
    )
    return [
        web.get("/snapshot/{when}/simple", views.add_slash),
        web.get("/snapshot/{when}/simple/", views.root),
        web.get("/snapshot/{when}/simple/{project}", views.project),
        web.get("/snapshot/{when}/simple/{project}/", views.project),
    ]


def _open_state(directory: Path) -> StateStore:
    """The state store, read-only (blocking); a 503 while there is none readable (before
    a first sync, or before a sync migrated it)."""
    try:
        return StateStore.open_read_only(directory / STATE_NAME)
    except StateError:
        raise web.HTTPServiceUnavailable(text="the mirror has no readable state yet") from None


def _root_chunks(
    pages: Iterator[list[ListingRow]], *, json: bool, serial: Serial | None
) -> Iterator[bytes]:
    """One root page's bytes, a page of rows at a time."""
    for html_chunk, json_chunk in root_pages_chunks(pages, serial=serial):
        yield json_chunk if json else html_chunk


def _headers(media_type: str) -> dict[str, str]:
    content_type = _CONTENT_TYPES[media_type]
    if media_type == TEXT_HTML:
        content_type += "; charset=utf-8"
    return {
        hdrs.CONTENT_TYPE: content_type,
        hdrs.VARY: "Accept, Accept-Encoding",
        hdrs.CACHE_CONTROL: INDEX_CACHE_CONTROL,
    }


def _page(request: web.Request, body: bytes, media_type: str) -> web.Response:
    response = web.Response(body=body, headers=_headers(media_type))
    if accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING)):
        response.enable_compression(ContentCoding.gzip)
    return response
