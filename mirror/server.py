"""``mirror serve``: an aiohttp server over the mirror's ``web/`` tree.

It serves what ``mirror sync`` writes, as PyPI serves it:

* ``/simple/`` and ``/simple/<project>/``: PEP 691 content negotiation exactly as
  Warehouse does it (WebOb's ``acceptable_offers`` over ``text/html``,
  ``application/vnd.pypi.simple.v1+html``, ``application/vnd.pypi.simple.v1+json``;
  ``text/html`` when nothing matches; protocol.md §3.2) among the page files on
  disk (``index.html``, ``index.v1_html``, ``index.v1_json``), with ``Vary: Accept``,
  a short ``Cache-Control``, ``ETag``/``Last-Modified`` revalidation (304) and gzip
  when the client accepts it. 406 only when even the ``text/html`` fallback is not on
  disk (a JSON-only mirror asked for HTML). A name that is not normalized, or a path
  without its trailing slash, gets a 301 to the normalized URL; an unknown project a
  plain 404 (uv treats anything else as a hard failure), unless an ``on_missing``
  hook fetches it on demand (a 503 with ``Retry-After`` while that takes too long).
* ``/packages/...``: the files, byte for byte (never a ``Content-Encoding``), with
  sendfile, ``Range`` (206/416), ``HEAD``, conditional requests and
  ``Cache-Control: public, max-age=31536000, immutable`` (paths are content-addressed).
* ``/pypi/<project>/json`` (``application/json``) when the mirror keeps JSON API
  copies, and ``/last-modified`` (``text/plain``).
* ``X-PyPI-Last-Serial`` on project pages and JSON API copies, when given a
  ``page_serial`` (``mirror serve`` gives the journal's, see :mod:`mirror.rpc`).

Anything else, including every attempt to reach outside ``web/`` (``..``, encoded
slashes, backslashes, NUL), is a 404. The paths ``/metrics``, ``/status/`` and
``/snapshot/`` are left free for routes passed in ``extra_routes``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from aiohttp import hdrs, web
from aiohttp.web_response import ContentCoding
from packaging.utils import NormalizedName
from yarl import URL

from mirror.errors import MalformedResponseError, MirrorError
from mirror.layout import unsafe_component
from mirror.models import Serial, project_name
from mirror.provenance import PROVENANCE_MEDIA_TYPE, PROVENANCE_SUFFIX

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(f"{__name__}.access")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080

ACCESS_LOG_FORMAT: Final = '%a "%r" %s %b "%{Content-Type}o" %Tf "%{User-Agent}i"'
"""aiohttp access-log format: client, request line, status, body bytes, the served
Content-Type (so the negotiated page format is visible), seconds taken, User-Agent."""

TEXT_HTML: Final = "text/html"
V1_HTML: Final = "application/vnd.pypi.simple.v1+html"
V1_JSON: Final = "application/vnd.pypi.simple.v1+json"

INDEX_CACHE_CONTROL: Final = "max-age=600, public"
"""Simple pages, JSON API copies: PyPI's own client-facing lifetime (protocol.md §3.9)."""
SERIAL_HEADER: Final = "X-PyPI-Last-Serial"

PageSerial = Callable[[NormalizedName], Awaitable[Serial | None]]
"""The serial to send with a project's pages (see :func:`create_app`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchAnswer:
    """How an on-demand fetch (see :mod:`mirror.ondemand`) has a request answered:
    ``ready`` (the page is on disk now), ``absent`` (404), or ``busy`` (a 503 with
    ``Retry-After: retry_after_seconds``)."""

    status: Literal["ready", "absent", "busy"]
    retry_after_seconds: int = 0


ProjectFetcher = Callable[[NormalizedName], Awaitable[FetchAnswer]]
"""What ``create_app`` asks about a project page the tree lacks (``[serve] on-demand``)."""

PACKAGE_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
"""Files never change under a path: the path is derived from the file's hash."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Variant:
    """One on-disk form of a simple page."""

    media_type: str
    filename: str
    content_type: str


