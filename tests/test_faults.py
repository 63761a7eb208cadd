"""Faults: the fake upstream's seeded fault plan, and the sync engine under it.

The corpus tests sync a generated corpus through the issue's fault rates and check,
on every page write and every delete (not just at the end), that no page ever links a
file that is missing, partial or fails its hash.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import random
import time
import xmlrpc.client
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from packaging.utils import canonicalize_name

from mirror.errors import TransientUpstreamError, XmlRpcFaultError
from mirror.storage import FileSystemStorage
from mirror.testing import FakeUpstream, FaultPlan, generate_corpus, parse_fault_plan
from mirror.testing.__main__ import main, parse_options
from mirror.testing.faults import FaultKind, RequestKind
from mirror.upstream import Upstream, UpstreamSettings
from tests.harness import MirrorRunner, no_sleep
from tests.mirrorcheck import assert_consistent, assert_matches_upstream

ISSUE_RATES = FaultPlan(
    seed=7, error_rate=0.05, truncate_rate=0.02, corrupt_rate=0.01, stale_rate=0.02
)
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


# --- the plan itself -------------------------------------------------------------------


def test_a_plan_decides_by_seed_path_and_attempt_alone() -> None:
    plan = FaultPlan(seed=3, error_rate=0.3, truncate_rate=0.2)
    again = FaultPlan(seed=3, error_rate=0.3, truncate_rate=0.2)
    other = FaultPlan(seed=4, error_rate=0.3, truncate_rate=0.2)
    paths = [f"/simple/p{i}/" for i in range(200)]
    first = [plan.fault_for(p, n, "page") for p in paths for n in range(3)]
    assert first == [again.fault_for(p, n, "page") for p in paths for n in range(3)]
    assert first != [other.fault_for(p, n, "page") for p in paths for n in range(3)]


def test_a_plan_injects_each_fault_at_about_its_rate() -> None:
    plan = FaultPlan(seed=1, error_rate=0.1, reset_rate=0.05, corrupt_rate=0.2, slow_rate=0.3)
    draws = 20_000
    kinds = Counter(plan.fault_for(f"/packages/{i}", 0, "file") for i in range(draws))
    assert kinds["error"] / draws == pytest.approx(0.1, abs=0.01)
    assert kinds["reset"] / draws == pytest.approx(0.05, abs=0.01)
    assert kinds["corrupt"] / draws == pytest.approx(0.2, abs=0.01)
    slow = sum(plan.is_slow(f"/packages/{i}", 0) for i in range(draws))
    assert slow / draws == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize(
    ("kind", "applies_to"),
    [
        ("corrupt", {"file"}),
        ("stale", {"page"}),
        ("xmlrpc_fault", {"xmlrpc"}),
        ("rate_limit", {"xmlrpc"}),
        ("error", {"file", "page", "xmlrpc", "other"}),
        ("truncate", {"file", "page", "xmlrpc", "other"}),
    ],
)
def test_each_fault_hits_only_the_requests_it_makes_sense_for(
    kind: FaultKind, applies_to: set[str]
) -> None:
    plan = FaultPlan(**{f"{kind}_rate": 1.0})  # type: ignore[arg-type]
    requests: tuple[RequestKind, ...] = ("file", "page", "xmlrpc", "other")
    for request in requests:
        got = plan.fault_for("/x", 0, request)
        assert got == (kind if request in applies_to else None), request


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"stale_rate": -0.1},
        {"slow_rate": 2.0},
        {"slow_seconds": -1.0},
        {"error_rate": 0.6, "truncate_rate": 0.6},
    ],
)
def test_impossible_plans_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"rate|negative"):
        FaultPlan(**bad)  # type: ignore[arg-type]


def test_a_plan_parses_from_the_command_line_form() -> None:
    plan = parse_fault_plan("seed=9, error=0.05,truncate_rate=0.02,slow-seconds=0.5,,")
    assert plan == FaultPlan(seed=9, error_rate=0.05, truncate_rate=0.02, slow_seconds=0.5)
    assert parse_fault_plan("retry_after_seconds=3").retry_after_seconds == 3
    with pytest.raises(ValueError, match="unknown fault setting 'bogus=1'"):
        parse_fault_plan("bogus=1")
    with pytest.raises(ValueError, match="unknown fault setting 'error'"):
        parse_fault_plan("error")
    with pytest.raises(ValueError, match="error_rate: not a number: 'lots'"):
        parse_fault_plan("error=lots")


def test_the_fake_upstream_command_takes_a_fault_plan(capsys: pytest.CaptureFixture[str]) -> None:
    options = parse_options(["--faults", "seed=2,error=0.1"])
    assert options.faults == FaultPlan(seed=2, error_rate=0.1)
    assert parse_options([]).faults is None
    with pytest.raises(SystemExit):
        parse_options(["--faults", "nonsense=1"])
    assert "--faults: unknown fault setting" in capsys.readouterr().err

    def interrupted(coroutine: Coroutine[Any, Any, None]) -> None:
        coroutine.close()
        raise KeyboardInterrupt

    assert main(["--port", "0", "--faults", "error=0.5"], run=interrupted) == 0


# --- what each fault looks like on the wire ----------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_error_and_throttle_faults_answer_5xx_and_429_with_retry_after(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.faults = FaultPlan(error_rate=1.0)
    statuses = set()
    for _ in range(20):
        async with session.get(f"{upstream.base_url}/simple/alpha/") as resp:
            statuses.add(resp.status)
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1, "the 5xx status varies from request to request"
    upstream.faults = FaultPlan(throttle_rate=1.0, retry_after_seconds=7)
    async with session.get(f"{upstream.base_url}/simple/") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
    assert [(f.path, f.attempt, f.kind) for f in upstream.injected] == [
        ("/simple/", 0, "throttle")
    ], "setting a plan restarts the counts and the record"


async def test_reset_and_truncate_faults_break_the_connection(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0")
    url = upstream.file_url("alpha", "alpha-1.0.tar.gz")
    upstream.faults = FaultPlan(reset_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(url) as resp:
            await resp.read()
    upstream.faults = FaultPlan(truncate_rate=1.0)
    with pytest.raises(aiohttp.ClientPayloadError, match="Not enough data"):
        async with session.get(url) as resp:
            await resp.read()


async def test_a_corrupt_fault_keeps_the_size_and_breaks_the_hash(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0", wheel=False)
    url = upstream.file_url("alpha", "alpha-1.0.tar.gz")
    async with session.get(url) as resp:
        good = await resp.read()
    upstream.faults = FaultPlan(corrupt_rate=1.0)
    async with session.get(url) as resp:
        bad = await resp.read()
    assert len(bad) == len(good)
    assert hashlib.sha256(bad).digest() != hashlib.sha256(good).digest()
    async with session.get(f"{upstream.base_url}/simple/alpha/", headers=SIMPLE_JSON) as resp:
        assert resp.status == 200, "pages are never corrupted, only files"
        await resp.json(content_type=None)
    async with session.get(f"{upstream.base_url}/packages/no/such/file.whl") as resp:
        assert resp.status == 404
        assert await resp.text() == "404 Not Found", "only a file's bytes are corrupted"


async def test_a_stale_fault_serves_the_project_as_it_was_with_its_older_serial(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.add_release("alpha", "1.0")
    old_serial = upstream.serial
    upstream.add_release("alpha", "2.0", wheel=False)
    upstream.faults = FaultPlan(stale_rate=1.0)
    async with session.get(f"{upstream.base_url}/simple/alpha/", headers=SIMPLE_JSON) as resp:
        page = await resp.json(content_type=None)
        assert int(resp.headers["X-PyPI-Last-Serial"]) == old_serial + 1 < upstream.serial
    assert "alpha-2.0.tar.gz" not in {f["filename"] for f in page["files"]}
    async with session.get(f"{upstream.base_url}/pypi/alpha/json") as resp:
        assert int(resp.headers["X-PyPI-Last-Serial"]) < upstream.serial
    async with session.get(f"{upstream.base_url}/simple/nothing-here/") as resp:
        assert resp.status == 404, "no earlier state: answered as it is, not counted stale"
    assert [f.kind for f in upstream.injected] == ["stale", "stale"]


async def test_a_slow_fault_delays_the_answer(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.faults = FaultPlan(slow_rate=1.0, slow_seconds=0.05)
    started = time.monotonic()
    async with session.get(f"{upstream.base_url}/simple/") as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 0.05
    assert upstream.injected == (), "slowness alone is not a fault record"


def _client(upstream: FakeUpstream, **overrides: Any) -> Upstream:
    settings = UpstreamSettings(base_url=upstream.base_url, backoff_base_seconds=0.0, **overrides)
    return Upstream(settings, sleep=no_sleep)


async def test_xmlrpc_faults_and_the_rate_limit_fault(upstream: FakeUpstream) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.faults = FaultPlan(xmlrpc_fault_rate=1.0)
    async with _client(upstream) as client:
        with pytest.raises(XmlRpcFaultError, match="-32403"):
            await client.changelog_last_serial()
    upstream.faults = FaultPlan(rate_limit_rate=1.0, retry_after_seconds=2)
    async with _client(upstream, retries=1, backoff_max_seconds=60.0) as client:
        with pytest.raises(TransientUpstreamError, match="HTTPTooManyRequests") as caught:
            await client.changelog_last_serial()
    assert caught.value.retry_after_seconds == 2.0
    assert [f.kind for f in upstream.injected] == ["rate_limit", "rate_limit"]


async def test_a_slow_answer_past_the_read_timeout_is_retried(upstream: FakeUpstream) -> None:
    upstream.add_release("alpha", "1.0")
    # Seed 2 makes the first answer for this path slow and the second one quick.
    plan = FaultPlan(seed=2, slow_rate=0.5, slow_seconds=0.3)
    assert plan.is_slow("/pypi", 0)
    assert not plan.is_slow("/pypi", 1)
    upstream.faults = plan
    async with _client(upstream, read_timeout_seconds=0.05, retries=1) as client:
        assert await client.changelog_last_serial() == upstream.serial
    assert [path for _, path in upstream.request_log] == ["/pypi", "/pypi"]


# --- the sync engine under faults --------------------------------------------------------


class CheckingStorage(FileSystemStorage):
    """The file-system backend, checking the mirror's promise at every step: a page
    is only written when every file it links is on disk with its advertised size and
    hash (and ``.metadata``), and a file is only deleted when no page links it."""

    def __init__(self, web_root: Path) -> None:
        super().__init__(web_root)
        self.linked: dict[str, set[str]] = {}
        for page in (web_root / "simple").glob("*/index.v1_json"):
            self.linked[page.parent.name] = self._links(page.read_bytes(), page.parent.name)

    def _links(self, body: bytes, project: str) -> set[str]:
        """The paths a project page links, each checked on disk."""
        paths: set[str] = set()
        for entry in json.loads(body)["files"]:
            path = posixpath.normpath(posixpath.join(f"simple/{project}", unquote(entry["url"])))
            data = self.path_of(path).read_bytes()
            assert len(data) == entry["size"], path
            assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"], path
            paths.add(path)
            if entry["core-metadata"] is not False:
                meta = self.path_of(f"{path}.metadata").read_bytes()
                assert hashlib.sha256(meta).hexdigest() == entry["core-metadata"]["sha256"]
                paths.add(f"{path}.metadata")
        return paths

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> None:
        for relative, data in files:
            parts = relative.split("/")
            if parts[0] == "simple" and parts[-1] == "index.v1_json" and len(parts) == 3:
                self.linked[parts[1]] = self._links(data, parts[1])
        await super().write_files(files)

    async def delete(self, relative: str) -> None:
        for project, paths in self.linked.items():
            assert relative not in paths, f"{relative} deleted while {project}'s page links it"
        await super().delete(relative)

    async def delete_tree(self, relative: str) -> None:
        parts = relative.split("/")
        if parts[0] == "simple":
            self.linked.pop(parts[1], None)
        await super().delete_tree(relative)


@pytest.fixture
def checked(runner: MirrorRunner) -> MirrorRunner:
    runner.storage_factory = CheckingStorage
    runner.backoff_base_seconds = 1.0
    return runner


async def test_a_corpus_synced_through_the_issues_fault_rates_lands_whole(
    upstream: FakeUpstream, checked: MirrorRunner
) -> None:
    """5% 5xx, 2% truncated, 1% corrupted, 2% stale: every fault is retried per
    request, so the first run is complete and exactly upstream's state."""
    generate_corpus(upstream, projects=60, seed=5)
    upstream.faults = ISSUE_RATES
    report = await checked.sync()
    kinds = Counter(f.kind for f in upstream.injected)
    assert set(kinds) == {"error", "truncate", "corrupt", "stale"}, kinds
    assert report.ok, report.failures
    assert report.projects_synced == 60
    assert report.pending == 0
    assert len(checked.sleeps) == sum(kinds.values()), "one back-off per injected fault"
    assert all(0 <= s <= 60 for s in checked.sleeps)
    assert_consistent(checked.directory)
    upstream.faults = None
    await assert_matches_upstream(checked.directory, upstream)


