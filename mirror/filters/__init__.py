"""Filters: which projects, releases and files a partial mirror keeps, and why.

A filter is a plug-in found through the entry-point group ``mirror.filters``; the
built-ins are registered there too (``pyproject.toml``). An entry point names a
:class:`FilterSpec`: the config section the filter reads and a ``build`` function that
turns that section (a :class:`FilterOptions`) into a :class:`Filter` holding a frozen,
validated config. Only the filters that ``[plugins] enabled`` lists are loaded.

Stages, in the order :meth:`FilterSet.apply` runs them:

1. **name** (:meth:`Filter.check_name`): before any request for the project;
2. **release** (:meth:`Filter.check_releases`): each filter sees the releases the
   filters before it kept, so ``latest_release`` counts what is left;
3. **file** (:meth:`Filter.check_file`);
4. **project** (:meth:`Filter.check_project`): the project as it would be mirrored,
   e.g. its total size after the other filters.

Every rejection carries a reason, logged at DEBUG (``mirror sync -v``) and printed by
``mirror filters``. Everything here is pure: no I/O beyond reading the config's
requirements files at load time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

from humanfriendly import InvalidSize, parse_size
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mirror.errors import ConfigError
from mirror.models import DistFile, ProjectDetail, version_sort_key

if TYPE_CHECKING:
    from mirror.filters.lockfiles import LockedFile

ENTRY_POINT_GROUP: Final = "mirror.filters"
PLUGINS_SECTION: Final = "plugins"

# bandersnatch's plug-in names and the filter of ours that does their job, so a
# bandersnatch.conf's [plugins] enabled list works unchanged.
BANDERSNATCH_NAMES: Final[Mapping[str, str]] = {
    "allowlist_project": "allowlist",
    "allowlist_release": "allowlist",
    "project_requirements": "allowlist",
    "project_requirements_pinned": "allowlist",
    "blocklist_project": "blocklist",
    "blocklist_release": "blocklist",
    "exclude_platform": "blocklist",
    "prerelease_release": "prerelease",
    "regex_project": "regex",
    "regex_release": "regex",
    "latest_release": "latest_release",
    "size_project_metadata": "size",
}

BUILTINS: Final[Mapping[str, str]] = {
    "allowlist": "mirror.filters.lists:ALLOWLIST",
    "blocklist": "mirror.filters.lists:BLOCKLIST",
    "regex": "mirror.filters.releases:REGEX",
    "prerelease": "mirror.filters.releases:PRERELEASE",
    "latest_release": "mirror.filters.releases:LATEST_RELEASE",
    "size": "mirror.filters.files:SIZE",
    "package_types": "mirror.filters.files:PACKAGE_TYPES_SPEC",
    "yanked": "mirror.filters.files:YANKED",
    "environment": "mirror.filters.platforms:SPEC",
}
"""The built-in filters' entry points, as ``pyproject.toml`` declares them."""

BUILTIN_SECTIONS: Final = frozenset(
    {
        "allowlist",
        "blocklist",
        "filter_regex",
        "filter_prerelease",
        "latest_release",
        "size_project_metadata",
        "filter_package_types",
        "filter_yanked",
        "filter_environment",
    }
)
"""The sections the built-in filters read (named in the hint for a section that
no enabled filter reads)."""

_SEPARATOR_RE: Final = re.compile(r"[\s,]+")

