"""Allowlist and blocklist filters: projects by name, releases by version specifier.

``[allowlist] packages`` and ``[blocklist] packages`` take one PEP 508 requirement a
line (``numpy>=1.26,<3``; a bare name means every version; ``#`` starts a comment).
``[allowlist] requirements_path`` + ``requirements`` add pip requirements files (file
names or globs; pip option lines such as ``-r`` or ``--hash`` are skipped), as
bandersnatch's ``project_requirements`` does. ``[blocklist] platforms`` is
bandersnatch's ``exclude_platform`` (see :mod:`mirror.filters.platforms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from mirror.filters import FilterOptions, FilterSpec, KeepAll, Release
from mirror.filters.dependencies import Needs, Targets
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


class AllowlistFilter(KeepAll):
    """bandersnatch's ``allowlist_project``, ``allowlist_release`` and
    ``project_requirements`` in one filter, plus the dependency closure: ``needs``
    (found by the sync engine) admits more projects and versions."""

    def __init__(self, config: AllowlistConfig, needs: Needs | None = None) -> None:
        self._config = config
        self._specs: Mapping[NormalizedName, str] = dict(config.packages)
        self._needs: Needs = needs or {}

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
            )
        )

    def marker_environments(self) -> list[dict[str, str]] | None:
        """The environments dependency markers are evaluated for; None when the
        allowlist does not follow dependencies."""
        targets = self._config.dependencies
        return None if targets is None else targets.environments()

    def with_needs(self, needs: Needs) -> AllowlistFilter:
        """This allowlist, also admitting ``needs`` (the dependency closure)."""
        return AllowlistFilter(self._config, needs)

    def check_name(self, name: NormalizedName) -> str | None:
        return None if name in self._specs or name in self._needs else "not in the allowlist"

    def included_names(self) -> frozenset[NormalizedName] | None:
        return frozenset(self._specs) | frozenset(self._needs)

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        specs = [*self._needs.get(name, ())]
        if name in self._specs:
            specs.append(self._specs[name])
        if "" in specs:
            return {}
        # Kept when any of the specifiers (the allowlist's, each requirer's) admits it.
        rejected: dict[str, str] | None = None
        for spec in specs:
            dropped = rejected_versions(releases, spec, keep_matching=True)
            rejected = (
                dropped
                if rejected is None
                else {v: why for v, why in rejected.items() if v in dropped}
            )
        return rejected or {}


def _requirements_files(options: FilterOptions) -> list[str]:
    root = options.base / (options.text("requirements_path") or ".")
    lines: list[str] = []
    for pattern in options.lines("requirements"):
        paths = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        if not paths:
            raise options.error("requirements", f"no file matches {str(root / pattern)!r}")
        for path in paths:
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
