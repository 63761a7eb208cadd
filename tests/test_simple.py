"""Rendering simple pages: exact bytes against golden files, and what clients read back.

The golden files under ``tests/data/simple/`` pin Warehouse's markup byte for byte
(with the deliberate differences listed in :mod:`mirror.simple`). To regenerate them
after an intended change, run ``MIRROR_REGEN_GOLDENS=1 python -m pytest
tests/test_simple.py``, which rewrites the files and fails, then review the diff by eye
against ``research/protocol.md`` §3.4-3.6 before keeping it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from packaging.utils import canonicalize_name

from mirror.models import (
    DistFile,
    ListedProject,
    ProjectDetail,
    ProjectStatus,
    Serial,
    package_path_from_url,
)
from mirror.simple import (
    API_VERSION,
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
)

GOLDEN_DIR = Path(__file__).parent / "data" / "simple"
REGENERATE = os.environ.get("MIRROR_REGEN_GOLDENS") == "1"
MIRROR = "https://mirror.example.org"
FILES_HOST = "https://files.example.org"


# --- building records --------------------------------------------------------------


def dist(
    filename: str,
    *,
    url: str | None = None,
    size: int = 1000,
    upload_time: datetime | None = datetime(2024, 11, 6, 22, 37, 9, 220617, tzinfo=UTC),
    requires_python: str | None = None,
    yanked: bool = False,
    yanked_reason: str = "",
    core_metadata_sha256: str | None = None,
    core_metadata: bool | None = None,
    provenance: str | None = None,
    provenance_kept: bool | None = None,
    sha256: str | None = None,
) -> DistFile:
    """A file as the models' parsers would build it, at a content-addressed path, as
    the plan publishes it (a provenance given is held, unless ``provenance_kept``)."""
    if url is None:
        b = hashlib.blake2b(filename.encode(), digest_size=32).hexdigest()
        url = f"{FILES_HOST}/packages/{b[:2]}/{b[2:4]}/{b[4:]}/{quote(filename)}"
    return DistFile(
        filename=filename,
        url=url,
        path=package_path_from_url(url, filename=filename),
        sha256=sha256 or hashlib.sha256(filename.encode()).hexdigest(),
        size=size,
        upload_time=upload_time,
        requires_python=requires_python,
        yanked=yanked,
        yanked_reason=yanked_reason,
        core_metadata=core_metadata if core_metadata is not None else bool(core_metadata_sha256),
        core_metadata_sha256=core_metadata_sha256,
        provenance=provenance,
        provenance_kept=bool(provenance) if provenance_kept is None else provenance_kept,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One project page pinned by a golden file pair."""

    id: str
    display_name: str
    detail: ProjectDetail


def project(
    display_name: str,
    files: tuple[DistFile, ...],
    versions: tuple[str, ...],
    *,
    serial: int = 100,
    status: ProjectStatus | None = None,
) -> ProjectDetail:
    return ProjectDetail(
        name=canonicalize_name(display_name),
        serial=Serial(serial),
        files=files,
        versions=versions,
        status=status or ProjectStatus(),
    )


METADATA_SHA = "5" * 64

