"""On-demand projects in ``mirror serve``: a page the mirror lacks is fetched from
upstream through the normal sync, then served; real pip and uv install through it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession
from packaging.utils import NormalizedName

from mirror import app
from mirror.config import Config, load_config
from mirror.errors import ConfigError, StateError
from mirror.filters import FilterSet, load_filters
from mirror.lock import mirror_lock
from mirror.models import Serial
from mirror.ondemand import OnDemand
from mirror.report import ProjectFailure, SyncReport
from mirror.server import FetchAnswer, running_server
from mirror.state import StateStore
from mirror.status import read_status, render_status, status_json
from mirror.testing import FakeUpstream, FaultPlan
from tests.clients import pip_install, uv_install
from tests.harness import write_config

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def publish(upstream: FakeUpstream) -> None:
    """``app`` needs ``dep``, which needs ``leaf``; ``seed`` is what the allowlist names."""
    upstream.add_release("seed", "1.0")
    upstream.add_release("leaf", "1.0")
    upstream.add_release("dep", "1.0", requires_dist=["leaf>=1"])
    upstream.add_release("app", "1.0", requires_dist=["dep>=1"])


def configure(tmp_path: Path, upstream: FakeUpstream, *serve: str, filters: str = "") -> Config:
    path = write_config(tmp_path, upstream.base_url)
    text = path.read_text()
    text += "[serve]\non-demand = true\n" + "".join(f"{line}\n" for line in serve)
    text += filters or "[plugins]\nenabled = allowlist blocklist\n[allowlist]\npackages = seed\n"
    text += "" if filters else "[blocklist]\npackages = evil\n"
    path.write_text(text)
    return load_config(path)


@asynccontextmanager
async def served(config: Config) -> AsyncIterator[str]:
    async with app.serving(config, port=0) as url:
        yield url


def upstream_paths(upstream: FakeUpstream) -> list[str]:
    return [path for _, path in upstream.request_log]


def mirrored(config: Config) -> set[str]:
    with StateStore.open(config.directory / "mirror.db") as state:
        return {row.name for row in state.iter_projects()}


@pytest.mark.slow
@pytest.mark.parametrize("client", [pip_install, uv_install], ids=["pip", "uv"])
async def test_a_client_installs_a_project_and_its_dependencies_the_mirror_lacked(
    upstream: FakeUpstream,
    tmp_path: Path,
    client: Callable[..., object],
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    assert (await app.sync(config)).ok
    assert mirrored(config) == {"seed"}
    async with served(config) as url:
        first = await asyncio.to_thread(client, f"{url}/simple/", tmp_path / "one", "app")
        assert first.returncode == 0, first.stderr  # type: ignore[attr-defined]
        assert (tmp_path / "one" / "app").is_dir()
        assert (tmp_path / "one" / "dep").is_dir()
        assert (tmp_path / "one" / "leaf").is_dir()
        assert mirrored(config) == {"seed", "app", "dep", "leaf"}
        # Installed again, into a new target: upstream is not asked anything.
        upstream.request_log.clear()
        second = await asyncio.to_thread(client, f"{url}/simple/", tmp_path / "two", "app")
        assert second.returncode == 0, second.stderr  # type: ignore[attr-defined]
        assert (tmp_path / "two" / "leaf").is_dir()
        assert upstream_paths(upstream) == []
    with StateStore.open(config.directory / "mirror.db") as state:
        status = read_status(state, now=time.time())
    assert [p.name for p in status.on_demand] == ["app", "dep", "leaf"]
    assert all(p.requests >= 1 for p in status.on_demand)
    assert "on demand:        3 project(s) added" in render_status(status)
    document = json.loads(status_json(status))
    assert [p["name"] for p in document["on_demand"]] == ["app", "dep", "leaf"]
    assert document["on_demand_requests"] == status.on_demand_requests >= 3


async def test_a_burst_for_one_project_makes_one_upstream_fetch(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    async with served(config) as url, ClientSession() as session:

        async def get() -> tuple[int, bytes]:
            headers = {"Accept": JSON_TYPE}
            async with session.get(f"{url}/simple/app/", headers=headers) as response:
                return response.status, await response.read()

        answers = await asyncio.gather(*(get() for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    page = json.loads(answers[0][1])
    assert {f["filename"] for f in page["files"]} == {"app-1.0.tar.gz", "app-1.0-py3-none-any.whl"}
    assert upstream_paths(upstream).count("/simple/app/") == 1
    with StateStore.open(config.directory / "mirror.db") as state:
        (project,) = state.on_demand_projects()
    assert (project.name, project.requests) == ("app", 20)


async def test_an_unknown_name_is_a_fast_404_and_then_not_asked_again(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    async with served(config) as url, ClientSession() as session:
        started = time.monotonic()
        async with session.get(f"{url}/simple/nosuch/") as response:
            assert response.status == 404
        assert time.monotonic() - started < 5
        assert "/simple/nosuch/" in upstream_paths(upstream)
        upstream.request_log.clear()
        async with session.get(f"{url}/simple/nosuch/") as response:
            assert response.status == 404
        assert upstream_paths(upstream) == []
        # A blocklisted name is never asked for.
        async with session.get(f"{url}/simple/evil/") as response:
            assert response.status == 404
        assert upstream_paths(upstream) == []
        # A name that is not normalized is redirected first, as always.
        async with session.get(f"{url}/simple/App/", allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == "/simple/app/"
        assert upstream_paths(upstream) == []
    with StateStore.open(config.directory / "mirror.db") as state:
        assert state.on_demand_projects() == []


async def test_past_the_timeout_a_request_gets_503_with_retry_after_and_the_fetch_goes_on(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream, "on-demand-timeout = 200ms")
    upstream.faults = FaultPlan(slow_rate=1.0, slow_seconds=1.0)
    async with served(config) as url, ClientSession() as session:
        started = time.monotonic()
        async with session.get(f"{url}/simple/app/") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 1.0
        upstream.faults = None
        for _ in range(100):
            async with session.get(f"{url}/simple/app/") as response:
                if response.status == 200:
                    break
                assert response.status == 503
            await asyncio.sleep(0.1)
        assert response.status == 200
    assert "app" in mirrored(config)


async def test_while_another_run_holds_the_lock_the_fetch_waits_for_it(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream, "on-demand-timeout = 300ms")
    config.directory.mkdir(parents=True)
    async with served(config) as url, ClientSession() as session:
        with mirror_lock(config.directory):
            async with session.get(f"{url}/simple/app/") as response:
                assert response.status == 503
        for _ in range(50):
            async with session.get(f"{url}/simple/app/") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.2)
        assert response.status == 200


async def test_a_fetch_that_fails_upstream_is_a_503_and_leaves_nothing(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    upstream.fail_next("/simple/app/", status=500, times=1)
    async with served(config) as url, ClientSession() as session:
        async with session.get(f"{url}/simple/app/") as response:
            assert response.status == 503
        with StateStore.open(config.directory / "mirror.db") as state:
            assert state.on_demand_projects() == []
        async with session.get(f"{url}/simple/app/") as response:
            assert response.status == 200


async def test_a_later_sync_keeps_an_on_demand_project_in_step(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    assert (await app.sync(config)).ok
    async with (
        served(config) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/app/") as response,
    ):
        assert response.status == 200
    upstream.add_release("app", "2.0")
    report = await app.sync(config)
    assert report.ok
    assert report.projects_synced == 1
    page = json.loads((config.directory / "web" / "simple" / "app" / "index.v1_json").read_bytes())
    assert page["versions"] == ["1.0", "2.0"]
    root = json.loads((config.directory / "web" / "simple" / "index.v1_json").read_bytes())
    assert {p["name"] for p in root["projects"]} == {"seed", "app"}
    # The other filters still apply to it.
    upstream.add_release("app", "3.0")
    config = configure(
        tmp_path,
        upstream,
        filters="[plugins]\nenabled = allowlist blocklist\n[allowlist]\npackages = seed\n"
        "[blocklist]\npackages = app>=3\n",
    )
    assert (await app.sync(config)).ok
    page = json.loads((config.directory / "web" / "simple" / "app" / "index.v1_json").read_bytes())
    assert page["versions"] == ["1.0", "2.0"]


async def test_without_an_allowlist_a_missing_project_is_fetched_too(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream, filters="\n")
    async with (
        served(config) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/leaf/") as response,
    ):
        assert response.status == 200
    assert mirrored(config) == {"leaf"}


def test_on_demand_needs_a_writable_directory_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "ro.conf"
    path.write_text("[mirror]\ndirectory = /proc/sys\n[serve]\non-demand = true\n")
    config = load_config(path)

    async def serve() -> None:
        async with served(config):
            pass  # pragma: no cover - the server never starts

    with pytest.raises(ConfigError, match=r"\[serve\] on-demand: needs a writable"):
        asyncio.run(serve())
    path.write_text(
        "[mirror]\ndirectory = m\n[serve]\non-demand = true\n"
        "[storage]\nbackend = s3\nbucket = mirror-bucket\n"
    )
    with pytest.raises(ConfigError, match=r"\[serve\] on-demand: not supported with"):
        load_config(path)


# --- the fetcher alone, with a fake sync -----------------------------------------------


class FakeSync:
    """Stands for the ``--project`` run: records the names, raises what it is told."""

    def __init__(self, state: StateStore, errors: Sequence[BaseException] = ()) -> None:
        self.state = state
        self.errors = list(errors)
        self.calls: list[list[str]] = []
        self.failing = True
        """Whether the run reports its first name failed."""

    async def __call__(self, names: Sequence[NormalizedName]) -> SyncReport:
        self.calls.append(list(names))
        if self.errors:
            raise self.errors.pop(0)
        return SyncReport(
            serial=None,
            projects_synced=0,
            projects_removed=0,
            failures=(ProjectFailure(name=names[0], error="x", attempts=1, next_attempt=0),)
            if self.failing
            else (),
            files_downloaded=0,
            bytes_downloaded=0,
            files_deleted=0,
            pending=0,
            elapsed_seconds=0,
        )


async def test_the_negative_cache_expires_and_errors_of_a_batch_answer_503(tmp_path: Path) -> None:
    now = [0.0]
    with StateStore.open(tmp_path / "mirror.db") as state:
        sync = FakeSync(state, errors=[StateError("disk gone")])
        fetcher = OnDemand(
            filters=FilterSet(),
            state=state,
            sync=sync,
            timeout_seconds=5,
            clock=lambda: now[0],
        )
        async with asyncio.TaskGroup() as group:
            batches = group.create_task(fetcher.run_batches())
            # A batch whose run raises: 503, nothing kept.
            answer = await fetcher(NormalizedName("gone"))
            assert (answer.status, answer.retry_after_seconds) == ("busy", 5)
            # The run reports the first name failed: 503 again.
            assert (await fetcher(NormalizedName("gone"))).status == "busy"
            assert state.on_demand_projects() == []
            batches.cancel()
    filters = load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "a"}})
    with StateStore.open(tmp_path / "mirror.db") as state:
        sync = FakeSync(state)
        fetcher = OnDemand(
            filters=filters, state=state, sync=sync, timeout_seconds=5, clock=lambda: now[0]
        )
        async with asyncio.TaskGroup() as group:
            batches = group.create_task(fetcher.run_batches())
            sync.calls.clear()
            # Two names in one run: the failed first one, and one not upstream.
            answers = await asyncio.gather(
                fetcher(NormalizedName("b")), fetcher(NormalizedName("c"))
            )
            assert [a.status for a in answers] == ["busy", "absent"]
            assert sync.calls == [["b", "c"]]
            assert (await fetcher(NormalizedName("c"))).status == "absent"
            assert sync.calls == [["b", "c"]]
            now[0] += 601
            await fetcher(NormalizedName("c"))
            assert sync.calls == [["b", "c"], ["c"]]
            batches.cancel()


class UncountedStore(StateStore):
    """A state store whose request counts fail, as a locked database's would."""

    def count_on_demand_requests(self, name: NormalizedName, count: int) -> None:
        raise StateError(f"cannot count {name} ({count})")


