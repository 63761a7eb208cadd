"""bandersnatch 8.2's configuration translated to mirror's, key by key, without I/O.

``mirror adopt`` reads the ``bandersnatch.conf`` of the mirror it takes over and
writes the equivalent ``mirror.conf``. Every key of bandersnatch's ``[mirror]``,
``[plugins]`` and filter sections has a row in one of the tables below: it is carried
over (under our name, its value translated), or named in a :class:`Note` saying why
it cannot be (or why it need not be: a setting whose only value mirror has). A filter
that cannot be carried over is never dropped silently: it is a note with
``filter=True``, and ``mirror adopt`` refuses to go on until the operator takes it
out of the file it adopts (the mirror would otherwise keep more than bandersnatch did).

bandersnatch reads its file with configparser's defaults: keys are case-insensitive
(lowered here too) and values are stripped.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement

from mirror.errors import ConfigError
from mirror.filters import BANDERSNATCH_NAMES

MIRROR: Final = "mirror"
PLUGINS: Final = "plugins"


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """A bandersnatch key (or filter) not carried over as it was, and why."""

    section: str
    key: str
    value: str
    reason: str
    filter: bool = False
    """True when a filter is lost: the mirror would keep more than bandersnatch did."""
    redundant: bool = False
    """True when the value is what mirror always does: nothing is lost."""

    def line(self) -> str:
        """``[section] key = value: reason``, as adopt prints it."""
        shown = f" = {self.value}" if self.value else ""
        return f"[{self.section}] {self.key}{shown}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation:
    """The result: our config's sections (ordered ``{section: {key: value}}``) and the
    notes, in the order of bandersnatch's file."""

    sections: Mapping[str, Mapping[str, str]]
    notes: tuple[Note, ...]
    hash_index: bool = False
    """bandersnatch's ``hash-index``: its pages are at ``simple/<p[0]>/<p>/``."""
    digest: str = "sha256"

    @property
    def lost_filters(self) -> tuple[Note, ...]:
        return tuple(note for note in self.notes if note.filter)

    @property
    def directory(self) -> str:
        return self.sections[MIRROR]["directory"]

    def render(self) -> str:
        """The config file text: the notes as comments on top, then the sections."""
        lines = ["# Translated by `mirror adopt` from bandersnatch's configuration."]
        lost = [note for note in self.notes if not note.redundant]
        if lost:
            lines.append("# Not carried over:")
            lines.extend(f"#   {note.line()}" for note in lost)
        same = [note for note in self.notes if note.redundant]
        if same:
            lines.append("# Needing no counterpart:")
            lines.extend(f"#   {note.line()}" for note in same)
        for section, values in self.sections.items():
            lines += ["", f"[{section}]"]
            for key, value in values.items():
                if "\n" in value:
                    lines.append(f"{key} =")
                    lines.extend(f"    {part}" for part in value.split("\n") if part)
                else:
                    lines.append(f"{key} = {value}")
        return "\n".join(lines) + "\n"


# --- [mirror] ---------------------------------------------------------------------

_Out = list[tuple[str, str]]
"""``[(our key, our value)]`` a bandersnatch key becomes; empty for nothing."""


