"""The configuration file: INI text becomes one frozen, validated :class:`Config`.

The format is bandersnatch's, so its users recognise it: a ``[mirror]`` section of
``key = value`` lines, ``#`` and ``;`` comments on lines of their own, case-sensitive
keys, no ``%(name)s`` interpolation. bandersnatch's names for settings mirror shares
(``master``, ``timeout``, ``simple-format``) are accepted as aliases; its options that
mirror does not implement are rejected by name rather than silently ignored.

Durations are humanfriendly timespans (``90``, ``1.5``, ``500ms``, ``5m``, ``1d``; a
bare number means seconds). Booleans follow configparser (``true/false``, ``yes/no``,
``on/off``, ``1/0``, any case).

Every problem, from an unreadable file to an out-of-range number, raises
:class:`~mirror.errors.ConfigError` whose text names the section and key; nothing
here lets a foreign exception or a traceback through for bad input.
"""

from __future__ import annotations

import configparser
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, TypeVar, get_args
from urllib.parse import urlsplit, urlunsplit

from humanfriendly import InvalidTimespan, format_timespan, parse_timespan

from mirror.errors import ConfigError
from mirror.filters import FilterSet, load_filters

MIRROR_SECTION: Final = "mirror"
SERVE_SECTION: Final = "serve"
STORAGE_SECTION: Final = "storage"

KNOWN_SECTIONS: Final[frozenset[str]] = frozenset({MIRROR_SECTION, SERVE_SECTION, STORAGE_SECTION})
"""Sections a config file may contain; any other is an error. Filters will add theirs."""

Format: TypeAlias = Literal["html", "json"]
"""A simple-page format a mirror can write (PEP 503 HTML, PEP 691 JSON)."""
FORMAT_HTML: Final[Format] = "html"
FORMAT_JSON: Final[Format] = "json"
FORMATS: Final[frozenset[Format]] = frozenset({FORMAT_HTML, FORMAT_JSON})
"""The simple-page formats a mirror can write."""

MetadataSource: TypeAlias = Literal["simple", "json"]
"""Where project detail comes from: PEP 691 project pages or ``/pypi/<p>/json``."""
METADATA_SOURCES: Final[frozenset[MetadataSource]] = frozenset(get_args(MetadataSource))

UpstreamApi: TypeAlias = Literal["auto", "xmlrpc", "simple"]
"""How the mirror learns what changed upstream: PyPI's XML-RPC changelog, the PEP 691
root index (``simple``), or the first that upstream offers (``auto``)."""
UPSTREAM_APIS: Final[frozenset[UpstreamApi]] = frozenset(get_args(UpstreamApi))

_DEFAULT_UPSTREAM_URL: Final = "https://pypi.org"
# Enough in flight for a 100 ms link (a project is about two round trips: its page,
# then its files), and cheap on loopback (see the README, "Speed and the defaults").
_DEFAULT_WORKERS: Final = 64
_DEFAULT_DOWNLOAD_CONCURRENCY: Final = 64
_DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 10.0
_DEFAULT_READ_TIMEOUT_SECONDS: Final = 60.0
_DEFAULT_RETRIES: Final = 5
_DEFAULT_METADATA_SOURCE: Final[MetadataSource] = "simple"
_DEFAULT_UPSTREAM_API: Final[UpstreamApi] = "auto"
_DEFAULT_JOURNAL_RETENTION_SECONDS: Final = 30 * 86400.0
_DEFAULT_RECHECK_INTERVAL_SECONDS: Final = 7 * 86400.0
_DEFAULT_RETRY_BASE_SECONDS: Final = 300.0
_DEFAULT_RETRY_MAX_SECONDS: Final = 86400.0
_DEFAULT_INTERVAL_SECONDS: Final = 600.0
_DEFAULT_INTERVAL_JITTER_PERCENT: Final = 10.0