async def test_a_request_count_that_cannot_be_stored_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with UncountedStore.open(tmp_path / "mirror.db") as state:

        async def sync(names: Sequence[NormalizedName]) -> SyncReport:
            state.commit_project(
                name=names[0], display_name="a", serial=Serial(1), status="active", delete=[]
            )
            return SyncReport(
                serial=None,
                projects_synced=1,
                projects_removed=0,
                failures=(),
                files_downloaded=0,
                bytes_downloaded=0,
                files_deleted=0,
                pending=0,
                elapsed_seconds=0,
            )

        fetcher = OnDemand(filters=FilterSet(), state=state, sync=sync, timeout_seconds=5)
        async with asyncio.TaskGroup() as group:
            batches = group.create_task(fetcher.run_batches())
            assert (await fetcher(NormalizedName("a"))).status == "ready"
            await asyncio.sleep(0.1)
            batches.cancel()
    assert "cannot count the requests for a: " in caplog.text


async def test_a_page_still_missing_after_a_ready_fetch_is_a_404(tmp_path: Path) -> None:
    async def ready(name: NormalizedName) -> FetchAnswer:
        del name
        return FetchAnswer(status="ready")

    async with (
        running_server(tmp_path, port=0, on_missing=ready) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/a/") as response,
    ):
        assert response.status == 404


