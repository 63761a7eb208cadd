"""``mirror serve`` over an S3 bucket: the same HTTP contract as over ``web/``.

Each request asks the bucket afresh, so any number of serve nodes run without state
of their own. Simple pages get the same PEP 691 negotiation among the page objects
present, ``Vary``, ``Cache-Control``, ETag/Last-Modified revalidation (304), gzip and
404s as :mod:`mirror.server` gives from disk; a non-normalized name is redirected.
``/packages/...`` is either relayed from the bucket (``Range`` and conditional
requests passed through, ``HEAD`` answered from a ``HEAD``, never a
``Content-Encoding``) or, with ``[serve] packages-redirect``, answered with a 302 to
a presigned URL of the object (``presigned``) or to the same path under a base URL
(a CDN in front of the bucket's prefix), so the bytes never pass through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Final

from aiohttp import hdrs, web
from botocore.exceptions import BotoCoreError, ClientError

from mirror.errors import MalformedResponseError, StorageError
from mirror.layout import unsafe_component
from mirror.models import project_name
from mirror.server import (
    _VARIANTS,
    INDEX_CACHE_CONTROL,
    PACKAGE_CACHE_CONTROL,
    _add_slash,
    _is_not_modified,
    accepts_gzip,
    negotiate,
)
from mirror.storage.s3 import ObjectInfo, S3Storage

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import GetObjectOutputTypeDef, HeadObjectOutputTypeDef

logger = logging.getLogger(__name__)

PRESIGNED: Final = "presigned"
PRESIGNED_SECONDS: Final = 3600
"""How long a presigned URL of a redirect stays valid."""

_RELAY_BYTES: Final = 1 << 16


def create_bucket_app(
    storage: S3Storage,
    *,
    packages_redirect: str | None = None,
    extra_routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """The application serving the tree in ``storage``'s bucket. ``packages_redirect``
    is ``"presigned"``, a base URL, or None (relay the bytes)."""
    handlers = _Bucket(storage, packages_redirect)
    app = web.Application()
    app.add_routes(
        [
            web.get("/simple", _add_slash),
            web.get("/simple/", handlers.root_index),
            web.get("/simple/{project}", handlers.project_index),
            web.get("/simple/{project}/", handlers.project_index),
            web.get("/packages/{path:.+}", handlers.package_file),
            web.get("/pypi/{project}/json", handlers.json_api),
            web.get("/last-modified", handlers.last_modified),
            *extra_routes,
        ]
    )
    return app


@dataclass(frozen=True, slots=True)
class _Bucket:
    storage: S3Storage
    packages_redirect: str | None

    async def root_index(self, request: web.Request) -> web.StreamResponse:
        return await self._simple_page(request, "simple")

    async def project_index(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        try:
            name = project_name(raw)
        except MalformedResponseError:
            raise web.HTTPNotFound from None
        pages = await self._heads(f"simple/{name}")
        if not pages:
            raise web.HTTPNotFound
        if raw != name or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"/simple/{name}/")
        return await self._negotiated(request, f"simple/{name}", pages)

    async def package_file(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["path"].split("/")
        if unsafe_component(parts) is not None:
            raise web.HTTPNotFound
        relative = "/".join(["packages", *parts])
        if self.packages_redirect == PRESIGNED:
            url = await self.storage.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.storage.bucket, "Key": self.storage.key_of(relative)},
                ExpiresIn=PRESIGNED_SECONDS,
            )
            raise web.HTTPFound(url, headers={hdrs.CACHE_CONTROL: "no-store"})
        if self.packages_redirect is not None:
            raise web.HTTPFound(
                f"{self.packages_redirect}/{relative}",
                headers={hdrs.CACHE_CONTROL: PACKAGE_CACHE_CONTROL},
            )
        # The bucket has each object's type from its upload (mirror.storage.s3).
        return await self._relay(request, relative, None, PACKAGE_CACHE_CONTROL)

    async def json_api(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        try:
            name = project_name(raw)
        except MalformedResponseError:
            raise web.HTTPNotFound from None
        relative = f"pypi/{name}/json"
        info = await self._head(relative)
        if info is None:
            raise web.HTTPNotFound
        if raw != name:
            raise web.HTTPMovedPermanently(f"/pypi/{name}/json")
        return await self._send_page(
            request, relative, info, "json", content_type="application/json", vary="Accept-Encoding"
        )

    async def last_modified(self, request: web.Request) -> web.StreamResponse:
        return await self._relay(request, "last-modified", "text/plain; charset=utf-8", "no-cache")

    async def _simple_page(self, request: web.Request, base: str) -> web.StreamResponse:
        pages = await self._heads(base)
        if not pages:
            raise web.HTTPNotFound
        return await self._negotiated(request, base, pages)

    async def _negotiated(
        self, request: web.Request, base: str, pages: dict[str, ObjectInfo]
    ) -> web.StreamResponse:
        media_type = negotiate(request.headers.get(hdrs.ACCEPT), list(pages))
        if media_type is None:
            raise web.HTTPNotAcceptable(headers={hdrs.VARY: "Accept"})
        variant = next(v for v in _VARIANTS if v.media_type == media_type)
        return await self._send_page(
            request,
            f"{base}/{variant.filename}",
            pages[media_type],
            variant.filename,
            content_type=variant.content_type,
            vary="Accept, Accept-Encoding",
        )

    async def _heads(self, base: str) -> dict[str, ObjectInfo]:
        """The page objects present under ``base``, by media type (HEADs side by side)."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {
                    variant.media_type: group.create_task(self._head(f"{base}/{variant.filename}"))
                    for variant in _VARIANTS
                }
        except* web.HTTPServiceUnavailable:
            # A failed HEAD is the bucket's failure, not a group of them: one 503.
            raise web.HTTPServiceUnavailable from None
        return {
            media_type: info
            for media_type, task in tasks.items()
            if (info := task.result()) is not None
        }

    async def _head(self, relative: str) -> ObjectInfo | None:
        try:
            return await self.storage.head(relative)
        except StorageError as exc:
            logger.warning("%s", exc)
            raise web.HTTPServiceUnavailable from exc

    async def _send_page(
        self,
        request: web.Request,
        relative: str,
        info: ObjectInfo,
        tag: str,
        *,
        content_type: str,
        vary: str,
    ) -> web.StreamResponse:
        """A page read whole, as :func:`mirror.server._send_page` sends it."""
        gzip = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
        etag = f"{tag}-{info.etag.strip(chr(34))}"
        if gzip:
            etag += "-gzip"
        headers = {hdrs.VARY: vary, hdrs.CACHE_CONTROL: INDEX_CACHE_CONTROL}
        if _is_not_modified(request, etag, info.modified):
            response = web.Response(status=304, headers=headers)
            response.etag = etag
            response.last_modified = info.modified
            return response
        try:
            body = await self.storage.read_if_exists(relative)
        except StorageError as exc:
            logger.warning("%s", exc)
            raise web.HTTPServiceUnavailable from exc
        if body is None:
            raise web.HTTPNotFound  # removed between the HEAD and the read
        response = web.Response(body=body, headers=headers)
        response.content_type = content_type.partition(";")[0]
        if "charset=" in content_type:
            response.charset = content_type.rpartition("=")[2]
        response.etag = etag
        response.last_modified = info.modified
        if gzip:
            response.enable_compression()
        return response

    async def _relay(
        self, request: web.Request, relative: str, content_type: str | None, cache_control: str
    ) -> web.StreamResponse:
        """An object as it is in the bucket, with Range and conditional requests
        passed through to it; HEAD answered by a HEAD."""
        key = self.storage.key_of(relative)
        params: dict[str, str] = {"Bucket": self.storage.bucket, "Key": key}
        if (value := request.headers.get(hdrs.IF_NONE_MATCH)) is not None:
            params["IfNoneMatch"] = value
        elif (value := request.headers.get(hdrs.IF_MODIFIED_SINCE)) is not None:
            params["IfModifiedSince"] = value
        if request.method != hdrs.METH_HEAD and (value := request.headers.get(hdrs.RANGE)):
            params["Range"] = value
        client = self.storage.client
        body = None
        answer: HeadObjectOutputTypeDef | GetObjectOutputTypeDef
        try:
            if request.method == hdrs.METH_HEAD:
                answer = await client.head_object(**params)  # type: ignore[arg-type]
            else:
                answer = await client.get_object(**params)  # type: ignore[arg-type]
                body = answer["Body"]
        except ClientError as exc:
            raise _http_error(exc) from None
        except BotoCoreError as exc:
            logger.warning("cannot read %s: %s", self.storage.url_of(key), exc)
            raise web.HTTPServiceUnavailable from exc
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        headers = {
            hdrs.CACHE_CONTROL: cache_control,
            hdrs.CONTENT_TYPE: content_type
            or answer.get("ContentType", "application/octet-stream"),
            hdrs.ACCEPT_RANGES: "bytes",
            hdrs.ETAG: answer["ETag"],
            hdrs.LAST_MODIFIED: formatdate(answer["LastModified"].timestamp(), usegmt=True),
        }
        if "ContentRange" in answer:
            headers[hdrs.CONTENT_RANGE] = answer["ContentRange"]
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = answer["ContentLength"]
        await response.prepare(request)
        if body is not None:
            try:
                while chunk := await body.read(_RELAY_BYTES):
                    await response.write(chunk)
            finally:
                body.close()
        await response.write_eof()
        return response


def _http_error(exc: ClientError) -> web.HTTPException:
    """The client's answer for what the bucket said."""
    code = str(exc.response.get("Error", {}).get("Code"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "304" or status == 304:
        return web.HTTPNotModified()
    if code in {"NoSuchKey", "404", "NotFound"}:
        return web.HTTPNotFound()
    if code == "InvalidRange" or status == 416:
        return web.HTTPRequestRangeNotSatisfiable()
    if code == "PreconditionFailed" or status == 412:
        return web.HTTPPreconditionFailed()
    logger.warning("the bucket refused a read: %s", code)
    return web.HTTPServiceUnavailable()
