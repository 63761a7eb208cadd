"""Allowlist mirrors that follow dependencies until the set of projects stops growing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import mirror.sync as sync_module
from mirror.closure import is_needed, merge, needs_of, requires_dist
from mirror.errors import ConfigError
from mirror.filters import FilterSet, load_filters
from mirror.filters.lists import AllowlistFilter
from mirror.state import NEEDS_META_KEY
from mirror.testing import FakeUpstream, make_wheel
from tests.clients import pip_install
from tests.harness import MirrorRunner
from tests.mirrorcheck import assert_consistent, published_files
from tests.test_pip_e2e import http_server


def allowlist(packages: str, **keys: str) -> FilterSet:
    section = {"packages": packages, "dependencies": "true", **keys}
    return load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": section})


def environments(python_versions: str = "3.12", platforms: str = "linux") -> list[dict[str, str]]:
    filter_set = allowlist("x", python_versions=python_versions, platforms=platforms)
    found = filter_set.marker_environments()
    assert found is not None
    return [dict(e) for e in found]


def publish(upstream: FakeUpstream, name: str, version: str, *requires: str) -> None:
    filename, wheel, metadata = make_wheel(name, version, requires_dist=list(requires))
    upstream.add_file(name, version, filename, wheel, metadata=metadata)


@pytest.mark.parametrize(
    ("requirement", "needed"),
    [
        ("lib>=2", True),
        ("winonly; sys_platform == 'win32'", False),
        ("linuxonly; sys_platform == 'linux' and platform_system == 'Linux'", True),
        ("dev-tool; extra == 'dev'", False),
        ("py2only; python_version < '3'", False),
        ("new; python_full_version >= '3.12.0'", True),
        ("pypy; implementation_name == 'pypy'", False),
        ("posix; os_name == 'posix'", True),
        ("odd; platform_release ~= '5.0'", False),
    ],
)
def test_markers_are_evaluated_on_the_targets_without_extras(
    requirement: str, needed: bool
) -> None:
    assert is_needed(Requirement(requirement), environments()) is needed


def test_a_marker_that_cannot_be_evaluated_counts_as_needed() -> None:
    assert is_needed(Requirement("odd; python_version ~= '3'"), environments()) is True


def test_several_targets_need_the_union() -> None:
    requirements = [
        Requirement("winonly; sys_platform == 'win32'"),
        Requirement("old; python_version < '3.11'"),
    ]
    assert needs_of(requirements, environments()) == {}
    both = environments(python_versions="3.10 3.12", platforms="linux windows")
    assert needs_of(requirements, both) == {"winonly": {""}, "old": {""}}


def test_requires_dist_is_read_from_core_metadata_skipping_bad_lines() -> None:
    metadata = (
        b"Metadata-Version: 2.1\nName: app\nVersion: 1\nRequires-Dist: lib (>=2)\n"
        b"Requires-Dist: not a requirement !!\nRequires-Dist: other[x]>=1\n\nbody\n"
    )
    assert [str(r) for r in requires_dist(metadata)] == ["lib>=2", "other[x]>=1"]
    assert requires_dist(b"Metadata-Version: 2.1\nName: a\n\n") == []


def test_merge_sorts_and_lets_any_version_win() -> None:
    assert merge({"b": {">=2", "<1"}, "a": {">=1", ""}}) == {"a": ("",), "b": ("<1", ">=2")}  # type: ignore[dict-item]


def test_the_needs_widen_the_allowlist_to_any_of_the_specifiers() -> None:
    filter_set = allowlist("app\nlib>=3").with_needs({"lib": ("<2",), "deep": ("",)})  # type: ignore[dict-item]
    assert filter_set.included_names() == frozenset({"app", "lib", "deep"})
    allow = filter_set.filters[0][1]
    assert isinstance(allow, AllowlistFilter)
    assert allow.config.packages == (("app", ""), ("lib", ">=3"))


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        ({"dependencies": "true", "platforms": "amiga"}, "platforms", "unknown platform 'amiga'"),
        ({"dependencies": "true", "python_versions": "three"}, "python_versions", "expected"),
        ({"python_versions": "3.12"}, "python_versions", "only used with dependencies = true"),
        ({"platforms": "linux"}, "platforms", "only used with dependencies = true"),
        ({"dependencies": "perhaps"}, "dependencies", "expected true or false"),
    ],
)
def test_bad_dependency_targets_name_the_key(keys: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "a", **keys}})
    assert (info.value.section, info.value.key) == ("allowlist", key)
    assert message in str(info.value)


def test_without_dependencies_there_are_no_marker_environments() -> None:
    filter_set = load_filters({"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "a"}})
    assert filter_set.marker_environments() is None
    assert FilterSet().marker_environments() is None


def seed(upstream: FakeUpstream) -> None:
    publish(
        upstream,
        "app",
        "1.0",
        "lib>=2",
        "winonly; sys_platform == 'win32'",
        "devtool; extra == 'dev'",
    )
    for version in ["1.0", "2.0"]:
        publish(upstream, "lib", version)
    publish(upstream, "lib", "3.0", "deep")
    upstream.add_release("deep", "1.0")  # an sdist too, which has no .metadata
    publish(upstream, "winonly", "1.0")
    publish(upstream, "devtool", "1.0")
    publish(upstream, "unrelated", "1.0")


def mirrored(runner: MirrorRunner) -> set[str]:
    root = json.loads((runner.web / "simple" / "index.v1_json").read_bytes())
    return {p["name"] for p in root["projects"]}


async def test_the_closure_grows_until_it_stops_and_follows_later_changes(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = replace(
        runner.options, filters=allowlist("app", python_versions="3.12", platforms="linux")
    )
    report = await runner.sync()
    assert report.ok
    assert mirrored(runner) == {"app", "lib", "deep"}
    assert set(published_files(runner.web, "lib")) == {
        "lib-2.0-py3-none-any.whl",
        "lib-3.0-py3-none-any.whl",
    }
    with runner.state() as state:
        assert json.loads(state.get_meta(NEEDS_META_KEY) or "") == {
            "deep": [""],
            "lib": [">=2"],
        }
    assert_consistent(runner.directory)

    # A new release with a new requirement pulls the new project in on the next run.
    publish(upstream, "app", "1.1", "lib>=2", "newdep")
    publish(upstream, "newdep", "0.1")
    await runner.sync()
    assert mirrored(runner) == {"app", "lib", "deep", "newdep"}

    # Nothing new: one changelog request, no closure round.
    upstream.request_log.clear()
    await runner.sync()
    assert [path for _, path in upstream.request_log] == ["/pypi"]


async def test_dropping_a_root_drops_what_only_it_needed(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    # The default targets are CPython 3.9 to 3.14 on Linux, macOS and Windows.
    runner.options = replace(runner.options, filters=allowlist("app\nunrelated"))
    await runner.sync()
    assert mirrored(runner) == {"app", "lib", "deep", "unrelated", "winonly"}
    runner.options = replace(runner.options, filters=allowlist("unrelated"))
    report = await runner.sync()
    assert report.ok
    assert mirrored(runner) == {"unrelated"}
    assert_consistent(runner.directory)


async def test_an_unreadable_stored_closure_is_found_again(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    seed(upstream)
    runner.options = replace(runner.options, filters=allowlist("app"))
    with runner.state() as state:
        state.set_meta(NEEDS_META_KEY, "not json")
    await runner.sync()
    assert mirrored(runner) == {"app", "lib", "deep", "winonly"}


async def test_a_closure_cut_short_by_the_round_limit_goes_on_next_run(
    upstream: FakeUpstream,
    runner: MirrorRunner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(upstream)
    monkeypatch.setattr(sync_module, "_MAX_CLOSURE_ROUNDS", 1)
    runner.options = replace(runner.options, filters=allowlist("app", platforms="linux"))
    await runner.sync()
    assert mirrored(runner) == {"app", "lib"}
    assert "the dependency closure still changes after 1 rounds" in caplog.text
    await runner.sync()
    assert mirrored(runner) == {"app", "lib", "deep"}


@pytest.mark.slow
async def test_pip_installs_an_allowlisted_project_from_the_closure_mirror_alone(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    seed(upstream)
    runner.options = replace(
        runner.options, filters=allowlist("app", python_versions="3.11 3.12", platforms="linux")
    )
    assert (await runner.sync()).ok
    target = tmp_path / "site"
    with http_server(runner.web) as (url, proc):
        result = await asyncio.to_thread(pip_install, f"{url}/simple/", target, "app")
        proc.terminate()
        proc.communicate(timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3.0" in (target / "lib" / "__init__.py").read_text()
    assert (target / "deep" / "__init__.py").exists()
