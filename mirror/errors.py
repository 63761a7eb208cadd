"""The one exception tree of `mirror`.

Every error the package raises on purpose derives from :class:`MirrorError`. Foreign
exceptions (aiohttp's, ``OSError``, ``sqlite3.Error``, ``json`` and XML parse errors)
are translated once, at the seam where they occur, with ``raise ... from exc``. Only
the CLI turns these errors into exit codes.

::

    MirrorError
    ├── ConfigError                 bad config file, section, key or value
    ├── LockedError                 another run holds the mirror directory's lock
    ├── UpstreamError               anything that went wrong talking to upstream
    │   ├── TransientUpstreamError  worth retrying: timeouts, resets, 5xx, 429
    │   │   └── StaleResponseError  upstream answered with an older serial than promised
    │   ├── HTTPStatusError         a non-retryable HTTP status (4xx other than 404/429)
    │   ├── ProjectNotFoundError    404 for a project: it is gone upstream
    │   ├── UnconfirmedNotFoundError  a project's 404 nothing confirms: kept, retried later
    │   ├── XmlRpcFaultError        an XML-RPC <fault> (rate-limit faults are transient)
    │   ├── NoXmlRpcError           upstream has no XML-RPC endpoint (404, 405, 501, a page)
    │   └── MalformedResponseError  a body that does not parse or has the wrong shape
    │       └── UnsafePathError     a file name or URL path that could escape the mirror
    ├── IntegrityError              downloaded bytes do not match size or sha256
    │   └── BodySizeError           a body not of the advertised size (never retried)
    ├── ProvenanceError             a PEP 740 provenance too large, not JSON, or not the file's
    ├── StorageError                the disk refused (ENOSPC, EROFS, EACCES, ...)
    ├── StateError                  the state store is unreadable or from a newer version
    ├── JournalPrunedError          changes asked for since a serial the journal no longer keeps
    └── AdoptError                  a bandersnatch mirror that cannot be adopted
"""

from __future__ import annotations

from typing import ClassVar


class MirrorError(Exception):
    """Root of every error `mirror` raises on purpose."""


class ConfigError(MirrorError):
    """The configuration is unusable; the message names the section and key."""

    def __init__(self, message: str, *, section: str | None = None, key: str | None = None):
        self.section = section
        self.key = key
        where = ""
        if section is not None and key is not None:
            where = f"[{section}] {key}: "
        elif section is not None:
            where = f"[{section}]: "
        super().__init__(f"{where}{message}")


class LockedError(MirrorError):
    """Another process holds the lock on the mirror directory."""


class UpstreamError(MirrorError):
    """Upstream could not give a usable answer."""


class TransientUpstreamError(UpstreamError):
    """A failure that may well succeed when tried again (timeout, reset, 5xx, 429).

    ``retry_after_seconds`` carries upstream's hint (``Retry-After``, rate-limit fault)
    when it gave one.
    """

    def __init__(self, message: str, *, retry_after_seconds: float | None = None):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StaleResponseError(TransientUpstreamError):
    """Upstream (usually its CDN) answered with a serial older than the one promised."""

    def __init__(self, url: str, *, expected: int, got: int | None):
        super().__init__(f"{url}: expected serial >= {expected}, got {got}")
        self.url = url
        self.expected = expected
        self.got = got


class HTTPStatusError(UpstreamError):
    """Upstream answered with an HTTP status that retrying will not change."""

    def __init__(self, url: str, status: int):
        super().__init__(f"{url}: HTTP {status}")
        self.url = url
        self.status = status


class ProjectNotFoundError(UpstreamError):
    """Upstream answered 404 for a project: it no longer exists there."""

    def __init__(self, name: str):
        super().__init__(f"project {name!r} not found upstream")
        self.name = name


class UnconfirmedNotFoundError(UpstreamError):
    """A project's page answered 404, also when asked again with a cache-busting
    query, but neither the changelog nor the full listing says the project was
    removed: most likely a CDN's stale 404. The project is kept as it is and stays
    queued with back-off."""

    def __init__(self, name: str):
        super().__init__(
            f"project {name!r}: 404 upstream (also with a cache-busting query), but"
            " neither the changelog nor the listing says it was removed: kept, retried later"
        )
        self.name = name


class XmlRpcFaultError(UpstreamError):
    """Upstream's XML-RPC endpoint answered with a fault."""

    def __init__(self, method: str, code: int, fault_string: str):
        super().__init__(f"XML-RPC {method}: fault {code}: {fault_string}")
        self.method = method
        self.code = code
        self.fault_string = fault_string


class NoXmlRpcError(UpstreamError):
    """Upstream has no XML-RPC endpoint at ``/pypi``: it answered 404, 405 or 501, or
    an HTML or JSON page (devpi, a static tree, a company index). With
    ``upstream-api = auto`` the mirror then follows the PEP 691 root index instead."""


class MalformedResponseError(UpstreamError):
    """A response body that does not parse or does not have the expected shape.

    The message names the key path that was wrong, e.g. ``files[3].hashes.sha256``.
    """


class UnsafePathError(MalformedResponseError):
    """A file name or URL path from upstream that could escape the mirror directory."""


class IntegrityError(MirrorError):
    """Downloaded bytes do not match the size or sha256 upstream advertised."""


class BodySizeError(IntegrityError):
    """A download whose ``Content-Length`` is not the advertised size (refused before
    its body is read), or whose body runs past that size (refused at the first byte
    beyond it). Not retried within the run: it will not change in a second, and an
    endless body must not cost the mirror more than the file it stands for."""


class ProvenanceError(MirrorError):
    """A PEP 740 provenance document the mirror will not keep: larger than its cap, not
    a JSON object or, checked (``verify-provenance``), with an attestation whose subject
    digest is not the file's sha256. Not retried: the same bytes would come again."""


class StorageError(MirrorError):
    """The file system refused an operation (full disk, read-only, permissions)."""


class StateError(MirrorError):
    """The state store cannot be opened or used."""


class JournalPrunedError(MirrorError):
    """Changes were asked for since a serial older than the mirror's journal keeps
    (``mirror serve``'s ``changelog_since_serial``): the follower must read the full
    listing instead. Sent as the XML-RPC fault :attr:`FAULT_CODE`."""

    FAULT_CODE: ClassVar[int] = 410
    """The fault code ``mirror serve`` answers with, and followers fall back on."""

    def __init__(self, serial: int, horizon: int):
        super().__init__(
            f"serial {serial} is older than this mirror's journal keeps (it starts after"
            f" {horizon}): read list_packages_with_serial instead"
        )
        self.serial = serial
        self.horizon = horizon


class AdoptError(MirrorError):
    """A bandersnatch mirror ``mirror adopt`` cannot take over: a malformed status, todo,
    generation or page (the message names the file), or a layout it does not read."""
