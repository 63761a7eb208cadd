"""``mirror verify``: files, links and tree checked against the state; repair."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName, canonicalize_name

from mirror import verify as verify_module
from mirror.cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PROJECTS_FAILED,
    EXIT_USAGE,
    main,
)
from mirror.errors import LockedError, StateError, StorageError
from mirror.lock import mirror_lock
from mirror.models import PackagePath, Serial
from mirror.state import StateStore, StoredFile
from mirror.storage import FileSystemStorage
from mirror.sync import ProjectFailure, SyncOptions, SyncReport
from mirror.testing import FakeUpstream
from mirror.verify import (
    Problem,
    VerifyOutcome,
    check_mirror,
    render_json,
    render_text,
    summary_line,
    verify,
)
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_matches_upstream

BOTH = frozenset({"html", "json"})


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "1.1")
    upstream.add_release("beta", "0.1", wheel=False)
    upstream.add_release("gamma", "2.0")


@pytest.fixture
async def mirrored(upstream: FakeUpstream, runner: MirrorRunner) -> MirrorRunner:
    seed(upstream)
    assert (await runner.sync()).ok
    return runner


def kinds(outcome: VerifyOutcome) -> list[tuple[str, str | None]]:
    return sorted((p.kind, p.project) for p in outcome.report.problems)


def wheel_of(runner: MirrorRunner, project: str) -> Path:
    return next((runner.web / "packages").rglob(f"{project}-*.whl"))


def relative(runner: MirrorRunner, path: Path) -> str:
    return path.relative_to(runner.web).as_posix()


async def repair(
    runner: MirrorRunner, *, delete_orphans: bool = False, dry_run: bool = False
) -> VerifyOutcome:
    """``verify --repair`` of the mirror, re-syncing through ``runner``."""

    async def resync(names: Sequence[NormalizedName]) -> SyncReport:
        return await runner.sync(list(names))

    return await verify(
        runner.directory,
        formats=BOTH,
        repair=True,
        delete_orphans=delete_orphans,
        dry_run=dry_run,
        resync=resync,
    )


def edit_json(path: Path, change: object) -> None:
    data = json.loads(path.read_bytes())
    assert callable(change)
    change(data)
    path.write_text(json.dumps(data))


async def test_a_mirror_in_step_verifies_clean(mirrored: MirrorRunner) -> None:
    outcome = await verify(mirrored.directory, formats=BOTH, workers=1)
    assert outcome.ok
    assert outcome.report.problems == ()
    assert outcome.report.projects == 3
    # 7 distribution files and the 3 wheels' .metadata sidecars.
    assert outcome.report.files == 10
    assert outcome.report.bytes_hashed == sum(
        p.stat().st_size for p in (mirrored.web / "packages").rglob("*") if p.is_file()
    )
    assert summary_line(outcome).startswith("verify ok: 3 project(s), 10 file(s)")
    assert "no problems" in summary_line(outcome)


async def test_missing_corrupt_orphan_and_temp_files_are_reported_and_repaired(
    mirrored: MirrorRunner, upstream: FakeUpstream
) -> None:
    wheel = wheel_of(mirrored, "alpha")
    wheel.write_bytes(b"x" * wheel.stat().st_size)  # same size, wrong bytes
    sdist = next((mirrored.web / "packages").rglob("beta-0.1.tar.gz"))
    sdist.write_bytes(b"short")
    metadata = Path(f"{wheel_of(mirrored, 'gamma')}.metadata")
    metadata.unlink()
    orphan = mirrored.web / "packages" / "aa" / "bb" / "cc" / "stray-1.0.tar.gz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"stray")
    temp = mirrored.web / "packages" / "aa" / "bb" / "cc" / ".x.whl.abcdefgh.part"
    temp.write_bytes(b"half")
    page_temp = mirrored.web / "simple" / "alpha" / ".index.html.abcdefgh.part"
    page_temp.write_bytes(b"<html")

    found = await verify(mirrored.directory, formats=BOTH)
    assert not found.ok
    assert kinds(found) == [
        ("corrupt", "alpha"),
        ("corrupt", "beta"),
        ("missing", "gamma"),
        ("orphan", None),
        ("temp", None),
        ("temp", None),
    ]
    by_path = {p.path: p for p in found.report.problems}
    assert "sha256" in by_path[relative(mirrored, wheel)].detail
    assert by_path[relative(mirrored, sdist)].detail.startswith("5 bytes on disk, ")
    assert relative(mirrored, metadata) in by_path

    dry = await repair(mirrored, delete_orphans=True, dry_run=True)
    assert not dry.ok
    assert dry.plan.resync == ("alpha", "beta", "gamma")
    assert len(dry.plan.forget) == 3
    assert sorted(dry.plan.delete) == sorted(
        relative(mirrored, p) for p in (orphan, temp, page_temp)
    )
    assert dry.sync is None
    assert orphan.exists(), "a dry run changes nothing"
    assert temp.exists()
    assert "would forget 3 file(s), re-sync 3 project(s), delete 3 file(s)" in summary_line(dry)

    fixed = await repair(mirrored, delete_orphans=True)
    assert fixed.ok, fixed.remaining
    assert fixed.deleted == 3
    assert fixed.sync is not None
    assert fixed.sync.ok
    assert summary_line(fixed).startswith("verify repaired:")
    assert not orphan.exists()
    assert not orphan.parent.exists(), "empty directories go too"
    assert (await verify(mirrored.directory, formats=BOTH)).ok
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_orphans_without_repair_leave_the_other_problems_standing(
    mirrored: MirrorRunner,
) -> None:
    wheel_of(mirrored, "alpha").unlink()
    orphan = mirrored.web / "packages" / "zz" / "orphan.whl"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"o")
    outcome = await verify(mirrored.directory, formats=BOTH, delete_orphans=True)
    assert not orphan.exists()
    assert [p.kind for p in outcome.remaining] == ["missing"]
    assert outcome.sync is None


async def test_pages_that_disagree_with_the_state_are_reported_and_rewritten(
    mirrored: MirrorRunner, upstream: FakeUpstream
) -> None:
    simple = mirrored.web / "simple"

    def corrupt_hashes(page: Any) -> None:
        page["files"][0]["hashes"]["sha256"] = "0" * 64
        page["files"][1]["core-metadata"] = {"sha256": "1" * 64}
        page["files"].append({**page["files"][0], "url": "../../packages/zz/yy/xx/new.whl"})
        page["files"].append({**page["files"][0], "url": "https://elsewhere.example/x.whl"})
        page["files"].append({**page["files"][0], "url": "../../../outside/x.whl"})

    edit_json(simple / "alpha" / "index.v1_json", corrupt_hashes)
    (simple / "alpha" / "index.v1_html").write_bytes(b"<html></html>")
    (simple / "gamma" / "index.html").unlink()
    (simple / "beta" / "index.v1_json").write_bytes(b"{not json")
    (simple / "ghost").mkdir()
    (simple / "ghost" / "index.html").write_text("<html></html>")
    edit_json(
        simple / "index.v1_json",
        lambda root: root["projects"].append({"name": "Phantom", "_last-serial": 1}),
    )
    root_html = simple / "index.html"
    root_html.write_text(root_html.read_text().replace('<a href="gamma/">gamma</a>', ""))

    found = await verify(mirrored.directory, formats=BOTH)
    assert kinds(found) == [
        ("bad-link", "alpha"),
        ("bad-link", "alpha"),
        ("bad-link", "alpha"),
        ("bad-link", "alpha"),
        ("bad-link", "alpha"),
        ("bad-page", "alpha"),
        ("bad-page", "beta"),
        ("no-pages", "gamma"),
        ("no-project", "ghost"),
        ("root-extra", "phantom"),
        ("root-missing", "gamma"),
        # gamma's HTML page is gone and beta's JSON page does not parse: their files
        # are linked by no page of that format.
        ("unlinked", "beta"),
        ("unlinked", "gamma"),
        ("unlinked", "gamma"),
    ]
    details = "\n".join(p.detail for p in found.report.problems)
    assert "which the state does not list" in details
    assert "with sha256 " + "0" * 64 in details
    assert "advertises" in details
    assert "https://elsewhere.example/x.whl" in details
    assert "../../../outside/x.whl" in details

    fixed = await repair(mirrored)
    assert fixed.ok
    assert fixed.plan.rewrite_root
    assert fixed.plan.resync == ("alpha", "beta", "gamma", "ghost", "phantom")
    assert (await verify(mirrored.directory, formats=BOTH)).ok
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_rows_no_page_links_are_reported_unless_the_project_is_queued(
    mirrored: MirrorRunner,
) -> None:
    extra = StoredFile(
        path=PackagePath("packages/ee/ff/gg/alpha-0.9.tar.gz"),
        project=canonicalize_name("alpha"),
        filename="alpha-0.9.tar.gz",
        size=3,
        sha256="a" * 64,
    )
    stray = StoredFile(
        path=PackagePath("packages/ee/ff/hh/nobody-1.0.tar.gz"),
        project=canonicalize_name("nobody"),
        filename="nobody-1.0.tar.gz",
        size=3,
        sha256="b" * 64,
    )
    with mirrored.state() as state:
        state.record_file(extra)
        state.record_file(stray)
    found = await verify(mirrored.directory, formats=BOTH)
    assert kinds(found) == [
        ("missing", "alpha"),
        ("missing", "nobody"),
        ("unlinked", "alpha"),
        ("unlinked", "nobody"),
    ]
    # Queued, both are mid-sync: their rows may lead their pages.
    with mirrored.state() as state:
        state.enqueue(
            {canonicalize_name("alpha"): Serial(1), canonicalize_name("nobody"): Serial(1)},
            now=0,
        )
    queued = await verify(mirrored.directory, formats=BOTH)
    assert kinds(queued) == [("missing", "alpha"), ("missing", "nobody")]


async def test_pages_of_a_queued_project_not_yet_committed_are_not_a_problem(
    mirrored: MirrorRunner,
) -> None:
    (mirrored.web / "simple" / "newcomer").mkdir()
    (mirrored.web / "simple" / "newcomer" / "index.html").write_text("<html></html>")
    edit_json(
        mirrored.web / "simple" / "index.v1_json",
        lambda root: root["projects"].append({"name": "newcomer", "_last-serial": 1}),
    )
    with mirrored.state() as state:
        state.enqueue({canonicalize_name("newcomer"): Serial(1)}, now=0)
    assert (await verify(mirrored.directory, formats=BOTH)).ok


async def test_a_missing_or_broken_root_index_is_reported_and_rewritten(
    mirrored: MirrorRunner, upstream: FakeUpstream
) -> None:
    (mirrored.web / "simple" / "index.v1_json").unlink()
    (mirrored.web / "simple" / "index.html").write_bytes(b"\xff\xfe not utf-8")
    found = await verify(mirrored.directory, formats=BOTH)
    assert [(p.kind, p.path) for p in found.report.problems] == [
        ("bad-page", "simple/index.html"),
        ("no-pages", "simple/index.v1_json"),
    ]
    fixed = await repair(mirrored)
    assert fixed.ok
    assert fixed.plan.resync == ()
    assert fixed.plan.rewrite_root
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_an_html_only_mirror_is_checked_through_its_html_pages(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = SyncOptions(formats=frozenset({"html"}))
    await runner.sync()
    html = frozenset({"html"})
    assert (await verify(runner.directory, formats=html)).ok
    page = runner.web / "simple" / "alpha" / "index.html"
    text = page.read_text()
    first_hash = text.split("#sha256=")[1][:64]
    page.write_text(text.replace(f"#sha256={first_hash}", "", 1))
    (runner.web / "simple" / "alpha" / "index.v1_html").write_text(page.read_text())
    found = await verify(runner.directory, formats=html)
    assert kinds(found) == [("bad-link", "alpha")]
    assert "with sha256 None" in found.report.problems[0].detail


async def test_a_failed_repair_sync_leaves_its_projects_problems_standing(
    mirrored: MirrorRunner,
) -> None:
    wheel_of(mirrored, "alpha").unlink()
    wheel_of(mirrored, "gamma").unlink()

    async def half_failing(names: Sequence[NormalizedName]) -> SyncReport:
        report = await mirrored.sync([n for n in names if n != "alpha"])
        failure = ProjectFailure(
            name=NormalizedName("alpha"), error="boom", attempts=1, next_attempt=0
        )
        return SyncReport(
            serial=report.serial,
            projects_synced=report.projects_synced,
            projects_removed=0,
            failures=(failure,),
            files_downloaded=report.files_downloaded,
            bytes_downloaded=report.bytes_downloaded,
            files_deleted=0,
            pending=1,
            elapsed_seconds=0.0,
        )

    outcome = await verify(mirrored.directory, formats=BOTH, repair=True, resync=half_failing)
    assert not outcome.ok
    assert {p.project for p in outcome.remaining} == {"alpha"}
    assert "repair sync incomplete" in summary_line(outcome)
    with mirrored.state() as state:
        assert state.todo_item(canonicalize_name("alpha")) is not None, "still queued"
    assert kinds(await verify(mirrored.directory, formats=BOTH)) == [
        ("bad-link", "alpha"),
        ("bad-link", "alpha"),
    ], "the forgotten row is gone, so the old page's links are flagged until a sync"


async def test_verify_refuses_without_a_state_store_or_with_the_lock_held(
    mirrored: MirrorRunner, tmp_path: Path
) -> None:
    with pytest.raises(StateError, match="no state store"):
        await verify(tmp_path / "nowhere", formats=BOTH)
    with mirror_lock(mirrored.directory), pytest.raises(LockedError):
        await verify(mirrored.directory, formats=BOTH)
    with pytest.raises(ValueError, match="resync"):
        await verify(mirrored.directory, formats=BOTH, repair=True)


async def test_unreadable_files_and_pages_raise_storage_error(mirrored: MirrorRunner) -> None:
    wheel = wheel_of(mirrored, "alpha")
    wheel.unlink()
    wheel.mkdir()
    with pytest.raises(StorageError, match="cannot read"):
        await verify(mirrored.directory, formats=BOTH)
    wheel.rmdir()
    page = mirrored.web / "simple" / "beta" / "index.v1_json"
    page.unlink()
    page.mkdir()
    async with FileSystemStorage(mirrored.web) as storage:
        with mirrored.state() as state, pytest.raises(StorageError, match="cannot read"):
            await check_mirror(state, storage, formats=BOTH)


async def test_a_mirror_never_written_has_only_its_missing_root(tmp_path: Path) -> None:
    async with FileSystemStorage(tmp_path / "web") as storage:
        with StateStore.open(tmp_path / "mirror.db") as state:
            report = await check_mirror(state, storage, formats=frozenset({"json"}))
    assert [(p.kind, p.path) for p in report.problems] == [("no-pages", "simple/index.v1_json")]


async def test_text_and_json_output_list_every_problem(mirrored: MirrorRunner) -> None:
    wheel_of(mirrored, "alpha").unlink()
    outcome = await verify(mirrored.directory, formats=BOTH)
    text = render_text(outcome)
    assert text.splitlines()[0].startswith("missing packages/")
    assert text.splitlines()[0].endswith("[alpha]: listed but not on disk")
    assert "1 missing; 1 problem(s) remain" in text.splitlines()[-1]
    data = json.loads(render_json(outcome))
    assert data["ok"] is False
    assert data["counts"]["missing"] == 1
    assert data["problems"][0]["kind"] == "missing"
    assert data["plan"] == {"forget": [], "resync": [], "rewrite_root": False, "delete": []}
    assert data["sync_ok"] is None
    assert data["remaining"] == 1
    assert set(data) == {
        "ok",
        "projects",
        "files",
        "bytes_hashed",
        "seconds",
        "counts",
        "problems",
        "dry_run",
        "plan",
        "deleted",
        "sync_ok",
        "remaining",
    }


def test_problems_are_plain_values() -> None:
    problem = Problem(kind="temp", path="x/.y.part", project=None, detail="d")
    assert problem == Problem(kind="temp", path="x/.y.part", project=None, detail="d")


# --- the command line ----------------------------------------------------------------


def write_config(directory: Path, upstream_url: str) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.parent / "verify.conf"
    path.write_text(
        f"[mirror]\ndirectory = {directory}\nupstream = {upstream_url}\n"
        "allow-non-https = true\nretries = 0\n"
    )
    return path


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_exit_codes_0_1_and_repair(
    mirrored: MirrorRunner, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(mirrored.directory, upstream.base_url)
    assert await run_cli("verify", "-c", str(config)) == EXIT_OK
    assert capsys.readouterr().out.startswith("verify ok:")
    wheel_of(mirrored, "gamma").write_bytes(b"bad")
    assert await run_cli("verify", "-c", str(config), "--json") == EXIT_PROJECTS_FAILED
    assert json.loads(capsys.readouterr().out)["counts"]["corrupt"] == 1
    assert await run_cli("verify", "-c", str(config), "--repair", "--dry-run") == (
        EXIT_PROJECTS_FAILED
    )
    assert await run_cli("verify", "-c", str(config), "--repair") == EXIT_OK
    assert "repair sync ok" in capsys.readouterr().out
    await assert_matches_upstream(mirrored.directory, upstream)


async def test_cli_exits_130_when_interrupted(
    mirrored: MirrorRunner, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*args: object, **kwargs: object) -> VerifyOutcome:
        raise KeyboardInterrupt

    monkeypatch.setattr("mirror.verify.verify", interrupted)
    config = write_config(mirrored.directory, upstream.base_url)
    assert await run_cli("verify", "-c", str(config)) == EXIT_INTERRUPTED


async def test_cli_exit_codes_2_3_and_4(
    mirrored: MirrorRunner, upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = write_config(mirrored.directory, upstream.base_url)
    assert await run_cli("verify", "-c", str(tmp_path / "missing.conf")) == EXIT_USAGE
    with mirror_lock(mirrored.directory):
        assert await run_cli("verify", "-c", str(config)) == EXIT_LOCKED
    elsewhere = write_config(tmp_path / "empty" / "mirror", upstream.base_url)
    assert await run_cli("verify", "-c", str(elsewhere)) == EXIT_ERROR


async def test_the_tree_is_judged_in_batches_and_odd_names_are_orphans(
    mirrored: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "_TREE_BATCH_FILES", 2)
    odd = mirrored.web / "packages" / "aa" / "bb" / "cc" / "odd\x7fname.whl"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(b"x")
    ghost = mirrored.web / "simple" / "ghost" / "index.html"
    ghost.parent.mkdir()
    ghost.write_text("<html></html>")
    found = await verify(mirrored.directory, formats=BOTH)
    assert [(p.kind, p.path) for p in found.report.problems] == [
        ("orphan", relative(mirrored, odd)),
        ("no-project", "simple/ghost"),
    ]
