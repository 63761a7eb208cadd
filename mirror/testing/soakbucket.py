"""The soak's S3 side (``python -m mirror.testing.soak --backend s3``): a real S3 API
(moto's ``ThreadedMotoServer``) on 127.0.0.1 started by the soak itself, the bucket
the killed syncs write into, and what the soak asks of it between kills.

The soak's own client gets fixed dummy credentials passed to it directly; the
``mirror sync`` subprocesses find the same ones in their environment (botocore's
chain, as in production), with shared config files and instance metadata switched
off, so nothing ever leaves the loopback interface. Needs the ``test`` extra (moto).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from mirror.storage.s3 import S3Storage

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

BUCKET_STEM: Final = "mirror-soak"
PREFIX: Final = "mirror/"
LOCK_NAME: Final = ".mirror-lock"
"""The bucket lock's name under the prefix (:data:`mirror.s3lock.LOCK_KEY`)."""

DUMMY_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "soak-key-id",
    "AWS_SECRET_ACCESS_KEY": "soak-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_CLEARED: Final = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
_OFFLINE: Final = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class SoakBucket:
    """A moto server on 127.0.0.1 with one bucket, for the duration of the block.

    moto keeps every server's buckets in one store per process, so each soak gets a
    bucket of its own name: another server in the process (a test's) never shares it.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._storage: S3Storage | None = None
        self.endpoint = ""
        self.bucket = f"{BUCKET_STEM}-{secrets.token_hex(4)}"

    @property
    def storage(self) -> S3Storage:
        """The bucket as the soak reads it (the tree under :data:`PREFIX`)."""
        assert self._storage is not None, "entered"
        return self._storage

    async def __aenter__(self) -> Self:
        from aiobotocore.config import AioConfig  # noqa: PLC0415  # only the S3 soak
        from aiobotocore.session import get_session  # noqa: PLC0415
        from moto.server import ThreadedMotoServer  # noqa: PLC0415  # the test extra

        # One line per request would drown the soak's own.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        config = AioConfig(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client: S3Client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
                aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                config=config,
            )
        )
        await client.create_bucket(Bucket=self.bucket)
        self._storage = S3Storage(client, bucket=self.bucket, prefix=PREFIX)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def config_section(self) -> str:
        """The ``[storage]`` section of the syncs' config."""
        return (
            "[storage]\n"
            "backend = s3\n"
            f"bucket = {self.bucket}\n"
            f"prefix = {PREFIX}\n"
            f"endpoint-url = {self.endpoint}\n"
            f"region = {DUMMY_CREDENTIALS['AWS_DEFAULT_REGION']}\n"
        )

    @staticmethod
    def environment() -> dict[str, str]:
        """The syncs' environment: ours with the dummy credentials, and nothing that
        could point botocore anywhere but the config's endpoint."""
        env = {name: value for name, value in os.environ.items() if name not in _CLEARED}
        return env | DUMMY_CREDENTIALS | _OFFLINE

    async def unfinished_uploads(self) -> list[str]:
        """The keys (under the prefix) of multipart uploads never completed nor
        aborted."""
        return [relative async for relative, _ in self.storage.iter_uploads()]

    async def lock_lease(self) -> float | None:
        """When the lease of the bucket lock ends (Unix time); None: no lock."""
        body = await self.storage.read_if_exists(LOCK_NAME)
        if body is None:
            return None
        return float(json.loads(body)["expires"])

    async def expire_lease(self) -> bool:
        """Let the lease a killed run left run out now (as five minutes' wait would):
        rewrite it, conditionally on the ETag read, with an end in the past. False
        when there is no lock."""
        client = self.storage.client
        key = self.storage.key_of(LOCK_NAME)
        if await self.storage.head(LOCK_NAME) is None:
            return False
        answer = await client.get_object(Bucket=self.bucket, Key=key)
        lease = json.loads(await answer["Body"].read())
        lease["expires"] = 0.0
        await client.put_object(
            Bucket=self.bucket, Key=key, Body=json.dumps(lease).encode(), IfMatch=answer["ETag"]
        )
        return True

    async def page_files(self) -> AsyncIterator[tuple[str, bytes]]:
        """The JSON simple pages in the bucket (root and projects) as ``(relative,
        content)``."""
        async for relative, _ in self.storage.iter_objects():
            if relative.startswith("simple/") and relative.endswith("/index.v1_json"):
                yield relative, await self.storage.read_bytes(relative)
