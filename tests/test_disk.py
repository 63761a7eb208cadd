"""Disk trouble: a full disk and a read-only file system stop a sync cleanly.

The trouble is injected below the storage backend: the storage is given file calls
(its ``file_calls``) whose ``write`` fails with ENOSPC once a byte budget is spent, or
whose ``open`` cannot create files (EROFS), so the real write, cleanup and error
translation paths run (in this process: ``writer_bytes=-1`` keeps writes out of the
writer processes, which make their own calls). (A real 1 MiB tmpfs behaves the same;
mounting one needs privileges CI may not have.)
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

import mirror.storage
from mirror.cli import EXIT_ERROR, main
from mirror.errors import IntegrityError, StateError, StorageError
from mirror.state import UNFINISHED_META_KEY, StateStore, StoredFile, TodoItem
from mirror.storage import FileSystemStorage
from mirror.storage.filesystem import FileCalls
from mirror.sync import is_disk_full_or_read_only
from mirror.testing import FakeUpstream, make_sdist
from mirror.verify import check_mirror
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream

BOTH = frozenset({"html", "json"})


class FullDisk:
    """File calls for the storage backend whose ``write`` fails with ENOSPC once
    ``budget_bytes`` have been written; ``open`` is the real one."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.refused = 0

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if len(data) > self.budget_bytes:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget_bytes -= len(data)
        return os.write(fd, data)


class ReadOnly:
    """File calls for the storage backend that cannot create files: EROFS."""

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return os.open(path, flags, mode)

    def write(self, fd: int, data: memoryview, /) -> int:
        return os.write(fd, data)


def in_process(calls: FileCalls = os) -> Callable[[Path], FileSystemStorage]:
    """A storage factory making every write in this process through ``calls``: the
    faults are injected here, never in a writer process (those make their own)."""
    return functools.partial(FileSystemStorage, writer_bytes=-1, file_calls=calls)


def seed(upstream: FakeUpstream, count: int = 5) -> None:
    for index in range(count):
        upstream.add_release(f"proj{index}", "1.0")


async def assert_intact(runner: MirrorRunner) -> None:
    """No temp and no partial file: every page links verified files, every file on
    disk is one the state lists."""
    async with FileSystemStorage(runner.web) as storage:
        with runner.state() as state:
            report = await check_mirror(state, storage, formats=BOTH)
    bad = [p for p in report.problems if p.kind in {"missing", "corrupt", "bad-link", "orphan"}]
    assert bad == []
    assert list(runner.web.rglob("*.part")) == []


async def test_a_full_disk_stops_the_run_early_and_the_next_run_recovers(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(upstream)
    runner.options = type(runner.options)(workers=1, download_concurrency=1)
    disk = FullDisk(budget_bytes=1500)
    runner.storage_factory = in_process(disk)
    with pytest.raises(StorageError, match="no space left on device"):
        await runner.sync()
    assert disk.refused == 1, "the run stopped at the first refusal, not once per project"
    await assert_intact(runner)
    with runner.state() as state:
        assert state.failures() == [], "no project is blamed for the disk"
        assert state.todo_count() == 5, "every project stays queued"
        assert state.get_meta(UNFINISHED_META_KEY), "the next run knows this one stopped"

    runner.storage_factory = in_process()
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
    runner.storage_factory = in_process(FullDisk(budget_bytes=len(content)))
    with pytest.raises(StorageError, match="no space left on device"):
        await runner.sync()
    assert page.read_bytes() == before, "the served page is the old, complete one"
    await assert_intact(runner)
    with runner.state() as state:
        assert filename in {f.filename for f in state.iter_files()}, "the verified file is kept"

    runner.storage_factory = in_process()
    assert (await runner.sync()).ok
    await assert_matches_upstream(runner.directory, upstream)


async def test_a_read_only_file_system_fails_cleanly_and_the_next_run_recovers(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(upstream)
    runner.storage_factory = in_process(ReadOnly())
    with pytest.raises(StorageError, match="read-only file system"):
        await runner.sync()
    assert [p for p in runner.web.rglob("*") if p.is_file()] == [], "nothing was written"
    with runner.state() as state:
        assert state.failures() == []
        assert state.totals().files == 0

    runner.storage_factory = in_process()
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
    # The CLI builds its storage from the package's name for it: the one seam there.
    monkeypatch.setattr(mirror.storage, "FileSystemStorage", in_process(FullDisk(budget_bytes=0)))
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
