"""The S3 tests' helpers: a fresh bucket on the moto server, and the bucket's tree
copied to a local directory so the file-system checks of mirrorcheck apply."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mirror.config import S3Settings
from mirror.storage.s3 import S3Storage, open_s3_storage

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-never-logged",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Fake credentials for moto on loopback; botocore's chain finds them in the env."""

TEST_PART_BYTES = 5 << 20
"""S3's smallest part: a file above it goes up in parts (moto enforces the minimum)."""


def set_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bucket_name(test_name: str) -> str:
    """A valid, unique bucket name for a test."""
    digest = hashlib.sha256(test_name.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem}-{digest}"


@asynccontextmanager
async def fresh_bucket(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, test_name: str, *, prefix: str = "mirror/"
) -> AsyncIterator[S3Storage]:
    set_dummy_credentials(monkeypatch)
    settings = S3Settings(
        bucket=bucket_name(test_name), prefix=prefix, endpoint_url=endpoint, region="us-east-1"
    )
    async with open_s3_storage(settings) as storage:
        await storage.client.create_bucket(Bucket=settings.bucket)
        yield S3Storage(
            storage.client, bucket=settings.bucket, prefix=prefix, part_bytes=TEST_PART_BYTES
        )


def settings_of(storage: S3Storage, endpoint: str) -> S3Settings:
    return S3Settings(
        bucket=storage.bucket, prefix=storage.prefix, endpoint_url=endpoint, region="us-east-1"
    )


async def download_tree(storage: S3Storage, web: Path) -> set[str]:
    """Copy every object under the prefix to ``web`` (emptied first); return the
    relative paths copied."""
    import shutil  # noqa: PLC0415

    shutil.rmtree(web, ignore_errors=True)
    copied: set[str] = set()
    async for relative, _ in storage.iter_objects():
        if relative.startswith("."):
            continue  # the lock
        target = web / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await storage.read_bytes(relative))
        copied.add(relative)
    return copied


def write_s3_config(
    tmp_path: Path, upstream_url: str, storage: S3Storage, endpoint: str, **serve: str
) -> Path:
    """A CLI config (as :func:`tests.harness.write_config`) whose tree is the bucket of
    ``storage``; ``serve`` keys go in ``[serve]``."""
    from tests.harness import write_config  # noqa: PLC0415

    path = write_config(tmp_path, upstream_url)
    lines = [
        "[storage]",
        "backend = s3",
        f"bucket = {storage.bucket}",
        f"prefix = {storage.prefix}",
        f"endpoint-url = {endpoint}",
        "region = us-east-1",
    ]
    if serve:
        lines += ["[serve]", *(f"{key} = {value}" for key, value in serve.items())]
    with path.open("a") as file:
        file.write("\n".join(lines) + "\n")
    return path


class FaultyClient:
    """A real S3 client that fails the calls a test names: ``faults[method]`` is a list
    of what each next call does (an exception to raise, or None to pass through), and
    ``when`` narrows a method's faults to calls whose keyword arguments include it."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.faults: dict[str, list[BaseException | None]] = {}
        self.when: dict[str, str] = {}

    def __getattr__(self, name: str) -> object:
        real = getattr(self._client, name)
        if name not in self.faults:
            return real

        async def call(**kwargs: object) -> object:
            queue = self.faults[name]
            wanted = self.when.get(name)
            if queue and (wanted is None or wanted in kwargs):
                fault = queue.pop(0)
                if fault is not None:
                    raise fault
            return await real(**kwargs)

        return call


def client_error(code: str, operation: str = "PutObject") -> BaseException:
    """The ClientError botocore raises for an S3 error ``code``."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    error: BaseException = ClientError({"Error": {"Code": code, "Message": code}}, operation)
    return error


def unreachable() -> BaseException:
    """The error botocore raises when the store cannot be reached."""
    from botocore.exceptions import EndpointConnectionError  # noqa: PLC0415

    error: BaseException = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    return error


def faulty_storage(
    storage: S3Storage, *, bucket: str | None = None
) -> tuple[S3Storage, FaultyClient]:
    """``storage``'s bucket (or ``bucket``) through a :class:`FaultyClient`."""
    client = FaultyClient(storage.client)
    faulty = S3Storage(
        client,  # type: ignore[arg-type]  # the real client behind a thin wrapper
        bucket=storage.bucket if bucket is None else bucket,
        prefix=storage.prefix,
        part_bytes=TEST_PART_BYTES,
    )
    return faulty, client