async def test_the_negative_cache_is_bounded_oldest_first(tmp_path: Path) -> None:
    now = [0.0]
    with StateStore.open(tmp_path / "mirror.db") as state:
        sync = FakeSync(state)
        fetcher = OnDemand(
            filters=FilterSet(),
            state=state,
            sync=sync,
            timeout_seconds=5,
            negative_cache_size=2,
            clock=lambda: now[0],
        )
        sync.failing = False
        async with asyncio.TaskGroup() as group:
            batches = group.create_task(fetcher.run_batches())
            for name in ("a", "b"):
                assert (await fetcher(NormalizedName(name))).status == "absent"
                now[0] += 400
            # "a" expired at 600: pruned; "b" stays; "c" joins.
            assert (await fetcher(NormalizedName("c"))).status == "absent"
            now[0] += 1
            # Full of live names: the oldest ("b") goes for "d".
            assert (await fetcher(NormalizedName("d"))).status == "absent"
            sync.calls.clear()
            await fetcher(NormalizedName("c"))
            await fetcher(NormalizedName("d"))
            await fetcher(NormalizedName("b"))
            assert sync.calls == [["b"]]
            batches.cancel()


async def test_an_allowlisted_project_not_yet_synced_is_fetched_but_not_added_on_demand(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    publish(upstream)
    config = configure(tmp_path, upstream)
    async with (
        served(config) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/seed/") as response,
    ):
        assert response.status == 200
    assert mirrored(config) == {"seed"}
    with StateStore.open(config.directory / "mirror.db") as state:
        assert state.on_demand_projects() == []