# Warehouse's offer order; ties in q go to the earlier offer, so text/html wins them.
_VARIANTS: Final = (
    # PyPI labels its HTML with a charset; the PEP 691 types go out bare.
    _Variant(media_type=TEXT_HTML, filename="index.html", content_type="text/html; charset=utf-8"),
    _Variant(media_type=V1_HTML, filename="index.v1_html", content_type=V1_HTML),
    _Variant(media_type=V1_JSON, filename="index.v1_json", content_type=V1_JSON),
)

# RFC 7231 grammar, as WebOb's AcceptValidHeader checks it: a header that does not
# match is invalid, and WebOb then treats every offer as acceptable at q=1.
_OWS: Final = r"[ \t]*"
_TCHARS: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_PARAM_VALUE: Final = f"(?:{_TCHARS}|{_QUOTED})"
_MEDIA_RANGE: Final = f"({_TCHARS}/{_TCHARS})((?:{_OWS};{_OWS}(?![qQ]=){_TCHARS}={_PARAM_VALUE})*)"
_WEIGHT: Final = f"{_OWS};{_OWS}[qQ]=(0(?:\\.[0-9]{{0,3}})?|1(?:\\.0{{0,3}})?)"
_ACCEPT_EXT: Final = f"{_OWS};{_OWS}{_TCHARS}(?:={_PARAM_VALUE})?"
_ELEMENT: Final = f"{_MEDIA_RANGE}(?:{_WEIGHT}(?:{_ACCEPT_EXT})*)?"
_ACCEPT_RE: Final = re.compile(f"(?:,|{_ELEMENT})(?:{_OWS},(?:{_OWS}{_ELEMENT})?)*", re.ASCII)
_ELEMENT_RE: Final = re.compile(_ELEMENT, re.ASCII)


def negotiate(
    accept: str | None, available: Sequence[str] = (TEXT_HTML, V1_HTML, V1_JSON)
) -> str | None:
    """The simple-page media type to send for an ``Accept`` header, or None for 406.

    Warehouse's rule (protocol.md §3.2): WebOb's ``acceptable_offers`` over
    ``text/html``, ``…v1+html``, ``…v1+json`` in that order: each offer takes the q
    of the most specific media range that matches it (a range with media-type
    parameters matches nothing here, as the offers have none), q=0 excludes, the
    highest q wins and ties go to the earlier offer. A missing or syntactically
    invalid header accepts everything. When nothing is acceptable the answer is
    ``text/html``. Only offers in ``available`` (the page files on disk) are
    considered; None means not even the ``text/html`` fallback is available.
    """
    offers = [variant.media_type for variant in _VARIANTS if variant.media_type in available]
    if accept is None or _ACCEPT_RE.fullmatch(accept) is None:
        return offers[0] if offers else None
    ranges = [
        (match.group(1).lower(), bool(match.group(2)), float(match.group(3) or 1))
        for match in _ELEMENT_RE.finditer(accept)
    ]
    best: tuple[float, str] | None = None
    for offer in offers:
        quality = _quality(offer, ranges)
        if quality and (best is None or quality > best[0]):
            best = (quality, offer)
    if best is not None:
        return best[1]
    return TEXT_HTML if TEXT_HTML in available else None


