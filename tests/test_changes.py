"""What a run queues, from the changelog, the listing and the filters (no I/O)."""

from __future__ import annotations

import pytest
from packaging.utils import NormalizedName

from mirror import changes
from mirror.filters import FilterSet, load_filters
from mirror.models import ChangelogEntry, Serial


def n(name: str) -> NormalizedName:
    return NormalizedName(name)


def entry(name: str, serial: int) -> ChangelogEntry:
    return ChangelogEntry(name=name, version=None, timestamp=0, action="new", serial=Serial(serial))


def allowlist(packages: str) -> FilterSet:
    return load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": packages}})


def blocklist(packages: str) -> FilterSet:
    return load_filters({"plugins": {"enabled": "blocklist"}, "blocklist": {"packages": packages}})


@pytest.mark.parametrize(
    ("entries", "serial", "projects", "reached"),
    [
        ([], 5, {}, 5),
        ([entry("A", 6), entry("b", 9), entry("a", 7)], 5, {"a": 7, "b": 9}, 9),
        ([entry("", 12), entry("x", 8)], 5, {"x": 8}, 12),
    ],
)
def test_changes_since_a_serial(
    entries: list[ChangelogEntry], serial: int, projects: dict[str, int], reached: int
) -> None:
    found = changes.since(entries, Serial(serial))
    assert found.projects == projects
    assert found.serial == reached


@pytest.mark.parametrize(
    ("listed", "held", "last", "projects", "reached"),
    [
        ({"a": 3, "b": 4}, [], 2, {"a": 3, "b": 4}, 4),
        ({"a": 3}, ["a", "gone"], 9, {"a": 3, "gone": 0}, 9),
        ({}, [], 0, {}, 0),
    ],
)
def test_a_first_sync_queues_the_listing_and_what_is_held(
    listed: dict[str, int], held: list[str], last: int, projects: dict[str, int], reached: int
) -> None:
    listing = {n(k): Serial(v) for k, v in listed.items()}
    found = changes.first_sync(listing, map(n, held), last_serial=Serial(last))
    assert found.projects == projects
    assert found.serial == reached


def test_a_first_sync_without_held_extras_keeps_the_listing_as_it_is() -> None:
    listing = {n("a"): Serial(3)}
    assert changes.first_sync(listing, [n("a")], last_serial=Serial(1)).projects is listing


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (FilterSet(), None),
        (blocklist("x"), None),
        (allowlist("b\na"), {"a": 0, "b": 0}),
    ],
)
def test_an_allowlist_replaces_the_listing(
    filters: FilterSet, expected: dict[str, int] | None
) -> None:
    found = changes.allowlisted(filters)
    assert found == expected
    if found is not None:
        assert list(found) == sorted(found)


def test_admitted_leaves_out_names_the_filters_reject_and_copies_only_then() -> None:
    projects = {n("a"): Serial(1), n("x"): Serial(2)}
    assert changes.admitted(projects, blocklist("x")) == {"a": 1}
    assert changes.admitted(projects, blocklist("y")) is projects


@pytest.mark.parametrize(
    ("filters", "recorded", "expected"),
    [
        (FilterSet(), None, "record"),
        (FilterSet(), FilterSet().fingerprint, "current"),
        (blocklist("x"), None, "requeue"),
        (blocklist("x"), FilterSet().fingerprint, "requeue"),
        (blocklist("x"), blocklist("x").fingerprint, "current"),
        (FilterSet(), blocklist("x").fingerprint, "requeue"),
    ],
)
def test_reconciliation_follows_the_fingerprint(
    filters: FilterSet, recorded: str | None, expected: str
) -> None:
    assert changes.reconciliation(filters, recorded) == expected


def test_a_reconciliation_requeues_what_is_listed_and_what_is_held() -> None:
    listed = {n("a"): Serial(5)}
    assert changes.requeued(listed, [n("a"), n("held")]) == {"a": 5, "held": 0}
    assert listed == {"a": 5}


def _row(name: str, serial: int, action: str, version: str | None = None) -> ChangelogEntry:
    return ChangelogEntry(
        name=name, version=version, timestamp=0, action=action, serial=Serial(serial)
    )


@pytest.mark.parametrize(
    ("action", "version", "removal"),
    [
        ("remove project", None, True),
        (" remove project ", None, True),
        ("remove", None, True),
        ("remove", "1.0", False),
        ("remove release", "1.0", False),
        ("remove file a-1.0.tar.gz", "1.0", False),
        ("remove Owner alice", None, False),
        ("create", None, False),
    ],
)
def test_only_a_whole_project_removal_counts_as_one(
    action: str, version: str | None, removal: bool
) -> None:
    assert changes.is_removal(_row("a", 1, action, version)) is removal


def test_the_changelog_confirms_a_removal_only_when_its_newest_row_removes() -> None:
    rows = [
        _row("gone", 3, "remove project"),
        _row("Back", 4, "remove project"),
        _row("back", 6, "create"),
        _row("live", 5, "new release", "1.0"),
        _row("late", 9, "remove project"),
        _row("late", 8, "new release", "2.0"),
    ]
    found = changes.since(rows, Serial(1))
    assert found.gone == {"gone", "late"}
    assert found.projects == {"gone": 3, "back": 6, "live": 5, "late": 9}


def test_a_full_listing_confirms_what_it_no_longer_has_an_allowlist_does_not() -> None:
    listed = {n("a"): Serial(3)}
    full = changes.first_sync(listed, [n("a"), n("old")], last_serial=Serial(4))
    assert full.gone == {"old"}
    assert full.projects == {"a": 3, "old": 0}
    allowed = changes.first_sync(listed, [n("a"), n("old")], last_serial=Serial(4), complete=False)
    assert allowed.gone == frozenset()
    assert changes.unlisted(listed, [n("a"), n("b")]) == {"b"}


@pytest.mark.parametrize(
    ("gone", "held", "serial", "verdict"),
    [
        (True, True, 5, "remove"),
        (True, False, 5, "remove"),
        (False, True, 5, "keep"),
        (False, True, 0, "keep"),
        (False, False, 5, "keep"),
        (False, False, 0, "remove"),
    ],
)
def test_a_404_removes_only_what_upstream_confirmed_or_what_was_never_held(
    gone: bool, held: bool, serial: int, verdict: str
) -> None:
    assert changes.on_not_found(gone=gone, held=held, serial=Serial(serial)) == verdict
