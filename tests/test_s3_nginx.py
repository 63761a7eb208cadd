"""The bucket behind a real nginx with the repository's ``nginx/bucket.conf``, no
``mirror serve``: pip and uv install through it, and it keeps the HTTP contract the
README promises (negotiation, Vary, 404s, ranges, conditional requests, gzip for pages
only). moto's server is the S3 origin, path-style, readable without credentials as a
public bucket is."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from packaging.utils import NormalizedName

from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream, make_wheel
from tests.clients import pip_install, uv_install
from tests.harness import MirrorRunner
from tests.nginxserver import NGINX, RunningNginx, running_nginx, server_block
from tests.test_s3_sync import on_s3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run does)"),
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


def publish(upstream: FakeUpstream) -> None:
    """mirrorapp needs MirrorLib>=1; MirrorLib 3.0 is yanked, so 2.0 is picked."""
    for version in ["1.0", "2.0", "3.0"]:
        filename, wheel, metadata = make_wheel("mirrorlib", version)
        upstream.add_file("MirrorLib", version, filename, wheel, metadata=metadata)
    upstream.yank("MirrorLib", "3.0", reason="broken")
    filename, wheel, metadata = make_wheel("mirrorapp", "1.0", requires_dist=["MirrorLib>=1"])
    upstream.add_file("mirrorapp", "1.0", filename, wheel, metadata=metadata)


def bucket_block(moto_endpoint: str, storage: S3Storage) -> str:
    """``nginx/bucket.conf`` aimed at the moto bucket (path-style: the bucket is the
    first path segment)."""
    return server_block(
        "bucket.conf",
        {
            "listen 80;": "listen 127.0.0.1:{port};",
            "set $mirror_origin https://pypi-mirror.s3.us-east-1.amazonaws.com;": (
                f"set $mirror_origin {moto_endpoint};"
            ),
            "set $mirror_keys /mirror/;": f"set $mirror_keys /{storage.bucket}/{storage.prefix};",
        },
    )


@pytest.fixture
async def bucket_nginx(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    runner: MirrorRunner,
    tmp_path: Path,
) -> AsyncIterator[RunningNginx]:
    publish(upstream)
    assert (await on_s3(runner, s3_storage).sync()).ok
    # What the README asks of an operator: the prefix readable without credentials.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{s3_storage.bucket}/{s3_storage.prefix}*",
            }
        ],
    }
    await s3_storage.client.put_bucket_policy(Bucket=s3_storage.bucket, Policy=json.dumps(policy))
    with running_nginx(bucket_block(moto_endpoint, s3_storage), tmp_path / "nginx") as running:
        yield running


async def test_pip_and_uv_install_through_nginx_from_the_bucket(
    bucket_nginx: RunningNginx, tmp_path: Path
) -> None:
    index = f"{bucket_nginx.url}/simple/"
    pip, uv, missing = await asyncio.gather(
        asyncio.to_thread(pip_install, index, tmp_path / "pip", "mirrorapp"),
        asyncio.to_thread(uv_install, index, tmp_path / "uv", "mirrorapp"),
        asyncio.to_thread(uv_install, index, tmp_path / "uv-missing", "nosuchproject"),
    )
    for result in (pip, uv):
        assert result.returncode == 0, result.stdout + result.stderr
    for name in ["pip", "uv"]:
        assert (tmp_path / name / "mirrorapp" / "__init__.py").exists()
        assert "2.0" in (tmp_path / name / "mirrorlib" / "__init__.py").read_text()
    # uv needs a plain 404 for an unknown project: anything else is a hard failure.
    assert missing.returncode != 0
    assert "not found in the package registry" in missing.stdout + missing.stderr
    log = bucket_nginx.access_log()
    assert '"GET /simple/mirrorapp/ HTTP/1.1" 200' in log
    assert f'"{JSON_TYPE}"' in log, "pip and uv negotiate the JSON pages"
    assert '"GET /simple/nosuchproject/ HTTP/1.1" 404' in log


async def test_nginx_in_front_of_the_bucket_keeps_the_http_contract(
    bucket_nginx: RunningNginx, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    with runner.state() as state:
        wheel = next(
            path
            for path in state.project_files(NormalizedName("mirrorlib"))
            if path.endswith("2.0-py3-none-any.whl")
        )
    whole = await s3_storage.read_bytes(wheel)
    page = await s3_storage.read_bytes("simple/mirrorlib/index.v1_json")
    plain = {"Accept-Encoding": "identity"}
    async with ClientSession(bucket_nginx.url, auto_decompress=False) as session:
        for accept, media_type, name in [
            (JSON_TYPE, JSON_TYPE, "index.v1_json"),
            (f"{JSON_TYPE}; q=0, text/html", "text/html", "index.html"),
            (HTML_TYPE, HTML_TYPE, "index.v1_html"),
            (None, "text/html", "index.html"),
        ]:
            headers = plain if accept is None else {**plain, "Accept": accept}
            async with session.get("/simple/mirrorlib/", headers=headers) as resp:
                assert resp.status == 200, accept
                assert resp.content_type == media_type, accept
                vary = {
                    token.strip()
                    for line in resp.headers.getall("Vary")
                    for token in line.split(",")
                }
                assert vary == {"Accept", "Accept-Encoding"}
                assert resp.headers["Cache-Control"] == "max-age=600, public"
                assert await resp.read() == await s3_storage.read_bytes(f"simple/mirrorlib/{name}")
        async with session.get("/simple/", headers={**plain, "Accept": JSON_TYPE}) as resp:
            assert resp.status == 200
            names = {entry["name"] for entry in json.loads(await resp.read())["projects"]}
            assert names == {"mirrorapp", "MirrorLib"}
        async with session.get(
            "/simple/mirrorlib/", headers={"Accept": JSON_TYPE, "Accept-Encoding": "gzip"}
        ) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await resp.read()) == page
            etag = resp.headers["ETag"]
        async with session.get(
            "/simple/mirrorlib/",
            headers={"Accept": JSON_TYPE, "If-None-Match": etag.removeprefix("W/")},
        ) as resp:
            assert resp.status == 304
        async with session.get("/simple", allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "/simple/"
        for missing in [
            "/simple/nosuch/",
            "/packages/aa/bb/none.whl",
            "/elsewhere",
            "/simple/a/b/",
        ]:
            async with session.get(missing, headers=plain, allow_redirects=False) as resp:
                assert resp.status == 404, missing
                assert "NoSuchKey" not in await resp.text(), "the bucket's error stays inside"
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
        async with session.get(f"/{wheel}.metadata") as resp:
            assert resp.status == 200
        async with session.get("/last-modified") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-cache"
