"""The sync engine against the fake upstream over real loopback HTTP, in a temp dir."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from mirror import sync as sync_module
from mirror.errors import StorageError
from mirror.state import STATE_NAME, UNFINISHED_META_KEY, StateStore
from mirror.state import queue as queue_module
from mirror.storage import FileSystemStorage, StoredBlob
from mirror.sync import SyncOptions
from mirror.testing import FakeUpstream, RawAnswer, make_wheel
from tests.harness import MirrorRunner
from tests.mirrorcheck import (
    assert_consistent,
    assert_matches_upstream,
    files_on_disk,
    published_files,
    root_html_links,
)
from tests.storagehooks import HookedStorage


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "1.1", requires_python=">=3.8")
    upstream.add_release("beta.lib", "0.1", requires_dist=["Alpha>=1.0"])
    upstream.add_release("gamma", "2.0", wheel=False)


@pytest.fixture
async def mirrored(upstream: FakeUpstream, runner: MirrorRunner) -> MirrorRunner:
    """A mirror after one sync of the seed projects."""
    seed(upstream)
    await runner.sync()
    return runner


async def test_first_sync_mirrors_everything_upstream_lists(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    report = await runner.sync()
    assert report.ok
    assert report.projects_synced == 3
    assert report.serial == upstream.serial
    await assert_matches_upstream(runner.directory, upstream)
    web = runner.web
    for name in ["alpha", "beta-lib", "gamma"]:
        page = web / "simple" / name
        assert (page / "index.html").read_bytes() == (page / "index.v1_html").read_bytes()
    root = json.loads((web / "simple" / "index.v1_json").read_bytes())
    # The mirror's own serial: its journal's newest, never below upstream's.
    with StateStore.open(runner.directory / STATE_NAME) as state:
        assert root["meta"]["_last-serial"] == state.journal_last_serial() >= upstream.serial
    assert {p["name"]: p["_last-serial"] > 0 for p in root["projects"]} == {
        "Alpha": True,
        "beta.lib": True,
        "gamma": True,
    }
    assert b'href="alpha/"' in (web / "simple" / "index.html").read_bytes()
    assert (web / "last-modified").read_text().endswith("\n")
    wheels = [f for f in published_files(web, "alpha").values() if f.core_metadata]
    assert len(wheels) == 2, "both wheels advertise the .metadata that was mirrored"
    with runner.state() as state:
        totals = state.totals()
        assert totals.projects == 3
        assert totals.files == 7
        assert totals.bytes == sum(
            p.stat().st_size for p in (web / "packages").rglob("*") if p.is_file()
        )


async def test_a_queue_longer_than_a_page_is_worked_through_a_page_at_a_time(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "_DUE_PAGE_ROWS", 2)
    monkeypatch.setattr(sync_module, "_QUEUED_ITEMS", 1)
    for n in range(7):
        upstream.add_release(f"p{n}", "1.0", wheel=False)
    upstream.serve_raw("/simple/p3/", RawAnswer(status=500, body=b"down"))
    report = await runner.sync()
    assert report.projects_synced == 6
    assert [failure.name for failure in report.failures] == ["p3"]
    assert report.pending == 1
    mirrored = sorted(page.parent.name for page in runner.web.glob("simple/*/index.v1_json"))
    assert mirrored == ["p0", "p1", "p2", "p4", "p5", "p6"]


async def test_nothing_new_costs_one_changelog_call_and_no_downloads(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.request_log.clear()
    report = await mirrored.sync()
    assert report.ok
    assert report.projects_synced == 0
    assert report.files_downloaded == 0
    assert [path for _, path in upstream.request_log] == ["/pypi"]


async def test_each_kind_of_upstream_change_is_followed(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:

    upstream.add_release("Alpha", "2.0")
    report = await mirrored.sync()
    assert report.projects_synced == 1
    assert report.files_downloaded == 2, "sdist and wheel; the .metadata comes from the wheel"
    await assert_matches_upstream(mirrored.directory, upstream)

    upstream.remove_file("Alpha", "alpha-1.0.tar.gz")
    report = await mirrored.sync()
    assert report.files_deleted == 1
    assert "alpha-1.0.tar.gz" not in files_on_disk(mirrored.directory)
    await assert_matches_upstream(mirrored.directory, upstream)

    upstream.remove_release("Alpha", "1.1")
    await mirrored.sync()
    assert not any("1.1" in name for name in files_on_disk(mirrored.directory))
    await assert_matches_upstream(mirrored.directory, upstream)

    upstream.yank("beta.lib", "0.1", reason="broken <build>")
    await mirrored.sync()
    assert {f.yanked for f in published_files(mirrored.web, "beta-lib").values()} == {
        "broken <build>"
    }
    html = (mirrored.web / "simple" / "beta-lib" / "index.html").read_text()
    assert 'data-yanked="broken &lt;build&gt;"' in html
    await assert_matches_upstream(mirrored.directory, upstream)

    upstream.unyank("beta.lib", "0.1")
    await mirrored.sync()
    assert {f.yanked for f in published_files(mirrored.web, "beta-lib").values()} == {False}
    assert "data-yanked" not in (mirrored.web / "simple" / "beta-lib" / "index.html").read_text()

    upstream.yank("gamma", "2.0")
    await mirrored.sync()
    assert 'data-yanked=""' in (mirrored.web / "simple" / "gamma" / "index.html").read_text()

    upstream.add_release("Delta", "0.0.1")
    report = await mirrored.sync()
    assert report.projects_synced == 1
    await assert_matches_upstream(mirrored.directory, upstream)


def root_pages(web: Path) -> dict[str, tuple[int, bytes]]:
    """Each root index page's inode and bytes: a rewrite renames a new file in place."""
    simple = web / "simple"
    return {
        page.name: (page.stat().st_ino, page.read_bytes())
        for page in sorted(simple.glob("index.*"))
    }


