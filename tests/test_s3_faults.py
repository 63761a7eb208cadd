"""The S3 backend when the store refuses or misbehaves: every failure is a
StorageError naming the key (or an IntegrityError), and nothing is left linked."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from mirror.errors import IntegrityError, StorageError
from mirror.storage.s3 import S3Storage
from tests.s3support import TEST_PART_BYTES, client_error, faulty_storage, unreachable


async def chunks_of(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_missing_bucket_fails_every_listing_naming_it(s3_storage: S3Storage) -> None:
    missing, _ = faulty_storage(s3_storage, bucket="no-such-bucket-anywhere")
    with pytest.raises(StorageError, match="cannot list s3://no-such-bucket-anywhere/"):
        _ = [item async for item in missing.iter_objects()]
    with pytest.raises(StorageError, match="cannot list s3://no-such-bucket-anywhere/"):
        _ = [item async for item in missing.list_files("packages")]
    with pytest.raises(StorageError, match="cannot list uploads in s3://no-such-bucket"):
        _ = [item async for item in missing.iter_uploads()]
    with pytest.raises(StorageError, match="cannot list s3://no-such-bucket-anywhere/"):
        await missing.delete_tree("simple/alpha")


@pytest.mark.parametrize(
    ("fault", "shown"),
    [(client_error("403", "HeadObject"), "403"), (unreachable(), "connect")],
)
async def test_a_head_the_store_refuses_is_a_storage_error(
    s3_storage: S3Storage, fault: BaseException, shown: str
) -> None:
    await s3_storage.write_bytes("simple/alpha/index.html", b"page")
    storage, client = faulty_storage(s3_storage)
    client.faults["head_object"] = [fault]
    with pytest.raises(StorageError, match=f"cannot inspect s3://.*index.html: .*{shown}"):
        await storage.exists("simple/alpha/index.html")
    assert await storage.exists("simple/alpha/index.html"), "only that call failed"


async def test_a_read_the_store_refuses_is_not_taken_for_a_missing_object(
    s3_storage: S3Storage,
) -> None:
    await s3_storage.write_bytes("simple/alpha/index.html", b"page")
    storage, client = faulty_storage(s3_storage)
    client.faults["get_object"] = [client_error("AccessDenied", "GetObject")]
    with pytest.raises(StorageError, match="AccessDenied"):
        await storage.read_if_exists("simple/alpha/index.html")
    assert await storage.read_if_exists("simple/alpha/index.html") == b"page"
    assert await storage.read_if_exists("simple/beta/index.html") is None


async def test_an_object_of_another_size_is_not_adopted(s3_storage: S3Storage) -> None:
    data = b"wheel bytes"
    path = "packages/ab/cd/alpha-1.0-py3-none-any.whl"
    await s3_storage.store_stream(path, chunks_of(data), sha256=sha256_of(data), size=len(data))
    assert await s3_storage.adopt(path, sha256=sha256_of(data), size=len(data)) is not None
    assert await s3_storage.adopt(path, sha256=sha256_of(data), size=len(data) + 1) is None


async def test_a_short_body_is_an_integrity_error_and_leaves_no_object(
    s3_storage: S3Storage,
) -> None:
    data = b"short"
    path = "packages/ab/cd/short.tar.gz"
    with pytest.raises(IntegrityError, match="expected 9 bytes, got 5"):
        await s3_storage.store_stream(path, chunks_of(data), sha256=sha256_of(data), size=9)
    assert not await s3_storage.exists(path)


async def test_a_multipart_upload_that_cannot_be_aborted_is_swept_by_the_next_run(
    s3_storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    data = b"y" * (TEST_PART_BYTES + 10)
    path = "packages/ab/cd/big.whl"
    storage, client = faulty_storage(s3_storage)
    client.faults["abort_multipart_upload"] = [unreachable()]
    with pytest.raises(IntegrityError, match="expected sha256"):
        await storage.store_stream(
            path, chunks_of(data, TEST_PART_BYTES), sha256="0" * 64, size=len(data)
        )
    assert "cannot abort the upload of s3://" in caplog.text
    assert not await s3_storage.exists(path)
    assert [u async for u in s3_storage.iter_uploads("packages")] != [], "left behind"
    assert await s3_storage.remove_stale_temps("packages") == 1
    assert [u async for u in s3_storage.iter_uploads("packages")] == []


async def test_a_stale_upload_sweep_the_store_refuses_is_a_storage_error(
    s3_storage: S3Storage,
) -> None:
    key = s3_storage.key_of("packages/ab/cd/left.whl")
    await s3_storage.client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key)
    storage, client = faulty_storage(s3_storage)
    client.faults["abort_multipart_upload"] = [
        client_error("NoSuchUpload", "AbortMultipartUpload"),  # gone meanwhile: fine
        client_error("AccessDenied", "AbortMultipartUpload"),
        unreachable(),
    ]
    assert await storage.remove_stale_temps("packages") == 1
    await s3_storage.client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key)
    with pytest.raises(StorageError, match=r"cannot abort the upload of s3://.*AccessDenied"):
        await storage.remove_stale_temps("packages")
    with pytest.raises(StorageError, match=r"cannot abort the upload of s3://.*connect"):
        await storage.remove_stale_temps("packages")
    assert await s3_storage.remove_stale_temps("packages") >= 1


async def test_removing_a_listed_temp_aborts_its_upload_and_reports_refusals(
    s3_storage: S3Storage,
) -> None:
    key = s3_storage.key_of("packages/ab/cd/left.whl")
    for _ in range(2):
        await s3_storage.client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key)
    temps = [f.path async for f in s3_storage.list_files("packages") if f.size == 0]
    assert len(temps) == 2
    storage, client = faulty_storage(s3_storage)
    client.faults["abort_multipart_upload"] = [client_error("AccessDenied", "Abort")]
    with pytest.raises(StorageError, match=r"cannot abort the upload of s3://.*AccessDenied"):
        await storage.delete(temps[0])
    client.faults["abort_multipart_upload"] = [client_error("NoSuchUpload", "Abort")]
    await storage.delete(temps[0])  # aborted meanwhile: fine
    await storage.delete(temps[1])
    await s3_storage.delete(temps[0])
    assert [u async for u in s3_storage.iter_uploads("packages")] == []
