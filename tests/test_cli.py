"""The ``mirror`` command line, run in-process against the fake upstream on loopback.

``main()`` calls ``asyncio.run``, so it runs in a worker thread with its own event
loop while the test's loop keeps serving the fake upstream.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirror.cli import (
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PROJECTS_FAILED,
    EXIT_USAGE,
    main,
)
from mirror.lock import mirror_lock
from mirror.testing import FakeUpstream
from tests.harness import write_config
from tests.mirrorcheck import assert_consistent


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def seeded(upstream: FakeUpstream) -> FakeUpstream:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("beta", "2.0", requires_dist=["Alpha"])
    return upstream


async def test_sync_brings_the_mirror_in_step_and_prints_one_summary_line(
    seeded: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, seeded.base_url)
    assert await run_cli("sync", "-c", str(config)) == EXIT_OK
    web = tmp_path / "mirror" / "web"
    root = json.loads((web / "simple" / "index.v1_json").read_bytes())
    assert [p["name"] for p in root["projects"]] == ["Alpha", "beta"]
    assert root["meta"]["_last-serial"] >= seeded.serial
    assert_consistent(tmp_path / "mirror")
    summary = [line for line in capsys.readouterr().err.splitlines() if "sync done" in line]
    assert len(summary) == 1
    # Four distribution files; the two wheels' .metadata files come from the wheels.
    assert "2 project(s) synced, 0 removed, 0 failed; 4 file(s)" in summary[0]
    assert f"serial {seeded.serial}" in summary[0]


async def test_project_option_syncs_only_the_named_projects(
    seeded: FakeUpstream, tmp_path: Path
) -> None:
    config = write_config(tmp_path, seeded.base_url)
    assert await run_cli("sync", "-q", "-c", str(config), "--project", "ALPHA") == EXIT_OK
    simple = tmp_path / "mirror" / "web" / "simple"
    assert sorted(p.name for p in simple.iterdir() if p.is_dir()) == ["alpha"]


async def test_a_second_run_is_refused_while_the_lock_is_held(
    seeded: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, seeded.base_url)
    directory = tmp_path / "mirror"
    directory.mkdir()
    with mirror_lock(directory):
        assert await run_cli("sync", "-c", str(config)) == EXIT_LOCKED
    assert "another mirror run holds" in capsys.readouterr().err
    assert not (directory / "web").exists(), "the refused run wrote nothing"
    # Once the lock is free, the same command runs.
    assert await run_cli("sync", "-q", "-c", str(config)) == EXIT_OK


async def test_a_failing_project_gives_exit_code_1_and_the_rest_lands(
    seeded: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded.add_release("broken", "1.0")
    seeded.fail_next("/simple/broken/", status=500, times=100)
    config = write_config(tmp_path, seeded.base_url)
    assert await run_cli("sync", "-c", str(config)) == EXIT_PROJECTS_FAILED
    err = capsys.readouterr().err
    assert "project broken failed" in err
    assert "sync incomplete: 2 project(s) synced, 0 removed, 1 failed" in err
    assert (tmp_path / "mirror" / "web" / "simple" / "alpha" / "index.html").exists()


async def test_an_unreachable_upstream_gives_exit_code_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeUpstream() as gone:
        url = gone.base_url
    # The fake has stopped: nothing listens on its port any more.
    config = write_config(tmp_path, url)
    assert await run_cli("sync", "-c", str(config)) == EXIT_ERROR
    assert "sync failed:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"workers": "many"}, "[mirror] workers"),
        ({"colour": "blue"}, "[mirror] colour"),
    ],
)
async def test_a_bad_config_gives_exit_code_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, str], expected: str
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", **extra)
    assert await run_cli("sync", "-c", str(config)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert expected in err
    assert "Traceback" not in err


async def test_a_missing_config_file_gives_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("sync", "-c", str(tmp_path / "nope.conf")) == EXIT_USAGE
    assert "nope.conf" in capsys.readouterr().err


async def test_an_invalid_project_name_gives_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert await run_cli("sync", "-c", str(config), "--project", "not a name!") == EXIT_USAGE
    assert "'not a name!' is not a valid project name" in capsys.readouterr().err


async def test_an_uncreatable_directory_gives_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    config = tmp_path / "c.conf"
    config.write_text(
        f"[mirror]\ndirectory = {tmp_path / 'file' / 'mirror'}\n"
        "upstream = http://127.0.0.1:9\nallow-non-https = true\n"
    )
    assert await run_cli("sync", "-c", str(config)) == EXIT_USAGE
    assert "[mirror] directory" in capsys.readouterr().err


def test_python_dash_m_mirror_runs_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("mirror ")
