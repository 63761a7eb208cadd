"""``mirror delete``: projects taken out of the mirror (pages, files, rows, root index)
and kept out of later syncs until ``--undo``, on disk and in an S3 bucket."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror import app
from mirror.cli import EXIT_OK, EXIT_USAGE, main
from mirror.config import Config
from mirror.deletion import blocklist_lines, delete_projects
from mirror.models import Serial
from mirror.state import StateStore
from mirror.storage import FileSystemStorage
from mirror.storage.s3 import S3Storage
from mirror.testing import FakeUpstream
from mirror.verify import verify
from tests.harness import MirrorRunner, write_config
from tests.mirrorcheck import assert_consistent, files_on_disk, root_html_links
from tests.s3support import download_tree, settings_of, write_s3_config
from tests.test_s3_sync import on_s3

BOTH = frozenset({"html", "json"})
ALPHA = NormalizedName("alpha")


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "1.1")
    upstream.add_release("beta", "0.1", wheel=False)
    upstream.add_release("gamma", "2.0")


def root_names(web: Path) -> list[str]:
    root = json.loads((web / "simple" / "index.v1_json").read_bytes())
    return [project["name"] for project in root["projects"]]


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_a_deleted_project_is_gone_verifies_clean_and_stays_out_after_upstream_changes(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    assert (await runner.sync()).ok
    alpha_files = {name for name in files_on_disk(runner.directory) if name.startswith("alpha")}
    assert alpha_files
    lines = await app.delete(Config(directory=runner.directory), [ALPHA], reason="ticket 42")
    # Two releases of a wheel and an sdist, the wheels' .metadata.
    assert lines[0].startswith("deleted alpha: 6 file(s) (2.")
    assert "mirror delete --undo alpha" in lines[1]
    assert lines[-3:] == ["  [blocklist]", "  packages =", "      alpha"]

    web = runner.web
    assert not (web / "simple" / "alpha").exists()
    assert not files_on_disk(runner.directory) & alpha_files
    assert root_names(web) == ["beta", "gamma"]
    assert [name for name, _ in root_html_links(web)] == ["beta", "gamma"]
    assert (web / "simple" / "index.v1_html").read_bytes() == (
        web / "simple" / "index.html"
    ).read_bytes()
    assert_consistent(runner.directory)
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()
    with runner.state() as state:
        assert state.project(ALPHA) is None
        assert state.project_files(ALPHA) == {}
        assert state.totals().projects == 2
        assert state.file_history(ALPHA) == []
        # Mirrors that follow this one delete it too.
        assert state.journal_since(Serial(0))[-1].action == "remove project"

    # Upstream moves on: a new release of it, and a new project.
    upstream.add_release("Alpha", "2.0")
    upstream.add_release("delta", "1.0")
    report = await runner.sync()
    assert report.ok
    assert not (web / "simple" / "alpha").exists()
    assert root_names(web) == ["beta", "delta", "gamma"]
    assert not any(name.startswith("alpha") for name in files_on_disk(runner.directory))
    with runner.state() as state:
        assert state.todo_count() == 0

    status = await app.status(Config(directory=runner.directory))
    assert "kept out:         1 project(s)\n  alpha: since " in status
    assert status.rstrip().endswith("ticket 42")
    document = json.loads(await app.status(Config(directory=runner.directory), as_json=True))
    assert [(e["name"], e["display_name"], e["reason"]) for e in document["excluded"]] == [
        ("alpha", "Alpha", "ticket 42")
    ]


async def test_undo_lets_the_project_back_and_the_next_sync_mirrors_it(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    await runner.sync()
    config = Config(directory=runner.directory)
    await app.delete(config, [ALPHA])
    assert await app.delete(
        config, [ALPHA, NormalizedName("nope")], undo=True, clock=runner.clock
    ) == [
        "alpha may come back: queued for the next sync",
        "nope was not kept out",
    ]
    assert await app.delete(config, []) == ["no project is kept out by mirror delete"]
    report = await runner.sync()
    assert report.ok
    assert report.projects_synced == 1
    assert root_names(runner.web) == ["Alpha", "beta", "gamma"]
    assert (runner.web / "simple" / "alpha" / "index.v1_json").is_file()
    assert_consistent(runner.directory)


async def test_an_excluded_project_asked_for_by_name_is_skipped_with_a_warning(
    upstream: FakeUpstream, runner: MirrorRunner, caplog: pytest.LogCaptureFixture
) -> None:
    seed(upstream)
    await app.delete(Config(directory=runner.directory), [ALPHA])
    [listed] = await app.delete(Config(directory=runner.directory), [])
    assert listed.startswith("alpha (alpha): since ")
    assert listed.endswith(": deleted with mirror delete")
    report = await runner.sync(["alpha", "beta"])
    assert report.projects_synced == 1
    assert not (runner.web / "simple" / "alpha").exists()
    assert "alpha is kept out by `mirror delete`" in caplog.text
    # Nor does the first full sync take it from the listing.
    await runner.sync()
    assert root_names(runner.web) == ["beta", "gamma"]


async def test_a_stopped_deletion_is_finished_by_the_next_sync(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    await runner.sync()
    with runner.state() as state:
        # What a `mirror delete` killed right after its first transaction leaves.
        state.exclude({ALPHA: "Alpha"}, reason="killed", now=0.0)
        assert state.held_exclusions() == [ALPHA]
    report = await runner.sync()
    assert report.ok
    assert not (runner.web / "simple" / "alpha").exists()
    assert root_names(runner.web) == ["beta", "gamma"]
    assert [name for name, _ in root_html_links(runner.web)] == ["beta", "gamma"]
    with runner.state() as state:
        assert state.held_exclusions() == []
    outcome = await verify(runner.directory, formats=BOTH, workers=1)
    assert outcome.report.problems == ()


async def test_deletion_unlinks_files_keep_removed_retains_and_forgets_their_history(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    runner.options = dataclasses.replace(runner.options, keep_removed=30 * 86400.0)
    seed(upstream)
    await runner.sync()
    upstream.remove_file("Alpha", "alpha-1.0.tar.gz")
    await runner.sync()
    retained = list((runner.web / "packages").rglob("alpha-1.0.tar.gz"))
    assert retained, "kept on disk for past views"
    async with FileSystemStorage(runner.web) as storage:
        with runner.state() as state:
            deleted = await delete_projects(
                state=state, storage=storage, names=[ALPHA, ALPHA], formats=BOTH, now=1.0
            )
            assert state.garbage() == []
            assert state.file_history(ALPHA) == []
    assert [(d.name, d.held) for d in deleted] == [(ALPHA, True)]
    assert not retained[0].exists()
    assert not any(name.startswith("alpha") for name in files_on_disk(runner.directory))


async def test_a_project_never_mirrored_is_kept_out_from_now_on(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    lines = await app.delete(Config(directory=runner.directory), [ALPHA])
    assert lines[0] == "alpha was not mirrored; kept out of later syncs"
    await runner.sync()
    assert root_names(runner.web) == ["beta", "gamma"]


def test_the_queue_refuses_excluded_projects(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        state.exclude({ALPHA: "Alpha"}, reason="r", now=0.0)
        state.exclude({ALPHA: "ALPHA"}, reason="again", now=5.0)
        state.enqueue({ALPHA: Serial(3), NormalizedName("beta"): Serial(4)}, now=0.0)
        assert [item.name for item in state.due(1.0)] == ["beta"]
        assert [(e.display_name, e.reason) for e in state.exclusions()] == [("Alpha", "r")]
        assert state.excluded_names() == {ALPHA}
        assert state.lift_exclusions([ALPHA, ALPHA]) == [ALPHA]
        assert state.excluded_names() == frozenset()


def test_the_blocklist_lines_name_each_project() -> None:
    assert blocklist_lines(["a", "b"]) == ["[blocklist]", "packages =", "    a", "    b"]


async def test_the_command_line_deletes_lists_and_undoes(
    upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(upstream)
    config = str(write_config(tmp_path, upstream.base_url))
    assert await run_cli("sync", "-q", "-c", config) == EXIT_OK
    capsys.readouterr()
    assert await run_cli("delete", "-q", "-c", config, "GAMMA", "--reason", "DMCA") == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("deleted gamma: ")
    assert "  packages =\n      gamma\n" in out
    assert await run_cli("delete", "-q", "-c", config, "--list") == EXIT_OK
    assert capsys.readouterr().out.startswith("gamma (gamma): since ")
    assert not (tmp_path / "mirror" / "web" / "simple" / "gamma").exists()
    assert await run_cli("delete", "-q", "-c", config, "--undo", "gamma") == EXIT_OK
    assert "gamma may come back" in capsys.readouterr().out
    assert await run_cli("delete", "-q", "-c", config, "--list", "gamma") == EXIT_USAGE
    assert await run_cli("delete", "-q", "-c", config, "--undo") == EXIT_USAGE
    assert await run_cli("delete", "-q", "-c", config, "not a name!") == EXIT_USAGE
    assert await run_cli("sync", "-q", "-c", config) == EXIT_OK
    assert (tmp_path / "mirror" / "web" / "simple" / "gamma" / "index.html").is_file()


async def test_deletion_in_the_bucket_removes_objects_and_keeps_the_project_out(
    upstream: FakeUpstream,
    runner: MirrorRunner,
    s3_storage: S3Storage,
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    seed(upstream)
    on_s3(runner, s3_storage)
    assert (await runner.sync()).ok
    config = write_s3_config(tmp_path, upstream.base_url, s3_storage, moto_endpoint)
    assert await run_cli("delete", "-q", "-c", str(config), "alpha") == EXIT_OK
    # The runner's mirror directory is the config's: the state store is shared.
    assert runner.directory == tmp_path / "mirror"
    assert not await s3_storage.exists("simple/alpha/index.html")
    copied = await download_tree(s3_storage, runner.web)
    assert not [path for path in copied if "alpha" in path]
    assert root_names(runner.web) == ["beta", "gamma"]
    assert_consistent(runner.directory)
    outcome = await verify(runner.directory, formats=BOTH, s3=s3_storage)
    assert outcome.report.problems == ()
    upstream.add_release("Alpha", "2.0")
    assert (await runner.sync()).ok
    assert not await s3_storage.exists("simple/alpha/index.v1_json")
    status = await app.status(
        Config(directory=runner.directory, s3=settings_of(s3_storage, moto_endpoint))
    )
    assert "  alpha: since " in status