CASES = [
    # The example of protocol.md §3.4/§3.6, with the same hashes, paths and times.
    Case(
        id="sampleproject",
        display_name="sampleproject",
        detail=project(
            "sampleproject",
            (
                dist(
                    "sampleproject-1.2.0.tar.gz",
                    url="https://files.pythonhosted.org/packages/eb/45/79be82bdeafcecb9dca474cad4003e32ef8e4a0dec6abbd4145ccb02abe1/sampleproject-1.2.0.tar.gz",
                    sha256="3427a8a5dd0c1e176da48a44efb410875b3973bd9843403a0997e4187c408dc1",
                    size=3148,
                    upload_time=datetime(2015, 6, 14, 14, 37, 56, 383366, tzinfo=UTC),
                    yanked=True,
                    yanked_reason="broken <build>",
                ),
                dist(
                    "sampleproject-4.0.0-py3-none-any.whl",
                    url="https://files.pythonhosted.org/packages/d7/73/c16e5f3f0d37c60947e70865c255a58dc408780a6474de0523afd0ec553a/sampleproject-4.0.0-py3-none-any.whl",
                    sha256="c23e447ea90d796d1e645c35c4b2de125040add12a845825546f91c93f391b6b",
                    size=4661,
                    upload_time=datetime(2024, 11, 6, 22, 37, 9, 220617, tzinfo=UTC),
                    requires_python=">=3.9",
                    core_metadata_sha256=METADATA_SHA,
                    provenance="https://pypi.org/integrity/sampleproject/4.0.0/sampleproject-4.0.0-py3-none-any.whl/provenance",
                ),
                dist(
                    "sampleproject-4.0.0.tar.gz",
                    url="https://files.pythonhosted.org/packages/48/8c/c18d25735962870ccb6d1cd2ac7bde40008a332211055e260cb7ec4c6bab/sampleproject-4.0.0.tar.gz",
                    sha256="0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b",
                    size=5760,
                    upload_time=datetime(2024, 11, 6, 22, 37, 10, 868088, tzinfo=UTC),
                    requires_python=">=3.9",
                ),
            ),
            ("1.2.0", "4.0.0"),
            serial=25862117,
        ),
    ),
    # Escaping: every character MarkupSafe escapes, in attributes, text and title;
    # a yank without a reason; metadata advertised without a known hash; a display
    # name that differs from the normalized one.
    Case(
        id="escapes",
        display_name="Esc.Apes_Demo",
        detail=project(
            "Esc.Apes_Demo",
            (
                dist(
                    "Esc.Apes_Demo-1.0.tar.gz",
                    requires_python=""">=3.8, <4, !='3.9.*' & "x\"""",
                    yanked=True,
                ),
                dist(
                    "Esc.Apes_Demo-1.1-py3-none-any.whl",
                    requires_python=">=3.8",
                    yanked=True,
                    yanked_reason="CVE-2024-0001: use >=1.2 & <2 — \"really\" 'now' ✓",
                    core_metadata=True,
                ),
                dist(
                    "Esc.Apes_Demo-1.2-py3-none-any.whl",
                    upload_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                    core_metadata_sha256=METADATA_SHA,
                    provenance="https://pypi.org/integrity/esc-apes-demo/1.2/x.whl/provenance?a=1&b=2",
                ),
            ),
            ("1.0", "1.1", "1.2"),
            serial=7,
        ),
    ),
    # Legacy and odd data: a non-PEP 440 version, epochs (`!`), local versions (`+`),
    # a space and non-ASCII in filenames, the pre-2016 `packages/source/...` layout, and
    # an unknown upload time. Versions arrive unsorted and duplicated.
    Case(
        id="legacy",
        display_name="legacy",
        detail=project(
            "legacy",
            (
                dist(
                    "legacy-2004d.tar.gz",
                    url=f"{FILES_HOST}/packages/source/l/legacy/legacy-2004d.tar.gz",
                    upload_time=None,
                ),
                dist("legacy-0.9 (final).zip", upload_time=None),
                dist("légacy-1.0.tar.gz"),
                dist("legacy-1!2.0+local.1-py3-none-any.whl", requires_python=">=3.8"),
                dist("legacy-1!2.0+local.1.tar.gz"),
            ),
            ("1!2.0+local.1", "1.0", "2004d", "0.9", "1.0"),
            serial=123456789,
        ),
    ),
    # PEP 792: a quarantined project offers no files and publishes its reason.
    Case(
        id="quarantined",
        display_name="Quarantined",
        detail=project(
            "Quarantined",
            (),
            (),
            serial=55,
            status=ProjectStatus(status="quarantined", reason="malware <reported> & confirmed"),
        ),
    ),
    # A project without files (all releases deleted): still a page, with no anchors.
    Case(id="empty", display_name="empty", detail=project("empty", (), (), serial=0)),
]

