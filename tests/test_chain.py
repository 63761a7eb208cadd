"""A chain of mirrors over loopback: fake upstream -> mirror A -> ``mirror serve`` of A
-> mirror B -> serve of B -> mirror C. Each follows the one before through its XML-RPC
journal, deletions included, and ends up an exact copy of it."""

from __future__ import annotations

from pathlib import Path

from mirror.state import STATE_NAME, StateStore
from mirror.sync import SyncOptions
from mirror.testing import FakeUpstream
from tests.chainsupport import first_corpus, mixed_changes, served, sync_from, tree
from tests.harness import Clock
from tests.mirrorcheck import assert_consistent, assert_matches_upstream


async def sync_chain(upstream: FakeUpstream, a: Path, b: Path, c: Path) -> None:
    """One sync of each mirror in turn, each from the one before."""
    report = await sync_from(upstream.base_url, a)
    assert report.ok, report
    async with served(a) as url_a:
        report = await sync_from(url_a, b)
        assert report.ok, report
        async with served(b) as url_b:
            report = await sync_from(url_b, c)
            assert report.ok, report


async def test_b_and_c_are_exact_copies_of_a_after_mixed_changes(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first_corpus(upstream)
    await sync_chain(upstream, a, b, c)
    await assert_matches_upstream(a, upstream)
    assert tree(b) == tree(a)
    assert tree(c) == tree(a)

    mixed_changes(upstream)
    await sync_chain(upstream, a, b, c)
    await assert_matches_upstream(a, upstream)
    copy = tree(a)
    assert "simple/gamma-lib/index.html" not in copy, "the removed project is gone from A"
    assert tree(b) == copy
    assert tree(c) == copy
    for mirror in (a, b, c):
        assert_consistent(mirror)


async def test_a_follower_is_done_after_one_sync_and_a_recheck_finds_nothing(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """B commits each project at the serial A published it at, so B's todo items clear
    and B's serials agree with A's listing: a second sync and a re-check sync nothing."""
    a, b = tmp_path / "a", tmp_path / "b"
    first_corpus(upstream)
    assert (await sync_from(upstream.base_url, a)).ok
    async with served(a) as url_a:
        assert (await sync_from(url_a, b)).ok
    mixed_changes(upstream)
    assert (await sync_from(upstream.base_url, a)).ok
    clock = Clock()
    async with served(a) as url_a:
        assert (await sync_from(url_a, b, clock=clock)).projects_synced > 0
        again = await sync_from(url_a, b, clock=clock)
        assert (again.projects_synced, again.projects_removed) == (0, 0)
        with StateStore.open(b / STATE_NAME) as state:
            assert state.todo_count() == 0
        clock.now += 8 * 86_400
        rechecked = await sync_from(
            url_a, b, options=SyncOptions(workers=3, recheck_interval=7 * 86_400), clock=clock
        )
        assert rechecked.ok
        assert (rechecked.projects_synced, rechecked.projects_removed) == (0, 0)
    assert tree(b) == tree(a)
