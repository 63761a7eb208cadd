"""Snapshot views (``/snapshot/<when>/simple/``) over a synced mirror, in-process: what
a past moment lists, by date, timestamp and serial, in both formats, with links that
reach the live ``/packages/``; the redirects and 404s; the page cache."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from mirror.models import Serial
from mirror.server import create_app
from mirror.snapshot import FILES_BASE, PageCache, When, parse_when, snapshot_routes
from mirror.state import timeline
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from tests.harness import MirrorRunner

JSON = "application/vnd.pypi.simple.v1+json"
OCTOBER = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MONTH = 30 * 86400.0
Client = TestClient[web.Request, web.Application]


def upload(upstream: FakeUpstream, version: str, uploaded: datetime) -> tuple[str, str]:
    wheel, content, metadata = make_wheel("Demo", version)
    upstream.add_file("Demo", version, wheel, content, metadata=metadata, upload_time=uploaded)
    sdist, content = make_sdist("Demo", version)
    upstream.add_file("Demo", version, sdist, content, upload_time=uploaded)
    return wheel, sdist


@dataclasses.dataclass
class History:
    client: Client
    first_serial: int
    old: tuple[str, str]
    new: tuple[str, str]


@pytest.fixture
async def history(upstream: FakeUpstream, runner: MirrorRunner) -> AsyncIterator[History]:
    """Demo 1.0 (October), synced; then 2.0 (10 November) and 1.0's sdist removed,
    synced on 20 November with keep-removed = 30 days."""
    runner.options = dataclasses.replace(runner.options, keep_removed=MONTH)
    old = upload(upstream, "1.0", OCTOBER)
    runner.clock.now = (OCTOBER + timedelta(days=1)).timestamp()
    await runner.sync()
    first_serial = upstream.serial
    new = upload(upstream, "2.0", NOVEMBER)
    upstream.remove_file("Demo", old[1])
    runner.clock.now = NOW.timestamp()
    await runner.sync()
    routes = snapshot_routes(runner.directory, keep_removed=MONTH, clock=runner.clock)
    app = create_app(runner.web, extra_routes=routes)
    async with TestClient(TestServer(app)) as client:
        yield History(client=client, first_serial=first_serial, old=old, new=new)


async def json_page(client: Client, path: str) -> dict[str, object]:
    response = await client.get(path, headers={"Accept": JSON})
    assert response.status == 200, path
    assert response.content_type == JSON
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    return dict(await response.json(content_type=JSON))


def filenames(page: dict[str, object]) -> list[str]:
    files = page["files"]
    assert isinstance(files, list)
    return sorted(f["filename"] for f in files)


@pytest.mark.parametrize("when", ["2026-11-01", "2026-11-01T00:00:00Z", "2026-11-09T23:59:59"])
async def test_a_past_date_lists_the_files_published_then(history: History, when: str) -> None:
    page = await json_page(history.client, f"/snapshot/{when}/simple/demo/")
    # 2.0 came later, and 1.0's sdist was still there: the old set.
    assert filenames(page) == sorted(history.old)
    assert page["versions"] == ["1.0"]
    assert page["name"] == "demo"
    live = await json_page(history.client, "/simple/demo/")
    assert filenames(live) == sorted([history.old[0], *history.new])


async def test_by_serial_and_after_the_changes(history: History) -> None:
    page = await json_page(history.client, f"/snapshot/{history.first_serial}/simple/demo/")
    assert filenames(page) == sorted(history.old)
    later = await json_page(history.client, "/snapshot/2026-11-15/simple/demo/")
    # The sdist was removed on 20 November: on the 15th it was still there.
    assert filenames(later) == sorted([*history.old, *history.new])
    after = await json_page(history.client, "/snapshot/2026-11-21/simple/demo/")
    assert filenames(after) == sorted([history.old[0], *history.new])


async def test_the_links_reach_the_live_packages_and_the_removed_file_is_served(
    history: History,
) -> None:
    base = "/snapshot/2026-11-01/simple/demo/"
    page = await json_page(history.client, base)
    files = page["files"]
    assert isinstance(files, list)
    for entry in files:
        assert entry["url"].startswith(FILES_BASE + "packages/")
        target = URL(f"http://mirror{base}").join(URL(entry["url"])).path
        assert target.startswith("/packages/")
        response = await history.client.get(target)
        assert response.status == 200, entry["filename"]
        assert len(await response.read()) == entry["size"]
        assert entry["upload-time"] == "2026-10-01T12:00:00Z"
    html = await history.client.get(base, headers={"Accept": "text/html"})
    assert html.status == 200
    assert html.content_type == "text/html"
    text = await html.text()
    assert f'href="{FILES_BASE}packages/' in text
    assert "<title>Links for Demo</title>" in text
    assert history.new[0] not in text


async def test_the_root_lists_the_projects_of_the_moment(
    history: History, upstream: FakeUpstream
) -> None:
    root = await json_page(history.client, "/snapshot/2026-11-01/simple/")
    assert root["projects"] == [{"_last-serial": history.first_serial, "name": "Demo"}]
    html = await history.client.get("/snapshot/2026-11-01/simple/")
    assert html.content_type == "text/html"
    assert '<a href="demo/">Demo</a>' in await html.text()
    # Again, from the cache, and gzipped when asked.
    again = await history.client.get(
        "/snapshot/2026-11-01/simple/", headers={"Accept-Encoding": "gzip"}
    )
    assert '<a href="demo/">Demo</a>' in await again.text()
    first = await json_page(history.client, "/snapshot/2026-11-01/simple/demo/")
    assert await json_page(history.client, "/snapshot/2026-11-01/simple/demo/") == first
    before = await json_page(history.client, "/snapshot/2026-09-01/simple/")
    assert before["projects"] == []
    del upstream


async def test_redirects_and_not_found(history: History) -> None:
    client = history.client
    for path, location in [
        ("/snapshot/2026-11-01/simple", "/snapshot/2026-11-01/simple/"),
        ("/snapshot/2026-11-01/simple/Demo/", "/snapshot/2026-11-01/simple/demo/"),
        ("/snapshot/2026-11-01/simple/demo", "/snapshot/2026-11-01/simple/demo/"),
    ]:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 301, path
        assert response.headers["Location"] == location
    for path in [
        "/snapshot/yesterday/simple/",
        "/snapshot/2026-13-01/simple/demo/",
        "/snapshot/2026-11-01/simple/-bad-/",
        "/snapshot/2026-09-01/simple/demo/",  # before its first upload
        "/snapshot/2026-11-01/simple/absent/",
    ]:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 404, path
    response = await client.get(
        "/snapshot/2026-11-01/simple/demo/", headers={"Accept": "application/x-nothing"}
    )
    assert response.content_type == "text/html"


async def test_the_cooldown_caps_every_view(runner: MirrorRunner, history: History) -> None:
    routes = snapshot_routes(
        runner.directory, keep_removed=MONTH, cooldown=30 * 86400.0, clock=runner.clock
    )
    app = create_app(runner.web, extra_routes=routes)
    async with TestClient(TestServer(app)) as client:
        page = await json_page(client, "/snapshot/2026-11-15/simple/demo/")
    # 2.0 is ten days old: not published anywhere yet, not even in a view of the 15th.
    assert filenames(page) == sorted(history.old)


async def test_without_keep_removed_the_removed_file_is_not_linked(
    runner: MirrorRunner, history: History
) -> None:
    routes = snapshot_routes(runner.directory, clock=lambda: runner.clock.now + 1)
    app = create_app(runner.web, extra_routes=routes)
    async with TestClient(TestServer(app)) as client:
        page = await json_page(client, "/snapshot/2026-11-01/simple/demo/")
    assert filenames(page) == [history.old[0]]


async def test_a_json_only_mirror_refuses_html_and_no_state_is_a_503(
    runner: MirrorRunner, history: History, tmp_path: object
) -> None:
    routes = snapshot_routes(runner.directory, formats=frozenset({"json"}), clock=runner.clock)
    async with TestClient(TestServer(create_app(runner.web, extra_routes=routes))) as client:
        response = await client.get(
            "/snapshot/2026-11-01/simple/demo/", headers={"Accept": "text/html"}
        )
        assert response.status == 406
    empty = runner.directory.parent / "empty"
    empty.mkdir()
    async with TestClient(TestServer(create_app(empty, extra_routes=snapshot_routes(empty)))) as c:
        assert (await c.get("/snapshot/1/simple/")).status == 503
        assert (await c.get("/snapshot/1/simple/demo/")).status == 503
    del history, tmp_path


def test_when_is_a_date_a_timestamp_or_a_serial() -> None:
    midnight = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert parse_when("2026-11-01") == When(at=midnight, serial=None)
    assert parse_when("2026-11-01T00:00:00") == When(at=midnight, serial=None)
    assert parse_when("2026-11-01T01:00:00+01:00") == When(at=midnight, serial=None)
    assert parse_when("123456") == When(at=None, serial=Serial(123456))
    for bad in ["", "yesterday", "2026-02-30", "-5", "1e5"]:
        assert parse_when(bad) is None, bad


def test_the_page_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = PageCache(entries=2, max_bytes=800, seconds=10.0, clock=lambda: now[0])
    cache.put(("a",), b"a" * 50)
    cache.put(("b",), b"b" * 50)
    assert cache.get(("a",)) == b"a" * 50  # a is now the most recent
    cache.put(("c",), b"c" * 50)
    assert cache.get(("b",)) is None
    assert len(cache) == 2
    cache.put(("big",), b"x" * 101)  # over an eighth of the bytes: not cached
    assert cache.get(("big",)) is None
    cache.put(("a",), b"A" * 100)
    assert cache.get(("a",)) == b"A" * 100
    now[0] = 11.0
    assert cache.get(("a",)) is None
    assert cache.get(("missing",)) is None
    byte_bound = PageCache(entries=100, max_bytes=800, seconds=10.0, clock=lambda: 0.0)
    for key in range(9):
        byte_bound.put((key,), b"x" * 100)
    assert len(byte_bound) == 8
    assert json.dumps(len(byte_bound))


async def test_a_root_read_in_pages_too_large_to_cache_is_streamed_whole(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline, "_ROOT_PAGE_ROWS", 2)
    for project in ["a", "b", "c", "d", "e"]:
        upstream.add_release(project, "1.0", wheel=False)
    runner.clock.now = NOW.timestamp()
    await runner.sync()
    cache = PageCache(max_bytes=80)
    routes = snapshot_routes(runner.directory, clock=runner.clock, cache=cache)
    async with TestClient(TestServer(create_app(runner.web, extra_routes=routes))) as client:
        for encoding in ["gzip", "identity"]:
            response = await client.get(
                "/snapshot/2030-01-01/simple/",
                headers={"Accept": JSON, "Accept-Encoding": encoding},
            )
            root = await response.json(content_type=JSON)
            assert [p["name"] for p in root["projects"]] == ["a", "b", "c", "d", "e"]
        page = await client.get(
            "/snapshot/2030-01-01/simple/a/", headers={"Accept-Encoding": "identity"}
        )
        assert page.status == 200
        assert "Content-Encoding" not in page.headers
    assert len(cache) == 0