async def test_projects_that_keep_failing_are_queued_and_converge_later(
    upstream: FakeUpstream, checked: MirrorRunner
) -> None:
    """Under heavy faults some projects exhaust their retries: they are recorded with
    a back-off, the rest land, the report says so; once the faults stop and the
    back-off passes, the next run converges."""
    generate_corpus(upstream, projects=30, seed=2)
    upstream.faults = FaultPlan(
        seed=11, error_rate=0.25, reset_rate=0.1, truncate_rate=0.1, corrupt_rate=0.1
    )
    report = await checked.sync()
    assert not report.ok
    failed = {f.name for f in report.failures}
    assert 0 < len(failed) < 30
    assert report.projects_synced == 30 - len(failed)
    assert report.pending == len(failed)
    assert_consistent(checked.directory)
    for name in failed:
        assert not (checked.web / "simple" / name).exists(), "no page for a failed project"
    with checked.state() as state:
        assert state.mirror_serial() == upstream.serial, "failures do not hold the serial"
        for failure in report.failures:
            item = state.todo_item(failure.name)
            assert item is not None
            assert item.attempts == 1
            assert item.next_attempt == checked.clock.now + 60
            assert item.last_error == failure.error

    upstream.faults = None
    report = await checked.sync()
    assert report.ok
    assert report.projects_synced == 0, "not due yet: the back-off holds"
    assert report.pending == len(failed)

    checked.clock.now += 61
    report = await checked.sync()
    assert report.ok
    assert {canonicalize_name(n) for n in failed} == failed
    assert report.projects_synced == len(failed)
    assert report.pending == 0
    await assert_matches_upstream(checked.directory, upstream)