_DEFAULT_SERVE_HOST: Final = "127.0.0.1"
_DEFAULT_SERVE_PORT: Final = 8080
_SERVE_PORT_RANGE: Final = (1, 65535)
_SERVE_KEYS: Final[frozenset[str]] = frozenset(
    {"host", "port", "access-log", "packages-redirect", "on-demand", "on-demand-timeout"}
)
_DEFAULT_ON_DEMAND_TIMEOUT_SECONDS: Final = 30.0
_STORAGE_KEYS: Final[frozenset[str]] = frozenset(
    {"backend", "bucket", "prefix", "endpoint-url", "region"}
)
STORAGE_BACKENDS: Final[frozenset[str]] = frozenset({"filesystem", "s3"})
_BUCKET_RE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION_RE: Final = re.compile(r"[a-z0-9-]+")
_PREFIX_RE: Final = re.compile(r"(?:[A-Za-z0-9._-]+/)*")

_WORKERS_RANGE: Final = (1, 256)
_DOWNLOAD_CONCURRENCY_RANGE: Final = (1, 512)
_RETRIES_RANGE: Final = (0, 20)
# One second is short enough for tests; a week is as rare as a mirror can be useful.
_INTERVAL_RANGE_SECONDS: Final = (1.0, 7 * 86400.0)
# Jitter of more than half the interval would let two passes almost touch.
_MAX_JITTER_FRACTION: Final = 0.5
_PERCENT_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*%")

_MIRROR_KEYS: Final[frozenset[str]] = frozenset(
    {
        "directory",
        "upstream",
        "master",
        "workers",
        "download-concurrency",
        "connect-timeout",
        "read-timeout",
        "timeout",
        "retries",
        "formats",
        "simple-format",
        "json",
        "metadata-source",
        "upstream-api",
        "allow-non-https",
        "contact",
        "retry-base",
        "retry-max",
        "interval",
        "interval-jitter",
        "metrics-file",
        "ca-bundle",
        "proxy",
        "journal-retention",
        "keep-removed",
        "cooldown",
        "recheck-interval",
        "verify-provenance",
    }
)

# bandersnatch's [mirror] options that mirror does not implement. Naming them in the
# error tells someone porting a bandersnatch config why the key is refused, where a
# fuzzy "did you mean" would only confuse.
_BANDERSNATCH_ONLY_KEYS: Final[frozenset[str]] = frozenset(
    {
        "storage-backend",
        "storage-filesystem-manage-permissions",
        "download-mirror",
        "download-mirror-no-fallback",
        "release-files",
        "core-metadata",
        "hash-index",
        "compare-method",
        "digest_name",
        "keep-index-versions",
        "keep_index_versions",
        "cleanup",
        "stop-on-error",
        "cleanup_todo",
        "delete_missing_packages",
        "global-timeout",
        "verifiers",
        "root_uri",
        "diff-file",
        "diff-append-epoch",
        "log-config",
    }
)

_INTEGER_RE: Final = re.compile(r"-?[0-9]+")
_FORMAT_SEPARATOR_RE: Final = re.compile(r"[\s,]+")
# A value that looks like it carries a trailing comment: configparser only strips
# comments on lines of their own, as bandersnatch's parser does.
_INLINE_COMMENT_RE: Final = re.compile(r"\s[#;]")
_URL_USERINFO_RE: Final = re.compile(r"//[^/@]*@")
# userinfo@host:port, where host is a DNS name (\w admits internationalised names), an
# IPv4 address or a bracketed IPv6 address. urlsplit alone lets `https://[::1]x/` through.
_NETLOC_RE: Final = re.compile(r"(?:.*@)?(?:[\w.-]+|\[[0-9A-Fa-f:.]+\])(?::[^@]*)?")

# bandersnatch's simple-format values and the formats each one means.
_SIMPLE_FORMATS: Final[Mapping[str, frozenset[Format]]] = {
    "all": FORMATS,
    "html": frozenset({FORMAT_HTML}),
    "json": frozenset({FORMAT_JSON}),
}