def _quality(offer: str, ranges: Sequence[tuple[str, bool, float]]) -> float:
    """The q of the most specific range matching ``offer`` (the first of equals); 0 if none."""
    offer_type = offer.split("/", maxsplit=1)[0]
    specificity, quality = 0, 0.0
    for media_range, has_params, q in ranges:
        if media_range == offer:
            if has_params:
                continue
            rank = 3
        elif media_range == f"{offer_type}/*":
            rank = 2
        elif media_range == "*/*":
            rank = 1
        else:
            continue
        if rank > specificity:
            specificity, quality = rank, q
    return quality


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (RFC 9110 §12.5.3).

    ``gzip`` (or ``x-gzip``) with q > 0, or ``*`` with q > 0 when gzip is not named.
    """
    if not accept_encoding:
        return False
    named: float | None = None
    wildcard: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        quality = _q_param(params)
        match coding.strip().lower():
            case "gzip" | "x-gzip":
                named = quality
            case "*":
                wildcard = quality
            case _:
                pass
    chosen = named if named is not None else wildcard
    return chosen is not None and chosen > 0


def _q_param(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def create_app(
    web_root: Path,
    *,
    extra_routes: Sequence[web.RouteDef] = (),
    page_serial: PageSerial | None = None,
    on_missing: ProjectFetcher | None = None,
) -> web.Application:
    """The application serving the mirror's ``web/`` directory at ``web_root``.

    ``page_serial`` gives the ``X-PyPI-Last-Serial`` sent with a project's simple
    pages and JSON API copy (None from it, or no ``page_serial``: no header); ``mirror
    serve`` passes the journal's (:func:`mirror.rpc.journal_serial_reader`).
    ``on_missing`` is asked about a project page that is not on disk (``[serve]
    on-demand``, :mod:`mirror.ondemand`); without it such a page is a 404.

    ``extra_routes`` are added after the mirror's own, which use only ``/simple``,
    ``/packages/``, ``/pypi/`` and ``/last-modified``: ``/metrics`` and ``/status/``
    are free for them. The tree may change underneath (sync renames files into
    place); every request looks at the disk afresh.
    """
    tree = _Tree(web_root.absolute(), page_serial, on_missing)
    app = web.Application()
    app.add_routes(
        [
            web.get("/simple", _add_slash),
            web.get("/simple/", tree.root_index),
            web.get("/simple/{project}", tree.project_index),
            web.get("/simple/{project}/", tree.project_index),
            web.get("/packages/{path:.+}", tree.package_file),
            web.get("/pypi/{project}/json", tree.json_api),
            web.get("/last-modified", tree.last_modified),
            *extra_routes,
        ]
    )
    return app


async def _add_slash(request: web.Request) -> web.StreamResponse:
    """``/simple`` → ``/simple/``: relative links in the page need the slash."""
    del request
    raise web.HTTPMovedPermanently("/simple/")


@dataclass(frozen=True, slots=True)
class _Page:
    """What a stat of a page file tells the response."""

    path: Path
    etag: str
    mtime: float


@dataclass(frozen=True, slots=True)
class _Tree:
    """The request handlers, over one ``web/`` directory."""

    root: Path
    page_serial: PageSerial | None = None
    on_missing: ProjectFetcher | None = None

    async def root_index(self, request: web.Request) -> web.StreamResponse:
        return await self._simple_page(request, self.root / "simple")

    async def project_index(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        try:
            name = project_name(raw)
        except MalformedResponseError:
            raise web.HTTPNotFound from None
        directory = self.root / "simple" / name
        if not await asyncio.to_thread(directory.is_dir):
            if self.on_missing is None:
                raise web.HTTPNotFound
            if raw != name or not request.path.endswith("/"):
                raise web.HTTPMovedPermanently(f"/simple/{name}/")
            await self._fetch(name)
            if not await asyncio.to_thread(directory.is_dir):
                raise web.HTTPNotFound
        if raw != name or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"/simple/{name}/")
        # Read before the page: a commit lands its pages before its journal row, so
        # the page is at least as new as the serial sent with it.
        serial = await self._serial(name)
        response = await self._simple_page(request, directory)
        return _with_serial(response, serial)

    async def _fetch(self, name: NormalizedName) -> None:
        """Have the on-demand hook fetch ``name``; raises the 404 or 503 it calls for."""
        assert self.on_missing is not None
        answer = await self.on_missing(name)
        if answer.status == "absent":
            raise web.HTTPNotFound
        if answer.status == "busy":
            raise web.HTTPServiceUnavailable(
                headers={hdrs.RETRY_AFTER: str(answer.retry_after_seconds)},
                text=f"{name} is being fetched from upstream; try again shortly\n",
            )

    async def package_file(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["path"].split("/")
        if unsafe_component(parts) is not None:
            raise web.HTTPNotFound
        path = self.root.joinpath("packages", *parts)
        provenance = parts[-1].endswith(PROVENANCE_SUFFIX)
        return await _send_file(
            request,
            path,
            content_type=PROVENANCE_MEDIA_TYPE if provenance else None,
            cache_control=PACKAGE_CACHE_CONTROL,
        )

    async def json_api(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        try:
            name = project_name(raw)
        except MalformedResponseError:
            raise web.HTTPNotFound from None
        path = self.root / "pypi" / name / "json"
        page = await asyncio.to_thread(_stat_page, path, "json")
        if page is None:
            raise web.HTTPNotFound
        if raw != name:
            raise web.HTTPMovedPermanently(f"/pypi/{name}/json")
        serial = await self._serial(name)
        response = await _send_page(
            request,
            page,
            content_type="application/json",
            vary="Accept-Encoding",
        )
        return _with_serial(response, serial)

    async def _serial(self, name: NormalizedName) -> Serial | None:
        return None if self.page_serial is None else await self.page_serial(name)

    async def last_modified(self, request: web.Request) -> web.StreamResponse:
        return await _send_file(
            request,
            self.root / "last-modified",
            content_type="text/plain; charset=utf-8",
            cache_control="no-cache",
        )

    async def _simple_page(self, request: web.Request, directory: Path) -> web.StreamResponse:
        pages = await asyncio.to_thread(_stat_variants, directory)
        if not pages:
            raise web.HTTPNotFound
        media_type = negotiate(request.headers.get(hdrs.ACCEPT), list(pages))
        if media_type is None:
            raise web.HTTPNotAcceptable(headers={hdrs.VARY: "Accept"})
        variant = next(v for v in _VARIANTS if v.media_type == media_type)
        return await _send_page(
            request,
            pages[media_type],
            content_type=variant.content_type,
            vary="Accept, Accept-Encoding",
        )


def _with_serial(response: web.StreamResponse, serial: Serial | None) -> web.StreamResponse:
    if serial is not None:
        response.headers[SERIAL_HEADER] = str(serial)
    return response


def _stat_variants(directory: Path) -> dict[str, _Page]:
    """The page files present in ``directory``, by media type (blocking)."""
    pages: dict[str, _Page] = {}
    for variant in _VARIANTS:
        page = _stat_page(directory / variant.filename, variant.filename)
        if page is not None:
            pages[variant.media_type] = page
    return pages


def _stat_page(path: Path, tag: str) -> _Page | None:
    """A regular file's validators, or None when there is none (blocking).

    The ETag names the variant: ``index.html`` and ``index.v1_html`` hold the same
    bytes and may share an mtime, yet are different representations.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _Page(path=path, etag=f"{tag}-{st.st_mtime_ns:x}-{st.st_size:x}", mtime=st.st_mtime)


