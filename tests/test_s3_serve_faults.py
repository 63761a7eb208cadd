"""The S3 paths of ``mirror serve``, ``mirror verify`` and ``mirror status`` when the
bucket misbehaves: a 503 (never a 500) from the server, a StorageError (never a wrong
verdict) from verify, and the status's recount read from one listing of the bucket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import ClientSession

from mirror.bucketserver import create_bucket_app
from mirror.cli import EXIT_OK, main
from mirror.errors import StorageError
from mirror.server import running_server
from mirror.storage.s3 import S3Storage
from mirror.storage.s3tree import S3Tree
from mirror.testing import FakeUpstream
from tests.s3support import client_error, faulty_storage, unreachable, write_s3_config

WHEEL = "packages/ab/cd/alpha-1.0-py3-none-any.whl"


async def seed(storage: S3Storage) -> None:
    await storage.write_bytes("simple/alpha/index.html", b"<html>alpha</html>")
    await storage.write_bytes(WHEEL, b"wheel")


async def test_the_bucket_server_answers_503_when_the_bucket_fails(
    s3_storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(s3_storage)
    storage, client = faulty_storage(s3_storage)
    app = create_bucket_app(storage)
    async with (
        running_server(Path("/nonexistent"), port=0, app=app, access_log=False) as url,
        ClientSession(url) as session,
    ):
        async with session.get("/simple/alpha/") as resp:
            assert resp.status == 200
            assert await resp.text() == "<html>alpha</html>"
        client.faults["head_object"] = [unreachable()] * 3
        async with session.get("/simple/alpha/") as resp:
            assert resp.status == 503
        client.faults["get_object"] = [unreachable()]
        async with session.get("/simple/alpha/", headers={"Accept": "text/html"}) as resp:
            assert resp.status == 503, "the HEAD answered, the read did not"
        client.faults["get_object"] = [unreachable()]
        async with session.get(f"/{WHEEL}") as resp:
            assert resp.status == 503
        client.faults["get_object"] = [client_error("SlowDown", "GetObject")]
        async with session.get(f"/{WHEEL}") as resp:
            assert resp.status == 503
        async with session.get(f"/{WHEEL}") as resp:
            assert resp.status == 200
            assert await resp.read() == b"wheel"
        async with session.get("/packages/ab/cd/..%2F..%2Fetc") as resp:
            assert resp.status == 404
    assert "the bucket refused a read: SlowDown" in caplog.text


async def test_a_deep_check_that_cannot_download_fails_unless_the_object_went_away(
    s3_storage: S3Storage,
) -> None:
    await seed(s3_storage)
    storage, client = faulty_storage(s3_storage)
    tree = S3Tree(storage, asyncio.get_running_loop(), deep=True)
    assert tree.describe(WHEEL) == f"s3://{s3_storage.bucket}/mirror/{WHEEL}"
    assert await asyncio.to_thread(tree.inspect, WHEEL, 5) is not None
    client.faults["get_object"] = [client_error("AccessDenied", "GetObject")]
    with pytest.raises(StorageError, match="AccessDenied"):
        await asyncio.to_thread(tree.inspect, WHEEL, 5)
    # Removed between the HEAD and the download: missing, not an error.
    client.faults["get_object"] = [client_error("NoSuchKey", "GetObject")]
    client.faults["head_object"] = [None, client_error("404", "HeadObject")]
    assert await asyncio.to_thread(tree.inspect, WHEEL, 5) is None


async def test_status_recounts_the_bucket_from_one_listing(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Beta", "2.0")
    config = str(write_s3_config(tmp_path, upstream.base_url, s3_storage, moto_endpoint))
    assert await asyncio.to_thread(main, ["sync", "-c", config]) == EXIT_OK
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "-c", config, "--recount", "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["projects"] == 2
    assert clean["recount"]["missing"] == clean["recount"]["stray"] == []
    assert clean["recount"]["disk_files"] == clean["files"] >= 2
    assert clean["recount"]["disk_bytes"] >= clean["bytes"] > 0

    files = [p async for p, _ in s3_storage.iter_objects() if p.startswith("packages/")]
    gone = sorted(files)[0]
    await s3_storage.delete(gone)
    await s3_storage.write_bytes("packages/zz/stray.whl", b"x")
    assert await asyncio.to_thread(main, ["status", "-c", config, "--recount", "--json"]) == 0
    drifted = json.loads(capsys.readouterr().out)
    assert drifted["recount"]["missing"] == [gone]
    assert drifted["recount"]["stray"] == ["packages/zz/stray.whl"]
    assert not (tmp_path / "mirror" / "web").exists(), "nothing read from a local tree"
