"""A fake PyPI that speaks PyPI's mirroring APIs over real loopback HTTP.

:class:`FakeUpstream` keeps an in-memory journal the way Warehouse does: every
mutating call writes one journal row per event and bumps the serial by one, and each
project's ``last_serial`` is the serial of its latest row. It serves, with the exact
shapes, headers and quirks described in ``research/protocol.md``:

- XML-RPC ``POST /pypi`` (and ``/pypi/``, ``/RPC2``): ``changelog_last_serial``,
  ``changelog_since_serial`` (paged by ``page_limit``), ``list_packages_with_serial``;
- the JSON API ``GET /pypi/<project>/json`` and ``/pypi/<project>/<version>/json``;
- the simple API ``GET /simple/`` and ``/simple/<project>/`` with PEP 691 content
  negotiation (JSON 1.4 and the Warehouse HTML template);
- files and PEP 658 ``.metadata`` files at ``/packages/<aa>/<bb>/<rest>/<filename>``,
  the path derived from the blake2b-256 of the content as Warehouse does.

Fault hooks (:meth:`FakeUpstream.fail_next`, :meth:`FakeUpstream.stale_next`,
:meth:`FakeUpstream.stale_404_next`, :meth:`FakeUpstream.endless_file`,
:meth:`FakeUpstream.corrupt_file`) let tests provoke 5xx answers, CDN-stale pages and
corrupted downloads; a seeded :class:`~mirror.testing.faults.FaultPlan`
(:attr:`FakeUpstream.faults`) spreads every kind of fault over all requests, and
:meth:`FakeUpstream.serve_raw` answers one path with crafted bytes (hostile or broken
upstream). A :class:`~mirror.testing.network.Network` (:attr:`FakeUpstream.network`)
puts the server at a distance: a latency before every answer and a bandwidth cap
over all file bodies. The server only ever binds a loopback address.

The mutating methods are synchronous and hash in the calling thread: they are test
set-up, called between requests, not request handling.
"""

from __future__ import annotations

import asyncio
import bisect
import email.parser
import hashlib
import ipaddress
import json
import logging
import re
import ssl
import xmlrpc.client
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote
from xml.parsers.expat import ExpatError

from aiohttp import web
from aiohttp.typedefs import Handler
from packaging.utils import NormalizedName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from mirror.models import format_upload_time, version_sort_key
from mirror.testing.distributions import make_provenance, make_sdist, make_wheel
from mirror.testing.faults import ENDLESS_LENGTH, FaultKind, FaultPlan, RequestKind
from mirror.testing.network import CHUNK_BYTES, Network, TokenBucket

logger = logging.getLogger(__name__)

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
API_VERSION = "1.4"
# Warehouse's offer order: ties in q go to the earlier offer (WebOb acceptable_offers).
_OFFERS = (TEXT_HTML, SIMPLE_HTML, SIMPLE_JSON)
_PROJECT_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_XML_ILLEGAL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
_XMLRPC_PATHS = frozenset({"/pypi", "/pypi/", "/RPC2"})
_PAGE_RE = re.compile(r"^/(simple/[^/]+/|pypi/[^/]+/json/?)$")
_SERVER_ERRORS = (500, 502, 503, 504)
_RATE_LIMIT_TEXT = (
    "HTTPTooManyRequests: The action could not be performed because there were too "
    "many requests by the client. Limit may reset in {seconds} seconds."
)
# Journal time is synthetic and deterministic: one minute per serial from this instant.
_JOURNAL_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Content-Type, If-Match, If-Modified-Since, If-None-Match, If-Unmodified-Since"
    ),
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Max-Age": "86400",
    "Access-Control-Expose-Headers": "X-PyPI-Last-Serial",
}


_XmlRpcResult = int | list[list[str | int | None]] | dict[str, int] | xmlrpc.client.Fault


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """One journal row, as ``changelog_since_serial`` returns it."""

    name: str
    """The project's display name at write time."""
    version: str | None
    timestamp: int
    action: str
    serial: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _File:
    filename: str
    size: int
    sha256: str
    blake2b_256: str
    md5: str
    metadata_sha256: str | None
    requires_python: str | None
    upload_time: datetime
    packagetype: str
    python_version: str
    provenance: bool = False
    """Whether a PEP 740 provenance is served (``/integrity/...``) and linked."""

    @property
    def path(self) -> str:
        """Warehouse's content-addressed path below ``/packages/``."""
        b = self.blake2b_256
        return f"{b[:2]}/{b[2:4]}/{b[4:]}/{self.filename}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Release:
    version: str
    files: tuple[_File, ...] = ()
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Project:
    """One project's state; replaced, never mutated, so an old state can be served
    as a stale CDN copy."""

    display_name: str
    last_serial: int = 0
    releases: tuple[_Release, ...] = ()
    status: str = "active"
    status_reason: str | None = None

    def release(self, version: str) -> _Release | None:
        return next((r for r in self.releases if r.version == version), None)

    def with_release(self, release: _Release) -> _Project:
        others = tuple(r for r in self.releases if r.version != release.version)
        if len(others) == len(self.releases):
            return replace(self, releases=(*self.releases, release))
        return replace(
            self,
            releases=tuple(release if r.version == release.version else r for r in self.releases),
        )

    def without_release(self, version: str) -> _Project:
        return replace(self, releases=tuple(r for r in self.releases if r.version != version))

    @property
    def is_quarantined(self) -> bool:
        return self.status == "quarantined"

    def visible_files(self) -> list[tuple[_Release, _File]]:
        """Files in simple-page order (version, then filename); none when quarantined."""
        if self.is_quarantined:
            return []
        pairs = [(r, f) for r in self.releases for f in r.files]
        pairs.sort(key=lambda pair: (version_sort_key(pair[0].version), pair[1].filename))
        return pairs


@dataclass(slots=True)
class _Fault:
    path_prefix: str
    status: int
    remaining: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectedFault:
    """A fault the plan put on one request: the ``attempt``-th (from 0) for ``path``."""

    path: str
    attempt: int
    kind: FaultKind


