"""``mirror status``: serial, size, last run, failures, history and the recount audit,
read from the state store after real syncs against the fake upstream."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from mirror import app
from mirror.cli import main
from mirror.config import Config
from mirror.errors import StateError
from mirror.models import Serial
from mirror.state import SCHEMA_VERSION, RunRecord, StateStore, Totals
from mirror.state import inventory as inventory_module
from mirror.state import schema as schema_module
from mirror.status import (
    read_status,
    recount_store,
    render_history,
    render_recount,
    render_status,
    status_json,
)
from mirror.storage import FileSystemStorage
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.add_release("beta", "1.0", wheel=False)
    upstream.add_release("gamma", "1.0", wheel=False)


@pytest.fixture
async def mirrored(upstream: FakeUpstream, runner: MirrorRunner) -> MirrorRunner:
    """A mirror after one sync of the seed projects."""
    seed(upstream)
    await runner.sync()
    return runner


@pytest.fixture
async def storage(mirrored: MirrorRunner) -> AsyncIterator[FileSystemStorage]:
    async with FileSystemStorage(mirrored.web) as opened:
        yield opened


def disk_bytes(runner: MirrorRunner) -> int:
    return sum(p.stat().st_size for p in (runner.web / "packages").rglob("*") if p.is_file())


async def test_status_after_additions_deletions_and_failures(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.add_release("alpha", "2.0")
    upstream.remove_project("gamma")
    upstream.add_release("beta", "2.0", wheel=False)
    upstream.fail_next("/simple/beta/", 500, times=10)
    mirrored.clock.now += 100
    report = await mirrored.sync()
    assert not report.ok
    with mirrored.state() as state:
        status = read_status(state, now=mirrored.clock.now + 60)
        runs = state.runs()
    assert status.mirror_serial == upstream.serial
    assert status.upstream_serial == upstream.serial
    assert status.upstream_serial_source == "last_run"
    assert status.lag == 0
    assert status.totals == Totals(projects=2, files=5, bytes=disk_bytes(mirrored))
    assert [item.name for item in status.failures] == ["beta"]
    assert status.last_run is not None
    assert not status.last_run.ok
    assert status.last_run.projects_synced == 1
    assert status.last_run.projects_removed == 1
    assert status.last_run.projects_failed == 1
    assert status.last_success is not None
    assert status.last_success.finished == pytest.approx(1_000_000.0)
    assert status.seconds_since_last_success == pytest.approx(160.0)
    assert status.downloaded_bytes_total == sum(run.bytes_downloaded for run in runs)

    text = render_status(status)
    assert f"mirror serial:    {upstream.serial}\n" in text
    assert f"upstream serial:  {upstream.serial} (at the last run)\n" in text
    assert "lag:              0 serial(s)\n" in text
    assert "last success:     2 minutes and 40 seconds ago\n" in text
    assert "size:             2 projects, 5 files, " in text
    assert "last run:         incomplete, ended 1970-01-12 13:48:20 UTC" in text
    assert "1 synced, 1 removed, 1 failed" in text
    assert "failing:          1 project(s)\n  beta: 1 attempt(s), next retry " in text

    document = json.loads(status_json(status, history=runs))
    assert document["mirror_serial"] == upstream.serial
    assert document["lag"] == 0
    assert document["projects"] == 2
    assert document["files"] == 5
    assert document["bytes"] == disk_bytes(mirrored)
    assert document["last_run"]["ok"] is False
    assert document["last_run"]["projects_failed"] == 1
    assert document["last_success"] == pytest.approx(1_000_000.0)
    assert [f["name"] for f in document["failures"]] == ["beta"]
    assert document["failures"][0]["attempts"] == 1
    assert "500" in document["failures"][0]["last_error"]
    assert [h["projects"] for h in document["history"]] == [3, 2]
    assert "recount" not in document


async def test_status_before_any_run_says_so(runner: MirrorRunner) -> None:
    with runner.state() as state:
        status = read_status(state, now=0.0)
    assert status.lag is None
    text = render_status(status)
    assert "mirror serial:    none\n" in text
    assert "upstream serial" not in text
    assert "last success:     never\n" in text
    assert "last run:         none recorded\n" in text
    document = json.loads(status_json(status))
    assert document["last_run"] is None
    assert document["last_success"] is None
    assert document["upstream_serial_source"] is None


async def test_a_serial_asked_for_just_now_gives_the_lag(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.add_release("delta", "1.0")
    with mirrored.state() as state:
        status = read_status(state, now=0.0, upstream_serial=Serial(upstream.serial))
    assert status.lag is not None
    assert status.lag > 0
    assert f"upstream serial:  {upstream.serial} (now)\n" in render_status(status)


async def test_history_table_has_one_row_per_run_with_the_size_delta(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    mirrored.clock.now += 86_400
    upstream.remove_project("gamma")
    await mirrored.sync()
    with mirrored.state() as state:
        runs = state.runs()
        assert state.runs(limit=1) == runs[-1:]
    lines = render_history(runs).splitlines()
    assert lines[0].split() == ["date", "serial", "projects", "files", "size", "delta"]
    assert len(lines) == 3
    assert lines[1].startswith("1970-01-12 13:46:40 UTC")
    assert lines[1].split()[-1] != "-"
    assert lines[2].startswith("1970-01-13 13:46:40 UTC")
    assert lines[2].split()[-2].startswith("-"), "the size shrank"
    grown = render_history([runs[1], runs[0]]).splitlines()[2]
    assert grown.split()[-2].startswith("+")


async def test_counters_follow_commits_and_removals_without_summing_rows(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    upstream.add_release("alpha", "2.0")
    upstream.remove_project("beta")
    await mirrored.sync()
    with mirrored.state() as state:
        assert state.totals() == state.recount_totals()
        assert state.totals().bytes == disk_bytes(mirrored)


async def test_recount_finds_and_fixes_drift(
    mirrored: MirrorRunner, storage: FileSystemStorage
) -> None:
    with mirrored.state() as state:
        alpha = sorted(state.project_files(canonicalize_name("alpha")).values(), key=str)
        beta = next(iter(state.project_files(canonicalize_name("beta")).values()))
        honest = state.totals()
        state.set_totals(Totals(projects=99, files=honest.files, bytes=honest.bytes + 5))
    wheel = next(f for f in alpha if f.metadata_size is not None)
    (mirrored.web / beta.path).unlink()
    (mirrored.web / f"{wheel.path}.metadata").write_bytes(b"tampered")
    stray = mirrored.web / "packages" / "zz" / "stray.whl"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")

    with mirrored.state() as state:
        report = await recount_store(state, storage)
        assert state.totals() == honest, "the counters are fixed"
        again = await recount_store(state, storage)
    assert report.counters_drifted
    assert report.counted == Totals(projects=99, files=honest.files, bytes=honest.bytes + 5)
    assert report.recounted == honest
    assert report.missing == (beta.path,)
    assert report.wrong_size == (f"{wheel.path}.metadata",)
    assert report.stray == ("packages/zz/stray.whl",)
    assert report.disk_files == honest.files - 1
    assert report.disk_bytes == disk_bytes(mirrored) - 1
    text = render_recount(report)
    assert "counters drifted and were fixed: 99 -> 3 projects" in text
    assert f"missing: 1\n  {beta.path}\n" in text
    assert "not listed: 1\n  packages/zz/stray.whl\n" in text
    assert "the disk matches" not in text
    assert not again.counters_drifted
    assert "counters match the project rows" in render_recount(again)


async def test_recount_of_a_clean_mirror_reports_no_drift(
    mirrored: MirrorRunner, storage: FileSystemStorage
) -> None:
    with mirrored.state() as state:
        report = await recount_store(state, storage)
    assert not report.counters_drifted
    assert not report.disk_drifted
    assert render_recount(report).endswith("the disk matches the state\n")


async def test_recount_ignores_files_waiting_for_garbage_collection(
    mirrored: MirrorRunner, storage: FileSystemStorage
) -> None:
    with mirrored.state() as state:
        garbage = state.remove_project(canonicalize_name("beta"))
        report = await recount_store(state, storage)
    assert garbage
    assert report.stray == ()


def test_migration_from_version_1_keeps_data_and_seeds_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    connection = sqlite3.connect(path)
    connection.executescript(schema_module._DDL)
    connection.executescript(
        "INSERT INTO meta VALUES ('schema_version', '1'), ('mirror_serial', '42');"
        "INSERT INTO projects VALUES ('a', 'A', 40, 'active', 2, 300),"
        " ('b', 'B', 41, 'active', 1, 50);"
    )
    connection.commit()
    connection.close()
    with StateStore.open(path) as state:
        assert state.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert state.mirror_serial() == 42
        assert state.totals() == Totals(projects=2, files=3, bytes=350)
        assert state.runs() == []
        assert state.downloaded_bytes_total() == 0


def test_read_only_store_refuses_an_old_schema_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="unable to open"):
        StateStore.open_read_only(tmp_path / "absent.db")
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
    )
    connection.commit()
    connection.close()
    with pytest.raises(StateError, match="run `mirror sync`"):
        StateStore.open_read_only(path)
    (tmp_path / "junk.db").write_bytes(b"not a database at all, not at all" * 100)
    with pytest.raises(StateError):
        StateStore.open_read_only(tmp_path / "junk.db")


def test_record_run_adds_to_the_downloaded_total(tmp_path: Path) -> None:
    run = RunRecord(
        started=1.0,
        finished=2.5,
        ok=True,
        projects_synced=1,
        projects_removed=0,
        projects_failed=0,
        files_downloaded=2,
        bytes_downloaded=100,
        files_deleted=0,
        serial=None,
        upstream_serial=None,
        totals=Totals(projects=1, files=2, bytes=100),
    )
    with StateStore.open(tmp_path / "mirror.db") as state:
        state.record_run(run)
        state.record_run(run)
        assert state.downloaded_bytes_total() == 200
        assert state.runs() == [run, run]
        assert state.last_run(ok=False) is None
        assert state.last_upstream_serial() is None


async def test_run_status_renders_text_json_history_and_recount(
    upstream: FakeUpstream, mirrored: MirrorRunner
) -> None:
    config = Config(
        directory=mirrored.directory, upstream_url=upstream.base_url, allow_non_https=True
    )
    text = await app.status(config, history=True, recount=True)
    assert text.startswith(f"mirror serial:    {upstream.serial}\n")
    assert "\ndate " in text
    assert "counters match the project rows" in text
    upstream.add_release("delta", "1.0")
    document = json.loads(await app.status(config, remote=True, as_json=True, recount=True))
    assert document["upstream_serial"] == upstream.serial
    assert document["upstream_serial_source"] == "remote"
    assert document["lag"] == upstream.serial - document["mirror_serial"] > 0
    assert document["recount"]["stray"] == []
    assert "history" not in document


async def test_run_status_without_a_state_store_says_to_sync_first(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="run `mirror sync` first"):
        await app.status(Config(directory=tmp_path))


def test_cli_status_prints_the_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "mirror"
    directory.mkdir()
    StateStore.open(directory / "mirror.db").close()
    path = tmp_path / "mirror.conf"
    path.write_text(f"[mirror]\ndirectory = {directory}\n", encoding="utf-8")
    assert main(["status", "-c", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["projects"] == 0


def test_cli_status_exit_codes_for_bad_config_and_missing_store(tmp_path: Path) -> None:
    assert main(["status", "-c", str(tmp_path / "absent.conf")]) == 2
    path = tmp_path / "mirror.conf"
    path.write_text(f"[mirror]\ndirectory = {tmp_path / 'nothing'}\n", encoding="utf-8")
    assert main(["status", "-c", str(path)]) == 4


async def test_run_status_plain_text_has_no_history_or_audit(mirrored: MirrorRunner) -> None:
    text = await app.status(Config(directory=mirrored.directory))
    assert "\ndate " not in text
    assert "counters" not in text
    assert text.endswith(" project(s)\n")


async def test_recount_pages_through_many_files(
    mirrored: MirrorRunner, storage: FileSystemStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory_module, "_PAGE_ROWS", 2)
    with mirrored.state() as state:
        paths = [stored.path for stored in state.iter_files()]
        report = await recount_store(state, storage)
    assert paths == sorted(paths)
    assert len(paths) == 4
    assert report.disk_files == 4


async def test_recount_of_a_mirror_without_files_finds_nothing(tmp_path: Path) -> None:
    async with FileSystemStorage(tmp_path / "web") as storage:
        with StateStore.open(tmp_path / "mirror.db") as state:
            report = await recount_store(state, storage)
    assert not report.disk_drifted
    assert report.disk_files == 0


async def test_recount_reads_sizes_from_the_listing_not_the_disk(
    mirrored: MirrorRunner, storage: FileSystemStorage
) -> None:
    with mirrored.state() as state:
        stored = next(state.iter_files())
        # A file where a directory should be: its files are missing, the file is stray.
        parent = (mirrored.web / stored.path).parent
        gone = sorted(f"{stored.path.rsplit('/', 1)[0]}/{child.name}" for child in parent.iterdir())
        for child in parent.iterdir():
            child.unlink()
        parent.rmdir()
        parent.write_bytes(b"")
        report = await recount_store(state, storage)
    assert sorted(report.missing) == gone
    assert report.stray == (stored.path.rsplit("/", 1)[0],)
