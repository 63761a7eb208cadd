"""Mirrors that follow their filters: the sync engine against the fake upstream."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from mirror.filters import FilterSet, load_filters
from mirror.filters.dryrun import explain
from mirror.testing import FakeUpstream, make_wheel
from mirror.upstream import Upstream, UpstreamSettings
from tests.harness import MirrorRunner, no_sleep
from tests.mirrorcheck import assert_consistent, files_on_disk, published_files


def filters(text: str) -> FilterSet:
    """Filters from INI-like ``[section]`` blocks of ``key = value`` lines."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    key = ""
    for line in text.strip().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif line.startswith(" ") and key:
            current[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition("=")
            key = key.strip()
            current[key] = value.strip()
    return load_filters(sections)


def use(runner: MirrorRunner, filter_set: FilterSet) -> None:
    runner.options = replace(runner.options, filters=filter_set)


def seed(upstream: FakeUpstream) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "2.0rc1")
    upstream.add_release("Alpha", "2.0")
    upstream.add_release("beta", "0.1")
    upstream.add_release("gamma", "3.0")


def mirrored_projects(runner: MirrorRunner) -> set[str]:
    root = json.loads((runner.web / "simple" / "index.v1_json").read_bytes())
    return {p["name"] for p in root["projects"]}


async def test_an_allowlist_mirror_holds_only_the_allowed_projects_and_versions(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    use(runner, filters("[plugins]\nenabled = allowlist\n[allowlist]\npackages = alpha>=2\n beta"))
    report = await runner.sync()
    assert report.ok
    assert mirrored_projects(runner) == {"Alpha", "beta"}
    # 2.0rc1 comes before 2 in PEP 440 order, so >=2 leaves it out.
    assert set(published_files(runner.web, "alpha")) == {
        "alpha-2.0.tar.gz",
        "alpha-2.0-py3-none-any.whl",
    }
    page = json.loads((runner.web / "simple" / "alpha" / "index.v1_json").read_bytes())
    assert page["versions"] == ["2.0"]
    on_disk = files_on_disk(runner.directory)
    assert not any(name.startswith(("gamma", "alpha-1.0", "alpha-2.0rc1")) for name in on_disk)
    assert not (runner.web / "simple" / "gamma").exists()
    assert_consistent(runner.directory)


async def test_a_first_allowlist_sync_never_reads_the_full_listing(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    use(runner, filters("[plugins]\nenabled = allowlist\n[allowlist]\npackages = beta"))
    await runner.sync()
    requests = [path for _, path in upstream.request_log]
    # One XML-RPC call (changelog_last_serial); an unfiltered first sync makes two,
    # the second being list_packages_with_serial.
    assert requests.count("/pypi") == 1
    assert "/simple/gamma/" not in requests
    with runner.state() as state:
        assert state.todo_count() == 0
        assert [row.name for row in state.iter_projects()] == ["beta"]


async def test_changelog_entries_for_excluded_projects_are_not_queued(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    use(runner, filters("[plugins]\nenabled = blocklist_project\n[blocklist]\npackages = gamma"))
    await runner.sync()
    upstream.add_release("gamma", "4.0")
    upstream.request_log.clear()
    report = await runner.sync()
    assert report.projects_synced == 0
    assert [path for _, path in upstream.request_log] == ["/pypi"]
    assert mirrored_projects(runner) == {"Alpha", "beta"}


async def test_a_filter_change_shrinks_and_then_grows_the_mirror(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    await runner.sync()
    assert mirrored_projects(runner) == {"Alpha", "beta", "gamma"}

    use(
        runner,
        filters(
            "[plugins]\nenabled = blocklist prerelease\n[blocklist]\npackages = gamma\n"
            " alpha<2\n[filter_prerelease]"
        ),
    )
    report = await runner.sync()
    assert report.ok
    assert mirrored_projects(runner) == {"Alpha", "beta"}
    assert not (runner.web / "simple" / "gamma").exists()
    on_disk = files_on_disk(runner.directory)
    assert not any(name.startswith(("gamma", "alpha-1.0", "alpha-2.0rc1")) for name in on_disk)
    assert set(published_files(runner.web, "alpha")) == {
        "alpha-2.0.tar.gz",
        "alpha-2.0-py3-none-any.whl",
    }
    assert_consistent(runner.directory)

    # Unchanged filters: the next run costs one changelog call again.
    upstream.request_log.clear()
    await runner.sync()
    assert [path for _, path in upstream.request_log] == ["/pypi"]

    use(runner, FilterSet())
    report = await runner.sync()
    assert report.ok
    assert mirrored_projects(runner) == {"Alpha", "beta", "gamma"}
    assert "alpha-1.0.tar.gz" in published_files(runner.web, "alpha")
    assert "gamma-3.0.tar.gz" in files_on_disk(runner.directory)
    assert_consistent(runner.directory)


async def test_a_grown_allowlist_queues_the_newly_allowed_projects(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    use(runner, filters("[plugins]\nenabled = allowlist\n[allowlist]\npackages = beta"))
    await runner.sync()
    use(runner, filters("[plugins]\nenabled = allowlist\n[allowlist]\npackages = beta\n gamma"))
    await runner.sync()
    assert mirrored_projects(runner) == {"beta", "gamma"}
    use(runner, filters("[plugins]\nenabled = allowlist\n[allowlist]\npackages = gamma"))
    report = await runner.sync()
    assert report.projects_removed == 1
    assert mirrored_projects(runner) == {"gamma"}
    assert not any(name.startswith("beta") for name in files_on_disk(runner.directory))
    assert_consistent(runner.directory)


async def test_project_size_and_file_filters_apply_before_downloading(
    upstream: FakeUpstream, runner: MirrorRunner, caplog: pytest.LogCaptureFixture
) -> None:
    seed(upstream)
    name, content, metadata = make_wheel("beta", "0.2", tag="cp312-cp312-win_amd64")
    upstream.add_file("beta", "0.2", name, content, metadata=metadata)
    name, content, metadata = make_wheel("beta", "0.2", tag="cp312-cp312-manylinux_2_28_x86_64")
    upstream.add_file("beta", "0.2", name, content, metadata=metadata)
    use(
        runner,
        filters(
            "[plugins]\nenabled = environment size\n[filter_environment]\n"
            "python_versions = 3.12\nplatforms = linux\n[size_project_metadata]\n"
            "max_package_size = 1 MiB"
        ),
    )
    with caplog.at_level(logging.DEBUG, logger="mirror.project"):
        report = await runner.sync(projects=["beta"])
    assert report.ok
    assert set(published_files(runner.web, "beta")) == {
        "beta-0.1.tar.gz",
        "beta-0.1-py3-none-any.whl",
        "beta-0.2-cp312-cp312-manylinux_2_28_x86_64.whl",
    }
    assert not any("win_amd64" in name for name in files_on_disk(runner.directory))
    assert "beta-0.2-cp312-cp312-win_amd64.whl: no wheel tag fits" in caplog.text

    use(runner, filters("[plugins]\nenabled = size\n[size_project_metadata]\nmax_package_size = 1"))
    report = await runner.sync(projects=["beta"])
    assert report.projects_removed == 1
    assert not (runner.web / "simple" / "beta").exists()
    assert files_on_disk(runner.directory) == set()


async def test_the_dry_run_explains_per_project_and_writes_nothing(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    seed(upstream)
    filter_set = filters(
        "[plugins]\nenabled = blocklist latest_release\n[blocklist]\npackages = gamma\n"
        "[latest_release]\nkeep = 1"
    )
    settings = UpstreamSettings(base_url=upstream.base_url, retries=0)
    async with Upstream(settings, sleep=no_sleep) as client:
        verdicts = await explain(client, filter_set, ["alpha", "gamma", "nothere"])  # type: ignore[list-item]
    lines = [line for verdict in verdicts for line in verdict.lines()]
    assert lines == [
        "alpha: keeps 2 file(s), " + lines[0].split(", ", 1)[1],
        "  keep alpha-2.0-py3-none-any.whl",
        "  keep alpha-2.0.tar.gz",
        "  drop release 1.0: not among the 1 latest by version (latest_release)",
        "  drop release 2.0rc1: not among the 1 latest by version (latest_release)",
        "gamma: left out",
        "  drop name gamma: in the blocklist (blocklist)",
        "nothere: not found upstream",
    ]
    assert not any(tmp_path.iterdir())
