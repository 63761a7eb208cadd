"""The S3 backend: the served tree is the objects under a key prefix in one bucket.

An S3 object appears whole or not at all, so there are no temp names: a file of at
most :data:`PART_BYTES` is gathered, hashed and checked, then sent with one
``PutObject``; a larger one goes up as a multipart upload, a part at a time (memory
stays at about two parts whatever the file's size), hashed as it streams, and the
upload is completed only once the whole file matched its size and sha256. Every
request carries ``ChecksumSHA256`` (of the object, or of each part), so the store
checks the bytes it received too. The verified sha256 is recorded as the object's
``x-amz-meta-sha256``: adopting a file, and a verify without ``--deep``, compare it
(and the size) with one ``HEAD``, never downloading.

An unfinished multipart upload is this backend's temp: a failure or cancellation
aborts it; the uploads a killed run left are aborted by :meth:`remove_stale_temps`
(which the sync calls with ``""`` at the start of every run: the whole prefix), so
the next run converges. Uploads in flight in this process are spared.

Objects get a ``Content-Type`` and ``Cache-Control`` fitting what they are (the
negotiated simple-page types, immutable files), so a web server or CDN in front of
the bucket can serve them as they are.

Hashing runs in worker threads; the event loop only moves bytes. Credentials come
only from botocore's chain (environment, shared files, instance roles) and never
appear in an error: those name the operation, the ``s3://`` key and the error code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, Self, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from mirror.errors import IntegrityError, StorageError
from mirror.layout import check_relative, is_temp_name, temp_name
from mirror.provenance import PROVENANCE_MEDIA_TYPE, PROVENANCE_SUFFIX
from mirror.storage.protocol import Derivation, ListedFile, StoredBlob

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from mirror.config import S3Settings

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

PART_BYTES: Final = 8 << 20
"""Multipart part size and the threshold above which a file goes up in parts (S3's
minimum part is 5 MiB)."""

SHA256_METADATA: Final = "sha256"
"""The user metadata key (``x-amz-meta-sha256``) holding the verified hex sha256."""

MAX_CONNECTIONS: Final = 64
"""Connections to the S3 API in the client's pool."""

_READ_BYTES: Final = 1 << 20
_DELETE_BATCH: Final = 1000
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})

