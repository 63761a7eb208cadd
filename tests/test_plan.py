"""The plan of one project's sync: a table of (upstream files, recorded files) → plan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from packaging.utils import NormalizedName

from mirror.models import DistFile, PackagePath, ProjectDetail, ProjectStatus, Serial
from mirror.plan import plan_project

SHA = "a" * 64
OTHER = "b" * 64
META = "c" * 64
NAME = NormalizedName("demo")


@dataclass(frozen=True)
class Row:
    """A recorded file (what the plan reads of a ``StoredFile``)."""

    sha256: str
    size: int = 10
    metadata_sha256: str | None = None
    metadata_size: int | None = None
    provenance_sha256: str | None = None
    provenance_size: int | None = None


def dist(filename: str, *, sha256: str = SHA, metadata: str | None = None) -> DistFile:
    return DistFile(
        filename=filename,
        url=f"https://files.example/packages/ab/cd/{filename}",
        path=PackagePath(f"packages/ab/cd/{filename}"),
        sha256=sha256,
        size=10,
        core_metadata=metadata is not None,
        core_metadata_sha256=metadata,
    )


def detail(*files: DistFile, display_name: str | None = None) -> ProjectDetail:
    return ProjectDetail(
        name=NAME, serial=Serial(7), files=files, versions=("1.0",), display_name=display_name
    )


WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"


def path(filename: str) -> PackagePath:
    return PackagePath(f"packages/ab/cd/{filename}")


@pytest.mark.parametrize(
    ("files", "recorded", "fetch", "adopt", "derive", "publish", "delete"),
    [
        pytest.param((dist(SDIST),), {}, [SDIST], [SDIST], [], [], [], id="new file"),
        pytest.param(
            (dist(SDIST),), {path(SDIST): Row(SHA)}, [], [], [], [SDIST], [], id="in step"
        ),
        pytest.param(
            (dist(SDIST, sha256=OTHER),),
            {path(SDIST): Row(SHA)},
            [SDIST],
            [SDIST],
            [],
            [],
            [SDIST],
            id="changed upstream: fetched again, not published until it is",
        ),
        pytest.param(
            (dist(WHEEL, metadata=META),),
            {},
            [WHEEL],
            [WHEEL],
            [WHEEL],
            [],
            [],
            id="new wheel with .metadata: derivable",
        ),
        pytest.param(
            (dist(WHEEL, metadata=META),),
            {path(WHEEL): Row(SHA)},
            [WHEEL],
            [],
            [WHEEL],
            [WHEEL],
            [],
            id="recorded wheel missing its .metadata: only the sidecar",
        ),
        pytest.param(
            (dist(WHEEL, metadata=META),),
            {path(WHEEL): Row(SHA, metadata_sha256=META)},
            [],
            [],
            [],
            [WHEEL],
            [],
            id="wheel and sidecar in step",
        ),
        pytest.param(
            (dist(SDIST),),
            {path(SDIST): Row(SHA), path(WHEEL): Row(SHA)},
            [],
            [],
            [],
            [SDIST],
            [WHEEL],
            id="a file upstream dropped is deleted",
        ),
        pytest.param(
            (),
            {path(SDIST): Row(SHA)},
            [],
            [],
            [],
            [],
            [SDIST],
            id="no files left",
        ),
    ],
)
def test_plan_fetches_publishes_and_deletes(  # noqa: PLR0917  # one column per argument
    files: tuple[DistFile, ...],
    recorded: dict[PackagePath, Row],
    fetch: list[str],
    adopt: list[str],
    derive: list[str],
    publish: list[str],
    delete: list[str],
) -> None:
    plan = plan_project(detail(*files), recorded)
    assert [f.dist.filename for f in plan.fetch] == fetch
    assert [f.filename for f in plan.adopt] == adopt
    assert [f.dist.filename for f in plan.fetch if f.derive_metadata] == derive
    assert [f.filename for f in plan.publish.files] == publish
    assert plan.keep == {path(name) for name in publish}
    assert plan.delete == {path(name) for name in delete}


def test_an_sdist_with_metadata_is_not_derived() -> None:
    plan = plan_project(detail(dist(SDIST, metadata=META)), {})
    assert [(f.derive_metadata, f.fetch_metadata) for f in plan.fetch] == [(False, True)]


def test_expected_paths_name_files_and_sidecars_to_fetch() -> None:
    plan = plan_project(detail(dist(WHEEL, metadata=META), dist(SDIST)), {})
    assert plan.expected == (path(WHEEL), path(SDIST), PackagePath(f"{path(WHEEL)}.metadata"))


def test_published_files_advertise_the_metadata_hash_the_mirror_verified() -> None:
    recorded = {path(WHEEL): Row(SHA, metadata_sha256=META), path(SDIST): Row(SHA)}
    plan = plan_project(detail(dist(WHEEL, metadata=OTHER), dist(SDIST, metadata=META)), recorded)
    assert [(f.core_metadata, f.core_metadata_sha256) for f in plan.publish.files] == [
        (True, META),
        (False, None),
    ]
    assert plan.publish.serial == 7
    assert plan.publish.versions == ("1.0",)


@pytest.mark.parametrize(
    ("upstream", "queued", "recorded", "expected"),
    [
        ("Demo", "DEMO", "demo", "Demo"),
        (None, "DEMO", "demo", "DEMO"),
        (None, None, "Demo", "Demo"),
        (None, "", "Demo", "Demo"),
        (None, None, None, None),
    ],
)
def test_display_name_comes_from_upstream_then_the_queue_then_the_record(
    upstream: str | None, queued: str | None, recorded: str | None, expected: str | None
) -> None:
    plan = plan_project(
        detail(display_name=upstream),
        {},
        queued_display_name=queued,
        recorded_display_name=recorded,
    )
    assert plan.display_name == expected


# --- the cooldown and quarantine ------------------------------------------------------

LINE = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_cooldown_holds_back_files_uploaded_after_the_line_but_keeps_them() -> None:
    old = replace(dist(SDIST), upload_time=LINE - timedelta(days=1))
    new = replace(dist("demo-2.0.tar.gz"), upload_time=LINE + timedelta(seconds=1))
    untimed = replace(dist("demo-3.0.tar.gz"), upload_time=None)
    upstream = replace(detail(old, new, untimed), versions=("1.0", "2.0", "3.0"))
    recorded = {path(f.filename): Row(SHA) for f in (old, new, untimed)}
    plan = plan_project(upstream, recorded, uploaded_before=LINE)
    # A file without an upload time is published at once.
    assert [f.filename for f in plan.publish.files] == [SDIST, "demo-3.0.tar.gz"]
    assert [f.filename for f in plan.held] == ["demo-2.0.tar.gz"]
    assert plan.publish.versions == ("1.0", "3.0")
    assert plan.keep == set(recorded)
    assert plan.delete == frozenset()
    # Not yet on disk: fetched at once all the same.
    fresh = plan_project(upstream, {}, uploaded_before=LINE)
    assert len(fresh.fetch) == 3
    # No line: everything is published, as without a cooldown.
    assert plan_project(upstream, recorded).held == ()


def test_a_quarantined_project_publishes_and_fetches_nothing_whatever_the_cooldown() -> None:
    quarantined = replace(detail(dist(SDIST)), status=ProjectStatus(status="quarantined"))
    plan = plan_project(quarantined, {path(SDIST): Row(SHA)})
    assert plan.publish.files == ()
    assert plan.fetch == ()
    assert plan.held == ()
    assert plan.delete == {path(SDIST)}
