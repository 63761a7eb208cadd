"""Filter configuration: plug-in discovery, bandersnatch-style sections, and errors that
name the section and key."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import mirror.filters as filters_module
from mirror.cli import main
from mirror.config import load_config, parse_config
from mirror.errors import ConfigError
from mirror.filters import (
    BUILTINS,
    ENTRY_POINT_GROUP,
    FilterOptions,
    FilterSet,
    FilterSpec,
    KeepAll,
    filters_of,
    load_filters,
)
from mirror.testing import FakeUpstream
from tests.harness import MirrorRunner
from tests.mirrorcheck import published_files

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "mirror.conf.example"
OFFLINE = ROOT / "examples" / "offline.conf"
FILTERS_HEADING = "; ==== Filters"

MIRROR = "[mirror]\ndirectory = /srv/mirror\n"


def config_filters(text: str, *, source: Path | None = None) -> FilterSet:
    return filters_of(parse_config(MIRROR + textwrap.dedent(text), source=source))


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(MIRROR + textwrap.dedent(text))
    return info.value


def names_kept(filter_set: FilterSet, *names: str) -> list[str]:
    return [n for n in names if filter_set.check_name(canonicalize_name(n)) is None]


def test_bandersnatch_plugin_names_map_to_our_filters_once() -> None:
    filter_set = config_filters(
        """
        [plugins]
        enabled =
            allowlist_project
            allowlist_release
            blocklist_project
            exclude_platform
        [allowlist]
        packages =
            numpy>=1.26,<3  # a comment
            # a whole-line comment
            Requests
        [blocklist]
        platforms = windows
        """
    )
    assert [name for name, _ in filter_set.filters] == ["allowlist", "blocklist"]
    assert names_kept(filter_set, "numpy", "requests", "idna") == ["numpy", "requests"]
    assert filter_set.included_names() == frozenset({"numpy", "requests"})


# The filters this distribution registers under the mirror.filters entry-point group.
BUILTIN_NAMES = frozenset(
    {
        "allowlist",
        "blocklist",
        "environment",
        "latest_release",
        "package_types",
        "prerelease",
        "regex",
        "size",
        "yanked",
    }
)


def test_all_enables_every_installed_filter() -> None:
    filter_set = config_filters("[plugins]\nenabled = all\n[allowlist]\npackages = a\n")
    assert {name for name, _ in filter_set.filters} >= BUILTIN_NAMES


def test_without_plugins_nothing_is_filtered_and_the_config_keeps_no_sections() -> None:
    config = parse_config(MIRROR)
    assert config.filter_sections == {}
    assert filters_of(config).filters == ()
    assert FilterSet().included_names() is None


def test_the_config_holds_the_filters_it_parsed() -> None:
    config = parse_config(MIRROR + "[plugins]\nenabled = regex\n[filter_regex]\npackages = x\n")
    assert [name for name, _ in config.filters.filters] == ["regex"]
    assert config.filters.fingerprint == filters_of(config).fingerprint
    assert parse_config(MIRROR).filters == FilterSet()


def test_the_raw_sections_are_kept_read_only_on_the_config() -> None:
    config = parse_config(MIRROR + "[plugins]\nenabled = regex\n[filter_regex]\npackages = x\n")
    assert config.filter_sections == {
        "plugins": {"enabled": "regex"},
        "filter_regex": {"packages": "x"},
    }
    with pytest.raises(TypeError):
        config.filter_sections["plugins"]["enabled"] = "all"  # type: ignore[index]


def test_requirements_files_are_an_allowlist(tmp_path: Path) -> None:
    requirements = tmp_path / "reqs"
    requirements.mkdir()
    (requirements / "a.txt").write_text(
        "-r other.txt\n--hash=sha256:00\nDjango>=4.2  # web\nattrs ; python_version>'3'\n"
    )
    (requirements / "b.txt").write_text("# nothing but\nidna==3.7\n")
    conf = tmp_path / "mirror.conf"
    conf.write_text(
        MIRROR
        + "[plugins]\nenabled = project_requirements\n[allowlist]\n"
        + "requirements_path = reqs\nrequirements =\n    a.txt\n    b*.txt\n"
    )
    filter_set = filters_of(load_config(conf))
    assert filter_set.included_names() == frozenset({"django", "attrs", "idna"})
    before = filter_set.fingerprint
    (requirements / "b.txt").write_text("idna==3.8\n")
    assert filters_of(load_config(conf)).fingerprint != before, "file contents count"


@pytest.mark.parametrize(
    ("text", "section", "key", "message"),
    [
        ("[plugins]\nenabled = nosuch\n", "plugins", "enabled", "unknown filter 'nosuch'"),
        (
            "[plugins]\nenabled = allowlist\n[allowlist]\npackages = numpy>=>1\n",
            "allowlist",
            "packages",
            "invalid requirement 'numpy>=>1'",
        ),
        (
            "[plugins]\nenabled = blocklist\n[blocklist]\npackages = x ; os_name=='nt'\n",
            "blocklist",
            "packages",
            "markers and URLs are not supported",
        ),
        (
            "[plugins]\nenabled = size\n[size_project_metadata]\nmax_package_size = lots\n",
            "size_project_metadata",
            "max_package_size",
            "expected a size such as 200 MiB or 1G, got 'lots'",
        ),
        (
            "[plugins]\nenabled = size\n[size_project_metadata]\nmax_file_size = 0\n",
            "size_project_metadata",
            "max_file_size",
            "must be more than zero",
        ),
        (
            "[plugins]\nenabled = regex\n[filter_regex]\nreleases = (unclosed\n",
            "filter_regex",
            "releases",
            "invalid regular expression '(unclosed'",
        ),
        (
            "[plugins]\nenabled = latest_release\n[latest_release]\nkeep = -1\n",
            "latest_release",
            "keep",
            "expected a whole number >= 0",
        ),
        (
            "[plugins]\nenabled = latest_release\n[latest_release]\nsort_by = size\n",
            "latest_release",
            "sort_by",
            "expected one of version, time",
        ),
        (
            "[plugins]\nenabled = allowlist\n[allowlist]\npackage = x\n",
            "allowlist",
            "package",
            "unknown key",
        ),
        ("[plugins]\nenable = allowlist\n", "plugins", "enable", "unknown key"),
        (
            "[plugins]\nenabled = environment\n[filter_environment]\npython_versions = 3\n",
            "filter_environment",
            "python_versions",
            "expected a Python version such as 3.12 or 3.13t, got '3'",
        ),
        (
            "[plugins]\nenabled = blocklist\n[blocklist]\nplatforms = win/32\n",
            "blocklist",
            "platforms",
            "not a platform or Python version",
        ),
        (
            "[plugins]\nenabled = package_types\n[filter_package_types]\ntypes = wheel jar\n",
            "filter_package_types",
            "types",
            "unknown package type 'jar'",
        ),
        (
            "[plugins]\nenabled = package_types\n[filter_package_types]\ntypes = ,\n",
            "filter_package_types",
            "types",
            "list at least one package type",
        ),
        (
            "[plugins]\nenabled = allowlist\n[allowlist]\nrequirements = missing.txt\n",
            "allowlist",
            "requirements",
            "cannot read",
        ),
        (
            "[plugins]\nenabled = allowlist\n[allowlist]\nrequirements = none-*.txt\n",
            "allowlist",
            "requirements",
            "no file matches",
        ),
        (
            "[plugins]\nenabled = prerelease\n[filter_prerelease]\nx = 1\n",
            "filter_prerelease",
            "x",
            "unknown key",
        ),
    ],
)
def test_bad_filter_config_names_the_section_and_key(
    text: str, section: str, key: str, message: str
) -> None:
    error = config_error(text)
    assert (error.section, error.key) == (section, key)
    assert message in str(error)
    assert str(error).startswith(f"[{section}] {key}: ")


def test_a_section_no_enabled_filter_reads_is_refused_with_a_hint() -> None:
    error = config_error("[allowlist]\npackages = numpy\n")
    assert (error.section, error.key) == ("allowlist", None)
    assert str(error) == (
        "[allowlist]: unknown section; no enabled filter reads it (see [plugins] enabled)"
    )


# --- a third-party filter, installed as its own distribution -----------------------

PLUGIN_MODULE = '''
from mirror.filters import FilterSpec, KeepAll


class NoOdd(KeepAll):
    """Leaves out projects whose names start with a configured prefix."""

    def __init__(self, prefix):
        self.prefix = prefix

    @property
    def config(self):
        return ("no_odd", self.prefix)

    def check_name(self, name):
        return f"starts with {self.prefix}" if name.startswith(self.prefix) else None


SPEC = FilterSpec(section="no_odd", build=lambda options: NoOdd(options.text("prefix") or "odd"))
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs the distribution ``no-odd-filter`` (module + ``.dist-info`` with an
    entry point in ``mirror.filters``) on a fresh sys.path entry."""
    site = tmp_path / "site"
    dist_info = site / "no_odd_filter-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "no_odd_filter.py").write_text(PLUGIN_MODULE)
    metadata = "Metadata-Version: 2.1\nName: no-odd-filter\nVersion: 1.0\n"
    (dist_info / "METADATA").write_text(metadata)
    (dist_info / "entry_points.txt").write_text("[mirror.filters]\nno_odd = no_odd_filter:SPEC\n")
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("third_party")
async def test_a_third_party_filter_is_discovered_configured_and_run(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    filter_set = config_filters("[plugins]\nenabled = no_odd\n[no_odd]\nprefix = odd\n")
    assert names_kept(filter_set, "oddball", "even") == ["even"]
    upstream.add_release("oddball", "1.0")
    upstream.add_release("even", "1.0")
    runner.options = replace(runner.options, filters=filter_set)
    report = await runner.sync()
    assert report.ok
    assert (runner.web / "simple" / "even").is_dir()
    assert not (runner.web / "simple" / "oddball").exists()
    assert published_files(runner.web, "even")


@pytest.mark.usefixtures("third_party")
def test_a_third_party_filter_is_not_loaded_unless_enabled() -> None:
    error = config_error("[plugins]\nenabled = allowlist\n[allowlist]\npackages = a\n[no_odd]\n")
    assert error.section == "no_odd"


def test_a_plugin_that_fails_to_load_or_is_not_a_spec_is_a_config_error() -> None:
    broken = EntryPoint(name="broken", value="no_such_module_xyz:SPEC", group="mirror.filters")
    wrong = EntryPoint(name="wrong", value="pathlib:Path", group="mirror.filters")
    for point, message in [(broken, "failed to load"), (wrong, "is not a mirror FilterSpec")]:
        with pytest.raises(ConfigError) as info:
            load_filters({"plugins": {"enabled": point.name}}, available=[point])
        assert (info.value.section, info.value.key) == ("plugins", "enabled")
        assert message in str(info.value)


def test_the_built_ins_are_registered_as_entry_points() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {name: installed.get(name) for name in BUILTINS} == dict(BUILTINS)


def test_built_ins_work_even_without_their_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters_module, "entry_points", lambda group: [])
    filter_set = load_filters({"plugins": {"enabled": "yanked"}})
    assert [name for name, _ in filter_set.filters] == ["yanked"]


