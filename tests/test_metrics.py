"""Prometheus metrics: strict text-format output, the atomic metrics file, ``/metrics``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mirror.errors import StorageError
from mirror.metrics import CONTENT_TYPE, metrics_routes, render_metrics, write_metrics_file
from mirror.state import StateStore
from mirror.status import read_status
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP_RE = re.compile(rf"# HELP ({_NAME}) (.+)")
_TYPE_RE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE_RE = re.compile(rf"({_NAME}) (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)")


def parse_strictly(text: str) -> dict[str, tuple[str, float]]:
    """Parse the Prometheus text format (no labels), failing on anything off-spec:
    each family has HELP then TYPE then its sample, no duplicates, a final newline,
    counters end in ``_total``. Returns name -> (type, value)."""
    assert text.endswith("\n")
    families: dict[str, tuple[str, float]] = {}
    lines = text[:-1].split("\n")
    assert len(lines) % 3 == 0, "HELP, TYPE and one sample per family"
    for index in range(0, len(lines), 3):
        help_line, type_line, sample = lines[index : index + 3]
        help_match = _HELP_RE.fullmatch(help_line)
        type_match = _TYPE_RE.fullmatch(type_line)
        sample_match = _SAMPLE_RE.fullmatch(sample)
        assert help_match, help_line
        assert type_match, type_line
        assert sample_match, sample
        name = help_match[1]
        assert type_match[1] == name == sample_match[1]
        assert name.startswith("mirror_")
        assert name not in families
        if type_match[2] == "counter":
            assert name.endswith("_total")
        families[name] = (type_match[2], float(sample_match[2]))
    return families


async def test_metrics_after_runs_parse_and_carry_the_mirror_state(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    upstream.add_release("beta", "1.0", wheel=False)
    await runner.sync()
    upstream.add_release("beta", "2.0", wheel=False)
    upstream.fail_next("/simple/beta/", 500, times=10)
    runner.clock.now += 30
    await runner.sync()
    with runner.state() as state:
        status = read_status(state, now=runner.clock.now)
        first = state.runs()[0]
    metrics = parse_strictly(render_metrics(status))
    assert metrics["mirror_serial"] == ("gauge", upstream.serial)
    assert metrics["mirror_upstream_serial"] == ("gauge", upstream.serial)
    assert metrics["mirror_lag_serials"] == ("gauge", 0)
    assert metrics["mirror_projects"] == ("gauge", 2)
    assert metrics["mirror_files"] == ("gauge", status.totals.files)
    assert metrics["mirror_bytes"] == ("gauge", status.totals.bytes)
    assert metrics["mirror_failing_projects"] == ("gauge", 1)
    assert metrics["mirror_pending_projects"] == ("gauge", 1)
    assert metrics["mirror_last_success_timestamp_seconds"] == ("gauge", first.finished)
    assert metrics["mirror_last_run_timestamp_seconds"] == ("gauge", runner.clock.now)
    assert metrics["mirror_last_run_duration_seconds"] == ("gauge", 0)
    assert metrics["mirror_last_run_success"] == ("gauge", 0)
    assert metrics["mirror_downloaded_bytes_total"] == ("counter", first.bytes_downloaded)


def test_unknown_values_are_left_out_and_fractions_kept(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        status = read_status(state, now=0.0)
    metrics = parse_strictly(render_metrics(status))
    assert set(metrics) == {
        "mirror_projects",
        "mirror_files",
        "mirror_bytes",
        "mirror_pending_projects",
        "mirror_failing_projects",
        "mirror_downloaded_bytes_total",
    }
    # A fractional timestamp is written as a float.
    assert status.last_run is None
    text = render_metrics(replace(status, downloaded_bytes_total=0))
    assert "mirror_downloaded_bytes_total 0\n" in text


async def test_metrics_fractional_values_are_written_as_floats(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    upstream.add_release("alpha", "1.0")
    runner.clock.now = 1_000_000.25
    await runner.sync()
    with runner.state() as state:
        text = render_metrics(read_status(state, now=0.0))
    assert "mirror_last_run_timestamp_seconds 1000000.25\n" in text


async def test_sync_writes_the_metrics_file_atomically(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    target = tmp_path / "textfile" / "mirror.prom"
    target.parent.mkdir()
    runner.options = replace(runner.options, metrics_file=target)
    upstream.add_release("alpha", "1.0")
    await runner.sync()
    metrics = parse_strictly(target.read_text(encoding="utf-8"))
    assert metrics["mirror_projects"] == ("gauge", 1)
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["mirror.prom"], "no temp file left"


def test_metrics_file_errors_are_storage_errors(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        with pytest.raises(StorageError, match="cannot write metrics file"):
            write_metrics_file(tmp_path / "absent" / "m.prom", state, now=0.0)
        (tmp_path / "dir.prom").mkdir()
        with pytest.raises(StorageError, match="cannot write metrics file"):
            write_metrics_file(tmp_path / "dir.prom", state, now=0.0)
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left"


async def test_metrics_route_serves_the_text_format(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    app = web.Application()
    app.add_routes(metrics_routes(runner.directory))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 503, "no state store yet"
        upstream.add_release("alpha", "1.0")
        await runner.sync()
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        metrics = parse_strictly(await response.text())
    assert metrics["mirror_projects"] == ("gauge", 1)