Stage = Literal["name", "release", "file", "project"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """One release as the release stage sees it: its version and files."""

    version: str
    files: tuple[DistFile, ...]

    @property
    def parsed(self) -> Version | None:
        """The PEP 440 version, or None for a legacy version string."""
        try:
            return Version(self.version)
        except InvalidVersion:
            return None

    @property
    def upload_time(self) -> datetime | None:
        """When the release's first file was uploaded (None without timed files)."""
        times = [f.upload_time for f in self.files if f.upload_time is not None]
        return min(times) if times else None


class Filter(Protocol):
    """A loaded filter. Each ``check_*`` returns a reason to leave something out, or
    None (keep). Subclass :class:`KeepAll` to implement only the stages you need."""

    @property
    def config(self) -> object:
        """The frozen, validated config; its ``repr`` goes into the mirror's filter
        fingerprint, so it must be deterministic (tuples, not sets)."""
        ...

    def check_name(self, name: NormalizedName) -> str | None:
        """Reason to leave the project out by its name alone, or None."""
        ...

    def included_names(self) -> frozenset[NormalizedName] | None:
        """The complete set of names this filter admits, when it is finite (an
        allowlist); None when it admits names it cannot list."""
        ...

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        """``{version: reason}`` for the releases to leave out."""
        ...

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        """Reason to leave one file out, or None."""
        ...

    def check_project(self, detail: ProjectDetail) -> str | None:
        """Reason to leave the whole project out, given what the other stages kept."""
        ...


@runtime_checkable
class FollowsDependencies(Protocol):
    """A filter that also admits what the projects it admits depend on (the
    allowlist with ``dependencies = true``); the sync engine finds the closure."""

    def marker_environments(self) -> Sequence[Mapping[str, str]] | None:
        """Environments to evaluate ``Requires-Dist`` markers for, or None when the
        filter does not follow dependencies."""
        ...

    def with_needs(self, needs: Mapping[NormalizedName, tuple[str, ...]]) -> Filter:
        """The same filter, also admitting ``{project: specifiers}``."""
        ...


@runtime_checkable
class PinsFiles(Protocol):
    """A filter that pins exact files by sha256 (the allowlist's lockfiles)."""

    def locked_files(self, name: NormalizedName) -> tuple[LockedFile, ...]:
        """The files it pins of ``name``; empty when it pins none."""
        ...


@runtime_checkable
class AdmitsOnDemand(Protocol):
    """A filter that lists the names it admits and can admit more: the allowlist,
    which ``mirror serve --on-demand`` names join."""

    def with_on_demand(self, names: frozenset[NormalizedName]) -> Filter:
        """The same filter, also admitting every release of ``names``."""
        ...


class KeepAll:
    """A filter that keeps everything: the base for filters that use few stages."""

    def check_name(self, name: NormalizedName) -> str | None:
        del name
        return None

    def included_names(self) -> frozenset[NormalizedName] | None:
        return None

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        del name, releases
        return {}

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name, dist
        return None

    def check_project(self, detail: ProjectDetail) -> str | None:
        del detail
        return None


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """One config section's raw values, with typed getters whose ConfigError names the
    section and key. ``base`` resolves relative paths (the config file's directory)."""

    section: str
    values: Mapping[str, str]
    base: Path = Path()
    read: set[str] = field(default_factory=set)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, section=self.section, key=key)

    def text(self, key: str) -> str | None:
        self.read.add(key)
        raw = self.values.get(key)
        return raw.strip() if raw is not None and raw.strip() else None

    def lines(self, key: str) -> tuple[str, ...]:
        """Non-empty lines, without ``#`` comments (whole-line or trailing)."""
        raw = self.text(key) or ""
        stripped = (line.split("#", 1)[0].strip() for line in raw.splitlines())
        return tuple(line for line in stripped if line)

    def words(self, key: str) -> tuple[str, ...]:
        """Values separated by whitespace or commas, comments removed."""
        return tuple(word for line in self.lines(key) for word in _SEPARATOR_RE.split(line) if word)

    def integer(self, key: str, *, default: int, minimum: int) -> int:
        raw = self.text(key)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < minimum:
            raise self.error(key, f"expected a whole number >= {minimum}, got {raw!r}")
        return int(raw)

    def boolean(self, key: str, *, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        states = {"1": True, "yes": True, "true": True, "on": True}
        states |= {"0": False, "no": False, "false": False, "off": False}
        if raw.lower() not in states:
            raise self.error(key, f"expected true or false, got {raw!r}")
        return states[raw.lower()]

    def size(self, key: str) -> int | None:
        """A size in bytes: ``1G``, ``200 MiB``, ``500k`` (1024-based, as bandersnatch)."""
        raw = self.text(key)
        if raw is None:
            return None
        try:
            value = int(parse_size(raw, binary=True))
        except InvalidSize:
            raise self.error(key, f"expected a size such as 200 MiB or 1G, got {raw!r}") from None
        if value <= 0:
            raise self.error(key, f"must be more than zero, got {raw!r}")
        return value

    def regexes(self, key: str) -> tuple[re.Pattern[str], ...]:
        patterns: list[re.Pattern[str]] = []
        for line in self.lines(key):
            try:
                patterns.append(re.compile(line))
            except re.error as exc:
                raise self.error(key, f"invalid regular expression {line!r}: {exc}") from None
        return tuple(patterns)

    def choice(self, key: str, choices: Sequence[str], *, default: str) -> str:
        raw = self.text(key)
        if raw is None:
            return default
        if raw.lower() not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {raw!r}")
        return raw.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterSpec:
    """What a ``mirror.filters`` entry point names: the section the filter reads and
    how to build it. ``build`` raises ConfigError (via the options' getters) for bad
    values; keys it never reads are refused as unknown."""

    section: str
    build: Callable[[FilterOptions], Filter]


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop:
    """Something the filters left out, and why."""

    stage: Stage
    subject: str
    """The project name, version or filename."""
    filter: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stage} {self.subject}: {self.reason} ({self.filter})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of :meth:`FilterSet.apply`: the detail to mirror (None when the
    whole project is left out) and every drop with its reason."""

    detail: ProjectDetail | None
    drops: tuple[Drop, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterSet:
    """The enabled filters, in ``[plugins] enabled`` order; empty keeps everything."""

    filters: tuple[tuple[str, Filter], ...] = ()

    @property
    def fingerprint(self) -> str:
        """A digest of the enabled filters and their configs; when it changes, the
        mirror reconciles what it holds with the new filters."""
        text = "\n".join(f"{name}={filter_.config!r}" for name, filter_ in self.filters)
        return hashlib.sha256(text.encode()).hexdigest()

    def check_name(self, name: NormalizedName) -> Drop | None:
        """Why ``name`` is left out before any request, or None."""
        for filter_name, filter_ in self.filters:
            reason = filter_.check_name(name)
            if reason is not None:
                return Drop(stage="name", subject=name, filter=filter_name, reason=reason)
        return None

    def included_names(self) -> frozenset[NormalizedName] | None:
        """Every name the filters admit when some filter lists them (an allowlist),
        else None."""
        result: frozenset[NormalizedName] | None = None
        for _, filter_ in self.filters:
            names = filter_.included_names()
            if names is not None:
                result = names if result is None else result & names
        if result is None:
            return None
        return frozenset(name for name in result if self.check_name(name) is None)

    def marker_environments(self) -> Sequence[Mapping[str, str]] | None:
        """The environments of the filter that follows dependencies, or None when no
        filter does."""
        for _, filter_ in self.filters:
            if isinstance(filter_, FollowsDependencies):
                environments = filter_.marker_environments()
                if environments is not None:
                    return environments
        return None

    def with_needs(self, needs: Mapping[NormalizedName, tuple[str, ...]]) -> FilterSet:
        """These filters with the dependency closure ``needs`` admitted."""
        return FilterSet(
            filters=tuple(
                (name, f.with_needs(needs) if isinstance(f, FollowsDependencies) else f)
                for name, f in self.filters
            )
        )

    def with_on_demand(self, names: frozenset[NormalizedName]) -> FilterSet:
        """These filters with ``names`` (fetched on demand) joining the allowlist's
        set; the other filters still apply to them."""
        if not names:
            return self
        return FilterSet(
            filters=tuple(
                (name, f.with_on_demand(names) if isinstance(f, AdmitsOnDemand) else f)
                for name, f in self.filters
            )
        )

    def locked_files(self, name: NormalizedName) -> tuple[LockedFile, ...]:
        """Every file the filters pin of ``name`` (the allowlist's lockfiles)."""
        pinned: dict[LockedFile, None] = {}
        for _, filter_ in self.filters:
            if isinstance(filter_, PinsFiles):
                pinned.update(dict.fromkeys(filter_.locked_files(name)))
        return tuple(pinned)

    def missing_locked(self, detail: ProjectDetail) -> tuple[LockedFile, ...]:
        """The files the filters pin of ``detail``'s project that upstream's detail
        (before filtering) no longer lists, by sha256."""
        present = {dist.sha256 for dist in detail.files}
        return tuple(f for f in self.locked_files(detail.name) if f.sha256 not in present)

    def apply(self, detail: ProjectDetail) -> Outcome:
        """Run every stage over ``detail``; ``versions`` is recomputed for what is kept
        (releases without files upstream stay listed unless a release filter drops
        them)."""
        dropped = self.check_name(detail.name)
        if dropped is not None:
            return Outcome(detail=None, drops=(dropped,))
        drops: list[Drop] = []
        releases = releases_of(detail)
        for filter_name, filter_ in self.filters:
            rejected = filter_.check_releases(detail.name, releases)
            for version, reason in rejected.items():
                drops.append(
                    Drop(stage="release", subject=version, filter=filter_name, reason=reason)
                )
            releases = [r for r in releases if r.version not in rejected]
        kept_versions = {r.version for r in releases}
        in_kept_release = {f.path for r in releases for f in r.files}
        files: list[DistFile] = []
        for dist in detail.files:
            if dist.path not in in_kept_release:
                continue
            drop = self._check_file(detail.name, dist)
            if drop is None:
                files.append(dist)
            else:
                drops.append(drop)
        # A release whose every file was filtered away is not offered either.
        with_files = {r.version for r in releases if r.files}
        survivors = {file_version(f, detail.versions) for f in files}
        versions = tuple(
            v
            for v in detail.versions
            if v in kept_versions and (v not in with_files or v in survivors)
        )
        result = replace(detail, files=tuple(files), versions=versions)
        for filter_name, filter_ in self.filters:
            why = filter_.check_project(result)
            if why is not None:
                drops.append(
                    Drop(stage="project", subject=detail.name, filter=filter_name, reason=why)
                )
                return Outcome(detail=None, drops=tuple(drops))
        return Outcome(detail=result, drops=tuple(drops))

    def _check_file(self, name: NormalizedName, dist: DistFile) -> Drop | None:
        for filter_name, filter_ in self.filters:
            reason = filter_.check_file(name, dist)
            if reason is not None:
                return Drop(stage="file", subject=dist.filename, filter=filter_name, reason=reason)
        return None


def releases_of(detail: ProjectDetail) -> list[Release]:
    """The project's releases in ``versions`` order, each with its files. Files whose
    version cannot be told from the filename form a release of their own, keyed by
    the filename, so version filters never silently drop them."""
    by_version: dict[str, list[DistFile]] = {v: [] for v in detail.versions}
    for dist in detail.files:
        by_version.setdefault(file_version(dist, detail.versions), []).append(dist)
    ordered = sorted(by_version, key=version_sort_key)
    return [Release(version=v, files=tuple(by_version[v])) for v in ordered]


def file_version(dist: DistFile, versions: Sequence[str]) -> str:
    """The release a file belongs to: the wheel's version, else the longest known
    version that follows ``<name>-`` in the filename (sdists, eggs, .exe, .msi); the
    filename itself when neither works."""
    if dist.filename.endswith(".whl"):
        try:
            version = parse_wheel_filename(dist.filename)[1]
        except (InvalidWheelFilename, InvalidVersion):
            pass
        else:
            for candidate in versions:
                if _same_version(candidate, version):
                    return candidate
            return str(version)
    lowered = dist.filename.lower()
    best: str | None = None
    for candidate in versions:
        marker = f"-{candidate.lower()}"
        at = lowered.find(marker)
        end = at + len(marker)
        if (
            at > 0
            and (end == len(lowered) or lowered[end] in ".-_")
            and (best is None or len(candidate) > len(best))
        ):
            best = candidate
    return best if best is not None else dist.filename


def _same_version(raw: str, version: Version) -> bool:
    try:
        return Version(raw) == version
    except InvalidVersion:
        return False


class FilterSource(Protocol):
    """Where a mirror's filters are configured: what :func:`filters_of` reads
    (:class:`mirror.config.Config` is one)."""

    @property
    def filter_sections(self) -> Mapping[str, Mapping[str, str]]:
        """The config file's sections other than ``[mirror]`` and ``[serve]``."""

    @property
    def source(self) -> Path | None:
        """The config file; relative paths in the sections are taken from its directory."""


def filters_of(config: FilterSource) -> FilterSet:
    """The filters ``config`` enables, relative paths taken from its file's directory
    (the working directory when it has none). Files the filters name are read now, so
    each call sees their current contents. Raises ConfigError."""
    base = config.source.parent if config.source is not None else Path()
    return load_filters(config.filter_sections, base=base)


def load_filters(
    sections: Mapping[str, Mapping[str, str]],
    *,
    base: Path = Path(),
    available: Iterable[EntryPoint] | None = None,
) -> FilterSet:
    """Load and configure the filters ``[plugins] enabled`` lists.

    ``sections`` are the config file's sections other than ``[mirror]``; ``available``
    defaults to the installed ``mirror.filters`` entry points. Names are ours or
    bandersnatch's (``allowlist_project``…); ``all`` enables every installed filter.
    Raises ConfigError naming section and key for an unknown filter name, a filter
    that fails to load, a bad value, an unknown key, or a section no enabled filter
    reads.
    """
    points = {ep.name: ep for ep in (available if available is not None else _installed())}
    plugins = FilterOptions(PLUGINS_SECTION, sections.get(PLUGINS_SECTION, {}), base)
    names: list[str] = []
    for word in plugins.words("enabled"):
        if word == "all":
            names.extend(sorted(points))
            continue
        name = BANDERSNATCH_NAMES.get(word, word)
        if name not in points:
            raise plugins.error(
                "enabled",
                f"unknown filter {word!r} (installed: {', '.join(sorted(points)) or 'none'})",
            )
        names.append(name)
    _check_unread(plugins)
    loaded: list[tuple[str, Filter]] = []
    options_by_section: dict[str, FilterOptions] = {}
    for name in dict.fromkeys(names):
        try:
            spec = points[name].load()
        except Exception as exc:  # a broken plug-in is a config problem
            raise plugins.error("enabled", f"filter {name!r} failed to load: {exc}") from exc
        if not isinstance(spec, FilterSpec):
            raise plugins.error("enabled", f"filter {name!r} is not a mirror FilterSpec")
        options = options_by_section.setdefault(
            spec.section, FilterOptions(spec.section, sections.get(spec.section, {}), base)
        )
        loaded.append((name, spec.build(options)))
    for options in options_by_section.values():
        _check_unread(options)
    for section in sections:
        if section != PLUGINS_SECTION and section not in options_by_section:
            hint = ""
            if section in BUILTIN_SECTIONS:
                hint = "; no enabled filter reads it (see [plugins] enabled)"
            raise ConfigError("unknown section" + hint, section=section)
    return FilterSet(filters=tuple(loaded))


def _installed() -> Iterable[EntryPoint]:
    """The ``mirror.filters`` entry points, plus any built-in whose entry point is
    missing (mirror run from a source tree that was never installed)."""
    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name, value in BUILTINS.items():
        points.setdefault(name, EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP))
    return points.values()


def _check_unread(options: FilterOptions) -> None:
    for key in options.values:
        if key not in options.read:
            raise options.error(key, "unknown key")