@dataclass(frozen=True, slots=True, kw_only=True)
class RawAnswer:
    """A crafted answer for :meth:`FakeUpstream.serve_raw`: exactly these bytes.

    ``chunks``, when given, streams the body instead (without a Content-Length), so a
    test can send more than it would want to hold in memory, or send forever.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    chunks: Callable[[], AsyncIterator[bytes]] | None = None


class FakeUpstream:
    """An in-memory PyPI served over loopback HTTP; use as an async context manager.

    ``page_limit`` caps the rows one ``changelog_since_serial`` call returns (PyPI:
    50 000). ``port=0`` picks a free port; :attr:`base_url` tells which. Non-loopback
    hosts raise ValueError: this server must never be reachable from the network.
    ``faults`` is the initial :attr:`faults` plan; ``network`` the initial
    :attr:`network`; ``tls`` serves HTTPS with that server context (the base URL is
    then ``https://``). With ``xmlrpc_enabled`` false (or set false later)
    ``POST /pypi`` answers 404, as an index without XML-RPC does (devpi, a static
    tree, a company index).
    """

    def __init__(
        self,
        *,
        page_limit: int = 50_000,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        network: Network | None = None,
        tls: ssl.SSLContext | None = None,
        xmlrpc_enabled: bool = True,
    ):
        if not is_loopback(host):
            raise ValueError(f"refusing to serve on non-loopback host {host!r}")
        self.page_limit = page_limit
        self.xmlrpc_enabled = xmlrpc_enabled
        """Whether ``POST /pypi`` answers XML-RPC (else 404)."""
        self.request_log: list[tuple[str, str]] = []
        """``(method, path with query)`` of every request, in arrival order."""
        self._host = host
        self._port = port
        self._tls = tls
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._serial = 0
        self._journal: list[JournalEntry] = []
        self._projects: dict[NormalizedName, _Project] = {}
        # The state each project had before its latest journal row: what a stale CDN
        # would still serve.
        self._previous: dict[NormalizedName, _Project | None] = {}
        # Blobs stay after removal, as on PyPI's storage; only the indexes forget them.
        self._blobs: dict[str, bytes] = {}
        # PEP 740 provenance documents by filename (the integrity API's last parts).
        self._provenances: dict[str, bytes] = {}
        self._used_filenames: set[str] = set()
        # Where spill_files() put the blobs published so far, served from there.
        self._files_dir: Path | None = None
        self._spilled_paths: frozenset[str] = frozenset()
        self._corrupted: set[str] = set()
        # Files answered endlessly: path -> whether the answer announces a length.
        self._endless: dict[str, bool] = {}
        self._bytes_sent: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._stale: dict[NormalizedName, int] = {}
        self._not_found: dict[NormalizedName, int] = {}
        self._journaling = True
        self._plan = faults
        self._plan_counts: dict[str, int] = {}
        self._injected: list[InjectedFault] = []
        self._raw: dict[tuple[str, str], RawAnswer] = {}
        # Requests (by id, while in flight) the plan made stale, or a stale 404.
        self._stale_requests: dict[int, FaultKind] = {}
        self._network = Network()
        self._bucket: TokenBucket | None = None
        self.network = network or Network()

    # --- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._tls)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._runner = runner
        scheme = "http" if self._tls is None else "https"
        self._base_url = f"{scheme}://{host}:{port}"
        logger.debug("fake upstream listening at %s", self._base_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash; only while running."""
        if self._base_url is None:
            raise RuntimeError("FakeUpstream is not running: use `async with`")
        return self._base_url

    @property
    def serial(self) -> int:
        """The serial of the latest journal row (0 before any)."""
        return self._serial

    @property
    def journal(self) -> tuple[JournalEntry, ...]:
        """Every journal row ever written, removed projects' rows included."""
        return tuple(self._journal)

    # --- mutations (each journal row bumps the serial by one) ---------------------

    def add_file(
        self,
        project: str,
        version: str,
        filename: str,
        content: bytes,
        *,
        metadata: bytes | None = None,
        requires_python: str | None = None,
        upload_time: datetime | None = None,
        provenance: bytes | bool = False,
    ) -> None:
        """Upload one file: journal ``add <python_version> file <filename>``.

        Creates the project (``create``) and the release (``new release``) first when
        they are new, as an upload to PyPI does. ``metadata`` makes a PEP 658
        ``.metadata`` file served and advertised beside it. ``provenance`` serves a
        PEP 740 provenance at ``/integrity/<project>/<version>/<filename>/provenance``
        and links it from the pages: ``True`` one made by ``make_provenance``, bytes
        exactly those (a fault: not JSON, too large, another digest). ``requires_python``
        defaults to the release's. Raises ValueError for a filename that was ever
        used before (PyPI never allows reuse) or that contains a path separator.
        """
        if not filename or any(c in filename for c in "/\\\x00") or filename in {".", ".."}:
            raise ValueError(f"unusable filename {filename!r}")
        if filename in self._used_filenames:
            raise ValueError(f"filename {filename!r} was previously used")
        requires_dist = _requires_dist(metadata) if metadata is not None else ()
        key = self._ensure_project(project)
        self._ensure_release(
            key, version, requires_dist=requires_dist, requires_python=requires_python
        )
        state = self._projects[key]
        release = state.release(version)
        assert release is not None
        packagetype, python_version = _file_kind(filename)
        serial = self._serial + 1
        file = _File(
            filename=filename,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            blake2b_256=hashlib.blake2b(content, digest_size=32).hexdigest(),
            md5=hashlib.md5(content, usedforsecurity=False).hexdigest(),
            metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata is not None else None,
            requires_python=requires_python
            if requires_python is not None
            else (release.requires_python),
            upload_time=upload_time or _journal_time(serial, fraction=True),
            packagetype=packagetype,
            python_version=python_version,
            provenance=provenance is not False,
        )
        if provenance is not False:
            self._provenances[filename] = (
                make_provenance(filename, file.sha256) if provenance is True else provenance
            )
        self._used_filenames.add(filename)
        self._blobs[file.path] = content
        if metadata is not None:
            self._blobs[f"{file.path}.metadata"] = metadata
        updated = replace(release, files=(*release.files, file))
        self._log(
            key, version, f"add {python_version} file {filename}", state.with_release(updated)
        )

    def add_release(
        self,
        project: str,
        version: str,
        *,
        requires_dist: Sequence[str] = (),
        requires_python: str | None = None,
        sdist: bool = True,
        wheel: bool = True,
        provenance: bool = False,
    ) -> None:
        """Publish a release: ``create`` when the project is new, ``new release``, then
        an sdist and a wheel (with its ``.metadata``) built by make_sdist/make_wheel,
        each with a PEP 740 provenance when ``provenance``.

        The project's display name is the name as first given (``Alpha``). With
        ``sdist=False, wheel=False`` the release has no files, which PyPI allows.
        """
        key = self._ensure_project(project)
        self._ensure_release(
            key, version, requires_dist=tuple(requires_dist), requires_python=requires_python
        )
        display = self._projects[key].display_name
        if sdist:
            filename, content = make_sdist(
                display, version, requires_dist=requires_dist, requires_python=requires_python
            )
            self.add_file(
                project,
                version,
                filename,
                content,
                requires_python=requires_python,
                provenance=provenance,
            )
        if wheel:
            filename, content, metadata = make_wheel(
                display, version, requires_dist=requires_dist, requires_python=requires_python
            )
            self.add_file(
                project,
                version,
                filename,
                content,
                metadata=metadata,
                requires_python=requires_python,
                provenance=provenance,
            )

    def set_provenance(self, filename: str, body: bytes | None) -> None:
        """Serve ``body`` as the provenance of ``filename`` from now on (None: answer
        404 while the pages still link it), as a broken or hostile index would."""
        if body is None:
            self._provenances.pop(filename, None)
        else:
            self._provenances[filename] = body

    def remove_file(self, project: str, filename: str) -> None:
        """Delete one file from the indexes: journal ``remove file <filename>``.
        The release stays, possibly with no files. Raises KeyError if unknown."""
        key, state = self._lookup(project)
        for release in state.releases:
            kept = tuple(f for f in release.files if f.filename != filename)
            if len(kept) != len(release.files):
                updated = state.with_release(replace(release, files=kept))
                self._log(key, release.version, f"remove file {filename}", updated)
                return
        raise KeyError(f"{project!r} has no file {filename!r}")

    def remove_release(self, project: str, version: str) -> None:
        """Delete a release and all its files: journal ``remove release``."""
        key, state = self._lookup(project)
        self._release(state, version)
        self._log(key, version, "remove release", state.without_release(version))

    def remove_project(self, project: str) -> None:
        """Delete a project: journal ``remove project``. Its old journal rows stay, but it
        leaves every listing and its pages answer 404. The name may be created again."""
        key, _ = self._lookup(project)
        self._log(key, None, "remove project", None)

    def yank(self, project: str, version: str, *, reason: str | None = None) -> None:
        """PEP 592: mark every file of the release yanked; journal ``yank release``."""
        key, state = self._lookup(project)
        release = self._release(state, version)
        updated = replace(release, yanked=True, yanked_reason=reason or "")
        self._log(key, version, "yank release", state.with_release(updated))

    def unyank(self, project: str, version: str) -> None:
        """Undo :meth:`yank`; journal ``unyank release``."""
        key, state = self._lookup(project)
        release = self._release(state, version)
        updated = replace(release, yanked=False, yanked_reason="")
        self._log(key, version, "unyank release", state.with_release(updated))

    def backfill_metadata(self, project: str, filename: str, metadata: bytes) -> None:
        """Start serving a ``.metadata`` file for a file uploaded without one, as PyPI
        did when it backfilled PEP 658 metadata for old wheels. Like that backfill it
        writes no journal row: only a full re-check of the project sees it."""
        key, state = self._lookup(project)
        for release in state.releases:
            for file in release.files:
                if file.filename == filename:
                    updated = replace(file, metadata_sha256=hashlib.sha256(metadata).hexdigest())
                    self._blobs[f"{file.path}.metadata"] = metadata
                    files = tuple(updated if f is file else f for f in release.files)
                    self._projects[key] = state.with_release(replace(release, files=files))
                    return
        raise KeyError(f"{project!r} has no file {filename!r}")

    def add_role(self, project: str, user: str, *, role: str = "Owner") -> None:
        """An ownership-only event (journal ``add <role> <user>``): the serial and the
        project's last serial move, its pages do not change."""
        key, state = self._lookup(project)
        self._log(key, None, f"add {role} {user}", state)

    def set_status(self, project: str, status: str, reason: str | None = None) -> None:
        """PEP 792 status (``active``, ``archived``, ``quarantined``, ``deprecated``).

        Like Warehouse's archive/unarchive it writes no journal row and moves no serial.
        ``quarantined`` hides the files from the simple page, the project from the
        ``/simple/`` root, and makes the JSON API answer 404.
        """
        key, state = self._lookup(project)
        self._projects[key] = replace(state, status=status, status_reason=reason)

    def skip_serials(self, count: int) -> None:
        """Consume ``count`` serials without journal rows, like rolled-back transactions
        do on PyPI: serials are increasing but not contiguous."""
        self._serial += count

    # --- fault hooks -------------------------------------------------------------

    def fail_next(self, path_prefix: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests whose path starts with ``path_prefix`` get an
        empty ``status`` answer (still logged in :attr:`request_log`)."""
        self._faults.append(_Fault(path_prefix=path_prefix, status=status, remaining=times))

    def clear_faults(self) -> None:
        """Forget the :meth:`fail_next` answers not given yet."""
        self._faults.clear()

    def stale_next(self, project: str, times: int = 1) -> None:
        """The next ``times`` project page answers (simple page or JSON API) for
        ``project`` show it as it was before its latest journal row, with that older
        serial in ``X-PyPI-Last-Serial``, as a CDN that missed a purge would."""
        key = canonicalize_name(project)
        self._stale[key] = self._stale.get(key, 0) + times

    def stale_404_next(self, project: str, times: int = 1) -> None:
        """The next ``times`` project page answers (simple page or JSON API, with or
        without a query) for ``project`` are 404s, as a CDN that cached a miss would
        send: the project itself is unchanged."""
        key = canonicalize_name(project)
        self._not_found[key] = self._not_found.get(key, 0) + times

    @contextmanager
    def unjournaled(self) -> Iterator[None]:
        """Mutations inside write no journal rows, as changes a changelog missed:
        their serials are used all the same, so the listing's serials move (and a
        removed project leaves the listing) while ``changelog_since_serial`` shows
        nothing of them."""
        self._journaling = False
        try:
            yield
        finally:
            self._journaling = True

    def spill_files(self, directory: Path) -> None:
        """Write every file (and ``.metadata`` file) published so far under
        ``directory`` and from now on send them from there with ``sendfile``, as a CDN
        would: no copy through this process. For benchmarks, where the fake shares the
        machine with the mirror it measures: answering 2.25 GB from memory took this
        process's one event loop 4-5 s of CPU, with sendfile about 0.5 s.

        Files published later, corrupted files, requests with a ``Range`` and every
        request while a fault plan is set are still answered from memory, exactly as
        before."""
        for path, blob in self._blobs.items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        self._files_dir = directory
        self._spilled_paths = frozenset(self._blobs)

    def corrupt_file(self, project: str, filename: str) -> None:
        """From now on the file's bytes are served altered (same size); the pages keep
        advertising the original sha256."""
        _, state = self._lookup(project)
        for release in state.releases:
            for file in release.files:
                if file.filename == filename:
                    self._corrupted.add(file.path)
                    return
        raise KeyError(f"{project!r} has no file {filename!r}")

    def endless_file(self, project: str, filename: str, *, announce_length: bool = True) -> None:
        """From now on the file is answered with a body that never ends (1 KiB chunks
        until the client hangs up), as a broken CDN node might send; with
        ``announce_length`` under a ``Content-Length`` of :data:`ENDLESS_LENGTH`,
        else chunked. :meth:`bytes_sent` tells what it cost."""
        self._endless[self._live_file(project, filename).path] = announce_length

    def bytes_sent(self, project: str, filename: str) -> int:
        """Body bytes sent so far for one live file, over all its answers (what a
        client hanging up early spared is not counted)."""
        return self._bytes_sent.get(self._live_file(project, filename).path, 0)

    @property
    def faults(self) -> FaultPlan | None:
        """The fault plan applied to every request; None serves faithfully.

        Setting it (``None`` included) restarts the per-path request counts and
        clears :attr:`injected`, so the same plan over the same requests injects the
        same faults again.
        """
        return self._plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        self._plan = plan
        self._plan_counts.clear()
        self._injected.clear()

    @property
    def network(self) -> Network:
        """The latency every answer waits before its first byte, and the cap on the
        bytes per second of all file bodies together (``/packages/``, ``.metadata``
        included). Under a cap, files are sent from memory in
        :data:`~mirror.testing.network.CHUNK_BYTES` chunks, each paid for from one token
        bucket shared by every connection, spilled files too (no ``sendfile``).
        Setting it starts a new, full bucket."""
        return self._network

    @network.setter
    def network(self, network: Network) -> None:
        self._network = network
        rate = network.bandwidth_bytes_per_second
        self._bucket = None if rate is None else TokenBucket(rate)

    @property
    def injected(self) -> tuple[InjectedFault, ...]:
        """Every fault the plan injected since it was set, in arrival order."""
        return tuple(self._injected)

    def serve_raw(self, path: str, answer: RawAnswer, *, method: str = "GET") -> None:
        """Answer every ``method`` request for ``path`` (without its query) with
        ``answer`` from now on, whatever the corpus holds: hostile or broken input."""
        self._raw[(method, path)] = answer

    # --- queries -----------------------------------------------------------------

    def file_url(self, project: str, filename: str) -> str:
        """The absolute URL a live file is served at."""
        return self._url_of(self._live_file(project, filename))

    def _live_file(self, project: str, filename: str) -> _File:
        _, state = self._lookup(project)
        for release in state.releases:
            for file in release.files:
                if file.filename == filename:
                    return file
        raise KeyError(f"{project!r} has no file {filename!r}")

    def project_names(self) -> list[str]:
        """Display names of the live projects, in normalized-name order."""
        return [self._projects[key].display_name for key in sorted(self._projects)]

    # --- journal bookkeeping -------------------------------------------------------

    def _log(
        self, key: NormalizedName, version: str | None, action: str, after: _Project | None
    ) -> None:
        before = self._projects.get(key)
        display = (after or before or _Project(display_name=key)).display_name
        self._serial += 1
        timestamp = int(_journal_time(self._serial, fraction=False).timestamp())
        if self._journaling:
            self._journal.append(
                JournalEntry(
                    name=display,
                    version=version,
                    timestamp=timestamp,
                    action=action,
                    serial=self._serial,
                )
            )
        self._previous[key] = before
        if after is None:
            del self._projects[key]
        else:
            self._projects[key] = replace(after, last_serial=self._serial)

    def _ensure_project(self, project: str) -> NormalizedName:
        if not _PROJECT_NAME_RE.match(project):
            raise ValueError(f"invalid project name {project!r}")
        key = canonicalize_name(project)
        if key not in self._projects:
            self._log(key, None, "create", _Project(display_name=project))
        return key

    def _ensure_release(
        self,
        key: NormalizedName,
        version: str,
        *,
        requires_dist: tuple[str, ...],
        requires_python: str | None,
    ) -> None:
        state = self._projects[key]
        if state.release(version) is None:
            release = _Release(
                version=version, requires_dist=requires_dist, requires_python=requires_python
            )
            self._log(key, version, "new release", state.with_release(release))

    def _lookup(self, project: str) -> tuple[NormalizedName, _Project]:
        key = canonicalize_name(project)
        state = self._projects.get(key)
        if state is None:
            raise KeyError(f"no project {project!r}")
        return key, state

    @staticmethod
    def _release(state: _Project, version: str) -> _Release:
        release = state.release(version)
        if release is None:
            raise KeyError(f"{state.display_name!r} has no release {version!r}")
        return release

    # --- HTTP --------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._middleware(request, handler)

        app = web.Application(middlewares=[middleware])
        for path in ("/pypi", "/pypi/", "/RPC2"):
            app.router.add_post(path, self._handle_xmlrpc)
        app.router.add_get("/pypi/{name}/json", self._handle_json_api)
        app.router.add_get("/pypi/{name}/json/", self._handle_json_api)
        app.router.add_get("/pypi/{name}/{version}/json", self._handle_json_api)
        app.router.add_get("/simple", self._handle_add_slash)
        app.router.add_get("/simple/", self._handle_simple_root)
        app.router.add_get("/simple/{name}", self._handle_add_slash)
        app.router.add_get("/simple/{name}/", self._handle_simple_detail)
        app.router.add_get("/packages/{path:.+}", self._handle_package)
        app.router.add_get(
            "/integrity/{project}/{version}/{filename}/provenance", self._handle_provenance
        )
        return app

    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.request_log.append((request.method, request.path_qs))
        if self._network.latency_seconds > 0:
            await asyncio.sleep(self._network.latency_seconds)
        response = await self._dispatch(request, handler)
        if self._bucket is not None and request.path.startswith("/packages/"):
            return await self._throttled(request, response, self._bucket)
        return response

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._faults = [f for f in self._faults if f.remaining > 0]
        for fault in self._faults:
            if request.path.startswith(fault.path_prefix):
                fault.remaining -= 1
                logger.debug("injected %d for %s", fault.status, request.path_qs)
                return web.Response(status=fault.status, text=f"injected {fault.status}\n")
        plan = self._plan
        if plan is None:
            return await self._answer(request, handler)
        path = request.path
        attempt = self._plan_counts.get(path, 0)
        self._plan_counts[path] = attempt + 1
        kind = plan.fault_for(path, attempt, _request_kind(request))
        if kind == "stale" and self._previous.get(_project_key(path)) is None:
            kind = None  # nothing older to show: a stale 404 is not simulated
        if kind is not None:
            logger.debug("injected %s for %s", kind, request.path_qs)
            self._injected.append(InjectedFault(path=path, attempt=attempt, kind=kind))
        if plan.is_slow(path, attempt):
            await asyncio.sleep(plan.slow_seconds)
        return await self._faulty(request, handler, plan, kind, attempt)

    async def _faulty(
        self,
        request: web.Request,
        handler: Handler,
        plan: FaultPlan,
        kind: FaultKind | None,
        attempt: int,
    ) -> web.StreamResponse:
        """Answer ``request`` with the fault ``kind`` (or faithfully for None)."""
        refusal = _refusal(request, plan, kind, attempt)
        if refusal is not None:
            return refusal
        if kind == "endless":
            return await self._endless_answer(request, request.path.removeprefix("/packages/"))
        if kind in {"stale", "stale_404"}:
            self._stale_requests[id(request)] = kind
        try:
            response = await self._answer(request, handler)
        finally:
            self._stale_requests.pop(id(request), None)
        body = response.body if isinstance(response, web.Response) else None
        if kind not in {"truncate", "corrupt"} or not isinstance(body, bytes) or not body:
            return response
        assert isinstance(response, web.Response)
        if response.status != 200:
            return response
        if kind == "corrupt":
            response.body = bytes([body[0] ^ 0xFF]) + body[1:]
            return response
        return await _truncated(request, response, body)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = self._raw.get((request.method, request.path))
        if raw is None:
            return await handler(request)
        if raw.chunks is None:
            return web.Response(status=raw.status, body=raw.body, headers=dict(raw.headers))
        stream = web.StreamResponse(status=raw.status, headers=dict(raw.headers))
        await stream.prepare(request)
        async for chunk in raw.chunks():
            await stream.write(chunk)
        await stream.write_eof()
        return stream

    @staticmethod
    async def _throttled(
        request: web.Request, response: web.StreamResponse, bucket: TokenBucket
    ) -> web.StreamResponse:
        """``response`` with its body streamed at the pace ``bucket`` allows; answers
        without a body in memory (already sent, or empty) go as they are."""
        body = response.body if isinstance(response, web.Response) else None
        if response.prepared or not isinstance(body, bytes) or not body:
            return response
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        loop = asyncio.get_running_loop()
        view = memoryview(body)
        for start in range(0, len(body), CHUNK_BYTES):
            chunk = view[start : start + CHUNK_BYTES]
            delay = bucket.reserve(len(chunk), loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
            await stream.write(chunk)
        await stream.write_eof()
        return stream

    def _served_state(self, request: web.Request, key: NormalizedName) -> _Project | None:
        """The project as a page request sees it: stale when a stale answer is due."""
        fault = self._stale_requests.get(id(request))
        if fault == "stale_404" or self._not_found.get(key, 0) > 0:
            if fault is None:
                self._not_found[key] -= 1
            return None  # the page's own 404, as a CDN that cached a miss sends it
        if fault == "stale":
            return self._previous.get(key)
        if self._stale.get(key, 0) > 0:
            self._stale[key] -= 1
            return self._previous.get(key)
        return self._projects.get(key)

    def _url_of(self, file: _File) -> str:
        return f"{self.base_url}/packages/{quote(file.path)}"

    def _provenance_url(self, key: NormalizedName, release: _Release, file: _File) -> str | None:
        """Warehouse's integrity API URL of ``file``'s provenance, when it has one."""
        if not file.provenance:
            return None
        parts = "/".join(quote(part, safe="") for part in (key, release.version, file.filename))
        return f"{self.base_url}/integrity/{parts}/provenance"

    async def _handle_provenance(self, request: web.Request) -> web.Response:
        body = self._provenances.get(request.match_info["filename"])
        if body is None:
            return web.Response(status=404, text="404 Not Found")
        return web.Response(
            body=body, headers={"Content-Type": "application/vnd.pypi.integrity.v1+json"}
        )

    async def _handle_xmlrpc(self, request: web.Request) -> web.Response:
        if not self.xmlrpc_enabled:
            return web.Response(status=404, text="404 Not Found")
        body = await request.read()
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=True)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
            return _xmlrpc_response(xmlrpc.client.Fault(-32700, f"parse error; {exc}"))
        result = self._call(method, params)
        return _xmlrpc_response(result)

    def _call(self, method: str | None, params: tuple[object, ...]) -> _XmlRpcResult:
        """Run one XML-RPC method; a Fault (returned, not raised) for bad calls."""
        if method == "changelog_since_serial" and len(params) == 1:
            return self._changelog_since_serial(params[0])
        if method == "changelog_last_serial" and not params:
            return self._serial
        if method == "list_packages_with_serial" and not params:
            return {state.display_name: state.last_serial for state in self._projects.values()}
        if method in {
            "changelog_since_serial",
            "changelog_last_serial",
            "list_packages_with_serial",
        }:
            return xmlrpc.client.Fault(
                -32602, f"client error; {method}: unexpected arguments {list(params)!r}"
            )
        return xmlrpc.client.Fault(-32601, "server error; requested method not found")

    def _changelog_since_serial(self, since: object) -> _XmlRpcResult:
        # Warehouse validates with pydantic StrictInt: a string is a fault, not coerced.
        if isinstance(since, bool) or not isinstance(since, int):
            return xmlrpc.client.Fault(
                -32602, "client error; serial: Input should be a valid integer"
            )
        start = bisect.bisect_right(self._journal, since, key=lambda entry: entry.serial)
        page = self._journal[start : start + self.page_limit]
        return [[e.name, e.version, e.timestamp, _clean_for_xml(e.action), e.serial] for e in page]

    async def _handle_json_api(self, request: web.Request) -> web.Response:
        raw = request.match_info["name"]
        version = request.match_info.get("version")
        key = canonicalize_name(raw)
        if raw != key:
            tail = f"{quote(version)}/json" if version is not None else "json"
            return _redirect(request, f"/pypi/{key}/{tail}")
        state = self._served_state(request, key)
        if state is None or state.is_quarantined or not state.releases:
            return _json_not_found()
        if version is None:
            selected = _latest_release(state.releases)
        else:
            found = _find_release(state.releases, version)
            if found is None:
                return _json_not_found()
            selected = found
        data: dict[str, object] = {
            "info": self._json_info(key, state, selected),
            "last_serial": state.last_serial,
            "ownership": {"organization": None, "roles": []},
            "urls": [
                self._json_file(selected, f)
                for f in sorted(selected.files, key=lambda f: f.filename)
            ],
            "vulnerabilities": [],
        }
        if version is None:
            data["releases"] = {
                r.version: [self._json_file(r, f) for f in r.files] for r in state.releases
            }
        headers = {
            **_CORS_HEADERS,
            "Content-Type": "application/json",
            "Cache-Control": "max-age=900, public",
            "X-PyPI-Last-Serial": str(state.last_serial),
        }
        return web.Response(body=_json_bytes(data), headers=headers)

    def _json_info(
        self, key: NormalizedName, state: _Project, release: _Release
    ) -> dict[str, object]:
        project_url = f"{self.base_url}/project/{key}/"
        return {
            "author": "",
            "author_email": "",
            "bugtrack_url": None,
            "classifiers": [],
            "description": "",
            "description_content_type": None,
            "docs_url": None,
            "download_url": "",
            "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
            "dynamic": None,
            "home_page": "",
            "keywords": "",
            "license": "",
            "license_expression": None,
            "license_files": None,
            "maintainer": "",
            "maintainer_email": "",
            "name": state.display_name,
            "package_url": project_url,
            "platform": None,
            "project_url": project_url,
            "project_urls": None,
            "provides_extra": None,
            "release_url": f"{project_url}{release.version}/",
            "requires_dist": list(release.requires_dist) or None,
            "requires_python": release.requires_python,
            "summary": f"{state.display_name}, a fake upstream project",
            "version": release.version,
            "yanked": release.yanked,
            "yanked_reason": release.yanked_reason or None,
        }

    def _json_file(self, release: _Release, file: _File) -> dict[str, object]:
        return {
            "comment_text": None,
            "core-metadata": _core_metadata_json(file),
            "digests": {"blake2b_256": file.blake2b_256, "md5": file.md5, "sha256": file.sha256},
            "downloads": -1,
            "filename": file.filename,
            "has_sig": False,
            "md5_digest": file.md5,
            "packagetype": file.packagetype,
            "python_version": file.python_version,
            "requires_python": file.requires_python,
            "size": file.size,
            "upload_time": file.upload_time.strftime("%Y-%m-%dT%H:%M:%S"),
            "upload_time_iso_8601": format_upload_time(file.upload_time),
            "url": self._url_of(file),
            "yanked": release.yanked,
            "yanked_reason": release.yanked_reason or None,
        }

    async def _handle_add_slash(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        return _redirect(request, "/simple/" if name is None else f"/simple/{quote(name)}/")

    async def _handle_simple_root(self, request: web.Request) -> web.Response:
        content_type = negotiate(request.headers.get("Accept"))
        listed = sorted(
            (key, state) for key, state in self._projects.items() if not state.is_quarantined
        )
        if content_type == SIMPLE_JSON:
            data = {
                "meta": {"_last-serial": self._serial, "api-version": API_VERSION},
                "projects": [
                    {"_last-serial": state.last_serial, "name": state.display_name}
                    for _, state in listed
                ],
            }
            body = _json_bytes(data)
        else:
            links = "".join(
                f'<a href="/simple/{key}/">{escape(state.display_name)}</a>\n'
                for key, state in listed
            )
            body = (
                '<!DOCTYPE html>\n<html lang="en">\n  <head>\n'
                f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
                "    <title>Simple index</title>\n  </head>\n  <body>\n"
                f"{links}</body>\n</html>"
            ).encode()
        return _simple_response(body, content_type, self._serial)

    async def _handle_simple_detail(self, request: web.Request) -> web.Response:
        raw = request.match_info["name"]
        key = canonicalize_name(raw)
        if raw != key:
            return _redirect(request, f"/simple/{key}/")
        state = self._served_state(request, key)
        if state is None:
            return web.Response(status=404, text="404 Not Found")
        content_type = negotiate(request.headers.get("Accept"))
        files = state.visible_files()
        if content_type == SIMPLE_JSON:
            body = self._simple_json(key, state, files)
        else:
            body = self._simple_html(key, state, files)
        return _simple_response(body, content_type, state.last_serial)

    def _simple_json(
        self, key: NormalizedName, state: _Project, files: list[tuple[_Release, _File]]
    ) -> bytes:
        status: dict[str, str] = {"status": state.status}
        if state.status_reason:
            status["reason"] = state.status_reason
        entries: list[dict[str, object]] = []
        for release, file in files:
            core = _core_metadata_json(file)
            yanked: bool | str = release.yanked
            if release.yanked and release.yanked_reason:
                yanked = release.yanked_reason
            entries.append(
                {
                    "core-metadata": core,
                    "data-dist-info-metadata": core,
                    "filename": file.filename,
                    "hashes": {"sha256": file.sha256},
                    "provenance": self._provenance_url(key, release, file),
                    "requires-python": file.requires_python,
                    "size": file.size,
                    "upload-time": format_upload_time(file.upload_time),
                    "url": self._url_of(file),
                    "yanked": yanked,
                }
            )
        versions = sorted({r.version for r, _ in files}, key=version_sort_key)
        data = {
            "files": entries,
            "meta": {"_last-serial": state.last_serial, "api-version": API_VERSION},
            "name": key,
            "project-status": status,
            "versions": versions,
        }
        return _json_bytes(data)

    def _simple_html(
        self, key: NormalizedName, state: _Project, files: list[tuple[_Release, _File]]
    ) -> bytes:
        # Warehouse's detail.html template, rendered byte for byte (protocol.md §3.4).
        anchors: list[str] = []
        for release, file in files:
            parts = [f'<a href="{escape(self._url_of(file))}#sha256={file.sha256}" ']
            if file.requires_python:
                parts.append(f'data-requires-python="{escape(file.requires_python)}" ')
            if release.yanked:
                parts.append(f'data-yanked="{escape(release.yanked_reason)}" ')
            if file.metadata_sha256 is not None:
                parts.append(
                    f'data-dist-info-metadata="sha256={file.metadata_sha256}" '
                    f'data-core-metadata="sha256={file.metadata_sha256}"'
                )
            provenance = self._provenance_url(key, release, file)
            if provenance is not None:
                parts.append(f' data-provenance="{escape(provenance)}"')
            parts.append(f">{escape(file.filename)}</a><br />\n")
            anchors.append("".join(parts))
        text = (
            '<!DOCTYPE html>\n<html lang="en">\n  <head>\n'
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
            f'<meta name="pypi:project-status" content="{escape(state.status)}">'
            f"    <title>Links for {escape(key)}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {escape(key)}</h1>\n"
            f"{''.join(anchors)}</body>\n</html>\n<!--SERIAL {state.last_serial}-->"
        )
        return text.encode()

    async def _handle_package(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        data = self._blobs.get(path)
        if data is None:
            return web.Response(status=404, text="404 Not Found")
        if path in self._endless:
            return await self._endless_answer(request, path, announce=self._endless[path])
        spilled = self._spilled(path, request)
        if spilled is not None:
            self._count_sent(path, len(data))
            return web.FileResponse(
                spilled, headers={**_FILE_HEADERS, "Content-Type": "application/octet-stream"}
            )
        if path in self._corrupted:
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"corrupt"
        headers = {"Content-Type": "application/octet-stream", **_FILE_HEADERS}
        range_header = request.headers.get("Range")
        if range_header is None:
            self._count_sent(path, len(data))
            return web.Response(body=data, headers=headers)
        match = _RANGE_RE.match(range_header.strip())
        start = int(match.group(1)) if match else len(data)
        end = int(match.group(2)) if match and match.group(2) else len(data) - 1
        if start >= len(data) or end < start:
            headers["Content-Range"] = f"bytes */{len(data)}"
            return web.Response(status=416, headers=headers)
        end = min(end, len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start : end + 1], headers=headers)

    def _count_sent(self, path: str, count: int) -> None:
        self._bytes_sent[path] = self._bytes_sent.get(path, 0) + count

    async def _endless_answer(
        self, request: web.Request, path: str, *, announce: bool = True
    ) -> web.StreamResponse:
        """A body that never ends: 1 KiB at a time (a trickle, so that what the client
        spares by hanging up early is seen in :meth:`bytes_sent`), under a
        ``Content-Length`` of :data:`ENDLESS_LENGTH` when ``announce``, else chunked;
        it stops when the client hangs up, or at that length."""
        headers = {"Content-Type": "application/octet-stream", **_FILE_HEADERS}
        stream = web.StreamResponse(headers=headers)
        if announce:
            stream.content_length = ENDLESS_LENGTH
        await stream.prepare(request)
        chunk = b"\x00" * 1024
        sent = 0
        try:
            while sent < ENDLESS_LENGTH:
                await stream.write(chunk)
                sent += len(chunk)
                self._count_sent(path, len(chunk))
                await asyncio.sleep(_ENDLESS_PAUSE_SECONDS)
        except ConnectionError:
            logger.debug("endless answer for %s: the client hung up after %d bytes", path, sent)
        return stream

    def _spilled(self, path: str, request: web.Request) -> Path | None:
        """The file spill_files() wrote for ``path``, when it may answer ``request``.
        Only paths it wrote qualify (our own keys: nothing from the request can lead
        out of the directory)."""
        if self._files_dir is None or path not in self._spilled_paths:
            return None
        if self._plan is not None or path in self._corrupted or "Range" in request.headers:
            return None
        if self._bucket is not None:
            return None  # a capped body goes through the bucket, chunk by chunk
        return self._files_dir / path


# --- pure helpers for the handlers ---------------------------------------------------


def _request_kind(request: web.Request) -> RequestKind:
    path = request.path
    if request.method == "POST" and path in _XMLRPC_PATHS:
        return "xmlrpc"
    if path.startswith("/packages/"):
        return "file"
    if _PAGE_RE.match(path):
        return "page"
    return "other"


def _project_key(path: str) -> NormalizedName:
    """The normalized project a page path names (``/simple/<p>/``, ``/pypi/<p>/json``)."""
    return canonicalize_name(path.split("/")[2])


def _close(request: web.Request) -> None:
    """Drop the connection under ``request``, as a reset or a crashed proxy would."""
    transport = request.transport
    # pragma: no branch below: the transport is None only once the client has gone
    # already, a moment no test can pick.
    if transport is not None:  # pragma: no branch
        transport.close()


def _refusal(
    request: web.Request, plan: FaultPlan, kind: FaultKind | None, attempt: int
) -> web.Response | None:
    """The answer for a fault that replaces the real one; None for the others."""
    if kind == "error":
        status = _SERVER_ERRORS[plan.pick(request.path, attempt, len(_SERVER_ERRORS))]
        return web.Response(status=status, text=f"injected {status}\n")
    if kind == "throttle":
        headers = {"Retry-After": str(plan.retry_after_seconds)}
        return web.Response(status=429, text="injected 429\n", headers=headers)
    if kind == "reset":
        _close(request)
        return web.Response(status=500)  # never sent: the connection is gone
    if kind == "xmlrpc_fault":
        return _xmlrpc_response(xmlrpc.client.Fault(-32403, "server error; service unavailable"))
    if kind == "rate_limit":
        text = _RATE_LIMIT_TEXT.format(seconds=plan.retry_after_seconds)
        return _xmlrpc_response(xmlrpc.client.Fault(-32500, text))
    return None


async def _truncated(
    request: web.Request, response: web.Response, body: bytes
) -> web.StreamResponse:
    """Announce all of ``body``, send about half of it, then drop the connection."""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    _close(request)
    return stream


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def negotiate(accept: str | None) -> str:
    """Pick the simple-page Content-Type as Warehouse does (protocol.md §3.2).

    Offers are text/html, v1+html, v1+json in that order; for each, the q of the most
    specific matching media range counts; q=0 excludes; the highest q wins and ties
    go to the earlier offer. No header, no match or an unparsable header: text/html.
    """
    if not accept:
        return TEXT_HTML
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    return TEXT_HTML
        ranges.append((media.lower(), q))
    best_quality = 0.0
    chosen = TEXT_HTML
    for offer in _OFFERS:  # strictly greater: ties keep the earlier offer
        quality = _offer_quality(offer, ranges)
        if quality is not None and quality > best_quality:
            best_quality = quality
            chosen = offer
    return chosen


def _offer_quality(offer: str, ranges: list[tuple[str, float]]) -> float | None:
    offer_type = offer.split("/", maxsplit=1)[0]
    found: tuple[int, float] | None = None
    for media, q in ranges:
        if media == offer:
            specificity = 3
        elif media == f"{offer_type}/*":
            specificity = 2
        elif media == "*/*":
            specificity = 1
        else:
            continue
        if found is None or specificity > found[0]:
            found = (specificity, q)
    return found[1] if found is not None else None


def escape(text: str) -> str:
    """MarkupSafe's escaping, as Warehouse's Jinja2 autoescape applies it."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def _clean_for_xml(text: str) -> str:
    """Warehouse's ``_clean_for_xml``: non-ASCII as ``&#NNN;``, XML-illegal code
    points dropped."""
    ascii_text = text.encode("ascii", "xmlcharrefreplace").decode("ascii")
    return _XML_ILLEGAL_RE.sub("", ascii_text)


def _xmlrpc_response(result: _XmlRpcResult) -> web.Response:
    if isinstance(result, xmlrpc.client.Fault):
        body = xmlrpc.client.dumps(result, methodresponse=True)
    else:
        body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
    return web.Response(body=body.encode(), headers={"Content-Type": "text/xml"})


def _json_bytes(data: object) -> bytes:
    """Warehouse's ``json-with-newline`` renderer: compact, sorted keys, UTF-8."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{text}\n".encode()


def _json_not_found() -> web.Response:
    return web.Response(
        status=404,
        body=_json_bytes({"message": "Not Found"}),
        headers={**_CORS_HEADERS, "Content-Type": "application/json"},
    )


def _simple_response(body: bytes, content_type: str, serial: int) -> web.Response:
    headers = {
        "Content-Type": content_type,
        "Vary": "Accept",
        "X-PyPI-Last-Serial": str(serial),
        "Cache-Control": "max-age=600, public",
    }
    return web.Response(body=body, headers=headers)


def _redirect(request: web.Request, path: str) -> web.Response:
    """301 to ``path``, keeping the query string (cache-busters survive)."""
    location = f"{path}?{request.query_string}" if request.query_string else path
    return web.Response(status=301, headers={**_CORS_HEADERS, "Location": location})


def _core_metadata_json(file: _File) -> dict[str, str] | bool:
    if file.metadata_sha256 is None:
        return False
    return {"sha256": file.metadata_sha256}


def _latest_release(releases: Sequence[_Release]) -> _Release:
    """Warehouse's pick for ``info``: not yanked first, then final releases, then the
    highest version."""

    def rank(release: _Release) -> tuple[bool, bool, tuple[int, Version | str]]:
        try:
            prerelease = Version(release.version).is_prerelease
        except InvalidVersion:
            prerelease = False
        return (not release.yanked, not prerelease, version_sort_key(release.version))

    return max(releases, key=rank)


def _find_release(releases: Sequence[_Release], version: str) -> _Release | None:
    """Exact version string first, then the PEP 440 canonical form (``4.2.0`` finds
    ``4.2``), as Warehouse looks releases up."""
    for release in releases:
        if release.version == version:
            return release
    wanted = canonicalize_version(version)
    return next((r for r in releases if canonicalize_version(r.version) == wanted), None)


def _file_kind(filename: str) -> tuple[str, str]:
    """``(packagetype, python_version)`` as an upload form would give them."""
    if filename.endswith(".whl"):
        return "bdist_wheel", filename[:-4].split("-")[-3]
    legacy = {".egg": "bdist_egg", ".exe": "bdist_wininst", ".msi": "bdist_msi"}
    for suffix, packagetype in legacy.items():
        if filename.endswith(suffix):
            return packagetype, "any"
    return "sdist", "source"


def _requires_dist(metadata: bytes) -> tuple[str, ...]:
    message = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    return tuple(message.get_all("Requires-Dist") or ())


_ENDLESS_PAUSE_SECONDS = 0.002

_FILE_HEADERS = {
    "Accept-Ranges": "bytes",
    "Cache-Control": "max-age=365000000, immutable, public",
}


def _journal_time(serial: int, *, fraction: bool) -> datetime:
    """Deterministic time for a serial: one minute apart, with microseconds when asked
    (PyPI's upload times carry them; journal timestamps are whole seconds)."""
    moment = _JOURNAL_EPOCH + timedelta(minutes=serial)
    if fraction:
        moment = moment.replace(microsecond=(serial * 7919) % 1_000_000)
    return moment
