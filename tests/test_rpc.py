"""``mirror serve`` as an upstream: its XML-RPC endpoint over the journal, the serial on
its pages, and a follower's fall-back to the full listing when the journal is pruned."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import xmlrpc.client
from pathlib import Path

import aiohttp
import pytest
from packaging.utils import NormalizedName

from mirror import app
from mirror.config import load_config
from mirror.errors import JournalPrunedError, XmlRpcFaultError
from mirror.models import Serial
from mirror.state import STATE_NAME, StateStore
from mirror.testing import FakeUpstream, RawAnswer
from mirror.upstream import SIMPLE_JSON_TYPE, Upstream, UpstreamSettings
from tests.chainsupport import publish, served, sync_from, tree
from tests.clients import free_port
from tests.harness import no_sleep, write_config


@pytest.fixture
async def mirror_a(upstream: FakeUpstream, tmp_path: Path) -> Path:
    publish(upstream, "alpha", "1.0")
    publish(upstream, "Beta", "1.0", sdist=False)
    directory = tmp_path / "a"
    assert (await sync_from(upstream.base_url, directory)).ok
    return directory


def journal_of(directory: Path) -> StateStore:
    return StateStore.open(directory / STATE_NAME)


async def post(url: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/pypi", data=body, headers=headers) as response,
    ):
        return response.status, await response.read()


async def test_the_three_methods_answer_from_the_journal(mirror_a: Path) -> None:
    with journal_of(mirror_a) as state:
        last = state.journal_last_serial()
        listing = state.journal_listing()
        rows = state.journal_since(Serial(0))
    assert set(listing) == {"alpha", "Beta"}
    async with (
        served(mirror_a) as url,
        Upstream(UpstreamSettings(base_url=url, retries=0)) as client,
    ):
        assert await client.changelog_last_serial() == last
        entries = await client.changelog_since_serial(Serial(0))
        assert [(e.name, e.serial, e.action, e.version) for e in entries] == [
            (r.display_name, r.serial, "create", None) for r in rows
        ]
        assert await client.changelog_since_serial(last) == []
        listed = await client.list_packages_with_serial()
        assert listed.display_names == {"alpha": "alpha", "beta": "Beta"}
        assert listed.serials == {NormalizedName(k.lower()): v for k, v in listing.items()}


async def test_a_pruned_serial_is_fault_410_and_bad_calls_get_warehouses_faults(
    mirror_a: Path,
) -> None:
    with journal_of(mirror_a) as state:
        state.remove_project(NormalizedName("alpha"))
        state.prune_journal(older_than=time.time() + 1)
        horizon = state.journal_last_serial()
    async with (
        served(mirror_a) as url,
        Upstream(UpstreamSettings(base_url=url, retries=0)) as client,
    ):
        with pytest.raises(XmlRpcFaultError) as info:
            await client.changelog_since_serial(Serial(horizon - 1))
        assert info.value.code == JournalPrunedError.FAULT_CODE
        assert "list_packages_with_serial" in info.value.fault_string
        assert await client.changelog_since_serial(horizon) == []
        calls: dict[tuple[str, tuple[str | int | bool, ...]], int] = {
            ("changelog_since_serial", ("1",)): -32602,
            ("changelog_since_serial", (True,)): -32602,
            ("changelog_last_serial", (1,)): -32602,
            ("system.listMethods", ()): -32601,
        }
        for (method, params), code in calls.items():
            status, body = await post(url, xmlrpc.client.dumps(params, method).encode())
            assert status == 200
            with pytest.raises(xmlrpc.client.Fault) as fault:
                xmlrpc.client.loads(body)
            assert fault.value.faultCode == code, method


async def test_requests_that_are_not_xmlrpc_or_too_big_are_refused(mirror_a: Path) -> None:
    async with served(mirror_a) as url:
        assert (await post(url, b"<not xml"))[0] == 400
        assert (await post(url, b"<x>" * 30_000))[0] == 413
        assert (await post(url, b"x", **{"Content-Length": "70000"}))[0] == 413


async def test_without_a_state_store_the_endpoint_is_503_and_pages_go_without_serial(
    mirror_a: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    (bare / "web").mkdir(parents=True)
    (mirror_a / "web").rename(bare / "web")
    async with served(bare) as url, aiohttp.ClientSession() as session:
        status, _ = await post(url, xmlrpc.client.dumps((), "changelog_last_serial").encode())
        assert status == 503
        async with session.get(f"{url}/simple/alpha/") as response:
            assert response.status == 200
            assert "X-PyPI-Last-Serial" not in response.headers


async def test_pages_carry_the_journal_serial_of_their_project(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream, "alpha", "1.0")
    directory = tmp_path / "a"
    await sync_from(upstream.base_url, directory)
    (directory / "web" / "pypi" / "alpha").mkdir(parents=True)
    (directory / "web" / "pypi" / "alpha" / "json").write_bytes(b"{}")
    with journal_of(directory) as state:
        serial = state.journal_serial(NormalizedName("alpha"))
    async with served(directory) as url, aiohttp.ClientSession() as session:
        for path, accept in [("/simple/alpha/", SIMPLE_JSON_TYPE), ("/pypi/alpha/json", "*/*")]:
            async with session.get(f"{url}{path}", headers={"Accept": accept}) as response:
                assert response.status == 200
                assert response.headers["X-PyPI-Last-Serial"] == str(serial), path


async def test_a_follower_behind_the_journal_reads_the_full_listing(
    upstream: FakeUpstream, mirror_a: Path, tmp_path: Path
) -> None:
    b = tmp_path / "b"
    async with served(mirror_a) as url:
        assert (await sync_from(url, b)).ok
    upstream.remove_project("alpha")
    publish(upstream, "gamma", "1.0")
    assert (await sync_from(upstream.base_url, mirror_a)).ok
    with journal_of(mirror_a) as state:
        assert state.prune_journal(older_than=time.time() + 1) > 0
    async with served(mirror_a) as url:
        report = await sync_from(url, b)
    assert report.ok
    assert tree(b) == tree(mirror_a)
    assert not (b / "web" / "simple" / "alpha").exists()


async def test_a_follower_stops_at_any_other_fault(upstream: FakeUpstream, mirror_a: Path) -> None:
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(-32500, "boom"), methodresponse=True)
    upstream.serve_raw(
        "/pypi",
        RawAnswer(status=200, headers=(("Content-Type", "text/xml"),), body=fault.encode()),
        method="POST",
    )
    with pytest.raises(XmlRpcFaultError, match="boom"):
        await sync_from(upstream.base_url, mirror_a)


async def test_mirror_serve_publishes_the_journal(
    mirror_a: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = load_config(write_config(tmp_path, upstream.base_url))
    config = dataclasses.replace(config, directory=mirror_a)
    port = free_port()
    task = asyncio.create_task(app.serve(config, host="127.0.0.1", port=port))
    try:
        async with Upstream(
            UpstreamSettings(base_url=f"http://127.0.0.1:{port}", retries=20), sleep=no_sleep
        ) as client:
            for _ in range(100):
                try:
                    serial = await client.changelog_last_serial()
                    break
                except Exception:  # noqa: BLE001  # not listening yet
                    await asyncio.sleep(0.05)
            else:  # pragma: no cover - only when the server never comes up
                pytest.fail("mirror serve did not come up")
        with journal_of(mirror_a) as state:
            assert serial == state.journal_last_serial()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