PACKAGE_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
PAGE_CACHE_CONTROL: Final = "max-age=600, public"
_PAGE_TYPES: Final = {
    "index.html": "text/html; charset=utf-8",
    "index.v1_html": "application/vnd.pypi.simple.v1+html",
    "index.v1_json": "application/vnd.pypi.simple.v1+json",
    "json": "application/json",
    "last-modified": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What a ``HEAD`` tells about an object: its size and recorded sha256 (None when
    the object has no ``x-amz-meta-sha256``, e.g. written by another tool)."""

    size: int
    sha256: str | None
    etag: str
    modified: float = 0.0
    """When it was last written (Unix time)."""


class _BucketObjects:
    """The bucket's objects under the prefix: keys, and the reads of
    :class:`S3Storage` (its base, kept apart so each class stays small)."""

    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        prefix: str = "",
        part_bytes: int = PART_BYTES,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._part_bytes = part_bytes
        self._live_uploads: set[str] = set()

    @property
    def client(self) -> S3Client:
        """The aiobotocore client (the lock and the server share it)."""
        return self._client

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        return self._prefix

    def key_of(self, relative: str) -> str:
        """The object key of ``relative``, a POSIX path under the web root.

        Raises UnsafePathError for an absolute path, an empty, ``.`` or ``..``
        component, a backslash, NUL or other control character: the same paths the
        file-system backend refuses, so both hold the same tree."""
        check_relative(relative)
        return self._prefix + relative

    def relative_of(self, key: str) -> str:
        """The path under the web root of an object key under the prefix."""
        return key.removeprefix(self._prefix)

    def url_of(self, key: str) -> str:
        """``s3://bucket/key``, for messages."""
        return f"s3://{self._bucket}/{key}"

    # --- reading ---------------------------------------------------------------------

    async def read_bytes(self, relative: str) -> bytes:
        """Return the content of ``relative``. Raises StorageError (also when missing)."""
        key = self.key_of(relative)
        parts = [block async for block in self._download(key, "read")]
        return b"".join(parts)

    async def _download(self, key: str, action: str) -> AsyncIterator[bytes]:
        """The object's bytes in blocks of about 1 MiB. StorageError."""
        answer = await self._call(
            action, key, self._client.get_object(Bucket=self._bucket, Key=key)
        )
        body = answer["Body"]
        try:
            while True:
                try:
                    block = await body.read(_READ_BYTES)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise StorageError(f"cannot {action} {self.url_of(key)}: {exc}") from exc
                if not block:
                    return
                yield block
        finally:
            body.close()

    async def exists(self, relative: str) -> bool:
        """Whether an object is at ``relative``. StorageError when the store cannot tell."""
        return await self.head(relative) is not None

    async def head(self, relative: str) -> ObjectInfo | None:
        """Size, recorded sha256 and ETag of the object at ``relative``; None when
        there is none. StorageError."""
        key = self.key_of(relative)
        try:
            answer = await self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise _storage_error("inspect", self.url_of(key), exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("inspect", self.url_of(key), exc) from exc
        return ObjectInfo(
            size=answer["ContentLength"],
            sha256=answer.get("Metadata", {}).get(SHA256_METADATA),
            etag=answer["ETag"],
            modified=answer["LastModified"].timestamp(),
        )

    async def hash_file(self, relative: str) -> StoredBlob:
        """The sha256 and size of the object at ``relative``, by downloading it
        (hashed in a worker thread a block at a time). StorageError (also missing)."""
        key = self.key_of(relative)
        digest = hashlib.sha256()
        size = 0
        async for block in self._download(key, "hash"):
            size += len(block)
            await asyncio.to_thread(digest.update, block)
        return StoredBlob(sha256=digest.hexdigest(), size=size)

    async def adopt(
        self, relative: str, *, sha256: str, size: int | None = None
    ) -> StoredBlob | None:
        """The object already at ``relative`` when its recorded sha256 (and size, when
        given) match; None when there is none or it differs. One HEAD."""
        info = await self.head(relative)
        if info is None or info.sha256 != sha256.lower():
            return None
        if size is not None and info.size != size:
            return None
        logger.debug("adopted %s already in the bucket", relative)
        return StoredBlob(sha256=info.sha256, size=info.size)

    async def adopt_all(
        self, wanted: Sequence[tuple[str, str, int | None]]
    ) -> list[StoredBlob | None]:
        """:meth:`adopt` for each ``(relative, sha256, size)``, the HEADs side by side."""
        for relative, _, _ in wanted:
            self.key_of(relative)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self.adopt(relative, sha256=sha256, size=size))
                for relative, sha256, size in wanted
            ]
        return [task.result() for task in tasks]

    async def iter_objects(self) -> AsyncIterator[tuple[str, int]]:
        """Every object under the prefix as ``(relative, size)``, in key order: one
        listing (a request per 1,000 keys). StorageError."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for item in page.get("Contents", []):
                    yield self.relative_of(item["Key"]), item["Size"]
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list", self.url_of(self._prefix), exc) from exc

    async def list_files(self, top: str) -> AsyncIterator[ListedFile]:
        """Every object under the directory ``top`` (``""``: the whole prefix) in key
        order (one listing, a request per 1,000 keys), then each unfinished multipart
        upload there as a temp: ``<dir>/.<name>.<token>.part`` (size 0), which
        :meth:`delete` aborts. StorageError."""
        prefix = "" if top == "" else f"{top}/"
        if top:
            self.key_of(top)
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
                for item in page.get("Contents", []):
                    yield ListedFile(path=self.relative_of(item["Key"]), size=item["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list", self.url_of(self._prefix + prefix), exc) from exc
        async for relative, upload_id in self.iter_uploads(top):
            directory, _, name = relative.rpartition("/")
            temp = temp_name(name, _upload_token(upload_id))
            yield ListedFile(path=f"{directory}/{temp}" if directory else temp, size=0)

    async def read_if_exists(self, relative: str) -> bytes | None:
        """The content of ``relative``; None when there is no such object. StorageError."""
        try:
            return await self.read_bytes(relative)
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and _is_not_found(exc.__cause__):
                return None
            raise

    async def iter_uploads(self, relative_dir: str = "") -> AsyncIterator[tuple[str, str]]:
        """The unfinished multipart uploads under ``relative_dir`` (all of the
        prefix for ``""``) as ``(relative, upload id)``. StorageError."""
        prefix = self._prefix if relative_dir == "" else self.key_of(relative_dir) + "/"
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield self.relative_of(item["Key"]), item["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list uploads in", self.url_of(prefix), exc) from exc

    async def _call(self, action: str, key: str, request: Awaitable[_T]) -> _T:
        """Await an S3 request, its failures turned into StorageError."""
        try:
            return await request
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(action, self.url_of(key), exc) from exc


class S3Storage(_BucketObjects):
    """The served tree as the objects under ``prefix`` in ``bucket``.

    Implements :class:`mirror.storage.Storage` over an aiobotocore client the caller
    owns (:func:`open_s3_storage` makes one). Methods raise UnsafePathError for a
    path that could escape the prefix, StorageError (naming the ``s3://`` key and the
    error code) when the store refuses, IntegrityError on a size or hash mismatch.
    """

    async def __aenter__(self) -> Self:
        """Nothing to start: the client is the caller's (see :func:`open_s3_storage`)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Nothing to release: the client is closed by whoever made it."""

    # --- writing ---------------------------------------------------------------------

    async def store_stream(
        self,
        relative: str,
        chunks: AsyncIterator[bytes],
        *,
        sha256: str | None,
        size: int | None,
        max_size: int | None = None,
        derivation: Derivation | None = None,
    ) -> StoredBlob:
        """Stream ``chunks`` to ``relative``, creating the object only once they are
        verified (see the module docstring). More bytes than ``size`` (or
        ``max_size``) stop the stream at once; a size or sha256 mismatch raises
        IntegrityError and leaves the key as it was. An exception from ``chunks``
        propagates unchanged; the store's failures raise StorageError.

        With a ``derivation`` its sidecar is written from the bytes of a file that
        went up in one piece; for a multipart file ``derived`` is None (the caller
        fetches the sidecar instead: re-reading a large file costs more)."""
        key = self.key_of(relative)
        expected = None if sha256 is None else sha256.lower()
        digest = hashlib.sha256()
        buffer = bytearray()
        received = 0
        upload: _Multipart | None = None
        try:
            async for chunk in chunks:
                received += len(chunk)
                _check_not_too_long(relative, received, size=size, max_size=max_size)
                buffer += chunk
                if len(buffer) >= self._part_bytes:
                    if upload is None:
                        upload = await self._start_upload(key, relative, expected)
                    part = bytes(buffer[: self._part_bytes])
                    del buffer[: self._part_bytes]
                    await upload.send(part, digest)
            if upload is None:
                data = bytes(buffer)
                got = await asyncio.to_thread(_finish_digest, digest, data)
                _verify(relative, got, len(data), sha256=expected, size=size)
                await self._put(key, data, sha256=got)
                blob = StoredBlob(sha256=got, size=len(data))
                if derivation is not None:
                    derived = await self._derive_and_put(derivation, data)
                    blob = StoredBlob(sha256=got, size=len(data), derived=derived)
            else:
                if buffer:
                    await upload.send(bytes(buffer), digest)
                got = digest.hexdigest()
                _verify(relative, got, received, sha256=expected, size=size)
                await upload.complete()
                if expected is None:
                    await self._record_sha256(key, got)
                blob = StoredBlob(sha256=got, size=received)
        except BaseException:
            if upload is not None:
                await upload.abort()
            raise
        finally:
            if upload is not None:
                self._live_uploads.discard(upload.upload_id)
        logger.debug("stored %s (%d bytes)", self.url_of(key), blob.size)
        return blob

    async def _start_upload(self, key: str, relative: str, sha256: str | None) -> _Multipart:
        metadata = {} if sha256 is None else {SHA256_METADATA: sha256}
        answer = await self._call(
            "store",
            key,
            self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                Metadata=metadata,
                ContentType=_content_type(relative),
                CacheControl=_cache_control(relative),
            ),
        )
        upload = _Multipart(self, key, answer["UploadId"])
        self._live_uploads.add(upload.upload_id)
        return upload

    async def _record_sha256(self, key: str, sha256: str) -> None:
        """Record the sha256 of a multipart object stored without an expected hash
        (a server-side copy onto itself, replacing the metadata)."""
        await self._call(
            "store",
            key,
            self._client.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": key},
                Metadata={SHA256_METADATA: sha256},
                MetadataDirective="REPLACE",
                ContentType=_content_type(self.relative_of(key)),
                CacheControl=_cache_control(self.relative_of(key)),
            ),
        )

    async def _put(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        """One ``PutObject`` with its checksum and recorded sha256."""
        if sha256 is None:
            sha256 = await asyncio.to_thread(_hex_sha256, data)
        await self._call(
            "write",
            key,
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=_base64_of(sha256),
                Metadata={SHA256_METADATA: sha256},
                ContentType=_content_type(self.relative_of(key)),
                CacheControl=_cache_control(self.relative_of(key)),
            ),
        )

    async def _derive_and_put(self, derivation: Derivation, data: bytes) -> StoredBlob | None:
        derived = await asyncio.to_thread(_derive, derivation.derive, io.BytesIO(data))
        return await self._put_derived(derivation.relative, derived, derivation.sha256)

    async def _put_derived(
        self, relative: str, data: bytes | None, sha256: str
    ) -> StoredBlob | None:
        if data is None:
            return None
        got = await asyncio.to_thread(_hex_sha256, data)
        if got != sha256.lower():
            return None
        await self._put(self.key_of(relative), data, sha256=got)
        return StoredBlob(sha256=got, size=len(data))

    async def write_bytes(self, relative: str, data: bytes) -> None:
        """Replace ``relative`` with ``data`` (one PutObject: atomic). StorageError."""
        await self._put(self.key_of(relative), data)

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Replace each ``(relative, data)`` in order, each atomically. Pages are
        never multipart, so no sweep is needed first. Raises StorageError naming the
        first key the store refused (those before it are written)."""
        keys = [(self.key_of(relative), data) for relative, data in files]
        for key, data in keys:
            await self._put(key, data)

    async def write_generated(
        self, relatives: Sequence[str], produce: Callable[[], Iterable[Sequence[bytes]]]
    ) -> None:
        """Replace each of ``relatives`` with the bytes ``produce()`` yields (run a
        step at a time in a worker thread), one chunk per file at each step. Each
        file is buffered up to a part and then goes up in parts: memory stays at
        about one part per file, never the whole root index. An exception from
        ``produce`` propagates unchanged after every upload is aborted; no key has
        changed then. The objects appear one after the other at the end."""
        keys = [self.key_of(relative) for relative in relatives]
        buffers = [bytearray() for _ in keys]
        digests = [hashlib.sha256() for _ in keys]
        uploads: list[_Multipart | None] = [None for _ in keys]
        steps = iter(await asyncio.to_thread(produce))
        try:
            while (chunks := await asyncio.to_thread(next, steps, None)) is not None:
                for index, chunk in enumerate(chunks):
                    buffers[index] += chunk
                    if len(buffers[index]) >= self._part_bytes:
                        upload = uploads[index]
                        if upload is None:
                            upload = await self._start_upload(keys[index], relatives[index], None)
                            uploads[index] = upload
                        await upload.send(bytes(buffers[index]), digests[index])
                        buffers[index] = bytearray()
            for key, upload, buffer, digest in zip(keys, uploads, buffers, digests, strict=True):
                await self._finish(key, upload, buffer, digest)
        except BaseException:
            for upload in uploads:
                if upload is not None:
                    await upload.abort()
            raise
        finally:
            for upload in uploads:
                if upload is not None:
                    self._live_uploads.discard(upload.upload_id)

    async def _finish(
        self, key: str, upload: _Multipart | None, buffer: bytearray, digest: hashlib._Hash
    ) -> None:
        """Put the rest of one generated file: a single object, or its last part."""
        if upload is None:
            await self._put(key, bytes(buffer))
            return
        if buffer:
            await upload.send(bytes(buffer), digest)
        await upload.complete()
        await self._record_sha256(key, digest.hexdigest())

    async def store_derived(
        self,
        relative: str,
        *,
        source: str,
        derive: Callable[[BinaryIO], bytes | None],
        sha256: str,
    ) -> StoredBlob | None:
        """Store at ``relative`` the bytes ``derive`` reads from the object
        ``source`` once they hash to ``sha256``; None, writing nothing, otherwise.
        The source is downloaded to a spooled temporary file (memory up to a part,
        then local disk). Raises StorageError (also when ``source`` is missing)."""
        source_key = self.key_of(source)
        self.key_of(relative)
        with tempfile.SpooledTemporaryFile(max_size=self._part_bytes) as spool:
            async for block in self._download(source_key, "read"):
                await asyncio.to_thread(spool.write, block)
            await asyncio.to_thread(spool.seek, 0)
            data = await asyncio.to_thread(_derive, derive, spool)  # type: ignore[arg-type]
        return await self._put_derived(relative, data, sha256)

    # --- removing --------------------------------------------------------------------

    async def delete(self, relative: str) -> None:
        """Remove the object ``relative``; a missing one is fine. StorageError."""
        key = self.key_of(relative)
        directory, _, name = relative.rpartition("/")
        if is_temp_name(name):
            await self._abort_listed_temp(directory, name)
            return
        await self._call("delete", key, self._client.delete_object(Bucket=self._bucket, Key=key))

    async def _abort_listed_temp(self, directory: str, name: str) -> None:
        """Abort the upload :meth:`list_files` listed as the temp ``name``."""
        async for relative, upload_id in self.iter_uploads(directory):
            target = relative.rpartition("/")[2]
            if temp_name(target, _upload_token(upload_id)) == name:
                key = self.key_of(relative)
                try:
                    await self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    )
                except ClientError as exc:
                    if not _is_not_found(exc):
                        raise _storage_error("abort the upload of", self.url_of(key), exc) from exc
                except BotoCoreError as exc:
                    raise _storage_error("abort the upload of", self.url_of(key), exc) from exc

    async def delete_tree(self, relative: str) -> None:
        """Remove every object under ``relative/`` (a batch request per 1,000 keys);
        none is fine. StorageError naming the first key the store refused."""
        prefix = self.key_of(relative) + "/"
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list", self.url_of(prefix), exc) from exc
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            answer = await self._call(
                "delete",
                prefix,
                self._client.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                ),
            )
            for error in answer.get("Errors", []):
                raise StorageError(
                    f"cannot delete {self.url_of(error.get('Key', prefix))}:"
                    f" {error.get('Code', 'error')}"
                )

    async def remove_stale_temps(self, relative_dir: str) -> int:
        """Abort the multipart uploads a killed run left under ``relative_dir`` (the
        whole prefix for ``""``) and return how many; this process's own uploads in
        flight are spared. StorageError."""
        stale = [
            (relative, upload_id)
            async for relative, upload_id in self.iter_uploads(relative_dir)
            if upload_id not in self._live_uploads
        ]
        for relative, upload_id in stale:
            key = self.key_of(relative)
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise _storage_error("abort the upload of", self.url_of(key), exc) from exc
            except BotoCoreError as exc:
                raise _storage_error("abort the upload of", self.url_of(key), exc) from exc
        if stale:
            logger.info(
                "aborted %d unfinished upload(s) under %s",
                len(stale),
                self.url_of(self._prefix + relative_dir),
            )
        return len(stale)


class _Multipart:
    """One multipart upload in progress: its parts so far, sent one at a time."""

    def __init__(self, storage: S3Storage, key: str, upload_id: str) -> None:
        self._storage = storage
        self._key = key
        self.upload_id = upload_id
        self._parts: list[CompletedPartTypeDef] = []

    async def send(self, part: bytes, digest: hashlib._Hash) -> None:
        """Hash ``part`` into ``digest`` (and alone, for its checksum) in a worker
        thread, then upload it."""
        checksum = await asyncio.to_thread(_update_and_checksum, digest, part)
        number = len(self._parts) + 1
        storage = self._storage
        answer = await storage._call(  # the upload is the storage's own part
            "store",
            self._key,
            storage.client.upload_part(
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=part,
                ChecksumSHA256=checksum,
            ),
        )
        self._parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        )

    async def complete(self) -> None:
        storage = self._storage
        await storage._call(
            "store",
            self._key,
            storage.client.complete_multipart_upload(
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            ),
        )

    async def abort(self) -> None:
        """Abort the upload, even while being cancelled (the cancellation is re-raised
        after). Never raises otherwise: an error is on its way up; an upload left
        behind is aborted by the next run's sweep."""
        storage = self._storage
        task = asyncio.ensure_future(
            storage.client.abort_multipart_upload(
                Bucket=storage.bucket, Key=self._key, UploadId=self.upload_id
            )
        )
        cancelled = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                cancelled = True
        exc = task.exception()
        if exc is not None:
            logger.warning(
                "cannot abort the upload of %s (the next run will): %s",
                storage.url_of(self._key),
                _reason(exc),
            )
        if cancelled:
            raise asyncio.CancelledError


