"""Dependency closure for allowlist mirrors: what the allowed projects need to install.

With ``[allowlist] dependencies = true`` the mirror also keeps every project an
allowed project requires, on the target environments (``python_versions``,
``platforms``), with the versions those requirements admit, and so on until the set
stops growing. Requirements come from the ``Requires-Dist`` lines of the PEP 658
``.metadata`` files the mirror holds; markers are evaluated for each target
environment with no extras. This module parses the targets; ``mirror/closure.py``
finds the closure and the sync engine runs the loop (fetch, read, extend, fetch
again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from packaging.utils import NormalizedName

from mirror.filters import FilterOptions
from mirror.filters.platforms import PythonTarget, parse_python_target

# What sys.platform, platform.system() and os.name say on each target platform.
_PLATFORM_MARKERS: Final[Mapping[str, tuple[str, str, str]]] = {
    "linux": ("linux", "Linux", "posix"),
    "macos": ("darwin", "Darwin", "posix"),
    "windows": ("win32", "Windows", "nt"),
    "freebsd": ("freebsd14", "FreeBSD", "posix"),
}
DEFAULT_PYTHON_VERSIONS: Final = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
DEFAULT_PLATFORMS: Final = ("linux", "macos", "windows")

Needs = Mapping[NormalizedName, tuple[str, ...]]
"""``{project: specifiers}``: the versions a project is needed in (any of the
specifiers; an empty specifier means any version)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """The environments dependency markers are evaluated for."""

    python_versions: tuple[PythonTarget, ...]
    platforms: tuple[str, ...]

    @classmethod
    def parse(cls, options: FilterOptions) -> Targets:
        """``python_versions`` and ``platforms`` of ``options``, with defaults."""
        pythons = options.words("python_versions") or DEFAULT_PYTHON_VERSIONS
        platforms = tuple(w.lower() for w in options.words("platforms")) or DEFAULT_PLATFORMS
        for platform in platforms:
            if platform not in _PLATFORM_MARKERS:
                raise options.error(
                    "platforms",
                    f"unknown platform {platform!r} (expected {', '.join(_PLATFORM_MARKERS)})",
                )
        return cls(
            python_versions=tuple(
                parse_python_target(options, "python_versions", raw) for raw in pythons
            ),
            platforms=platforms,
        )

    def environments(self) -> list[dict[str, str]]:
        """One marker environment per (Python version, platform) pair, no extras."""
        environments: list[dict[str, str]] = []
        for python in self.python_versions:
            full = f"{python.major}.{python.minor}.0"
            for platform in self.platforms:
                sys_platform, system, os_name = _PLATFORM_MARKERS[platform]
                environments.append(
                    {
                        "implementation_name": "cpython",
                        "implementation_version": full,
                        "os_name": os_name,
                        "platform_machine": "x86_64",
                        "platform_release": "",
                        "platform_system": system,
                        "platform_version": "",
                        "python_full_version": full,
                        "platform_python_implementation": "CPython",
                        "python_version": f"{python.major}.{python.minor}",
                        "sys_platform": sys_platform,
                    }
                )
        return environments
