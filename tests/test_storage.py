"""The file-system storage backend: verified streamed stores, atomic writes, deletes,
unsafe paths and disk errors, all on real files in a temp directory."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mirror.errors import IntegrityError, StorageError, UnsafePathError
from mirror.storage import Derivation, FileSystemStorage, Storage, StoredBlob, filesystem
from mirror.storage.executors import DiskExecutors
from mirror.storage.filesystem import _LiveTemps, _TempFile
from mirror.storage.writers import WriterPool

MIB = 1 << 20
WHEEL = "packages/ab/cd/ef0123/demo-1.0-py3-none-any.whl"


@pytest.fixture
def web(tmp_path: Path) -> Path:
    return tmp_path / "web"


@pytest.fixture
async def storage(web: Path) -> AsyncIterator[FileSystemStorage]:
    async with FileSystemStorage(web) as opened:
        yield opened


@pytest.fixture
async def in_process(web: Path) -> AsyncIterator[FileSystemStorage]:
    """A storage that writes everything in this process (the faults these tests inject
    are in this process), never in a writer process."""
    async with FileSystemStorage(web, writer_bytes=-1) as opened:
        yield opened


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temps(root: Path) -> list[Path]:
    """Every temp file anywhere under ``root``."""
    return sorted(root.rglob(".*.part"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class CountingStream:
    """An endless stream of ``chunk``; counts how many chunks were pulled."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.pulled = 0

    def __aiter__(self) -> CountingStream:
        return self

    async def __anext__(self) -> bytes:
        self.pulled += 1
        return self.chunk


class StalledStream:
    """Yields ``parts``, then signals ``reached`` and waits for ``release``."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        self.reached.set()
        await self.release.wait()


class BrokenUpstreamError(Exception):
    """What a chunk iterator raises in these tests."""


async def failing_stream(*parts: bytes, error: BaseException) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise error


def test_file_system_storage_satisfies_the_protocol(web: Path) -> None:
    storage: Storage = FileSystemStorage(web)
    assert isinstance(storage, FileSystemStorage)
    assert storage.web_root == web.absolute()


def test_a_relative_web_root_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = FileSystemStorage(Path("web"))
    assert storage.web_root == tmp_path / "web"
    assert storage.path_of("simple/index.html") == tmp_path / "web" / "simple" / "index.html"


# --- store_stream -------------------------------------------------------------------


async def test_store_stream_writes_verified_bytes_and_returns_their_hash_and_size(
    storage: FileSystemStorage, web: Path
) -> None:
    """Several 1 MiB batches (a write in flight while the next is gathered) land intact."""
    data = os.urandom(3 * MIB + 12345)
    parts = [data[i : i + 64 * 1024] for i in range(0, len(data), 64 * 1024)]
    blob = await storage.store_stream(WHEEL, stream(*parts), sha256=sha(data), size=len(data))
    assert blob == StoredBlob(sha256=sha(data), size=len(data))
    target = web / WHEEL
    assert target.read_bytes() == data
    assert mode(target) == 0o644
    assert temps(web) == []


async def test_store_stream_checks_only_what_is_given(
    storage: FileSystemStorage, web: Path
) -> None:
    blob = await storage.store_stream("pypi/demo/json", stream(b"{", b"}"), sha256=None, size=None)
    assert blob == StoredBlob(sha256=sha(b"{}"), size=2)
    assert (web / "pypi/demo/json").read_bytes() == b"{}"


async def test_store_stream_accepts_an_uppercase_sha256(storage: FileSystemStorage) -> None:
    blob = await storage.store_stream(WHEEL, stream(b"abc"), sha256=sha(b"abc").upper(), size=3)
    assert blob.sha256 == sha(b"abc")


async def test_store_stream_stores_an_empty_file(storage: FileSystemStorage, web: Path) -> None:
    blob = await storage.store_stream(WHEEL, stream(), sha256=sha(b""), size=0)
    assert blob == StoredBlob(sha256=sha(b""), size=0)
    assert (web / WHEEL).read_bytes() == b""
    assert mode(web / WHEEL) == 0o644


async def test_store_stream_replaces_an_existing_file(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"old")
    await storage.store_stream(WHEEL, stream(b"new!"), sha256=sha(b"new!"), size=4)
    assert (web / WHEEL).read_bytes() == b"new!"


async def test_store_stream_creates_parents_0755_whatever_the_umask(
    storage: FileSystemStorage, web: Path
) -> None:
    old_umask = os.umask(0o077)
    try:
        await storage.store_stream(WHEEL, stream(b"x"), sha256=None, size=1)
    finally:
        os.umask(old_umask)
    for directory in (web, web / "packages", web / "packages/ab", web / "packages/ab/cd"):
        assert mode(directory) == 0o755, directory
    assert mode(web / WHEEL) == 0o644


@pytest.mark.parametrize(
    ("data", "size", "digest", "message"),
    [
        pytest.param(b"payload", 7, "0" * 64, "expected sha256 " + "0" * 64, id="hash"),
        pytest.param(b"payload", 8, None, "expected 8 bytes, got 7", id="short"),
        pytest.param(b"payload", 6, None, "expected 6 bytes, got at least 7", id="long"),
        pytest.param(b"x" * (MIB + 5), MIB + 6, None, "got 1048581", id="short-after-a-write"),
    ],
)
async def test_a_mismatch_raises_integrity_error_and_keeps_the_old_file(
    web: Path,
    data: bytes,
    size: int,
    digest: str | None,
    message: str,
) -> None:
    put(web / WHEEL, b"old content")
    parts = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    with pytest.raises(IntegrityError, match=message) as caught:
        async with FileSystemStorage(web) as storage:
            await storage.store_stream(WHEEL, stream(*parts), sha256=digest, size=size)
    assert WHEEL in str(caught.value), "the message names the file"
    assert (web / WHEEL).read_bytes() == b"old content"
    assert temps(web) == []


async def test_a_hash_mismatch_names_both_hashes(storage: FileSystemStorage) -> None:
    with pytest.raises(IntegrityError) as caught:
        await storage.store_stream(WHEEL, stream(b"abc"), sha256="f" * 64, size=None)
    assert "f" * 64 in str(caught.value)
    assert sha(b"abc") in str(caught.value)


async def test_a_mismatch_on_a_new_file_leaves_nothing_at_the_target(
    storage: FileSystemStorage, web: Path
) -> None:
    with pytest.raises(IntegrityError):
        await storage.store_stream(WHEEL, stream(b"abc"), sha256="0" * 64, size=3)
    assert not (web / WHEEL).exists()
    assert temps(web) == []


async def test_a_stream_longer_than_its_size_stops_being_read_at_once(
    storage: FileSystemStorage, web: Path
) -> None:
    chunks = CountingStream(b"12345678")
    with pytest.raises(IntegrityError, match="expected 20 bytes, got at least 24"):
        await storage.store_stream(WHEEL, chunks, sha256=None, size=20)
    assert chunks.pulled == 3
    assert temps(web) == []


async def test_max_size_stops_a_stream_of_unknown_size_at_once(
    storage: FileSystemStorage, web: Path
) -> None:
    """Past the bound (and past a batch already written to a temp) reading stops."""
    chunks = CountingStream(b"x" * (MIB // 2))
    with pytest.raises(IntegrityError, match=r"larger than the 2097152-byte limit"):
        await storage.store_stream(WHEEL, chunks, sha256=None, size=None, max_size=2 * MIB)
    assert chunks.pulled == 5
    assert not (web / WHEEL).exists()
    assert temps(web) == []


async def test_max_size_allows_a_file_up_to_the_bound(
    storage: FileSystemStorage, web: Path
) -> None:
    blob = await storage.store_stream(WHEEL, stream(b"x" * 10), sha256=None, size=None, max_size=10)
    assert blob.size == 10
    assert (web / WHEEL).read_bytes() == b"x" * 10


async def test_cancellation_mid_stream_leaves_no_temp_and_the_old_file(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"old content")
    # Two full batches: the first is on disk in a temp by the time the stream stalls.
    chunks = StalledStream(b"a" * MIB, b"b" * MIB, b"c" * 10)
    task = asyncio.create_task(storage.store_stream(WHEEL, chunks.chunks(), sha256=None, size=None))
    await chunks.reached.wait()
    assert len(temps(web)) == 1, "the stream really was mid-way"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (web / WHEEL).read_bytes() == b"old content"
    assert temps(web) == []


async def test_an_exception_from_the_chunks_propagates_and_leaves_no_temp(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"old content")
    chunks = failing_stream(b"a" * MIB, b"b" * 100, error=BrokenUpstreamError("reset"))
    with pytest.raises(BrokenUpstreamError, match="reset"):
        await storage.store_stream(WHEEL, chunks, sha256=None, size=None)
    assert (web / WHEEL).read_bytes() == b"old content"
    assert temps(web) == []


@pytest.mark.parametrize(
    "error",
    [TimeoutError("read timed out"), ConnectionResetError(104, "Connection reset by peer")],
    ids=["timeout", "reset"],
)
async def test_a_network_os_error_from_the_chunks_is_not_reported_as_a_disk_error(
    storage: FileSystemStorage, web: Path, error: OSError
) -> None:
    """TimeoutError and aiohttp's connection errors are OSErrors; they stay themselves."""
    chunks = failing_stream(b"a" * (MIB + 1), error=error)
    with pytest.raises(type(error)) as caught:
        await storage.store_stream(WHEEL, chunks, sha256=None, size=None)
    assert caught.value is error
    assert temps(web) == []