class _Dropped(Exception):  # noqa: N818 - a control-flow signal inside this module
    def __init__(self, reason: str, *, redundant: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.redundant = redundant


def _same(ours: str) -> Callable[[str], _Out]:
    return lambda value: [(ours, value)]


def _only(fine: Callable[[str], bool], why: str, *, redundant: str) -> Callable[[str], _Out]:
    """A key whose one value (``fine``) is mirror's only behaviour: nothing to write
    for it (noted with ``redundant``), and any other value is refused with ``why``."""

    def handle(value: str) -> _Out:
        if fine(value):
            raise _Dropped(redundant, redundant=True)
        raise _Dropped(why)

    return handle


def _bool(value: str) -> bool | None:
    return configparser.ConfigParser.BOOLEAN_STATES.get(value.lower())


def _is(expected: bool) -> Callable[[str], bool]:
    return lambda value: _bool(value) is expected


def _master(value: str) -> _Out:
    out = [("upstream", value.rstrip("/"))]
    if value.lower().startswith("http:"):
        out.append(("allow-non-https", "true"))
    return out


def _simple_format(value: str) -> _Out:
    formats = {"all": "html json", "html": "html", "json": "json"}.get(value.lower())
    if formats is None:
        raise _Dropped("not one of ALL, HTML, JSON; mirror writes both formats")
    return [("formats", formats)]


def _timeout(value: str) -> _Out:
    # bandersnatch's one socket timeout; ours are per connection and per read.
    return [("connect-timeout", value), ("read-timeout", value)]


def _keep_index_versions(value: str) -> _Out:
    if value.strip() in {"", "0"}:
        raise _Dropped("0 is mirror's behaviour (one current page)", redundant=True)
    raise _Dropped(
        "mirror keeps no page versions beside index.html; its state store keeps every "
        "file's history (the /snapshot/ views of `mirror serve`, `keep-removed`)"
    )


def _storage_backend(value: str) -> _Out:
    if value.lower() in {"filesystem", ""}:
        raise _Dropped("the file system is mirror's default backend", redundant=True)
    raise _Dropped(f"adopting a {value!r} mirror is not supported (only the file system)")


_REDUNDANT: Final = "mirror always does this"

MIRROR_KEYS: Final[Mapping[str, Callable[[str], _Out]]] = {
    "directory": _same("directory"),
    "master": _master,
    "proxy": lambda value: [("proxy", value)] if value else [],
    "allow-non-https": _same("allow-non-https"),
    "json": _same("json"),
    "simple-format": _simple_format,
    "timeout": _timeout,
    "workers": _same("workers"),
    "storage-backend": _storage_backend,
    "storage-filesystem-manage-permissions": _only(
        _is(False),
        "mirror does not chmod what it writes: files get the umask's permissions",
        redundant="mirror leaves permissions to the umask",
    ),
    "download-mirror": _only(
        lambda value: not value,
        "mirror downloads only from the URLs upstream's pages give",
        redundant="not set",
    ),
    "download-mirror-no-fallback": _only(
        _is(False), "mirror has no download mirror to fall back from", redundant="not set"
    ),
    "release-files": _only(
        _is(True),
        "mirror always stores the release files (a metadata-only mirror is not supported)",
        redundant=_REDUNDANT,
    ),
    "core-metadata": _only(
        _is(True),
        "mirror always serves PEP 658 .metadata files when upstream advertises them",
        redundant=_REDUNDANT,
    ),
    "hash-index": _only(
        _is(False),
        "mirror writes pages at simple/<project>/ only; adopt moves them there "
        "(drop the web server's rewrite rules)",
        redundant="mirror's layout",
    ),
    "compare-method": _only(
        lambda value: value.lower() == "hash",
        "mirror never re-reads files to compare them: its state store records each "
        "file's sha256 (`mirror verify` checks the disk)",
        redundant="mirror records every file's sha256",
    ),
    "digest_name": _only(
        lambda value: value.lower() == "sha256",
        "mirror's pages always carry sha256 (what pip and uv check)",
        redundant="mirror's pages carry sha256",
    ),
    "keep-index-versions": _keep_index_versions,
    "keep_index_versions": _keep_index_versions,
    "cleanup": _only(
        lambda _value: True,
        "",
        redundant="mirror writes only PEP 503 normalized directories",
    ),
    "stop-on-error": _only(
        _is(False),
        "mirror never stops a run for one project: it is retried with back-off "
        "(retry-base, retry-max) and never holds back the serial",
        redundant="mirror retries a failing project with back-off",
    ),
    "cleanup_todo": _only(
        lambda _value: True,
        "",
        redundant="mirror removes projects upstream no longer has",
    ),
    "delete_missing_packages": _only(
        lambda _value: True,
        "",
        redundant="mirror deletes the files and pages of projects upstream no longer has",
    ),
    "global-timeout": _only(
        lambda _value: False,
        "mirror has no whole-download deadline: read-timeout bounds each read",
        redundant="",
    ),
    "verifiers": _only(
        lambda _value: False,
        "`mirror verify` sizes its own thread pool",
        redundant="",
    ),
    "root_uri": _only(
        lambda value: not value,
        "mirror's pages link files relatively (or see [serve] packages-redirect)",
        redundant="not set",
    ),
    "diff-file": _only(
        lambda value: not value,
        "mirror writes no list of downloaded files; its state store's file history "
        "records when each file was mirrored",
        redundant="not set",
    ),
    "diff-append-epoch": _only(_is(False), "there is no diff-file", redundant="not set"),
    "log-config": _only(
        lambda value: not value,
        "mirror logs to stderr (-v, -q; the systemd journal)",
        redundant="not set",
    ),
}
"""Every ``[mirror]`` key of bandersnatch 8.2 (``defaults.conf`` and the options its
code reads) and what becomes of it."""

# --- filters ----------------------------------------------------------------------

FILTER_PLUGINS: Final[Mapping[str, str | None]] = {
    **BANDERSNATCH_NAMES,
    "regex_project_metadata": None,
    "regex_release_file_metadata": None,
    "version_range_release_file_metadata": None,
    "versions_count_project_metadata": None,
}
"""bandersnatch 8.2's filter plug-ins (its entry points) and our filter for each;
None: no equivalent."""

_NO_EQUIVALENT: Final[Mapping[str, str]] = {
    "regex_project_metadata": "mirror has no filter on a project's JSON metadata fields",
    "regex_release_file_metadata": "mirror has no filter on a file's JSON metadata fields "
    "(for package types see mirror's package_types filter)",
    "version_range_release_file_metadata": "mirror has no filter on version ranges of a "
    "file's JSON metadata fields (for Python versions see mirror's environment filter)",
    "versions_count_project_metadata": "mirror has no filter on a project's release count",
}

FILTER_SECTIONS: Final[Mapping[str, frozenset[str]]] = {
    "allowlist": frozenset({"packages", "requirements_path", "requirements"}),
    "blocklist": frozenset({"packages", "platforms"}),
    "filter_regex": frozenset({"packages", "releases"}),
    "filter_prerelease": frozenset({"packages"}),
    "latest_release": frozenset({"keep", "sort_by"}),
    "size_project_metadata": frozenset({"max_package_size"}),
}
"""The sections bandersnatch's translatable filters read, and their keys (the same
names in mirror)."""

_OTHER_SECTIONS: Final[Mapping[str, str]] = {
    "s3": "the S3 storage plug-in's settings; adopting a bucket is not supported",
    "swift": "the Swift storage plug-in's settings; not supported",
}

_PLATFORM_WORDS: Final[Mapping[str, str]] = {"win": "windows", "macosx": "macos"}
_WORD_RE: Final = re.compile(r"[\s,]+")


def translate(text: str) -> Translation:
    """Translate bandersnatch config ``text``. Raises ConfigError for text that is
    not an INI file, or without ``[mirror] directory``."""
    parser = configparser.ConfigParser(delimiters=("=", ":"), interpolation=None)
    try:
        parser.read_string(text, source="bandersnatch.conf")
    except configparser.Error as exc:
        raise ConfigError(f"bandersnatch's configuration does not parse: {exc}") from exc
    if not parser.has_option(MIRROR, "directory"):
        raise ConfigError("bandersnatch's configuration has no directory", section=MIRROR)
    notes: list[Note] = []
    ours: dict[str, dict[str, str]] = {MIRROR: {"directory": parser.get(MIRROR, "directory")}}
    for key, raw in parser.items(MIRROR):
        value = raw.strip()
        handler = MIRROR_KEYS.get(key)
        if handler is None:
            notes.append(
                Note(section=MIRROR, key=key, value=value, reason="unknown to bandersnatch")
            )
            continue
        try:
            for our_key, our_value in handler(value):
                ours[MIRROR][our_key] = our_value
        except _Dropped as dropped:
            notes.append(
                Note(
                    section=MIRROR,
                    key=key,
                    value=value,
                    reason=dropped.reason,
                    redundant=dropped.redundant,
                )
            )
    enabled = _enabled(parser)
    _translate_filters(parser, enabled, ours, notes)
    hash_index = _bool(parser.get(MIRROR, "hash-index", fallback="false")) is True
    digest = parser.get(MIRROR, "digest_name", fallback="sha256").lower()
    return Translation(sections=ours, notes=tuple(notes), hash_index=hash_index, digest=digest)


def _enabled(parser: configparser.ConfigParser) -> list[str]:
    raw = parser.get(PLUGINS, "enabled", fallback="")
    words = [word for word in _WORD_RE.split(raw) if word]
    if "all" in words:
        return sorted({*FILTER_PLUGINS, *(w for w in words if w != "all")})
    return list(dict.fromkeys(words))


def _translate_filters(
    parser: configparser.ConfigParser,
    enabled: Sequence[str],
    ours: dict[str, dict[str, str]],
    notes: list[Note],
) -> None:
    """``[plugins] enabled`` and the filter sections, into ``ours`` and ``notes``."""
    kept = _plugins(parser, enabled, notes)
    on = frozenset(enabled)
    sections: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        if section in {MIRROR, PLUGINS}:
            continue
        values = {key: value.strip() for key, value in parser.items(section)}
        if section in FILTER_SECTIONS:
            sections[section] = _filter_section(section, values, on, notes)
            continue
        reason = _NO_EQUIVALENT.get(section) or _OTHER_SECTIONS.get(
            section, "a section bandersnatch 8.2 does not read"
        )
        for key, value in values.items() or [("", "")]:
            notes.append(Note(section=section, key=key, value=value, reason=reason))
    if "allowlist" in kept and not sections.get("allowlist"):
        # bandersnatch's allowlist without packages keeps everything; ours would refuse.
        kept.remove("allowlist")
    if kept:
        ours[PLUGINS] = {"enabled": "\n".join(kept)}
    for section, values in sections.items():
        if values and _SECTION_FILTER[section] in kept:
            ours[section] = values
            continue
        for key, value in values.items():
            notes.append(
                Note(section=section, key=key, value=value, reason="no enabled filter reads it")
            )


_SECTION_FILTER: Final[Mapping[str, str]] = {
    "allowlist": "allowlist",
    "blocklist": "blocklist",
    "filter_regex": "regex",
    "filter_prerelease": "prerelease",
    "latest_release": "latest_release",
    "size_project_metadata": "size",
}
"""Each filter section and our filter that reads it."""


def _plugins(
    parser: configparser.ConfigParser, enabled: Sequence[str], notes: list[Note]
) -> list[str]:
    """Our filters for bandersnatch's enabled plug-ins, in order; a plug-in without
    an equivalent is a lost filter (noted)."""
    kept: list[str] = []
    for word in enabled:
        target = FILTER_PLUGINS.get(word)
        if target is None:
            reason = _NO_EQUIVALENT.get(
                word, "a filter plug-in unknown to bandersnatch 8.2 and to mirror"
            )
            notes.append(
                Note(section=PLUGINS, key="enabled", value=word, reason=reason, filter=True)
            )
        elif target not in kept:
            kept.append(target)
    for key, value in parser.items(PLUGINS) if parser.has_section(PLUGINS) else ():
        if key != "enabled":
            notes.append(Note(section=PLUGINS, key=key, value=value, reason="unknown key"))
    return kept


def _filter_section(
    section: str, values: Mapping[str, str], on: frozenset[str], notes: list[Note]
) -> dict[str, str]:
    """One filter section's keys in our terms, given the enabled bandersnatch plug-ins:
    a key no enabled plug-in reads is left out (noted), as bandersnatch ignores it."""
    out: dict[str, str] = {}
    known = FILTER_SECTIONS[section]
    for key, value in values.items():
        if key not in known:
            notes.append(Note(section=section, key=key, value=value, reason="unknown key"))
            continue
        readers = _READERS.get((section, key))
        if readers is not None and not on & readers:
            notes.append(
                Note(
                    section=section,
                    key=key,
                    value=value,
                    reason=f"read only by {' / '.join(sorted(readers))}, not enabled",
                )
            )
            continue
        convert = _CONVERT.get((section, key))
        out[key] = value if convert is None else convert(_Value(section, key, value, on, notes))
    return out


@dataclass(frozen=True, slots=True)
class _Value:
    """A filter key's value, with what its conversion needs to know and note."""

    section: str
    key: str
    text: str
    on: frozenset[str]
    notes: list[Note]

    def note(self, reason: str, value: str | None = None) -> None:
        self.notes.append(
            Note(section=self.section, key=self.key, value=value or self.text, reason=reason)
        )


_READERS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("allowlist", "packages"): frozenset({"allowlist_project", "allowlist_release"}),
    ("allowlist", "requirements"): frozenset(
        {"project_requirements", "project_requirements_pinned"}
    ),
    ("allowlist", "requirements_path"): frozenset(
        {"project_requirements", "project_requirements_pinned"}
    ),
    ("blocklist", "packages"): frozenset({"blocklist_project", "blocklist_release"}),
    ("blocklist", "platforms"): frozenset({"exclude_platform"}),
    ("filter_regex", "packages"): frozenset({"regex_project"}),
    ("filter_regex", "releases"): frozenset({"regex_release"}),
}
"""The plug-ins that read a filter key (a key absent here is read by its section's
one plug-in)."""