@asynccontextmanager
async def open_s3_storage(
    settings: S3Settings, *, max_connections: int = MAX_CONNECTIONS
) -> AsyncIterator[S3Storage]:
    """An :class:`S3Storage` over a client made from ``settings`` (credentials from
    botocore's chain), closed at the end of the block."""
    config = AioConfig(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": 5},
        # Every request that carries a body sets its own ChecksumSHA256.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=config,
    ) as client:
        yield S3Storage(client, bucket=settings.bucket, prefix=settings.prefix)


def _content_type(relative: str) -> str:
    """An object's ``Content-Type``, by what it is (a server in front of the bucket
    sends it as it is)."""
    name = relative.rsplit("/", 1)[-1]
    if relative.startswith("packages/"):
        if name.endswith(PROVENANCE_SUFFIX):
            return PROVENANCE_MEDIA_TYPE
        return "text/plain" if name.endswith(".metadata") else "application/octet-stream"
    return _PAGE_TYPES.get(name, "application/octet-stream")


def _cache_control(relative: str) -> str:
    """An object's ``Cache-Control``: files are immutable (their paths are hashes)."""
    if relative.startswith("packages/"):
        return PACKAGE_CACHE_CONTROL
    return "no-cache" if relative.endswith("last-modified") else PAGE_CACHE_CONTROL


