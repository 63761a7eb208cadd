"""Crash safety: whatever moment a sync is killed at, pages link only verified files
and the next run converges to exactly upstream's state, leaving no temp behind.

Most tests take a crash snapshot: the sync is paused at a chosen step, the mirror
directory is copied as it stands (what ``kill -9`` at that moment would leave, the
SQLite WAL included), and the next run works on the copy. One test runs the real
thing: the soak script, killing ``python -m mirror sync`` three times.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from mirror.storage import FileSystemStorage, Storage, StoredBlob
from mirror.sync import SyncOptions, SyncReport
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from mirror.testing.soak import (
    _check,
    _convergence_errors,
    _Corpus,
    _run_and_kill,
    _Tally,
    _Throttle,
    classify_kill,
)
from mirror.testing.soak import main as soak_main
from mirror.verify import SAFETY_KINDS, VerifyReport, check_mirror
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream
from tests.storagehooks import HookedStorage

BOTH = frozenset({"html", "json"})
BIG = 1_200_000  # more than one 1 MiB write: the temp is on disk mid-download


class Pause:
    """Where a sync stops: it signals ``reached`` and waits forever."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def here(self) -> None:
        self.reached.set()
        await asyncio.Event().wait()


def pausing_storage(
    pause: Pause,
    *,
    mid_stream: str | None = None,
    after_store: str | None = None,
    before_write: str | None = None,
) -> Callable[[Path], Storage]:
    """A storage that pauses mid-download of the file named ``mid_stream`` (after its
    first MiB is on disk), after the file ``after_store`` has landed, or before
    writing the page ``before_write``."""

    class Pausing(HookedStorage):
        async def before_store(
            self, relative: str, chunks: AsyncIterator[bytes]
        ) -> AsyncIterator[bytes]:
            if mid_stream is not None and relative.endswith(mid_stream):
                return stall_after_a_mebibyte(chunks, pause)
            return chunks

        async def after_store(self, relative: str, blob: StoredBlob) -> None:
            if after_store is not None and relative.endswith(after_store):
                await pause.here()

        async def write_files(self, files: Sequence[tuple[str, bytes]]) -> None:
            if any(relative == before_write for relative, _ in files):
                await pause.here()
            await super().write_files(files)

        async def write_generated(
            self, relatives: Sequence[str], produce: Callable[[], Iterable[Sequence[bytes]]]
        ) -> None:
            if before_write in relatives:
                await pause.here()
            await super().write_generated(relatives, produce)

    return Pausing


async def stall_after_a_mebibyte(
    chunks: AsyncIterator[bytes], pause: Pause
) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in chunks:
        yield chunk
        received += len(chunk)
        if received > 1 << 20:
            # The next chunk makes the storage write the first MiB; wait for it.
            await asyncio.sleep(0)
            await pause.here()


async def crash_snapshot(
    runner: MirrorRunner,
    copy: Path,
    *,
    mid_stream: str | None = None,
    after_store: str | None = None,
    before_write: str | None = None,
) -> MirrorRunner:
    """Run a sync until it pauses where :func:`pausing_storage` is told to, copy the
    mirror directory as a kill would leave it, stop the sync; return a runner for the
    copy. Paused ``mid_stream``, wait for the storage's disk thread to have written the
    download temp first."""
    pause = Pause()
    runner.storage_factory = pausing_storage(
        pause, mid_stream=mid_stream, after_store=after_store, before_write=before_write
    )
    temp = mid_stream is not None
    # One download at a time: nothing else moves while the copy is made.
    runner.options = SyncOptions(workers=1, download_concurrency=1)
    task = asyncio.create_task(runner.sync())
    await pause.reached.wait()
    while temp and not mid_download_temps(runner.web):
        await asyncio.to_thread(lambda: None)  # let the disk thread finish its write
    await asyncio.to_thread(shutil.copytree, runner.directory, copy, symlinks=True)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return MirrorRunner(upstream=runner.upstream, directory=copy)


def mid_download_temps(web: Path) -> list[Path]:
    return [p for p in (web / "packages").rglob(".*.part") if p.stat().st_size > 0]