async def test_a_very_long_file_name_gets_a_temp_name_the_file_system_accepts(
    storage: FileSystemStorage, web: Path
) -> None:
    """The temp adds 15 bytes; the name is cut in bytes, on a character boundary."""
    for name in ("a" * 250 + ".whl", "€" * 83 + ".whl"):
        assert len(os.fsencode(name)) <= 255
        relative = f"packages/ab/cd/{name}"
        await storage.store_stream(relative, stream(b"x" * (MIB + 1)), sha256=None, size=None)
        assert (web / relative).stat().st_size == MIB + 1
    assert temps(web) == []


# --- disk errors ----------------------------------------------------------------------


async def test_store_stream_raises_storage_error_when_a_parent_is_a_file(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "packages/ab", b"not a directory")
    with pytest.raises(StorageError, match="a parent is not a directory") as caught:
        await storage.store_stream(WHEEL, stream(b"x"), sha256=None, size=None)
    assert str(web / WHEEL) in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert (web / "packages/ab").read_bytes() == b"not a directory"


async def test_store_stream_raises_storage_error_when_a_grandparent_is_a_file(
    storage: FileSystemStorage, web: Path
) -> None:
    """The failing batch is one written while the stream is still flowing."""
    put(web / "packages", b"not a directory")
    chunks = stream(*[b"x" * MIB] * 3)
    with pytest.raises(StorageError, match="cannot store"):
        await storage.store_stream(WHEEL, chunks, sha256=None, size=None)
    assert (web / "packages").read_bytes() == b"not a directory"


