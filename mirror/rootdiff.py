"""What to queue when upstream is followed through its PEP 691 root index, without I/O.

``upstream-api = simple`` (or ``auto`` against an upstream without XML-RPC): the run
reads upstream's root index and, when the root carries no per-project
``_last-serial``, each project page's ``X-PyPI-Last-Serial`` and ``ETag``. This module
compares what it read with what the state store recorded the last time (a
:class:`~mirror.models.PageValidator` per project) and with the projects the mirror
holds, and says what to queue, which validators to record and which to forget.

A project is queued when it is new, or its serial differs from the recorded one (or,
without serials, its ETag does), or nothing can be compared; a project the mirror
holds that the root no longer lists is queued at serial 0 as a confirmed removal
(``gone``), which its sync settles through the normal removal path (upstream answers
404).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.utils import NormalizedName

from mirror.changes import Changes
from mirror.models import PageValidator, Serial, SimpleRoot


@dataclass(frozen=True, slots=True, kw_only=True)
class RootDiff:
    """The changes a root index gives, and what the state records once they are queued."""

    changes: Changes
    record: Mapping[NormalizedName, PageValidator] = field(default_factory=dict)
    """Validators to record: those of the queued projects (the others are unchanged)."""
    forget: tuple[NormalizedName, ...] = ()
    """Projects whose validator goes: the root no longer lists them."""


def root_validators(root: SimpleRoot) -> dict[NormalizedName, PageValidator]:
    """The validators a root with ``_last-serial`` gives: each project's serial."""
    return {name: PageValidator(serial=serial) for name, _, serial in root.projects}


def is_changed(known: PageValidator | None, seen: PageValidator) -> bool:
    """Whether a page read as ``seen`` may differ from the one recorded as ``known``:
    by serial when both have one, else by ETag when both have one; with nothing to
    compare (a first look, a server that sends neither) it may."""
    if known is None:
        return True
    if known.serial is not None and seen.serial is not None:
        return known.serial != seen.serial
    if known.etag is not None and seen.etag is not None:
        return known.etag != seen.etag
    return True


def diff(
    root: SimpleRoot,
    seen: Mapping[NormalizedName, PageValidator],
    *,
    known: Mapping[NormalizedName, PageValidator],
    held: Iterable[NormalizedName],
    mirror_serial: Serial | None,
) -> RootDiff:
    """Compare what was ``seen`` of the projects ``root`` lists (:func:`root_validators`
    for a root with serials, else each page's) with the ``known`` validators and the
    projects the mirror ``held``.

    Queued: each listed project that :func:`is_changed`, at the serial seen (0
    without one: any page is fresh enough), under the root's display name; each held
    project the root no longer lists, at serial 0, a confirmed removal
    (:attr:`~mirror.changes.Changes.gone`). The mirror reaches the newest of
    its serial, the root's ``meta._last-serial`` and the serials queued.
    """
    projects: dict[NormalizedName, Serial] = {}
    display_names: dict[NormalizedName, str] = {}
    record: dict[NormalizedName, PageValidator] = {}
    listed: set[NormalizedName] = set()
    for name, display_name, _ in root.projects:
        listed.add(name)
        validator = seen.get(name, PageValidator())
        if is_changed(known.get(name), validator):
            projects[name] = validator.serial or Serial(0)
            display_names[name] = display_name
            record[name] = validator
    gone = frozenset(name for name in held if name not in listed)
    projects.update(dict.fromkeys(gone, Serial(0)))
    forget = tuple(sorted(name for name in known if name not in listed))
    serial = Serial(max([mirror_serial or 0, root.serial or 0, *projects.values()]))
    return RootDiff(
        changes=Changes(projects=projects, serial=serial, display_names=display_names, gone=gone),
        record=record,
        forget=forget,
    )