async def _send_page(
    request: web.Request, page: _Page, *, content_type: str, vary: str
) -> web.StreamResponse:
    """A page read whole: revalidation (304), gzip when accepted, no Range."""
    gzip = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
    # gzip changes the bytes, so it is a different representation with its own tag.
    etag = f"{page.etag}-gzip" if gzip else page.etag
    headers = {hdrs.VARY: vary, hdrs.CACHE_CONTROL: INDEX_CACHE_CONTROL}
    if _is_not_modified(request, etag, page.mtime):
        response = web.Response(status=304, headers=headers)
        response.etag = etag
        response.last_modified = page.mtime
        return response
    try:
        body = await asyncio.to_thread(page.path.read_bytes)
    except OSError:
        # Renamed away between the stat and the read (a sync deleting the project).
        raise web.HTTPNotFound from None
    response = web.Response(body=body, headers=headers)
    response.content_type = content_type.partition(";")[0]
    if "charset=" in content_type:
        response.charset = content_type.rpartition("=")[2]
    response.etag = etag
    response.last_modified = page.mtime
    if gzip:
        response.enable_compression(ContentCoding.gzip)
    return response


def _is_not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if_none_match = request.if_none_match
    if if_none_match is not None:
        return any(tag.value in {etag, "*"} for tag in if_none_match)
    if_modified_since = request.if_modified_since
    return if_modified_since is not None and int(mtime) <= if_modified_since.timestamp()


