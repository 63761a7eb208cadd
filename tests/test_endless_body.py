"""A body larger than advertised is refused before it is read, and never retried.

The fake upstream's endless answers (a ``Content-Length`` of 1 GiB for a 1 KiB file,
or a chunked body that never ends) must cost the mirror about the file's size, once:
the file fails at once, its project is retried by a later run, the others land and
the serial moves as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest

from mirror.errors import BodySizeError
from mirror.testing import FakeUpstream, FaultPlan
from mirror.testing.faults import ENDLESS_LENGTH
from mirror.upstream import Upstream, UpstreamSettings
from tests.harness import MirrorRunner, no_sleep
from tests.mirrorcheck import assert_consistent

KIB = 1024


def _path_of(upstream: FakeUpstream, project: str, filename: str) -> str:
    return unquote(urlsplit(upstream.file_url(project, filename)).path)


def _requests_for(upstream: FakeUpstream, path: str) -> int:
    return sum(1 for _, logged in upstream.request_log if logged.split("?")[0] == path)


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def _client(upstream: FakeUpstream) -> Upstream:
    settings = UpstreamSettings(base_url=upstream.base_url, retries=3, backoff_base_seconds=0.0)
    return Upstream(settings, sleep=no_sleep)


async def test_an_endless_fault_announces_a_wrong_length_and_never_ends(
    upstream: FakeUpstream,
) -> None:
    upstream.add_file("alpha", "1.0", "alpha-1.0.tar.gz", b"a" * KIB)
    upstream.faults = FaultPlan(endless_rate=1.0)
    async with (
        aiohttp.ClientSession() as session,
        session.get(upstream.file_url("alpha", "alpha-1.0.tar.gz")) as response,
    ):
        assert response.content_length == ENDLESS_LENGTH
        body = await response.content.readexactly(8 * KIB)
    assert body == b"\0" * (8 * KIB)
    assert [f.kind for f in upstream.injected] == ["endless"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{upstream.base_url}/simple/alpha/") as response,
    ):
        assert response.status == 200, "only files are sent endlessly"


@pytest.mark.parametrize("announce_length", [True, False])
async def test_a_download_longer_than_advertised_costs_about_its_size_once(
    upstream: FakeUpstream, announce_length: bool
) -> None:
    """With a wrong Content-Length not a byte of the body is read; without one the
    body is cut at the first chunk past the size. Either way: one request."""
    upstream.add_file("alpha", "1.0", "alpha-1.0.tar.gz", b"a" * KIB)
    upstream.endless_file("alpha", "alpha-1.0.tar.gz", announce_length=announce_length)
    path = _path_of(upstream, "alpha", "alpha-1.0.tar.gz")
    url = upstream.file_url("alpha", "alpha-1.0.tar.gz")
    async with _client(upstream) as client:
        with pytest.raises(BodySizeError, match="expected 1024 bytes") as caught:
            await client.download(url, _collect, size=KIB)
    assert ("refused unread" in str(caught.value)) == announce_length
    assert _requests_for(upstream, path) == 1, "not retried"
    assert upstream.bytes_sent("alpha", "alpha-1.0.tar.gz") <= 16 * KIB


async def test_a_download_of_the_advertised_size_is_not_refused(upstream: FakeUpstream) -> None:
    upstream.add_file("alpha", "1.0", "alpha-1.0.tar.gz", b"a" * KIB)
    async with _client(upstream) as client:
        url = upstream.file_url("alpha", "alpha-1.0.tar.gz")
        assert await client.download(url, _collect, size=KIB) == b"a" * KIB
        assert await client.download(url, _collect) == b"a" * KIB, "no size: no check"
    assert upstream.bytes_sent("alpha", "alpha-1.0.tar.gz") == 2 * KIB


async def test_a_project_whose_file_is_endless_fails_cleanly_and_the_rest_syncs(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_file("alpha", "1.0", "alpha-1.0.tar.gz", b"a" * KIB)
    upstream.add_release("beta", "1.0")
    upstream.add_release("gamma", "2.0")
    upstream.endless_file("alpha", "alpha-1.0.tar.gz")
    path = _path_of(upstream, "alpha", "alpha-1.0.tar.gz")

    report = await runner.sync()

    assert [f.name for f in report.failures] == ["alpha"]
    assert "refused unread" in report.failures[0].error
    assert report.projects_synced == 2
    assert _requests_for(upstream, path) == 1, "the file is not retried within the run"
    sent = upstream.bytes_sent("alpha", "alpha-1.0.tar.gz")
    assert sent <= 16 * KIB, f"{sent} bytes for a 1 KiB file"
    assert not (runner.web / "simple" / "alpha").exists()
    assert (runner.web / "simple" / "beta" / "index.html").exists()
    assert_consistent(runner.directory)
    with runner.state() as state:
        assert state.mirror_serial() == upstream.serial, "the serial is not held back"
        item = state.todo_item("alpha")  # type: ignore[arg-type]
        assert item is not None
        assert item.attempts == 1
        assert not list(runner.web.rglob("*.part")), "no temp left behind"
