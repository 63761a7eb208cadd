"""``mirror verify`` of a mirror whose tree is an S3 bucket (moto on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.cli import EXIT_OK, EXIT_PROJECTS_FAILED, main
from mirror.storage.s3 import SHA256_METADATA, S3Storage
from mirror.sync import SyncReport
from mirror.testing import FakeUpstream
from mirror.verify import verify
from tests.harness import MirrorRunner
from tests.s3support import write_s3_config
from tests.test_s3_sync import on_s3, seed

BOTH = frozenset({"html", "json"})


async def file_paths(runner: MirrorRunner, project: str) -> list[str]:
    with runner.state() as state:
        return sorted(state.project_files(NormalizedName(project)))


async def test_verify_finds_corrupt_missing_orphan_and_temp_objects_and_repairs_them(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    seed(upstream)
    await on_s3(runner, s3_storage).sync()
    clean = await verify(runner.directory, formats=BOTH, s3=s3_storage)
    assert clean.ok, clean.report.problems
    assert clean.report.files > 0
    assert clean.report.bytes_hashed == 0, "checked by HEAD, nothing downloaded"
    deep = await verify(runner.directory, formats=BOTH, s3=s3_storage, deep=True)
    assert deep.ok
    assert deep.report.bytes_hashed > 0

    alpha = await file_paths(runner, "alpha")
    gamma = await file_paths(runner, "gamma")
    # Overwritten by another tool (no recorded sha256), and deleted.
    await s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of(alpha[0]), Body=b"garbage"
    )
    await s3_storage.delete(gamma[0])
    # Silent corruption: same size, same recorded sum; only --deep can see it.
    original = await s3_storage.read_bytes(alpha[1])
    flipped = bytes([original[0] ^ 1]) + original[1:]
    await s3_storage.client.put_object(
        Bucket=s3_storage.bucket,
        Key=s3_storage.key_of(alpha[1]),
        Body=flipped,
        Metadata={SHA256_METADATA: hashlib.sha256(original).hexdigest()},
    )
    await s3_storage.write_bytes("packages/00/11/orphan.whl", b"orphan")
    await s3_storage.client.create_multipart_upload(
        Bucket=s3_storage.bucket, Key=s3_storage.key_of("packages/22/33/left.tar.gz")
    )

    found = await verify(runner.directory, formats=BOTH, s3=s3_storage)
    kinds = {(p.kind, p.path) for p in found.report.problems}
    assert ("corrupt", alpha[0]) in kinds
    assert ("missing", gamma[0]) in kinds
    assert ("orphan", "packages/00/11/orphan.whl") in kinds
    assert any(
        kind == "temp" and path.startswith("packages/22/33/.left.tar.gz.") for kind, path in kinds
    )
    assert ("corrupt", alpha[1]) not in kinds, "a HEAD cannot see same-size bit rot"
    found = await verify(runner.directory, formats=BOTH, s3=s3_storage, deep=True)
    assert ("corrupt", alpha[1]) in {(p.kind, p.path) for p in found.report.problems}

    async def resync(names: Sequence[NormalizedName]) -> SyncReport:
        return await runner.sync(list(names))

    repaired = await verify(
        runner.directory,
        formats=BOTH,
        s3=s3_storage,
        deep=True,
        repair=True,
        delete_orphans=True,
        resync=resync,
    )
    assert repaired.ok, repaired.remaining
    after = await verify(runner.directory, formats=BOTH, s3=s3_storage, deep=True)
    assert after.ok, after.report.problems
    assert not await s3_storage.exists("packages/00/11/orphan.whl")
    assert [u async for u in s3_storage.iter_uploads()] == []


async def test_pages_of_a_project_the_state_does_not_hold_are_reported(
    upstream: FakeUpstream, runner: MirrorRunner, s3_storage: S3Storage
) -> None:
    seed(upstream)
    await on_s3(runner, s3_storage).sync()
    await s3_storage.write_bytes("simple/ghost/index.html", b"<html></html>")
    await s3_storage.delete("simple/beta-lib/index.v1_json")
    found = await verify(runner.directory, formats=BOTH, s3=s3_storage)
    kinds = {(p.kind, p.path) for p in found.report.problems}
    assert ("no-project", "simple/ghost") in kinds
    assert ("no-pages", "simple/beta-lib/index.v1_json") in kinds


async def test_the_cli_verifies_the_bucket_deeply_and_reports_in_json(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner = MirrorRunner(upstream=upstream, directory=tmp_path / "mirror")
    upstream.add_release("Alpha", "1.0")
    config = write_s3_config(tmp_path, upstream.base_url, s3_storage, moto_endpoint)
    assert await asyncio.to_thread(main, ["sync", "-q", "-c", str(config)]) == EXIT_OK
    paths = await file_paths(runner, "alpha")
    argv = ["verify", "-q", "-c", str(config), "--deep", "--json"]
    assert await asyncio.to_thread(main, argv) == EXIT_OK
    await s3_storage.delete(paths[0])
    assert await asyncio.to_thread(main, argv) == EXIT_PROJECTS_FAILED
    out = capsys.readouterr().out
    report = json.loads(out[out.rindex('{\n  "bytes_hashed"') :])
    assert report["counts"]["missing"] == 1
