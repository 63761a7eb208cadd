"""The mirror directory's layout, and the one rule for a path that is safe to serve.

A mirror directory holds::

    mirror.db        the state store (STATE_NAME)
    .lock            the run lock (LOCK_NAME)
    web/             the served tree (WEB_DIR): packages/, simple/, pypi/, ...

Inside ``web/`` every path the mirror writes or serves is a relative POSIX path; a
path component is safe when it is not empty, ``.`` or ``..`` and holds no slash,
backslash, NUL, other control character or DEL (:func:`is_safe_component`). That one
rule guards what upstream names (:func:`package_path`), what the storage writes and
what the server serves.

Writes land first under a temp name, ``.<filename>.<random>.part``, beside their
target (:func:`temp_name`, :func:`is_temp_name`), so a killed run's leftovers are
recognisable.

This module is pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final, NewType

from mirror.errors import UnsafePathError

STATE_NAME: Final = "mirror.db"
"""The state store's file name inside the mirror directory."""

WEB_DIR: Final = "web"
"""The served tree's directory inside the mirror directory."""

LOCK_NAME: Final = ".lock"
"""The run lock's file name inside the mirror directory."""

TEMP_SUFFIX: Final = ".part"
"""The suffix of a temp file (``.<filename>.<random>.part``)."""

PackagePath = NewType("PackagePath", str)
"""A relative POSIX path ``packages/<a>/<b>/<c>/<filename>`` that is safe to join to
the mirror's web directory. Only :func:`package_path` mints one."""

# Characters that are never acceptable in a path component the mirror writes or serves.
_UNSAFE_CHARACTER_RE: Final = re.compile(r"[\x00-\x1f\x7f/\\]")
_UNSAFE_COMPONENTS: Final = frozenset({"", ".", ".."})


def state_path(directory: Path) -> Path:
    """The state store of the mirror directory ``directory``."""
    return directory / STATE_NAME


def web_root(directory: Path) -> Path:
    """The served tree of the mirror directory ``directory``."""
    return directory / WEB_DIR


def lock_path(directory: Path) -> Path:
    """The run lock of the mirror directory ``directory``."""
    return directory / LOCK_NAME


def is_safe_component(part: str) -> bool:
    """Whether ``part`` may be one component of a path under the web root: not empty,
    ``.`` or ``..``, and without slash, backslash, NUL, control characters or DEL."""
    return part not in _UNSAFE_COMPONENTS and not _UNSAFE_CHARACTER_RE.search(part)


def unsafe_component(parts: Iterable[str]) -> str | None:
    """The first of ``parts`` that is not a safe component, or None when all are."""
    return next((part for part in parts if not is_safe_component(part)), None)


def check_relative(relative: str) -> list[str]:
    """Split ``relative``, a POSIX path under the web root, into its components.

    Raises UnsafePathError when it is absolute or any component is unsafe (see
    :func:`is_safe_component`); with those gone a path joined from the components
    stays under the web root by construction."""
    parts = relative.split("/")
    bad = unsafe_component(parts)
    if bad is not None:
        raise UnsafePathError(f"unsafe path {relative!r}: unsafe component {bad!r}")
    return parts


def package_path(relative: str) -> PackagePath:
    """Mint the :data:`PackagePath` for ``relative`` (``packages/<...>/<filename>``):
    the one place one is made. Raises UnsafePathError when ``relative`` is not under
    ``packages/`` or has an unsafe component."""
    parts = check_relative(relative)
    if len(parts) < 2 or parts[0] != "packages":
        raise UnsafePathError(f"unsafe path {relative!r}: not a file under packages/")
    return PackagePath(relative)


def metadata_path(path: PackagePath) -> PackagePath:
    """The PEP 658 sidecar (``<file>.metadata``) of the file at ``path``."""
    return PackagePath(f"{path}.metadata")


def provenance_path(path: PackagePath) -> PackagePath:
    """The PEP 740 provenance copy (``<file>.provenance``) of the file at ``path``."""
    return PackagePath(f"{path}.provenance")


def temp_name(name: str, token: str) -> str:
    """The temp file name for a write of ``name``: ``.<name>.<token>.part``."""
    return f".{name}.{token}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether the file name ``name`` has the shape of a temp (``.*.part``)."""
    return len(name) > len(TEMP_SUFFIX) and name.startswith(".") and name.endswith(TEMP_SUFFIX)