def _check_not_too_long(
    relative: str, received: int, *, size: int | None, max_size: int | None
) -> None:
    if size is not None and received > size:
        raise IntegrityError(f"{relative}: expected {size} bytes, got at least {received}")
    if max_size is not None and received > max_size:
        raise IntegrityError(
            f"{relative}: larger than the {max_size}-byte limit (got at least {received})"
        )


def _verify(
    relative: str, got: str, received: int, *, sha256: str | None, size: int | None
) -> None:
    if size is not None and received != size:
        raise IntegrityError(f"{relative}: expected {size} bytes, got {received}")
    if sha256 is not None and got != sha256:
        raise IntegrityError(f"{relative}: expected sha256 {sha256}, got {got}")


def _finish_digest(digest: hashlib._Hash, data: bytes) -> str:
    digest.update(data)
    return digest.hexdigest()


def _update_and_checksum(digest: hashlib._Hash, part: bytes) -> str:
    digest.update(part)
    return base64.b64encode(hashlib.sha256(part).digest()).decode("ascii")


def _hex_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _base64_of(hex_sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_sha256)).decode("ascii")


def _derive(derive: Callable[[BinaryIO], bytes | None], file: BinaryIO) -> bytes | None:
    return derive(file)


def _upload_token(upload_id: str) -> str:
    """A short, file-name-safe token naming one multipart upload."""
    return hashlib.sha256(upload_id.encode()).hexdigest()[:16]


def _is_not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES


def _reason(exc: BaseException) -> str:
    """What went wrong, without anything but the error code and message (botocore's
    messages carry neither credentials nor signatures)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        message = error.get("Message")
        return f"{code} ({message})" if message else str(code)
    return str(exc) or type(exc).__name__


def _storage_error(action: str, url: str, exc: BaseException) -> StorageError:
    return StorageError(f"cannot {action} {url}: {_reason(exc)}")
