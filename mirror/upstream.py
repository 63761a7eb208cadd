"""The upstream client: the only module in `mirror` that speaks HTTP to the index.

It covers PyPI's three mirroring XML-RPC methods (``changelog_last_serial``,
``changelog_since_serial``, ``list_packages_with_serial``), a project's detail from the
PEP 691 JSON simple page or the ``/pypi/<project>/json`` API (with the
``X-PyPI-Last-Serial`` staleness check), the raw JSON API body, the PEP 691 root index
and each page's serial and ETag (how an upstream without XML-RPC is followed), and
streamed, verified-by-the-caller downloads. An upstream without the XML-RPC endpoint
is told apart (NoXmlRpcError) from one whose endpoint fails.

Every failure leaves this module as a :class:`~mirror.errors.MirrorError`: aiohttp,
XML and JSON exceptions are translated here, with ``raise ... from exc``.
Timeouts, connection resets, truncated bodies, HTTP 429 and 5xx, rate-limit faults and
stale serials are retried with exponential back-off and full jitter (honouring
``Retry-After``, which then holds back every request the client starts until it has
passed: at dozens of requests in flight, upstream's "slow down" is for all of them);
everything else fails at once. URLs in messages and logs have their
credentials removed (:func:`redact_url`).

Safe defaults: TLS certificates are verified (against the system's CAs, or the
``ca_bundle`` given), and a failed verification fails at once with a message that
says so rather than being retried. Bodies read into memory are capped (project pages
and JSON at :data:`MAX_PAGE_BYTES`, XML-RPC answers at :data:`MAX_XMLRPC_BYTES`):
they are read in chunks and refused as soon as they pass the cap. Downloads stream
to the caller's store, which stops at the advertised size.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import math
import platform
import random
import re
import ssl
import time
import xmlrpc.client
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Protocol, TypeVar
from xml.parsers.expat import ExpatError

import aiohttp
from packaging.utils import NormalizedName

from mirror import __version__
from mirror.config import Config
from mirror.errors import (
    BodySizeError,
    HTTPStatusError,
    IntegrityError,
    MalformedResponseError,
    NoXmlRpcError,
    ProjectNotFoundError,
    StaleResponseError,
    TransientUpstreamError,
    UpstreamError,
    XmlRpcFaultError,
)
from mirror.listing import Listing, ListingParser
from mirror.models import ChangelogEntry, PageValidator, ProjectDetail, Serial, SimpleRoot

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

SIMPLE_JSON_TYPE: Final = "application/vnd.pypi.simple.v1+json"
"""The PEP 691 content type asked for, and required, on project pages."""

CHANGELOG_PAGE_LIMIT: Final = 50_000
"""PyPI answers at most this many rows per ``changelog_since_serial`` call."""

CACHE_BUST_PARAMETER: Final = "_mirror_cb"
"""Query parameter added after a stale answer, so the CDN misses its cache."""

MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
"""Largest project page or JSON API body read (the biggest PyPI pages are a few MB)."""

MAX_XMLRPC_BYTES: Final = 512 * 1024 * 1024
"""Largest XML-RPC answer read (PyPI's full listing is about 35-70 MB of XML)."""

_NO_XMLRPC_STATUSES: Final = frozenset({404, 405, 501})
"""What an upstream without an XML-RPC endpoint answers ``POST /pypi`` with."""

_CHUNK_BYTES: Final = 1024 * 1024
# Pages up to this size are parsed on the event loop (~0.1 ms), bigger ones in a thread.
_INLINE_PARSE_BYTES: Final = 64 * 1024
# Warehouse's rate-limit fault: "HTTPTooManyRequests: ... Limit may reset in N seconds."
_RATE_LIMIT_MARKER: Final = "HTTPTooManyRequests"
_RATE_LIMIT_RESET_RE: Final = re.compile(r"reset in (\d+) seconds?")
# scheme://userinfo@ — the userinfo ends at the last "@" before the path.
_USERINFO_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def default_user_agent(contact: str | None = None) -> str:
    """A descriptive User-Agent, as PEP 381 and PyPI ask of mirrors.

    ``mirror/<version> (PyPI mirror; <contact>) Python/<x.y.z> aiohttp/<version>``;
    the contact part is left out when none is given.
    """
    comment = "PyPI mirror" if contact is None else f"PyPI mirror; {contact}"
    return (
        f"mirror/{__version__} ({comment}) "
        f"Python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
    )


def redact_url(url: str) -> str:
    """Return ``url`` without its ``user:password@`` part, for logs and error messages.

    Every URL inside a longer text is redacted too; text without credentials is
    returned unchanged.
    """
    return _USERINFO_RE.sub(r"\1", url)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSettings:
    """How to reach upstream and how hard to try."""

    base_url: str
    """Root of the index, e.g. ``https://pypi.org``; a trailing slash is ignored.
    ``user:password@`` in it is sent as HTTP basic auth."""
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    """Longest wait for any one read from the socket (not for the whole body)."""
    retries: int = 5
    """Extra attempts after the first, for transient failures."""
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    """Cap on one back-off; a ``Retry-After`` longer than this fails at once."""
    max_connections: int = 32
    user_agent: str = field(default_factory=default_user_agent)
    ca_bundle: Path | None = None
    """PEM file of the certificate authorities to trust instead of the system's."""
    proxy_url: str | None = None
    """HTTP proxy every request goes through (``http://[user:password@]host:port``);
    None: direct. Environment variables (``HTTPS_PROXY``...) are not read."""
    max_page_bytes: int = MAX_PAGE_BYTES
    max_xmlrpc_bytes: int = MAX_XMLRPC_BYTES

    @classmethod
    def from_config(cls, config: Config, *, max_connections: int = 32) -> UpstreamSettings:
        """The settings ``config``'s ``[mirror]`` section describes; every command that
        talks to upstream builds them here, so none forgets a key (TLS, proxy)."""
        return cls(
            base_url=config.upstream_url,
            connect_timeout_seconds=config.connect_timeout_seconds,
            read_timeout_seconds=config.read_timeout_seconds,
            retries=config.retries,
            max_connections=max_connections,
            user_agent=default_user_agent(contact=config.user_agent_contact),
            ca_bundle=config.ca_bundle,
            proxy_url=config.proxy_url,
        )


class Upstream:
    """Client for one upstream index; an async context manager owning one session.

    ``sleep`` and ``rng`` are injectable so tests observe back-off without waiting.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._sleep = sleep
        self._clock = clock
        self._paused_until = -math.inf
        """Upstream's last ``Retry-After`` ends then (``clock`` time): every request
        of the run waits for it, not only the one that was told."""
        # Jitter only spreads retries out; it needs no cryptographic strength.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Upstream:
        """Open the session. Raises UpstreamError when ``ca_bundle`` cannot be loaded."""
        settings = self._settings
        verify: ssl.SSLContext | bool = True  # aiohttp's default: the system's CAs
        if settings.ca_bundle is not None:
            verify = await asyncio.to_thread(_ssl_context, settings.ca_bundle)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.max_connections, ssl=verify),
            # Per-read deadlines, no total: a 1 GiB wheel may rightly take an hour.
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.connect_timeout_seconds,
                sock_read=settings.read_timeout_seconds,
            ),
            headers={"User-Agent": settings.user_agent},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- XML-RPC ----------------------------------------------------------------------

    async def changelog_last_serial(self) -> Serial:
        """Upstream's newest serial. ``<nil/>`` (an empty index) reads as 0.

        Raises MalformedResponseError, XmlRpcFaultError, TransientUpstreamError (after
        retries), HTTPStatusError.
        """
        result = await self._xmlrpc("changelog_last_serial")
        if result is None:
            return Serial(0)
        if isinstance(result, bool) or not isinstance(result, int) or result < 0:
            raise MalformedResponseError(
                f"XML-RPC changelog_last_serial: expected a serial, got {result!r}"
            )
        return Serial(result)

    async def changelog_since_serial(
        self, serial: Serial, *, page_limit: int = CHANGELOG_PAGE_LIMIT
    ) -> list[ChangelogEntry]:
        """Every changelog row after ``serial``, in serial order.

        A page of ``page_limit`` rows or more means upstream cut the answer short, so
        the call is repeated from the page's last serial until a shorter page comes.
        Actions are HTML-unescaped (Warehouse sends ``&#246;`` for non-ASCII text).
        Raises as :meth:`changelog_last_serial`; MalformedResponseError also for a full
        page that does not move past the serial asked for.
        """
        if page_limit < 1:
            raise ValueError(f"page_limit must be at least 1, got {page_limit}")
        entries: list[ChangelogEntry] = []
        since = serial
        while True:
            rows = await self._xmlrpc("changelog_since_serial", since)
            if not isinstance(rows, list):
                raise MalformedResponseError(
                    f"XML-RPC changelog_since_serial: expected an array, got {type(rows).__name__}"
                )
            page = [_unescaped(ChangelogEntry.from_row(row, index=i)) for i, row in enumerate(rows)]
            entries.extend(page)
            if len(page) < page_limit:
                break
            last = max(entry.serial for entry in page)
            if last <= since:
                raise MalformedResponseError(
                    f"XML-RPC changelog_since_serial({since}): a full page that ends at {last}"
                )
            logger.debug("changelog page of %d rows ends at serial %d", len(page), last)
            since = last
        entries.sort(key=lambda entry: entry.serial)
        return entries

    async def list_packages_with_serial(self) -> Listing:
        """Every project upstream has, with its last serial and display name.

        The answer (hundreds of thousands of members) is folded into the listing's two
        maps as it arrives (see :mod:`mirror.listing`). Names that are not valid
        project names are skipped with a warning: no mirror could hold them. Raises as
        :meth:`changelog_last_serial`.
        """
        return await self._xmlrpc_parsed("list_packages_with_serial", (), ListingParser)

    async def _xmlrpc(self, method: str, *params: int) -> object:
        """Call ``method`` and return its one result, parsed while the body streams in."""
        return await self._xmlrpc_parsed(method, params, _ValueParser)

    async def _xmlrpc_parsed(
        self, method: str, params: tuple[int, ...], new_parser: Callable[[], _BodyParser[_T]]
    ) -> _T:
        """Call ``method``, feeding the body to a fresh parser per attempt as it
        streams in; return what the parser makes of it."""
        url = f"{self._base}/pypi"
        body = xmlrpc.client.dumps(params, method, allow_none=True).encode()

        async def attempt(number: int) -> _T:
            limit = self._settings.max_xmlrpc_bytes
            async with (
                _xmlrpc_answer(self._open, url, body) as response,
                aclosing(_capped_chunks(response, url, limit)) as chunks,
            ):
                parser = new_parser()
                try:
                    async for chunk in chunks:
                        parser.feed(chunk)
                    return parser.close()
                except xmlrpc.client.Fault as fault:
                    raise _fault_error(method, fault) from fault
                except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
                    raise MalformedResponseError(
                        f"XML-RPC {method}: unparseable response: {exc!r}"
                    ) from exc

        return await self._retrying(f"XML-RPC {method}", attempt)

    # --- the PEP 691 root index ---------------------------------------------------------

    async def simple_root(self) -> SimpleRoot:
        """The PEP 691 JSON root ``/simple/`` (``upstream-api = simple``), capped as
        the full listing is. Raises MalformedResponseError (not PEP 691 JSON: the
        Content-Type must be :data:`SIMPLE_JSON_TYPE`), TransientUpstreamError,
        HTTPStatusError."""
        url = f"{self._base}/simple/"

        async def attempt(number: int) -> SimpleRoot:
            headers = {"Accept": SIMPLE_JSON_TYPE}
            async with self._open("GET", url, headers=headers) as response:
                if response.content_type.lower() != SIMPLE_JSON_TYPE:
                    raise MalformedResponseError(
                        f"{redact_url(url)}: Content-Type {response.content_type!r}, expected "
                        f"{SIMPLE_JSON_TYPE!r} (a PEP 691 index is needed to follow it)"
                    )
                body = await _read_capped(response, url, self._settings.max_xmlrpc_bytes)
            return await asyncio.to_thread(_parse_root, body, url)

        return await self._retrying("root index", attempt)

    async def page_validator(
        self, name: NormalizedName, known: PageValidator | None
    ) -> PageValidator:
        """The PEP 691 page's ``X-PyPI-Last-Serial`` and ``ETag``, asked with
        ``If-None-Match`` when ``known`` has an ETag (a 304 returns ``known``); a 404
        an empty validator. Raises TransientUpstreamError, HTTPStatusError."""
        url = f"{self._base}/simple/{name}/"

        async def attempt(number: int) -> PageValidator:
            headers = {"Accept": SIMPLE_JSON_TYPE}
            if known is not None and known.etag is not None:
                headers["If-None-Match"] = known.etag
            try:
                async with self._open("GET", url, headers=headers, project=name) as response:
                    if response.status == 304 and known is not None:
                        return known
                    # Read to the end, so that the connection is reused.
                    await _read_capped(response, url, self._settings.max_page_bytes)
                    return PageValidator(
                        etag=response.headers.get("ETag"), serial=_serial_header(response)
                    )
            except ProjectNotFoundError:
                return PageValidator()

        return await self._retrying(f"page of {name}", attempt)

    # --- project detail -----------------------------------------------------------------

    async def project_detail(
        self,
        name: NormalizedName,
        *,
        min_serial: Serial | None,
        source: Literal["simple", "json"] = "simple",
        cache_bust: Serial | None = None,
    ) -> ProjectDetail:
        """What upstream says about one project, at ``min_serial`` or newer.

        ``simple`` reads the PEP 691 JSON page ``/simple/<name>/`` (its Content-Type
        must be :data:`SIMPLE_JSON_TYPE`); ``json`` reads ``/pypi/<name>/json``.
        Redirects are followed, and relative file URLs resolve against the final URL.
        An answer older than ``min_serial`` (by ``X-PyPI-Last-Serial``, or by the body's
        serial when the header is absent) is stale: it is retried with back-off and a
        cache-busting query. Without any serial the page counts as ``min_serial`` (or 0).
        ``cache_bust`` asks for ``<page>?<serial>`` from the first attempt on (as
        bandersnatch does), so that a CDN's cached answer (a stale 404) is missed.

        Raises ProjectNotFoundError (404), StaleResponseError (still stale after the
        retries), MalformedResponseError / UnsafePathError (that project only),
        TransientUpstreamError, HTTPStatusError.
        """
        if source == "simple":
            url = f"{self._base}/simple/{name}/"
            accept = SIMPLE_JSON_TYPE
        else:
            url = f"{self._base}/pypi/{name}/json"
            accept = "application/json"
        stale = False

        async def attempt(number: int) -> ProjectDetail:
            nonlocal stale
            query = [] if cache_bust is None else [str(int(cache_bust))]
            if stale:
                query.append(f"{CACHE_BUST_PARAMETER}={min_serial}-{number}")
            target = f"{url}?{'&'.join(query)}" if query else url
            async with self._open("GET", target, headers={"Accept": accept}, project=name) as r:
                if source == "simple" and r.content_type.lower() != SIMPLE_JSON_TYPE:
                    raise MalformedResponseError(
                        f"{redact_url(target)}: Content-Type {r.content_type!r}, "
                        f"expected {SIMPLE_JSON_TYPE!r}"
                    )
                header_serial = _serial_header(r)
                if (
                    min_serial is not None
                    and header_serial is not None
                    and header_serial < min_serial
                ):
                    stale = True
                    raise StaleResponseError(
                        redact_url(target), expected=min_serial, got=header_serial
                    )
                body = await _read_capped(r, target, self._settings.max_page_bytes)
                page_url = str(r.url)
            fallback = header_serial if header_serial is not None else min_serial
            parse = functools.partial(
                _parse_detail, body, name=name, page_url=page_url, serial=fallback, source=source
            )
            # Most pages are a few kB: parsed here in less time than a thread hop takes.
            detail = parse() if len(body) <= _INLINE_PARSE_BYTES else await asyncio.to_thread(parse)
            # The header, when sent, is the authority: a mirror upstream of us sends its
            # own serial there while its pages carry the serials of its upstream.
            if min_serial is not None and header_serial is None and detail.serial < min_serial:
                stale = True
                raise StaleResponseError(redact_url(target), expected=min_serial, got=detail.serial)
            return _with_index_serial(detail, header_serial)

        return await self._retrying(f"project {name} ({source})", attempt)

    async def project_json_raw(self, name: NormalizedName) -> bytes:
        """The body of ``/pypi/<name>/json`` exactly as upstream sent it.

        Raises ProjectNotFoundError (404: also for a project without releases),
        TransientUpstreamError, HTTPStatusError.
        """
        url = f"{self._base}/pypi/{name}/json"

        async def attempt(number: int) -> bytes:
            headers = {"Accept": "application/json"}
            async with self._open("GET", url, headers=headers, project=name) as response:
                return await _read_capped(response, url, self._settings.max_page_bytes)

        return await self._retrying(f"JSON API copy of {name}", attempt)

    # --- files --------------------------------------------------------------------------

    async def download(
        self,
        url: str,
        store: Callable[[AsyncIterator[bytes]], Awaitable[_T]],
        *,
        size: int | None = None,
    ) -> _T:
        """Stream ``url`` into ``store`` and return what it stored.

        The bytes are exactly upstream's (``Accept-Encoding: identity``, nothing
        decompressed), handed over in chunks. ``store`` verifies them; its
        IntegrityError (a truncated or corrupted transfer) is retried like a transient
        failure, from the start. With the advertised ``size``, an answer whose
        ``Content-Length`` says otherwise is refused before a byte of its body is
        read, and a body that runs past ``size`` is cut at the chunk that passes it:
        both raise BodySizeError at once, without a retry (a CDN sending an endless
        body for a 1 KiB file costs about 1 KiB, once). Raises HTTPStatusError (404
        and other non-retryable statuses), TransientUpstreamError or IntegrityError
        after the retries, BodySizeError, and whatever else ``store`` raises.
        """

        async def attempt(number: int) -> _T:
            headers = {"Accept-Encoding": "identity"}
            async with self._open("GET", url, headers=headers, auto_decompress=False) as response:
                announced = response.content_length
                if size is not None and announced is not None and announced != size:
                    # Closed, not released: the unread body must not be drained.
                    response.close()
                    raise BodySizeError(
                        f"{redact_url(url)}: expected {size} bytes, Content-Length says"
                        f" {announced}: refused unread"
                    )
                async with aclosing(_body_chunks(response, url, size)) as chunks:
                    return await store(chunks)

        return await self._retrying("download", attempt)

    # --- plumbing -----------------------------------------------------------------------

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        data: bytes | None = None,
        project: NormalizedName | None = None,
        auto_decompress: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request whose status is already checked; aiohttp errors, also those
        raised while the caller reads the body, come out translated."""
        if self._session is None:
            raise RuntimeError("Upstream used outside 'async with'")
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                auto_decompress=auto_decompress,
                proxy=self._settings.proxy_url,
            ) as response:
                logger.debug("%s %s: HTTP %d", method, redact_url(url), response.status)
                _check_status(response, url, project=project)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translated(exc, url) from exc

    async def _retrying(self, what: str, attempt: Callable[[int], Awaitable[_T]]) -> _T:
        """Run ``attempt(0)``, ``attempt(1)``, ... until one does not fail transiently
        (IntegrityError counts as transient: only a download's store raises it; a
        BodySizeError does not: the next answer would be the same)."""
        retries = self._settings.retries
        number = 0
        # A request starting while upstream asked us to wait waits too (a retry
        # already waits at least that long: its back-off honours the hint).
        paused = self._paused_until - self._clock()
        if paused > 0:
            await self._sleep(paused)
        while True:
            try:
                return await attempt(number)
            except (TransientUpstreamError, IntegrityError) as exc:
                if number >= retries or isinstance(exc, BodySizeError):
                    raise
                delay = self._backoff_seconds(number, exc)
                hint = exc.retry_after_seconds if isinstance(exc, TransientUpstreamError) else None
                if delay is not None and hint is not None:
                    self._paused_until = max(self._paused_until, self._clock() + hint)
                if delay is None:
                    logger.warning("%s: %s; upstream asks for a longer wait, giving up", what, exc)
                    raise
                logger.warning(
                    "%s: %s; retry %d of %d in %.1f s", what, exc, number + 1, retries, delay
                )
            # Sleep outside the except block so a later failure does not chain this one.
            await self._sleep(delay)
            number += 1

    def _backoff_seconds(self, number: int, exc: Exception) -> float | None:
        """Full jitter over ``base * 2**number`` capped at the max; at least upstream's
        ``Retry-After``; None when that hint is beyond the cap (a worker should not
        block for an hour: the sync's retry queue handles long waits)."""
        settings = self._settings
        ceiling = min(
            settings.backoff_max_seconds, settings.backoff_base_seconds * 2.0 ** min(number, 64)
        )
        delay = self._rng.uniform(0, ceiling)
        hint = exc.retry_after_seconds if isinstance(exc, TransientUpstreamError) else None
        if hint is None:
            return delay
        if hint > settings.backoff_max_seconds:
            return None
        return max(delay, hint)


