"""The built-in filters, one table per filter, over hand-made project details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name

from mirror.filters import FilterSet, Release, file_version, load_filters, releases_of
from mirror.filters.files import package_type
from mirror.filters.platforms import PythonTarget, tag_arches, tag_supports_python
from mirror.models import DistFile, PackagePath, ProjectDetail, Serial

NAME = canonicalize_name("demo")


def dist(
    filename: str,
    *,
    size: int = 100,
    requires_python: str | None = None,
    yanked: bool = False,
    reason: str = "",
    uploaded: int | None = None,
) -> DistFile:
    return DistFile(
        filename=filename,
        url=f"https://files.example/packages/aa/bb/cc/{filename}",
        path=PackagePath(f"packages/aa/bb/cc/{filename}"),
        sha256="0" * 64,
        size=size,
        requires_python=requires_python,
        yanked=yanked,
        yanked_reason=reason,
        upload_time=datetime(2020, 1, uploaded, tzinfo=UTC) if uploaded else None,
    )


def detail(files: Sequence[DistFile], versions: Sequence[str]) -> ProjectDetail:
    return ProjectDetail(name=NAME, serial=Serial(1), files=tuple(files), versions=tuple(versions))


def make(sections: Mapping[str, Mapping[str, str]]) -> FilterSet:
    return load_filters(sections)


def kept(filter_set: FilterSet, project: ProjectDetail) -> list[str]:
    outcome = filter_set.apply(project)
    assert outcome.detail is not None
    return [f.filename for f in outcome.detail.files]


def environment(**keys: str) -> FilterSet:
    return make({"plugins": {"enabled": "environment"}, "filter_environment": keys})


# --- wheel tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "target", "fits"),
    [
        ("py3-none-any", "3.12", True),
        ("py2-none-any", "3.12", False),
        ("py38-none-any", "3.12", True),
        ("py313-none-any", "3.12", False),
        ("cp312-cp312-linux_x86_64", "3.12", True),
        ("cp311-cp311-linux_x86_64", "3.12", False),
        ("cp39-abi3-linux_x86_64", "3.12", True),
        ("cp313-abi3-linux_x86_64", "3.12", False),
        ("cp39-abi3-linux_x86_64", "3.13t", False),
        ("cp313-cp313t-linux_x86_64", "3.13t", True),
        ("cp313-cp313t-linux_x86_64", "3.13", False),
        ("cp313-cp313-linux_x86_64", "3.13t", False),
        ("cp312-none-linux_x86_64", "3.12", True),
        ("cp312-none-linux_x86_64", "3.13t", False),
        ("cp3-none-any", "3.12", False),
        ("pp310-pypy310_pp73-linux_x86_64", "3.10", False),
        ("cp27-cp27mu-linux_x86_64", "2.7", True),
        ("cp312-weird-any", "3.12", False),
    ],
)
def test_tag_supports_python(tag: str, target: str, fits: bool) -> None:
    interpreter, abi, platform = tag.split("-")
    major, minor = target.rstrip("t").split(".")
    python = PythonTarget(major=int(major), minor=int(minor), free_threaded=target.endswith("t"))
    assert tag_supports_python(Tag(interpreter, abi, platform), python) is fits
    assert str(python) == target


@pytest.mark.parametrize(
    ("platform", "arches"),
    [
        ("any", set()),
        ("win32", {"i686"}),
        ("win_amd64", {"x86_64"}),
        ("win_arm64", {"arm64"}),
        ("macosx_10_9_universal2", {"x86_64", "arm64"}),
        ("macosx_11_0_arm64", {"arm64"}),
        ("macosx_10_6_intel", {"x86_64", "i686"}),
        ("manylinux_2_28_aarch64", {"arm64"}),
        ("musllinux_1_2_x86_64", {"x86_64"}),
        ("linux_armv7l", {"armv7l"}),
    ],
)
def test_tag_arches(platform: str, arches: set[str]) -> None:
    assert tag_arches(platform) == arches


WHEELS = [
    "demo-1.0-py3-none-any.whl",
    "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
    "demo-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
    "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
    "demo-1.0-cp312-cp312-win_amd64.whl",
    "demo-1.0-cp312-cp312-win_arm64.whl",
    "demo-1.0-cp39-abi3-win32.whl",
    "demo-1.0-cp313-cp313t-manylinux_2_28_x86_64.whl",
    "demo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    "demo-1.0-pp310-pypy310_pp73-manylinux_2_28_x86_64.whl",
    "demo-1.0.tar.gz",
    "demo-1.0.win32.exe",
    "demo-1.0-py2.7.egg",
    "demo-1.0-py3.12.egg",
]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"python_versions": "3.12", "platforms": "linux", "architectures": "x86_64"},
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
                "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
                "demo-1.0.tar.gz",
                "demo-1.0-py3.12.egg",
            },
        ),
        (
            {"platforms": "musllinux macosx_10_13_universal2"},
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
                "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
                "demo-1.0.tar.gz",
                "demo-1.0-py2.7.egg",
                "demo-1.0-py3.12.egg",
            },
        ),
        (
            {"platforms": "windows", "architectures": "arm64"},
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-win_arm64.whl",
                "demo-1.0.tar.gz",
                "demo-1.0.win32.exe",
                "demo-1.0-py2.7.egg",
                "demo-1.0-py3.12.egg",
            },
        ),
        (
            {"python_versions": "3.13t", "platforms": "linux"},
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp313-cp313t-manylinux_2_28_x86_64.whl",
                "demo-1.0.tar.gz",
            },
        ),
        (
            {"architectures": "aarch64"},
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
                "demo-1.0-cp312-cp312-win_arm64.whl",
                "demo-1.0.tar.gz",
                "demo-1.0.win32.exe",
                "demo-1.0-py2.7.egg",
                "demo-1.0-py3.12.egg",
            },
        ),
    ],
)
def test_environment_keeps_what_a_target_can_install(
    keys: dict[str, str], expected: set[str]
) -> None:
    project = detail([dist(name) for name in WHEELS], ["1.0"])
    assert set(kept(environment(**keys), project)) == expected


@pytest.mark.parametrize(
    ("requires_python", "keep"),
    [
        (None, True),
        (">=3.8", True),
        (">=3.13", False),
        ("<3", False),
        ("~=2.7", False),
        (">=3.6.*", True),  # invalid: kept, as pip ignores it
        ("garbage", True),
        (">=3.12.0rc1", True),
    ],
)
def test_environment_reads_requires_python(requires_python: str | None, keep: bool) -> None:
    project = detail([dist("demo-1.0.tar.gz", requires_python=requires_python)], ["1.0"])
    filter_set = environment(python_versions="3.11 3.12")
    assert bool(kept(filter_set, project)) is keep
    if not keep:
        drop = filter_set.apply(project).drops[0]
        assert drop.reason == f"Requires-Python {requires_python} excludes 3.11 3.12"


@pytest.mark.parametrize(
    ("platforms", "expected"),
    [
        (
            "windows",
            {
                "demo-1.0-pp310-pypy310_pp73-manylinux_2_28_x86_64.whl",
                "demo-1.0-cp27-cp27mu-manylinux1_x86_64.whl",
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
                "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
                "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
                "demo-1.0.tar.gz",
            },
        ),
        (
            "linux win_arm64",
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
                "demo-1.0-cp312-cp312-win_amd64.whl",
                "demo-1.0-cp39-abi3-win32.whl",
                "demo-1.0.tar.gz",
                "demo-1.0.win32.exe",
            },
        ),
        (
            "py3.12 py2",
            {
                "demo-1.0-py3-none-any.whl",
                "demo-1.0-pp310-pypy310_pp73-manylinux_2_28_x86_64.whl",
                "demo-1.0-cp39-abi3-win32.whl",
                "demo-1.0.tar.gz",
                "demo-1.0.win32.exe",
            },
        ),
    ],
)
def test_blocklist_platforms_parse_wheel_tags(platforms: str, expected: set[str]) -> None:
    names = [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
        "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
        "demo-1.0-cp312-cp312-win_amd64.whl",
        "demo-1.0-cp312-cp312-win_arm64.whl",
        "demo-1.0-cp39-abi3-win32.whl",
        "demo-1.0.tar.gz",
        "demo-1.0.win32.exe",
        "demo-1.0-pp310-pypy310_pp73-manylinux_2_28_x86_64.whl",
        "demo-1.0-cp27-cp27mu-manylinux1_x86_64.whl",
    ]
    filter_set = make({"plugins": {"enabled": "blocklist"}, "blocklist": {"platforms": platforms}})
    assert set(kept(filter_set, detail([dist(n) for n in names], ["1.0"]))) == expected


# --- release filters -----------------------------------------------------------------

VERSIONS = ["0.9", "1.0a1", "1.0", "1.1.dev0", "1.1rc2", "1.1", "2.0b1", "2004d", "1.0-beta2"]


def release_files(versions: Sequence[str]) -> list[DistFile]:
    return [dist(f"demo-{v}.tar.gz", uploaded=index + 1) for index, v in enumerate(versions)]


def kept_versions(sections: Mapping[str, Mapping[str, str]], name: str = "demo") -> list[str]:
    project = detail(release_files(VERSIONS), VERSIONS)
    project = ProjectDetail(
        name=canonicalize_name(name),
        serial=project.serial,
        files=tuple(
            dist(f.filename.replace("demo", name), uploaded=i + 1)
            for i, f in enumerate(project.files)
        ),
        versions=project.versions,
    )
    outcome = make(sections).apply(project)
    assert outcome.detail is not None
    return list(outcome.detail.versions)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"plugins": {"enabled": "prerelease"}}, ["0.9", "1.0", "1.1", "2004d"]),
        (
            {"plugins": {"enabled": "prerelease"}, "filter_prerelease": {"packages": "other"}},
            VERSIONS,
        ),
        (
            {"plugins": {"enabled": "regex"}, "filter_regex": {"releases": ".*rc\\d\n2004"}},
            ["0.9", "1.0a1", "1.0", "1.1.dev0", "1.1", "2.0b1", "1.0-beta2"],
        ),
        (
            {"plugins": {"enabled": "latest_release"}, "latest_release": {"keep": "2"}},
            ["1.1", "2.0b1"],
        ),
        (
            {
                "plugins": {"enabled": "prerelease latest_release"},
                "latest_release": {"keep": "2"},
            },
            ["1.0", "1.1"],
        ),
        (
            {
                "plugins": {"enabled": "latest_release"},
                "latest_release": {"keep": "2", "sort_by": "time"},
            },
            ["2004d", "1.0-beta2"],
        ),
        (
            {"plugins": {"enabled": "latest_release"}, "latest_release": {"keep": "20"}},
            VERSIONS,
        ),
        (
            {"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "demo>=1.0,<2"}},
            ["1.0", "1.1.dev0", "1.1rc2", "1.1"],
        ),
        (
            {"plugins": {"enabled": "blocklist"}, "blocklist": {"packages": "demo<1.1\nother"}},
            ["1.1.dev0", "1.1rc2", "1.1", "2.0b1", "2004d"],
        ),
        (
            {"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "demo\nDemo<5"}},
            ["0.9", "1.0a1", "1.0", "1.1.dev0", "1.1rc2", "1.1", "2.0b1", "1.0-beta2"],
        ),
    ],
)
def test_release_filters(sections: Mapping[str, Mapping[str, str]], expected: list[str]) -> None:
    # "2004d" is a legacy version: it never matches a specifier and sorts oldest by
    # version ("1.0-beta2" is PEP 440's 1.0b2).
    assert sorted(kept_versions(sections), key=VERSIONS.index) == sorted(
        expected, key=VERSIONS.index
    )


def test_legacy_versions_that_look_like_pre_releases_are_left_out() -> None:
    versions = ["1.0.x-rc1", "1.0.x", "1.0.x-dev3"]
    project = detail([dist(f"demo-{v}.tar.gz") for v in versions], versions)
    outcome = make({"plugins": {"enabled": "prerelease"}}).apply(project)
    assert outcome.detail is not None
    assert outcome.detail.versions == ("1.0.x",)
    assert {d.reason for d in outcome.drops} == {"pre-release (legacy version)"}


def test_a_release_whose_every_file_is_left_out_leaves_versions_too() -> None:
    project = detail(
        [dist("demo-1.0.tar.gz"), dist("demo-2.0-cp312-cp312-win_amd64.whl")],
        ["0.5", "1.0", "2.0"],
    )
    outcome = environment(platforms="linux").apply(project)
    assert outcome.detail is not None
    assert outcome.detail.versions == ("0.5", "1.0"), "0.5 had no files upstream either"


# --- file and project filters --------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("demo-1.0.tar.gz", "sdist"),
        ("demo-1.0.zip", "sdist"),
        ("demo-1.0.tar.bz2", "sdist"),
        ("demo-1.0-py3-none-any.whl", "wheel"),
        ("demo-1.0-bad.whl", "dumb"),
        ("demo-1.0-py2.7.egg", "egg"),
        ("demo-1.0.win32.exe", "exe"),
        ("demo-1.0.win-amd64.msi", "msi"),
        ("demo-1.0.dmg", "dmg"),
        ("demo-1.0-1.noarch.rpm", "rpm"),
        ("demo-1.0.linux-x86_64.tar.gz", "dumb"),
        ("demo-1.0.linux-x86_64.zip", "dumb"),
        ("demo-latest.tar.bz2", "sdist"),
        ("demo-latest.zip", "dumb"),
    ],
)
def test_package_type_from_filename(filename: str, kind: str) -> None:
    assert package_type(filename) == kind


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("sdist wheel", ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl"]),
        ("bdist_wheel", ["demo-1.0-py3-none-any.whl"]),
        ("legacy", ["demo-1.0-py2.7.egg", "demo-1.0.win32.exe"]),
        ("egg, sdist", ["demo-1.0.tar.gz", "demo-1.0-py2.7.egg"]),
    ],
)
def test_package_types_keep_only_the_listed_kinds(types: str, expected: list[str]) -> None:
    files = [
        dist(n)
        for n in [
            "demo-1.0.tar.gz",
            "demo-1.0-py3-none-any.whl",
            "demo-1.0-py2.7.egg",
            "demo-1.0.win32.exe",
        ]
    ]
    filter_set = make(
        {"plugins": {"enabled": "package_types"}, "filter_package_types": {"types": types}}
    )
    assert kept(filter_set, detail(files, ["1.0"])) == expected


def test_package_types_without_types_keeps_every_kind() -> None:
    filter_set = make({"plugins": {"enabled": "package_types"}})
    files = [dist("demo-1.0.tar.gz"), dist("demo-1.0.win32.exe")]
    assert kept(filter_set, detail(files, ["1.0"])) == ["demo-1.0.tar.gz", "demo-1.0.win32.exe"]


def test_sizes_limit_files_and_the_whole_project() -> None:
    files = [
        dist("demo-1.0.tar.gz", size=600 * 1024),
        dist("demo-1.0-py3-none-any.whl", size=300 * 1024),
        dist("demo-0.9.tar.gz", size=300 * 1024),
    ]
    project = detail(files, ["0.9", "1.0"])
    limit_files = make(
        {"plugins": {"enabled": "size"}, "size_project_metadata": {"max_file_size": "500 KiB"}}
    )
    assert kept(limit_files, project) == ["demo-1.0-py3-none-any.whl", "demo-0.9.tar.gz"]
    both = make(
        {
            "plugins": {"enabled": "size_project_metadata"},
            "size_project_metadata": {"max_file_size": "500k", "max_package_size": "0.5M"},
        }
    )
    outcome = both.apply(project)
    assert outcome.detail is None
    assert str(outcome.drops[-1]) == (
        "project demo: 600 KiB in total is over max_package_size (512 KiB) (size)"
    )
    assert kept(both, detail(files[1:2], ["1.0"])) == ["demo-1.0-py3-none-any.whl"]


def test_yanked_files_can_be_left_out_with_their_reason() -> None:
    files = [dist("demo-1.0.tar.gz", yanked=True, reason="broken"), dist("demo-1.1.tar.gz")]
    files.append(dist("demo-1.2.tar.gz", yanked=True))
    outcome = make({"plugins": {"enabled": "yanked"}}).apply(detail(files, ["1.0", "1.1", "1.2"]))
    assert outcome.detail is not None
    assert [f.filename for f in outcome.detail.files] == ["demo-1.1.tar.gz"]
    assert [d.reason for d in outcome.drops] == ["yanked: broken", "yanked"]


def test_name_filters_drop_the_project_before_anything_else() -> None:
    filter_set = make(
        {"plugins": {"enabled": "regex"}, "filter_regex": {"packages": "x\nde.o\n# comment"}}
    )
    outcome = filter_set.apply(detail([dist("demo-1.0.tar.gz")], ["1.0"]))
    assert outcome.detail is None
    assert str(outcome.drops[0]) == "name demo: name matches 'de.o' (regex)"
    assert filter_set.included_names() is None


def test_included_names_are_the_allowlist_minus_the_blocklist() -> None:
    filter_set = make(
        {
            "plugins": {"enabled": "allowlist blocklist"},
            "allowlist": {"packages": "a\nb\nc"},
            "blocklist": {"packages": "b"},
        }
    )
    assert filter_set.included_names() == frozenset({"a", "c"})


def test_the_fingerprint_follows_the_config_only() -> None:
    def fingerprint(packages: str) -> str:
        sections = {"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": packages}}
        return make(sections).fingerprint

    assert fingerprint("a\nb") == fingerprint("b\n# c\na")
    assert fingerprint("a") != fingerprint("a>1")
    assert FilterSet().fingerprint == FilterSet().fingerprint


@pytest.mark.parametrize(
    ("section", "before", "after"),
    [
        ("blocklist", {"platforms": "windows"}, {"platforms": "macos"}),
        ("filter_regex", {"releases": "a"}, {"releases": "b"}),
        ("filter_prerelease", {}, {"packages": "x"}),
        ("latest_release", {"keep": "1"}, {"keep": "1", "sort_by": "time"}),
        ("size_project_metadata", {"max_file_size": "1G"}, {"max_file_size": "2G"}),
        ("filter_package_types", {"types": "wheel"}, {"types": "sdist"}),
        ("filter_environment", {"python_versions": "3.12"}, {"python_versions": "3.13t"}),
    ],
)
def test_every_built_in_config_goes_into_the_fingerprint(
    section: str, before: dict[str, str], after: dict[str, str]
) -> None:
    every = "blocklist regex prerelease latest_release size package_types environment yanked"

    def fingerprint(keys: dict[str, str]) -> str:
        return make({"plugins": {"enabled": every}, section: keys}).fingerprint

    assert fingerprint(before) != fingerprint(after)
    assert fingerprint(before) == fingerprint(dict(before))


# --- which release a file belongs to -------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "versions", "version"),
    [
        ("demo-1.0-py3-none-any.whl", ["1.0"], "1.0"),
        ("demo-1.0-py3-none-any.whl", ["1.0.0"], "1.0.0"),
        ("demo-1.0-py3-none-any.whl", [], "1.0"),
        ("demo-1.0-py3-none-any.whl", ["2004d", "1.0"], "1.0"),
        ("demo-1.0.1.tar.gz", ["1.0", "1.0.1"], "1.0.1"),
        ("demo-1.0.tar.gz", ["1.0", "1.0.1"], "1.0"),
        ("demo-2004d.zip", ["2004d"], "2004d"),
        ("demo-1.0.win32-py2.7.exe", ["1.0"], "1.0"),
        ("demo-1.0-py2.7.egg", ["1.0"], "1.0"),
        ("demo-x.whl", ["1.0"], "demo-x.whl"),
        ("unrelated.tar.gz", ["1.0"], "unrelated.tar.gz"),
    ],
)
def test_file_version(filename: str, versions: list[str], version: str) -> None:
    assert file_version(dist(filename), versions) == version


def test_files_of_an_unknown_version_form_their_own_release() -> None:
    project = detail([dist("demo-1.0.tar.gz"), dist("odd.tar.gz")], ["1.0"])
    releases = releases_of(project)
    assert [r.version for r in releases] == ["odd.tar.gz", "1.0"]
    assert releases[0].parsed is None
    assert releases[1].upload_time is None


def test_release_upload_time_is_the_first_upload() -> None:
    release = Release(
        version="1.0",
        files=(dist("a-1.0.tar.gz", uploaded=5), dist("a-1.0.zip", uploaded=3)),
    )
    assert release.upload_time == datetime(2020, 1, 3, tzinfo=UTC)


def test_keep_all_keeps_everything() -> None:
    from mirror.filters import KeepAll  # noqa: PLC0415  # the base class is the subject

    keep = KeepAll()
    name: NormalizedName = NAME
    project = detail([dist("demo-1.0.tar.gz")], ["1.0"])
    assert keep.check_name(name) is None
    assert keep.included_names() is None
    assert keep.check_releases(name, releases_of(project)) == {}
    assert keep.check_file(name, project.files[0]) is None
    assert keep.check_project(project) is None
