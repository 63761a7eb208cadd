"""The root-index comparison (pure) and the root index's parser."""

from __future__ import annotations

import pytest
from packaging.utils import NormalizedName

from mirror.errors import MalformedResponseError
from mirror.models import PageValidator, Serial, SimpleRoot
from mirror.rootdiff import diff, is_changed, root_validators

A, B, C = NormalizedName("a"), NormalizedName("b"), NormalizedName("c")


def root(*rows: tuple[str, int | None], serial: int | None = None) -> SimpleRoot:
    return SimpleRoot(
        projects=tuple(
            (NormalizedName(name.lower()), name, None if s is None else Serial(s))
            for name, s in rows
        ),
        serial=None if serial is None else Serial(serial),
    )


@pytest.mark.parametrize(
    ("known", "seen", "changed"),
    [
        (None, PageValidator(serial=Serial(3)), True),
        (PageValidator(serial=Serial(3)), PageValidator(serial=Serial(3)), False),
        (PageValidator(serial=Serial(3)), PageValidator(serial=Serial(4)), True),
        (PageValidator(serial=Serial(4)), PageValidator(serial=Serial(3)), True),
        (PageValidator(etag='"x"'), PageValidator(etag='"x"'), False),
        (PageValidator(etag='"x"'), PageValidator(etag='"y"'), True),
        # The serial decides when both have one, whatever the ETags say.
        (
            PageValidator(etag='"x"', serial=Serial(3)),
            PageValidator(etag='"y"', serial=Serial(3)),
            False,
        ),
        (PageValidator(etag='"x"'), PageValidator(serial=Serial(3)), True),
        (PageValidator(), PageValidator(), True),
    ],
)
def test_is_changed_compares_serials_then_etags(
    known: PageValidator | None, seen: PageValidator, changed: bool
) -> None:
    assert is_changed(known, seen) is changed


def test_a_root_with_serials_queues_new_and_moved_projects_and_removes_the_unlisted() -> None:
    index = root(("A", 5), ("B", 7), serial=9)
    found = diff(
        index,
        root_validators(index),
        known={
            A: PageValidator(serial=Serial(5)),
            B: PageValidator(serial=Serial(6)),
            C: PageValidator(serial=Serial(2)),
        },
        held=[A, B, C],
        mirror_serial=Serial(6),
    )
    assert found.changes.projects == {B: 7, C: 0}
    assert found.changes.display_names == {B: "B"}
    assert found.changes.serial == 9
    assert found.record == {B: PageValidator(serial=Serial(7))}
    assert found.forget == (C,)


def test_pages_without_serials_queue_at_serial_zero_and_the_serial_holds() -> None:
    index = root(("A", None), ("B", None))
    seen = {A: PageValidator(etag='"1"'), B: PageValidator(etag='"2"')}
    found = diff(index, seen, known={A: PageValidator(etag='"1"')}, held=[A], mirror_serial=None)
    assert found.changes.projects == {B: 0}
    assert found.changes.serial == 0
    assert found.record == {B: PageValidator(etag='"2"')}
    assert found.forget == ()
    unseen = diff(index, {}, known={}, held=[], mirror_serial=Serial(4))
    assert unseen.changes.projects == {A: 0, B: 0}, "a page not read counts as changed"
    assert unseen.changes.serial == 4


def test_the_root_parser_reads_names_serials_and_skips_what_no_project_could_be() -> None:
    parsed = SimpleRoot.from_json(
        {
            "meta": {"_last-serial": "12", "api-version": "1.1"},
            "projects": [
                {"name": "Gamma.Lib", "_last-serial": 3},
                {"name": "gamma-lib", "_last-serial": 4},
                {"name": "../etc"},
                {"name": "beta", "_last-serial": "7"},
                {"name": "delta", "_last-serial": None},
            ],
        }
    )
    assert parsed.projects == (
        ("gamma-lib", "Gamma.Lib", 3),
        ("beta", "beta", 7),
        ("delta", "delta", None),
    )
    assert (parsed.serial, parsed.skipped, parsed.has_serials) == (12, 1, False)
    bare = SimpleRoot.from_json({"projects": [{"name": "a", "_last-serial": 1}]})
    assert (bare.serial, bare.has_serials) == (None, True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "projects: missing"),
        ({"projects": {}}, "projects: expected an array"),
        ({"projects": [{"name": 3}]}, r"projects\[0\].name: expected a string"),
        ({"projects": [{"name": "a", "_last-serial": "x"}]}, "expected an integer"),
        ({"meta": {"_last-serial": -1}, "projects": []}, "must not be negative"),
    ],
)
def test_a_malformed_root_names_the_key_path(data: object, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message):
        SimpleRoot.from_json(data)
