"""File and project filters: sizes, package types and yanked files.

* ``size`` (``[size_project_metadata]``, bandersnatch's ``size_project_metadata``):
  ``max_package_size`` leaves out a project whose files (after the other filters)
  add up to more; ``max_file_size`` leaves out single files larger than that. Sizes
  are humanfriendly sizes, 1024-based as in bandersnatch: ``1G``, ``200 MiB``.
* ``package_types`` (``[filter_package_types]``): ``types`` lists the kinds kept:
  ``sdist``, ``wheel``, and the legacy ``egg``, ``exe``, ``msi``, ``dmg``, ``rpm``,
  ``dumb`` (or ``legacy`` for all of those).
* ``yanked`` (``[filter_yanked]``, no keys): leaves out PEP 592 yanked files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from humanfriendly import format_size
from packaging.utils import (
    InvalidSdistFilename,
    NormalizedName,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion

from mirror.filters import FilterOptions, FilterSpec, KeepAll
from mirror.filters.platforms import wheel_tags
from mirror.models import DistFile, ProjectDetail

LEGACY_TYPES: Final = ("egg", "exe", "msi", "dmg", "rpm", "dumb")
PACKAGE_TYPES: Final = ("sdist", "wheel", *LEGACY_TYPES)
# bandersnatch / PyPI packagetype names for the same kinds.
_TYPE_ALIASES: Final[dict[str, str]] = {
    "bdist_wheel": "wheel",
    "bdist_egg": "egg",
    "bdist_wininst": "exe",
    "bdist_msi": "msi",
    "bdist_dmg": "dmg",
    "bdist_rpm": "rpm",
    "bdist_dumb": "dumb",
}
_SUFFIX_TYPES: Final = ((".egg", "egg"), (".exe", "exe"), (".msi", "msi"), (".dmg", "dmg"))


def package_type(filename: str) -> str:
    """The kind of a distribution file, from its name: ``wheel``, ``sdist`` (a source
    archive whose version parses) or a legacy kind; ``dumb`` for other archives
    (bdist_dumb's ``name-1.0.linux-x86_64.tar.gz``)."""
    lowered = filename.lower()
    if lowered.endswith(".whl") and wheel_tags(filename) is not None:
        return "wheel"
    for suffix, kind in _SUFFIX_TYPES:
        if lowered.endswith(suffix):
            return kind
    if lowered.endswith(".rpm"):
        return "rpm"
    try:
        parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return "sdist" if lowered.endswith((".tar.bz2", ".tgz", ".tar.xz", ".tar")) else "dumb"
    return "sdist"


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeConfig:
    max_package_bytes: int | None
    max_file_bytes: int | None


class SizeFilter(KeepAll):
    """Leaves out projects and files that are too large."""

    def __init__(self, config: SizeConfig) -> None:
        self._config = config

    @property
    def config(self) -> SizeConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> SizeFilter:
        return cls(
            SizeConfig(
                max_package_bytes=options.size("max_package_size"),
                max_file_bytes=options.size("max_file_size"),
            )
        )

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name
        limit = self._config.max_file_bytes
        if limit is not None and dist.size > limit:
            return f"{format_size(dist.size, binary=True)} is over max_file_size"
        return None

    def check_project(self, detail: ProjectDetail) -> str | None:
        limit = self._config.max_package_bytes
        total = sum(f.size for f in detail.files)
        if limit is not None and total > limit:
            return (
                f"{format_size(total, binary=True)} in total is over max_package_size "
                f"({format_size(limit, binary=True)})"
            )
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageTypesConfig:
    types: tuple[str, ...]


class PackageTypesFilter(KeepAll):
    """Keeps only the listed kinds of files."""

    def __init__(self, config: PackageTypesConfig) -> None:
        self._config = config

    @property
    def config(self) -> PackageTypesConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> PackageTypesFilter:
        if options.text("types") is None:
            return cls(PackageTypesConfig(types=PACKAGE_TYPES))
        kinds: set[str] = set()
        for raw in options.words("types"):
            word = _TYPE_ALIASES.get(raw.lower(), raw.lower())
            if word == "legacy":
                kinds.update(LEGACY_TYPES)
            elif word in PACKAGE_TYPES:
                kinds.add(word)
            else:
                raise options.error(
                    "types",
                    f"unknown package type {raw!r} (expected {', '.join(PACKAGE_TYPES)}, legacy)",
                )
        if not kinds:
            raise options.error("types", "list at least one package type")
        return cls(PackageTypesConfig(types=tuple(sorted(kinds))))

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name
        kind = package_type(dist.filename)
        return None if kind in self._config.types else f"package type {kind} not kept"


@dataclass(frozen=True, slots=True, kw_only=True)
class YankedConfig:
    pass


class YankedFilter(KeepAll):
    """Leaves out yanked files."""

    @property
    def config(self) -> YankedConfig:
        return YankedConfig()

    @classmethod
    def from_options(cls, options: FilterOptions) -> YankedFilter:
        del options
        return cls()

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name
        if not dist.yanked:
            return None
        return f"yanked: {dist.yanked_reason}" if dist.yanked_reason else "yanked"


SIZE = FilterSpec(section="size_project_metadata", build=SizeFilter.from_options)
PACKAGE_TYPES_SPEC = FilterSpec(
    section="filter_package_types", build=PackageTypesFilter.from_options
)
YANKED = FilterSpec(section="filter_yanked", build=YankedFilter.from_options)
