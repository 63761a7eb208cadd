"""Allowlist and blocklist filters: projects by name, releases by version specifier.

``[allowlist] packages`` and ``[blocklist] packages`` take one PEP 508 requirement a
line (``numpy>=1.26,<3``; a bare name means every version; ``#`` starts a comment).
``[allowlist] requirements_path`` + ``requirements`` add pip requirements files (file
names or globs; pip option lines such as ``-r`` or ``--hash`` are skipped), as
bandersnatch's ``project_requirements`` does. ``[allowlist] lockfiles`` adds PEP 751
``pylock.toml`` and ``uv.lock`` files (names or globs): exactly their releases, and of
those only the files they lock (matched by sha256); see :mod:`mirror.filters.lockfiles`.
``[blocklist] platforms`` is
bandersnatch's ``exclude_platform`` (see :mod:`mirror.filters.platforms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import ConfigError
from mirror.filters import FilterOptions, FilterSpec, KeepAll, Release, file_version
from mirror.filters.dependencies import Needs, Targets
from mirror.filters.lockfiles import LockedFile, Lockfile, Locks, merge_locks, parse_lockfile
from mirror.filters.platforms import PlatformBlocklist
from mirror.models import DistFile

Requirements = tuple[tuple[NormalizedName, str], ...]
"""``(name, specifier text)`` pairs, sorted; an empty specifier means every version."""


def parse_requirements(options: FilterOptions, key: str, lines: Sequence[str]) -> Requirements:
    """PEP 508 lines to ``(name, specifier)`` pairs; specifiers of one name are
    intersected. Raises ConfigError naming the key for a line that does not parse or
    carries an environment marker."""
    merged: dict[NormalizedName, SpecifierSet] = {}
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise options.error(key, f"invalid requirement {line!r}: {exc}") from None
        if requirement.marker is not None or requirement.url:
            raise options.error(key, f"markers and URLs are not supported: {line!r}")
        name = canonicalize_name(requirement.name)
        merged[name] = merged.get(name, SpecifierSet()) & requirement.specifier
    return tuple(sorted((name, str(spec)) for name, spec in merged.items()))


def rejected_versions(
    releases: Sequence[Release], spec_text: str, *, keep_matching: bool
) -> dict[str, str]:
    """Versions to drop: those outside ``spec_text`` (``keep_matching``) or inside it.
    Legacy versions never match a specifier."""
    spec = SpecifierSet(spec_text)
    rejected: dict[str, str] = {}
    for release in releases:
        parsed = release.parsed
        matches = parsed is not None and spec.contains(parsed, prereleases=True)
        if matches != keep_matching:
            rejected[release.version] = (
                f"version not in {spec_text}" if keep_matching else f"version in {spec_text}"
            )
    return rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowlistConfig:
    """``[allowlist]``: only these projects (and versions) are mirrored."""

    packages: Requirements
    """``packages`` and the ``requirements`` files together."""
    dependencies: Targets | None = None
    """``dependencies = true``: also what they require on these targets
    (``python_versions``, ``platforms``); None when off."""
    locks: Locks = ()
    """``lockfiles``: the files they lock, by project."""


class AllowlistFilter(KeepAll):
    """bandersnatch's ``allowlist_project``, ``allowlist_release`` and
    ``project_requirements`` in one filter, plus lockfile seeds and the dependency
    closure: ``needs`` (found by the sync engine) admits more projects and versions,
    ``on_demand`` (the names ``mirror serve`` fetched on demand) admits more projects
    whole. Neither is part of :attr:`config`, so neither changes the fingerprint."""

    def __init__(
        self,
        config: AllowlistConfig,
        needs: Needs | None = None,
        on_demand: frozenset[NormalizedName] = frozenset(),
    ) -> None:
        self._config = config
        self._specs: Mapping[NormalizedName, str] = dict(config.packages)
        self._needs: Needs = needs or {}
        self._on_demand = on_demand
        self._locked: Mapping[NormalizedName, tuple[LockedFile, ...]] = dict(config.locks)
        self._locked_versions = {
            name: tuple(dict.fromkeys(f.version for f in files)) for name, files in config.locks
        }
        self._locked_hashes = {
            name: frozenset(f.sha256 for f in files) for name, files in config.locks
        }

    @property
    def config(self) -> AllowlistConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> AllowlistFilter:
        lines = list(options.lines("packages"))
        lines.extend(_requirements_files(options))
        follow = options.boolean("dependencies", default=False)
        targets = Targets.parse(options)
        if not follow and (options.text("python_versions") or options.text("platforms")):
            key = "python_versions" if options.text("python_versions") else "platforms"
            raise options.error(key, "only used with dependencies = true")
        return cls(
            AllowlistConfig(
                packages=parse_requirements(options, "packages", lines),
                dependencies=targets if follow else None,
                locks=merge_locks(_lockfiles(options)),
            )
        )

    def marker_environments(self) -> list[dict[str, str]] | None:
        """The environments dependency markers are evaluated for; None when the
        allowlist does not follow dependencies."""
        targets = self._config.dependencies
        return None if targets is None else targets.environments()

    def with_needs(self, needs: Needs) -> AllowlistFilter:
        """This allowlist, also admitting ``needs`` (the dependency closure)."""
        return AllowlistFilter(self._config, needs, self._on_demand)

    def with_on_demand(self, names: frozenset[NormalizedName]) -> AllowlistFilter:
        """This allowlist, also admitting every release of ``names``."""
        return AllowlistFilter(self._config, self._needs, names)

    def locked_files(self, name: NormalizedName) -> tuple[LockedFile, ...]:
        """The files the lockfiles lock of ``name`` (none when it is not locked)."""
        return self._locked.get(name, ())

    def check_name(self, name: NormalizedName) -> str | None:
        admitted = (
            name in self._specs
            or name in self._needs
            or name in self._locked
            or name in self._on_demand
        )
        return None if admitted else "not in the allowlist"

    def included_names(self) -> frozenset[NormalizedName] | None:
        return (
            frozenset(self._specs)
            | frozenset(self._needs)
            | frozenset(self._locked)
            | self._on_demand
        )

    def _specifiers(self, name: NormalizedName) -> list[str]:
        """The specifiers that admit releases of ``name`` (``""``: every one)."""
        specs = [*self._needs.get(name, ())]
        if name in self._specs:
            specs.append(self._specs[name])
        if name in self._on_demand:
            specs.append("")
        return specs

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        specs = self._specifiers(name)
        if "" in specs:
            return {}
        locked = self._locked_versions.get(name, ())
        # Kept when any of the specifiers (the allowlist's, each requirer's) admits it,
        # or a lockfile locks it.
        rejected: dict[str, str] | None = None
        if locked:
            rejected = {r.version: "not in the lockfiles" for r in releases}
            rejected = {v: why for v, why in rejected.items() if v not in locked}
        for spec in specs:
            dropped = rejected_versions(releases, spec, keep_matching=True)
            rejected = (
                dropped
                if rejected is None
                else {v: why for v, why in rejected.items() if v in dropped}
            )
        return rejected or {}

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        hashes = self._locked_hashes.get(name)
        if hashes is None or dist.sha256 in hashes:
            return None
        # A file of a release only the lockfiles admit must be one they lock; the
        # releases a specifier admits keep all their files.
        version = file_version(dist, self._locked_versions[name])
        if version not in self._locked_versions[name]:
            return None
        release = [Release(version=version, files=(dist,))]
        if any(
            not rejected_versions(release, spec, keep_matching=True)
            for spec in self._specifiers(name)
        ):
            return None
        return "not in the lockfiles (sha256 differs)"


def _lockfiles(options: FilterOptions) -> list[Lockfile]:
    """The lockfiles ``lockfiles`` names (paths or globs, relative to the config)."""
    lockfiles: list[Lockfile] = []
    for pattern in options.words("lockfiles"):
        for path in _matching(options, "lockfiles", options.base, pattern):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise options.error("lockfiles", f"cannot read {path}: {exc}") from exc
            try:
                lockfiles.append(parse_lockfile(text))
            except ConfigError as exc:
                raise options.error("lockfiles", f"{path}: {exc}") from None
    return lockfiles


def _matching(options: FilterOptions, key: str, root: Path, pattern: str) -> list[Path]:
    """The files ``pattern`` (a name or a glob) names below ``root``; ConfigError naming
    ``key`` when a glob matches nothing."""
    paths = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
    if not paths:
        raise options.error(key, f"no file matches {str(root / pattern)!r}")
    return paths


def _requirements_files(options: FilterOptions) -> list[str]:
    root = options.base / (options.text("requirements_path") or ".")
    lines: list[str] = []
    for pattern in options.lines("requirements"):
        for path in _matching(options, "requirements", root, pattern):
            lines.extend(_read_requirements(options, path))
    return lines


def _read_requirements(options: FilterOptions, path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise options.error("requirements", f"cannot read {path}: {exc}") from exc
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        # pip options (-r, -e, --hash …) and comments are not requirements.
        if line and not line.startswith(("#", "-")):
            lines.append(line.split(";", 1)[0].strip() if ";" in line else line)
    return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class BlocklistConfig:
    """``[blocklist]``: projects, versions and platforms never mirrored."""

    packages: Requirements
    platforms: PlatformBlocklist


class BlocklistFilter(KeepAll):
    """bandersnatch's ``blocklist_project``, ``blocklist_release`` and
    ``exclude_platform`` in one filter."""

    def __init__(self, config: BlocklistConfig) -> None:
        self._config = config
        self._specs: Mapping[NormalizedName, str] = dict(config.packages)

    @property
    def config(self) -> BlocklistConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> BlocklistFilter:
        packages = parse_requirements(options, "packages", options.lines("packages"))
        platforms = PlatformBlocklist.parse(options, "platforms")
        return cls(BlocklistConfig(packages=packages, platforms=platforms))

    def check_name(self, name: NormalizedName) -> str | None:
        return "in the blocklist" if self._specs.get(name) == "" else None

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        spec = self._specs.get(name)
        if not spec:
            return {}
        return rejected_versions(releases, spec, keep_matching=False)

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name
        return self._config.platforms.reason(dist.filename)


ALLOWLIST = FilterSpec(section="allowlist", build=AllowlistFilter.from_options)
BLOCKLIST = FilterSpec(section="blocklist", build=BlocklistFilter.from_options)
