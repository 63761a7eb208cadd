"""The bucket's run lock: one syncing host at a time, with a lease.

The lock is an object (``<prefix>.mirror-lock``) created with a conditional create
(``If-None-Match: *``), so of two hosts starting at once exactly one succeeds. It
holds its owner and the time its lease ends; the holder renews it every third of
the lease with a conditional overwrite (``If-Match`` on the ETag it wrote), and
deletes it (``If-Match`` again) when the run ends. A host that crashed leaves the
object behind: a successor takes it over once the lease has run out (a conditional
overwrite of the ETag it read, so of two successors one wins), and not before.

A holder that cannot renew before its lease ends (or finds the lock overwritten)
has lost it: the run inside the block is cancelled and LockedError raised, so two
hosts never write the tree believing each holds it. The local lock on the mirror
directory stays as well (the state store lives there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from mirror.errors import LockedError, StorageError
from mirror.storage.s3 import S3Storage

logger = logging.getLogger(__name__)

LOCK_KEY: Final = ".mirror-lock"
"""The lock object's name under the prefix."""

LEASE_SECONDS: Final = 300.0
"""How long a lease lasts unless renewed: how long a successor of a crashed holder
waits at most."""

_PRECONDITION_CODES: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Lease:
    owner: str
    expires: float

    def encode(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": self.expires}).encode()

    @classmethod
    def decode(cls, body: bytes) -> _Lease:
        """The lease in ``body``; an unreadable one counts as expired."""
        try:
            data = json.loads(body)
            return cls(owner=str(data["owner"]), expires=float(data["expires"]))
        except (ValueError, KeyError, TypeError):
            return cls(owner="(unreadable lock)", expires=0.0)


@asynccontextmanager
async def bucket_lock(
    storage: S3Storage,
    *,
    lease_seconds: float = LEASE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[None]:
    """Hold the bucket's run lock for the block (see the module docstring).

    Raises LockedError at once when another host holds an unexpired lease (naming
    it and when the lease ends), or when the lease is lost during the block (the
    block is cancelled first); StorageError when the store refuses otherwise.
    """
    holder = _Holder(storage, lease_seconds=lease_seconds, clock=clock)
    await holder.acquire()
    task = asyncio.current_task()
    assert task is not None
    renewer = asyncio.create_task(holder.keep(task))
    try:
        yield
    except asyncio.CancelledError:
        if holder.lost and task.uncancel() == 0:
            raise LockedError(
                f"lost the lock {holder.url} (renewal failed or another host took it);"
                " this run stopped"
            ) from None
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        if not holder.lost:
            await holder.release()


class _Holder:
    def __init__(
        self, storage: S3Storage, *, lease_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._storage = storage
        self._client = storage.client
        self._key = storage.key_of(LOCK_KEY)
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._etag = ""
        self._expires = 0.0
        self.lost = False

    @property
    def url(self) -> str:
        return self._storage.url_of(self._key)

    async def acquire(self) -> None:
        for _ in range(3):
            if await self._put(if_none_match=True):
                logger.debug("locked %s", self.url)
                return
            found = await self._read()
            if found is None:
                continue  # released meanwhile: try creating it again
            etag, lease = found
            if lease.expires > self._clock():
                raise LockedError(
                    f"another mirror run holds {self.url} (owner {lease.owner}, lease until"
                    f" {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(lease.expires))} UTC);"
                    " it is still running, or its lease has not run out yet"
                )
            if await self._put(if_match=etag):
                logger.warning(
                    "took over the lock %s: the lease of %s ran out (a crashed run?)",
                    self.url,
                    lease.owner,
                )
                return
            # Another successor took it over first; its lease is fresh.
        raise LockedError(f"another mirror run took {self.url} first")

    async def keep(self, task: asyncio.Task[object]) -> None:
        """Renew every third of the lease until cancelled; on losing the lease, mark
        it lost and cancel ``task`` (the run)."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                renewed = await self._put(if_match=self._etag)
            except StorageError as exc:
                renewed = None
                logger.warning("cannot renew the lock %s: %s", self.url, exc)
            if renewed is False or (renewed is None and self._clock() >= self._expires):
                self.lost = True
                logger.error("lost the lock %s: stopping this run", self.url)
                task.cancel()
                return

    async def release(self) -> None:
        try:
            await self._client.delete_object(
                Bucket=self._storage.bucket, Key=self._key, IfMatch=self._etag
            )
        except ClientError as exc:
            logger.warning("cannot release the lock %s: %s", self.url, _code(exc))
        except BotoCoreError as exc:
            logger.warning("cannot release the lock %s: %s", self.url, exc)
        else:
            logger.debug("unlocked %s", self.url)

    async def _put(self, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """Write a fresh lease conditionally; False when the condition failed."""
        expires = self._clock() + self._lease_seconds
        body = _Lease(owner=self._owner, expires=expires).encode()
        try:
            if if_none_match:
                answer = await self._client.put_object(
                    Bucket=self._storage.bucket, Key=self._key, Body=body, IfNoneMatch="*"
                )
            else:
                assert if_match is not None
                answer = await self._client.put_object(
                    Bucket=self._storage.bucket, Key=self._key, Body=body, IfMatch=if_match
                )
        except ClientError as exc:
            if _code(exc) in _PRECONDITION_CODES:
                return False
            raise StorageError(f"cannot write the lock {self.url}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot write the lock {self.url}: {exc}") from exc
        self._etag = answer["ETag"]
        self._expires = expires
        return True

    async def _read(self) -> tuple[str, _Lease] | None:
        try:
            answer = await self._client.get_object(Bucket=self._storage.bucket, Key=self._key)
            body = await answer["Body"].read()
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None
            raise StorageError(f"cannot read the lock {self.url}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read the lock {self.url}: {exc}") from exc
        return answer["ETag"], _Lease.decode(body)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))
