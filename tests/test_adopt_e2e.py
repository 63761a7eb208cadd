"""``mirror adopt`` of a real bandersnatch 8.2 mirror, made in the test from the fake
upstream over loopback, then ``mirror sync`` carrying on from its serial."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from urllib.parse import unquote

import pytest
from packaging.utils import canonicalize_name

from benchmarks.bandersnatch import write_config
from mirror.cli import main
from mirror.state import ADOPT_RECONCILE_KEY, StateStore
from mirror.testing import FakeUpstream
from tests.mirrorcheck import assert_consistent, assert_matches_upstream

pytestmark = pytest.mark.slow


async def run_bandersnatch(script: Path, conf: Path, *, ok: bool = True) -> None:
    process = await asyncio.create_subprocess_exec(
        str(script),
        "-c",
        str(conf),
        "mirror",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if ok:
        assert process.returncode == 0, err.decode()[-2000:]


def downloads(upstream: FakeUpstream, since: int) -> list[str]:
    """The file names fetched from /packages/ since request ``since``."""
    return sorted(
        unquote(path.rsplit("/", 1)[-1])
        for method, path in upstream.request_log[since:]
        if method == "GET" and path.startswith("/packages/")
    )


def page_links(web: Path, name: str) -> dict[str, Path]:
    data = json.loads((web / "simple" / name / "index.v1_json").read_bytes())
    return {
        f["filename"]: (web / "simple" / name / unquote(f["url"])).resolve() for f in data["files"]
    }


def file_of(directory: Path, filename: str) -> Path:
    (found,) = (directory / "web" / "packages").rglob(filename)
    return found


async def test_adopt_a_real_bandersnatch_mirror_then_sync(
    bandersnatch_script: Path, upstream: FakeUpstream, tmp_path: Path
) -> None:
    for project, version in [
        ("alpha", "1.0"),
        ("alpha", "1.1"),
        ("Beta.Pkg", "2.0"),
        ("gamma", "0.1"),
        ("doomed", "1.0"),
        ("shrinking", "1.0"),
        ("shrinking", "2.0"),
    ]:
        upstream.add_release(project, version)
    directory = tmp_path / "pypi"
    bconf = write_config(
        tmp_path / "bandersnatch.conf", directory=directory, master=upstream.base_url, workers=2
    )
    await run_bandersnatch(bandersnatch_script, bconf)
    web = directory / "web"
    assert (directory / "status").read_text().strip() == str(upstream.serial)

    # Upstream deletions bandersnatch misses: its serial moves past them (as its
    # cleanup_todo and stale serials do) while its pages and files stay.
    upstream.remove_project("doomed")
    upstream.remove_file("shrinking", "shrinking-1.0.tar.gz")
    (directory / "status").write_text(str(upstream.serial))
    serial = upstream.serial
    # An unfinished run: bandersnatch syncs alpha 1.2 but fails on late (its files
    # answer 500), so it keeps its todo (target serial, late still owed) and its status.
    upstream.add_release("alpha", "1.2")
    upstream.add_release("late", "1.0")
    for filename in ["late-1.0.tar.gz", "late-1.0-py3-none-any.whl"]:
        path = upstream.file_url("late", filename).split("/", 3)[3]
        upstream.fail_next(f"/{path}", status=500, times=100)
    await run_bandersnatch(bandersnatch_script, bconf, ok=False)
    todo = (directory / "todo").read_text().split("\n")
    assert todo[0] == str(upstream.serial)
    assert [line.split()[0] for line in todo[1:] if line] == ["late"]
    assert (directory / "status").read_text().strip() == str(serial)
    assert "alpha-1.2.tar.gz</a>" in (web / "simple" / "alpha" / "index.html").read_text()
    assert [m for m, p in upstream.request_log if "/late-1.0" in p]  # it did try
    upstream.clear_faults()
    # The disk's troubles: a file gone, a file's bytes altered, a file nothing links.
    file_of(directory, "beta_pkg-2.0.tar.gz").unlink()
    corrupt = file_of(directory, "gamma-0.1-py3-none-any.whl")
    corrupt.write_bytes(b"\0" * corrupt.stat().st_size)
    stray = web / "packages" / "ab" / "cd" / ("e" * 60) / "stray-0.1.tar.gz"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left by an old run")
    intact = {
        p.name
        for p in (web / "packages").rglob("*")
        if p.is_file() and p.name not in {"beta_pkg-2.0.tar.gz", corrupt.name, stray.name}
    }

    conf = tmp_path / "mirror.conf"
    before = len(upstream.request_log)
    code = await asyncio.to_thread(main, ["adopt", "-c", str(conf), str(bconf), "--dry-run"])
    assert code == 0
    assert not conf.exists()
    assert not (directory / "mirror.db").exists()

    code = await asyncio.to_thread(main, ["adopt", "-c", str(conf), str(bconf)])
    assert code == 0
    assert len(upstream.request_log) == before, "adoption asks upstream nothing"
    text = conf.read_text()
    assert f"directory = {directory}" in text
    assert f"upstream = {upstream.base_url}" in text
    assert "[mirror] global-timeout = 36000" in text

    # Right after adoption: pages in our format linking only intact files, the serial
    # bandersnatch reached, the troubled projects and the todo queued.
    assert_consistent(directory)
    assert "beta_pkg-2.0.tar.gz" not in page_links(web, "beta-pkg")
    assert corrupt.name not in page_links(web, "gamma")
    assert "shrinking-1.0.tar.gz" in page_links(web, "shrinking")  # not known yet
    with StateStore.open(directory / "mirror.db") as state:
        assert state.mirror_serial() == serial
        assert state.get_meta(ADOPT_RECONCILE_KEY) == str(serial)
        queued = {item.name for item in state.due(now=1e12)}
        assert queued == {"late", "beta-pkg", "gamma"}
        assert {f.filename for f in state.iter_files()} == {
            n for n in intact if not n.endswith(".metadata")
        }
        # Files no page links now (the stray one, the corrupt one and its sidecar):
        # the sync collects them after its downloads.
        assert {p.rsplit("/", 1)[-1] for p in state.garbage()} == {
            stray.name,
            corrupt.name,
            f"{corrupt.name}.metadata",
        }
        row = state.project(canonicalize_name("Beta.Pkg"))
        assert row is not None
        assert row.display_name == "Beta.Pkg"

    # A second adoption refuses: the state is ours now.
    assert await asyncio.to_thread(main, ["adopt", "-c", str(conf), str(bconf)]) == 4

    before = len(upstream.request_log)
    code = await asyncio.to_thread(main, ["sync", "-c", str(conf)])
    assert code == 0
    # Intact files are never downloaded again: only the missing, the corrupt and new.
    assert downloads(upstream, before) == sorted(
        [
            "beta_pkg-2.0.tar.gz",
            "gamma-0.1-py3-none-any.whl",
            "late-1.0.tar.gz",
            "late-1.0-py3-none-any.whl",
        ]
    )
    # Exactly upstream: doomed removed, shrinking's deleted file collected, the stray
    # file gone, every page ours.
    await assert_matches_upstream(directory, upstream)
    assert not stray.exists()
    assert not (web / "simple" / "doomed").exists()
    with StateStore.open(directory / "mirror.db") as state:
        assert state.get_meta(ADOPT_RECONCILE_KEY) == ""
        assert state.mirror_serial() == upstream.serial
    # mirror verify agrees: every row, page and link in step, no orphan left.
    assert await asyncio.to_thread(main, ["verify", "-c", str(conf)]) == 0
    # A file adopted is the very file bandersnatch wrote (not replaced).
    wheel = file_of(directory, "alpha-1.0-py3-none-any.whl")
    assert (
        hashlib.sha256(wheel.read_bytes()).hexdigest()
        in (web / "simple" / "alpha" / "index.html").read_text()
    )