# Never a section header: a header cannot span lines. Handing configparser this as its
# default section makes a user's [DEFAULT] an ordinary section, which is then refused
# as unknown instead of silently leaking its keys into [mirror].
_NO_DEFAULT_SECTION: Final = "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Settings:
    """``[storage]`` with ``backend = s3``: where in which bucket the served tree lives.

    Credentials are never part of it: they come from botocore's chain (environment,
    shared files, instance roles)."""

    bucket: str
    """``bucket`` (required): the bucket's name."""
    prefix: str = ""
    """``prefix``: a key prefix ending in ``/`` (``mirror/``), or empty."""
    endpoint_url: str | None = None
    """``endpoint-url``: the S3 API's URL (Ceph RGW, MinIO, R2); None: AWS's."""
    region: str | None = None
    """``region``: the bucket's region; None: botocore's default."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A validated configuration; :func:`load_config` and :func:`parse_config` build it.

    Each field names the ``[mirror]`` key it comes from; the defaults are the ones a
    config file gets when it leaves the key out. Constructing one directly (as tests
    do) skips validation.
    """

    directory: Path
    """``directory`` (required): the mirror directory, absolute."""
    upstream_url: str = _DEFAULT_UPSTREAM_URL
    """``upstream`` (alias ``master``): the index's base URL, http(s), no trailing slash."""
    workers: int = _DEFAULT_WORKERS
    """``workers``: projects in flight."""
    download_concurrency: int = _DEFAULT_DOWNLOAD_CONCURRENCY
    """``download-concurrency``: files in flight across all projects."""
    connect_timeout_seconds: float = _DEFAULT_CONNECT_TIMEOUT_SECONDS
    """``connect-timeout`` (or ``timeout``): seconds to establish a connection."""
    read_timeout_seconds: float = _DEFAULT_READ_TIMEOUT_SECONDS
    """``read-timeout`` (or ``timeout``): seconds per socket read, not per request."""
    retries: int = _DEFAULT_RETRIES
    """``retries``: attempts after the first for transient failures."""
    formats: frozenset[Format] = FORMATS
    """``formats`` (or ``simple-format``): which of ``html``, ``json`` to write."""
    keep_json: bool = False
    """``json``: keep a ``/pypi/<p>/json`` copy of each project."""
    verify_provenance: bool = False
    """``verify-provenance``: refuse a file whose PEP 740 provenance does not attest
    its sha256 (or cannot be had)."""
    metadata_source: MetadataSource = _DEFAULT_METADATA_SOURCE
    """``metadata-source``: ``simple`` (PEP 691 project pages) or ``json``."""
    upstream_api: UpstreamApi = _DEFAULT_UPSTREAM_API
    """``upstream-api``: ``xmlrpc`` (the changelog), ``simple`` (the PEP 691 root
    index, for upstreams without XML-RPC) or ``auto`` (XML-RPC when upstream has it)."""
    journal_retention_seconds: float = _DEFAULT_JOURNAL_RETENTION_SECONDS
    """``journal-retention``: how long the mirror's own journal keeps a row (what
    ``mirror serve`` answers followers' ``changelog_since_serial`` from)."""
    allow_non_https: bool = False
    """``allow-non-https``: whether an ``http://`` upstream is allowed."""
    user_agent_contact: str | None = None
    """``contact``: appended to the User-Agent so upstream can reach the operator."""
    retry_base_seconds: float = _DEFAULT_RETRY_BASE_SECONDS
    """``retry-base``: first back-off before a failed project is tried again."""
    retry_max_seconds: float = _DEFAULT_RETRY_MAX_SECONDS
    """``retry-max``: the cap on that back-off."""
    interval_seconds: float = _DEFAULT_INTERVAL_SECONDS
    """``interval``: ``mirror daemon``'s pause between the end of a pass and the next."""
    interval_jitter_seconds: float = (
        _DEFAULT_INTERVAL_SECONDS * _DEFAULT_INTERVAL_JITTER_PERCENT / 100
    )
    """``interval-jitter``: the most the pause varies either way (given in the file as
    a duration or as a percentage of ``interval``)."""
    metrics_file: Path | None = None
    """``metrics-file``: where each sync writes Prometheus metrics; None: nowhere."""
    ca_bundle: Path | None = None
    """``ca-bundle``: PEM file of the CAs trusted for upstream's TLS; None: the system's."""
    proxy_url: str | None = None
    """``proxy``: HTTP proxy for every upstream request; None: direct."""
    keep_removed_seconds: float = 0.0
    """``keep-removed``: how long a file removed upstream stays on disk (and in the
    snapshot views) before garbage collection deletes it; 0: at once."""
    cooldown_seconds: float = 0.0
    """``cooldown``: how old (by upstream upload time) a file must be before the live
    pages publish it; 0: at once."""
    recheck_interval_seconds: float = _DEFAULT_RECHECK_INTERVAL_SECONDS
    """``recheck-interval``: how old the last full re-check (the listing's serials
    against the state store) may be before a sync makes another; 0: never."""
    serve_host: str = _DEFAULT_SERVE_HOST
    """``[serve] host``: the address ``mirror serve`` listens on."""
    serve_port: int = _DEFAULT_SERVE_PORT
    """``[serve] port``: the TCP port ``mirror serve`` listens on."""
    serve_access_log: bool = True
    """``[serve] access-log``: log every request to the ``mirror.server.access`` logger."""
    packages_redirect: str | None = None
    """``[serve] packages-redirect``: answer ``/packages/...`` with a redirect instead of
    the bytes: ``presigned`` (a presigned bucket URL; S3 only) or a base URL the path is
    appended to (a CDN); None: serve the bytes."""
    on_demand: bool = False
    """``[serve] on-demand``: ``mirror serve`` fetches a project it lacks (and the
    filters admit) when a client asks for its page."""
    on_demand_timeout_seconds: float = _DEFAULT_ON_DEMAND_TIMEOUT_SECONDS
    """``[serve] on-demand-timeout``: how long a request waits for that fetch before a
    503 with ``Retry-After``."""
    s3: S3Settings | None = None
    """``[storage] backend = s3`` and its keys; None: the file-system backend (``web/``
    in the mirror directory)."""
    filter_sections: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Every section other than the ones above (``[plugins]``, ``[allowlist]``…), raw
    and read-only: what :attr:`filters` was built from (and what
    :func:`mirror.filters.filters_of` builds it from again, re-reading the files it names)."""
    filters: FilterSet = field(default_factory=FilterSet)
    """The filters those sections enable, built once by :func:`parse_config` (the files
    they name read then); empty, keeping everything, when none is enabled."""
    source: Path | None = None
    """The file this was read from; None when parsed from a string."""


def load_config(path: Path) -> Config:
    """Read and validate the config file at ``path``.

    Relative paths inside it (``directory``) are taken relative to the file's own
    directory. Raises ConfigError for a missing, unreadable or non-UTF-8 file (naming
    the path) and for everything :func:`parse_config` refuses.
    """
    try:
        # utf-8-sig: a byte-order mark left by a Windows editor is not a syntax error.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read {path}: not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from exc
    return parse_config(text, source=path)


def parse_config(text: str, *, source: Path | None = None) -> Config:
    """Validate config file ``text`` and return the :class:`Config` it describes.

    ``source`` is the file the text came from: it is named in syntax errors, relative
    paths are resolved against its directory (the working directory when None), and
    it is kept as ``Config.source``. Raises ConfigError, naming the section and key,
    for a syntax error, an unknown section or key, a missing ``[mirror]`` section or
    ``directory``, two spellings of one setting, or a value that is malformed or out
    of range.
    """
    parser = _read(text, source)
    filter_sections: dict[str, Mapping[str, str]] = {}
    for name in parser.sections():
        if name not in KNOWN_SECTIONS:
            hint = _suggestion(name, KNOWN_SECTIONS, bracket=True)
            if hint:
                raise ConfigError("unknown section" + hint, section=name)
            # Any other section is the filters' to accept or refuse (load_filters below).
            filter_sections[name] = MappingProxyType(dict(parser[name]))
    if not parser.has_section(MIRROR_SECTION):
        raise ConfigError("missing section; it must set at least `directory`", section="mirror")
    mirror = _Section(MIRROR_SECTION, parser[MIRROR_SECTION])
    mirror.check_keys(_MIRROR_KEYS)

    base = Path() if source is None else source.parent
    filters = load_filters(filter_sections, base=base)
    directory = (base / mirror.required_text("directory")).absolute()

    url_key = mirror.either("upstream", "master")
    allow_non_https = mirror.boolean("allow-non-https", default=False)
    upstream_url = mirror.url(url_key, default=_DEFAULT_UPSTREAM_URL)
    if upstream_url.startswith("http:") and not allow_non_https:
        raise mirror.error(url_key, "an http:// upstream is refused unless allow-non-https = true")

    # bandersnatch's single `timeout` sets both; the specific keys win over it.
    connect_default = mirror.duration("timeout", default=_DEFAULT_CONNECT_TIMEOUT_SECONDS)
    read_default = mirror.duration("timeout", default=_DEFAULT_READ_TIMEOUT_SECONDS)

    retry_base_seconds = mirror.duration("retry-base", default=_DEFAULT_RETRY_BASE_SECONDS)
    retry_max_seconds = mirror.duration("retry-max", default=_DEFAULT_RETRY_MAX_SECONDS)
    if retry_max_seconds < retry_base_seconds:
        raise mirror.error(
            "retry-max",
            f"must be at least retry-base ({format_timespan(retry_base_seconds)})",
        )

    serve = _Section(
        SERVE_SECTION, parser[SERVE_SECTION] if parser.has_section(SERVE_SECTION) else {}
    )
    serve.check_keys(_SERVE_KEYS)
    storage = _Section(
        STORAGE_SECTION, parser[STORAGE_SECTION] if parser.has_section(STORAGE_SECTION) else {}
    )
    storage.check_keys(_STORAGE_KEYS)
    s3 = _s3_settings(storage)

    interval_seconds = mirror.duration("interval", default=_DEFAULT_INTERVAL_SECONDS)
    low, high = _INTERVAL_RANGE_SECONDS
    if not low <= interval_seconds <= high:
        raise mirror.error(
            "interval",
            f"must be between {format_timespan(low)} and {format_timespan(high)}, "
            f"got {mirror.get('interval')!r}",
        )

    return Config(
        directory=directory,
        upstream_url=upstream_url,
        workers=mirror.integer("workers", default=_DEFAULT_WORKERS, bounds=_WORKERS_RANGE),
        download_concurrency=mirror.integer(
            "download-concurrency",
            default=_DEFAULT_DOWNLOAD_CONCURRENCY,
            bounds=_DOWNLOAD_CONCURRENCY_RANGE,
        ),
        connect_timeout_seconds=mirror.duration("connect-timeout", default=connect_default),
        read_timeout_seconds=mirror.duration("read-timeout", default=read_default),
        retries=mirror.integer("retries", default=_DEFAULT_RETRIES, bounds=_RETRIES_RANGE),
        formats=_formats(mirror),
        keep_json=mirror.boolean("json", default=False),
        verify_provenance=mirror.boolean("verify-provenance", default=False),
        metadata_source=_metadata_source(mirror),
        upstream_api=_upstream_api(mirror),
        journal_retention_seconds=mirror.duration(
            "journal-retention", default=_DEFAULT_JOURNAL_RETENTION_SECONDS
        ),
        allow_non_https=allow_non_https,
        user_agent_contact=mirror.contact("contact"),
        retry_base_seconds=retry_base_seconds,
        retry_max_seconds=retry_max_seconds,
        interval_seconds=interval_seconds,
        interval_jitter_seconds=_interval_jitter(mirror, interval_seconds),
        metrics_file=(base / metrics).absolute()
        if (metrics := mirror.get("metrics-file"))
        else None,
        ca_bundle=_ca_bundle(mirror, base),
        proxy_url=mirror.url("proxy", default="") or None,
        keep_removed_seconds=mirror.duration("keep-removed", default=0.0, allow_zero=True),
        cooldown_seconds=mirror.duration("cooldown", default=0.0, allow_zero=True),
        recheck_interval_seconds=mirror.duration(
            "recheck-interval", default=_DEFAULT_RECHECK_INTERVAL_SECONDS, allow_zero=True
        ),
        serve_host=_serve_host(serve),
        serve_port=serve.integer("port", default=_DEFAULT_SERVE_PORT, bounds=_SERVE_PORT_RANGE),
        serve_access_log=serve.boolean("access-log", default=True),
        packages_redirect=_packages_redirect(serve, s3),
        on_demand=_on_demand(serve, s3),
        on_demand_timeout_seconds=serve.duration(
            "on-demand-timeout", default=_DEFAULT_ON_DEMAND_TIMEOUT_SECONDS
        ),
        s3=s3,
        filter_sections=MappingProxyType(filter_sections),
        filters=filters,
        source=source,
    )


def _read(text: str, source: Path | None) -> configparser.ConfigParser:
    """Parse the INI syntax, translating configparser's errors to ConfigError."""
    parser = configparser.ConfigParser(
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        interpolation=None,
        default_section=_NO_DEFAULT_SECTION,
    )
    # Keys are case-sensitive, as in bandersnatch; `Workers` is an unknown key.
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    origin = "" if source is None else f"{source}, "
    try:
        parser.read_string(text, source=str(source or "<string>"))
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"{origin}line {exc.lineno}: section appears twice", section=exc.section
        ) from exc
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{origin}line {exc.lineno}: key appears twice in the section",
            section=exc.section,
            key=exc.option,
        ) from exc
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"{origin}line {exc.lineno}: expected a section header such as [mirror] "
            f"before {exc.line.strip()!r}"
        ) from exc
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0]
        # Quote the line from the text: configparser keeps only its repr().
        line = text.splitlines()[lineno - 1].strip()
        raise ConfigError(
            f"{origin}line {lineno}: expected `key = value`, a [section] or a comment, got {line!r}"
        ) from exc
    return parser


