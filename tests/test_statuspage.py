"""The ``/status/`` page: plain HTML with the mirror's state and an SVG size chart."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mirror.state import StateStore
from mirror.status import read_status
from mirror.statuspage import render_size_chart, render_status_page, status_routes
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner


class PageParser(HTMLParser):
    """Collects the polylines' points, the text, and whether any script is present."""

    def __init__(self) -> None:
        super().__init__()
        self.polylines: list[list[tuple[float, float]]] = []
        self.texts: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "polyline":
            points = dict(attrs)["points"] or ""
            self.polylines.append(
                [(float(x), float(y)) for x, y in (p.split(",") for p in points.split())]
            )

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append(data.strip())


def parse(html: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(html.decode())
    parser.close()
    return parser


async def test_status_page_shows_state_failures_and_one_chart_point_per_run(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    await runner.sync()
    for day in range(1, 4):
        runner.clock.now += 86_400
        upstream.add_release("alpha", f"1.{day}")
        await runner.sync()
    upstream.add_release("broken", "1.0", wheel=False)
    upstream.fail_next("/simple/broken/", 500, times=10)
    runner.clock.now += 86_400
    await runner.sync()
    with runner.state() as state:
        status = read_status(state, now=runner.clock.now)
        runs = state.runs()
    page = parse(render_status_page(status, runs))
    assert "script" not in page.tags
    assert "svg" in page.tags
    assert len(page.polylines) == 1
    points = page.polylines[0]
    assert len(points) == len(runs) == 5
    xs = [x for x, _ in points]
    assert xs == sorted(xs), "time runs left to right"
    ys = [y for _, y in points]
    assert ys[0] > ys[3], "the mirror grew, so the line rises"
    assert ys[3] == min(ys)
    assert "Mirror serial" in page.texts
    assert str(upstream.serial) in page.texts
    assert "Failing projects (1)" in page.texts
    assert "broken" in page.texts
    item = status.failures[0]
    hostile = replace(status, failures=(replace(item, last_error="<script>x()</script>"),))
    page = parse(render_status_page(hostile, runs))
    assert "script" not in page.tags, "errors are escaped"
    assert "<script>x()</script>" in page.texts
    assert any("incomplete" in text for text in page.texts)
    assert any(text.startswith("1970-01-12") for text in page.texts), "x axis: first date"
    assert "date (UTC)" in page.texts


def test_empty_mirror_page_has_no_polyline_and_says_so(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        page = parse(render_status_page(read_status(state, now=0.0), []))
    assert page.polylines == []
    assert "No failing projects" in page.texts
    assert "none recorded" in page.texts
    assert "never" in page.texts


def test_chart_without_runs_has_axes_but_no_line() -> None:
    chart = render_size_chart([])
    assert "<polyline" not in chart
    assert "0 bytes" in chart


async def test_status_route_serves_the_page_and_redirects_the_bare_path(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    app = web.Application()
    app.add_routes(status_routes(runner.directory))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/status/")
        assert response.status == 503
        upstream.add_release("alpha", "1.0")
        await runner.sync()
        response = await client.get("/status/")
        assert response.status == 200
        assert response.content_type == "text/html"
        page = parse(await response.read())
        assert len(page.polylines[0]) == 1
        response = await client.get("/status", allow_redirects=False)
        assert response.status == 301
        assert response.headers["Location"] == "status/"
