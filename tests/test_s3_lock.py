"""The bucket's run lock (mirror.s3lock) on a real S3 API: one syncing host at a
time, a crashed holder's lease taken over only once it has run out."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from mirror.cli import EXIT_LOCKED, EXIT_OK, main
from mirror.errors import LockedError, StorageError
from mirror.s3lock import LOCK_KEY, bucket_lock
from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream
from tests.s3support import DUMMY_CREDENTIALS, download_tree, write_s3_config


async def put_lease(storage: S3Storage, *, owner: str, expires: float) -> None:
    await storage.client.put_object(
        Bucket=storage.bucket,
        Key=storage.key_of(LOCK_KEY),
        Body=json.dumps({"owner": owner, "expires": expires}).encode(),
    )


async def test_a_second_holder_is_refused_until_the_first_releases(
    s3_storage: S3Storage,
) -> None:
    async with bucket_lock(s3_storage):
        with pytest.raises(LockedError, match=r"another mirror run holds .*owner"):
            async with bucket_lock(s3_storage):
                pytest.fail("two holders at once")
    assert not await s3_storage.exists(LOCK_KEY), "released at the end of the block"
    async with bucket_lock(s3_storage):
        pass


async def test_a_crashed_holders_lease_is_taken_over_only_once_it_ran_out(
    s3_storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    await put_lease(s3_storage, owner="crashed-host:1", expires=time.time() + 60)
    with pytest.raises(LockedError, match="crashed-host:1"):
        async with bucket_lock(s3_storage):
            pass
    await put_lease(s3_storage, owner="crashed-host:1", expires=time.time() - 1)
    async with bucket_lock(s3_storage):
        assert "took over the lock" in caplog.text
    # An unreadable lock object counts as expired too.
    await s3_storage.write_bytes(LOCK_KEY, b"not json")
    async with bucket_lock(s3_storage):
        pass


async def test_the_lease_is_renewed_while_the_run_lasts(s3_storage: S3Storage) -> None:
    # Long enough that a renewal is never late on a loaded machine (with 0.6 s, one
    # slow request lost the lease under a load average of 16).
    async with bucket_lock(s3_storage, lease_seconds=3.0):
        await asyncio.sleep(4.0)
        with pytest.raises(LockedError):
            async with bucket_lock(s3_storage, lease_seconds=3.0):
                pass


async def test_a_holder_that_lost_its_lease_is_stopped(s3_storage: S3Storage) -> None:
    async def run_that_loses_the_lock() -> None:
        async with bucket_lock(s3_storage, lease_seconds=0.3):
            # Another host took it over (as after a long network partition).
            await put_lease(s3_storage, owner="other-host:2", expires=time.time() + 60)
            await asyncio.sleep(5)

    with pytest.raises(LockedError, match="lost the lock"):
        await run_that_loses_the_lock()
    body = await s3_storage.read_bytes(LOCK_KEY)
    assert json.loads(body)["owner"] == "other-host:2", "the new holder's lock is left alone"


async def test_a_store_that_refuses_is_a_storage_error(s3_storage: S3Storage) -> None:
    broken = S3Storage(s3_storage.client, bucket="no-such-bucket-here", prefix="")
    with pytest.raises(StorageError, match="cannot write the lock s3://no-such-bucket-here"):
        async with bucket_lock(broken):
            pass


async def test_the_cli_syncs_into_the_bucket_and_a_second_syncer_is_refused(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream.add_release("Alpha", "1.0")
    config = write_s3_config(tmp_path, upstream.base_url, s3_storage, moto_endpoint)
    async with bucket_lock(s3_storage):
        assert await asyncio.to_thread(main, ["sync", "-c", str(config)]) == EXIT_LOCKED
    err = capsys.readouterr().err
    assert "another mirror run holds s3://" in err
    assert not (tmp_path / "mirror" / "web").exists()
    assert await download_tree(s3_storage, tmp_path / "copy") == set(), "nothing written"

    assert await asyncio.to_thread(main, ["sync", "-v", "-c", str(config)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "sync done: 1 project(s) synced" in err
    for secret in DUMMY_CREDENTIALS.values():
        if "secret" in secret:
            assert secret not in err, "credentials never reach a log line"
    assert not (tmp_path / "mirror" / "web").exists(), "the tree is in the bucket"
    assert await s3_storage.exists("simple/alpha/index.html")