def _formats(section: _Section) -> frozenset[Format]:
    key = section.either("formats", "simple-format")
    raw = section.get(key)
    if raw is None:
        return FORMATS
    if key == "simple-format":
        formats = _SIMPLE_FORMATS.get(raw.lower())
        if formats is None:
            raise section.invalid(key, "one of ALL, HTML, JSON", raw)
        return formats
    names = [name.lower() for name in _FORMAT_SEPARATOR_RE.split(raw) if name]
    if not names:
        raise section.invalid(key, "one or more of html, json", raw)
    by_name = {str(known): known for known in FORMATS}
    chosen: set[Format] = set()
    for name in names:
        known = by_name.get(name)
        if known is None:
            raise section.error(key, f"unknown format {name!r} (expected html, json)")
        chosen.add(known)
    return frozenset(chosen)


_Choice = TypeVar("_Choice", bound=str)


def _metadata_source(section: _Section) -> MetadataSource:
    """``metadata-source``: ``simple`` or ``json``, any case."""
    return _choice(section, "metadata-source", METADATA_SOURCES, _DEFAULT_METADATA_SOURCE)


def _upstream_api(section: _Section) -> UpstreamApi:
    """``upstream-api``: ``auto``, ``xmlrpc`` or ``simple``, any case."""
    return _choice(section, "upstream-api", UPSTREAM_APIS, _DEFAULT_UPSTREAM_API)


