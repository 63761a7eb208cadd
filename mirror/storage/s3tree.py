"""The S3 bucket's tree as ``mirror verify`` reads it (:class:`mirror.verify.Tree`).

The check runs in worker threads; each call here hands a coroutine to the event loop
that owns the S3 client and waits for its answer. Without ``deep`` a file is checked
by one ``HEAD``: its size and the sha256 recorded when it was verified on upload
(``x-amz-meta-sha256``); nothing is downloaded. With ``deep`` every file is
downloaded and hashed. The tree itself is listed by :meth:`S3Storage.list_files`
(one listing; unfinished multipart uploads are listed as this backend's temps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TypeVar

from mirror.errors import StorageError
from mirror.storage.s3 import S3Storage

_T = TypeVar("_T")


class S3Tree:
    """:class:`mirror.verify.Tree` over an :class:`S3Storage` whose client runs on
    ``loop``. StorageError from the store propagates."""

    def __init__(
        self, storage: S3Storage, loop: asyncio.AbstractEventLoop, *, deep: bool = False
    ) -> None:
        self._storage = storage
        self._loop = loop
        self.hashes = deep

    def describe(self, relative: str) -> str:
        return self._storage.url_of(self._storage.key_of(relative))

    def inspect(self, relative: str, expected_size: int) -> tuple[int, str] | None:
        return self._run(self._inspect(relative, expected_size))

    async def _inspect(self, relative: str, expected_size: int) -> tuple[int, str] | None:
        info = await self._storage.head(relative)
        if info is None:
            return None
        if info.size != expected_size or not self.hashes:
            return info.size, info.sha256 or ""
        try:
            blob = await self._storage.hash_file(relative)
        except StorageError:
            if await self._storage.head(relative) is None:
                return None  # removed between the HEAD and the download
            raise
        return blob.size, blob.sha256

    def read(self, relative: str) -> bytes | None:
        return self._run(self._storage.read_if_exists(relative))

    def _run(self, coroutine: Coroutine[object, object, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
