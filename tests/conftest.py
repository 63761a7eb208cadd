"""Shared fixtures: a fake upstream on loopback and a mirror runner in a temp dir."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def runner(upstream: FakeUpstream, tmp_path: Path) -> MirrorRunner:
    return MirrorRunner(upstream=upstream, directory=tmp_path / "mirror")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on 127.0.0.1 for the session; its URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415  # only S3 tests pay for it

    # The server's per-request lines would drown every failing test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def s3_storage(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[S3Storage]:
    """An S3 backend over a fresh bucket of the moto server, with dummy credentials
    in the environment (botocore's chain reads them there)."""
    from tests.s3support import fresh_bucket  # noqa: PLC0415

    async with fresh_bucket(moto_endpoint, monkeypatch, request.node.name) as storage:
        yield storage


@pytest.fixture(scope="session")
def bandersnatch_script() -> Path:
    """A real bandersnatch 8.2 (its own venv on pyenv's Python 3.12, built once by
    ``benchmarks.bandersnatch.ensure_venv``): the path of its ``bandersnatch`` script.

    Fails rather than skips when it cannot be had: the tests that claim to read or
    replace bandersnatch's mirrors must run wherever the suite runs.
    """
    from benchmarks.bandersnatch import ensure_venv  # noqa: PLC0415

    script = ensure_venv()
    if script is None:
        pytest.fail("bandersnatch 8.2 could not be installed (needs pyenv's Python >= 3.12)")
    return script
