"""Parsing upstream data at the boundary: records, key paths in errors, safe paths."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from mirror.errors import MalformedResponseError, UnsafePathError
from mirror.models import (
    ChangelogEntry,
    ProjectDetail,
    ProjectStatus,
    Serial,
    changed_projects,
    format_upload_time,
    package_path_from_url,
    project_name,
    version_sort_key,
)

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_M = "c" * 64
BASE = "https://files.example.org/packages/ab/cd/" + "e" * 60


def simple_page() -> dict[str, Any]:
    """A PEP 691 page as Warehouse writes it (api-version 1.4)."""
    return {
        "files": [
            {
                "core-metadata": False,
                "data-dist-info-metadata": False,
                "filename": "demo-1.0.tar.gz",
                "hashes": {"sha256": SHA_A},
                "provenance": None,
                "requires-python": None,
                "size": 10,
                "upload-time": "2015-06-14T14:37:56.383366Z",
                "url": f"{BASE}/demo-1.0.tar.gz",
                "yanked": "broken <build>",
            },
            {
                "core-metadata": {"sha256": SHA_M},
                "data-dist-info-metadata": {"sha256": SHA_M},
                "filename": "demo-2.0-py3-none-any.whl",
                "hashes": {"sha256": SHA_B.upper()},
                "provenance": "https://index.example.org/integrity/demo/2.0/x/provenance",
                "requires-python": ">=3.9",
                "size": 20,
                "upload-time": "2024-11-06T22:37:09Z",
                "url": "../../packages/ab/cd/ef/demo-2.0-py3-none-any.whl",
                "yanked": False,
            },
        ],
        "meta": {"_last-serial": 42, "api-version": "1.4"},
        "name": "demo",
        "project-status": {"status": "archived", "reason": "moved"},
        "versions": ["2.0", "1.0"],
    }


def parse(data: object, serial: int | None = None) -> ProjectDetail:
    return ProjectDetail.from_simple_json(
        data,
        name=canonicalize_name("demo"),
        page_url="https://index.example.org/simple/demo/",
        serial=Serial(serial) if serial is not None else None,
    )


class TestSimpleJson:
    def test_parses_every_field_warehouse_sends(self) -> None:
        detail = parse(simple_page())
        assert detail.serial == 42
        assert detail.versions == ("1.0", "2.0")
        assert detail.status == ProjectStatus(status="archived", reason="moved")
        sdist, wheel = detail.files
        assert sdist.yanked is True
        assert sdist.yanked_reason == "broken <build>"
        assert sdist.core_metadata is False
        assert sdist.upload_time == datetime(2015, 6, 14, 14, 37, 56, 383366, tzinfo=UTC)
        assert sdist.path == f"packages/ab/cd/{'e' * 60}/demo-1.0.tar.gz"
        assert wheel.sha256 == SHA_B, "hex digests are normalised to lower case"
        assert wheel.core_metadata is True
        assert wheel.core_metadata_sha256 == SHA_M
        assert wheel.requires_python == ">=3.9"
        assert wheel.provenance is not None
        assert wheel.url == (
            "https://index.example.org/packages/ab/cd/ef/demo-2.0-py3-none-any.whl"
        ), "relative file URLs resolve against the page URL"
        assert wheel.metadata_path == "packages/ab/cd/ef/demo-2.0-py3-none-any.whl.metadata"
        assert wheel.metadata_url == wheel.url + ".metadata"

    def test_header_serial_is_used_when_the_body_has_none(self) -> None:
        page = simple_page()
        del page["meta"]
        assert parse(page, serial=7).serial == 7

    def test_no_serial_anywhere_is_malformed(self) -> None:
        page = simple_page()
        del page["meta"]
        with pytest.raises(MalformedResponseError, match="_last-serial"):
            parse(page)

    def test_pre_pep700_page_gets_versions_from_filenames(self) -> None:
        page = simple_page()
        del page["versions"]
        page["files"].append({**page["files"][0], "filename": "odd.exe", "url": f"{BASE}/odd.exe"})
        assert parse(page).versions == ("1.0", "2.0")

    def test_status_defaults_to_active(self) -> None:
        page = simple_page()
        del page["project-status"]
        assert parse(page).status == ProjectStatus()

    def test_status_without_reason(self) -> None:
        page = simple_page()
        page["project-status"] = {"status": "quarantined"}
        assert parse(page).status == ProjectStatus(status="quarantined")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, (True, None)),
            ({"sha256": SHA_M}, (True, SHA_M)),
            ({"md5": "0" * 32}, (True, None)),
            (False, (False, None)),
            (None, (False, None)),
        ],
    )
    def test_core_metadata_forms(self, value: object, expected: tuple[bool, str | None]) -> None:
        page = simple_page()
        page["files"][1]["core-metadata"] = value
        wheel = parse(page).files[1]
        assert (wheel.core_metadata, wheel.core_metadata_sha256) == expected

    def test_legacy_metadata_keys_are_read_when_core_metadata_is_absent(self) -> None:
        page = simple_page()
        entry = page["files"][1]
        del entry["core-metadata"]
        assert parse(page).files[1].core_metadata_sha256 == SHA_M
        del entry["data-dist-info-metadata"]
        entry["dist-info-metadata"] = True
        assert parse(page).files[1].core_metadata is True

    @pytest.mark.parametrize(
        ("value", "expected"),
        [(True, (True, "")), ("why", (True, "why")), ("", (False, "")), (False, (False, ""))],
    )
    def test_yanked_forms(self, value: object, expected: tuple[bool, str]) -> None:
        page = simple_page()
        page["files"][0]["yanked"] = value
        sdist = parse(page).files[0]
        assert (sdist.yanked, sdist.yanked_reason) == expected

    @pytest.mark.parametrize(
        ("mutate", "key_path"),
        [
            (lambda p: p["files"][1]["hashes"].pop("sha256"), "files[1].hashes.sha256: missing"),
            (lambda p: p["files"][1]["hashes"].update(sha256="xyz"), "files[1].hashes.sha256"),
            (lambda p: p["files"][0].update(size="10"), "files[0].size: expected an integer"),
            (lambda p: p["files"][0].update(size=True), "files[0].size: expected an integer"),
            (lambda p: p["files"][0].update(size=-1), "files[0].size: must not be negative"),
            (lambda p: p["files"][0].update(yanked=3), "files[0].yanked: expected bool"),
            (lambda p: p.update(files={}), "files: expected an array"),
            (lambda p: p["files"][0].update(**{"upload-time": "yesterday"}), "upload-time"),
            (lambda p: p.update(name="other"), "name: expected 'demo'"),
            (lambda p: p["files"][0].update(filename=7), "files[0].filename: expected a string"),
            (lambda p: p["files"][1].update(**{"core-metadata": 5}), "files[1].core-metadata"),
            (lambda p: p["files"].append(p["files"][0]), "advertised twice"),
        ],
    )
    def test_errors_name_the_key_path(self, mutate: Any, key_path: str) -> None:
        page = copy.deepcopy(simple_page())
        mutate(page)
        with pytest.raises(MalformedResponseError, match=key_path.replace("[", r"\[")):
            parse(page)

    def test_not_an_object_at_all(self) -> None:
        with pytest.raises(MalformedResponseError, match=r"\(root\): expected an object"):
            parse(["files"])

    def test_unsafe_url_names_the_file(self) -> None:
        page = simple_page()
        page["files"][0]["url"] = "https://x.org/packages/../../etc/demo-1.0.tar.gz"
        with pytest.raises(UnsafePathError, match=r"files\[0\]\.url"):
            parse(page)

    def test_unknown_keys_are_ignored(self) -> None:
        page = simple_page()
        page["alternate-locations"] = []
        page["files"][0]["gpg-sig"] = False
        assert len(parse(page).files) == 2


def pypi_json() -> dict[str, Any]:
    def file(filename: str, sha: str, *, yanked: bool = False) -> dict[str, Any]:
        return {
            "filename": filename,
            "url": f"{BASE}/{filename}",
            "digests": {"sha256": sha, "md5": "0" * 32, "blake2b_256": "1" * 64},
            "size": 5,
            "upload_time": "2020-01-01T00:00:00",
            "upload_time_iso_8601": "2020-01-01T00:00:00.5Z",
            "requires_python": "",
            "yanked": yanked,
            "yanked_reason": "bad" if yanked else None,
            "packagetype": "sdist",
        }

    return {
        "info": {"name": "Demo", "version": "10.0"},
        "last_serial": 99,
        "releases": {
            "10.0": [file("demo-10.0.tar.gz", SHA_A)],
            "9.0": [file("demo-9.0.tar.gz", SHA_B, yanked=True)],
            "0.1": [],
            "weird-legacy": [file("demo-weird-legacy.zip", SHA_M)],
        },
        "urls": [],
    }


class TestPypiJson:
    def test_files_in_version_order_and_empty_releases_dropped(self) -> None:
        detail = ProjectDetail.from_pypi_json(
            pypi_json(), name=canonicalize_name("demo"), page_url="https://x.org/pypi/demo/json"
        )
        assert detail.display_name == "Demo"
        assert detail.serial == 99
        assert [f.filename for f in detail.files] == [
            "demo-weird-legacy.zip",
            "demo-9.0.tar.gz",
            "demo-10.0.tar.gz",
        ]
        assert detail.versions == ("weird-legacy", "9.0", "10.0")
        yanked = detail.files[1]
        assert (yanked.yanked, yanked.yanked_reason) == (True, "bad")
        assert detail.files[0].requires_python is None, "an empty requires_python means none"
        assert detail.files[0].core_metadata is False

    def test_core_metadata_from_the_2026_key(self) -> None:
        data = pypi_json()
        data["releases"]["10.0"][0]["core-metadata"] = {"sha256": SHA_M}
        detail = ProjectDetail.from_pypi_json(data, name=canonicalize_name("demo"), page_url="x")
        assert detail.files[-1].core_metadata_sha256 == SHA_M

    def test_wrong_project_is_malformed(self) -> None:
        with pytest.raises(MalformedResponseError, match=r"info\.name"):
            ProjectDetail.from_pypi_json(pypi_json(), name=canonicalize_name("other"), page_url="")


@pytest.mark.parametrize(
    ("url", "filename", "expected"),
    [
        (
            f"{BASE}/demo-1.0.tar.gz",
            "demo-1.0.tar.gz",
            f"packages/ab/cd/{'e' * 60}/demo-1.0.tar.gz",
        ),
        (
            "https://h/packages/source/r/requests/requests-2.0.tar.gz",
            "requests-2.0.tar.gz",
            "packages/source/r/requests/requests-2.0.tar.gz",
        ),
        ("https://h/prefix/packages/a/b/c/f%2Bx.whl", "f+x.whl", "packages/a/b/c/f+x.whl"),
        ("https://h/packages/a/b/c/f.whl?x=1#sha256=0", "f.whl", "packages/a/b/c/f.whl"),
    ],
)
def test_package_path_from_a_safe_url(url: str, filename: str, expected: str) -> None:
    assert package_path_from_url(url, filename=filename) == expected


@pytest.mark.parametrize(
    ("url", "filename"),
    [
        ("https://h/files/a/b/c/f.whl", "f.whl"),
        ("https://h/packages/a/b/f.whl", "f.whl"),
        ("https://h/packages/a/../c/f.whl", "f.whl"),
        ("https://h/packages/a/%2e%2e/c/f.whl", "f.whl"),
        ("https://h/packages/a/b/c/..", ".."),
        ("https://h/packages/a/b/c/x%2Ff.whl", "x/f.whl"),
        ("https://h/packages/a/b/c/x%5Cf.whl", "x\\f.whl"),
        ("https://h/packages/a/b/c/x%00f.whl", "x\x00f.whl"),
        ("https://h/packages/a//c/f.whl", "f.whl"),
        ("https://h/packages/a/b/c/other.whl", "f.whl"),
        ("https://h/packages/a/b/c/x%0af.whl", "x\nf.whl"),
    ],
)
def test_package_path_refuses_unsafe_urls(url: str, filename: str) -> None:
    with pytest.raises(UnsafePathError):
        package_path_from_url(url, filename=filename)


def test_changelog_row_parsing() -> None:
    entry = ChangelogEntry.from_row(["Foo", None, 1, "create", 5], index=0)
    assert entry == ChangelogEntry(
        name="Foo", version=None, timestamp=1, action="create", serial=Serial(5)
    )
    with pytest.raises(MalformedResponseError, match=r"\[3\]: expected 5 values"):
        ChangelogEntry.from_row(["Foo", None, 1, "create"], index=3)
    with pytest.raises(MalformedResponseError, match=r"\[0\]: expected an array"):
        ChangelogEntry.from_row("Foo", index=0)


def test_changed_projects_keeps_the_highest_serial_per_normalized_name() -> None:
    rows = [
        ChangelogEntry(
            name="Foo_Bar", version="1", timestamp=0, action="new release", serial=Serial(3)
        ),
        ChangelogEntry(name="foo.bar", version="1", timestamp=0, action="remove", serial=Serial(9)),
        ChangelogEntry(name="FOO-BAR", version="1", timestamp=0, action="x", serial=Serial(4)),
        ChangelogEntry(name="", version="", timestamp=0, action="keyrotate ", serial=Serial(10)),
        ChangelogEntry(name="baz", version=None, timestamp=0, action="create", serial=Serial(1)),
    ]
    assert changed_projects(rows) == {"foo-bar": 9, "baz": 1}


def test_project_name_normalizes_and_refuses_impossible_names() -> None:
    assert project_name("Zope.Interface") == "zope-interface"
    normalized = "".join(["zope-", "interface"])
    assert project_name(normalized) is normalized, "no copy of an already normal name"
    for bad in ["", "../etc", "a/b", "-lead", "sp ace", "é"]:
        with pytest.raises(MalformedResponseError):
            project_name(bad)


def test_version_sort_key_puts_legacy_versions_first() -> None:
    versions = ["1.10", "1.9", "banana", "1.0rc1", "2!0.1", "1.0"]
    assert sorted(versions, key=version_sort_key) == [
        "banana",
        "1.0rc1",
        "1.0",
        "1.9",
        "1.10",
        "2!0.1",
    ]


def test_format_upload_time_matches_warehouse() -> None:
    assert format_upload_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert (
        format_upload_time(datetime(2024, 1, 2, 3, 4, 5, 120, tzinfo=UTC))
        == "2024-01-02T03:04:05.000120Z"
    )