ROOT_PROJECTS = [
    ListedProject(name=canonicalize_name("Django"), display_name="Django", serial=Serial(3900)),
    ListedProject(
        name=canonicalize_name("zope.interface"), display_name="zope.interface", serial=Serial(12)
    ),
    ListedProject(
        name=canonicalize_name("0-._.-._.-0"), display_name="0-._.-._.-0", serial=Serial(14)
    ),
    ListedProject(name=canonicalize_name("0"), display_name="0", serial=Serial(3075854)),
    ListedProject(name=canonicalize_name("a.b"), display_name="A.B", serial=Serial(1)),
    ListedProject(name=canonicalize_name("a"), display_name="a", serial=Serial(2)),
]
ROOT_SERIAL = Serial(39896061)


# --- golden files ------------------------------------------------------------------


def check_golden(name: str, body: bytes) -> None:
    """Compare ``body`` with the golden file; with MIRROR_REGEN_GOLDENS=1 rewrite it and fail."""
    path = GOLDEN_DIR / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        pytest.fail(f"regenerated {path}; review it and rerun without MIRROR_REGEN_GOLDENS")
    assert path.exists(), f"missing golden file {path}; run with MIRROR_REGEN_GOLDENS=1"
    assert body == path.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_project_html_matches_golden_bytes(case: Case) -> None:
    check_golden(
        f"{case.id}.html", render_project_html(case.detail, display_name=case.display_name)
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_project_json_matches_golden_bytes(case: Case) -> None:
    check_golden(f"{case.id}.json", render_project_json(case.detail))


def test_root_html_matches_golden_bytes() -> None:
    check_golden("root.html", render_root_html(ROOT_PROJECTS))


def test_root_json_matches_golden_bytes() -> None:
    check_golden("root.json", render_root_json(ROOT_PROJECTS, serial=ROOT_SERIAL))


# --- reading pages back as clients do ------------------------------------------------


class ParsedPage(HTMLParser):
    """What pip's and uv's HTML parsers take from a page: metas, title and anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.metas: dict[str, str] = {}
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.title = ""
        self._tag: str | None = None
        self._text: list[str] = []
        self._attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name"):
            self.metas[str(values["name"])] = str(values["content"])
        elif tag in {"a", "title"}:
            self._tag, self._attrs, self._text = tag, values, []

    def handle_data(self, data: str) -> None:
        if self._tag is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != self._tag:
            return
        if tag == "a":
            self.anchors.append((self._attrs, "".join(self._text)))
        else:
            self.title = "".join(self._text)
        self._tag = None


def parse_html(body: bytes) -> ParsedPage:
    page = ParsedPage()
    page.feed(body.decode("utf-8"))
    page.close()
    return page


def page_url(detail: ProjectDetail) -> str:
    return f"{MIRROR}/simple/{detail.name}/"


def pip_requote(url: str) -> str:
    """pip's ``_ensure_quoted_url`` for a path without ``@``: unquote, re-quote each part."""
    return "/".join(quote(unquote(part)) for part in url.split("/"))


def web_path(absolute_url: str) -> str:
    """The decoded path below the mirror's ``web/`` directory a URL points at."""
    path = urlsplit(absolute_url).path
    assert path.startswith("/packages/")
    return "/".join(unquote(part) for part in path.removeprefix("/").split("/"))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_html_anchors_lead_clients_to_each_file_and_its_hash(case: Case) -> None:
    detail = case.detail
    page = parse_html(render_project_html(detail, display_name=case.display_name))
    assert page.title == f"Links for {case.display_name}"
    assert page.metas["pypi:repository-version"] == API_VERSION
    assert page.metas["pypi:project-status"] == detail.status.status
    assert page.metas.get("pypi:project-status-reason") == detail.status.reason
    assert len(page.anchors) == len(detail.files)
    for (attrs, text), expected in zip(page.anchors, detail.files, strict=True):
        href = attrs["href"]
        assert href is not None
        location, _, fragment = href.partition("#")
        assert fragment == f"sha256={expected.sha256}"
        assert pip_requote(location) == location, "pip's re-quoting leaves the href as is"
        assert web_path(urljoin(page_url(detail), location)) == expected.path
        assert unquote(location.rsplit("/", 1)[1]) == expected.filename, "uv's filename"
        assert text == expected.filename
        assert attrs.get("data-requires-python") == expected.requires_python
        # pip: yanked is "attribute present", with the value as the reason.
        assert attrs.get("data-yanked") == (expected.yanked_reason if expected.yanked else None)
        metadata = None
        if expected.core_metadata:
            metadata = f"sha256={expected.core_metadata_sha256}"
            if expected.core_metadata_sha256 is None:
                metadata = "true"
        assert attrs.get("data-core-metadata") == metadata
        assert attrs.get("data-dist-info-metadata") == metadata
        provenance = attrs.get("data-provenance")
        if expected.provenance_kept:
            # The mirror's copy, beside the file, never upstream's.
            assert provenance is not None
            assert web_path(urljoin(page_url(detail), provenance)) == expected.provenance_path
        else:
            assert provenance is None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_json_page_reads_back_to_the_same_project(case: Case) -> None:
    detail = case.detail
    body = render_project_json(detail)
    data = json.loads(body)
    assert data["meta"] == {"_last-serial": detail.serial, "api-version": API_VERSION}
    parsed = ProjectDetail.from_simple_json(
        data, name=detail.name, page_url=page_url(detail), serial=None
    )
    assert parsed.serial == detail.serial
    assert parsed.status == detail.status
    assert list(parsed.versions) == data["versions"]
    assert set(parsed.versions) == set(detail.versions)
    assert len(parsed.files) == len(detail.files)
    for got, expected in zip(parsed.files, detail.files, strict=True):
        assert got.url == urljoin(page_url(detail), "../../" + quote(expected.path))
        if expected.provenance_kept:
            assert got.provenance is not None
            assert web_path(got.provenance) == expected.provenance_path
        else:
            assert got.provenance is None
        assert got == replace(
            expected, url=got.url, provenance=got.provenance, provenance_kept=False
        )


def test_json_file_entries_have_exactly_warehouses_keys() -> None:
    data = json.loads(render_project_json(CASES[0].detail))
    keys = {
        "core-metadata",
        "data-dist-info-metadata",
        "filename",
        "hashes",
        "provenance",
        "requires-python",
        "size",
        "upload-time",
        "url",
        "yanked",
    }
    assert [set(entry) for entry in data["files"]] == [keys] * 3, "never dist-info-metadata"


def test_json_leaves_out_an_unknown_upload_time() -> None:
    data = json.loads(render_project_json(project("p", (dist("p-1.zip", upload_time=None),), ())))
    assert "upload-time" not in data["files"][0]


@pytest.mark.parametrize(
    ("yanked", "reason", "expected"),
    [(False, "", False), (True, "", True), (True, "bad build", "bad build")],
)
def test_json_yanked_is_false_true_or_the_reason(
    yanked: bool, reason: str, expected: bool | str
) -> None:
    detail = project("p", (dist("p-1.zip", yanked=yanked, yanked_reason=reason),), ())
    assert json.loads(render_project_json(detail))["files"][0]["yanked"] == expected


def test_a_provenance_the_mirror_does_not_hold_is_never_linked() -> None:
    upstreams = "https://pypi.org/integrity/p/1/p-1.zip/provenance"
    detail = project("p", (dist("p-1.zip", provenance=upstreams, provenance_kept=False),), ())
    assert b"provenance" not in render_project_html(detail, display_name="p")
    assert json.loads(render_project_json(detail))["files"][0]["provenance"] is None


def test_empty_strings_mean_absent_in_both_formats() -> None:
    """An empty requires-python or provenance is left out of HTML and null in JSON."""
    detail = project("p", (dist("p-1.zip", requires_python="", provenance=""),), ())
    html = render_project_html(detail, display_name="p")
    assert b"data-requires-python" not in html
    assert b"data-provenance" not in html
    entry = json.loads(render_project_json(detail))["files"][0]
    assert entry["requires-python"] is None
    assert entry["provenance"] is None


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (("2.0", "1.0", "10.0", "1.0"), ["1.0", "2.0", "10.0"]),
        (
            ("1!1.0", "2.0", "foo-bar", "1.0rc1", "2004d"),
            ["2004d", "foo-bar", "1.0rc1", "2.0", "1!1.0"],
        ),
        (("1.0.0", "1.0", "1.0.0.0"), ["1.0", "1.0.0", "1.0.0.0"]),
        (("1.0.0.0", "1.0", "1.0.0"), ["1.0", "1.0.0", "1.0.0.0"]),
    ],
)
def test_json_versions_are_unique_in_pep440_order_whatever_the_input(
    versions: tuple[str, ...], expected: list[str]
) -> None:
    """Legacy versions sort first; equal versions spelled differently sort by text."""
    data = json.loads(render_project_json(project("p", (), versions)))
    assert data["versions"] == expected