def _choice(section: _Section, key: str, choices: frozenset[_Choice], default: _Choice) -> _Choice:
    """``key``'s value, one of ``choices`` in any case; ``default`` when it is unset."""
    raw = section.get(key)
    if raw is None:
        return default
    by_name = {str(known): known for known in choices}
    value = by_name.get(raw.lower())
    if value is None:
        raise section.invalid(key, "one of " + ", ".join(sorted(by_name)), raw)
    return value


def _ca_bundle(section: _Section, base: Path) -> Path | None:
    """``ca-bundle``: an existing file, relative to the config file's directory."""
    raw = section.get("ca-bundle")
    if not raw:
        return None
    path = (base / raw).absolute()
    if not path.is_file():
        raise section.error("ca-bundle", f"no such file: {path}")
    return path


def _s3_settings(section: _Section) -> S3Settings | None:
    """``[storage]``: None for the file-system backend, else the bucket's settings."""
    backend = (section.get("backend") or "filesystem").lower()
    if backend not in STORAGE_BACKENDS:
        raise section.invalid(
            "backend", "one of " + ", ".join(sorted(STORAGE_BACKENDS)), section.get("backend") or ""
        )
    if backend == "filesystem":
        for key in sorted(_STORAGE_KEYS - {"backend"}):
            if key in section.values:
                raise section.error(key, "only used with backend = s3")
        return None
    bucket = section.required_text("bucket")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise section.invalid("bucket", "an S3 bucket name (3-63 of a-z, 0-9, '.', '-')", bucket)
    prefix = section.get("prefix") or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not _PREFIX_RE.fullmatch(prefix) or any(part in {".", ".."} for part in prefix.split("/")):
        raise section.invalid("prefix", "a key prefix such as mirror/ (no '..', no spaces)", prefix)
    endpoint = section.get("endpoint-url")
    if endpoint is not None and "@" in urlsplit(endpoint).netloc:
        # Credentials only ever come from botocore's chain.
        raise section.error("endpoint-url", "must not contain credentials")
    region = section.get("region")
    if region is not None and not _REGION_RE.fullmatch(region):
        raise section.invalid("region", "a region name such as us-east-1", region)
    return S3Settings(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=section.url("endpoint-url", default="") or None,
        region=region,
    )