def _allowlist_packages(value: _Value) -> str:
    if "allowlist_release" in value.on:
        return value.text
    return _names_only(value, "allowlist_release is not enabled", drop_specified=False)


def _blocklist_packages(value: _Value) -> str:
    if "blocklist_release" in value.on:
        return value.text
    return _names_only(value, "blocklist_release is not enabled", drop_specified=True)


def _requirements(value: _Value) -> str:
    if "project_requirements_pinned" not in value.on:
        value.note(
            "mirror also applies the requirements' version specifiers "
            "(bandersnatch's project_requirements_pinned)"
        )
    return value.text


def _platforms(value: _Value) -> str:
    words = [_PLATFORM_WORDS.get(w.lower(), w.lower()) for w in _WORD_RE.split(value.text) if w]
    return " ".join(words)


def _max_package_size(value: _Value) -> str:
    if "allowlist_project" in value.on:
        value.note(
            "bandersnatch exempts allowlisted projects from the size limit; "
            "mirror applies it to every project"
        )
    return value.text


_CONVERT: Final[Mapping[tuple[str, str], Callable[[_Value], str]]] = {
    ("allowlist", "packages"): _allowlist_packages,
    ("allowlist", "requirements"): _requirements,
    ("blocklist", "packages"): _blocklist_packages,
    ("blocklist", "platforms"): _platforms,
    ("size_project_metadata", "max_package_size"): _max_package_size,
}
"""Filter keys whose value changes on the way (the others are carried as they are)."""


def _names_only(value: _Value, why: str, *, drop_specified: bool) -> str:
    """Requirement lines reduced to their names: bandersnatch's ``allowlist_project``
    reads only the name of each line; its ``blocklist_project`` skips a line with a
    specifier (the release filter's), so ``drop_specified`` leaves those out."""
    names: list[str] = []
    for line in value.text.split("\n"):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            names.append(text)  # mirror names the bad line when it loads the config
            continue
        if str(requirement.specifier):
            outcome = "left out" if drop_specified else f"carried over as {requirement.name}"
            value.note(f"a version specifier bandersnatch ignores ({why}); {outcome}", text)
            if drop_specified:
                continue
        names.append(requirement.name)
    return "\n".join(names)
