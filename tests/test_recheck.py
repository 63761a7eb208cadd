"""The periodic full re-check (``recheck-interval``): the listing's serials against the
state store, every project that disagrees queued, changes the changelog missed
picked up, removals it missed confirmed."""

from __future__ import annotations

import pytest
from packaging.utils import NormalizedName

from mirror import changes
from mirror.config import parse_config
from mirror.models import Serial
from mirror.state import RECHECK_META_KEY
from mirror.sync import SyncOptions
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream

WEEK = 7 * 86_400.0


def n(name: str) -> NormalizedName:
    return NormalizedName(name)


@pytest.mark.parametrize(
    ("last", "now", "interval", "due"),
    [
        (None, 10.0, WEEK, True),
        (0.0, WEEK, WEEK, True),
        (1.0, WEEK, WEEK, False),
        (None, 10.0, 0.0, False),
        (0.0, 10 * WEEK, 0.0, False),
    ],
)
def test_a_recheck_is_due_once_the_interval_has_passed(
    last: float | None, now: float, interval: float, due: bool
) -> None:
    assert changes.is_recheck_due(last, now=now, interval_seconds=interval) is due


def test_a_recheck_queues_what_disagrees_with_the_listing() -> None:
    listed = {n("same"): Serial(3), n("newer"): Serial(9), n("new"): Serial(4)}
    held = {n("same"): Serial(3), n("newer"): Serial(5), n("gone"): Serial(2)}
    found = changes.recheck(listed, held)
    assert found.projects == {"newer": 9, "new": 4, "gone": 0}
    assert found.gone == {"gone"}
    assert found.serial == 9
    assert changes.recheck({}, {}).projects == {}


def test_recheck_interval_is_a_duration_seven_days_by_default() -> None:
    section = "[mirror]\ndirectory = /srv/mirror\n"
    assert parse_config(section).recheck_interval_seconds == WEEK
    assert parse_config(section + "recheck-interval = 0\n").recheck_interval_seconds == 0.0
    assert parse_config(section + "recheck-interval = 12h\n").recheck_interval_seconds == 43_200


@pytest.fixture
def rechecking(runner: MirrorRunner) -> MirrorRunner:
    runner.options = SyncOptions(workers=3, retry_base_seconds=60, recheck_interval=WEEK)
    return runner


def _miss_changes(upstream: FakeUpstream) -> None:
    """A new release, a removed project and a new project the changelog never shows."""
    with upstream.unjournaled():
        upstream.add_release("alpha", "2.0")
        upstream.remove_project("beta")
        upstream.add_release("gamma", "1.0")


async def _first_sync(upstream: FakeUpstream, runner: MirrorRunner) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.add_release("beta", "1.0")
    upstream.add_release("delta", "1.0")
    assert (await runner.sync()).ok
    with runner.state() as state:
        assert state.get_meta(RECHECK_META_KEY) == repr(runner.clock.now), "a full comparison"


async def test_a_change_the_changelog_missed_is_picked_up_by_a_recheck(
    upstream: FakeUpstream, rechecking: MirrorRunner
) -> None:
    await _first_sync(upstream, rechecking)
    _miss_changes(upstream)
    report = await rechecking.sync()
    assert report.projects_synced == 0, "the changelog shows nothing: not due yet"
    assert (rechecking.web / "simple" / "beta").exists()

    rechecking.clock.now += WEEK
    report = await rechecking.sync()
    assert report.ok, report.failures
    assert report.projects_removed == 1
    assert not (rechecking.web / "simple" / "beta").exists(), "gone from the listing"
    await assert_matches_upstream(rechecking.directory, upstream)
    with rechecking.state() as state:
        assert state.get_meta(RECHECK_META_KEY) == repr(rechecking.clock.now)

    calls_before = len(upstream.request_log)
    rechecking.clock.now += WEEK / 2
    report = await rechecking.sync()
    assert report.projects_synced == 0
    assert len(upstream.request_log) - calls_before == 1, "only the changelog is read"


async def test_zero_turns_the_recheck_off(upstream: FakeUpstream, rechecking: MirrorRunner) -> None:
    rechecking.options = SyncOptions(workers=3, retry_base_seconds=60, recheck_interval=0)
    await _first_sync(upstream, rechecking)
    _miss_changes(upstream)
    rechecking.clock.now += 10 * WEEK
    report = await rechecking.sync()
    assert report.projects_synced == 0
    assert (rechecking.web / "simple" / "beta").exists()
    assert not (rechecking.web / "simple" / "gamma").exists()


async def test_a_mirror_without_a_recorded_recheck_rechecks_at_once(
    upstream: FakeUpstream, rechecking: MirrorRunner
) -> None:
    await _first_sync(upstream, rechecking)
    _miss_changes(upstream)
    with rechecking.state() as state:
        state.set_meta(RECHECK_META_KEY, "not a time")
    report = await rechecking.sync()
    assert report.ok
    await assert_matches_upstream(rechecking.directory, upstream)


async def test_a_recheck_confirms_a_removal_a_stale_404_kept(
    upstream: FakeUpstream, rechecking: MirrorRunner
) -> None:
    """Upstream removes a project without a changelog row while a change names it:
    its 404 alone keeps it; the re-check's listing confirms the removal."""
    await _first_sync(upstream, rechecking)
    with upstream.unjournaled():
        upstream.remove_project("delta")
    with rechecking.state() as state:
        state.enqueue({n("delta"): Serial(upstream.serial)}, now=0.0)
    report = await rechecking.sync()
    assert [f.name for f in report.failures] == ["delta"]
    assert (rechecking.web / "simple" / "delta").exists()

    rechecking.clock.now += WEEK
    report = await rechecking.sync()
    assert report.ok, report.failures
    assert report.projects_removed == 1
    assert not (rechecking.web / "simple" / "delta").exists()
    await assert_matches_upstream(rechecking.directory, upstream)
