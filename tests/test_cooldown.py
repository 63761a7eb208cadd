"""``cooldown``: files are downloaded as soon as they appear and published once their
upload time is that old, by the first sync after that even without an upstream
change; quarantined projects are hidden at once; ``mirror status`` counts what waits."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from packaging.utils import canonicalize_name

from mirror.state import ROOT_HTML_META_KEY
from mirror.status import read_status, render_status, status_json
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from tests.harness import MirrorRunner
from tests.mirrorcheck import published_files

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WEEK = 7 * 86400.0


def upload(upstream: FakeUpstream, version: str, uploaded: datetime) -> tuple[str, str]:
    wheel, content, metadata = make_wheel("Demo", version)
    upstream.add_file("Demo", version, wheel, content, metadata=metadata, upload_time=uploaded)
    sdist, content = make_sdist("Demo", version)
    upstream.add_file("Demo", version, sdist, content, upload_time=uploaded)
    return wheel, sdist


def page(runner: MirrorRunner) -> dict[str, object]:
    text = (runner.web / "simple" / "demo" / "index.v1_json").read_bytes()
    return dict(json.loads(text))


async def test_new_files_wait_out_the_cooldown_then_a_sync_publishes_them(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    runner.options = dataclasses.replace(runner.options, cooldown=WEEK)
    runner.clock.now = NOW.timestamp()
    old = upload(upstream, "1.0", NOW - timedelta(days=30))
    new = upload(upstream, "2.0", NOW - timedelta(days=1))
    await runner.sync()
    assert set(published_files(runner.web, "demo")) == set(old)
    assert page(runner)["versions"] == ["1.0"]
    html = (runner.web / "simple" / "demo" / "index.html").read_text()
    assert new[0] not in html
    # Downloaded all the same, and counted as held back.
    with runner.state() as state:
        held = {f.filename for f in state.project_files(canonicalize_name("demo")).values()}
        assert held == {*old, *new}
        status = read_status(state, now=runner.clock.now)
    assert status.held_back == 2
    assert "held back:        2 file(s)" in render_status(status)
    assert json.loads(status_json(status))["held_back"] == 2

    # Five days on (six days old), still held; a day later a sync publishes them with
    # no upstream change.
    serial = upstream.serial
    runner.clock.now += 5 * 86400.0
    await runner.sync()
    assert set(published_files(runner.web, "demo")) == set(old)
    runner.clock.now += 86400.0
    report = await runner.sync()
    assert upstream.serial == serial
    assert report.files_downloaded == 0
    assert set(published_files(runner.web, "demo")) == {*old, *new}
    assert page(runner)["versions"] == ["1.0", "2.0"]
    with runner.state() as state:
        assert state.held_count() == 0
        assert state.get_meta(ROOT_HTML_META_KEY)


async def test_a_project_quarantined_upstream_is_hidden_at_once_whatever_the_cooldown(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    runner.options = dataclasses.replace(runner.options, cooldown=WEEK)
    runner.clock.now = NOW.timestamp()
    upload(upstream, "1.0", NOW - timedelta(days=30))
    await runner.sync()
    assert published_files(runner.web, "demo")
    upload(upstream, "2.0", NOW - timedelta(days=1))
    await runner.sync()
    with runner.state() as state:
        assert state.held_count() == 2
    # Upstream's quarantine moves no serial: a sync of the project (as --project) sees it.
    upstream.set_status("Demo", "quarantined", reason="malware report")
    await runner.sync(["demo"])
    assert published_files(runner.web, "demo") == {}
    assert page(runner)["project-status"] == {
        "status": "quarantined",
        "reason": "malware report",
    }
    with runner.state() as state:
        assert state.held_count() == 0
        assert state.project_files(canonicalize_name("demo")) == {}