async def _send_file(
    request: web.Request, path: Path, *, content_type: str | None, cache_control: str
) -> web.StreamResponse:
    """A file as it is on disk: sendfile, Range, HEAD, conditional requests."""
    if await asyncio.to_thread(_stat_page, path, "") is None:
        raise web.HTTPNotFound
    headers = {hdrs.CACHE_CONTROL: cache_control}
    if content_type is not None:
        headers[hdrs.CONTENT_TYPE] = content_type
    return _ExactFileResponse(path, headers=headers)


class _ExactFileResponse(web.FileResponse):
    """A FileResponse that never swaps in a ``<file>.gz`` or ``.br`` sibling.

    aiohttp serves such a sibling with a Content-Encoding when the client accepts one;
    a mirror must send the exact bytes whose sha256 the index advertises.
    """

    def _get_file_path_stat_encoding(
        self, accept_encoding: str
    ) -> tuple[Path | None, os.stat_result, str | None]:
        del accept_encoding
        return super()._get_file_path_stat_encoding("")


@asynccontextmanager
async def running_server(
    web_root: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    access_log: bool = True,
    extra_routes: Sequence[web.RouteDef] = (),
    app: web.Application | None = None,
    page_serial: PageSerial | None = None,
    on_missing: ProjectFetcher | None = None,
) -> AsyncIterator[str]:
    """Serve ``web_root`` on ``host:port`` for the duration of the block (or ``app``
    instead, e.g. :func:`mirror.bucketserver.create_bucket_app`'s).

    Yields the base URL (``http://host:port``; port 0 picks a free port). Requests
    are logged to the ``mirror.server.access`` logger when ``access_log`` is true.
    Raises MirrorError when the address cannot be bound.
    """
    runner = web.AppRunner(
        app
        or create_app(
            web_root, extra_routes=extra_routes, page_serial=page_serial, on_missing=on_missing
        ),
        access_log=access_logger if access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise MirrorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound_host, bound_port = runner.addresses[0][:2]
        yield str(URL.build(scheme="http", host=bound_host, port=bound_port))
    finally:
        await runner.cleanup()


async def serve(
    web_root: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    access_log: bool = True,
    extra_routes: Sequence[web.RouteDef] = (),
    app: web.Application | None = None,
    page_serial: PageSerial | None = None,
    on_missing: ProjectFetcher | None = None,
) -> None:
    """Serve ``web_root`` (or ``app``, see :func:`running_server`) until SIGTERM or
    cancellation (SIGINT under asyncio.run).

    Raises MirrorError when the address cannot be bound.
    """
    if app is None and not await asyncio.to_thread(web_root.is_dir):
        logger.warning("%s does not exist yet: every request gets 404 until a sync", web_root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with running_server(
            web_root,
            host=host,
            port=port,
            access_log=access_log,
            extra_routes=extra_routes,
            app=app,
            page_serial=page_serial,
            on_missing=on_missing,
        ) as url:
            logger.info("serving %s at %s/simple/", "the bucket" if app else web_root, url)
            await stop.wait()
            logger.info("stopping: SIGTERM")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
