"""bandersnatch 8.2's configuration → mirror's, key by key (mirror/bandersnatchconf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.bandersnatchconf import FILTER_PLUGINS, MIRROR_KEYS, Note, translate
from mirror.config import parse_config
from mirror.errors import ConfigError


def defaults_conf(script: Path) -> Path:
    """bandersnatch 8.2's own defaults.conf, in the venv of its ``script``."""
    return next(script.parent.parent.glob("lib/python*/site-packages/bandersnatch/defaults.conf"))


def conf(mirror: str = "", rest: str = "") -> str:
    return f"[mirror]\ndirectory = /srv/pypi\n{mirror}\n{rest}"


def notes_of(text: str) -> dict[tuple[str, str], Note]:
    return {(note.section, note.key): note for note in translate(text).notes}


# (bandersnatch line, our [mirror] keys written) for every key carried over.
CARRIED = [
    ("master = https://pypi.example.org/", {"upstream": "https://pypi.example.org"}),
    (
        "master = http://127.0.0.1:8000",
        {"upstream": "http://127.0.0.1:8000", "allow-non-https": "true"},
    ),
    ("proxy = http://proxy:3128", {"proxy": "http://proxy:3128"}),
    ("proxy =", {}),
    ("allow-non-https = true", {"allow-non-https": "true"}),
    ("json = true", {"json": "true"}),
    ("simple-format = ALL", {"formats": "html json"}),
    ("simple-format = HTML", {"formats": "html"}),
    ("simple-format = json", {"formats": "json"}),
    ("timeout = 7", {"connect-timeout": "7", "read-timeout": "7"}),
    ("workers = 8", {"workers": "8"}),
]


@pytest.mark.parametrize(("line", "expected"), CARRIED)
def test_mirror_keys_carried_over(line: str, expected: dict[str, str]) -> None:
    translation = translate(conf(line))
    assert dict(translation.sections["mirror"]) == {"directory": "/srv/pypi", **expected}
    assert translation.notes == ()
    parse_config(translation.render())  # what adopt writes is a valid config


# (bandersnatch line, redundant?, words of the reason) for every key not carried over.
NOTED = [
    ("storage-backend = filesystem", True, "default backend"),
    ("storage-backend = swift", False, "not supported"),
    ("storage-filesystem-manage-permissions = true", False, "umask"),
    ("storage-filesystem-manage-permissions = false", True, "umask"),
    ("download-mirror = https://near.example.org/", False, "only from the URLs"),
    ("download-mirror =", True, "not set"),
    ("download-mirror-no-fallback = true", False, "no download mirror"),
    ("download-mirror-no-fallback = false", True, "not set"),
    ("release-files = false", False, "metadata-only"),
    ("release-files = true", True, "always"),
    ("core-metadata = false", False, "PEP 658"),
    ("core-metadata = true", True, "always"),
    ("hash-index = true", False, "simple/<project>/"),
    ("hash-index = false", True, "layout"),
    ("compare-method = stat", False, "sha256"),
    ("compare-method = hash", True, "sha256"),
    ("digest_name = md5", False, "sha256"),
    ("digest_name = sha256", True, "sha256"),
    ("keep-index-versions = 3", False, "history"),
    ("keep-index-versions = 0", True, "one current page"),
    ("keep_index_versions = 2", False, "history"),
    ("cleanup = true", True, "normalized"),
    ("stop-on-error = true", False, "back-off"),
    ("stop-on-error = false", True, "back-off"),
    ("cleanup_todo = true", True, "no longer has"),
    ("delete_missing_packages = true", True, "no longer has"),
    ("global-timeout = 1800", False, "read-timeout"),
    ("verifiers = 3", False, "mirror verify"),
    ("root_uri = https://files.example.org", False, "relatively"),
    ("root_uri =", True, "not set"),
    ("diff-file = /srv/diff", False, "file history"),
    ("diff-file =", True, "not set"),
    ("diff-append-epoch = true", False, "diff-file"),
    ("log-config = /etc/log.conf", False, "stderr"),
    ("frobnicate = 1", False, "unknown to bandersnatch"),
]


@pytest.mark.parametrize(("line", "redundant", "words"), NOTED)
def test_mirror_keys_named_with_a_reason(line: str, redundant: bool, words: str) -> None:
    key = line.split("=", maxsplit=1)[0].strip()
    translation = translate(conf(line))
    (note,) = translation.notes
    assert (note.section, note.key, note.redundant, note.filter) == (
        "mirror",
        key,
        redundant,
        False,
    )
    assert words in note.reason
    assert dict(translation.sections["mirror"]) == {"directory": "/srv/pypi"}
    rendered = translation.render()
    heading = "# Needing no counterpart:" if redundant else "# Not carried over:"
    assert heading in rendered
    assert f"[mirror] {key}" in rendered
    parse_config(rendered)


