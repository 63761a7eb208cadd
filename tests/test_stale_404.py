"""A CDN's stale 404 never deletes data: a 404 removes a project only when upstream
confirmed the removal (its changelog, or the full listing); otherwise the page is
asked for again with a cache-busting ``?<serial>`` and, still 404, the project is
kept as it is and stays queued with back-off."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from packaging.utils import NormalizedName, canonicalize_name

from mirror.models import Serial
from mirror.testing import FakeUpstream, FaultPlan, generate_corpus
from mirror.upstream import Upstream, UpstreamSettings
from tests.harness import MirrorRunner, no_sleep
from tests.mirrorcheck import assert_consistent, assert_matches_upstream

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def _page_requests(upstream: FakeUpstream, project: str) -> list[str]:
    return [p for _, p in upstream.request_log if p.startswith(f"/simple/{project}/")]


def _held_files(runner: MirrorRunner) -> dict[str, set[str]]:
    """``{project: paths of its files}`` as the state records them."""
    with runner.state() as state:
        return {row.name: set(state.project_files(row.name)) for row in state.iter_projects()}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# --- the fake upstream's stale 404s ------------------------------------------------------


async def test_a_stale_404_fault_hides_an_existing_project_page_only(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.faults = FaultPlan(stale_404_rate=1.0)
    async with session.get(f"{upstream.base_url}/simple/alpha/", headers=SIMPLE_JSON) as resp:
        assert resp.status == 404
    async with session.get(f"{upstream.base_url}/pypi/alpha/json") as resp:
        assert resp.status == 404
        assert await resp.json() == {"message": "Not Found"}
    async with session.get(f"{upstream.base_url}/simple/", headers=SIMPLE_JSON) as resp:
        assert resp.status == 200, "the root still lists it"
        assert [p["name"] for p in (await resp.json(content_type=None))["projects"]] == ["alpha"]
    assert [f.kind for f in upstream.injected] == ["stale_404", "stale_404"]


async def test_stale_404_next_counts_every_page_answer_queries_included(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.stale_404_next("Alpha", times=2)
    statuses = []
    for query in ("", "?7", "?8"):
        url = f"{upstream.base_url}/simple/alpha/{query}"
        async with session.get(url, headers=SIMPLE_JSON) as resp:
            statuses.append(resp.status)
    assert statuses == [404, 404, 200]


async def test_a_cache_bust_asks_for_the_page_with_the_serial_as_its_query(
    upstream: FakeUpstream,
) -> None:
    upstream.add_release("alpha", "1.0")
    settings = UpstreamSettings(base_url=upstream.base_url, backoff_base_seconds=0.0)
    name = NormalizedName("alpha")
    async with Upstream(settings, sleep=no_sleep) as client:
        detail = await client.project_detail(
            name, min_serial=None, cache_bust=Serial(upstream.serial)
        )
        assert detail.name == "alpha"
        upstream.stale_next("alpha")
        newest = Serial(upstream.serial)
        await client.project_detail(name, min_serial=newest, cache_bust=newest)
    assert _page_requests(upstream, "alpha") == [
        f"/simple/alpha/?{newest}",
        f"/simple/alpha/?{newest}",
        f"/simple/alpha/?{newest}&_mirror_cb={newest}-1",
    ]


# --- the sync engine ---------------------------------------------------------------------


async def test_a_stale_404_is_asked_again_with_a_cache_busting_query(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    assert (await runner.sync()).ok
    upstream.add_release("alpha", "2.0")
    upstream.stale_404_next("alpha")
    report = await runner.sync()
    assert report.ok, report.failures
    assert report.projects_removed == 0
    assert _page_requests(upstream, "alpha")[-2:] == [
        "/simple/alpha/",
        f"/simple/alpha/?{upstream.serial}",
    ]
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_project_still_404_is_kept_and_queued_with_back_off(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.add_release("beta", "1.0")
    assert (await runner.sync()).ok
    before = _held_files(runner)
    page = (runner.web / "simple" / "alpha" / "index.html").read_bytes()
    upstream.add_release("alpha", "2.0")
    upstream.add_release("beta", "2.0")
    upstream.stale_404_next("alpha", times=2)

    report = await runner.sync()

    assert [f.name for f in report.failures] == ["alpha"]
    assert "kept, retried later" in report.failures[0].error
    assert report.projects_removed == 0
    assert (runner.web / "simple" / "alpha" / "index.html").read_bytes() == page
    assert _held_files(runner)["alpha"] == before["alpha"], "not a file lost"
    for path in before["alpha"]:
        assert (runner.web / path).is_file()
    with runner.state() as state:
        assert state.mirror_serial() == upstream.serial, "the serial is not held back"
        item = state.todo_item(NormalizedName("alpha"))
        assert item is not None
        assert item.attempts == 1
        assert item.next_attempt == runner.clock.now + 60
        assert not item.gone
    assert_consistent(runner.directory)

    runner.clock.now += 61
    report = await runner.sync()
    assert report.ok
    assert report.projects_synced == 1
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_new_project_a_cdn_still_404s_is_kept_queued(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.stale_404_next("alpha", times=2)
    report = await runner.sync()
    assert [f.name for f in report.failures] == ["alpha"]
    runner.clock.now += 61
    report = await runner.sync()
    assert report.ok
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_never_held_name_nothing_claims_is_forgotten_on_404(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """``--project`` (no serial to reach) for a name upstream never had: nothing to
    keep, nothing to wait for."""
    report = await runner.sync(["nothing-here"])
    assert report.ok
    assert report.projects_removed == 1
    assert len(_page_requests(upstream, "nothing-here")) == 2, "asked again, cache-busted"


async def test_an_explicit_sync_of_a_held_project_that_404s_keeps_it(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    assert (await runner.sync()).ok
    upstream.stale_404_next("alpha", times=2)
    report = await runner.sync(["alpha"])
    assert [f.name for f in report.failures] == ["alpha"]
    assert (runner.web / "simple" / "alpha" / "index.html").is_file()
    with runner.state() as state:
        assert state.todo_item(NormalizedName("alpha")) is None, "a one-off is not queued"


async def test_a_removal_the_changelog_reports_removes_at_the_first_404(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.add_release("beta", "1.0")
    assert (await runner.sync()).ok
    upstream.remove_project("alpha")
    report = await runner.sync()
    assert report.ok
    assert report.projects_removed == 1
    assert _page_requests(upstream, "alpha")[-1] == "/simple/alpha/", "no cache-bust needed"
    assert not (runner.web / "simple" / "alpha").exists()
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_removal_missed_by_the_changelog_is_not_taken_from_a_404(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """Upstream drops the project without a changelog row and a later change names it
    (as a CDN's 404 would look): the 404 alone does not remove it."""
    upstream.add_release("alpha", "1.0")
    assert (await runner.sync()).ok
    with upstream.unjournaled():
        upstream.remove_project("alpha")
    with runner.state() as state:
        state.enqueue({NormalizedName("alpha"): Serial(upstream.serial)}, now=0.0)
    report = await runner.sync()
    assert [f.name for f in report.failures] == ["alpha"]
    assert (runner.web / "simple" / "alpha" / "index.html").is_file()


async def test_no_project_is_ever_lost_to_stale_404s(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """The fault suite: a corpus synced, then changed (new releases, removed files and
    projects) and synced again and again through 50% stale 404s. After every run each
    project the mirror held and upstream still has is held whole; the projects
    upstream removed are gone once the faults stop."""
    generate_corpus(upstream, projects=30, seed=9)
    assert (await runner.sync()).ok
    rng = random.Random(12)
    removed = rng.sample(upstream.project_names(), 4)
    for name in removed:
        upstream.remove_project(name)
    for name in rng.sample(upstream.project_names(), 16):
        upstream.add_release(name, "99.0")
    upstream.faults = FaultPlan(seed=21, stale_404_rate=0.5)
    for _ in range(4):
        held = _held_files(runner)
        await runner.sync()
        assert_consistent(runner.directory)
        now_held = _held_files(runner)
        live = {canonicalize_name(n) for n in upstream.project_names()}
        for project, paths in held.items():
            if project in live:
                assert project in now_held, f"{project} lost to a stale 404"
                assert (runner.web / "simple" / project / "index.html").is_file()
                for path in paths & now_held[project]:
                    assert (runner.web / path).is_file()
        runner.clock.now += 86_400
    assert "stale_404" in {f.kind for f in upstream.injected}
    upstream.faults = None
    report = await runner.sync()
    assert report.ok, report.failures
    for name in removed:
        assert not (runner.web / "simple" / canonicalize_name(name)).exists()
    await assert_matches_upstream(runner.directory, upstream)
