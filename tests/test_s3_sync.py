"""The sync engine into a real S3 API (moto's server on loopback): the same promises
as on disk, checked on a local copy of the bucket's tree."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from mirror.errors import IntegrityError, UnsafePathError
from mirror.state import UNFINISHED_META_KEY
from mirror.storage import Derivation, Storage
from mirror.storage.s3 import SHA256_METADATA, S3Storage
from mirror.testing import FakeUpstream, FaultPlan
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream, files_on_disk
from tests.s3support import TEST_PART_BYTES, download_tree


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "1.1", requires_python=">=3.8")
    upstream.add_release("beta.lib", "0.1", requires_dist=["Alpha>=1.0"])
    upstream.add_release("gamma", "2.0", wheel=False)


def on_s3(runner: MirrorRunner, storage: S3Storage) -> MirrorRunner:
    def factory(_web: object) -> Storage:
        return storage

    runner.storage_factory = factory
    return runner


async def assert_bucket_matches_upstream(
    runner: MirrorRunner, storage: S3Storage, upstream: FakeUpstream
) -> None:
    await download_tree(storage, runner.web)
    await assert_matches_upstream(runner.directory, upstream)


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def test_a_full_sync_into_the_bucket_mirrors_everything(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    seed(upstream)
    report = await on_s3(runner, s3_storage).sync()
    assert report.ok
    assert report.projects_synced == 3
    await assert_bucket_matches_upstream(runner, s3_storage, upstream)
    assert not (runner.directory / "web").joinpath(".mirror-lock").exists()
    # Objects carry what a web server or CDN in front of the bucket needs.
    head = await s3_storage.client.head_object(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of("simple/alpha/index.v1_json")
    )
    assert head["ContentType"] == "application/vnd.pypi.simple.v1+json"
    assert head["CacheControl"] == "max-age=600, public"


async def test_incremental_changes_and_deletions_reach_the_bucket(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    seed(upstream)
    on_s3(runner, s3_storage)
    await runner.sync()
    upstream.add_release("Alpha", "2.0")
    upstream.remove_file("Alpha", "alpha-1.0.tar.gz")
    upstream.remove_project("gamma")
    report = await runner.sync()
    assert report.ok
    assert report.files_deleted >= 2
    assert report.projects_removed == 1
    await assert_bucket_matches_upstream(runner, s3_storage, upstream)
    assert "alpha-1.0.tar.gz" not in files_on_disk(runner.directory)
    assert not await s3_storage.exists("simple/gamma/index.html")

    report = await runner.sync()
    assert report.ok
    assert report.files_downloaded == 0


async def test_upstream_faults_leave_the_bucket_consistent_and_the_next_run_converges(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    seed(upstream)
    on_s3(runner, s3_storage)
    # Errors, resets, truncated and corrupted bodies spread over every request (seeded:
    # the same requests fail each time).
    upstream.faults = FaultPlan(
        seed=4, error_rate=0.15, truncate_rate=0.1, corrupt_rate=0.4, stale_rate=0.2
    )
    report = await runner.sync()
    assert not report.ok
    await download_tree(s3_storage, runner.web)
    # Whatever landed is linked consistently: pages only ever name present files.
    from tests.mirrorcheck import assert_consistent  # noqa: PLC0415

    assert_consistent(runner.directory)
    upstream.faults = None
    upstream.add_release("beta.lib", "0.2")
    runner.clock.now += 10**7
    report = await runner.sync()
    await download_tree(s3_storage, runner.web)
    assert_consistent(runner.directory)
    # The faults gone, the retried projects converge: the bucket is upstream's.
    assert report.ok, report.failures
    await assert_bucket_matches_upstream(runner, s3_storage, upstream)


async def test_a_sync_killed_mid_upload_leaves_nothing_linked_and_the_next_run_converges(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    big = os.urandom(2 * TEST_PART_BYTES + 1000)
    upstream.add_file("Huge", "1.0", "huge-1.0.tar.gz", big)
    upstream.add_release("small", "1.0")
    on_s3(runner, s3_storage)
    # A killed run's leftover: an upload never completed or aborted.
    stale = await s3_storage.client.create_multipart_upload(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of("packages/aa/bb/left-over.tar.gz")
    )
    assert stale["UploadId"]
    with runner.state() as state:
        state.set_meta(UNFINISHED_META_KEY, "1")
    report = await runner.sync()
    assert report.ok
    assert [u async for u in s3_storage.iter_uploads()] == []
    await assert_bucket_matches_upstream(runner, s3_storage, upstream)
    with runner.state() as state:
        assert not state.get_meta(UNFINISHED_META_KEY)


async def test_a_large_file_goes_up_in_parts_verified_and_recorded(
    s3_storage: S3Storage,
) -> None:
    data = os.urandom(2 * TEST_PART_BYTES + 12345)
    sha = hashlib.sha256(data).hexdigest()
    blob = await s3_storage.store_stream(
        "packages/ab/cd/big.tar.gz", chunks_of(data), sha256=sha, size=len(data)
    )
    assert (blob.sha256, blob.size) == (sha, len(data))
    assert await s3_storage.read_bytes("packages/ab/cd/big.tar.gz") == data
    info = await s3_storage.head("packages/ab/cd/big.tar.gz")
    assert info is not None
    assert (info.size, info.sha256) == (len(data), sha)
    assert await s3_storage.hash_file("packages/ab/cd/big.tar.gz") == blob
    assert await s3_storage.adopt("packages/ab/cd/big.tar.gz", sha256=sha, size=len(data)) == blob

    # Without an expected hash the verified one is recorded after the upload.
    blob = await s3_storage.store_stream(
        "packages/ab/cd/unknown.tar.gz", chunks_of(data), sha256=None, size=None
    )
    info = await s3_storage.head("packages/ab/cd/unknown.tar.gz")
    assert info is not None
    assert info.sha256 == sha


@pytest.mark.parametrize("length", [1000, 2 * TEST_PART_BYTES + 5])
async def test_a_mismatch_leaves_no_object_and_no_unfinished_upload(
    s3_storage: S3Storage, length: int
) -> None:
    data = os.urandom(length)
    with pytest.raises(IntegrityError, match="expected sha256"):
        await s3_storage.store_stream(
            "packages/ab/cd/bad.whl", chunks_of(data), sha256="0" * 64, size=length
        )
    with pytest.raises(IntegrityError, match="bytes"):
        await s3_storage.store_stream(
            "packages/ab/cd/bad.whl", chunks_of(data), sha256=None, size=length - 1
        )
    with pytest.raises(IntegrityError, match="limit"):
        await s3_storage.store_stream(
            "packages/ab/cd/bad.whl", chunks_of(data), sha256=None, size=None, max_size=10
        )
    assert not await s3_storage.exists("packages/ab/cd/bad.whl")
    assert [u async for u in s3_storage.iter_uploads()] == []


async def test_a_cancelled_multipart_upload_is_aborted(s3_storage: S3Storage) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * TEST_PART_BYTES
            started.set()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(
        s3_storage.store_stream("packages/ab/cd/endless.bin", endless(), sha256=None, size=None)
    )
    await started.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [u async for u in s3_storage.iter_uploads()] == []
    assert not await s3_storage.exists("packages/ab/cd/endless.bin")


async def test_generated_pages_of_any_size_and_derived_sidecars(s3_storage: S3Storage) -> None:
    part = b"y" * (TEST_PART_BYTES + 1)

    def produce() -> list[list[bytes]]:
        return [[part, b"<a>"], [b"tail", b"</a>"]]

    await s3_storage.write_generated(["simple/index.html", "simple/index.v1_json"], produce)
    assert await s3_storage.read_bytes("simple/index.html") == part + b"tail"
    assert await s3_storage.read_bytes("simple/index.v1_json") == b"<a></a>"
    info = await s3_storage.head("simple/index.html")
    assert info is not None
    assert info.sha256 == hashlib.sha256(part + b"tail").hexdigest()

    def failing() -> list[list[bytes]]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await s3_storage.write_generated(["simple/index.html"], failing)
    assert await s3_storage.read_bytes("simple/index.v1_json") == b"<a></a>"

    meta = b"Metadata-Version: 2.1\n"
    derivation = Derivation(
        relative="packages/ab/cd/w.whl.metadata",
        derive=lambda file: meta if file.read() == b"wheel" else None,
        sha256=hashlib.sha256(meta).hexdigest(),
    )
    blob = await s3_storage.store_stream(
        "packages/ab/cd/w.whl", chunks_of(b"wheel"), sha256=None, size=5, derivation=derivation
    )
    assert blob.derived is not None
    assert await s3_storage.read_bytes("packages/ab/cd/w.whl.metadata") == meta
    await s3_storage.delete("packages/ab/cd/w.whl.metadata")
    derived = await s3_storage.store_derived(
        "packages/ab/cd/w.whl.metadata",
        source="packages/ab/cd/w.whl",
        derive=derivation.derive,
        sha256=derivation.sha256,
    )
    assert derived is not None
    wrong = await s3_storage.store_derived(
        "packages/ab/cd/w.whl.metadata2",
        source="packages/ab/cd/w.whl",
        derive=derivation.derive,
        sha256="0" * 64,
    )
    assert wrong is None
    head = await s3_storage.client.head_object(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of("packages/ab/cd/w.whl")
    )
    assert head["Metadata"][SHA256_METADATA] == blob.sha256
    assert head["CacheControl"] == "public, max-age=31536000, immutable"


async def test_unsafe_paths_and_missing_objects(s3_storage: S3Storage) -> None:
    for bad in ["../x", "/abs", "a//b", "a\\b", "a/./b", "nul\x00"]:
        with pytest.raises(UnsafePathError):
            s3_storage.key_of(bad)
    from mirror.errors import StorageError  # noqa: PLC0415

    with pytest.raises(StorageError, match=r"s3://.*/mirror/simple/none: NoSuchKey"):
        await s3_storage.read_bytes("simple/none")
    assert await s3_storage.adopt("simple/none", sha256="0" * 64) is None
    await s3_storage.delete("simple/none")
    await s3_storage.delete_tree("simple/none")
    assert await s3_storage.remove_stale_temps("packages") == 0