def test_every_bandersnatch_mirror_key_has_a_row(bandersnatch_script: Path) -> None:
    """Every key of bandersnatch 8.2's defaults.conf is in the table, and the tests
    above cover every row."""
    defaults = defaults_conf(bandersnatch_script)
    keys = {
        line.split("=", maxsplit=1)[0].strip()
        for line in defaults.read_text().splitlines()
        if "=" in line and not line.startswith(";")
    }
    assert keys <= set(MIRROR_KEYS)
    lines = [line for line, _ in CARRIED] + [line for line, _, _ in NOTED]
    tested = {line.split("=", maxsplit=1)[0].strip() for line in lines}
    assert set(MIRROR_KEYS) <= tested | {"directory"}


def test_bandersnatch_defaults_translate_to_a_valid_config(bandersnatch_script: Path) -> None:
    defaults = defaults_conf(bandersnatch_script)
    text = defaults.read_text().replace("[mirror]", "[mirror]\ndirectory = /srv/pypi", 1)
    translation = translate(text)
    config = parse_config(translation.render())
    assert config.directory == Path("/srv/pypi")
    assert config.upstream_url == "https://pypi.org"
    assert config.workers == 3
    assert config.connect_timeout_seconds == config.read_timeout_seconds == 10
    assert translation.lost_filters == ()