async def check(runner: MirrorRunner) -> VerifyReport:
    async with FileSystemStorage(runner.web) as storage:
        with runner.state() as state:
            return await check_mirror(state, storage, formats=BOTH)


async def assert_safe(runner: MirrorRunner) -> list[str]:
    """The crash invariant; returns the kinds of the problems left to settle."""
    report = await check(runner)
    assert [p for p in report.problems if p.kind in SAFETY_KINDS] == []
    return sorted(p.kind for p in report.problems)


async def assert_clean(runner: MirrorRunner) -> None:
    report = await check(runner)
    assert report.problems == ()
    assert list(runner.web.rglob("*.part")) == []


async def sync_then_add_big_release(
    upstream: FakeUpstream, runner: MirrorRunner
) -> tuple[str, str]:
    """Mirror alpha 1.0, then publish alpha 2.0 as an sdist and a wheel of more than a
    MiB each; return their names."""
    upstream.add_release("alpha", "1.0")
    await runner.sync()
    sdist, content = make_sdist("alpha", "2.0", payload_bytes=BIG)
    upstream.add_file("alpha", "2.0", sdist, content)
    wheel, content, metadata = make_wheel("alpha", "2.0", payload_bytes=BIG)
    upstream.add_file("alpha", "2.0", wheel, content, metadata=metadata)
    return sdist, wheel


async def assert_next_run_converges(runner: MirrorRunner, upstream: FakeUpstream) -> SyncReport:
    """The next run succeeds, leaves no problem and no temp, and mirrors upstream."""
    report = await runner.sync()
    assert report.ok
    await assert_clean(runner)
    await assert_matches_upstream(runner.directory, upstream)
    return report


