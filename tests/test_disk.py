"""Disk trouble: a full disk and a read-only file system stop a sync cleanly.

The trouble is injected below the storage backend: ``mirror.storage.filesystem`` sees
an ``os`` whose ``write`` fails with ENOSPC once a byte budget is spent, or a
``os`` whose ``open`` cannot create files (EROFS), so the real write, cleanup and error
translation paths run (in this process: the fixture below keeps writes out of the
writer processes). (A real 1 MiB tmpfs behaves the same; mounting one needs
privileges CI may not have.)
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.cli import EXIT_ERROR, main
from mirror.errors import IntegrityError, StateError, StorageError
from mirror.state import UNFINISHED_META_KEY, StateStore, StoredFile, TodoItem
from mirror.storage import filesystem
from mirror.sync import is_disk_full_or_read_only
from mirror.testing import FakeUpstream, make_sdist
from mirror.verify import check_mirror
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream

BOTH = frozenset({"html", "json"})


class FullDisk:
    """An ``os`` for the storage backend whose ``write`` fails with ENOSPC once
    ``budget_bytes`` have been written; everything else is the real ``os``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.refused = 0

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if len(data) > self.budget_bytes:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget_bytes -= len(data)
        return os.write(fd, data)


class ReadOnly:
    """An ``os`` for the storage backend that cannot create files: EROFS."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def open(self, path: object, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return os.open(path, flags, mode)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _in_process_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The faults are injected into this process's ``os``: keep every write here,
    none in a writer process (those have their own, untouched ``os``)."""
    monkeypatch.setattr(filesystem, "WRITER_BYTES", -1)


def seed(upstream: FakeUpstream, count: int = 5) -> None:
    for index in range(count):
        upstream.add_release(f"proj{index}", "1.0")


def assert_intact(runner: MirrorRunner) -> None:
    """No temp and no partial file: every page links verified files, every file on
    disk is one the state lists."""
    with runner.state() as state:
        report = check_mirror(state, runner.web, formats=BOTH)
    bad = [p for p in report.problems if p.kind in {"missing", "corrupt", "bad-link", "orphan"}]
    assert bad == []
    assert list(runner.web.rglob("*.part")) == []


async def test_a_full_disk_stops_the_run_early_and_the_next_run_recovers(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(upstream)
    runner.options = type(runner.options)(workers=1, download_concurrency=1)
    disk = FullDisk(budget_bytes=1500)
    monkeypatch.setattr(filesystem, "os", disk)
    with pytest.raises(StorageError, match="no space left on device"):
        await runner.sync()
    assert disk.refused == 1, "the run stopped at the first refusal, not once per project"
    assert_intact(runner)
    with runner.state() as state:
        assert state.failures() == [], "no project is blamed for the disk"
        assert state.todo_count() == 5, "every project stays queued"
        assert state.get_meta(UNFINISHED_META_KEY), "the next run knows this one stopped"

    monkeypatch.setattr(filesystem, "os", os)
    report = await runner.sync()
    assert report.ok
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_disk_filling_up_during_page_writes_keeps_the_old_pages(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(upstream, count=1)
    await runner.sync()
    page = runner.web / "simple" / "proj0" / "index.v1_json"
    before = page.read_bytes()
    filename, content = make_sdist("proj0", "2.0")
    upstream.add_file("proj0", "2.0", filename, content)
    # Room for the new sdist (written in one go), none for its pages.
    monkeypatch.setattr(filesystem, "os", FullDisk(budget_bytes=len(content)))
    with pytest.raises(StorageError, match="no space left on device"):
        await runner.sync()
    assert page.read_bytes() == before, "the served page is the old, complete one"
    assert_intact(runner)
    with runner.state() as state:
        assert filename in {f.filename for f in state.iter_files()}, "the verified file is kept"

    monkeypatch.setattr(filesystem, "os", os)
    assert (await runner.sync()).ok
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_read_only_file_system_fails_cleanly_and_the_next_run_recovers(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(upstream)
    monkeypatch.setattr(filesystem, "os", ReadOnly())
    with pytest.raises(StorageError, match="read-only file system"):
        await runner.sync()
    assert [p for p in runner.web.rglob("*") if p.is_file()] == [], "nothing was written"
    with runner.state() as state:
        assert state.failures() == []
        assert state.totals().files == 0

    monkeypatch.setattr(filesystem, "os", os)
    assert (await runner.sync()).ok
    await assert_matches_upstream(runner.directory, upstream)


async def test_the_cli_exits_4_naming_the_full_disk(
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(upstream)
    config = tmp_path / "mirror.conf"
    config.write_text(
        f"[mirror]\ndirectory = {tmp_path / 'mirror'}\nupstream = {upstream.base_url}\n"
        "allow-non-https = true\nretries = 0\n"
    )
    monkeypatch.setattr(filesystem, "os", FullDisk(budget_bytes=0))
    code = await asyncio.to_thread(main, ["sync", "-c", str(config)])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert "sync failed: cannot store" in err
    assert "no space left on device" in err


class FullStateStore(StateStore):
    """A state store on a full disk: no file or failure can be recorded."""

    def record_file(self, stored: StoredFile) -> None:
        raise StateError("state store mirror.db: database or disk is full")

    def record_files(self, files: Iterable[StoredFile]) -> None:
        raise StateError("state store mirror.db: database or disk is full")

    def record_failure(self, name: NormalizedName, *, error: str, next_attempt: float) -> TodoItem:
        raise StateError("state store mirror.db: database or disk is full")


class FullStateRunner(MirrorRunner):
    def state(self) -> StateStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FullStateStore.open(self.directory / "mirror.db")


async def test_a_state_store_that_cannot_record_ends_the_run_with_its_error(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    seed(upstream)
    full = FullStateRunner(upstream=upstream, directory=tmp_path / "mirror")
    with pytest.raises(StateError, match="database or disk is full"):
        await full.sync()
    runner = MirrorRunner(upstream=upstream, directory=tmp_path / "mirror")
    assert (await runner.sync()).ok
    await assert_matches_upstream(runner.directory, upstream)


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (errno.ENOSPC, True),
        (errno.EDQUOT, True),
        (errno.EROFS, True),
        (errno.EACCES, False),
        (errno.ENOENT, False),
    ],
)
def test_only_a_full_or_read_only_disk_stops_the_run(error: int, fatal: bool) -> None:
    storage_error = StorageError("cannot store x")
    # What `raise StorageError(...) from exc` sets.
    storage_error.__cause__ = OSError(error, os.strerror(error))
    assert is_disk_full_or_read_only(storage_error) is fatal


def test_other_errors_never_stop_the_run() -> None:
    assert not is_disk_full_or_read_only(StorageError("no cause"))
    assert not is_disk_full_or_read_only(IntegrityError("bad bytes"))