# (enabled plug-ins, sections, our sections written, notes expected as (section, key, words))
FILTERS = [
    (
        "allowlist_project\nallowlist_release",
        "[allowlist]\npackages =\n  foo>=1\n  Bar",
        {"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "foo>=1\nBar"}},
        [],
    ),
    (
        "allowlist_project",
        "[allowlist]\npackages =\n  foo>=1\n\n  bar",
        {"plugins": {"enabled": "allowlist"}, "allowlist": {"packages": "foo\nbar"}},
        [("allowlist", "packages", "carried over as foo")],
    ),
    (
        "project_requirements_pinned",
        "[allowlist]\nrequirements_path = /etc/req\nrequirements = a.txt",
        {
            "plugins": {"enabled": "allowlist"},
            "allowlist": {"requirements_path": "/etc/req", "requirements": "a.txt"},
        },
        [],
    ),
    (
        "project_requirements",
        "[allowlist]\nrequirements = a.txt",
        {"plugins": {"enabled": "allowlist"}, "allowlist": {"requirements": "a.txt"}},
        [("allowlist", "requirements", "project_requirements_pinned")],
    ),
    (
        "blocklist_project\nblocklist_release",
        "[blocklist]\npackages =\n  foo\n  bar<2",
        {"plugins": {"enabled": "blocklist"}, "blocklist": {"packages": "foo\nbar<2"}},
        [],
    ),
    (
        "blocklist_project",
        "[blocklist]\npackages =\n  foo\n  bar<2\n  # comment",
        {"plugins": {"enabled": "blocklist"}, "blocklist": {"packages": "foo"}},
        [("blocklist", "packages", "left out")],
    ),
    (
        "exclude_platform",
        "[blocklist]\nplatforms =\n  win\n  macosx\n  linux\n  py2.7\n  win_amd64",
        {
            "plugins": {"enabled": "blocklist"},
            "blocklist": {"platforms": "windows macos linux py2.7 win_amd64"},
        },
        [],
    ),
    (
        "blocklist_project",
        "[blocklist]\npackages = foo\nplatforms = windows",
        {"plugins": {"enabled": "blocklist"}, "blocklist": {"packages": "foo"}},
        [("blocklist", "platforms", "exclude_platform")],
    ),
    (
        "prerelease_release",
        "[filter_prerelease]\npackages = foo",
        {"plugins": {"enabled": "prerelease"}, "filter_prerelease": {"packages": "foo"}},
        [],
    ),
    (
        "regex_project\nregex_release",
        "[filter_regex]\npackages = .+-evil$\nreleases = .+alpha\\d+",
        {
            "plugins": {"enabled": "regex"},
            "filter_regex": {"packages": ".+-evil$", "releases": ".+alpha\\d+"},
        },
        [],
    ),
    (
        "regex_release",
        "[filter_regex]\npackages = .+-evil$\nreleases = .+alpha\\d+",
        {"plugins": {"enabled": "regex"}, "filter_regex": {"releases": ".+alpha\\d+"}},
        [("filter_regex", "packages", "regex_project")],
    ),
    (
        "latest_release",
        "[latest_release]\nkeep = 3\nsort_by = time",
        {
            "plugins": {"enabled": "latest_release"},
            "latest_release": {"keep": "3", "sort_by": "time"},
        },
        [],
    ),
    (
        "size_project_metadata",
        "[size_project_metadata]\nmax_package_size = 1G",
        {"plugins": {"enabled": "size"}, "size_project_metadata": {"max_package_size": "1G"}},
        [],
    ),
    (
        "size_project_metadata\nallowlist_project",
        "[size_project_metadata]\nmax_package_size = 1G\n[allowlist]\npackages = foo",
        {
            "plugins": {"enabled": "size\nallowlist"},
            "allowlist": {"packages": "foo"},
            "size_project_metadata": {"max_package_size": "1G"},
        },
        [("size_project_metadata", "max_package_size", "exempts allowlisted")],
    ),
    (
        "allowlist_project",
        "",
        {},
        [],
    ),
    (
        "",
        "[latest_release]\nkeep = 3",
        {},
        [("latest_release", "keep", "no enabled filter")],
    ),
    (
        "latest_release",
        "[latest_release]\nkeep = 3\nfrob = 1\n[s3]\nregion_name = x\n[weird]",
        {"plugins": {"enabled": "latest_release"}, "latest_release": {"keep": "3"}},
        [
            ("latest_release", "frob", "unknown key"),
            ("s3", "region_name", "bucket"),
            ("weird", "", "does not read"),
        ],
    ),
]


@pytest.mark.parametrize(("enabled", "sections", "expected", "noted"), FILTERS)
def test_filters_translated(
    enabled: str,
    sections: str,
    expected: dict[str, dict[str, str]],
    noted: list[tuple[str, str, str]],
) -> None:
    plugins = (
        "[plugins]\nenabled =\n" + "".join(f"  {w}\n" for w in enabled.split()) if enabled else ""
    )
    translation = translate(conf(rest=plugins + sections))
    written = {s: dict(v) for s, v in translation.sections.items() if s != "mirror"}
    assert written == expected
    got = [(n.section, n.key, n.reason) for n in translation.notes]
    assert len(got) == len(noted)
    for (section, key, reason), (want_section, want_key, words) in zip(got, noted, strict=True):
        assert (section, key) == (want_section, want_key)
        assert words in reason
    assert translation.lost_filters == ()


LOST = [
    "regex_project_metadata",
    "regex_release_file_metadata",
    "version_range_release_file_metadata",
    "versions_count_project_metadata",
    "my_own_plugin",
]


@pytest.mark.parametrize("plugin", LOST)
def test_filters_without_an_equivalent_are_lost_filters_never_dropped(plugin: str) -> None:
    translation = translate(
        conf(
            rest=f"[plugins]\nenabled =\n  {plugin}\n  latest_release\n[latest_release]\nkeep = 2\n"
        )
    )
    (lost,) = translation.lost_filters
    assert (lost.section, lost.key, lost.value, lost.filter) == ("plugins", "enabled", plugin, True)
    assert f"[plugins] enabled = {plugin}" in translation.render()
    assert dict(translation.sections["plugins"]) == {"enabled": "latest_release"}


def test_all_enables_every_plugin_and_reports_the_ones_without_equivalent() -> None:
    translation = translate(conf(rest="[plugins]\nenabled = all\n[allowlist]\npackages = foo\n"))
    lost = {note.value for note in translation.lost_filters}
    assert lost == {name for name, ours in FILTER_PLUGINS.items() if ours is None}
    enabled = translation.sections["plugins"]["enabled"].split("\n")
    assert set(enabled) == {ours for ours in FILTER_PLUGINS.values() if ours is not None}


def test_metadata_filter_sections_are_named() -> None:
    noted = notes_of(conf(rest="[regex_project_metadata]\ninfo.classifiers = .*\n"))
    assert "JSON metadata" in noted["regex_project_metadata", "info.classifiers"].reason


def test_plugins_unknown_key_and_flags() -> None:
    translation = translate(
        conf(
            "hash-index = true\ndigest_name = md5", "[plugins]\nenabled = latest_release\nfoo = 1\n"
        )
    )
    assert translation.hash_index is True
    assert translation.digest == "md5"
    assert notes_of(conf(rest="[plugins]\nfoo = 1\n"))["plugins", "foo"].reason == "unknown key"


def test_bad_simple_format_is_noted() -> None:
    assert (
        "ALL, HTML, JSON" in notes_of(conf("simple-format = xml"))["mirror", "simple-format"].reason
    )


def test_case_of_keys_is_ignored_as_bandersnatch_does() -> None:
    assert translate(conf("Workers = 5")).sections["mirror"]["workers"] == "5"


@pytest.mark.parametrize(
    ("text", "words"),
    [("not an ini file", "does not parse"), ("[mirror]\nworkers = 3\n", "no directory")],
)
def test_unusable_text_is_a_config_error(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        translate(text)


def test_render_writes_multi_line_values_indented() -> None:
    text = translate(
        conf(rest="[plugins]\nenabled = allowlist_release\n[allowlist]\npackages =\n  a\n  b\n")
    ).render()
    assert "[allowlist]\npackages =\n    a\n    b\n" in text


def test_a_line_that_is_no_requirement_is_passed_on_for_mirror_to_refuse() -> None:
    translation = translate(
        conf(rest="[plugins]\nenabled = allowlist_project\n[allowlist]\npackages = not a name!\n")
    )
    assert translation.sections["allowlist"]["packages"] == "not a name!"
    assert translation.directory == "/srv/pypi"
    with pytest.raises(ConfigError, match="packages"):
        parse_config(translation.render())