def _packages_redirect(section: _Section, s3: S3Settings | None) -> str | None:
    """``[serve] packages-redirect``: ``presigned`` (S3 only), a base URL, or None."""
    raw = section.get("packages-redirect")
    if not raw:
        return None
    if s3 is None:
        raise section.error("packages-redirect", "only used with [storage] backend = s3")
    if raw.lower() == "presigned":
        return "presigned"
    return section.url("packages-redirect", default="")


def _on_demand(section: _Section, s3: S3Settings | None) -> bool:
    """``[serve] on-demand``: only for a mirror on disk (the fetch writes the tree)."""
    on = section.boolean("on-demand", default=False)
    if on and s3 is not None:
        raise section.error("on-demand", "not supported with [storage] backend = s3")
    return on


def _serve_host(section: _Section) -> str:
    """A host name or IP address to listen on: one printable ASCII word."""
    raw = section.get("host")
    if raw is None:
        return _DEFAULT_SERVE_HOST
    if not raw or not (raw.isascii() and raw.isprintable()) or any(c.isspace() for c in raw):
        raise section.invalid("host", "a host name or IP address such as 127.0.0.1", raw)
    return raw


def _interval_jitter(section: _Section, interval_seconds: float) -> float:
    """``interval-jitter`` in seconds: a duration (``30s``, ``0``) or a percentage of
    the interval (``10%``), at most half the interval."""
    key = "interval-jitter"
    raw = section.get(key)
    if raw is None:
        return interval_seconds * _DEFAULT_INTERVAL_JITTER_PERCENT / 100
    percent = _PERCENT_RE.fullmatch(raw)
    if percent is not None:
        seconds = interval_seconds * float(percent.group(1)) / 100
    else:
        try:
            seconds = float(parse_timespan(raw))
        except InvalidTimespan:
            raise section.invalid(
                key, "a duration such as 30s or 1m, or a percentage such as 10%", raw
            ) from None
    most = interval_seconds * _MAX_JITTER_FRACTION
    if not 0 <= seconds <= most:
        raise section.error(
            key, f"must be between 0 and half the interval ({format_timespan(most)}), got {raw!r}"
        )
    return seconds