def test_unknown_filter_lists_what_is_installed() -> None:
    with pytest.raises(ConfigError) as info:
        load_filters({"plugins": {"enabled": "x"}}, available=[])
    assert str(info.value) == "[plugins] enabled: unknown filter 'x' (installed: none)"


def test_the_options_getters_default_when_keys_are_absent() -> None:
    options = FilterOptions("s", {"flag": "Off"})
    assert options.boolean("flag", default=True) is False
    assert options.boolean("other", default=True) is True
    assert options.size("size") is None
    with pytest.raises(ConfigError, match=r"\[s\] bad: expected true or false"):
        FilterOptions("s", {"bad": "maybe"}).boolean("bad", default=False)


def test_filters_spec_is_what_an_entry_point_names() -> None:
    spec = FilterSpec(section="x", build=lambda options: KeepAll())  # type: ignore[arg-type,return-value]
    assert spec.section == "x"


# --- the documented examples -------------------------------------------------------


def example_filter_text() -> str:
    """The example's filter sections, uncommented (they are shown as ``#`` lines)."""
    text = EXAMPLE.read_text(encoding="utf-8").split(FILTERS_HEADING, 1)[1]
    return "\n".join(line[1:] for line in text.splitlines() if line.startswith("#"))


def test_every_documented_filter_example_parses(tmp_path: Path) -> None:
    text = example_filter_text()
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("idna\n")
    (tmp_path / "requirements" / "dev.in").write_text("pytest\n")
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "pylock.toml").write_text('lock-version = "1.0"\npackages = []\n')
    (tmp_path / "locks" / "uv.lock").write_text("version = 1\npackage = []\n")
    conf = tmp_path / "mirror.conf"
    conf.write_text(MIRROR + text.replace("/etc/mirror/requirements", "requirements"))
    filter_set = filters_of(load_config(conf))
    assert {name for name, _ in filter_set.filters} == BUILTIN_NAMES


