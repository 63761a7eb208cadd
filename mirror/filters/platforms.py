"""Platform, Python version and ABI filters, decided from wheel tags and Requires-Python.

Wheel filenames are parsed with :func:`packaging.utils.parse_wheel_filename` (so
compressed tag sets such as ``py2.py3`` or ``macosx_10_9_universal2`` expand
properly) instead of matching substrings against lists that lag each new Python and
platform. Two filters live here:

* ``environment`` (``[filter_environment]``): keep only what can be installed on the
  target environments (``python_versions``, ``platforms``, ``architectures``);
* the platform part of ``blocklist`` (``[blocklist] platforms``, bandersnatch's
  ``exclude_platform``), see :class:`PlatformBlocklist`.

Sdists always pass the platform checks: they build anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from mirror.filters import FilterOptions, FilterSpec, KeepAll
from mirror.models import DistFile

# Operating-system families and the platform-tag prefixes that belong to them.
OS_FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "linux": ("manylinux", "musllinux", "linux_"),
    "manylinux": ("manylinux",),
    "musllinux": ("musllinux",),
    "macos": ("macosx_",),
    "windows": ("win32", "win_"),
    "freebsd": ("freebsd",),
}
# Legacy binary formats that only ever targeted one OS.
_LEGACY_OS: Final[dict[str, str]] = {".exe": "windows", ".msi": "windows", ".dmg": "macos"}
_LEGACY_OS[".rpm"] = "linux"

_ARCH_ALIASES: Final[dict[str, str]] = {"amd64": "x86_64", "aarch64": "arm64", "x86": "i686"}
# Architectures of platform tags that do not end in one.
_TAG_ARCHES: Final[dict[str, frozenset[str]]] = {
    "win32": frozenset({"i686"}),
    "universal2": frozenset({"x86_64", "arm64"}),
    "universal": frozenset({"x86_64", "i686", "ppc", "ppc64"}),
    "intel": frozenset({"x86_64", "i686"}),
    "fat": frozenset({"i686", "ppc"}),
    "fat3": frozenset({"x86_64", "i686", "ppc"}),
    "fat64": frozenset({"x86_64", "ppc64"}),
}
_PY_TAG_RE: Final = re.compile(r"^(py|cp)(\d)(\d*)$")
_CP_ABI_RE: Final = re.compile(r"^cp(\d)(\d+)([a-z]*)$")
_PYTHON_VERSION_RE: Final = re.compile(r"^(\d)\.(\d+)(t?)$")
_EGG_PY_RE: Final = re.compile(r"-py(\d)\.(\d+)(?:-|\.egg$)")


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonTarget:
    """One target interpreter: CPython ``major.minor``, free-threaded or not."""

    major: int
    minor: int
    free_threaded: bool = False

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}{'t' if self.free_threaded else ''}"

    @property
    def version(self) -> Version:
        return Version(f"{self.major}.{self.minor}")


def parse_python_target(options: FilterOptions, key: str, raw: str) -> PythonTarget:
    """``3.12`` or ``3.13t``; ConfigError naming the key otherwise."""
    match = _PYTHON_VERSION_RE.match(raw)
    if match is None:
        raise options.error(key, f"expected a Python version such as 3.12 or 3.13t, got {raw!r}")
    return PythonTarget(major=int(match[1]), minor=int(match[2]), free_threaded=bool(match[3]))


def wheel_tags(filename: str) -> frozenset[Tag] | None:
    """The tags of a wheel filename, or None when it is not a valid wheel name."""
    if not filename.endswith(".whl"):
        return None
    try:
        return parse_wheel_filename(filename)[3]
    except (InvalidWheelFilename, InvalidVersion):
        return None


def tag_supports_python(tag: Tag, target: PythonTarget) -> bool:  # noqa: PLR0911  # one rule a line
    """Whether an interpreter/ABI pair can be installed on CPython ``target``, as
    :func:`packaging.tags.sys_tags` would order it: ``pyX``/``pyXY`` for that major
    and any minor up to the target's, ``cpXY-abi3`` likewise (not free-threaded),
    ``cpXY-cpXY[t]``/``cpXY-none`` only for that exact version."""
    match = _PY_TAG_RE.match(tag.interpreter)
    if match is None:
        return False  # PyPy, GraalPy, Jython, IronPython: not a CPython target
    kind, major, minor = match[1], int(match[2]), match[3]
    if major != target.major:
        return False
    if kind == "py":
        return not minor or int(minor) <= target.minor
    if not minor:
        return False
    if tag.abi == "abi3":
        return not target.free_threaded and int(minor) <= target.minor
    if int(minor) != target.minor:
        return False
    abi = _CP_ABI_RE.match(tag.abi)
    if abi is None:
        return tag.abi == "none" and not target.free_threaded
    return ("t" in abi[3]) == target.free_threaded


def normalize_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch, arch)


def tag_arches(platform: str) -> frozenset[str]:
    """The CPU architectures a platform tag covers (empty for ``any``)."""
    if platform == "any":
        return frozenset()
    if platform in _TAG_ARCHES:
        return _TAG_ARCHES[platform]
    tail = platform.rsplit("_", 1)[-1]
    if tail in _TAG_ARCHES:
        return _TAG_ARCHES[tail]
    if platform.endswith("x86_64"):
        return frozenset({"x86_64"})
    return frozenset({normalize_arch(tail)})


def tag_in_family(platform: str, family: str) -> bool:
    """Whether a platform tag belongs to an OS family (``linux``…) or, for any other
    word, is that exact tag."""
    prefixes = OS_FAMILIES.get(family)
    if prefixes is None:
        return platform == family
    return platform.startswith(prefixes)


def legacy_os(filename: str) -> str | None:
    """The OS a legacy binary (``.exe``, ``.msi``, ``.dmg``, ``.rpm``) was built for."""
    for suffix, family in _LEGACY_OS.items():
        if filename.lower().endswith(suffix):
            return family
    return None


def requires_python_reason(dist: DistFile, targets: Sequence[PythonTarget]) -> str | None:
    """Why a file's Requires-Python rules out every target, or None. An unparseable
    Requires-Python keeps the file (pip ignores it too)."""
    if dist.requires_python is None:
        return None
    try:
        spec = SpecifierSet(dist.requires_python)
    except InvalidSpecifier:
        return None
    if any(spec.contains(t.version, prereleases=True) for t in targets):
        return None
    return f"Requires-Python {dist.requires_python} excludes {' '.join(map(str, targets))}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentConfig:
    """``[filter_environment]``: the environments the mirror serves."""

    python_versions: tuple[PythonTarget, ...] = ()
    """``python_versions``: e.g. ``3.11 3.12 3.13t``; empty means any."""
    platforms: tuple[str, ...] = ()
    """``platforms``: OS families (linux, manylinux, musllinux, macos, windows,
    freebsd) or exact platform tags; empty means any."""
    architectures: tuple[str, ...] = ()
    """``architectures``: x86_64, arm64 (= aarch64), i686…; empty means any."""


class EnvironmentFilter(KeepAll):
    """Keeps sdists (when Requires-Python admits a target) and the wheels some target
    environment can install."""

    def __init__(self, config: EnvironmentConfig) -> None:
        self._config = config

    @property
    def config(self) -> EnvironmentConfig:
        return self._config

    @classmethod
    def from_options(cls, options: FilterOptions) -> EnvironmentFilter:
        pythons = tuple(
            parse_python_target(options, "python_versions", word)
            for word in options.words("python_versions")
        )
        config = EnvironmentConfig(
            python_versions=pythons,
            platforms=tuple(w.lower() for w in options.words("platforms")),
            architectures=tuple(normalize_arch(w.lower()) for w in options.words("architectures")),
        )
        return cls(config)

    def check_file(self, name: NormalizedName, dist: DistFile) -> str | None:
        del name
        config = self._config
        if config.python_versions:
            reason = requires_python_reason(dist, config.python_versions)
            if reason is not None:
                return reason
        tags = wheel_tags(dist.filename)
        if tags is None:
            family = legacy_os(dist.filename)
            if family is not None and config.platforms and family not in config.platforms:
                return f"built for {family}, not {' '.join(config.platforms)}"
            return self._egg_python(dist.filename)
        if not any(self._tag_fits(tag) for tag in tags):
            wanted = " ".join(
                [*map(str, config.python_versions), *config.platforms, *config.architectures]
            )
            return f"no wheel tag fits the targets ({wanted})"
        return None

    def _tag_fits(self, tag: Tag) -> bool:
        config = self._config
        if config.python_versions and not any(
            tag_supports_python(tag, t) for t in config.python_versions
        ):
            return False
        if tag.platform == "any":
            return True
        if config.platforms and not any(tag_in_family(tag.platform, p) for p in config.platforms):
            return False
        return not config.architectures or bool(
            tag_arches(tag.platform) & set(config.architectures)
        )

    def _egg_python(self, filename: str) -> str | None:
        match = _EGG_PY_RE.search(filename)
        targets = self._config.python_versions
        if match is None or not targets:
            return None
        if any(t.major == int(match[1]) and t.minor == int(match[2]) for t in targets):
            return None
        return f"built for Python {match[1]}.{match[2]}"


SPEC = FilterSpec(section="filter_environment", build=EnvironmentFilter.from_options)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformBlocklist:
    """bandersnatch's ``[blocklist] platforms``: OS families or exact platform tags
    (``windows``, ``macos``, ``win_arm64``…) and Python versions (``py2``,
    ``py3.6``). A wheel is left out when every one of its tags is excluded."""

    platforms: tuple[str, ...] = ()
    pythons: tuple[str, ...] = ()
    """``py2`` (a whole major version) or ``py3.6``."""

    @classmethod
    def parse(cls, options: FilterOptions, key: str) -> PlatformBlocklist:
        platforms: list[str] = []
        pythons: list[str] = []
        for raw in options.words(key):
            word = raw.lower()
            if re.fullmatch(r"py\d(\.\d+)?", word):
                pythons.append(word)
            elif re.fullmatch(r"[a-z0-9_.]+", word):
                platforms.append(word)
            else:
                raise options.error(key, f"not a platform or Python version: {word!r}")
        return cls(platforms=tuple(platforms), pythons=tuple(pythons))

    def reason(self, filename: str) -> str | None:
        tags = wheel_tags(filename)
        if tags is None:
            family = legacy_os(filename)
            if family is not None and family in self.platforms:
                return f"platform {family} is blocklisted"
            return None
        if self.platforms and all(self._platform_excluded(t.platform) for t in tags):
            return f"every platform tag is blocklisted ({' '.join(self.platforms)})"
        if self.pythons and all(self._python_excluded(t) for t in tags):
            return f"every Python tag is blocklisted ({' '.join(self.pythons)})"
        return None

    def _platform_excluded(self, platform: str) -> bool:
        return platform != "any" and any(tag_in_family(platform, p) for p in self.platforms)

    def _python_excluded(self, tag: Tag) -> bool:
        match = _PY_TAG_RE.match(tag.interpreter)
        if match is None:
            return False
        major, minor = match[2], match[3]
        if f"py{major}" in self.pythons:
            return True
        return bool(minor) and f"py{major}.{minor}" in self.pythons
