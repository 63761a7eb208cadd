"""Lockfiles as allowlist seeds: PEP 751 ``pylock.toml`` and ``uv.lock``, parsed once.

A lockfile names exact releases and, for each, the files an installer may take, each
with its sha256. :func:`parse_lockfile` turns the TOML text (stdlib :mod:`tomllib`)
into a frozen :class:`Lockfile`; :func:`merge_locks` joins several into the
:data:`Locks` the allowlist holds (``[allowlist] lockfiles``). Only files that come
from an index count: a package locked from a VCS checkout, a local directory or an
archive URL (PEP 751 ``vcs``, ``directory``, ``archive``; uv's ``git``, ``path``,
``directory``, ``editable``, ``virtual`` sources) is not a PyPI project's file and is
skipped.

The format is told from the content: ``lock-version`` is PEP 751's, ``version`` with
``[[package]]`` tables is uv's. Errors are ConfigErrors naming the TOML key path
(``packages[2].wheels[0].hashes.sha256``). Pure: the caller reads the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import ConfigError

_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_UV_SKIPPED_SOURCES: Final = frozenset({"git", "path", "directory", "editable", "virtual", "url"})


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class LockedFile:
    """One file a lockfile pins: which project and release, its filename and sha256."""

    name: NormalizedName
    version: str
    filename: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}: {self.filename} (sha256 {self.sha256})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockfile:
    """What one lockfile pins, in the order it lists the files."""

    files: tuple[LockedFile, ...]


Locks = tuple[tuple[NormalizedName, tuple[LockedFile, ...]], ...]
"""Every locked file by project, both sorted: a deterministic value (the filter
fingerprint is its ``repr``)."""


def parse_lockfile(text: str) -> Lockfile:
    """Parse a ``pylock.toml`` (PEP 751) or ``uv.lock`` file's text.

    Raises ConfigError for text that is not TOML, is neither format, or has a
    missing or malformed value (the message names the key path).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not a TOML file: {exc}") from None
    if "lock-version" in data:
        return Lockfile(files=tuple(_pylock_files(data)))
    if "version" in data and "package" in data:
        return Lockfile(files=tuple(_uv_files(data)))
    raise ConfigError("neither a pylock.toml (lock-version) nor a uv.lock (version, [[package]])")


def merge_locks(lockfiles: Iterable[Lockfile]) -> Locks:
    """The files of all ``lockfiles``, by project, without repeats."""
    by_name: dict[NormalizedName, set[LockedFile]] = {}
    for lockfile in lockfiles:
        for locked in lockfile.files:
            by_name.setdefault(locked.name, set()).add(locked)
    return tuple((name, tuple(sorted(by_name[name]))) for name in sorted(by_name))


# --- PEP 751 ------------------------------------------------------------------------


def _pylock_files(data: Mapping[str, object]) -> Iterable[LockedFile]:
    version = _string(data, "lock-version", "lock-version")
    if version.split(".", 1)[0] != "1":
        raise ConfigError(f"lock-version: unsupported version {version!r} (expected 1.x)")
    for index, package in enumerate(_tables(data, "packages", "packages")):
        where = f"packages[{index}]"
        name = canonicalize_name(_string(package, "name", where))
        if any(key in package for key in ("vcs", "directory", "archive")):
            continue  # not an index's file
        yield from _package_files(package, where, name, _pylock_file)


def _package_files(
    package: Mapping[str, object],
    where: str,
    name: NormalizedName,
    file_of: Callable[[Mapping[str, object], str, NormalizedName, str], LockedFile],
) -> Iterator[LockedFile]:
    """A locked package's sdist (if any) and wheels, each read by ``file_of`` (the
    format's file table: pylock's or uv's)."""
    release = _string(package, "version", where)
    sdist = package.get("sdist")
    if sdist is not None:
        if not isinstance(sdist, Mapping):
            raise ConfigError(f"{where}.sdist: expected a table")
        yield file_of(sdist, f"{where}.sdist", name, release)
    for number, wheel in enumerate(_tables(package, "wheels", where, required=False)):
        yield file_of(wheel, f"{where}.wheels[{number}]", name, release)


def _pylock_file(
    table: Mapping[str, object], where: str, name: NormalizedName, version: str
) -> LockedFile:
    hashes = table.get("hashes")
    if not isinstance(hashes, Mapping):
        raise ConfigError(f"{where}.hashes: expected a table")
    sha256 = _sha256(hashes.get("sha256"), f"{where}.hashes.sha256")
    filename = table.get("name")
    if filename is None:
        filename = _filename_from_url(_string(table, "url", where), f"{where}.url")
    elif not isinstance(filename, str) or not filename:
        raise ConfigError(f"{where}.name: expected a file name")
    return LockedFile(name=name, version=version, filename=filename, sha256=sha256)


# --- uv.lock ------------------------------------------------------------------------


def _uv_files(data: Mapping[str, object]) -> Iterable[LockedFile]:
    for index, package in enumerate(_tables(data, "package", "package")):
        where = f"package[{index}]"
        name = canonicalize_name(_string(package, "name", where))
        source = package.get("source", {})
        if not isinstance(source, Mapping):
            raise ConfigError(f"{where}.source: expected a table")
        if _UV_SKIPPED_SOURCES & set(source):
            continue  # the project itself, a checkout or a local path
        yield from _package_files(package, where, name, _uv_file)


def _uv_file(
    table: Mapping[str, object], where: str, name: NormalizedName, version: str
) -> LockedFile:
    raw = _string(table, "hash", where)
    algorithm, _, digest = raw.partition(":")
    if algorithm != "sha256":
        raise ConfigError(f"{where}.hash: expected sha256:<hex>, got {raw!r}")
    sha256 = _sha256(digest, f"{where}.hash")
    filename = _filename_from_url(_string(table, "url", where), f"{where}.url")
    return LockedFile(name=name, version=version, filename=filename, sha256=sha256)


# --- shared -------------------------------------------------------------------------


def _string(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    path = key if where == key else f"{where}.{key}"
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: expected a string")
    return value


def _tables(
    table: Mapping[str, object], key: str, where: str, *, required: bool = True
) -> list[Mapping[str, object]]:
    value = table.get(key)
    path = key if where == key else f"{where}.{key}"
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ConfigError(f"{path}: expected an array of tables")
    return value


def _sha256(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SHA256_RE.match(value.lower()):
        raise ConfigError(f"{where}: expected a sha256 hex digest")
    return value.lower()


def _filename_from_url(url: str, where: str) -> str:
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not filename:
        raise ConfigError(f"{where}: no file name in {url!r}")
    return filename
