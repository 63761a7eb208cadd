"""The bucket's run lock when the store misbehaves: races with other hosts, failed
renewals, releases and reads (a real S3 API, with chosen calls failed)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from mirror.errors import LockedError, StorageError
from mirror.s3lock import LOCK_KEY, bucket_lock
from mirror.storage.s3 import S3Storage
from tests.s3support import client_error, faulty_storage, unreachable


async def put_lease(storage: S3Storage, *, owner: str, expires: float) -> None:
    await storage.client.put_object(
        Bucket=storage.bucket,
        Key=storage.key_of(LOCK_KEY),
        Body=json.dumps({"owner": owner, "expires": expires}).encode(),
    )


async def test_a_lock_released_between_create_and_read_is_created_again(
    s3_storage: S3Storage,
) -> None:
    storage, client = faulty_storage(s3_storage)
    # The create finds the object (held), the read finds it gone (released meanwhile).
    client.faults["put_object"] = [client_error("PreconditionFailed")]
    client.faults["get_object"] = [client_error("NoSuchKey", "GetObject")]
    async with bucket_lock(storage):
        assert json.loads(await s3_storage.read_bytes(LOCK_KEY))["owner"]
    assert not await s3_storage.exists(LOCK_KEY)


async def test_a_takeover_lost_to_another_successor_is_refused(s3_storage: S3Storage) -> None:
    await put_lease(s3_storage, owner="crashed-host:1", expires=time.time() - 1)
    storage, client = faulty_storage(s3_storage)
    client.when["put_object"] = "IfMatch"
    client.faults["put_object"] = [client_error("PreconditionFailed")] * 3
    with pytest.raises(LockedError, match="another mirror run took s3://"):
        async with bucket_lock(storage):
            pytest.fail("locked although another successor took over")
    assert json.loads(await s3_storage.read_bytes(LOCK_KEY))["owner"] == "crashed-host:1"


async def test_renewals_that_fail_until_the_lease_ends_stop_the_run(
    s3_storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    storage, client = faulty_storage(s3_storage)
    client.when["put_object"] = "IfMatch"
    client.faults["put_object"] = [unreachable()] * 20

    async def run_without_a_lease() -> None:
        async with bucket_lock(storage, lease_seconds=0.3):
            await asyncio.sleep(5)
            pytest.fail("the run went on without a lease")

    with pytest.raises(LockedError, match="lost the lock"):
        await run_without_a_lease()
    assert "cannot renew the lock" in caplog.text


async def test_a_renewal_that_fails_once_keeps_the_lock(s3_storage: S3Storage) -> None:
    storage, client = faulty_storage(s3_storage)
    client.when["put_object"] = "IfMatch"
    client.faults["put_object"] = [unreachable()]
    async with bucket_lock(storage, lease_seconds=0.6):
        await asyncio.sleep(0.9)
    assert not await s3_storage.exists(LOCK_KEY), "renewed, then released"


@pytest.mark.parametrize("fault", [client_error("AccessDenied", "DeleteObject"), unreachable()])
async def test_a_release_that_fails_is_logged_and_the_lease_runs_out(
    s3_storage: S3Storage, caplog: pytest.LogCaptureFixture, fault: BaseException
) -> None:
    storage, client = faulty_storage(s3_storage)
    client.faults["delete_object"] = [fault]
    async with bucket_lock(storage):
        pass
    assert "cannot release the lock" in caplog.text
    assert await s3_storage.exists(LOCK_KEY), "left for its lease to run out"


@pytest.mark.parametrize(
    ("fault", "shown"),
    [(client_error("AccessDenied", "GetObject"), "AccessDenied"), (unreachable(), "connect")],
)
async def test_a_lock_that_cannot_be_read_is_a_storage_error(
    s3_storage: S3Storage, fault: BaseException, shown: str
) -> None:
    await put_lease(s3_storage, owner="other-host:2", expires=time.time() + 60)
    storage, client = faulty_storage(s3_storage)
    client.faults["get_object"] = [fault]
    with pytest.raises(StorageError, match=f"cannot read the lock s3://.*{shown}"):
        async with bucket_lock(storage):
            pytest.fail("locked without reading the lease")


async def test_a_lock_that_cannot_be_written_is_a_storage_error(s3_storage: S3Storage) -> None:
    storage, client = faulty_storage(s3_storage)
    client.faults["put_object"] = [unreachable()]
    with pytest.raises(StorageError, match=r"cannot write the lock s3://.*connect"):
        async with bucket_lock(storage):
            pytest.fail("locked without writing the lease")


async def test_a_run_cancelled_from_outside_releases_the_lock(s3_storage: S3Storage) -> None:
    entered = asyncio.Event()

    async def run() -> None:
        async with bucket_lock(s3_storage):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await s3_storage.exists(LOCK_KEY)
