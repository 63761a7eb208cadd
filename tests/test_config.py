"""Tests for mirror.config: the INI file becomes a validated Config or a ConfigError."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mirror.config import KNOWN_SECTIONS, Config, load_config, parse_config
from mirror.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "mirror.conf.example"

# The [mirror] key each Config field comes from; `source` is not a key.
FIELD_KEYS = {
    "directory": "directory",
    "upstream_url": "upstream",
    "workers": "workers",
    "download_concurrency": "download-concurrency",
    "connect_timeout_seconds": "connect-timeout",
    "read_timeout_seconds": "read-timeout",
    "retries": "retries",
    "formats": "formats",
    "keep_json": "json",
    "verify_provenance": "verify-provenance",
    "metadata_source": "metadata-source",
    "upstream_api": "upstream-api",
    "allow_non_https": "allow-non-https",
    "user_agent_contact": "contact",
    "retry_base_seconds": "retry-base",
    "retry_max_seconds": "retry-max",
    "interval_seconds": "interval",
    "interval_jitter_seconds": "interval-jitter",
    "metrics_file": "metrics-file",
    "ca_bundle": "ca-bundle",
    "proxy_url": "proxy",
    "keep_removed_seconds": "keep-removed",
    "cooldown_seconds": "cooldown",
    "recheck_interval_seconds": "recheck-interval",
    "serve_host": "host",
    "serve_port": "port",
    "serve_access_log": "access-log",
    "packages_redirect": "packages-redirect",
    "on_demand": "on-demand",
    "on_demand_timeout_seconds": "on-demand-timeout",
    "journal_retention_seconds": "journal-retention",
    "s3": "backend",
}
# [storage]'s other keys: all of them are the one field `s3`.
STORAGE_KEYS = {"bucket", "prefix", "endpoint-url", "region"}
# bandersnatch's spellings, accepted as aliases.
ALIAS_KEYS = {"master", "timeout", "simple-format"}
# Where the example's filter sections start; they are not Config fields.
FILTERS_HEADING = "; ==== Filters"


def mirror_section(*lines: str) -> str:
    """A config with the required directory and the given extra [mirror] lines."""
    return "\n".join(["[mirror]", "directory = /srv/mirror", *lines, ""])


def config_error(text: str, *, source: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=source)
    return info.value


def test_defaults_apply_when_only_directory_is_set() -> None:
    config = parse_config(mirror_section())
    assert config == Config(
        directory=Path("/srv/mirror"),
        upstream_url="https://pypi.org",
        workers=64,
        download_concurrency=64,
        connect_timeout_seconds=10.0,
        read_timeout_seconds=60.0,
        retries=5,
        formats=frozenset({"html", "json"}),
        keep_json=False,
        metadata_source="simple",
        upstream_api="auto",
        allow_non_https=False,
        user_agent_contact=None,
        retry_base_seconds=300.0,
        retry_max_seconds=86400.0,
        source=None,
    )


def test_config_constructor_defaults_match_the_parsers() -> None:
    assert Config(directory=Path("/srv/mirror")) == parse_config(mirror_section())


def test_config_is_frozen() -> None:
    config = parse_config(mirror_section())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 8  # type: ignore[misc]


VALID = [
    # (line, field, expected value)
    ("upstream = https://pypi.org", "upstream_url", "https://pypi.org"),
    ("upstream = https://pypi.org/", "upstream_url", "https://pypi.org"),
    (
        "upstream = HTTPS://mirror.example:8443/pypi//",
        "upstream_url",
        "https://mirror.example:8443/pypi",
    ),
    ("upstream = https://[::1]:8080", "upstream_url", "https://[::1]:8080"),
    (
        "upstream = https://10.0.0.7:3141/root/pypi",
        "upstream_url",
        "https://10.0.0.7:3141/root/pypi",
    ),
    ("upstream = https://index_host.internal", "upstream_url", "https://index_host.internal"),
    ("upstream = https://bücher.example", "upstream_url", "https://bücher.example"),
    (
        "upstream = https://user:secret@index.example/",
        "upstream_url",
        "https://user:secret@index.example",
    ),
    ("workers = 1", "workers", 1),
    ("workers = 256", "workers", 256),
    ("download-concurrency = 1", "download_concurrency", 1),
    ("download-concurrency = 512", "download_concurrency", 512),
    ("connect-timeout = 3", "connect_timeout_seconds", 3.0),
    ("connect-timeout = 1.5", "connect_timeout_seconds", 1.5),
    ("connect-timeout = 500ms", "connect_timeout_seconds", 0.5),
    ("read-timeout = 2m", "read_timeout_seconds", 120.0),
    ("read-timeout = 90 seconds", "read_timeout_seconds", 90.0),
    ("retries = 0", "retries", 0),
    ("retries = 20", "retries", 20),
    ("formats = html", "formats", frozenset({"html"})),
    ("formats = JSON", "formats", frozenset({"json"})),
    ("formats = html,json", "formats", frozenset({"html", "json"})),
    ("formats = json , html html", "formats", frozenset({"html", "json"})),
    ("json = true", "keep_json", True),
    ("json = Yes", "keep_json", True),
    ("json = on", "keep_json", True),
    ("json = 1", "keep_json", True),
    ("json = false", "keep_json", False),
    ("json = NO", "keep_json", False),
    ("json = off", "keep_json", False),
    ("json = 0", "keep_json", False),
    ("verify-provenance = true", "verify_provenance", True),
    ("metadata-source = json", "metadata_source", "json"),
    ("metadata-source = Simple", "metadata_source", "simple"),
    ("upstream-api = simple", "upstream_api", "simple"),
    ("upstream-api = XMLRPC", "upstream_api", "xmlrpc"),
    ("upstream-api = auto", "upstream_api", "auto"),
    ("allow-non-https = true", "allow_non_https", True),
    ("contact = ops@example.org", "user_agent_contact", "ops@example.org"),
    (
        "contact = https://example.org/mirror (ops team)",
        "user_agent_contact",
        "https://example.org/mirror (ops team)",
    ),
    ("contact =", "user_agent_contact", None),
    ("retry-base = 30", "retry_base_seconds", 30.0),
    ("retry-base = 1h", "retry_base_seconds", 3600.0),
    ("retry-max = 1w", "retry_max_seconds", 604800.0),
    ("retry-max = 5m", "retry_max_seconds", 300.0),
]


@pytest.mark.parametrize(("line", "field", "expected"), VALID)
def test_valid_value_is_parsed(line: str, field: str, expected: object) -> None:
    config = parse_config(mirror_section(line))
    assert getattr(config, field) == expected


def test_http_upstream_is_accepted_with_allow_non_https() -> None:
    config = parse_config(
        mirror_section("upstream = http://127.0.0.1:8080/", "allow-non-https = yes")
    )
    assert config.upstream_url == "http://127.0.0.1:8080"
    assert config.allow_non_https is True


INVALID = [
    # (line, key named in the error, fragment of the message)
    ("upstream = ftp://pypi.org", "upstream", "expected an http:// or https:// URL with a host"),
    ("upstream = pypi.org", "upstream", "expected an http:// or https:// URL with a host"),
    ("upstream = https://", "upstream", "expected an http:// or https:// URL with a host"),
    ("upstream = https:///simple", "upstream", "with a host"),
    ('upstream = "https://pypi.org"', "upstream", "with a host"),
    ("upstream = https://pypi.org:99999", "upstream", "invalid port"),
    ("upstream = https://pypi.org:http", "upstream", "invalid port"),
    ("upstream = https://%zz/", "upstream", "invalid host"),
    ("upstream = https://[::1/", "upstream", "invalid host"),
    ("upstream = https://a!b/", "upstream", "invalid host"),
    ("upstream = https://pypi.org/?x=1", "upstream", "must not have a query or fragment"),
    ("upstream = https://pypi.org/#top", "upstream", "must not have a query or fragment"),
    ("upstream = https://pypi.org/simple/", "upstream", "without /simple"),
    ("upstream = https://pypi .org", "upstream", "spaces or control characters"),
    ("upstream = http://pypi.org", "upstream", "refused unless allow-non-https = true"),
    ("upstream =", "upstream", "expected an http:// or https:// URL"),
    ("master = http://pypi.org", "master", "refused unless allow-non-https = true"),
    ("workers = 0", "workers", "must be between 1 and 256, got 0"),
    ("workers = 257", "workers", "must be between 1 and 256, got 257"),
    ("workers = -1", "workers", "must be between 1 and 256, got -1"),
    ("workers = four", "workers", "expected a whole number, got 'four'"),
    ("workers = 4.0", "workers", "expected a whole number"),
    ("workers = 4_0", "workers", "expected a whole number"),
    ("workers =", "workers", "expected a whole number, got ''"),
    ("workers = 4  # more", "workers", "comments must be on a line of their own"),
    ("download-concurrency = 0", "download-concurrency", "between 1 and 512"),
    ("download-concurrency = 513", "download-concurrency", "between 1 and 512"),
    ("download-concurrency = lots", "download-concurrency", "expected a whole number"),
    ("retries = -1", "retries", "between 0 and 20"),
    ("retries = 21", "retries", "between 0 and 20"),
    ("retries = 3 times", "retries", "expected a whole number"),
    ("connect-timeout = 0", "connect-timeout", "must be more than zero"),
    ("connect-timeout = -5", "connect-timeout", "expected a duration"),
    ("connect-timeout = soon", "connect-timeout", "expected a duration"),
    ("connect-timeout =", "connect-timeout", "expected a duration"),
    ("read-timeout = 0s", "read-timeout", "must be more than zero"),
    ("read-timeout = 1h30m", "read-timeout", "expected a duration"),
    ("timeout = inf", "timeout", "expected a duration"),
    ("retry-base = 0", "retry-base", "must be more than zero"),
    ("retry-base = never", "retry-base", "expected a duration"),
    ("retry-max = 0", "retry-max", "must be more than zero"),
    ("retry-max = 1m", "retry-max", "must be at least retry-base (5 minutes)"),
    ("formats = xml", "formats", "unknown format 'xml' (expected html, json)"),
    ("formats = html; json", "formats", "unknown format 'html;'"),
    ("formats =", "formats", "expected one or more of html, json"),
    ("formats = ,", "formats", "expected one or more of html, json"),
    ("simple-format = BOTH", "simple-format", "expected one of ALL, HTML, JSON, got 'BOTH'"),
    ("json = maybe", "json", "expected true or false"),
    ("json =", "json", "expected true or false"),
    ("allow-non-https = si", "allow-non-https", "expected true or false"),
    ("metadata-source = xmlrpc", "metadata-source", "expected one of json, simple, got 'xmlrpc'"),
    (
        "upstream-api = json",
        "upstream-api",
        "expected one of auto, simple, xmlrpc, got 'json'",
    ),
    ("contact = café@example.org", "contact", "printable ASCII"),
    ("contact = ops@example.org\n  second line", "contact", "printable ASCII"),
    (
        "upstream = https://pypi.org\nmaster = https://pypi.org",
        "master",
        "same setting as `upstream`",
    ),
    ("formats = html\nsimple-format = ALL", "simple-format", "same setting as `formats`"),
]


@pytest.mark.parametrize(("line", "key", "fragment"), INVALID)
def test_invalid_value_names_section_and_key(line: str, key: str, fragment: str) -> None:
    error = config_error(mirror_section(line))
    assert (error.section, error.key) == ("mirror", key)
    assert str(error).startswith(f"[mirror] {key}: ")
    assert fragment in str(error)


def test_credentials_in_a_bad_upstream_url_are_not_echoed() -> None:
    error = config_error(mirror_section("upstream = ftp://user:secret@pypi.org"))
    assert "secret" not in str(error)
    assert "ftp://***@pypi.org" in str(error)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("master = https://index.example/", "https://index.example"),
        ("upstream = https://index.example", "https://index.example"),
    ],
)
def test_master_is_an_alias_for_upstream(line: str, expected: str) -> None:
    assert parse_config(mirror_section(line)).upstream_url == expected


@pytest.mark.parametrize(
    ("value", "formats"),
    [
        ("ALL", {"html", "json"}),
        ("all", {"html", "json"}),
        ("HTML", {"html"}),
        ("JSON", {"json"}),
    ],
)
def test_simple_format_is_an_alias_for_formats(value: str, formats: set[str]) -> None:
    config = parse_config(mirror_section(f"simple-format = {value}"))
    assert config.formats == frozenset(formats)


@pytest.mark.parametrize(
    ("lines", "connect", "read"),
    [
        (["timeout = 30"], 30.0, 30.0),
        (["timeout = 30", "connect-timeout = 5"], 5.0, 30.0),
        (["read-timeout = 2m", "timeout = 30"], 30.0, 120.0),
        (["timeout = 30", "connect-timeout = 5", "read-timeout = 90"], 5.0, 90.0),
    ],
)
def test_timeout_sets_both_timeouts_and_specific_keys_win(
    lines: list[str], connect: float, read: float
) -> None:
    config = parse_config(mirror_section(*lines))
    assert (config.connect_timeout_seconds, config.read_timeout_seconds) == (connect, read)


def test_relative_directory_is_resolved_against_the_config_files_directory(
    tmp_path: Path,
) -> None:
    text = "[mirror]\ndirectory = data/mirror\n"
    config = parse_config(text, source=tmp_path / "etc" / "mirror.conf")
    assert config.directory == tmp_path / "etc" / "data" / "mirror"
    assert config.source == tmp_path / "etc" / "mirror.conf"


def test_relative_directory_without_a_source_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config("[mirror]\ndirectory = mirror\n")
    assert config.directory == tmp_path / "mirror"
    assert config.directory.is_absolute()


def test_relative_source_still_gives_an_absolute_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config("[mirror]\ndirectory = mirror\n", source=Path("mirror.conf"))
    assert config.directory == tmp_path / "mirror"


def test_absolute_directory_is_kept(tmp_path: Path) -> None:
    config = parse_config("[mirror]\ndirectory = /srv/pypi\n", source=tmp_path / "m.conf")
    assert config.directory == Path("/srv/pypi")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mirror]\nworkers = 4\n", "[mirror] directory: required key is missing"),
        ("[mirror]\ndirectory =\n", "[mirror] directory: must not be empty"),
    ],
)
def test_directory_is_required(text: str, message: str) -> None:
    error = config_error(text)
    assert (error.section, error.key) == ("mirror", "directory")
    assert str(error) == message


@pytest.mark.parametrize("text", ["", "# nothing here\n", "\n\n"])
def test_missing_mirror_section_is_an_error(text: str) -> None:
    error = config_error(text)
    assert (error.section, error.key) == ("mirror", None)
    assert str(error).startswith("[mirror]: missing section")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("plugins", "[plugins] workers: unknown key"),
        ("Mirror", "[Mirror]: unknown section; did you mean [mirror]?"),
        ("mirrors", "[mirrors]: unknown section; did you mean [mirror]?"),
        ("DEFAULT", "[DEFAULT]: unknown section"),
    ],
)
def test_unknown_section_is_an_error(section: str, message: str) -> None:
    error = config_error(mirror_section() + f"[{section}]\nworkers = 8\n")
    assert error.section == section
    assert str(error) == message


def test_default_section_keys_do_not_leak_into_mirror() -> None:
    error = config_error("[DEFAULT]\nworkers = 8\n" + mirror_section())
    assert str(error) == "[DEFAULT]: unknown section"


def test_known_sections_are_mirror_serve_and_storage() -> None:
    assert frozenset({"mirror", "serve", "storage"}) == KNOWN_SECTIONS


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("worker = 3", "worker", "unknown key; did you mean 'workers'?"),
        ("Workers = 3", "Workers", "unknown key; did you mean 'workers'?"),
        (
            "download_concurrency = 3",
            "download_concurrency",
            "did you mean 'download-concurrency'?",
        ),
        ("read_timeout = 3", "read_timeout", "did you mean 'read-timeout'?"),
        ("upstream-url = https://pypi.org", "upstream-url", "did you mean 'upstream'?"),
        ("frobnicate = 1", "frobnicate", "unknown key"),
        (
            "global-timeout = 1800",
            "global-timeout",
            "unknown key (a bandersnatch option that mirror does not support)",
        ),
        ("hash-index = false", "hash-index", "a bandersnatch option that mirror does not support"),
        ("stop-on-error = true", "stop-on-error", "a bandersnatch option"),
    ],
)
def test_unknown_key_is_an_error_with_a_hint(line: str, key: str, message: str) -> None:
    error = config_error(mirror_section(line))
    assert (error.section, error.key) == ("mirror", key)
    assert str(error).startswith(f"[mirror] {key}: unknown key")
    assert message in str(error)


def test_unknown_key_without_a_close_match_gets_no_suggestion() -> None:
    error = config_error(mirror_section("frobnicate = 1"))
    assert str(error) == "[mirror] frobnicate: unknown key"


@pytest.mark.parametrize(
    ("text", "message", "section", "key"),
    [
        (
            "directory = /srv/mirror\n",
            "/etc/m.conf, line 1: expected a section header such as [mirror] "
            "before 'directory = /srv/mirror'",
            None,
            None,
        ),
        (
            "[mirror]\ndirectory = /srv/mirror\nworkers\n",
            "/etc/m.conf, line 3: expected `key = value`, a [section] or a comment, got 'workers'",
            None,
            None,
        ),
        (
            "[mirror]\ndirectory: /srv/mirror\n",
            "/etc/m.conf, line 2: expected `key = value`, a [section] or a comment, "
            "got 'directory: /srv/mirror'",
            None,
            None,
        ),
        (
            "[mirror]\ndirectory = /a\n\n# again\ndirectory = /b\n",
            "[mirror] directory: /etc/m.conf, line 5: key appears twice in the section",
            "mirror",
            "directory",
        ),
        (
            "[mirror]\ndirectory = /a\n[mirror]\n",
            "[mirror]: /etc/m.conf, line 3: section appears twice",
            "mirror",
            None,
        ),
    ],
)
def test_syntax_error_names_the_file_and_line(
    text: str, message: str, section: str | None, key: str | None
) -> None:
    error = config_error(text, source=Path("/etc/m.conf"))
    assert str(error) == message
    assert (error.section, error.key) == (section, key)


def test_syntax_error_without_a_source_names_the_line() -> None:
    error = config_error("[mirror]\n= 5\n")
    assert str(error) == "line 2: expected `key = value`, a [section] or a comment, got '= 5'"


def test_comments_keys_and_values_follow_bandersnatch_rules() -> None:
    text = (
        "# a hash comment\n"
        "; a semicolon comment\n"
        "[mirror]\n"
        "  # indented comment\n"
        "directory = /srv/mirror\n"
        "contact = ops: 50% of the time\n"
        "workers=2\n"
    )
    config = parse_config(text)
    # `:` is not a delimiter and `%` is not interpolated.
    assert config.user_agent_contact == "ops: 50% of the time"
    assert config.workers == 2


@pytest.mark.parametrize(
    "text",
    [
        "\x00",
        "[",
        "[]\n",
        "[mirror]\ndirectory = /srv/mirror\n  continued\n[mirror\n",
        "[mirror]\ndirectory = /a\nupstream = https://[::1]x/\n",
        "[mirror]\ndirectory = /a\nupstream = https://u@/\n",
        "[mirror]\ndirectory = /a\nretry-base = 99999999999999999999999999w\n",
    ],
)
def test_garbage_raises_config_error_only(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(text)


def test_load_config_reads_the_file_and_records_its_path(tmp_path: Path) -> None:
    path = tmp_path / "mirror.conf"
    path.write_text("[mirror]\ndirectory = web-root\nworkers = 2\n", encoding="utf-8")
    config = load_config(path)
    assert config.source == path
    assert config.directory == tmp_path / "web-root"
    assert config.workers == 2


def test_load_config_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "mirror.conf"
    path.write_bytes(b"\xef\xbb\xbf[mirror]\ndirectory = /srv/mirror\n")
    assert load_config(path).directory == Path("/srv/mirror")


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.conf"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read {path}: No such file or directory"


def test_unreadable_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (who ignores permissions).
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"cannot read {tmp_path}: ")


def test_non_utf8_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes("[mirror]\ndirectory = /srv/caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"cannot read {path}: not UTF-8 text")


def test_load_config_reports_errors_inside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mirror.conf"
    path.write_text("[mirror]\ndirectory = /srv/mirror\nworkers = 1000\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "[mirror] workers: must be between 1 and 256, got 1000"


def test_example_config_parses_to_the_documented_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config == Config(directory=Path("/srv/mirror"), source=EXAMPLE)
    assert config.upstream_url == "https://pypi.org"


def example_keys() -> set[str]:
    """Every key the example sets or shows commented out (`; key = value`), up to the
    filter sections (tests/test_filters_config.py checks those)."""
    pattern = re.compile(r"^[;#]?\s?([a-z][a-z-]*) =(?: |$)")
    text = EXAMPLE.read_text(encoding="utf-8").split(FILTERS_HEADING)[0]
    return {match[1] for line in text.splitlines() if (match := pattern.match(line))}


def test_every_config_field_has_a_key_in_this_table() -> None:
    fields = {field.name for field in dataclasses.fields(Config)}
    assert set(FIELD_KEYS) == fields - {"source", "filter_sections", "filters"}


def test_example_documents_every_key_and_no_others() -> None:
    assert example_keys() == set(FIELD_KEYS.values()) | ALIAS_KEYS | STORAGE_KEYS


def test_every_key_in_the_example_is_explained_by_a_comment_above_it() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z][a-z-]* =", line):
            above = lines[number - 1]
            assert above.startswith(";"), f"line {number + 1} {line!r} has no comment above"


@pytest.mark.parametrize("key", sorted(ALIAS_KEYS | {"contact"}))
def test_commented_out_keys_in_the_example_are_valid_when_uncommented(key: str) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    (example_line,) = [line for line in lines if line.startswith(f"; {key} =")]
    replaces = {"master": "upstream", "simple-format": "formats"}.get(key)
    kept = [line for line in lines if replaces is None or not line.startswith(f"{replaces} =")]
    # Into [mirror], whichever section ends the file.
    kept.insert(kept.index("[mirror]") + 1, example_line.removeprefix("; "))
    parse_config("\n".join(kept))


def test_example_warns_that_without_a_project_list_all_of_pypi_is_mirrored() -> None:
    head = EXAMPLE.read_text(encoding="utf-8").split("[mirror]", 1)[0]
    assert "ALL of PyPI" in head
    assert "--project" in head