def test_json_keeps_non_ascii_as_utf8() -> None:
    detail = project("p", (dist("p-1.zip", yanked=True, yanked_reason="naïve ✓"),), ())
    assert '"yanked":"naïve ✓"'.encode() in render_project_json(detail)


# --- root index --------------------------------------------------------------------


def root_order() -> list[ListedProject]:
    return sorted(ROOT_PROJECTS, key=lambda p: p.name)


def test_root_html_links_every_project_relatively_in_normalized_order() -> None:
    page = parse_html(render_root_html(ROOT_PROJECTS))
    assert page.title == "Simple index"
    assert page.metas == {"pypi:repository-version": API_VERSION}
    assert [(attrs["href"], text) for attrs, text in page.anchors] == [
        (f"{p.name}/", p.display_name) for p in root_order()
    ]


def test_root_json_lists_display_names_and_serials_in_normalized_order() -> None:
    data = json.loads(render_root_json(ROOT_PROJECTS, serial=ROOT_SERIAL))
    assert data["meta"] == {"_last-serial": ROOT_SERIAL, "api-version": API_VERSION}
    assert data["projects"] == [
        {"_last-serial": p.serial, "name": p.display_name} for p in root_order()
    ]


@pytest.mark.parametrize(
    "render",
    [render_root_html, lambda projects: render_root_json(projects, serial=ROOT_SERIAL)],
    ids=["html", "json"],
)
def test_root_accepts_a_one_shot_iterator(
    render: Callable[[Iterator[ListedProject]], bytes],
) -> None:
    assert render(iter(ROOT_PROJECTS)) == render(iter(reversed(ROOT_PROJECTS)))


def test_root_json_is_what_a_whole_document_dump_gives() -> None:
    """The hand-built root JSON equals Warehouse's json-with-newline serialization."""
    odd = [
        ListedProject(name=canonicalize_name("q"), display_name='q"\\\n\u2028é', serial=Serial(3))
    ]
    expected = {
        "meta": {"_last-serial": 9, "api-version": API_VERSION},
        "projects": [{"_last-serial": 3, "name": 'q"\\\n\u2028é'}],
    }
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert render_root_json(odd, serial=Serial(9)) == f"{text}\n".encode()


def test_empty_root_index() -> None:
    assert render_root_html([]).endswith(b"  <body>\n</body>\n</html>")
    assert render_root_json([], serial=Serial(0)) == (
        b'{"meta":{"_last-serial":0,"api-version":"1.4"},"projects":[]}\n'
    )
