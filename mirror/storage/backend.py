"""Choosing the storage backend a config names: ``[storage] backend``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mirror import storage as storage_package
from mirror.config import Config
from mirror.storage import Storage


@asynccontextmanager
async def open_backend(config: Config, web_root: Path, *, lock: bool) -> AsyncIterator[Storage]:
    """The storage ``config`` names for the duration of the block: the directory
    ``web_root`` by default, or the S3 bucket of ``[storage] backend = s3`` (its
    client closed at the end). With ``lock``, the bucket's run lock is held too
    (see :mod:`mirror.s3lock`; the caller holds the mirror directory's own).

    Raises LockedError when another host holds the bucket's lock, StorageError when
    the bucket cannot be reached."""
    if config.s3 is None:
        # Looked up when called: tests put a faulty disk in the package's place.
        async with storage_package.FileSystemStorage(web_root) as storage:
            yield storage
        return
    # Only an S3 mirror loads aiobotocore (a third of a second).
    from mirror.s3lock import bucket_lock  # noqa: PLC0415
    from mirror.storage.s3 import open_s3_storage  # noqa: PLC0415

    async with open_s3_storage(config.s3) as storage:
        if not lock:
            yield storage
            return
        async with bucket_lock(storage):
            yield storage