async def test_write_bytes_raises_storage_error_when_its_directory_is_a_file(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/demo", b"a file")
    with pytest.raises(StorageError, match="a parent is not a directory"):
        await storage.write_bytes("simple/demo/index.html", b"<html>")
    assert (web / "simple/demo").read_bytes() == b"a file"
    assert temps(web) == []


async def test_store_stream_raises_storage_error_when_the_target_is_a_directory(
    storage: FileSystemStorage, web: Path
) -> None:
    (web / WHEEL).mkdir(parents=True)
    with pytest.raises(StorageError, match="is a directory"):
        await storage.store_stream(WHEEL, stream(b"x"), sha256=None, size=None)
    assert (web / WHEEL).is_dir()
    assert temps(web) == []


async def test_write_bytes_raises_storage_error_when_a_parent_is_a_file(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple", b"oops")
    with pytest.raises(StorageError, match=r"cannot write .*simple/demo/index\.html"):
        await storage.write_bytes("simple/demo/index.html", b"<html>")


async def test_a_name_too_long_is_a_storage_error_with_the_system_reason(
    storage: FileSystemStorage,
) -> None:
    name = "x" * 300
    with pytest.raises(StorageError, match="File name too long"):
        await storage.write_bytes(name, b"")
    with pytest.raises(StorageError, match="cannot inspect"):
        await storage.exists(name)


# --- unsafe paths ---------------------------------------------------------------------


UNSAFE = [
    "",
    "/",
    "/etc/passwd",
    "..",
    "../escape",
    "simple/../../escape",
    "simple/..",
    ".",
    "./simple",
    "simple//index.html",
    "simple/",
    "simple\\..\\..\\escape",
    "simple/a\x00b",
    "simple/a\nb",
    "simple/\x1f",
    "simple/a\x7fb",
]


@pytest.mark.parametrize("relative", UNSAFE)
def test_path_of_refuses_a_path_that_could_escape(
    storage: FileSystemStorage, relative: str
) -> None:
    with pytest.raises(UnsafePathError, match="unsafe path"):
        storage.path_of(relative)


@pytest.mark.parametrize(
    "relative",
    ["simple/index.html", WHEEL, ".well-known", "a..b/...", "packages/ab/f.whl.metadata"],
)
def test_path_of_maps_a_safe_path_under_the_web_root(
    storage: FileSystemStorage, web: Path, relative: str
) -> None:
    path = storage.path_of(relative)
    assert path == web.joinpath(*relative.split("/"))
    assert path.is_relative_to(web)


OPERATIONS: dict[str, Callable[[FileSystemStorage, str], Awaitable[object]]] = {
    "store_stream": lambda s, r: s.store_stream(r, stream(b"x"), sha256=None, size=None),
    "write_bytes": lambda s, r: s.write_bytes(r, b"x"),
    "read_bytes": lambda s, r: s.read_bytes(r),
    "delete": lambda s, r: s.delete(r),
    "delete_tree": lambda s, r: s.delete_tree(r),
    "exists": lambda s, r: s.exists(r),
    "remove_stale_temps": lambda s, r: s.remove_stale_temps(r),
    "hash_file": lambda s, r: s.hash_file(r),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("relative", ["../escape", "/tmp/escape", "simple/../../escape"])
async def test_every_operation_refuses_an_unsafe_path_and_touches_nothing(
    tmp_path: Path, web: Path, operation: str, relative: str
) -> None:
    put(tmp_path / "escape", b"outside")
    with pytest.raises(UnsafePathError):
        async with FileSystemStorage(web) as storage:
            await OPERATIONS[operation](storage, relative)
    assert (tmp_path / "escape").read_bytes() == b"outside"
    assert not web.exists()


# --- write_bytes / read_bytes -------------------------------------------------------


async def test_write_bytes_replaces_the_file_atomically_with_mode_0644(
    storage: FileSystemStorage, web: Path
) -> None:
    """A new inode is renamed into place: a reader holding the old file keeps it whole."""
    await storage.write_bytes("simple/demo/index.html", b"first")
    target = web / "simple/demo/index.html"
    with target.open("rb") as reader:
        await storage.write_bytes("simple/demo/index.html", b"second version")
        assert reader.read() == b"first"
    assert target.read_bytes() == b"second version"
    assert mode(target) == 0o644
    assert temps(web) == []


async def test_write_bytes_writes_at_the_web_root_itself(
    storage: FileSystemStorage, web: Path
) -> None:
    await storage.write_bytes("last-modified", b"20240101T00:00:00\n")
    assert (web / "last-modified").read_bytes() == b"20240101T00:00:00\n"


async def test_read_bytes_returns_the_content(storage: FileSystemStorage, web: Path) -> None:
    put(web / "simple/index.html", b"<html>")
    assert await storage.read_bytes("simple/index.html") == b"<html>"


async def test_read_bytes_of_a_missing_file_is_a_storage_error(
    storage: FileSystemStorage, web: Path
) -> None:
    with pytest.raises(StorageError, match="no such file or directory") as caught:
        await storage.read_bytes("simple/index.html")
    assert str(web / "simple/index.html") in str(caught.value)


async def test_read_bytes_of_a_directory_is_a_storage_error(
    storage: FileSystemStorage, web: Path
) -> None:
    (web / "simple").mkdir(parents=True)
    with pytest.raises(StorageError, match="cannot read"):
        await storage.read_bytes("simple")


# --- delete / delete_tree ---------------------------------------------------------------


async def test_delete_prunes_empty_parents_but_not_the_top_level_directory(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"wheel")
    put(web / f"{WHEEL}.metadata", b"metadata")
    await storage.delete(WHEEL)
    assert not (web / WHEEL).exists()
    assert (web / f"{WHEEL}.metadata").exists(), "its sibling stays, and so does the dir"
    await storage.delete(f"{WHEEL}.metadata")
    assert not (web / "packages/ab").exists()
    assert (web / "packages").is_dir()
    assert list((web / "packages").iterdir()) == []


async def test_delete_stops_pruning_at_the_first_directory_still_in_use(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "packages/ab/cd/one/a.whl", b"a")
    put(web / "packages/ab/ef/two/b.whl", b"b")
    await storage.delete("packages/ab/cd/one/a.whl")
    assert not (web / "packages/ab/cd").exists()
    assert (web / "packages/ab/ef/two/b.whl").read_bytes() == b"b"


async def test_delete_of_a_missing_file_is_fine(storage: FileSystemStorage, web: Path) -> None:
    await storage.delete(WHEEL)
    put(web / "packages/ab/other.whl", b"x")
    await storage.delete(WHEEL)
    assert (web / "packages/ab/other.whl").exists()


async def test_delete_of_a_file_at_the_top_prunes_nothing(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/index.html", b"x")
    await storage.delete("simple/index.html")
    assert (web / "simple").is_dir()


async def test_delete_of_a_directory_is_a_storage_error(
    storage: FileSystemStorage, web: Path
) -> None:
    (web / "simple/demo").mkdir(parents=True)
    with pytest.raises(StorageError, match="cannot delete"):
        await storage.delete("simple/demo")
    assert (web / "simple/demo").is_dir()


async def test_delete_tree_removes_a_directory_and_its_content(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/demo/index.html", b"x")
    put(web / "simple/demo/index.v1_json", b"{}")
    put(web / "simple/other/index.html", b"y")
    await storage.delete_tree("simple/demo")
    assert not (web / "simple/demo").exists()
    assert (web / "simple/other/index.html").exists()


async def test_delete_tree_prunes_parents_it_leaves_empty(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "pypi/demo/json/extra", b"x")
    await storage.delete_tree("pypi/demo/json")
    assert not (web / "pypi/demo").exists()
    assert (web / "pypi").is_dir()


async def test_delete_tree_of_a_missing_directory_is_fine(
    storage: FileSystemStorage, web: Path
) -> None:
    await storage.delete_tree("simple/demo")
    assert not web.exists()


async def test_delete_tree_of_a_file_is_a_storage_error(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/demo", b"a file")
    with pytest.raises(StorageError, match="cannot delete"):
        await storage.delete_tree("simple/demo")
    assert (web / "simple/demo").read_bytes() == b"a file"


# --- exists / hash_file -----------------------------------------------------------------


async def test_exists_answers_for_files_directories_and_links(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/index.html", b"x")
    (web / "simple/dangling").symlink_to(web / "nowhere")
    (web / "simple/link").symlink_to(web / "simple/index.html")
    assert await storage.exists("simple/index.html")
    assert await storage.exists("simple")
    assert await storage.exists("simple/link")
    assert not await storage.exists("simple/dangling")
    assert not await storage.exists("simple/missing")
    assert not await storage.exists("simple/index.html/below-a-file")


async def test_hash_file_returns_sha256_and_size(storage: FileSystemStorage, web: Path) -> None:
    data = os.urandom(2 * MIB + 3)
    put(web / WHEEL, data)
    assert await storage.hash_file(WHEEL) == StoredBlob(sha256=sha(data), size=len(data))


async def test_hash_file_of_a_missing_file_is_a_storage_error(
    storage: FileSystemStorage,
) -> None:
    with pytest.raises(StorageError, match="cannot hash"):
        await storage.hash_file(WHEEL)


# --- remove_stale_temps -----------------------------------------------------------------


async def test_remove_stale_temps_removes_only_temp_files(
    storage: FileSystemStorage, web: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = web / "packages/ab"
    stale = [put(directory / ".a.whl.k2j4h5g6.part", b""), put(directory / "..part", b"")]
    kept = [
        put(directory / "a.whl.part", b""),
        put(directory / ".hidden", b""),
        put(directory / ".part", b""),
        put(directory / "a.whl", b""),
        put(directory / "sub/.b.whl.abcdefgh.part", b""),
    ]
    (directory / ".dir.abcdefgh.part").mkdir()
    (directory / ".link.abcdefgh.part").symlink_to(directory / "a.whl")
    with caplog.at_level(logging.INFO, logger="mirror.storage.filesystem"):
        assert await storage.remove_stale_temps("packages/ab") == 2
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert (directory / ".dir.abcdefgh.part").is_dir()
    assert (directory / ".link.abcdefgh.part").is_symlink()
    assert "removed 2 stale temporary file(s)" in caplog.text


async def test_remove_stale_temps_works_on_the_web_root_and_missing_directories(
    storage: FileSystemStorage, web: Path
) -> None:
    assert await storage.remove_stale_temps("") == 0
    put(web / ".last-modified.abcdefgh.part", b"")
    assert await storage.remove_stale_temps("") == 1
    assert await storage.remove_stale_temps("simple/missing") == 0
    assert list(web.iterdir()) == []


async def test_remove_stale_temps_on_a_file_is_a_storage_error(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple", b"a file")
    with pytest.raises(StorageError, match="cannot clean"):
        await storage.remove_stale_temps("simple")


async def test_remove_stale_temps_spares_the_temp_of_a_store_in_flight(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "packages/ab/cd/ef0123/.old.whl.abcdefgh.part", b"")
    chunks = StalledStream(b"a" * MIB, b"b" * MIB)
    task = asyncio.create_task(storage.store_stream(WHEEL, chunks.chunks(), sha256=None, size=None))
    await chunks.reached.wait()
    (live,) = [path for path in temps(web) if "old" not in path.name]
    assert await storage.remove_stale_temps("packages/ab/cd/ef0123") == 1
    assert live.exists()
    chunks.release.set()
    blob = await task
    assert blob.size == 2 * MIB
    assert (web / WHEEL).read_bytes() == b"a" * MIB + b"b" * MIB
    assert temps(web) == []


# --- threads and cleanup ------------------------------------------------------------------


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_cancelled_thread_hop_waits_for_its_thread_and_stays_cancelled(
    cancels: int,
) -> None:
    """Cleanup after a cancellation never races the thread, even when cancelled twice."""
    started = threading.Event()
    release = threading.Event()
    finished: list[bool] = []

    def work() -> int:
        started.set()
        release.wait()
        finished.append(True)
        return 1

    executors = DiskExecutors(threads=1, writer_processes=1, writer_pool_factory=WriterPool)
    executors.open()
    task = asyncio.create_task(executors.in_thread(work))
    await asyncio.to_thread(started.wait)
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0)
    assert not task.done(), "still waiting for the thread"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]
    await executors.aclose()


def test_discard_reports_a_temp_it_cannot_remove_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It runs while another error is on its way up; that error must not be masked."""
    temp = _TempFile(tmp_path / "f.whl", label="f.whl", live=_LiveTemps())
    temp.write(b"x")
    (path,) = temps(tmp_path)
    path.unlink()
    put(path / "blocker", b"")  # a non-empty directory cannot be unlinked
    with caplog.at_level(logging.WARNING, logger="mirror.storage.filesystem"):
        temp.discard()
    assert "cannot remove temporary file" in caplog.text
    temp.discard()  # a second discard has nothing left to do


# --- adopt and store_derived ---------------------------------------------------------


async def test_adopt_returns_a_matching_file_and_sweeps_stale_temps(
    storage: FileSystemStorage, web: Path
) -> None:
    target = put(web / WHEEL, b"wheel bytes")
    stale = put(target.parent / ".demo.whl.abc.part", b"half")
    blob = await storage.adopt(WHEEL, sha256=sha(b"wheel bytes").upper(), size=11)
    assert blob == StoredBlob(sha256=sha(b"wheel bytes"), size=11)
    assert not stale.exists()


async def test_adopt_refuses_a_different_file_and_finds_nothing_in_a_missing_directory(
    storage: FileSystemStorage, web: Path
) -> None:
    assert await storage.adopt(WHEEL, sha256=sha(b"x")) is None
    put(web / WHEEL, b"other bytes")
    assert await storage.adopt(WHEEL, sha256=sha(b"wheel bytes")) is None
    assert await storage.adopt(WHEEL, sha256=sha(b"other bytes"), size=3) is None
    assert (web / WHEEL).read_bytes() == b"other bytes", "never touched"


async def test_store_derived_writes_the_derived_bytes_once_they_match(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"source")
    blob = await storage.store_derived(
        f"{WHEEL}.metadata",
        source=WHEEL,
        derive=lambda file: file.read().upper(),
        sha256=sha(b"SOURCE"),
    )
    assert blob == StoredBlob(sha256=sha(b"SOURCE"), size=6)
    assert (web / f"{WHEEL}.metadata").read_bytes() == b"SOURCE"
    assert mode(web / f"{WHEEL}.metadata") == 0o644
    assert temps(web) == []


async def test_store_derived_writes_nothing_when_the_bytes_differ_or_are_absent(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / WHEEL, b"source")
    target = f"{WHEEL}.metadata"

    def read(file: BinaryIO) -> bytes:
        return file.read()

    assert await storage.store_derived(target, source=WHEEL, derive=read, sha256=sha(b"x")) is None
    assert (
        await storage.store_derived(target, source=WHEEL, derive=lambda _: None, sha256=sha(b""))
        is None
    )
    assert not (web / target).exists()
    assert temps(web) == []
    with pytest.raises(StorageError):
        await storage.store_derived(target, source=f"{WHEEL}x", derive=read, sha256=sha(b""))


# --- one step for several files ---------------------------------------------------------


def upper(file: BinaryIO) -> bytes | None:
    return file.read().upper()


def nothing(file: BinaryIO) -> bytes | None:
    return None


async def test_store_stream_writes_a_derivation_from_the_stored_file(
    storage: FileSystemStorage, web: Path
) -> None:
    sidecar = f"{WHEEL}.metadata"
    derivation = Derivation(relative=sidecar, derive=upper, sha256=sha(b"WHEEL").upper())
    blob = await storage.store_stream(
        WHEEL, stream(b"wh", b"eel"), sha256=sha(b"wheel"), size=5, derivation=derivation
    )
    assert blob.derived == StoredBlob(sha256=sha(b"WHEEL"), size=5)
    assert (web / sidecar).read_bytes() == b"WHEEL"
    assert mode(web / sidecar) == 0o644
    assert temps(web) == []


async def test_store_stream_writes_no_derivation_that_does_not_match(
    storage: FileSystemStorage, web: Path
) -> None:
    sidecar = f"{WHEEL}.metadata"
    for derive, expected in ((upper, sha(b"something else")), (nothing, sha(b""))):
        derivation = Derivation(relative=sidecar, derive=derive, sha256=expected)
        blob = await storage.store_stream(
            WHEEL, stream(b"wheel"), sha256=sha(b"wheel"), size=5, derivation=derivation
        )
        assert blob == StoredBlob(sha256=sha(b"wheel"), size=5)
        assert blob.derived is None
        assert (web / WHEEL).read_bytes() == b"wheel", "the file itself lands all the same"
        assert not (web / sidecar).exists()
    assert temps(web) == []


async def test_store_stream_derives_nothing_when_the_file_itself_is_refused(
    storage: FileSystemStorage, web: Path
) -> None:
    derivation = Derivation(relative=f"{WHEEL}.metadata", derive=upper, sha256=sha(b"WHEEL"))
    with pytest.raises(IntegrityError):
        await storage.store_stream(
            WHEEL, stream(b"wheeL"), sha256=sha(b"wheel"), size=5, derivation=derivation
        )
    assert not (web / WHEEL).exists()
    assert not (web / f"{WHEEL}.metadata").exists()
    assert temps(web) == []


async def test_store_stream_derivation_may_land_in_another_directory(
    storage: FileSystemStorage, web: Path
) -> None:
    derivation = Derivation(relative="elsewhere/demo.txt", derive=upper, sha256=sha(b"WHEEL"))
    blob = await storage.store_stream(
        WHEEL, stream(b"wheel"), sha256=None, size=None, derivation=derivation
    )
    assert blob.derived is not None
    assert (web / "elsewhere/demo.txt").read_bytes() == b"WHEEL"


async def test_write_files_replaces_each_file_and_sweeps_their_directories(
    storage: FileSystemStorage, web: Path
) -> None:
    old = put(web / "simple/demo/index.html", b"old")
    stale = put(web / "simple/demo/.index.html.0123.part", b"left by a killed run")
    other_stale = put(web / "pypi/demo/.json.0123.part", b"left by a killed run")
    await storage.write_files(
        [
            ("simple/demo/index.html", b"<html>"),
            ("simple/demo/index.v1_json", b"{}"),
            ("pypi/demo/json", b"{ }"),
        ]
    )
    assert old.read_bytes() == b"<html>"
    assert (web / "simple/demo/index.v1_json").read_bytes() == b"{}"
    assert (web / "pypi/demo/json").read_bytes() == b"{ }"
    assert mode(web / "pypi/demo/json") == 0o644
    assert not stale.exists()
    assert not other_stale.exists()
    assert temps(web) == []


async def test_write_files_names_the_file_the_disk_refused(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple/blocked", b"a file where a directory should be")
    with pytest.raises(StorageError, match=r"simple/blocked/index\.html"):
        await storage.write_files(
            [("simple/first/index.html", b"1"), ("simple/blocked/index.html", b"2")]
        )
    assert (web / "simple/first/index.html").read_bytes() == b"1", "those before it land"
    assert temps(web) == []


async def test_write_files_of_nothing_writes_nothing(storage: FileSystemStorage, web: Path) -> None:
    await storage.write_files([])
    assert not web.exists()


async def test_adopt_all_answers_for_each_file_and_sweeps_each_directory(
    storage: FileSystemStorage, web: Path
) -> None:
    other = "packages/12/34/5678/other-1.0.tar.gz"
    put(web / WHEEL, b"wheel bytes")
    stale = put(web / "packages/12/34/5678/.other-1.0.tar.gz.0123.part", b"half")
    found = await storage.adopt_all(
        [
            (WHEEL, sha(b"wheel bytes"), 11),
            (other, sha(b"other"), None),
            ("packages/ff/ff/none/missing.whl", sha(b""), 0),
        ]
    )
    assert found == [StoredBlob(sha256=sha(b"wheel bytes"), size=11), None, None]
    assert not stale.exists()
    assert await storage.adopt_all([]) == []


async def test_adopt_all_raises_storage_error_when_a_directory_cannot_be_read(
    storage: FileSystemStorage, web: Path
) -> None:
    directory = (web / WHEEL).parent
    directory.parent.mkdir(parents=True)
    directory.symlink_to(directory.name)  # a loop: ELOOP, even for root
    with pytest.raises(StorageError, match="cannot inspect"):
        await storage.adopt_all([(WHEEL, sha(b"wheel bytes"), 11)])


async def test_write_files_reports_a_directory_it_cannot_sweep(
    storage: FileSystemStorage, web: Path
) -> None:
    (web / "simple").mkdir(parents=True)
    (web / "simple/demo").symlink_to("demo")  # a loop: ELOOP, even for root
    with pytest.raises(StorageError, match="cannot clean"):
        await storage.write_files([("simple/demo/index.html", b"<html>")])


async def test_write_files_reports_a_directory_fsync_the_disk_refused(
    in_process: FileSystemStorage, web: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = in_process

    def refuse(directory: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(filesystem, "_fsync_directory", refuse)
    with pytest.raises(StorageError, match=r"cannot write .*simple/demo: Input/output error"):
        await storage.write_files([("simple/demo/index.html", b"<html>")])
    assert temps(web) == []


class Repeating:
    """A random source that answers ``values`` in turn, then the last one forever."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def getrandbits(self, bits: int) -> int:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


async def test_temp_names_that_are_taken_are_skipped(
    in_process: FileSystemStorage, web: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = in_process
    taken = put(web / "simple/demo" / f".index.html.{0:012x}.part", b"someone else's")
    monkeypatch.setattr(storage, "_live", NoSweep())
    monkeypatch.setattr(filesystem, "_random", Repeating(0, 1))
    await storage.write_files([("simple/demo/index.html", b"<html>")])
    assert (web / "simple/demo/index.html").read_bytes() == b"<html>"
    assert taken.read_bytes() == b"someone else's", "never opened"

    # Only taken names: give up with a clear error rather than loop forever.
    monkeypatch.setattr(filesystem, "_random", Repeating(0))
    with pytest.raises(StorageError, match="no unused temporary file name"):
        await storage.write_files([("simple/demo/index.html", b"<html>")])


class NoSweep(_LiveTemps):
    """Live temps that leave stale ones alone (so a planted temp stays in the way)."""

    def remove_stale(self, directory: Path) -> int:
        return 0


# --- writer processes ---------------------------------------------------------------


def die(file: BinaryIO) -> bytes | None:
    """A derivation that kills the writer process running it (as the OOM killer would)."""
    os._exit(3)


def slowly_upper(file: BinaryIO) -> bytes | None:
    """A derivation that takes half a second, so a store can be cancelled mid-step."""
    time.sleep(0.5)
    return file.read().upper()


async def test_small_files_and_pages_land_through_a_writer_process(web: Path) -> None:
    pools: list[WriterPool] = []

    def watched(size: int) -> WriterPool:
        pools.append(WriterPool(size))
        return pools[-1]

    derivation = Derivation(relative=f"{WHEEL}.metadata", derive=upper, sha256=sha(b"WHEEL"))
    async with FileSystemStorage(web, writer_processes=1, writer_pool_factory=watched) as storage:
        blob = await storage.store_stream(
            WHEEL, stream(b"whe", b"el"), sha256=sha(b"wheel"), size=5, derivation=derivation
        )
        await storage.write_files([("simple/demo/index.html", b"<html>")])
        (pool,) = pools
        writer_pid = pool.submit(os.getpid).result(timeout=30)
    assert writer_pid != os.getpid(), "the writes went to a writer process"
    assert blob == StoredBlob(
        sha256=sha(b"wheel"), size=5, derived=StoredBlob(sha256=sha(b"WHEEL"), size=5)
    )
    assert (web / WHEEL).read_bytes() == b"wheel"
    assert (web / f"{WHEEL}.metadata").read_bytes() == b"WHEEL"
    assert (web / "simple/demo/index.html").read_bytes() == b"<html>"
    assert temps(web) == []
    with pytest.raises(ProcessLookupError):
        os.kill(writer_pid, 0)  # the storage's end stopped its writer
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(os.getpid)


async def test_a_writer_process_refusal_names_the_file_and_the_reason(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "packages/ab", b"a file where a directory belongs")
    with pytest.raises(StorageError, match=r"cannot store .*/packages/ab/cd/.*: a parent is not"):
        await storage.store_stream(WHEEL, stream(b"wheel"), sha256=sha(b"wheel"), size=5)
    with pytest.raises(StorageError, match=r"cannot write .*/packages/ab/x: a parent is not"):
        await storage.write_files([("packages/ab/x", b"page")])


async def test_a_writer_process_refuses_bytes_that_do_not_match(
    storage: FileSystemStorage, web: Path
) -> None:
    with pytest.raises(IntegrityError, match="expected sha256"):
        await storage.store_stream(WHEEL, stream(b"wheeL"), sha256=sha(b"wheel"), size=5)
    with pytest.raises(IntegrityError, match="expected 5 bytes, got at least 6"):
        await storage.store_stream(WHEEL, stream(b"whe", b"els"), sha256=None, size=5)
    assert not (web / WHEEL).exists()
    assert temps(web) == []


async def test_a_writer_process_that_dies_fails_that_store_and_the_next_one_works(
    storage: FileSystemStorage, web: Path
) -> None:
    derivation = Derivation(relative=f"{WHEEL}.metadata", derive=die, sha256=sha(b"WHEEL"))
    with pytest.raises(StorageError, match=r"cannot store .*: a disk writer process died"):
        await storage.store_stream(
            WHEEL, stream(b"wheel"), sha256=sha(b"wheel"), size=5, derivation=derivation
        )
    assert not (web / f"{WHEEL}.metadata").exists()
    blob = await storage.store_stream(
        "packages/other.whl", stream(b"other"), sha256=sha(b"other"), size=5
    )
    assert blob.size == 5
    assert (web / "packages/other.whl").read_bytes() == b"other"


async def test_a_cancelled_store_waits_for_its_writer_process(
    storage: FileSystemStorage, web: Path
) -> None:
    derivation = Derivation(relative=f"{WHEEL}.metadata", derive=slowly_upper, sha256=sha(b"WHEEL"))
    task = asyncio.create_task(
        storage.store_stream(
            WHEEL, stream(b"wheel"), sha256=sha(b"wheel"), size=5, derivation=derivation
        )
    )
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The writer could not be stopped: by the time the cancellation is through, its
    # step is finished, both files are whole and no temp is left to race a cleanup.
    assert (web / WHEEL).read_bytes() == b"wheel"
    assert (web / f"{WHEEL}.metadata").read_bytes() == b"WHEEL"
    assert temps(web) == []


async def test_large_writes_stay_in_this_process(web: Path) -> None:
    def no_writer(size: int) -> WriterPool:
        raise AssertionError("a large write went to a writer process")

    big = b"x" * (filesystem.WRITER_BYTES + 1)
    async with FileSystemStorage(web, writer_pool_factory=no_writer) as storage:
        await storage.store_stream(WHEEL, stream(big), sha256=sha(big), size=len(big))
        await storage.write_files([("simple/index.html", big)])
        await storage.write_bytes("last-modified", b"20261124T00:00:00\n")
    assert (web / WHEEL).stat().st_size == len(big)
    assert (web / "simple/index.html").stat().st_size == len(big)
    assert (web / "last-modified").read_bytes() == b"20261124T00:00:00\n"


def test_the_writer_steps_work_in_this_process_too(web: Path) -> None:
    # What a writer process runs, run here (coverage does not follow the writers).
    derivation = Derivation(relative=f"{WHEEL}.metadata", derive=upper, sha256=sha(b"WHEEL"))
    target = web / WHEEL
    blob = filesystem._store_whole(
        target,
        label=WHEEL,
        data=b"wheel",
        sha256=sha(b"wheel"),
        size=5,
        sidecar=(web / f"{WHEEL}.metadata", derivation),
    )
    assert blob.derived == StoredBlob(sha256=sha(b"WHEEL"), size=5)
    plain = filesystem._store_whole(
        web / "packages/plain.tar.gz", label="plain", data=b"x", sha256=None, size=1, sidecar=None
    )
    assert plain == StoredBlob(sha256=sha(b"x"), size=1)
    stale = put(web / "simple/demo/.index.html.0123.part", b"left by a killed run")
    removed = filesystem._write_all([(web / "simple/demo/index.html", "x", b"<html>")], None)
    assert removed == 1
    assert not stale.exists()
    assert (web / "simple/demo/index.html").read_bytes() == b"<html>"


# --- generated pages -------------------------------------------------------------------


def root_pieces() -> list[tuple[bytes, bytes]]:
    return [(b"<html>", b"{"), (b"a", b"1"), (b"</html>", b"}")]


async def test_write_generated_writes_every_file_a_piece_at_a_time(
    storage: FileSystemStorage, web: Path
) -> None:
    stale = put(web / "simple/.index.html.0123.part", b"left by a killed run")
    put(web / "simple/index.v1_json", b"old")
    await storage.write_generated(["simple/index.html", "simple/index.v1_json"], root_pieces)
    assert (web / "simple/index.html").read_bytes() == b"<html>a</html>"
    assert (web / "simple/index.v1_json").read_bytes() == b"{1}"
    assert mode(web / "simple/index.html") == 0o644
    assert not stale.exists()
    assert temps(web) == []


async def test_write_generated_keeps_the_old_files_when_producing_fails(
    storage: FileSystemStorage, web: Path
) -> None:
    old = put(web / "simple/index.html", b"old page")

    def broken() -> Iterator[tuple[bytes]]:
        yield (b"<html>",)
        raise KeyError("the state store went away")

    with pytest.raises(KeyError, match="went away"):
        await storage.write_generated(["simple/index.html"], broken)
    assert old.read_bytes() == b"old page"
    assert temps(web) == []


async def test_write_generated_names_the_file_the_disk_refused(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "simple", b"a file where the directory belongs")
    with pytest.raises(StorageError, match=r"cannot write .*simple/index.html: a parent is not"):
        await storage.write_generated(["simple/index.html"], lambda: [(b"<html>",)])
    assert temps(web) == []


# --- lifecycle ---------------------------------------------------------------------------


async def test_a_storage_works_only_inside_its_async_with_block(web: Path) -> None:
    storage = FileSystemStorage(web)
    with pytest.raises(RuntimeError, match="async with"):
        await storage.write_bytes("last-modified", b"x")
    async with storage:
        await storage.write_bytes("last-modified", b"x")
        with pytest.raises(RuntimeError, match="already open"):
            await storage.__aenter__()
    with pytest.raises(RuntimeError, match="async with"):
        await storage.read_bytes("last-modified")
    async with storage:  # it may be opened again, with fresh pools
        assert await storage.read_bytes("last-modified") == b"x"


async def test_leaving_the_block_stops_the_storages_threads(web: Path) -> None:
    before = {thread.ident for thread in threading.enumerate()}
    async with FileSystemStorage(web, io_threads=3) as storage:
        await asyncio.gather(*(storage.exists(f"simple/p{i}") for i in range(20)))
        disk = [t for t in threading.enumerate() if t.name.startswith("mirror-disk")]
        assert disk
        assert all(t.ident not in before for t in disk), "the storage's own threads"
        assert len(disk) <= 3, "io_threads bounds the pool"
    assert not any(t.is_alive() for t in disk)


# --- list_files ---------------------------------------------------------------------------


async def listed(storage: FileSystemStorage, top: str) -> list[tuple[str, int]]:
    return [(entry.path, entry.size) async for entry in storage.list_files(top)]


async def test_list_files_walks_depth_first_with_sizes_and_temps(
    storage: FileSystemStorage, web: Path
) -> None:
    put(web / "last-modified", b"12")
    put(web / "packages/b/f.whl", b"wheel")
    put(web / "packages/a/c/g.tar.gz", b"sd")
    put(web / "packages/a/z.whl", b"z")
    put(web / "packages/a/.z.whl.0123.part", b"half")
    put(web / "simple/demo/index.html", b"<html>")
    (web / "simple/empty").mkdir()
    assert await listed(storage, "packages") == [
        ("packages/a/.z.whl.0123.part", 4),
        ("packages/a/z.whl", 1),
        ("packages/a/c/g.tar.gz", 2),
        ("packages/b/f.whl", 5),
    ]
    everything = await listed(storage, "")
    assert everything[0] == ("last-modified", 2)
    assert [path for path, _ in everything][1:] == [
        "packages/a/.z.whl.0123.part",
        "packages/a/z.whl",
        "packages/a/c/g.tar.gz",
        "packages/b/f.whl",
        "simple/demo/index.html",
    ]
    assert await listed(storage, "simple/demo") == [("simple/demo/index.html", 6)]


async def test_list_files_of_a_missing_directory_lists_nothing(
    storage: FileSystemStorage, web: Path
) -> None:
    assert await listed(storage, "") == []
    assert await listed(storage, "packages") == []
    put(web / "packages", b"a file, not a directory")
    assert await listed(storage, "packages") == []


async def test_list_files_follows_symbolic_links(storage: FileSystemStorage, web: Path) -> None:
    put(web.parent / "elsewhere/f.whl", b"wheel")
    put(web / "simple/index.html", b"<html>")
    (web / "packages").symlink_to(web.parent / "elsewhere")
    (web / "simple/gone.html").symlink_to(web.parent / "nowhere")
    assert await listed(storage, "packages") == [("packages/f.whl", 5)]
    paths = dict(await listed(storage, "simple"))
    assert paths["simple/index.html"] == 6
    assert "simple/gone.html" in paths, "a dangling link is still listed"


async def test_list_files_lists_many_files_in_batches(
    storage: FileSystemStorage, web: Path
) -> None:
    names = [f"packages/x/{index:05d}.whl" for index in range(2500)]
    for name in names:
        put(web / name, b"")
    assert [path for path, _ in await listed(storage, "packages")] == names
    early = storage.list_files("packages")
    assert (await anext(early)).path == names[0]
    await early.aclose()  # a listing left early releases its walk


async def test_list_files_refuses_an_unsafe_top(storage: FileSystemStorage) -> None:
    with pytest.raises(UnsafePathError):
        await listed(storage, "../escape")


async def test_list_files_reports_an_unreadable_entry(
    storage: FileSystemStorage, web: Path
) -> None:
    (web / "packages").mkdir(parents=True)
    (web / "packages/loop").symlink_to("loop")  # ELOOP on stat, even for root
    with pytest.raises(StorageError, match="cannot list"):
        await listed(storage, "packages")
