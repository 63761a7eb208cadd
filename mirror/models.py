"""Frozen value types for what upstream tells us, parsed once at the boundary.

Upstream JSON (PEP 691 project pages, the ``/pypi/<p>/json`` API) and XML-RPC rows
become these records through the ``from_*`` constructors below; nothing else in the
package looks at raw upstream data. Parse errors raise
:class:`~mirror.errors.MalformedResponseError` naming the key path
(``files[3].hashes.sha256``), and unsafe file locations raise
:class:`~mirror.errors.UnsafePathError`, so one bad project fails alone.

This module is pure: no I/O, no aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NewType, TypeAlias
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mirror.errors import MalformedResponseError, UnsafePathError

# PackagePath's home is mirror.layout; re-exported, as the records here carry it.
from mirror.layout import PackagePath as PackagePath  # noqa: PLC0414  # re-export (mypy)
from mirror.layout import is_safe_component, metadata_path, package_path, provenance_path

Serial = NewType("Serial", int)
"""An upstream journal serial (PyPI's ``journals.id``)."""

_PROJECT_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def project_name(raw: str) -> NormalizedName:
    """Return the PEP 503 normalized form of a valid project name.

    Raises MalformedResponseError for a name PyPI could never have accepted, which
    also guarantees the result is a safe single directory name.
    """
    if not _PROJECT_NAME_RE.match(raw):
        raise MalformedResponseError(f"invalid project name {raw!r}")
    normalized = canonicalize_name(raw)
    # A name that is already normalized is returned as the same object: a first sync
    # holds upstream's whole listing, and a copy of each of its names would cost ~35 MB
    # at 600,000 projects.
    return NormalizedName(raw) if normalized == raw else normalized


def package_path_from_url(url: str, *, filename: str) -> PackagePath:
    """Derive the on-disk path of a distribution file from its upstream URL.

    The URL must be absolute ``http`` or ``https``, on any host: PyPI serves its pages
    from pypi.org and its files from files.pythonhosted.org, so the host says nothing
    about safety. Only the path decides where the file lands. It must end in
    ``packages/<a>/<b>/<c>/<filename>`` (PyPI's content-addressed layout, and the
    legacy ``packages/source/r/requests/...`` one), each component percent-decoded
    and checked: no empty, ``.`` or ``..`` components, no slashes, backslashes, NUL or
    control characters. The last component must be the advertised ``filename``.
    Raises UnsafePathError otherwise.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise UnsafePathError(f"file URL {url!r} is not an absolute http(s) URL")
    components = [unquote(part) for part in parts.path.split("/")]
    if len(components) < 5 or components[-5] != "packages":
        raise UnsafePathError(f"file URL {url!r} is not under /packages/<a>/<b>/<c>/")
    tail = components[-4:]
    for part in tail:
        if not is_safe_component(part):
            raise UnsafePathError(f"file URL {url!r} has an unsafe path component {part!r}")
    if tail[-1] != filename:
        raise UnsafePathError(f"file URL {url!r} does not end in its filename {filename!r}")
    return package_path("/".join(["packages", *tail]))


def version_sort_key(version: str) -> tuple[int, Version | str]:
    """Sort key for version strings in PEP 440 order.

    Versions that do not parse (legacy data on PyPI) sort before every valid one, as
    PyPI's ``packaging_legacy`` ordering does, and among themselves as strings.
    """
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def format_upload_time(value: datetime) -> str:
    """Render a timestamp as PyPI does: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectStatus:
    """PEP 792 project status: ``active``, ``archived``, ``quarantined`` or
    ``deprecated`` (other values are passed through untouched)."""

    status: str = "active"
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DistFile:
    """One distribution file of a project, as upstream advertises it."""

    filename: str
    url: str
    """Absolute upstream URL to download from."""
    path: PackagePath
    """Where the file lives below the mirror's ``web/`` directory."""
    sha256: str
    size: int
    upload_time: datetime | None = None
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str = ""
    """PEP 592 reason; empty when not yanked or yanked without a reason."""
    core_metadata: bool = False
    """True when upstream serves a PEP 658 ``<url>.metadata`` file."""
    core_metadata_sha256: str | None = None
    """The advertised sha256 of the ``.metadata`` file, when upstream gave one."""
    provenance: str | None = None
    """PEP 740 provenance URL, as upstream gave it (where the mirror fetches it from)."""
    provenance_kept: bool = False
    """Set on a published detail when the mirror holds the file's provenance document
    (at :attr:`provenance_path`, verified): the pages link that copy, never upstream's."""

    @property
    def metadata_path(self) -> PackagePath:
        """Where the PEP 658 ``.metadata`` file lives below ``web/``."""
        return metadata_path(self.path)

    @property
    def provenance_path(self) -> PackagePath:
        """Where the copy of the PEP 740 provenance document lives below ``web/``."""
        return provenance_path(self.path)

    @property
    def metadata_url(self) -> str:
        """Upstream URL of the PEP 658 ``.metadata`` file."""
        return f"{self.url}.metadata"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectDetail:
    """What upstream says about one project: its files, versions and status."""

    name: NormalizedName
    serial: Serial
    """The project's last serial upstream (``X-PyPI-Last-Serial`` / ``meta._last-serial``)."""
    files: tuple[DistFile, ...]
    versions: tuple[str, ...]
    """PEP 700 versions, in PEP 440 order."""
    status: ProjectStatus = ProjectStatus()
    display_name: str | None = None
    """The display name, when upstream gave one (the JSON API does; PEP 691 does not)."""
    index_serial: Serial | None = None
    """The ``X-PyPI-Last-Serial`` the page came with, when it differs from ``serial``: a
    mirror upstream of us sends its own serial there (the one its changelog, listing
    and root give the project) while the page keeps its origin's."""

    @property
    def published_serial(self) -> Serial:
        """The serial upstream published this detail at, in upstream's own numbering:
        what the mirror commits the project at, so that the todo item upstream's
        changelog queued is settled and a re-check against upstream's listing agrees."""
        return Serial(max(self.serial, self.index_serial or 0))

    @classmethod
    def from_simple_json(
        cls, data: object, *, name: NormalizedName, page_url: str, serial: Serial | None
    ) -> ProjectDetail:
        """Parse a PEP 691 JSON project page (with PEP 700, 714, 740 and 792 fields).

        ``page_url`` resolves relative file URLs; ``serial`` is the
        ``X-PyPI-Last-Serial`` header, used when the body's ``meta._last-serial`` is
        absent. Raises MalformedResponseError / UnsafePathError.
        """
        root = _Node(data, "")
        got_name = root.key("name").string()
        if canonicalize_name(got_name) != name:
            raise MalformedResponseError(f"name: expected {name!r}, got {got_name!r}")
        meta = root.optional("meta")
        serial_node = meta.optional("_last-serial") if meta is not None else None
        body_serial = serial_node.optional_serial() if serial_node is not None else None
        if body_serial is None and serial is None:
            raise MalformedResponseError("meta._last-serial: missing, and no X-PyPI-Last-Serial")
        files = tuple(_file_from_simple_json(node, page_url) for node in root.key("files").items())
        _check_unique_paths(files)
        versions_node = root.optional("versions")
        if versions_node is None:
            versions = versions_from_files(files)
        else:
            versions = tuple(v.string() for v in versions_node.items())
        status_node = root.optional("project-status")
        status = ProjectStatus()
        if status_node is not None:
            reason_node = status_node.optional("reason")
            status = ProjectStatus(
                status=status_node.key("status").string(),
                reason=reason_node.optional_string() if reason_node is not None else None,
            )
        return cls(
            name=name,
            serial=Serial(body_serial if body_serial is not None else (serial or 0)),
            files=files,
            versions=tuple(sorted(set(versions), key=version_sort_key)),
            status=status,
        )

    @classmethod
    def from_pypi_json(cls, data: object, *, name: NormalizedName, page_url: str) -> ProjectDetail:
        """Parse the ``/pypi/<project>/json`` API (every release, with its files).

        Files are ordered as PyPI orders simple pages: by version, then filename.
        The ``core-metadata`` key (added to the JSON API in 2026) is honoured when
        present; without it no ``.metadata`` file is advertised.
        """
        root = _Node(data, "")
        info = root.key("info")
        display = info.key("name").string()
        if canonicalize_name(display) != name:
            raise MalformedResponseError(f"info.name: expected {name!r}, got {display!r}")
        serial = root.key("last_serial").integer()
        entries: list[tuple[tuple[int, Version | str], str, DistFile]] = []
        versions: list[str] = []
        for version, release in root.key("releases").members():
            release_files = [_file_from_pypi_json(node, page_url) for node in release.items()]
            if release_files:
                versions.append(version)
            key = version_sort_key(version)
            entries.extend((key, f.filename, f) for f in release_files)
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        files = tuple(entry[2] for entry in entries)
        _check_unique_paths(files)
        return cls(
            name=name,
            serial=Serial(serial),
            files=files,
            versions=tuple(sorted(versions, key=version_sort_key)),
            display_name=display,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangelogEntry:
    """One row of XML-RPC ``changelog_since_serial``.

    Only ``name`` and ``serial`` matter for correctness: any row means "this project
    changed". ``action`` is kept for logging.
    """

    name: str
    version: str | None
    timestamp: int
    action: str
    serial: Serial

    @classmethod
    def from_row(cls, row: object, *, index: int) -> ChangelogEntry:
        """Parse ``[name, version|nil, timestamp, action, serial]``."""
        node = _Node(row, f"[{index}]")
        items = list(node.items())
        if len(items) != 5:
            raise MalformedResponseError(f"[{index}]: expected 5 values, got {len(items)}")
        name, version, timestamp, action, serial = items
        return cls(
            name=name.string(),
            version=version.optional_string(),
            timestamp=timestamp.integer(),
            action=action.string(),
            serial=Serial(serial.integer()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedProject:
    """A project as a full listing names it (``list_packages_with_serial``)."""

    name: NormalizedName
    display_name: str
    serial: Serial


ListingRow: TypeAlias = tuple[NormalizedName, str, Serial]
"""One line of the root index as the state store reads it: name, display name, serial.

A plain tuple, not a :class:`ListedProject`: the root index is rewritten from 600,000
of these, and building a dataclass for each would cost more than reading them."""


RootRow: TypeAlias = tuple[NormalizedName, str, "Serial | None"]
"""One project of a PEP 691 root index: name, display name, its ``_last-serial`` (None
when the index does not give one). A tuple for the reason :data:`ListingRow` is."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimpleRoot:
    """A PEP 691 JSON root index (``/simple/``), what a mirror follows an upstream
    without XML-RPC through."""

    projects: tuple[RootRow, ...]
    """Every listed project once, in the index's order (a repeated name: the first)."""
    serial: Serial | None
    """``meta._last-serial``; None when absent."""
    skipped: int = 0
    """Entries whose name no project could have, left out."""

    @property
    def has_serials(self) -> bool:
        """Whether every project carries a ``_last-serial`` (ours, Warehouse's do;
        bandersnatch's, devpi's and most static trees' do not)."""
        return all(serial is not None for _, _, serial in self.projects)

    @classmethod
    def from_json(cls, data: object) -> SimpleRoot:
        """Parse a PEP 691 JSON root. ``_last-serial`` may be an integer or a decimal
        string (bandersnatch writes strings). Raises MalformedResponseError naming the
        key path."""
        root = _Node(data, "")
        meta = root.optional("meta")
        serial_node = meta.optional("_last-serial") if meta is not None else None
        serial = serial_node.optional_serial() if serial_node is not None else None
        rows: dict[NormalizedName, RootRow] = {}
        skipped = 0
        for node in root.key("projects").items():
            display = node.key("name").string()
            if not _PROJECT_NAME_RE.match(display):
                skipped += 1
                continue
            project_serial_node = node.optional("_last-serial")
            project_serial = (
                None if project_serial_node is None else project_serial_node.optional_serial()
            )
            name = canonicalize_name(display)
            rows.setdefault(name, (name, display, project_serial))
        return cls(projects=tuple(rows.values()), serial=serial, skipped=skipped)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageValidator:
    """What tells whether a project page changed without a serial in the root index:
    its ``X-PyPI-Last-Serial`` and its ``ETag``, either possibly absent."""

    etag: str | None = None
    serial: Serial | None = None


def changed_projects(entries: Iterable[ChangelogEntry]) -> dict[NormalizedName, Serial]:
    """Fold changelog rows into ``{project: highest serial}``.

    Rows whose name is not a valid project name (old journal rows with an empty name)
    are skipped: they never describe a project a mirror could hold.
    """
    changed: dict[NormalizedName, Serial] = {}
    for entry in entries:
        if not _PROJECT_NAME_RE.match(entry.name):
            continue
        key = canonicalize_name(entry.name)
        if entry.serial > changed.get(key, -1):
            changed[key] = entry.serial
    return changed


# --- parsing helpers ---------------------------------------------------------------


def _file_from_simple_json(node: _Node, page_url: str) -> DistFile:
    filename = node.key("filename").string()
    url = _file_url(node.key("url"), page_url)
    hashes = node.key("hashes")
    sha256 = _sha256(hashes.key("sha256"))
    core = node.optional("core-metadata")
    if core is None:
        core = node.optional("dist-info-metadata")
    if core is None:
        core = node.optional("data-dist-info-metadata")
    has_metadata, metadata_sha256 = _core_metadata(core)
    yanked, reason = _yanked(node.optional("yanked"))
    upload = node.optional("upload-time")
    requires_python = node.optional("requires-python")
    provenance = node.optional("provenance")
    return DistFile(
        filename=filename,
        url=url,
        path=_path(url, filename, node),
        sha256=sha256,
        size=node.key("size").integer(),
        upload_time=_timestamp(upload) if upload is not None else None,
        requires_python=(requires_python.optional_string() or None) if requires_python else None,
        yanked=yanked,
        yanked_reason=reason,
        core_metadata=has_metadata,
        core_metadata_sha256=metadata_sha256,
        provenance=_provenance_url(provenance, page_url),
    )


def _file_from_pypi_json(node: _Node, page_url: str) -> DistFile:
    filename = node.key("filename").string()
    url = _file_url(node.key("url"), page_url)
    sha256 = _sha256(node.key("digests").key("sha256"))
    has_metadata, metadata_sha256 = _core_metadata(node.optional("core-metadata"))
    yanked = node.optional("yanked")
    is_yanked = yanked.boolean() if yanked is not None else False
    reason_node = node.optional("yanked_reason")
    reason = (reason_node.optional_string() or "") if reason_node is not None else ""
    upload = node.optional("upload_time_iso_8601")
    requires_python = node.optional("requires_python")
    return DistFile(
        filename=filename,
        url=url,
        path=_path(url, filename, node),
        sha256=sha256,
        size=node.key("size").integer(),
        upload_time=_timestamp(upload) if upload is not None else None,
        requires_python=(requires_python.optional_string() or None) if requires_python else None,
        yanked=is_yanked,
        yanked_reason=reason if is_yanked else "",
        core_metadata=has_metadata,
        core_metadata_sha256=metadata_sha256,
    )


def _file_url(node: _Node, page_url: str) -> str:
    """The absolute URL of a file, resolved against its page. A page read over https
    may not send the download over plain http: that would undo the page's TLS."""
    url = urljoin(page_url, node.string())
    if urlsplit(page_url).scheme == "https" and urlsplit(url).scheme != "https":
        raise UnsafePathError(f"{node.path}: an https page links {url!r}, which is not https")
    return url


def _provenance_url(node: _Node | None, page_url: str) -> str | None:
    """PEP 740: the absolute URL of a file's provenance, resolved against its page; None
    when there is none, or when an https page links it over plain http (not followed:
    the file is mirrored without it)."""
    value = node.optional_string() if node is not None else None
    if not value:
        return None
    url = urljoin(page_url, value)
    if urlsplit(page_url).scheme == "https" and urlsplit(url).scheme != "https":
        return None
    return url


def _path(url: str, filename: str, node: _Node) -> PackagePath:
    try:
        return package_path_from_url(url, filename=filename)
    except UnsafePathError as exc:
        raise UnsafePathError(f"{node.path}.url: {exc}") from exc


def _sha256(node: _Node) -> str:
    value = node.string().lower()
    if not _SHA256_RE.match(value):
        raise MalformedResponseError(f"{node.path}: not a sha256 hex digest: {value!r}")
    return value


def _core_metadata(node: _Node | None) -> tuple[bool, str | None]:
    """PEP 658/714: ``false``/absent, ``true``, or ``{"sha256": hex, ...}``."""
    if node is None or node.value is None or node.value is False:
        return False, None
    if node.value is True:
        return True, None
    sha = node.optional("sha256")
    if sha is None:
        # A hash in an algorithm we do not verify: still served, hash computed locally.
        node.members()  # must at least be a mapping
        return True, None
    return True, _sha256(sha)


def _yanked(node: _Node | None) -> tuple[bool, str]:
    """PEP 592 in JSON: ``false``, ``true`` or a non-empty reason string."""
    if node is None or node.value is False or node.value is None:
        return False, ""
    if node.value is True:
        return True, ""
    if isinstance(node.value, str):
        return (True, node.value) if node.value else (False, "")
    raise MalformedResponseError(f"{node.path}: expected bool or string")


def _timestamp(node: _Node) -> datetime | None:
    text = node.optional_string()
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedResponseError(f"{node.path}: not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _check_unique_paths(files: Sequence[DistFile]) -> None:
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise MalformedResponseError(f"file path {f.path!r} advertised twice")
        seen.add(f.path)


def versions_from_files(files: Sequence[DistFile]) -> tuple[str, ...]:
    """The versions of ``files``, best effort from the filenames (for pages that
    predate PEP 700, and pages showing only some of a project's files)."""
    versions: set[str] = set()
    for f in files:
        try:
            if f.filename.endswith(".whl"):
                versions.add(str(parse_wheel_filename(f.filename)[1]))
            else:
                versions.add(str(parse_sdist_filename(f.filename)[1]))
        except (InvalidSdistFilename, InvalidWheelFilename, InvalidVersion):
            continue
    return tuple(versions)


class _Node:
    """A value inside parsed JSON/XML-RPC data that knows its key path for errors."""

    __slots__ = ("path", "value")

    def __init__(self, value: object, path: str):
        self.value = value
        self.path = path

    def _fail(self, expected: str) -> MalformedResponseError:
        where = self.path or "(root)"
        return MalformedResponseError(
            f"{where}: expected {expected}, got {type(self.value).__name__}"
        )

    def _child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def key(self, key: str) -> _Node:
        if not isinstance(self.value, Mapping):
            raise self._fail("an object")
        if key not in self.value:
            raise MalformedResponseError(f"{self._child_path(key)}: missing")
        return _Node(self.value[key], self._child_path(key))

    def optional(self, key: str) -> _Node | None:
        if not isinstance(self.value, Mapping):
            raise self._fail("an object")
        if key not in self.value:
            return None
        return _Node(self.value[key], self._child_path(key))

    def items(self) -> Iterable[_Node]:
        if not isinstance(self.value, list | tuple):
            raise self._fail("an array")
        return (_Node(v, f"{self.path}[{i}]") for i, v in enumerate(self.value))

    def members(self) -> list[tuple[str, _Node]]:
        if not isinstance(self.value, Mapping):
            raise self._fail("an object")
        return [(str(k), _Node(v, self._child_path(str(k)))) for k, v in self.value.items()]

    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self._fail("a string")
        return self.value

    def optional_string(self) -> str | None:
        if self.value is None:
            return None
        return self.string()

    def integer(self) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self._fail("an integer")
        if self.value < 0:
            raise MalformedResponseError(f"{self.path}: must not be negative")
        return self.value

    def optional_int(self) -> int | None:
        if self.value is None:
            return None
        return self.integer()

    def optional_serial(self) -> Serial | None:
        """A serial: an integer, a decimal string (bandersnatch's pages) or null."""
        if isinstance(self.value, str) and self.value.isascii() and self.value.isdigit():
            return Serial(int(self.value))
        value = self.optional_int()
        return None if value is None else Serial(value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self._fail("a boolean")
        return self.value