async def test_a_temp_left_mid_download_of_a_file_upstream_then_drops_is_removed(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    _, wheel = await sync_then_add_big_release(upstream, runner)
    after = await crash_snapshot(runner, tmp_path / "killed", mid_stream=wheel)
    assert len(mid_download_temps(after.web)) == 1, "the kill left a half-written temp"
    assert "temp" in await assert_safe(after)

    # Upstream drops the release before the next run: nothing would look in the
    # temp's directory again, but the garbage row noted before the download does.
    upstream.remove_release("alpha", "2.0")
    await assert_next_run_converges(after, upstream)


async def test_a_file_landed_but_not_recorded_is_adopted_or_removed(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    sdist, _ = await sync_then_add_big_release(upstream, runner)
    after = await crash_snapshot(runner, tmp_path / "killed", after_store=sdist)
    assert "orphan" in await assert_safe(after), "on disk, not yet in the state"
    adopting = MirrorRunner(upstream=upstream, directory=tmp_path / "adopting")
    shutil.copytree(after.directory, adopting.directory)

    # Still wanted: the next run adopts it (hashes it) instead of downloading again.
    upstream.request_log.clear()
    await assert_next_run_converges(adopting, upstream)
    assert not [path for _, path in upstream.request_log if path.endswith(sdist)]

    # No longer wanted: the next run removes it.
    upstream.remove_release("alpha", "2.0")
    await assert_next_run_converges(after, upstream)


async def test_a_kill_before_the_root_index_is_written_is_mended_by_a_run_with_nothing_to_do(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    upstream.add_release("alpha", "1.0")
    await runner.sync()
    upstream.add_release("beta", "1.0")
    upstream.remove_project("alpha")
    after = await crash_snapshot(runner, tmp_path / "killed", before_write="simple/index.html")
    # What a kill mid-way through the root's write leaves: its temp.
    (after.web / "simple" / ".index.html.abcdefgh.part").write_bytes(b"<!DOCTYPE")
    (after.web / ".last-modified.abcdefgh.part").write_bytes(b"2026")
    assert sorted(set(await assert_safe(after))) == ["root-extra", "root-missing", "temp"]

    report = await assert_next_run_converges(after, upstream)
    assert report.projects_synced == 0, "nothing changed upstream since"


async def test_kills_of_the_real_command_keep_the_invariant_and_converge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three SIGKILLs of ``python -m mirror sync`` at seeded random moments, through
    the soak's command line."""
    argv = ["--kills", "3", "--seed", "7", "--projects", "4", "--directory", str(tmp_path)]
    argv += ["--file-size-bytes", str(256 * 1024), "--rate", str(4 * 1024 * 1024)]
    code = await asyncio.to_thread(soak_main, argv)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "kills: 3\n" in report
    assert "invariant violations: 0\n" in report
    assert "converged: yes\n" in report


@pytest.mark.parametrize(
    ("temps", "under_way", "streaming", "where"),
    [
        (["simple/.index.html.x.part"], True, True, "mid-page-write"),
        ([".last-modified.x.part", "packages/a/.f.x.part"], True, False, "mid-page-write"),
        (["packages/a/.f.x.part"], True, True, "mid-download (temp left)"),
        ([], True, True, "mid-download"),
        ([], True, False, "during the run, between writes"),
        ([], False, False, "during start-up"),
    ],
)
def test_kills_are_classified_by_what_they_left(
    temps: list[str], under_way: bool, streaming: bool, where: str
) -> None:
    assert classify_kill(temps, under_way=under_way, streaming=streaming) == where


def test_the_soak_changes_upstream_in_every_way_it_knows() -> None:
    upstream = FakeUpstream()
    corpus = _Corpus(upstream=upstream, rng=random.Random(3), file_size_bytes=0)
    corpus.new_project()
    changes = {corpus.change().split(" ")[0] for _ in range(300)}
    assert changes == {"new", "removed", "yanked", "unyanked"}
    assert upstream.project_names() == sorted(corpus.releases, key=canonicalize_name)


async def test_a_run_that_ends_before_its_kill_is_counted_as_finished(tmp_path: Path) -> None:
    tally = _Tally()
    async with (
        FakeUpstream() as upstream,
        _Throttle(int(upstream.base_url.rsplit(":", 1)[1]), 1 << 20) as proxy,
    ):
        with (tmp_path / "log").open("w") as log:
            line = await _run_and_kill(
                tmp_path / "missing.conf",
                log=log,
                delay=60,
                mirror=tmp_path / "mirror",
                tally=tally,
                proxy=proxy,
            )
    assert line.startswith("run ended before its kill (60.00s)")
    assert line.endswith("exit 2")
    assert tally.finished == 1
    assert tally.last_exit_code == 2, "no such config file"
    assert await _check(tmp_path / "mirror") == ([], False), "no state store: nothing to check"


async def test_the_throttle_passes_every_byte_and_a_refused_upstream_closes(
    tmp_path: Path,
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        # Ends with the start of the URL the proxy rewrites: it is held back, then
        # let through when nothing follows.
        writer.write(b"at http://127.0.0.1:99999/x and //127.0")
        await writer.drain()
        await reader.read()  # until the proxy lets go
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, _Throttle(port, 1 << 30) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hello")
        got = b""
        while not got.endswith(b"//127.0"):
            got += await reader.read(100)
        assert got.startswith(b"at http://127.0.0.1:99999/x")
        writer.close()
    closed = await asyncio.start_server(answer, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with _Throttle(closed_port, 1 << 20) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.read() == b"", "upstream refused: the client is let go"
        writer.close()


async def test_convergence_reports_every_difference_from_upstream(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    await runner.sync()
    assert await _convergence_errors(upstream, runner.directory, 0) == []
    upstream.add_release("alpha", "2.0", wheel=False)
    (runner.web / "simple" / "stray").mkdir()
    (runner.web / "simple" / "stray" / "index.v1_json").write_text("{}")
    errors = await _convergence_errors(upstream, runner.directory, 1)
    assert errors[0] == "the clean sync exited 1 (see sync.log)"
    assert errors[1].startswith("no-project simple/stray")
    assert [e.split(":")[0] for e in errors[2:]] == ["<page directories>", "alpha"]
    (runner.web / "simple" / "index.v1_json").unlink()
    errors = await _convergence_errors(upstream, runner.directory, 0)
    assert errors[-1].startswith("the mirror's pages cannot be read")
