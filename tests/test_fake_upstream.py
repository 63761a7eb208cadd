"""The fake PyPI (mirror.testing) over real loopback HTTP: journal, XML-RPC, JSON API,
simple API negotiation and shapes, files, fault hooks, distributions, corpus, CLI."""

from __future__ import annotations

import asyncio
import base64
import csv
import email.parser
import gzip
import hashlib
import importlib.util
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import xmlrpc.client
import zipfile
import zipimport
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from packaging.utils import canonicalize_name

from mirror.models import ChangelogEntry, ProjectDetail, Serial, package_path_from_url
from mirror.testing import (
    FakeUpstream,
    FaultPlan,
    distributions,
    generate_corpus,
    make_sdist,
    make_wheel,
    negotiate,
)
from mirror.testing.__main__ import ServeOptions, main, parse_options, serve
from mirror.testing.corpus import wheel_tag
from mirror.testing.network import CHUNK_BYTES, Network, TokenBucket, parse_bandwidth

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def rpc(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    *params: int | str | bool,
    path: str = "/pypi",
) -> object:
    body = xmlrpc.client.dumps(params, method)
    headers = {"Content-Type": "text/xml"}
    async with session.post(f"{url}{path}", data=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/xml"
        result: object = xmlrpc.client.loads(await resp.read(), use_builtin_types=True)[0][0]
        return result


async def get(
    session: aiohttp.ClientSession, url: str, accept: str | None = None
) -> tuple[aiohttp.ClientResponse, bytes]:
    headers = {"Accept": accept} if accept is not None else {}
    async with session.get(url, headers=headers, allow_redirects=False) as resp:
        return resp, await resp.read()


async def simple_detail(
    session: aiohttp.ClientSession, fake: FakeUpstream, name: str
) -> ProjectDetail:
    page_url = f"{fake.base_url}/simple/{name}/"
    resp, body = await get(session, page_url, JSON_TYPE)
    assert resp.status == 200
    return ProjectDetail.from_simple_json(
        json.loads(body),
        name=canonicalize_name(name),
        page_url=page_url,
        serial=Serial(int(resp.headers["X-PyPI-Last-Serial"])),
    )


def seed(fake: FakeUpstream) -> None:
    fake.add_release("Alpha", "1.0")
    fake.add_release("Alpha", "1.1", requires_python=">=3.8,<4")
    fake.add_release("beta.lib", "0.1", requires_dist=["Alpha>=1.0"])
    fake.add_release("gamma", "2.0", wheel=False)


# --- journal and XML-RPC -------------------------------------------------------------


def test_each_journal_row_bumps_the_serial_by_one_and_sets_the_project_serial() -> None:
    fake = FakeUpstream()
    fake.add_release("Alpha", "1.0")
    assert [(e.name, e.version, e.action, e.serial) for e in fake.journal] == [
        ("Alpha", None, "create", 1),
        ("Alpha", "1.0", "new release", 2),
        ("Alpha", "1.0", "add source file alpha-1.0.tar.gz", 3),
        ("Alpha", "1.0", "add py3 file alpha-1.0-py3-none-any.whl", 4),
    ]
    fake.yank("alpha", "1.0", reason="bad")
    fake.unyank("ALPHA", "1.0")
    fake.add_role("alpha", "someone")
    fake.remove_file("alpha", "alpha-1.0.tar.gz")
    fake.remove_release("alpha", "1.0")
    fake.remove_project("alpha")
    assert [e.action for e in fake.journal[4:]] == [
        "yank release",
        "unyank release",
        "add Owner someone",
        "remove file alpha-1.0.tar.gz",
        "remove release",
        "remove project",
    ]
    assert [e.serial for e in fake.journal] == list(range(1, 11))
    assert fake.serial == 10
    assert fake.project_names() == []
    timestamps = [e.timestamp for e in fake.journal]
    assert timestamps == sorted(timestamps)


def test_status_changes_move_no_serial_and_skipped_serials_leave_gaps() -> None:
    fake = FakeUpstream()
    fake.add_release("Alpha", "1.0")
    fake.set_status("alpha", "archived", "done")
    assert fake.serial == 4
    fake.skip_serials(5)
    fake.add_role("alpha", "x")
    assert fake.journal[-1].serial == 10


def test_mutations_reject_unknown_projects_files_and_reused_filenames() -> None:
    fake = FakeUpstream()
    fake.add_release("Alpha", "1.0")
    with pytest.raises(KeyError):
        fake.remove_file("alpha", "nope.tar.gz")
    with pytest.raises(KeyError):
        fake.yank("alpha", "9.9")
    with pytest.raises(KeyError):
        fake.remove_project("nope")
    with pytest.raises(KeyError):
        fake.corrupt_file("alpha", "nope.whl")
    with pytest.raises(KeyError):
        fake.file_url("alpha", "nope.whl")
    with pytest.raises(ValueError, match="previously used"):
        fake.add_file("alpha", "1.0", "alpha-1.0.tar.gz", b"again")
    with pytest.raises(ValueError, match="unusable filename"):
        fake.add_file("alpha", "1.0", "../evil.tar.gz", b"x")
    with pytest.raises(ValueError, match="invalid project name"):
        fake.add_release("-bad-", "1.0")
    fake.remove_project("alpha")
    with pytest.raises(ValueError, match="previously used"):
        fake.add_release("alpha", "1.0")
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url


def test_a_non_loopback_host_is_refused() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        FakeUpstream(host="0.0.0.0")
    with pytest.raises(ValueError, match="non-loopback"):
        FakeUpstream(host="example.org")
    FakeUpstream(host="localhost")
    FakeUpstream(host="::1")


async def test_changelog_pages_by_page_limit_and_rows_parse(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeUpstream(page_limit=3) as fake:
        seed(fake)
        fake.add_file("gamma", "2.0", "gamma-2.0-py3-none-any.whl", b"wheel", upload_time=None)
        fake.remove_file("gamma", "gamma-2.0-py3-none-any.whl")
        assert await rpc(session, fake.base_url, "changelog_last_serial") == fake.serial
        rows: list[ChangelogEntry] = []
        since = 0
        while True:
            page = await rpc(session, fake.base_url, "changelog_since_serial", since)
            assert isinstance(page, list)
            assert len(page) <= 3
            rows.extend(ChangelogEntry.from_row(row, index=i) for i, row in enumerate(page))
            if len(page) < 3:
                break
            since = rows[-1].serial
        assert [r.serial for r in rows] == list(range(1, fake.serial + 1))
        assert rows[0].version is None
        assert rows[0].name == "Alpha"
        assert rows == [
            ChangelogEntry(
                name=e.name,
                version=e.version,
                timestamp=e.timestamp,
                action=e.action,
                serial=Serial(e.serial),
            )
            for e in fake.journal
        ]
        tail = await rpc(session, fake.base_url, "changelog_since_serial", fake.serial - 1)
        assert tail == [["gamma", "2.0", fake.journal[-1].timestamp, rows[-1].action, fake.serial]]


async def test_changelog_actions_are_made_ascii_like_warehouse(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.add_file("oe", "1.0", "oe-1.0-\u00f6.tar.gz", b"x")
    rows = await rpc(session, fake.base_url, "changelog_since_serial", fake.serial - 1)
    assert rows == [
        ["oe", "1.0", fake.journal[-1].timestamp, "add source file oe-1.0-&#246;.tar.gz", 3]
    ]


async def test_list_packages_with_serial_drops_removed_projects_the_changelog_keeps_them(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.remove_project("gamma")
    listing = await rpc(session, fake.base_url, "list_packages_with_serial", path="/RPC2")
    assert listing == {"Alpha": 7, "beta.lib": 11}
    rows = await rpc(session, fake.base_url, "changelog_since_serial", 0)
    assert isinstance(rows, list)
    assert {row[0] for row in rows} == {"Alpha", "beta.lib", "gamma"}
    assert rows[-1] == ["gamma", None, fake.journal[-1].timestamp, "remove project", fake.serial]


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("package_releases", ("alpha",), -32601),
        ("changelog_since_serial", ("12",), -32602),
        ("changelog_since_serial", (True,), -32602),
        ("changelog_since_serial", (), -32602),
        ("changelog_last_serial", (1,), -32602),
        ("list_packages_with_serial", (1,), -32602),
    ],
)
async def test_bad_xmlrpc_calls_answer_faults(
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    method: str,
    params: tuple[int | str | bool, ...],
    code: int,
) -> None:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        await rpc(session, fake.base_url, method, *params)
    assert caught.value.faultCode == code


async def test_an_unparsable_xmlrpc_body_is_a_parse_fault(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{fake.base_url}/pypi/", data=b"<not xml") as resp:
        body = await resp.read()
    with pytest.raises(xmlrpc.client.Fault) as caught:
        xmlrpc.client.loads(body)
    assert caught.value.faultCode == -32700


async def test_an_empty_upstream_reports_serial_zero(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    assert await rpc(session, fake.base_url, "changelog_last_serial") == 0
    assert await rpc(session, fake.base_url, "changelog_since_serial", 0) == []
    assert await rpc(session, fake.base_url, "list_packages_with_serial") == {}


# --- simple API ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("", "text/html"),
        ("text/plain", "text/html"),
        ("*/*", "text/html"),
        (f"text/html, {HTML_TYPE}, {JSON_TYPE}", "text/html"),
        (f"text/html;q=0.01, {HTML_TYPE};q=0.2, {JSON_TYPE}", JSON_TYPE),
        (PIP_ACCEPT, JSON_TYPE),
        (f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01", JSON_TYPE),
        (f"{HTML_TYPE}", HTML_TYPE),
        (f"{JSON_TYPE};q=0, */*;q=0.5", "text/html"),
        (f"application/*;q=0.9, text/html;q=0.5, {HTML_TYPE};q=0.1", JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", "text/html"),
        (f"{JSON_TYPE};q=abc", "text/html"),
        (f" , {JSON_TYPE}", JSON_TYPE),
        (f"text/html;level=1, {JSON_TYPE};level=2;q=0.5", "text/html"),
    ],
)
def test_negotiation_follows_warehouse(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [(None, "text/html"), (PIP_ACCEPT, JSON_TYPE), (HTML_TYPE, HTML_TYPE)],
)
async def test_simple_pages_carry_the_negotiated_type_vary_and_serial(
    fake: FakeUpstream, session: aiohttp.ClientSession, accept: str | None, content_type: str
) -> None:
    seed(fake)
    for path, serial in [("/simple/", fake.serial), ("/simple/alpha/", 7)]:
        resp, _ = await get(session, f"{fake.base_url}{path}", accept)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Vary"] == "Accept"
        assert resp.headers["X-PyPI-Last-Serial"] == str(serial)


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple", "/simple/"),
        ("/simple/Alpha/", "/simple/alpha/"),
        ("/simple/alpha", "/simple/alpha/"),
        ("/simple/beta_lib/?x=1", "/simple/beta-lib/?x=1"),
        ("/pypi/Alpha/json", "/pypi/alpha/json"),
        ("/pypi/Beta.Lib/0.1/json", "/pypi/beta-lib/0.1/json"),
    ],
)
async def test_non_normalized_and_slashless_paths_redirect_permanently(
    fake: FakeUpstream, session: aiohttp.ClientSession, path: str, location: str
) -> None:
    seed(fake)
    resp, _ = await get(session, f"{fake.base_url}{path}")
    assert resp.status == 301
    assert resp.headers["Location"] == location


async def test_simple_root_lists_live_projects_by_display_name(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.remove_project("gamma")
    _, body = await get(session, f"{fake.base_url}/simple/", JSON_TYPE)
    assert body == (
        b'{"meta":{"_last-serial":15,"api-version":"1.4"},"projects":'
        b'[{"_last-serial":7,"name":"Alpha"},{"_last-serial":11,"name":"beta.lib"}]}\n'
    )
    _, html = await get(session, f"{fake.base_url}/simple/")
    assert html.endswith(
        b'<a href="/simple/alpha/">Alpha</a>\n<a href="/simple/beta-lib/">beta.lib</a>\n'
        b"</body>\n</html>"
    )


async def test_simple_json_parses_and_its_files_and_metadata_match_their_hashes(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    detail = await simple_detail(session, fake, "alpha")
    assert detail.serial == 7
    assert detail.versions == ("1.0", "1.1")
    assert [f.filename for f in detail.files] == [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.0.tar.gz",
        "alpha-1.1-py3-none-any.whl",
        "alpha-1.1.tar.gz",
    ]
    assert [f.core_metadata for f in detail.files] == [True, False, True, False]
    assert [f.requires_python for f in detail.files] == [None, None, ">=3.8,<4", ">=3.8,<4"]
    for file in detail.files:
        assert file.url == fake.file_url("alpha", file.filename)
        assert file.upload_time is not None
        resp, body = await get(session, f"{file.url}?cache-buster=1")
        assert resp.status == 200
        assert hashlib.sha256(body).hexdigest() == file.sha256
        assert len(body) == file.size
        assert file.path.split("/")[1] == hashlib.blake2b(body, digest_size=32).hexdigest()[:2]
        if file.core_metadata:
            resp, metadata = await get(session, file.metadata_url)
            assert hashlib.sha256(metadata).hexdigest() == file.core_metadata_sha256
            with zipfile.ZipFile(io.BytesIO(body)) as wheel:
                assert wheel.read(f"alpha-{file.filename[6:9]}.dist-info/METADATA") == metadata
    resp, _ = await get(session, f"{fake.base_url}/packages/aa/bb/cc/nope.whl")
    assert resp.status == 404
    resp, _ = await get(session, f"{detail.files[1].url}.metadata")
    assert resp.status == 404, "sdists get no .metadata"


async def test_simple_html_follows_the_warehouse_template(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.yank("alpha", "1.1", reason="broken <build>")
    detail = await simple_detail(session, fake, "alpha")
    _, html = await get(session, f"{fake.base_url}/simple/alpha/")
    whl, sdist = detail.files[2], detail.files[3]
    meta = whl.core_metadata_sha256
    assert html.decode() == (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "  <head>\n"
        '    <meta name="pypi:repository-version" content="1.4">\n'
        '<meta name="pypi:project-status" content="active">    <title>Links for alpha</title>\n'
        "  </head>\n"
        "  <body>\n"
        "    <h1>Links for alpha</h1>\n"
        f'<a href="{detail.files[0].url}#sha256={detail.files[0].sha256}" '
        f'data-dist-info-metadata="sha256={detail.files[0].core_metadata_sha256}" '
        f'data-core-metadata="sha256={detail.files[0].core_metadata_sha256}"'
        ">alpha-1.0-py3-none-any.whl</a><br />\n"
        f'<a href="{detail.files[1].url}#sha256={detail.files[1].sha256}" '
        ">alpha-1.0.tar.gz</a><br />\n"
        f'<a href="{whl.url}#sha256={whl.sha256}" data-requires-python="&gt;=3.8,&lt;4" '
        'data-yanked="broken &lt;build&gt;" '
        f'data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}"'
        ">alpha-1.1-py3-none-any.whl</a><br />\n"
        f'<a href="{sdist.url}#sha256={sdist.sha256}" data-requires-python="&gt;=3.8,&lt;4" '
        'data-yanked="broken &lt;build&gt;" >alpha-1.1.tar.gz</a><br />\n'
        "</body>\n"
        "</html>\n"
        "<!--SERIAL 15-->"
    )


async def test_yank_and_unyank_show_on_every_page(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.yank("gamma", "2.0")
    detail = await simple_detail(session, fake, "gamma")
    assert [(f.yanked, f.yanked_reason) for f in detail.files] == [(True, "")]
    _, html = await get(session, f"{fake.base_url}/simple/gamma/")
    assert b'data-yanked="" >' in html
    _, body = await get(session, f"{fake.base_url}/simple/gamma/", JSON_TYPE)
    assert b'"yanked":true' in body
    fake.yank("beta.lib", "0.1", reason="bad")
    _, api = await get(session, f"{fake.base_url}/pypi/beta-lib/json")
    assert b'"yanked":true,"yanked_reason":"bad"' in api
    fake.unyank("gamma", "2.0")
    detail = await simple_detail(session, fake, "gamma")
    assert [f.yanked for f in detail.files] == [False]
    _, html = await get(session, f"{fake.base_url}/simple/gamma/")
    assert b"data-yanked" not in html


async def test_removed_projects_answer_404_and_may_be_created_again(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.remove_project("gamma")
    for path in ["/simple/gamma/", "/pypi/gamma/json"]:
        resp, _ = await get(session, f"{fake.base_url}{path}")
        assert resp.status == 404
    resp, body = await get(session, f"{fake.base_url}/pypi/gamma/json")
    assert resp.headers["Content-Type"] == "application/json"
    assert body == b'{"message":"Not Found"}\n'
    fake.add_release("Gamma", "3.0")
    detail = await simple_detail(session, fake, "gamma")
    assert [f.filename for f in detail.files] == ["gamma-3.0-py3-none-any.whl", "gamma-3.0.tar.gz"]
    assert fake.journal[-4].action == "create"
    assert fake.project_names() == ["Alpha", "beta.lib", "Gamma"]


async def test_project_status_quarantine_hides_files_and_archive_only_labels(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    serial = fake.serial
    fake.set_status("alpha", "archived", "read only")
    detail = await simple_detail(session, fake, "alpha")
    assert (detail.status.status, detail.status.reason) == ("archived", "read only")
    assert len(detail.files) == 4
    _, html = await get(session, f"{fake.base_url}/simple/alpha/")
    assert b'<meta name="pypi:project-status" content="archived">' in html

    fake.set_status("gamma", "quarantined")
    detail = await simple_detail(session, fake, "gamma")
    assert (detail.status.status, detail.files, detail.versions) == ("quarantined", (), ())
    resp, _ = await get(session, f"{fake.base_url}/pypi/gamma/json")
    assert resp.status == 404
    _, root = await get(session, f"{fake.base_url}/simple/", JSON_TYPE)
    assert b"gamma" not in root
    listing = await rpc(session, fake.base_url, "list_packages_with_serial")
    assert isinstance(listing, dict)
    assert "gamma" in listing, "XML-RPC still lists quarantined projects"
    assert fake.serial == serial


# --- JSON API ------------------------------------------------------------------------


async def test_json_api_parses_with_the_models_and_carries_the_serial_header(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.add_release("Alpha", "2.0rc1")
    fake.add_release("Alpha", "0.9", sdist=False, wheel=False)
    page_url = f"{fake.base_url}/pypi/alpha/json"
    resp, body = await get(session, page_url)
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-PyPI-Last-Serial"] == str(fake.serial)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    data = json.loads(body)
    detail = ProjectDetail.from_pypi_json(data, name=canonicalize_name("alpha"), page_url=page_url)
    simple = await simple_detail(session, fake, "alpha")
    assert detail.display_name == "Alpha"
    assert detail.serial == simple.serial == fake.serial
    assert detail.files == simple.files
    assert detail.versions == ("1.0", "1.1", "2.0rc1")
    assert data["releases"]["0.9"] == [], "a release without files is listed empty"
    assert data["info"]["version"] == "1.1", "the latest final release is described"
    assert data["info"]["requires_python"] == ">=3.8,<4"
    assert [f["filename"] for f in data["urls"]] == [
        "alpha-1.1-py3-none-any.whl",
        "alpha-1.1.tar.gz",
    ]
    assert body.endswith(b"}\n")


async def test_json_api_per_release_and_its_404s(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.add_release("empty", "1.0", sdist=False, wheel=False)
    fake.remove_release("empty", "1.0")
    resp, _ = await get(session, f"{fake.base_url}/pypi/beta-lib/0.1/json")
    assert resp.status == 200
    resp, body = await get(session, f"{fake.base_url}/pypi/beta-lib/0.1.0/json")
    assert resp.status == 200
    data = json.loads(body)
    assert "releases" not in data
    assert data["info"]["requires_dist"] == ["Alpha>=1.0"]
    assert data["urls"][1]["packagetype"] == "sdist"
    for path in ["/pypi/beta-lib/9.9/json", "/pypi/nope/json", "/pypi/empty/json/"]:
        resp, _ = await get(session, f"{fake.base_url}{path}")
        assert resp.status == 404, path
    resp, _ = await get(session, f"{fake.base_url}/simple/empty/")
    assert resp.status == 200, "a project without releases still has a simple page"
    resp, _ = await get(session, f"{fake.base_url}/simple/nope/")
    assert resp.status == 404


async def test_json_api_prefers_an_unyanked_release_and_reads_metadata_requirements(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    filename, wheel, metadata = make_wheel("app", "1.0", requires_dist=["lib>=1"])
    fake.add_file("app", "1.0", filename, wheel, metadata=metadata)
    fake.add_release("app", "2.0", sdist=False)
    fake.yank("app", "2.0")
    _, body = await get(session, f"{fake.base_url}/pypi/app/json")
    info = json.loads(body)["info"]
    assert (info["version"], info["requires_dist"]) == ("1.0", ["lib>=1"])
    fake.add_release("legacy", "2004d", wheel=False)
    fake.add_release("legacy", "1.0", wheel=False)
    _, body = await get(session, f"{fake.base_url}/pypi/legacy/json")
    assert json.loads(body)["info"]["version"] == "1.0", "an unparsable version sorts first"


# --- fault hooks and ranges ----------------------------------------------------------


async def test_fail_next_answers_errors_for_a_path_prefix_then_recovers(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.fail_next("/simple/alpha/", 503, times=2)
    fake.fail_next("/simple/gamma/", 429)
    statuses = [(await get(session, f"{fake.base_url}/simple/alpha/"))[0].status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert fake.request_log[-3:] == [("GET", "/simple/alpha/")] * 3
    fake.fail_next("/pypi", 500)
    with pytest.raises(AssertionError):
        await rpc(session, fake.base_url, "changelog_last_serial")
    assert await rpc(session, fake.base_url, "changelog_last_serial") == fake.serial


async def test_stale_next_serves_the_state_before_the_latest_change(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    seed(fake)
    fake.add_release("gamma", "3.0", sdist=False)
    fake.stale_next("Gamma", times=2)
    stale = await simple_detail(session, fake, "gamma")
    assert stale.serial == fake.serial - 1
    assert stale.versions == ("2.0",)
    resp, _ = await get(session, f"{fake.base_url}/pypi/gamma/json")
    assert resp.headers["X-PyPI-Last-Serial"] == str(fake.serial - 1)
    fresh = await simple_detail(session, fake, "gamma")
    assert fresh.serial == fake.serial
    assert fresh.versions == ("2.0", "3.0")
    fake.stale_next("never-existed")
    resp, _ = await get(session, f"{fake.base_url}/simple/never-existed/")
    assert resp.status == 404


async def test_a_corrupted_file_is_served_altered_at_the_same_size(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.add_file("blob", "1.0", "blob-1.0.tar.gz", b"original")
    fake.add_file("blob", "1.0", "blob-1.0.zip", b"")
    fake.corrupt_file("blob", "blob-1.0.tar.gz")
    fake.corrupt_file("blob", "blob-1.0.zip")
    _, body = await get(session, fake.file_url("blob", "blob-1.0.tar.gz"))
    assert body != b"original"
    assert len(body) == len(b"original")
    _, body = await get(session, fake.file_url("blob", "blob-1.0.zip"))
    assert body != b""


async def test_backfilled_metadata_is_served_and_advertised_without_a_serial_move(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.add_file("old", "1.0", "old-1.0-py3-none-any.whl", b"wheel")
    serial = fake.serial
    before = await simple_detail(session, fake, "old")
    assert not before.files[0].core_metadata
    fake.backfill_metadata("old", "old-1.0-py3-none-any.whl", b"Metadata-Version: 2.1\n")
    assert fake.serial == serial
    after = await simple_detail(session, fake, "old")
    assert (
        after.files[0].core_metadata_sha256
        == hashlib.sha256(b"Metadata-Version: 2.1\n").hexdigest()
    )
    _, body = await get(session, after.files[0].metadata_url)
    assert body == b"Metadata-Version: 2.1\n"
    with pytest.raises(KeyError):
        fake.backfill_metadata("old", "missing.whl", b"")


@pytest.mark.parametrize(
    ("range_header", "expected"),
    [
        ("bytes=2-", (206, b"23456789", "bytes 2-9/10")),
        ("bytes=2-4", (206, b"234", "bytes 2-4/10")),
        ("bytes=8-20", (206, b"89", "bytes 8-9/10")),
        ("bytes=10-", (416, b"", "bytes */10")),
        ("bytes=5-3", (416, b"", "bytes */10")),
        ("items=1-2", (416, b"", "bytes */10")),
    ],
)
async def test_files_honour_single_byte_ranges(
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    range_header: str,
    expected: tuple[int, bytes, str],
) -> None:
    fake.add_file("blob", "1.0", "blob-1.0.tar.gz", b"0123456789")
    url = fake.file_url("blob", "blob-1.0.tar.gz")
    async with session.get(url, headers={"Range": range_header}) as resp:
        assert (resp.status, await resp.read(), resp.headers["Content-Range"]) == expected


async def test_file_urls_have_warehouses_content_addressed_layout(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.add_file("odd", "1.0", "odd-1.0+local.tar.gz", b"x")
    url = fake.file_url("odd", "odd-1.0+local.tar.gz")
    digest = hashlib.blake2b(b"x", digest_size=32).hexdigest()
    path = f"/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/odd-1.0%2Blocal.tar.gz"
    assert url == f"{fake.base_url}{path}"
    _, body = await get(session, url)
    assert body == b"x"
    assert package_path_from_url(url, filename="odd-1.0+local.tar.gz").endswith("+local.tar.gz")


@pytest.mark.parametrize(
    ("filename", "action"),
    [
        ("x-1.0-cp312-cp312-win_amd64.whl", "add cp312 file"),
        ("x-1.0-py2.7.egg", "add any file"),
        ("x-1.0.win32.exe", "add any file"),
        ("x-1.0.msi", "add any file"),
        ("x-1.0.zip", "add source file"),
    ],
)
def test_file_rows_name_the_python_version_like_an_upload(filename: str, action: str) -> None:
    fake = FakeUpstream()
    fake.add_file("x", "1.0", filename, filename.encode())
    assert fake.journal[-1].action == f"{action} {filename}"


# --- distributions -------------------------------------------------------------------


def test_make_wheel_builds_a_reproducible_wheel_with_a_correct_record(tmp_path: Path) -> None:
    filename, wheel, metadata = make_wheel(
        "Beta.Lib", "1.0", requires_dist=["alpha>=1", "gamma"], requires_python=">=3.8"
    )
    assert filename == "beta_lib-1.0-py3-none-any.whl"
    assert make_wheel(
        "Beta.Lib", "1.0", requires_dist=["alpha>=1", "gamma"], requires_python=">=3.8"
    ) == (filename, wheel, metadata)
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        record = archive.read("beta_lib-1.0.dist-info/RECORD").decode()
        rows = list(csv.reader(record.splitlines()))
        assert {row[0] for row in rows} == set(names)
        for path, hash_value, size in rows:
            if path.endswith("RECORD"):
                assert (hash_value, size) == ("", "")
                continue
            data = archive.read(path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hash_value == f"sha256={digest.decode()}"
            assert int(size) == len(data)
        assert archive.read("beta_lib-1.0.dist-info/METADATA") == metadata
        wheel_meta = archive.read("beta_lib-1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: true" in wheel_meta
        assert "Tag: py3-none-any" in wheel_meta
    headers = email.parser.BytesParser().parsebytes(metadata)
    assert headers["Name"] == "Beta.Lib"
    assert headers["Metadata-Version"] == "2.1"
    assert headers.get_all("Requires-Dist") == ["alpha>=1", "gamma"]
    assert headers["Requires-Python"] == ">=3.8"

    wheel_path = tmp_path / filename
    wheel_path.write_bytes(wheel)
    spec = zipimport.zipimporter(str(wheel_path)).find_spec("beta_lib")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__version__ == "1.0"


def test_make_wheel_takes_modules_tags_and_payloads() -> None:
    filename, wheel, _ = make_wheel(
        "app", "2.0", modules={"app.py": "X = 1\n"}, tag="cp312-cp312-win_amd64", payload_bytes=4096
    )
    assert filename == "app-2.0-cp312-cp312-win_amd64.whl"
    assert len(wheel) > 4096
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        assert archive.read("app.py") == b"X = 1\n"
        assert len(archive.read("app/_payload.bin")) == 4096


def test_payloads_of_any_size_are_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    # Built in pieces (randbytes makes at most 256 MiB at once); small pieces here.
    monkeypatch.setattr(distributions, "_PAYLOAD_PIECE_BYTES", 1000)
    data = distributions.payload("app", "1.0", 2500)
    assert len(data) == 2500
    assert data == distributions.payload("app", "1.0", 2500)
    assert data != distributions.payload("app", "1.1", 2500)
    assert len({data[i : i + 1000] for i in range(0, 2500, 1000)}) == 3


def test_make_sdist_builds_a_reproducible_tarball_with_pkg_info() -> None:
    filename, sdist = make_sdist("Beta.Lib", "1.0", requires_dist=["alpha"], payload_bytes=10)
    assert filename == "beta_lib-1.0.tar.gz"
    assert make_sdist("Beta.Lib", "1.0", requires_dist=["alpha"], payload_bytes=10)[1] == sdist
    assert gzip.decompress(sdist)
    with tarfile.open(fileobj=io.BytesIO(sdist)) as archive:
        names = archive.getnames()
        member = archive.extractfile("beta_lib-1.0/PKG-INFO")
        assert member is not None
        assert b"Requires-Dist: alpha\n" in member.read()
    assert "beta_lib-1.0/beta_lib/_payload.bin" in names


# --- corpus --------------------------------------------------------------------------


async def test_the_corpus_is_reproducible_and_self_contained_by_prefix(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    first, second = fake, FakeUpstream()
    generate_corpus(first, projects=20, seed=0)
    generate_corpus(second, projects=20, seed=0)
    assert first.project_names() == [f"proj-{i:04d}" for i in range(20)]
    assert first.journal == second.journal
    actions = [e.action for e in first.journal]
    assert actions.count("yank release") == 4
    assert "proj-0000" in {e.name for e in first.journal[:10]}
    assert "proj-0001" in {e.name for e in first.journal[:10]}, "projects interleave"
    requirements: list[str] = []
    for index in range(20):
        _, body = await get(session, f"{fake.base_url}/pypi/proj-{index:04d}/json")
        for requirement in json.loads(body)["info"]["requires_dist"] or []:
            requirements.append(requirement)
            assert int(requirement[5:9]) < index, "deps only point to earlier projects"
    assert requirements, "some projects depend on others"
    other = FakeUpstream()
    generate_corpus(other, projects=20, seed=1)
    assert other.journal != first.journal


async def test_the_corpus_scales_files_for_benchmarks(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    generate_corpus(
        fake,
        projects=2,
        releases_per_project=2,
        wheels_per_release=6,
        sdists=False,
        file_size_bytes=2048,
    )
    files = [e.action for e in fake.journal if e.action.startswith("add ")]
    assert len(files) == 2 * 2 * 6
    assert all(".tar.gz" not in action for action in files)
    detail = await simple_detail(session, fake, "proj-0000")
    assert len(detail.files) == 12
    assert all(f.size > 2048 for f in detail.files)
    assert [wheel_tag(i) for i in (0, 1, 5)] == [
        "py3-none-any",
        "cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
    ]


# --- command line --------------------------------------------------------------------


def test_main_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "non-loopback" in capsys.readouterr().err


def test_main_serves_until_interrupted(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(coroutine: Coroutine[Any, Any, None]) -> None:
        coroutine.close()
        raise KeyboardInterrupt

    assert main(["--port", "0", "--projects", "1"], run=interrupted) == 0
    assert capsys.readouterr().err == ""


def test_the_module_prints_its_url_and_exits_cleanly_on_ctrl_c() -> None:
    """The README's quick start: ``python3 -m mirror.testing`` on loopback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror.testing", "--port", "0", "--projects", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base_url}/simple/proj-0001/") as resp:
            assert b"proj_0001-1.0.tar.gz" in resp.read()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_taken_port_fails_to_start_and_leaving_twice_is_harmless() -> None:
    async with FakeUpstream() as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="address already in use"):
            async with FakeUpstream(port=port):
                pass
    await first.__aexit__(None, None, None)
    assert first.base_url.endswith(f":{port}")


async def test_serve_prints_the_base_url_and_serves_the_corpus(
    session: aiohttp.ClientSession,
) -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(ServeOptions(port=0, projects=3), out=out, stop=stop))
    while not out.getvalue():
        await asyncio.sleep(0.01)
    base_url = out.getvalue().splitlines()[0]
    assert base_url.startswith("http://127.0.0.1:")
    resp, body = await get(session, f"{base_url}/simple/", JSON_TYPE)
    assert resp.status == 200
    assert b'"name":"proj-0002"' in body
    stop.set()
    await task


async def test_upload_times_default_to_journal_time_and_can_be_given(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    moment = datetime(2020, 5, 17, 12, 0, tzinfo=UTC)
    fake.add_file("t", "1.0", "t-1.0.tar.gz", b"x", upload_time=moment)
    fake.add_file("t", "1.0", "t-1.0.zip", b"y")
    detail = await simple_detail(session, fake, "t")
    assert [f.upload_time for f in detail.files] == [
        moment,
        datetime(2024, 1, 1, 0, 4, 0, 31676, tzinfo=UTC),
    ]
    _, body = await get(session, f"{fake.base_url}/simple/t/", JSON_TYPE)
    assert b'"upload-time":"2020-05-17T12:00:00Z"' in body, "no fraction when it is zero"


async def test_spilled_files_are_sent_from_the_directory_byte_for_byte(
    fake: FakeUpstream, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.add_file("blob", "1.0", "blob-1.0-py3-none-any.whl", b"wheel bytes", metadata=b"meta")
    fake.spill_files(tmp_path)
    url = fake.file_url("blob", "blob-1.0-py3-none-any.whl")
    (spilled,) = tmp_path.rglob("*.whl")
    assert url.endswith(spilled.relative_to(tmp_path).as_posix())
    assert spilled.read_bytes() == b"wheel bytes"
    assert Path(f"{spilled}.metadata").read_bytes() == b"meta"
    # What is served is the file on disk, not the copy in memory.
    spilled.write_bytes(b"WHEEL BYTES")
    resp, body = await get(session, url)
    assert (resp.status, body) == (200, b"WHEEL BYTES")
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Cache-Control"] == "max-age=365000000, immutable, public"
    _, body = await get(session, f"{url}.metadata")
    assert body == b"meta"


async def test_what_spilling_leaves_to_memory_is_answered_as_before(
    fake: FakeUpstream, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.add_file("blob", "1.0", "blob-1.0.tar.gz", b"0123456789")
    fake.add_file("blob", "1.0", "blob-1.0.zip", b"original")
    fake.spill_files(tmp_path)
    for spilled in tmp_path.rglob("blob-*"):
        spilled.write_bytes(b"from disk!")
    fake.add_file("later", "1.0", "later-1.0.tar.gz", b"published after")
    fake.corrupt_file("blob", "blob-1.0.zip")

    _, body = await get(session, fake.file_url("later", "later-1.0.tar.gz"))
    assert body == b"published after"
    _, body = await get(session, fake.file_url("blob", "blob-1.0.zip"))
    assert body not in {b"original", b"from disk!"}
    assert len(body) == len(b"original")
    async with session.get(
        fake.file_url("blob", "blob-1.0.tar.gz"), headers={"Range": "bytes=2-4"}
    ) as resp:
        assert (resp.status, await resp.read()) == (206, b"234")
    resp, _ = await get(session, f"{fake.base_url}/packages/aa/bb/cc/nothing.tar.gz")
    assert resp.status == 404


# --- network: latency and bandwidth cap ----------------------------------------------
# Timing is asserted one way only (at least about as slow as the network makes it), with
# room for a loaded machine; nothing asserts that an answer is fast.

LATENCY_SECONDS = 0.2


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    started = time.monotonic()
    _, body = await get(session, url)
    return time.monotonic() - started, body


async def test_every_kind_of_answer_waits_the_latency_before_its_first_byte(
    session: aiohttp.ClientSession,
) -> None:
    network = Network(latency_seconds=LATENCY_SECONDS)
    async with FakeUpstream(network=network) as fake:
        fake.add_file("lag", "1.0", "lag-1.0-py3-none-any.whl", b"wheel", metadata=b"meta")
        url = fake.file_url("lag", "lag-1.0-py3-none-any.whl")
        for target in (f"{fake.base_url}/simple/lag/", url, f"{url}.metadata"):
            elapsed, _ = await timed_get(session, target)
            assert elapsed >= 0.9 * LATENCY_SECONDS, target
        started = time.monotonic()
        assert await rpc(session, fake.base_url, "changelog_last_serial") == fake.serial
        assert time.monotonic() - started >= 0.9 * LATENCY_SECONDS
        fake.fail_next("/simple/lag/", status=503)
        elapsed, _ = await timed_get(session, f"{fake.base_url}/simple/lag/")
        assert elapsed >= 0.9 * LATENCY_SECONDS, "an injected error waits too"


async def test_latency_is_per_answer_so_concurrent_requests_overlap(
    session: aiohttp.ClientSession,
) -> None:
    """Ten answers at once take about one latency, not ten (a distance, not a queue)."""
    async with FakeUpstream(network=Network(latency_seconds=LATENCY_SECONDS)) as fake:
        fake.add_release("lag", "1.0")
        started = time.monotonic()
        pages = await asyncio.gather(
            *(get(session, f"{fake.base_url}/simple/lag/") for _ in range(10))
        )
        elapsed = time.monotonic() - started
    assert all(resp.status == 200 for resp, _ in pages)
    assert 0.9 * LATENCY_SECONDS <= elapsed < 5 * LATENCY_SECONDS


async def test_the_bandwidth_cap_holds_over_all_connections_together(
    session: aiohttp.ClientSession,
) -> None:
    rate = 2_000_000
    blobs = [bytes([n]) * 1_000_000 for n in range(3)]
    async with FakeUpstream(network=Network(bandwidth_bytes_per_second=rate)) as fake:
        for n, blob in enumerate(blobs):
            fake.add_file(f"big{n}", "1.0", f"big{n}-1.0.tar.gz", blob)
        urls = [fake.file_url(f"big{n}", f"big{n}-1.0.tar.gz") for n in range(3)]
        started = time.monotonic()
        answers = await asyncio.gather(*(get(session, url) for url in urls))
        elapsed = time.monotonic() - started
        # Pages are not capped: a simple page of a capped upstream comes at once.
        page_time, _ = await timed_get(session, f"{fake.base_url}/simple/big0/")
    assert [body for _, body in answers] == blobs
    assert all(resp.headers["Content-Length"] == "1000000" for resp, _ in answers)
    expected = (3_000_000 - CHUNK_BYTES) / rate
    assert elapsed >= 0.8 * expected
    assert page_time < expected


async def test_a_cap_sends_spilled_files_from_memory_and_keeps_ranges_and_faults(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    rate = 1_000_000
    async with FakeUpstream() as fake:
        fake.add_file("blob", "1.0", "blob-1.0.tar.gz", b"x" * 500_000)
        fake.add_file("blob", "1.0", "blob-1.0.zip", b"")
        fake.spill_files(tmp_path)
        (spilled,) = tmp_path.rglob("*.tar.gz")
        spilled.write_bytes(b"y" * 500_000)
        url = fake.file_url("blob", "blob-1.0.tar.gz")
        fake.network = Network(bandwidth_bytes_per_second=rate)
        elapsed, body = await timed_get(session, url)
        assert body == b"x" * 500_000, "no sendfile under a cap"
        assert elapsed >= 0.8 * (500_000 - CHUNK_BYTES) / rate
        _, empty = await get(session, fake.file_url("blob", "blob-1.0.zip"))
        assert empty == b""
        async with session.get(url, headers={"Range": "bytes=2-4"}) as resp:
            assert (resp.status, await resp.read()) == (206, b"xxx")
        fake.faults = FaultPlan(seed=1, truncate_rate=1.0)
        with pytest.raises(aiohttp.ClientPayloadError):
            await get(session, url)
        fake.faults = None
        fake.network = Network()
        _, body = await get(session, url)
        assert body == b"y" * 500_000, "uncapped again: sent from the spilled file"


@pytest.mark.parametrize(
    ("steps", "waits"),
    [
        # (bytes, at second) -> seconds to wait; rate 100 B/s, burst 50 B
        ([(50, 0.0)], [0.0]),
        ([(50, 0.0), (100, 0.0)], [0.0, 1.0]),
        ([(50, 0.0), (100, 0.0), (100, 0.0)], [0.0, 1.0, 2.0]),
        ([(50, 0.0), (50, 0.5)], [0.0, 0.0]),
        ([(50, 0.0), (50, 10.0), (100, 10.0)], [0.0, 0.0, 1.0]),
        ([(50, 5.0), (50, 4.0)], [0.0, 0.5]),
    ],
    ids=["burst", "debt", "queued", "refilled", "refill-capped", "clock-backwards"],
)
def test_the_token_bucket_spreads_bytes_at_its_rate(
    steps: list[tuple[int, float]], waits: list[float]
) -> None:
    bucket = TokenBucket(100, burst_bytes=50)
    assert [bucket.reserve(size, now) for size, now in steps] == pytest.approx(waits)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("50MB/s", 50_000_000),
        ("50MiB/s", 52_428_800),
        (" 2 MB/S ", 2_000_000),
        ("1G", 1_000_000_000),
        ("4096", 4096),
    ],
)
def test_bandwidths_are_humanfriendly_sizes_per_second(text: str, rate: int) -> None:
    assert parse_bandwidth(text) == rate


@pytest.mark.parametrize("text", ["fast", "", "0", "0MB/s", "MB/s"])
def test_a_bandwidth_that_is_no_positive_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        parse_bandwidth(text)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"latency_seconds": -0.1}, "latency"),
        ({"bandwidth_bytes_per_second": 0}, "bandwidth"),
    ],
)
def test_a_network_refuses_impossible_values(network: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Network(**network)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


def test_the_command_line_takes_a_latency_and_a_bandwidth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = parse_options(["--latency-ms", "25", "--bandwidth", "50MB/s"])
    assert options.network == Network(latency_seconds=0.025, bandwidth_bytes_per_second=50_000_000)
    assert parse_options([]).network == Network()
    for bad in (["--bandwidth", "lots"], ["--latency-ms", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_options(bad)
        assert exit_info.value.code == 2
    assert "bandwidth" in capsys.readouterr().err
