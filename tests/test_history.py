"""The file history in the state store and ``keep-removed``: upload, first-mirrored and
removal times and serials per file, written only when a file changes, the migration
of version 2 stores, and removed files kept on disk for their window."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from mirror.models import PackagePath, Serial
from mirror.state import SCHEMA_VERSION, HistoryFile, Moment, StateStore
from mirror.state import schema as schema_module
from mirror.state.timeline import HistoryEntry
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from mirror.verify import verify
from tests.harness import MirrorRunner

UPLOADED = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def add_wheel(upstream: FakeUpstream, version: str, uploaded: datetime) -> str:
    filename, content, metadata = make_wheel("Demo", version)
    upstream.add_file("Demo", version, filename, content, metadata=metadata, upload_time=uploaded)
    return filename


def by_filename(runner: MirrorRunner) -> dict[str, HistoryFile]:
    with runner.state() as state:
        return {row.filename: row for row in state.file_history(canonicalize_name("demo"))}


async def test_a_sync_records_upload_time_first_mirrored_and_removal(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    first = add_wheel(upstream, "1.0", UPLOADED)
    runner.clock.now = 2_000_000_000.0
    await runner.sync()
    serial_one = upstream.serial
    (row,) = by_filename(runner).values()
    assert dataclasses.asdict(row) | {"path": None} == {
        "path": None,
        "project": "demo",
        "filename": first,
        "size": row.size,
        "sha256": row.sha256,
        "metadata_sha256": row.metadata_sha256,
        "requires_python": None,
        "yanked": None,
        "provenance": None,
        "upload_time": UPLOADED.timestamp(),
        "mirrored_at": 2_000_000_000.0,
        "mirrored_serial": serial_one,
        "removed_at": None,
        "removed_serial": None,
    }
    assert row.metadata_sha256 is not None

    second = add_wheel(upstream, "2.0", UPLOADED.replace(month=11))
    upstream.remove_file("Demo", first)
    runner.clock.now = 2_000_000_100.0
    await runner.sync()
    rows = by_filename(runner)
    assert rows[first].removed_at == 2_000_000_100.0
    assert rows[first].removed_serial == upstream.serial
    assert rows[first].mirrored_at == 2_000_000_000.0
    assert rows[second].mirrored_serial == upstream.serial
    assert rows[second].removed_at is None
    # keep-removed is 0: the file went at once, as before.
    assert not (runner.web / rows[first].path).exists()


async def test_a_yank_updates_the_row_and_a_removed_project_is_marked_removed(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    filename = add_wheel(upstream, "1.0", UPLOADED)
    await runner.sync()
    upstream.yank("Demo", "1.0", reason="broken")
    await runner.sync()
    assert by_filename(runner)[filename].yanked == "broken"
    upstream.remove_project("Demo")
    runner.clock.now += 50
    await runner.sync()
    row = by_filename(runner)[filename]
    assert row.removed_at == runner.clock.now
    assert row.removed_serial == upstream.serial


def test_a_commit_writes_only_the_rows_that_change(tmp_path: Path) -> None:
    name = canonicalize_name("demo")
    entry = HistoryEntry(
        path=PackagePath("packages/aa/bb/cc/demo-1.0.tar.gz"),
        filename="demo-1.0.tar.gz",
        size=10,
        sha256="0" * 64,
        metadata_sha256=None,
        requires_python=None,
        yanked=None,
        provenance=None,
        upload_time=5.0,
    )
    with StateStore.open(tmp_path / "mirror.db") as state:

        def commit(kept: list[HistoryEntry], now: float) -> None:
            state.commit_project(
                name=name,
                display_name="Demo",
                serial=Serial(int(now)),
                status="active",
                delete=(),
                kept=kept,
                now=now,
            )

        commit([entry], 100.0)
        commit([entry], 200.0)  # unchanged: first mirrored stays at 100
        (row,) = state.file_history(name)
        assert (row.mirrored_at, row.mirrored_serial) == (100.0, 100)
        commit([dataclasses.replace(entry, yanked="")], 300.0)
        (row,) = state.file_history(name)
        assert (row.yanked, row.mirrored_at) == ("", 100.0)
        commit([], 400.0)
        (row,) = state.file_history(name)
        assert (row.removed_at, row.removed_serial) == (400.0, 400)
        commit([entry], 500.0)  # back after its removal: a new life
        (row,) = state.file_history(name)
        assert (row.mirrored_at, row.removed_at, row.yanked) == (500.0, None, None)


def test_a_version_2_store_migrates_with_a_history_row_per_recorded_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mirror.db"
    connection = sqlite3.connect(path)
    connection.executescript(schema_module._DDL)
    connection.executescript(schema_module._DDL_2)
    connection.executescript(
        "INSERT INTO meta VALUES ('schema_version', '2'), ('mirror_serial', '42');"
        "INSERT INTO projects VALUES ('a', 'A', 40, 'active', 1, 300);"
        "INSERT INTO files VALUES ('packages/aa/bb/cc/a-1.tar.gz', 'a', 'a-1.tar.gz',"
        " 300, 'ff', NULL, NULL);"
        "INSERT INTO garbage VALUES ('packages/xx/yy/zz/old.tar.gz');"
    )
    connection.commit()
    connection.close()
    migrated_after = datetime.now(UTC).timestamp() - 5
    with StateStore.open(path) as state:
        assert state.get_meta("schema_version") == str(SCHEMA_VERSION)
        (row,) = state.file_history(canonicalize_name("a"))
        assert (row.filename, row.size, row.mirrored_serial, row.upload_time) == (
            "a-1.tar.gz",
            300,
            40,
            None,
        )
        assert row.mirrored_at > migrated_after
        # The old garbage is due at once, as it was.
        assert state.garbage(now=0.0) == [PackagePath("packages/xx/yy/zz/old.tar.gz")]
        assert state.held_count() == 0


async def test_keep_removed_keeps_removed_files_on_disk_for_their_window(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    runner.options = dataclasses.replace(runner.options, keep_removed=30 * 86400.0)
    old = add_wheel(upstream, "1.0", UPLOADED)
    sdist, content = make_sdist("Demo", "1.0")
    upstream.add_file("Demo", "1.0", sdist, content, upload_time=UPLOADED)
    await runner.sync()
    rows = by_filename(runner)
    wheel_path = runner.web / rows[old].path
    sdist_path = runner.web / rows[sdist].path
    upstream.remove_file("Demo", old)
    upstream.remove_project("Demo")
    await runner.sync()
    # Gone from the live pages and the inventory, still on disk with its sidecar.
    assert not (runner.web / "simple" / "demo").exists()
    assert wheel_path.exists()
    assert sdist_path.exists()
    assert (wheel_path.parent / f"{wheel_path.name}.metadata").exists()
    with runner.state() as state:
        assert state.file(rows[old].path) is None
        assert state.is_retained(rows[old].path)
    # Nor are they orphans to `mirror verify --delete-orphans`.
    outcome = await verify(runner.directory, formats=frozenset({"html", "json"}), workers=1)
    assert outcome.report.problems == ()
    runner.clock.now += 29 * 86400.0
    await runner.sync()
    assert wheel_path.exists()
    runner.clock.now += 2 * 86400.0
    await runner.sync()
    assert not wheel_path.exists()
    assert not sdist_path.exists()
    with runner.state() as state:
        assert state.garbage() == []


def test_the_view_of_a_moment_by_time_and_by_serial(tmp_path: Path) -> None:
    name = canonicalize_name("demo")

    def entry(filename: str, uploaded: float | None) -> HistoryEntry:
        return HistoryEntry(
            path=PackagePath(f"packages/aa/bb/cc/{filename}"),
            filename=filename,
            size=1,
            sha256="0" * 64,
            metadata_sha256=None,
            requires_python=None,
            yanked=None,
            provenance=None,
            upload_time=uploaded,
        )

    old, new, untimed = (
        entry("demo-1.tar.gz", 10.0),
        entry("demo-2.tar.gz", 150.0),
        entry("demo-3.tar.gz", None),
    )
    with StateStore.open(tmp_path / "mirror.db") as state:

        def commit(
            kept: list[HistoryEntry], serial: int, now: float, status: str = "active"
        ) -> None:
            state.commit_project(
                name=name,
                display_name="Demo",
                serial=Serial(serial),
                status=status,
                delete=(),
                kept=kept,
                now=now,
            )

        commit([old], 1, 100.0)
        commit([old, new, untimed], 2, 200.0)
        commit([new, untimed], 3, 300.0)

        def names(**moment: float) -> list[str]:
            # Removed files still on disk unless the test says otherwise.
            moment = {"keep_removed": 10_000.0} | moment
            at = Moment(now=1000.0, **moment)  # type: ignore[arg-type]
            return [row.filename for row in state.files_at(name, at)]

        # By time: upload time (commit time without one), removals after the moment.
        assert names(at=50.0) == ["demo-1.tar.gz"]
        assert names(at=160.0) == ["demo-1.tar.gz", "demo-2.tar.gz"]
        assert names(at=250.0) == ["demo-1.tar.gz", "demo-2.tar.gz", "demo-3.tar.gz"]
        # Removed at 300 and no keep-removed window: its file is gone, so is the link.
        assert names(at=250.0, keep_removed=0.0) == ["demo-2.tar.gz", "demo-3.tar.gz"]
        assert names(at=5.0) == []
        # By serial: committed at or before it, not removed by then.
        assert names(serial=1) == ["demo-1.tar.gz"]
        assert names(serial=3) == ["demo-2.tar.gz", "demo-3.tar.gz"]
        # The cooldown caps every view: nothing uploaded within it shows.
        assert names(serial=3, cooldown=900.0) == ["demo-3.tar.gz"]
        pages = list(state.projects_at(Moment(now=1000.0, at=50.0, keep_removed=1e4)))
        assert pages == [[(name, "Demo", Serial(1))]]
        assert list(state.projects_at(Moment(now=1000.0, at=1.0))) == [[]]
        commit([new, untimed], 4, 400.0, status="quarantined")
        assert names(serial=4) == []


def test_held_files_are_counted_and_found_due_by_their_earliest_upload(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        for project, uploads in [("a", [50.0, 70.0]), ("b", [90.0])]:
            state.commit_project(
                name=canonicalize_name(project),
                display_name=project,
                serial=Serial(7),
                status="active",
                delete=(),
                held_uploads=uploads,
            )
        assert state.held_count() == 3
        # Queued already (failing, backing off): left to its queued retry.
        state.enqueue({canonicalize_name("b"): Serial(8)}, now=0.0)
        assert state.queue_due_held(100.0, 5.0) == [canonicalize_name("a")]
        queued = {i.name: i for page in state.due_pages(10.0) for i in page}
        due = queued[canonicalize_name("a")]
        assert (due.serial, due.next_attempt) == (7, 5.0)
        assert state.queue_due_held(100.0, 5.0) == []
        state.remove_project(canonicalize_name("a"))
        assert state.held_count() == 1


def test_a_moment_is_a_time_or_a_serial() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Moment(now=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Moment(now=1.0, at=1.0, serial=Serial(1))