def _check_status(
    response: aiohttp.ClientResponse, url: str, *, project: NormalizedName | None
) -> None:
    status = response.status
    # 304: the answer to If-None-Match (only page_validator sends one).
    if status < 300 or status == 304:
        return
    if status == 404 and project is not None:
        raise ProjectNotFoundError(project)
    # 501 Not Implemented will not change with a retry (an upstream without XML-RPC).
    if status == 429 or (status >= 500 and status != 501):
        raise TransientUpstreamError(
            f"{redact_url(url)}: HTTP {status}", retry_after_seconds=_retry_after(response)
        )
    raise HTTPStatusError(redact_url(url), status)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """``Retry-After`` in seconds; None when absent or an HTTP date (we then use our
    own back-off rather than trust a clock comparison)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 <= value < math.inf else None


def _serial_header(response: aiohttp.ClientResponse) -> Serial | None:
    raw = response.headers.get("X-PyPI-Last-Serial", "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return None
    return Serial(int(raw))


def _translated(exc: aiohttp.ClientError | TimeoutError, url: str) -> UpstreamError:
    """Map an aiohttp failure to our tree: network trouble is worth retrying, a TLS
    failure (an untrusted certificate, a wrong host name) is not: it will not go away
    by itself, and saying so at once beats five retries."""
    text = redact_url(str(exc)) or "no detail"
    message = f"{redact_url(url)}: {type(exc).__name__}: {text}"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return UpstreamError(
            f"{redact_url(url)}: TLS verification failed ({text}); if upstream uses a "
            "private certificate authority, set [mirror] ca-bundle"
        )
    if isinstance(exc, TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return TransientUpstreamError(message)
    return UpstreamError(message)


def _ssl_context(ca_bundle: Path) -> ssl.SSLContext:
    """A verifying TLS context that trusts the authorities in ``ca_bundle`` (PEM)."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError(f"cannot load the CA bundle {ca_bundle}: {exc}") from exc


