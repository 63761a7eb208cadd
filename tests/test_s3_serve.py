"""``mirror serve`` from the bucket: the same HTTP contract as from disk, and real pip
and uv installing from it, with the bytes relayed or redirected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import ClientSession

from mirror.bucketserver import PRESIGNED, create_bucket_app
from mirror.server import running_server
from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream, make_wheel
from tests.clients import pip_install, uv_install
from tests.harness import MirrorRunner
from tests.test_s3_sync import on_s3

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def publish(upstream: FakeUpstream) -> None:
    for version in ["1.0", "2.0"]:
        filename, wheel, metadata = make_wheel("mirrorlib", version)
        upstream.add_file("MirrorLib", version, filename, wheel, metadata=metadata)
    filename, wheel, metadata = make_wheel("mirrorapp", "1.0", requires_dist=["MirrorLib>=1"])
    upstream.add_file("mirrorapp", "1.0", filename, wheel, metadata=metadata)


@pytest.mark.slow
@pytest.mark.parametrize("redirect", [None, PRESIGNED, "cdn"])
async def test_pip_and_uv_install_from_the_bucket(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
    redirect: str | None,
) -> None:
    runner = MirrorRunner(upstream=upstream, directory=tmp_path / "mirror")
    publish(upstream)
    assert (await on_s3(runner, s3_storage).sync()).ok
    # moto serves objects without credentials: it stands in for a public bucket
    # behind a CDN whose origin is the bucket's prefix.
    base = redirect
    if redirect == "cdn":
        base = f"{moto_endpoint}/{s3_storage.bucket}/mirror"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{s3_storage.bucket}/*",
                }
            ],
        }
        await s3_storage.client.put_bucket_policy(
            Bucket=s3_storage.bucket, Policy=json.dumps(policy)
        )
    app = create_bucket_app(s3_storage, packages_redirect=base)
    async with running_server(Path("/nonexistent"), port=0, app=app, access_log=False) as url:
        results = await asyncio.gather(
            asyncio.to_thread(pip_install, f"{url}/simple/", tmp_path / "pip", "mirrorapp"),
            asyncio.to_thread(uv_install, f"{url}/simple/", tmp_path / "uv", "mirrorapp"),
        )
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    for name in ["pip", "uv"]:
        assert (tmp_path / name / "mirrorapp" / "__init__.py").exists()
        assert "2.0" in (tmp_path / name / "mirrorlib" / "__init__.py").read_text()


async def test_the_bucket_server_keeps_the_http_contract(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    publish(upstream)
    assert (await on_s3(runner, s3_storage).sync()).ok
    with runner.state() as state:
        from packaging.utils import NormalizedName  # noqa: PLC0415

        wheel = next(
            path
            for path in state.project_files(NormalizedName("mirrorlib"))
            if path.endswith("2.0-py3-none-any.whl")
        )
    app = create_bucket_app(s3_storage)
    async with (
        running_server(Path("/nonexistent"), port=0, app=app, access_log=False) as url,
        ClientSession(url, auto_decompress=False) as session,
    ):
        async with session.get("/simple/mirrorlib/", headers={"Accept": JSON_TYPE}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == JSON_TYPE
            assert resp.headers["Vary"] == "Accept, Accept-Encoding"
            assert resp.headers["Cache-Control"] == "max-age=600, public"
            etag = resp.headers["ETag"]
        async with session.get(
            "/simple/mirrorlib/", headers={"Accept": JSON_TYPE, "If-None-Match": etag}
        ) as resp:
            assert resp.status == 304
        async with session.get("/simple/mirrorlib/", headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            assert resp.headers["Content-Encoding"] == "gzip"
        plain = {"Accept": JSON_TYPE, "Accept-Encoding": "identity"}
        async with session.get("/simple/", headers=plain) as resp:
            assert resp.status == 200
            assert "mirrorapp" in await resp.text()
        async with session.get("/simple/MirrorLib/", allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "/simple/mirrorlib/"
        for missing in ["/simple/nosuch/", "/simple/in%20valid/", "/packages/aa/../x"]:
            async with session.get(missing, allow_redirects=False) as resp:
                assert resp.status == 404, missing
        async with session.get("/packages/aa/bb/none.whl") as resp:
            assert resp.status == 404
        whole = await s3_storage.read_bytes(wheel)
        async with session.get(f"/{wheel}", headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.status == 200
            assert await resp.read() == whole
            assert "Content-Encoding" not in resp.headers
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            file_etag = resp.headers["ETag"]
        async with session.get(f"/{wheel}", headers={"Range": "bytes=0-9"}) as resp:
            assert resp.status == 206
            assert await resp.read() == whole[:10]
            assert resp.headers["Content-Range"] == f"bytes 0-9/{len(whole)}"
        async with session.get(f"/{wheel}", headers={"If-None-Match": file_etag}) as resp:
            assert resp.status == 304
        async with session.head(f"/{wheel}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(whole))
        async with session.get("/last-modified") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-cache"
        async with session.get("/pypi/mirrorlib/json") as resp:
            assert resp.status == 404, "no JSON copies kept"


async def test_the_bucket_server_answers_json_copies_ranges_and_store_failures(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    from mirror.sync import SyncOptions  # noqa: PLC0415

    publish(upstream)
    runner.options = SyncOptions(workers=2, keep_json=True, formats=frozenset({"json"}))
    assert (await on_s3(runner, s3_storage).sync()).ok
    (wheel,) = [
        relative
        async for relative, _ in s3_storage.iter_objects()
        if relative.endswith("2.0-py3-none-any.whl")
    ]
    app = create_bucket_app(s3_storage)
    broken = create_bucket_app(S3Storage(s3_storage.client, bucket="no-such-bucket-x"))
    async with (
        running_server(Path("/nonexistent"), port=0, app=app, access_log=False) as url,
        running_server(Path("/nonexistent"), port=0, app=broken, access_log=False) as bad,
        ClientSession(url) as session,
    ):
        async with session.get("/pypi/mirrorlib/json") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
        async with session.get("/pypi/MirrorLib/json", allow_redirects=False) as resp:
            assert resp.status == 301
        async with session.get("/pypi/in%20valid/json") as resp:
            assert resp.status == 404
        async with session.get("/simple/in%20valid/") as resp:
            assert resp.status == 404
        async with session.get("/simple/mirrorlib/", headers={"Accept": "text/html"}) as resp:
            assert resp.status == 406, "a JSON-only mirror has no HTML page"
        async with session.get(f"/{wheel}", headers={"Range": "bytes=999999-"}) as resp:
            assert resp.status == 416
        async with session.get(
            f"/{wheel}", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}
        ) as resp:
            assert resp.status == 304
        async with session.get(f"{bad}/simple/") as resp:
            assert resp.status in {404, 503}, "never a 500"
        async with session.get(f"{bad}/{wheel}") as resp:
            assert resp.status in {404, 503}