def _suggestion(word: str, candidates: frozenset[str], *, bracket: bool = False) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` if none is close."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    matches = difflib.get_close_matches(word.lower(), sorted(by_lower), n=1)
    if not matches:
        return ""
    match = by_lower[matches[0]]
    return f"; did you mean [{match}]?" if bracket else f"; did you mean {match!r}?"


@dataclass(frozen=True, slots=True)
class _Section:
    """One section's raw values, with typed getters whose errors name section and key."""

    name: str
    values: Mapping[str, str]

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, section=self.name, key=key)

    def invalid(self, key: str, expected: str, raw: str) -> ConfigError:
        message = f"expected {expected}, got {raw!r}"
        if _INLINE_COMMENT_RE.search(raw):
            message += " (comments must be on a line of their own)"
        return self.error(key, message)

    def check_keys(self, known: frozenset[str]) -> None:
        """Raise for the first key not in ``known``, with a hint where one helps."""
        for key in self.values:
            if key in known:
                continue
            if key in _BANDERSNATCH_ONLY_KEYS:
                hint = " (a bandersnatch option that mirror does not support)"
            else:
                hint = _suggestion(key, known)
            raise self.error(key, "unknown key" + hint)

    def either(self, key: str, alias: str) -> str:
        """The one of two spellings of a setting that is given (``key`` if neither)."""
        if key in self.values and alias in self.values:
            raise self.error(alias, f"same setting as `{key}`; give only one of them")
        return alias if alias in self.values else key

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def required_text(self, key: str) -> str:
        raw = self.values.get(key)
        if raw is None:
            raise self.error(key, "required key is missing")
        if not raw:
            raise self.error(key, "must not be empty")
        return raw

    def integer(self, key: str, *, default: int, bounds: tuple[int, int]) -> int:
        raw = self.values.get(key)
        if raw is None:
            return default
        if not _INTEGER_RE.fullmatch(raw):
            raise self.invalid(key, "a whole number", raw)
        value = int(raw)
        low, high = bounds
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        raw = self.values.get(key)
        if raw is None:
            return default
        value = configparser.ConfigParser.BOOLEAN_STATES.get(raw.lower())
        if value is None:
            raise self.invalid(key, "true or false (yes/no, on/off, 1/0)", raw)
        return value

    def duration(self, key: str, *, default: float, allow_zero: bool = False) -> float:
        """A positive timespan in seconds (``30``, ``500ms``, ``5m``, ``1d``); zero
        too with ``allow_zero``."""
        raw = self.values.get(key)
        if raw is None:
            return default
        try:
            seconds = float(parse_timespan(raw))
        except InvalidTimespan:
            raise self.invalid(key, "a duration such as 30, 500ms, 5m or 1d", raw) from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise self.error(key, f"must be more than zero, got {raw!r}")
        return seconds

    def url(self, key: str, *, default: str) -> str:
        """An http(s) base URL with a host, returned without its trailing slash."""
        raw = self.values.get(key)
        if raw is None:
            return default
        # Echo the value without credentials: errors end up in logs.
        shown = _URL_USERINFO_RE.sub("//***@", raw)
        if not raw.isprintable() or any(char.isspace() for char in raw):
            raise self.error(key, f"URL contains spaces or control characters: {shown!r}")
        try:
            parts = urlsplit(raw)
            host = parts.hostname
        except ValueError:  # an unbalanced [ or ] around an IPv6 address
            raise self.error(key, f"URL has an invalid host: {shown!r}") from None
        if parts.scheme not in {"http", "https"} or not host:
            raise self.invalid(key, "an http:// or https:// URL with a host", shown)
        if not _NETLOC_RE.fullmatch(parts.netloc):
            raise self.error(key, f"URL has an invalid host: {shown!r}")
        try:
            _ = parts.port  # the property validates the port
        except ValueError:
            raise self.error(key, f"URL has an invalid port: {shown!r}") from None
        if parts.query or parts.fragment:
            raise self.error(key, f"URL must not have a query or fragment: {shown!r}")
        path = parts.path.rstrip("/")
        if path.endswith("/simple"):
            raise self.error(
                key,
                f"give the index's base URL, without /simple (mirror adds it): {shown!r}",
            )
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    def contact(self, key: str) -> str | None:
        """Free text for the User-Agent header: printable ASCII, None when empty."""
        raw = self.values.get(key)
        if not raw:
            return None
        if not (raw.isascii() and raw.isprintable()):
            raise self.error(
                key, f"must be printable ASCII on one line (it goes in a header), got {raw!r}"
            )
        return raw