async def _capped_chunks(
    response: aiohttp.ClientResponse, url: str, limit: int
) -> AsyncGenerator[bytes, None]:
    """The body in chunks; MalformedResponseError as soon as it passes ``limit`` bytes
    (at once when ``Content-Length`` announces more), so memory stays bounded."""
    announced = response.content_length
    if announced is not None and announced > limit:
        raise MalformedResponseError(
            f"{redact_url(url)}: a {announced}-byte answer is over the {limit}-byte limit"
        )
    received = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        received += len(chunk)
        if received > limit:
            raise MalformedResponseError(
                f"{redact_url(url)}: the answer is over the {limit}-byte limit"
            )
        yield chunk


async def _read_capped(response: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (see :func:`_capped_chunks`)."""
    body = bytearray()
    async with aclosing(_capped_chunks(response, url, limit)) as chunks:
        async for chunk in chunks:
            body += chunk
    return bytes(body)


async def _body_chunks(
    response: aiohttp.ClientResponse, url: str, size: int | None
) -> AsyncGenerator[bytes, None]:
    """The body in chunks, with aiohttp errors translated here: the consumer must not
    mistake a reset (aiohttp's ClientOSError is an OSError) for a disk failure.
    BodySizeError as soon as the body passes ``size`` bytes (when given)."""
    received = 0
    try:
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            received += len(chunk)
            if size is not None and received > size:
                response.close()
                raise BodySizeError(
                    f"{redact_url(url)}: expected {size} bytes, the body runs past them"
                )
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _translated(exc, url) from exc


class _BodyParser(Protocol[_T_co]):
    """What an XML-RPC answer's body is fed to, a chunk at a time."""

    def feed(self, chunk: bytes) -> None: ...

    def close(self) -> _T_co: ...


class _ValueParser:
    """``xmlrpc.client``'s parser: the answer's one value, whatever its type."""

    def __init__(self) -> None:
        self._parser, self._unmarshaller = xmlrpc.client.getparser()

    def feed(self, chunk: bytes) -> None:
        self._parser.feed(chunk)

    def close(self) -> object:
        self._parser.close()
        (result,) = self._unmarshaller.close()
        value: object = result
        return value


def _fault_error(method: str, fault: xmlrpc.client.Fault) -> UpstreamError:
    """Warehouse's rate-limit fault is transient; every other fault is final."""
    text = str(fault.faultString)
    if _RATE_LIMIT_MARKER in text:
        match = _RATE_LIMIT_RESET_RE.search(text)
        return TransientUpstreamError(
            f"XML-RPC {method}: rate limited: {text}",
            retry_after_seconds=float(match[1]) if match else None,
        )
    return XmlRpcFaultError(method, fault.faultCode, text)


def _unescaped(entry: ChangelogEntry) -> ChangelogEntry:
    return replace(entry, action=html.unescape(entry.action))


@asynccontextmanager
async def _xmlrpc_answer(
    open_request: Callable[..., AbstractAsyncContextManager[aiohttp.ClientResponse]],
    url: str,
    body: bytes,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """``POST`` an XML-RPC call through ``open_request`` (``Upstream._open``). An
    upstream without the endpoint raises NoXmlRpcError: it answers 404, 405 or 501, or
    one of its HTML or JSON pages; any other answer that fails to parse is a broken
    endpoint (MalformedResponseError, from the caller's parser)."""
    headers = {"Content-Type": "text/xml", "Accept": "text/xml"}
    try:
        async with open_request("POST", url, headers=headers, data=body) as response:
            if _is_page_type(response.content_type):
                raise NoXmlRpcError(
                    f"{redact_url(url)}: no XML-RPC endpoint (an answer of type "
                    f"{response.content_type!r})"
                )
            yield response
    except HTTPStatusError as exc:
        if exc.status not in _NO_XMLRPC_STATUSES:
            raise
        raise NoXmlRpcError(f"{exc}: no XML-RPC endpoint") from exc


def _is_page_type(content_type: str) -> bool:
    """Whether ``content_type`` is an HTML or JSON page's, never an XML-RPC answer's."""
    lowered = content_type.lower()
    return "html" in lowered or "json" in lowered


def _parse_root(body: bytes, url: str) -> SimpleRoot:
    """Parse a root index body (in a worker thread: PyPI's is tens of MB)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MalformedResponseError(f"{redact_url(url)}: not JSON: {exc}") from exc
    try:
        return SimpleRoot.from_json(data)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"{redact_url(url)}: {exc}") from exc


def _with_index_serial(detail: ProjectDetail, header_serial: Serial | None) -> ProjectDetail:
    """``detail`` with the ``X-PyPI-Last-Serial`` it came with, when that is newer than
    its body's serial (a mirror upstream of us: see ProjectDetail.index_serial)."""
    if header_serial is not None and header_serial > detail.serial:
        return replace(detail, index_serial=header_serial)
    return detail


def _parse_detail(
    body: bytes,
    *,
    name: NormalizedName,
    page_url: str,
    serial: Serial | None,
    source: Literal["simple", "json"],
) -> ProjectDetail:
    """Parse a project body (in a worker thread: big projects are megabytes)."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise MalformedResponseError(f"{redact_url(page_url)}: not JSON: {exc}") from exc
    try:
        if source == "simple":
            return ProjectDetail.from_simple_json(
                data, name=name, page_url=page_url, serial=serial or Serial(0)
            )
        return ProjectDetail.from_pypi_json(data, name=name, page_url=page_url)
    except MalformedResponseError as exc:
        # File URLs resolved against a page URL that carries credentials carry them
        # too; the message must not.
        raise type(exc)(redact_url(str(exc))) from exc