async def test_the_filters_command_prints_a_dry_run_and_writes_nothing(
    upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("Alpha", "2.0")
    conf = tmp_path / "mirror.conf"
    conf.write_text(
        f"[mirror]\ndirectory = data\nupstream = {upstream.base_url}\nallow-non-https = true\n"
        "[plugins]\nenabled = latest_release\n[latest_release]\nkeep = 1\n"
    )
    code = await asyncio.to_thread(main, ["filters", "-c", str(conf), "Alpha"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("alpha: keeps 2 file(s), ")
    assert out[1:] == [
        "  keep alpha-2.0-py3-none-any.whl",
        "  keep alpha-2.0.tar.gz",
        "  drop release 1.0: not among the 1 latest by version (latest_release)",
    ]
    assert not (tmp_path / "data").exists()


async def test_the_filters_command_reports_config_and_upstream_errors(tmp_path: Path) -> None:
    conf = tmp_path / "mirror.conf"
    conf.write_text("[mirror]\ndirectory = data\n[plugins]\nenabled = nosuch\n")
    assert await asyncio.to_thread(main, ["filters", "-c", str(conf), "alpha"]) == 2
    conf.write_text(
        "[mirror]\ndirectory = data\nupstream = http://127.0.0.1:9\nallow-non-https = true\n"
        "retries = 0\nconnect-timeout = 1\n"
    )
    assert await asyncio.to_thread(main, ["filters", "-c", str(conf), "alpha"]) == 4


def test_the_offline_example_allowlists_two_projects() -> None:
    filter_set = filters_of(load_config(OFFLINE))
    assert filter_set.included_names() == frozenset({"proj-0000", "proj-0001"})
