"""Release filters: regular expressions, pre-releases and the latest N releases.

* ``regex`` (``[filter_regex]``): ``packages`` drops projects whose normalized name a
  pattern matches (``re.match``, one pattern a line), ``releases`` drops versions.
* ``prerelease`` (``[filter_prerelease]``): drops pre-, dev- and other non-final
  releases by PEP 440 (packaging's ``is_prerelease``); legacy version strings fall
  back to bandersnatch's patterns. ``packages`` restricts it to those projects.
* ``latest_release`` (``[latest_release]``): keeps the ``keep`` newest releases by
  ``sort_by = version`` (PEP 440 order, legacy versions oldest) or ``time`` (first
  upload).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from packaging.utils import NormalizedName, canonicalize_name

from mirror.filters import FilterOptions, FilterSpec, KeepAll, Release
from mirror.models import version_sort_key

# bandersnatch's patterns, used only for versions PEP 440 cannot parse.
_LEGACY_PRERELEASE_RE: Final = re.compile(r".+(rc\d+|a(lpha)?\d+|b(eta)?\d+|dev\d+)$", re.I)
_EPOCH: Final = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexConfig:
    packages: tuple[str, ...]
    releases: tuple[str, ...]


class RegexFilter(KeepAll):
    """bandersnatch's ``regex_project`` and ``regex_release``."""

    def __init__(
        self, packages: Sequence[re.Pattern[str]], releases: Sequence[re.Pattern[str]]
    ) -> None:
        self._packages = tuple(packages)
        self._releases = tuple(releases)

    @property
    def config(self) -> RegexConfig:
        return RegexConfig(
            packages=tuple(p.pattern for p in self._packages),
            releases=tuple(p.pattern for p in self._releases),
        )

    @classmethod
    def from_options(cls, options: FilterOptions) -> RegexFilter:
        return cls(options.regexes("packages"), options.regexes("releases"))

    def check_name(self, name: NormalizedName) -> str | None:
        for pattern in self._packages:
            if pattern.match(name):
                return f"name matches {pattern.pattern!r}"
        return None

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        rejected: dict[str, str] = {}
        for release in releases:
            for pattern in self._releases:
                if pattern.match(release.version):
                    rejected[release.version] = f"version matches {pattern.pattern!r}"
                    break
        return rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class PrereleaseConfig:
    packages: tuple[NormalizedName, ...]
    """Only these projects; empty means every project."""


class PrereleaseFilter(KeepAll):
    """bandersnatch's ``prerelease_release``, by PEP 440."""

    def __init__(self, config: PrereleaseConfig) -> None:
        self._config = config

    @property
    def config(self) -> PrereleaseConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> PrereleaseFilter:
        names = sorted({canonicalize_name(word) for word in options.words("packages")})
        return cls(PrereleaseConfig(packages=tuple(names)))

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        if self._config.packages and name not in self._config.packages:
            return {}
        rejected: dict[str, str] = {}
        for release in releases:
            parsed = release.parsed
            if parsed is not None:
                if parsed.is_prerelease:
                    rejected[release.version] = "pre-release"
            elif _LEGACY_PRERELEASE_RE.match(release.version):
                rejected[release.version] = "pre-release (legacy version)"
        return rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class LatestConfig:
    keep: int
    sort_by: str


class LatestReleaseFilter(KeepAll):
    """bandersnatch's ``latest_release``: the ``keep`` newest releases."""

    def __init__(self, config: LatestConfig) -> None:
        self._config = config

    @property
    def config(self) -> LatestConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> LatestReleaseFilter:
        return cls(
            LatestConfig(
                keep=options.integer("keep", default=0, minimum=0),
                sort_by=options.choice("sort_by", ("version", "time"), default="version"),
            )
        )

    def check_releases(
        self, name: NormalizedName, releases: Sequence[Release]
    ) -> Mapping[str, str]:
        keep = self._config.keep
        if keep == 0 or len(releases) <= keep:
            return {}
        if self._config.sort_by == "time":
            ordered = sorted(
                releases,
                key=lambda r: (r.upload_time or _EPOCH, version_sort_key(r.version)),
            )
        else:
            ordered = sorted(releases, key=lambda r: version_sort_key(r.version))
        older = ordered[:-keep]
        return {r.version: f"not among the {keep} latest by {self._config.sort_by}" for r in older}


REGEX = FilterSpec(section="filter_regex", build=RegexFilter.from_options)
PRERELEASE = FilterSpec(section="filter_prerelease", build=PrereleaseFilter.from_options)
LATEST_RELEASE = FilterSpec(section="latest_release", build=LatestReleaseFilter.from_options)
