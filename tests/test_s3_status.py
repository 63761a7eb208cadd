"""``mirror status``, the metrics and the size counters of a mirror whose tree is an S3
bucket: the same figures as on disk, and they agree with what the bucket holds."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import ClientSession

from mirror.cli import EXIT_OK, main
from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream
from tests.clients import free_port, stop, wait_for_port
from tests.nginxserver import REPO
from tests.s3support import write_s3_config


async def packages(storage: S3Storage) -> tuple[int, int]:
    """The bucket's distribution files (``.metadata`` sidecars aside), and the bytes
    under ``packages/`` (sidecars included: the mirror's size counts them)."""
    sizes = {
        path: size async for path, size in storage.iter_objects() if path.startswith("packages/")
    }
    files = [path for path in sizes if not path.endswith(".metadata")]
    return len(files), sum(sizes.values())


def metric(text: str, name: str) -> float:
    found = re.search(rf"(?m)^{name} (\S+)$", text)
    assert found is not None, f"no {name} in:\n{text}"
    return float(found.group(1))


async def status_json(config: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "-c", config, "--json"]) == EXIT_OK
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


@pytest.mark.slow
async def test_status_metrics_and_size_counters_match_the_bucket(
    upstream: FakeUpstream,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a full sync and after one with deletions: ``mirror status --json``, the
    ``metrics-file`` and ``/metrics`` and ``/status/`` of ``mirror serve`` over the
    bucket all count the projects, files and bytes the bucket holds."""
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "1.1")
    upstream.add_release("Beta", "2.0")
    upstream.add_release("gamma", "0.1", wheel=False)
    metrics_file = tmp_path / "metrics.prom"
    path = write_s3_config(tmp_path, upstream.base_url, s3_storage, moto_endpoint)
    # The [mirror] section is first: the key goes right after its header.
    text = path.read_text().replace("[mirror]\n", f"[mirror]\nmetrics-file = {metrics_file}\n", 1)
    path.write_text(text + "[serve]\nhost = 127.0.0.1\n")
    config = str(path)

    for change in (None, "deletions"):
        if change is not None:
            upstream.remove_project("Beta")
            upstream.remove_file("Alpha", "alpha-1.0.tar.gz")
        assert await asyncio.to_thread(main, ["sync", "-c", config]) == EXIT_OK
        files, size = await packages(s3_storage)
        projects = 2 if change else 3
        status = await status_json(config, capsys)
        assert status["projects"] == projects
        assert status["files"] == files
        assert status["bytes"] == size
        prometheus = metrics_file.read_text()
        assert metric(prometheus, "mirror_projects") == projects
        assert metric(prometheus, "mirror_files") == files
        assert metric(prometheus, "mirror_bytes") == size
        assert metric(prometheus, "mirror_last_run_success") == 1
    assert files == 4, "alpha 1.0's wheel, alpha 1.1's sdist and wheel, gamma's sdist"
    assert not (tmp_path / "mirror" / "web").exists(), "the tree is in the bucket only"

    # mirror serve over the bucket: the same figures, read from the same state store.
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        served = subprocess.Popen(
            [sys.executable, "-m", "mirror", "serve", "-c", config, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
        )
    try:
        await asyncio.to_thread(wait_for_port, port, served, log)
        async with ClientSession(f"http://127.0.0.1:{port}") as session:
            async with session.get("/metrics") as response:
                assert response.status == 200
                served_metrics = await response.text()
            async with session.get("/status/") as response:
                assert response.status == 200
                page = await response.text()
            async with session.get("/simple/alpha/") as response:
                assert response.status == 200, "the pages come from the bucket"
    finally:
        assert await asyncio.to_thread(stop, served, signal.SIGTERM) == 0, log.read_text()
    assert metric(served_metrics, "mirror_files") == files
    assert metric(served_metrics, "mirror_bytes") == size
    assert metric(served_metrics, "mirror_projects") == 2
    assert "<html" in page.lower()
