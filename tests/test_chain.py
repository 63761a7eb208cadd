"""A chain of mirrors over loopback: fake upstream -> mirror A -> ``mirror serve`` of A
-> mirror B -> serve of B -> mirror C. Each follows the one before through its XML-RPC
journal, deletions included, and ends up an exact copy of it."""

from __future__ import annotations

from pathlib import Path

from mirror.testing import FakeUpstream
from tests.chainsupport import first_corpus, mixed_changes, served, sync_from, tree
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