async def test_new_releases_of_known_projects_leave_the_html_root_alone(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    """The HTML root names projects only; the JSON root carries their serials."""
    before = root_pages(mirrored.web)
    upstream.add_release("Alpha", "2.0")
    upstream.yank("gamma", "2.0")
    report = await mirrored.sync()
    assert report.projects_synced == 2
    after = root_pages(mirrored.web)
    assert after["index.html"] == before["index.html"]
    assert after["index.v1_html"] == before["index.v1_html"]
    assert after["index.v1_json"][1] != before["index.v1_json"][1]
    root = json.loads(after["index.v1_json"][1])
    # The mirror's own serials (its journal's), never below upstream's.
    with StateStore.open(mirrored.directory / STATE_NAME) as state:
        journal = state.journal_last_serial()
        assert {p["_last-serial"] for p in root["projects"]} == set(
            state.journal_listing().values()
        )
    assert root["meta"]["_last-serial"] == journal >= upstream.serial
    assert max(p["_last-serial"] for p in root["projects"]) == journal
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_a_new_or_removed_project_rewrites_the_html_root(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.add_release("Delta", "0.1")
    await mirrored.sync()
    assert ("delta", "Delta") in root_html_links(mirrored.web)
    await assert_matches_upstream(mirrored.directory, upstream)
    upstream.remove_project("Delta")
    await mirrored.sync()
    assert [name for name, _ in root_html_links(mirrored.web)] == ["alpha", "beta-lib", "gamma"]
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_an_unfinished_run_or_a_missing_page_has_the_html_root_written_again(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    expected = (mirrored.web / "simple" / "index.html").read_bytes()
    (mirrored.web / "simple" / "index.html").write_bytes(b"stale")
    with mirrored.state() as state:
        state.set_meta(UNFINISHED_META_KEY, "killed")
    await mirrored.sync()
    assert (mirrored.web / "simple" / "index.html").read_bytes() == expected
    (mirrored.web / "simple" / "index.v1_html").unlink()
    await mirrored.sync()
    assert (mirrored.web / "simple" / "index.v1_html").read_bytes() == expected


async def test_a_json_only_mirror_rewrites_its_root_only_on_change(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = SyncOptions(formats=frozenset({"json"}))
    await runner.sync()
    before = root_pages(runner.web)
    assert list(before) == ["index.v1_json"]
    await runner.sync()
    assert root_pages(runner.web) == before
    upstream.add_release("Alpha", "2.0")
    await runner.sync()
    assert root_pages(runner.web)["index.v1_json"][1] != before["index.v1_json"][1]


async def test_a_project_removed_upstream_disappears_from_pages_and_disk(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.remove_project("gamma")
    report = await mirrored.sync()
    assert report.projects_removed == 1
    assert not (mirrored.web / "simple" / "gamma").exists()
    assert not any(name.startswith("gamma") for name in files_on_disk(mirrored.directory))
    root = (mirrored.web / "simple" / "index.html").read_text()
    assert "gamma" not in root
    await assert_matches_upstream(mirrored.directory, upstream)
    with mirrored.state() as state:
        assert state.project(canonicalize_name("gamma")) is None


async def test_a_project_recreated_after_removal_starts_afresh(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.remove_project("gamma")
    upstream.add_release("Gamma", "3.0")
    await mirrored.sync()
    await assert_matches_upstream(mirrored.directory, upstream)
    assert set(published_files(mirrored.web, "gamma")) == {
        "gamma-3.0.tar.gz",
        "gamma-3.0-py3-none-any.whl",
    }


async def test_explicit_projects_sync_only_those_and_leave_the_serial(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    report = await runner.sync(projects=["beta.lib"])
    assert report.ok
    assert report.serial is None, "a --project run does not claim the whole mirror is in step"
    assert {p.name for p in (runner.web / "simple").iterdir() if p.is_dir()} == {"beta-lib"}
    root = json.loads((runner.web / "simple" / "index.v1_json").read_bytes())
    assert [p["name"] for p in root["projects"]] == ["beta.lib"]
    assert_consistent(runner.directory)


class FailingStorage(HookedStorage):
    """A disk that refuses every file whose name contains ``poison``."""

    async def before_store(
        self, relative: str, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        if "poison" in relative:
            raise StorageError(f"{relative}: injected failure")
        return chunks


async def test_a_failing_project_does_not_block_the_rest_or_the_serial(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    upstream.add_release("poison", "1.0")
    runner.storage_factory = FailingStorage
    report = await runner.sync()
    assert not report.ok
    assert [f.name for f in report.failures] == ["poison"]
    assert "injected failure" in report.failures[0].error
    assert report.projects_synced == 3
    assert report.serial == upstream.serial, "the failure does not hold back the serial"
    assert not (runner.web / "simple" / "poison").exists(), "no page links a missing file"
    assert_consistent(runner.directory)
    with runner.state() as state:
        item = state.todo_item(canonicalize_name("poison"))
        assert item is not None
        assert item.attempts == 1
        assert item.next_attempt == runner.clock.now + 60

    # Before its back-off expires, the next run leaves it alone but follows new changes.
    upstream.add_release("Alpha", "3.0")
    report = await runner.sync()
    assert report.ok
    assert report.projects_synced == 1
    assert report.pending == 1

    # Once due, and with the disk fixed, it lands.
    runner.clock.now += 61
    runner.storage_factory = FileSystemStorage
    report = await runner.sync()
    assert report.ok
    assert report.projects_synced == 1
    assert report.pending == 0
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_failing_project_backs_off_exponentially(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("poison", "1.0")
    runner.storage_factory = FailingStorage
    delays = []
    for _ in range(3):
        report = await runner.sync()
        (failure,) = report.failures
        delays.append(failure.next_attempt - runner.clock.now)
        runner.clock.now = failure.next_attempt
    assert delays == [60, 120, 240]


class InterruptingStorage(HookedStorage):
    """Cancels the run once ``limit`` files have landed, like a SIGINT mid-sync."""

    limit = 4
    stored = 0
    task: asyncio.Task[object] | None = None

    async def after_store(self, relative: str, blob: StoredBlob) -> None:
        type(self).stored += 1
        if type(self).stored == self.limit and self.task is not None:
            self.task.cancel()


async def test_an_interrupted_sync_resumes_without_downloading_again(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    for i in range(6):
        upstream.add_release(f"proj{i}", "1.0")
    runner.storage_factory = InterruptingStorage
    task = asyncio.create_task(runner.sync())
    InterruptingStorage.task = task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_consistent(runner.directory)
    with runner.state() as state:
        assert state.mirror_serial() == upstream.serial
        assert state.todo_count() > 0, "unfinished projects stay queued"
    landed = len([f for f in files_on_disk(runner.directory) if not f.endswith(".metadata")])
    assert landed >= InterruptingStorage.limit

    runner.storage_factory = FileSystemStorage
    report = await runner.sync()
    assert report.ok
    # 6 sdists and 6 wheels; every .metadata comes from its wheel.
    assert report.files_downloaded == 12 - landed, "what landed before is not fetched again"
    await assert_matches_upstream(runner.directory, upstream)


async def test_files_already_on_disk_are_adopted_after_hashing(
    upstream: FakeUpstream, mirrored: MirrorRunner, tmp_path: Path
) -> None:
    """A tree from an earlier mirror (or a run killed before its commit) is reused."""
    other = MirrorRunner(upstream=upstream, directory=tmp_path / "copy")
    (other.directory).mkdir()
    (other.directory / "web").symlink_to(mirrored.web, target_is_directory=True)
    report = await other.sync()
    assert report.ok
    assert report.files_downloaded == 0
    assert report.projects_synced == 3


async def test_json_api_as_metadata_source_and_the_json_copy(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = SyncOptions(metadata_source="json", keep_json=True)
    report = await runner.sync()
    assert report.ok
    await assert_matches_upstream(runner.directory, upstream)
    copy = json.loads((runner.web / "pypi" / "alpha" / "json").read_bytes())
    assert copy["info"]["name"] == "Alpha"


async def test_only_the_configured_formats_are_written(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = SyncOptions(formats=frozenset({"html"}))
    await runner.sync()
    page = runner.web / "simple" / "alpha"
    assert sorted(p.name for p in page.iterdir()) == ["index.html", "index.v1_html"]
    assert not (runner.web / "simple" / "index.v1_json").exists()


async def test_a_wheel_with_dependencies_is_published_with_its_metadata(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    filename, wheel, metadata = make_wheel("app", "1.0", requires_dist=["lib>=1"])
    upstream.add_file("app", "1.0", filename, wheel, metadata=metadata)
    await runner.sync()
    stored = next((runner.web / "packages").rglob(f"{filename}.metadata"))
    assert stored.read_bytes() == metadata
    assert b"Requires-Dist: lib>=1" in metadata


async def test_a_project_held_locally_but_gone_upstream_is_removed_by_the_first_full_sync(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """Projects synced with --project before the first full run are checked too."""
    seed(upstream)
    await runner.sync(projects=["gamma"])
    upstream.remove_project("gamma")
    report = await runner.sync()
    assert report.ok
    assert report.projects_removed == 1
    assert not (runner.web / "simple" / "gamma").exists()
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_failing_explicit_project_is_reported_but_not_queued(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    upstream.fail_next("/simple/gamma/", status=500, times=10)
    report = await runner.sync(projects=["gamma"])
    assert not report.ok
    assert [f.name for f in report.failures] == ["gamma"]
    assert report.failures[0].attempts == 1
    assert "500" in report.failures[0].error
    with runner.state() as state:
        assert state.todo_count() == 0, "a one-off run does not queue its failures"


async def test_an_explicit_project_without_releases_keeps_its_normalized_name(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Empty.Project", "1.0")
    upstream.remove_release("Empty.Project", "1.0")
    report = await runner.sync(projects=["empty.project"])
    assert report.ok
    root = json.loads((runner.web / "simple" / "index.v1_json").read_bytes())
    assert [p["name"] for p in root["projects"]] == ["empty-project"]
    page = json.loads((runner.web / "simple" / "empty-project" / "index.v1_json").read_bytes())
    assert page["files"] == []


async def test_a_json_copy_is_dropped_when_the_json_api_has_no_project(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Alpha", "1.0")
    runner.options = SyncOptions(keep_json=True)
    await runner.sync()
    assert (runner.web / "pypi" / "alpha" / "json").exists()
    upstream.remove_release("Alpha", "1.0")
    report = await runner.sync()
    assert report.ok
    assert not (runner.web / "pypi" / "alpha").exists()
    assert (
        json.loads((runner.web / "simple" / "alpha" / "index.v1_json").read_bytes())["files"] == []
    )


async def test_a_metadata_file_that_failed_is_fetched_alone_next_time(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    filename, wheel, _ = make_wheel("app", "1.0")
    # Not the wheel's own METADATA, so it cannot be taken from the wheel: fetched.
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n\n"
    upstream.add_file("app", "1.0", filename, wheel, metadata=metadata)
    path = upstream.file_url("app", filename).split("/", 3)[3]
    upstream.fail_next(f"/{path}.metadata", status=404, times=1)
    first = await runner.sync()
    assert not first.ok
    assert not (runner.web / "simple" / "app").exists(), "no page links a half-fetched file"

    runner.clock.now += 10**6
    second = await runner.sync()
    assert second.ok
    assert second.files_downloaded == 1, "the wheel itself is not fetched again"
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_wrong_file_at_the_target_path_is_replaced_not_adopted(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("Alpha", "1.0", wheel=False)
    url = upstream.file_url("Alpha", "alpha-1.0.tar.gz")
    target = runner.web / url.split("/", 3)[3]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the sdist")
    report = await runner.sync()
    assert report.ok
    assert report.files_downloaded == 1
    assert target.read_bytes() != b"not the sdist"
    await assert_matches_upstream(runner.directory, upstream)


async def test_files_left_by_a_run_killed_before_deleting_are_collected(
    mirrored: MirrorRunner,
) -> None:
    # What a run killed between its commit and the unlinks leaves: the commit moved
    # the sdist to the garbage table, the file is still on disk.
    with mirrored.state() as state:
        files = state.project_files(canonicalize_name("gamma"))
        garbage = state.commit_project(
            name=canonicalize_name("gamma"),
            display_name="gamma",
            serial=state.project(canonicalize_name("gamma")).serial,  # type: ignore[union-attr]
            status="active",
            delete=files.keys(),
        )
    assert sorted(garbage) == sorted(files)
    report = await mirrored.sync()
    assert report.files_deleted == len(files)
    for path in files:
        assert not (mirrored.web / path).exists()
    with mirrored.state() as state:
        assert state.garbage() == []


async def test_json_only_format_writes_no_html(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = SyncOptions(formats=frozenset({"json"}))
    assert (await runner.sync()).ok
    assert sorted(p.name for p in (runner.web / "simple").iterdir() if p.is_file()) == [
        "index.v1_json"
    ]
    assert sorted(p.name for p in (runner.web / "simple" / "alpha").iterdir()) == ["index.v1_json"]


async def test_metadata_backfilled_upstream_is_fetched_without_the_file_again(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """PyPI backfilled PEP 658 files for old wheels; a re-check picks them up alone."""
    filename, wheel, metadata = make_wheel("old", "1.0")
    upstream.add_file("old", "1.0", filename, wheel)
    await runner.sync()
    assert not published_files(runner.web, "old")[filename].core_metadata
    upstream.backfill_metadata("old", filename, metadata)
    report = await runner.sync(projects=["old"])
    assert report.ok
    assert report.files_downloaded == 0, "the wheel is not fetched again, its METADATA is used"
    assert published_files(runner.web, "old")[filename].core_metadata
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_wheels_metadata_is_taken_from_the_wheel_without_a_request(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    filename, wheel, metadata = make_wheel("app", "1.0")
    upstream.add_file("app", "1.0", filename, wheel, metadata=metadata)
    report = await runner.sync()
    assert report.ok
    assert report.files_downloaded == 1
    assert not [path for _, path in upstream.request_log if path.endswith(".metadata")]
    stored = next((runner.web / "packages").rglob(f"{filename}.metadata"))
    assert stored.read_bytes() == metadata
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_sidecar_already_on_disk_is_adopted_not_downloaded(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """A run killed after writing a ``.metadata`` but before recording it leaves it for
    the next run to adopt (an sdist's sidecar cannot be taken from the file)."""
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n\n"
    upstream.add_file("app", "1.0", "app-1.0.tar.gz", b"sdist bytes", metadata=metadata)
    path = upstream.file_url("app", "app-1.0.tar.gz").split("/", 3)[3]
    upstream.fail_next(f"/{path}.metadata", status=404, times=1)
    assert not (await runner.sync()).ok
    (runner.web / f"{path}.metadata").write_bytes(metadata)
    runner.clock.now += 10**6
    report = await runner.sync()
    assert report.ok
    assert report.files_downloaded == 0
    assert published_files(runner.web, "app")["app-1.0.tar.gz"].core_metadata
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_metadata_that_cannot_be_derived_is_fetched_beside_its_file(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """The sdist's answer waits for its ``.metadata`` to be asked for: fetched one
    after the other, the sync would stall until the sdist gives up waiting."""
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n\n"
    sdist = b"sdist bytes"
    upstream.add_file("app", "1.0", "app-1.0.tar.gz", sdist, metadata=metadata)
    path = "/" + upstream.file_url("app", "app-1.0.tar.gz").split("/", 3)[3]
    asked = asyncio.Event()
    overlapped: list[bool] = []

    async def sidecar_chunks() -> AsyncIterator[bytes]:
        asked.set()
        yield metadata

    async def sdist_chunks() -> AsyncIterator[bytes]:
        try:
            await asyncio.wait_for(asked.wait(), timeout=5)
        except TimeoutError:
            overlapped.append(False)
        else:
            overlapped.append(True)
        yield sdist

    upstream.serve_raw(f"{path}.metadata", RawAnswer(chunks=sidecar_chunks))
    upstream.serve_raw(path, RawAnswer(chunks=sdist_chunks))
    report = await runner.sync()
    assert report.ok
    assert overlapped == [True]
    assert (runner.web / f"{path[1:]}.metadata").read_bytes() == metadata
    await assert_matches_upstream(runner.directory, upstream)


async def test_an_explicit_known_project_asks_nothing_for_its_display_name(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    assert (await runner.sync()).ok
    upstream.request_log.clear()
    report = await runner.sync(projects=["beta.lib"])
    assert report.ok
    assert [path for _, path in upstream.request_log if path.startswith("/pypi/")] == []
    root = json.loads((runner.web / "simple" / "index.v1_json").read_bytes())
    assert "beta.lib" in [p["name"] for p in root["projects"]]


async def test_a_failed_display_name_lookup_fails_the_new_project_only_when_needed(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    upstream.fail_next("/pypi/beta.lib/json", status=500, times=10)
    upstream.fail_next("/pypi/beta-lib/json", status=500, times=10)
    report = await runner.sync(projects=["beta.lib"])
    assert [f.name for f in report.failures] == ["beta-lib"]
    assert "500" in report.failures[0].error
    assert not (runner.web / "simple" / "beta-lib").exists()


async def test_a_file_that_fails_beside_its_metadata_fails_the_project_and_lands_later(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n\n"
    upstream.add_file("app", "1.0", "app-1.0.tar.gz", b"sdist bytes", metadata=metadata)
    path = upstream.file_url("app", "app-1.0.tar.gz").split("/", 3)[3]
    upstream.fail_next(f"/{path}", status=404, times=1)
    first = await runner.sync()
    assert [f.name for f in first.failures] == ["app"]
    assert not (runner.web / "simple" / "app").exists(), "no page links a missing file"
    runner.clock.now += 10**6
    assert (await runner.sync()).ok
    assert (runner.web / path).read_bytes() == b"sdist bytes"
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_metadata_on_disk_beside_a_missing_file_is_adopted(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """A run killed after the sidecar landed but before its file did."""
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n\n"
    upstream.add_file("app", "1.0", "app-1.0.tar.gz", b"sdist bytes", metadata=metadata)
    path = upstream.file_url("app", "app-1.0.tar.gz").split("/", 3)[3]
    (runner.web / path).parent.mkdir(parents=True)
    (runner.web / f"{path}.metadata").write_bytes(metadata)
    report = await runner.sync()
    assert report.ok
    assert report.files_downloaded == 1, "the sdist alone"
    assert not [p for _, p in upstream.request_log if p.endswith(".metadata")]
    await assert_matches_upstream(runner.directory, upstream)