async def test_deletions_upstream_are_followed_under_faults(
    upstream: FakeUpstream, checked: MirrorRunner
) -> None:
    generate_corpus(upstream, projects=40, seed=3)
    report = await checked.sync()
    assert report.ok
    rng = random.Random(4)
    names = upstream.project_names()
    for name in rng.sample(names, 6):
        upstream.remove_project(name)
    for name in rng.sample(upstream.project_names(), 6):
        page = json.loads(
            (checked.web / "simple" / canonicalize_name(name) / "index.v1_json").read_bytes()
        )
        upstream.remove_file(name, page["files"][0]["filename"])
    for name in rng.sample(upstream.project_names(), 4):
        upstream.add_release(name, "99.0")
    upstream.faults = FaultPlan(
        seed=8,
        error_rate=0.05,
        truncate_rate=0.02,
        corrupt_rate=0.01,
        stale_rate=0.2,
        throttle_rate=0.05,
        reset_rate=0.02,
    )
    for _ in range(4):
        report = await checked.sync()
        assert_consistent(checked.directory)
        checked.clock.now += 3600
    assert "stale" in {f.kind for f in upstream.injected}
    upstream.faults = None
    report = await checked.sync()
    assert report.ok
    await assert_matches_upstream(checked.directory, upstream)


async def test_a_rate_limited_changelog_waits_as_upstream_asks(
    upstream: FakeUpstream, checked: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    await checked.sync()
    upstream.add_release("alpha", "2.0")
    # Seed 1: the first changelog call is rate limited, the next is answered.
    plan = FaultPlan(seed=1, rate_limit_rate=0.5, retry_after_seconds=30)
    assert plan.fault_for("/pypi", 0, "xmlrpc") == "rate_limit"
    assert plan.fault_for("/pypi", 1, "xmlrpc") is None
    upstream.faults = plan
    checked.sleeps.clear()
    report = await checked.sync()
    assert report.ok
    assert report.projects_synced == 1
    assert checked.sleeps[0] >= 30, "the back-off honours 'Limit may reset in 30 seconds'"


async def test_the_fault_plan_can_be_given_to_the_constructor() -> None:
    plan = FaultPlan(error_rate=1.0)
    async with FakeUpstream(faults=plan) as fake:
        assert fake.faults is plan
        async with aiohttp.ClientSession() as client:
            body = xmlrpc.client.dumps((), "changelog_last_serial").encode()
            async with client.post(f"{fake.base_url}/pypi", data=body) as resp:
                assert resp.status >= 500
        assert [f.kind for f in fake.injected] == ["error"]
