"""The soak against the S3 backend: ``python -m mirror.testing.soak --backend s3``
kills real ``mirror sync`` runs writing into a bucket of a moto server the soak
starts itself, and checks the bucket after every kill and at the end."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from mirror.testing import FakeUpstream
from mirror.testing.soak import (
    DEFAULT_S3_LARGE_FILE_BYTES,
    _config,
    _convergence_errors,
    _settle_lock,
    _Tally,
    classify_kill,
    parse_options,
)
from mirror.testing.soak import main as soak_main
from mirror.testing.soakbucket import DUMMY_CREDENTIALS, LOCK_NAME, SoakBucket


async def test_kills_of_syncs_into_the_bucket_keep_the_invariant_and_converge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three SIGKILLs through the soak's command line; the fifth release has a file
    of more than one part (a multipart upload), the rest are small."""
    argv = ["--backend", "s3", "--kills", "3", "--seed", "3", "--projects", "5"]
    argv += ["--directory", str(tmp_path), "--file-size-bytes", str(128 * 1024)]
    argv += ["--large-file-bytes", str(9 << 20), "--rate", str(8 << 20)]
    code = await asyncio.to_thread(soak_main, argv)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "backend: s3\n" in report
    assert "kills: 3\n" in report
    assert "invariant violations: 0\n" in report
    assert "converged: yes\n" in report
    assert "second sync refused while a killed run's lease lasted: NO" not in report
    # The syncs wrote into the bucket: the mirror directory holds only the state.
    assert not (tmp_path / "mirror" / "web").exists()
    assert "backend = s3" in (tmp_path / "mirror.conf").read_text()


def write_lock(expires: float) -> bytes:
    return json.dumps({"owner": "killed-host:1:abcd", "expires": expires}).encode()


async def test_a_lock_left_by_a_kill_refuses_a_second_sync_then_is_let_run_out(
    tmp_path: Path,
) -> None:
    async with SoakBucket() as bucket:
        config = _config(tmp_path, "http://127.0.0.1:9", bucket)
        tally = _Tally()
        with (tmp_path / "sync.log").open("w") as log:
            assert await _settle_lock(config, log, bucket, tally) == "", "no lock, nothing to do"
            await bucket.storage.write_bytes(LOCK_NAME, write_lock(time.time() + 300))
            note = await _settle_lock(config, log, bucket, tally)
            assert note == (
                ", its lock left (a second sync meanwhile exited 3) and its lease let run out"
            )
            assert tally.second_sync_refused is True
            lease = await bucket.lock_lease()
            assert lease is not None
            assert lease < time.time(), "a successor may take it over now"
            # Later locks are let run out without another refused sync.
            await bucket.storage.write_bytes(LOCK_NAME, write_lock(time.time() + 300))
            assert await _settle_lock(config, log, bucket, tally) == (
                ", its lock left and its lease let run out"
            )
            assert tally.leases_expired == 2
        assert (
            f"another mirror run holds s3://{bucket.bucket}/mirror/.mirror-lock"
            in (tmp_path / "sync.log").read_text()
        )


async def test_convergence_in_the_bucket_needs_no_unfinished_upload_and_no_lock(
    tmp_path: Path,
) -> None:
    async with FakeUpstream() as upstream, SoakBucket() as bucket:
        storage = bucket.storage
        await storage.client.create_multipart_upload(
            Bucket=storage.bucket, Key=storage.key_of("packages/aa/left-over.tar.gz")
        )
        await storage.write_bytes(LOCK_NAME, write_lock(0.0))
        errors = await _convergence_errors(upstream, tmp_path / "mirror", 0, bucket)
        assert errors[:2] == [
            "unfinished upload of packages/aa/left-over.tar.gz",
            "the clean sync left the bucket lock behind",
        ]
        assert errors[2].startswith("the mirror's pages cannot be read")
        await storage.delete(LOCK_NAME)
        assert not await bucket.expire_lease(), "no lock to let run out"


def test_the_sync_subprocesses_get_only_the_dummy_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a-real-looking-key")
    env = SoakBucket.environment()
    assert "AWS_PROFILE" not in env
    assert {name: env[name] for name in DUMMY_CREDENTIALS} == DUMMY_CREDENTIALS
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"


def test_the_bucket_soak_has_large_files_by_default() -> None:
    assert parse_options(["--backend", "s3"]).large_file_bytes == DEFAULT_S3_LARGE_FILE_BYTES
    assert parse_options(["--backend", "s3", "--large-file-bytes", "7"]).large_file_bytes == 7
    assert parse_options([]).large_file_bytes == 0
    assert parse_options([]).backend == "filesystem"


def test_a_multipart_upload_left_in_the_bucket_classifies_the_kill() -> None:
    temps = ["packages/aa/.f.tar.gz.0123456789abcdef.part"]
    where = classify_kill(temps, under_way=True, streaming=True, bucket=True)
    assert where == "mid-download (multipart upload left)"
