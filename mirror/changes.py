"""What to queue: upstream's changes, the listing and the filters, decided without I/O.

The run reads the changelog (or, on a first sync, the listing), the projects the
mirror holds and the filters' recorded fingerprint, and asks this module what goes in
the todo queue and to which serial the mirror advances. Nothing here touches the
network, the disk or the state store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from packaging.utils import NormalizedName, canonicalize_name

from mirror.filters import FilterSet
from mirror.models import ChangelogEntry, Serial
from mirror.models import changed_projects as fold_changelog

NotFoundVerdict = Literal["remove", "keep"]
"""What a 404 for a project's page (also with a cache-busting query) means: remove the
project (upstream confirmed its removal, or the mirror holds nothing of it and nothing
said it exists), or keep it queued with back-off (a CDN's stale 404 must never delete
data)."""

_REMOVALS = frozenset({"remove project"})
"""Changelog actions that remove a whole project (Warehouse's; the legacy PyPI wrote
``remove`` with no version, see :func:`is_removal`)."""

Reconciliation = Literal["current", "record", "requeue"]
"""What a run does about its filters: nothing (``current``: they are the ones the
mirror was last reconciled with), record their fingerprint alone (``record``: a mirror
from before filters existed, unfiltered and still unfiltered), or queue every project
again (``requeue``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """What to queue, and the serial the mirror reaches once it is queued."""

    projects: Mapping[NormalizedName, Serial]
    """``{project: serial to reach}``."""
    serial: Serial
    display_names: Mapping[NormalizedName, str] = field(default_factory=dict)
    """``{project: display name}`` where the change source names them (a changelog's
    newest row of each project)."""
    gone: frozenset[NormalizedName] = frozenset()
    """The queued projects upstream confirms removed: the changelog's newest row of
    each removes the project, or the full listing does not have it."""


def allowlisted(filters: FilterSet) -> dict[NormalizedName, Serial] | None:
    """The projects an allowlist names, at serial 0 (any page is fresh enough), in
    name order; None when the filters admit names they cannot list, and the full
    listing must be read."""
    allowed = filters.included_names()
    if allowed is None:
        return None
    return dict.fromkeys(sorted(allowed), Serial(0))


def first_sync(
    listed: Mapping[NormalizedName, Serial],
    held: Iterable[NormalizedName],
    *,
    last_serial: Serial,
    complete: bool = True,
) -> Changes:
    """A first sync's changes: every listed project, plus those the mirror holds that
    upstream no longer lists (serial 0: they answer 404 and are removed). When
    ``listed`` is upstream's ``complete`` listing (not an allowlist's names), those are
    :attr:`Changes.gone`. The mirror reaches the newest of ``last_serial`` (read
    before the listing, so that a change landing meanwhile is seen again) and the
    listed serials."""
    missing = unlisted(listed, held)
    projects = {**listed, **dict.fromkeys(missing, Serial(0))} if missing else listed
    return Changes(
        projects=projects,
        serial=Serial(max([last_serial, *projects.values()])),
        gone=missing if complete else frozenset(),
    )


def unlisted(
    listed: Mapping[NormalizedName, Serial], held: Iterable[NormalizedName]
) -> frozenset[NormalizedName]:
    """The ``held`` projects a full listing does not have: gone upstream."""
    return frozenset(name for name in held if name not in listed)


def is_recheck_due(last: float | None, *, now: float, interval_seconds: float) -> bool:
    """Whether a run re-checks the listing: ``interval_seconds`` on (above 0) and the
    last full comparison (``last``, Unix time; None: none recorded) that old."""
    if interval_seconds <= 0:
        return False
    return last is None or now - last >= interval_seconds


def recheck(
    listed: Mapping[NormalizedName, Serial], held: Mapping[NormalizedName, Serial]
) -> Changes:
    """A re-check's changes: every ``listed`` project held at another serial or not
    held at all (at its listed serial), and every ``held`` one the listing no longer
    has (serial 0, :attr:`Changes.gone`: removed as any confirmed removal is).
    ``serial`` is the newest the listing shows; the mirror serial does not move."""
    projects = {name: serial for name, serial in listed.items() if held.get(name) != serial}
    gone = unlisted(listed, held)
    projects.update(dict.fromkeys(gone, Serial(0)))
    return Changes(projects=projects, serial=Serial(max(listed.values(), default=0)), gone=gone)


def is_removal(entry: ChangelogEntry) -> bool:
    """Whether a changelog row removes its whole project (``remove project``; the
    legacy ``remove`` without a version)."""
    action = entry.action.strip()
    return action in _REMOVALS or (action == "remove" and not entry.version)


def on_not_found(*, gone: bool, held: bool, serial: Serial) -> NotFoundVerdict:
    """What a project's 404 (asked again with a cache-busting query) means.

    ``gone``: upstream confirmed the removal; ``held``: the mirror has the project;
    ``serial``: the serial its todo item must reach (0: nothing upstream claimed, as
    for an allowlist's names). Only a confirmed removal removes what the mirror holds;
    a project it does not hold is forgotten when nothing claimed it exists, and kept
    queued otherwise (a new project a CDN still answers 404 for).
    """
    if gone or (not held and serial == 0):
        return "remove"
    return "keep"


def since(entries: Sequence[ChangelogEntry], serial: Serial) -> Changes:
    """The changes of changelog ``entries`` read since the mirror's ``serial``: each
    project at its newest serial, under the name its newest row gives, and
    :attr:`Changes.gone` when that row removes the project; the mirror reaches the
    newest serial seen."""
    projects = fold_changelog(entries)
    display_names: dict[NormalizedName, str] = {}
    removed: dict[NormalizedName, bool] = {}
    for entry in sorted(entries, key=lambda entry: entry.serial):
        key = canonicalize_name(entry.name)
        if key in projects:
            display_names[key] = entry.name
            removed[key] = is_removal(entry)
    return Changes(
        projects=projects,
        serial=Serial(max([serial, *(entry.serial for entry in entries)])),
        display_names=display_names,
        gone=frozenset(name for name, is_gone in removed.items() if is_gone),
    )


def admitted(
    projects: Mapping[NormalizedName, Serial], filters: FilterSet
) -> Mapping[NormalizedName, Serial]:
    """``projects`` without those the name filters leave out (``projects`` itself
    when none is: no copy of a first sync's 600,000 names)."""
    if all(filters.check_name(name) is None for name in projects):
        return projects
    return {name: s for name, s in projects.items() if filters.check_name(name) is None}


def reconciliation(filters: FilterSet, recorded_fingerprint: str | None) -> Reconciliation:
    """What to do about ``filters``, given the fingerprint recorded by the last
    reconciled run (None: none recorded yet)."""
    if recorded_fingerprint == filters.fingerprint:
        return "current"
    if recorded_fingerprint is None and not filters.filters:
        return "record"
    return "requeue"


def requeued(
    listed: Mapping[NormalizedName, Serial], held: Iterable[NormalizedName]
) -> dict[NormalizedName, Serial]:
    """What a reconciliation queues: the admitted ``listed`` projects (projects a
    looser filter now admits) and every project the mirror holds (its sync removes,
    trims or grows it to what the filters keep), those at serial 0."""
    projects = dict(listed)
    for name in held:
        projects.setdefault(name, Serial(0))
    return projects


def reconciled(
    found: Changes,
    listed: Mapping[NormalizedName, Serial],
    held: Mapping[NormalizedName, Serial],
    display_names: Mapping[NormalizedName, str],
    *,
    complete: bool = True,
) -> Changes:
    """The first sync after ``mirror adopt``: the changelog's changes (``found``) plus
    what upstream's full listing says the adopted mirror lacks: the listed projects it
    does not hold or holds at an older serial (bandersnatch missed their changes), and
    the ones it holds that upstream no longer lists (serial 0: they answer 404 and are
    removed; :attr:`Changes.gone` when ``listed`` is the ``complete`` listing, not an
    allowlist's names). The mirror reaches the newest serial of either."""
    projects = dict(found.projects)
    for name, serial in listed.items():
        if held.get(name, Serial(-1)) < serial:
            projects[name] = max(serial, projects.get(name, Serial(0)))
    missing = unlisted(listed, held)
    for name in missing:
        projects.setdefault(name, Serial(0))
    return Changes(
        projects=projects,
        serial=Serial(max([found.serial, *listed.values()])),
        display_names={**display_names, **found.display_names},
        gone=found.gone | missing if complete else found.gone,
    )
