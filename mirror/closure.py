"""The dependency closure, found without I/O: ``Requires-Dist`` and targets → the
projects needed.

With ``[allowlist] dependencies = true`` the mirror also keeps every project an
allowed project requires on the target environments, with the versions those
requirements admit, and so on until the set stops growing. The run reads the
``.metadata`` files the mirror holds and hands their bytes to a :class:`ClosureWalk`,
which says which project to read next and, at the end, what is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from email.parser import BytesHeaderParser

from packaging.markers import InvalidMarker, UndefinedComparison
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from mirror.filters.dependencies import Needs


class ClosureWalk:
    """The closure of ``roots`` on ``environments``, one project at a time: ask
    :meth:`next_project` which project to read, hand each of its mirrored
    ``.metadata`` files to :meth:`read`, and take :meth:`needs` once none is left."""

    def __init__(
        self, roots: Iterable[NormalizedName], environments: Sequence[Mapping[str, str]]
    ) -> None:
        self._environments = environments
        self._frontier = sorted(roots)
        self._seen: set[NormalizedName] = set()
        self._needs: dict[NormalizedName, set[str]] = {}

    def next_project(self) -> NormalizedName | None:
        """The next project whose requirements are wanted, or None when done."""
        while self._frontier:
            name = self._frontier.pop()
            if name not in self._seen:
                self._seen.add(name)
                return name
        return None

    def read(self, metadata: bytes) -> None:
        """Take in one ``.metadata`` file of the project :meth:`next_project` named."""
        for dependency, specs in needs_of(requires_dist(metadata), self._environments).items():
            self._needs.setdefault(dependency, set()).update(specs)
            self._frontier.append(dependency)

    def needs(self) -> dict[NormalizedName, tuple[str, ...]]:
        """``{project: specifiers}`` needed by the roots and, in turn, by those."""
        return merge(self._needs)


def changed(old: Needs, new: Needs) -> list[NormalizedName]:
    """The projects whose need differs between ``old`` and ``new``, sorted."""
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def requires_dist(metadata: bytes) -> list[Requirement]:
    """The ``Requires-Dist`` requirements of a core metadata file; lines that do not
    parse are skipped (old uploads carry some)."""
    message = BytesHeaderParser().parsebytes(metadata)
    requirements: list[Requirement] = []
    for line in message.get_all("Requires-Dist") or []:
        try:
            requirements.append(Requirement(str(line)))
        except InvalidRequirement:
            continue
    return requirements


def is_needed(requirement: Requirement, environments: Sequence[Mapping[str, str]]) -> bool:
    """Whether ``requirement`` applies on some target environment with no extras.
    A marker that cannot be evaluated counts as applying: better one project too many
    than a mirror pip cannot install from."""
    if requirement.marker is None:
        return True
    for environment in environments:
        try:
            if requirement.marker.evaluate({**environment, "extra": ""}):
                return True
        except (InvalidMarker, UndefinedComparison):
            return True
    return False


def needs_of(
    requirements: Iterable[Requirement], environments: Sequence[Mapping[str, str]]
) -> dict[NormalizedName, set[str]]:
    """``{project: specifiers}`` of the requirements that apply on a target."""
    needs: dict[NormalizedName, set[str]] = {}
    for requirement in requirements:
        if is_needed(requirement, environments):
            needs.setdefault(canonicalize_name(requirement.name), set()).add(
                str(requirement.specifier)
            )
    return needs


def merge(needs: Mapping[NormalizedName, Iterable[str]]) -> dict[NormalizedName, tuple[str, ...]]:
    """Frozen, sorted form of ``needs`` (an empty specifier absorbs the others)."""
    merged: dict[NormalizedName, tuple[str, ...]] = {}
    for name, specs in sorted(needs.items()):
        unique = sorted(set(specs))
        merged[name] = ("",) if "" in unique else tuple(unique)
    return merged
