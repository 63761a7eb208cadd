"""A hostile or broken upstream, and the safe defaults that face the network.

Every hostile answer is refused for its project alone, with an error that says what
was wrong, and nothing is written outside the mirror directory. TLS is verified by
default, a private CA is trusted only through ``ca-bundle``, and credentials in the
upstream or proxy URL appear in no log line and no error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

import mirror.fetch
from mirror.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from mirror.config import parse_config
from mirror.errors import ConfigError, MalformedResponseError, UnsafePathError
from mirror.models import ProjectDetail, Serial
from mirror.state import StateStore
from mirror.storage import FileSystemStorage
from mirror.sync import Syncer, SyncOptions
from mirror.testing import FakeUpstream, RawAnswer
from mirror.upstream import MAX_PAGE_BYTES, MAX_XMLRPC_BYTES, Upstream, UpstreamSettings
from tests.harness import MirrorRunner, no_sleep
from tests.mirrorcheck import assert_consistent

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
PAYLOAD = b"hostile upstream payload\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def entry(filename: str, url: str, **overrides: object) -> dict[str, object]:
    """A PEP 691 file entry for PAYLOAD (fields overridable)."""
    return {
        "filename": filename,
        "url": url,
        "hashes": {"sha256": SHA},
        "size": len(PAYLOAD),
        "core-metadata": False,
        "yanked": False,
        **overrides,
    }


def page(name: str, files: list[dict[str, object]], *, serial: int = 1) -> bytes:
    data = {"meta": {"_last-serial": serial, "api-version": "1.4"}, "name": name, "files": files}
    return json.dumps(data).encode()


def simple_answer(body: bytes, *, content_type: str = SIMPLE_JSON) -> RawAnswer:
    return RawAnswer(body=body, headers=(("Content-Type", content_type),))


def snapshot(tmp_path: Path, directory: Path) -> set[Path]:
    """Everything beside the mirror directory: in the test's temp dir and its parent."""
    inside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(directory)}
    return inside | set(tmp_path.parent.iterdir())


@pytest.fixture
def good(upstream: FakeUpstream) -> FakeUpstream:
    upstream.add_release("good", "1.0")
    return upstream


async def sync_evil(runner: MirrorRunner, *, files_may_land: bool = False) -> str:
    """Sync ``evil`` and ``good``; return evil's error. Checks that good landed, that
    evil has no page and that nothing appeared outside the mirror directory (nor,
    unless ``files_may_land``, inside it)."""
    tmp_path = runner.directory.parent
    before = snapshot(tmp_path, runner.directory)
    report = await runner.sync(projects=["evil", "good"])
    assert snapshot(tmp_path, runner.directory) == before, "written outside the mirror"
    assert [f.name for f in report.failures] == ["evil"]
    assert report.projects_synced == 1
    assert (runner.web / "simple" / "good" / "index.v1_json").exists()
    assert not (runner.web / "simple" / "evil").exists()
    assert files_may_land or not [p for p in runner.directory.rglob("*") if "evil" in p.name]
    assert_consistent(runner.directory)
    return report.failures[0].error


# --- file names and URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "url", "message"),
    [
        ("evil-1.0.tar.gz", "/packages/aa/bb/../evil-1.0.tar.gz", "not under /packages/"),
        ("evil-1.0.tar.gz", "/packages/aa/%2e%2e/cc/evil-1.0.tar.gz", "unsafe path component"),
        ("x/evil.tar.gz", "/packages/aa/bb/cc/x%2Fevil.tar.gz", "unsafe path component"),
        ("x\\evil.tar.gz", "/packages/aa/bb/cc/x%5Cevil.tar.gz", "unsafe path component"),
        ("evil\x00.tar.gz", "/packages/aa/bb/cc/evil%00.tar.gz", "unsafe path component"),
        ("evil-1.0.tar.gz", "/static/aa/bb/cc/evil-1.0.tar.gz", "not under /packages/"),
        ("evil-1.0.tar.gz", "/packages/aa//cc/evil-1.0.tar.gz", "unsafe path component ''"),
        ("../../evil.tar.gz", "/packages/aa/bb/cc/evil.tar.gz", "does not end in its filename"),
        ("passwd", "/etc/passwd", "not under /packages/"),
        ("evil-1.0.tar.gz", "file:///packages/aa/bb/cc/evil-1.0.tar.gz", "not an absolute http"),
        ("evil-1.0.tar.gz", "ftp://127.0.0.1/packages/a/b/c/evil-1.0.tar.gz", "not an absolute"),
    ],
)
async def test_an_unsafe_file_location_fails_its_project_alone(
    good: FakeUpstream,
    runner: MirrorRunner,
    filename: str,
    url: str,
    message: str,
) -> None:
    good.serve_raw("/simple/evil/", simple_answer(page("evil", [entry(filename, url)])))
    error = await sync_evil(runner)
    assert message in error
    assert "files[0].url" in error, "the error names the key path"
    # (The JSON API is asked for the new project's display name beside its page.)
    asked = {path for _, path in good.request_log if "evil" in path and "simple" not in path}
    assert asked <= {"/pypi/evil/json"}


async def test_a_file_on_another_host_is_fetched_but_lands_by_its_checked_path(
    upstream: FakeUpstream, runner: MirrorRunner
) -> None:
    """PyPI serves files from files.pythonhosted.org, not pypi.org: any host is fine,
    only the ``/packages/...`` path decides where the file lands."""
    async with FakeUpstream(host="127.0.0.2") as files_host:
        path = "/packages/ab/cd/ef0123/other-1.0.tar.gz"
        files_host.serve_raw(path, RawAnswer(body=PAYLOAD))
        url = f"{files_host.base_url}{path}?token=1"
        upstream.serve_raw(
            "/simple/other/", simple_answer(page("other", [entry("other-1.0.tar.gz", url)]))
        )
        report = await runner.sync(projects=["other"])
    assert report.ok, report.failures
    assert (runner.web / path.lstrip("/")).read_bytes() == PAYLOAD
    link = json.loads((runner.web / "simple" / "other" / "index.v1_json").read_bytes())
    assert link["files"][0]["url"] == "../../packages/ab/cd/ef0123/other-1.0.tar.gz"
    assert_consistent(runner.directory)


def test_an_https_page_may_not_send_a_download_over_plain_http() -> None:
    body = json.loads(
        page("evil", [entry("e-1.tar.gz", "http://files.example/packages/a/b/c/e-1.tar.gz")])
    )
    with pytest.raises(UnsafePathError, match=r"files\[0\]\.url: an https page links"):
        ProjectDetail.from_simple_json(
            body,
            name=NormalizedName("evil"),
            page_url="https://pypi.example/simple/evil/",
            serial=None,
        )


@pytest.mark.parametrize("delta", [5, -5])
async def test_a_size_that_disagrees_with_the_bytes_fails_the_project(
    good: FakeUpstream, runner: MirrorRunner, delta: int
) -> None:
    good.serve_raw("/packages/aa/bb/cc/evil-1.0.tar.gz", RawAnswer(body=PAYLOAD))
    files = [
        entry("evil-1.0.tar.gz", "/packages/aa/bb/cc/evil-1.0.tar.gz", size=len(PAYLOAD) + delta)
    ]
    good.serve_raw("/simple/evil/", simple_answer(page("evil", files)))
    error = await sync_evil(runner)
    assert f"expected {len(PAYLOAD) + delta} bytes" in error


async def test_an_unsized_download_stops_at_its_limit(
    good: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.metadata`` file has no advertised size: it is bounded all the same."""
    monkeypatch.setattr(mirror.fetch, "MAX_UNSIZED_FILE_BYTES", 1024)
    path = "/packages/aa/bb/cc/evil-1.0-py3-none-any.whl"
    good.serve_raw(path, RawAnswer(body=PAYLOAD))
    good.serve_raw(f"{path}.metadata", RawAnswer(body=b"M" * 4096))
    meta = {"sha256": hashlib.sha256(b"M" * 4096).hexdigest()}
    files = [entry("evil-1.0-py3-none-any.whl", path, **{"core-metadata": meta})]
    good.serve_raw("/simple/evil/", simple_answer(page("evil", files)))
    error = await sync_evil(runner, files_may_land=True)
    assert "larger than the 1024-byte limit" in error
    assert not list(runner.web.rglob("evil*.metadata"))


# --- malformed bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", SIMPLE_JSON, "not JSON"),
        (b"\xff\xfe\x00\x80 not utf-8", SIMPLE_JSON, "not JSON"),
        (b"null", SIMPLE_JSON, "(root): expected an object"),
        (page("evil", [])[:-1], SIMPLE_JSON, "not JSON"),
        (page("evil", []), "text/html", "Content-Type 'text/html'"),
        (page("other", []), SIMPLE_JSON, "name: expected 'evil'"),
        (json.dumps({"name": "evil", "files": {"a": 1}}).encode(), SIMPLE_JSON, "files: expected"),
        (
            page("evil", [entry("e-1.tar.gz", "/packages/a/b/c/e-1.tar.gz", size="25")]),
            SIMPLE_JSON,
            "files[0].size: expected an integer",
        ),
        (
            page("evil", [entry("e-1.tar.gz", "/packages/a/b/c/e-1.tar.gz", size=-1)]),
            SIMPLE_JSON,
            "files[0].size: must not be negative",
        ),
        (
            page(
                "evil", [entry("e-1.tar.gz", "/packages/a/b/c/e-1.tar.gz", hashes={"sha256": "zz"})]
            ),
            SIMPLE_JSON,
            "files[0].hashes.sha256: not a sha256",
        ),
        (
            page("evil", [{**entry("e-1.tar.gz", "/packages/a/b/c/e-1.tar.gz"), "url": 7}]),
            SIMPLE_JSON,
            "files[0].url: expected a string",
        ),
        (
            page("evil", [entry("e.tar.gz", "/packages/a/b/c/e.tar.gz")] * 2),
            SIMPLE_JSON,
            "advertised twice",
        ),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "null",
        "cut-short",
        "wrong-content-type",
        "wrong-name",
        "files-not-array",
        "size-string",
        "size-negative",
        "sha256-not-hex",
        "url-not-string",
        "path-twice",
    ],
)
async def test_a_malformed_project_page_fails_its_project_alone(
    good: FakeUpstream,
    runner: MirrorRunner,
    body: bytes,
    content_type: str,
    message: str,
) -> None:
    good.serve_raw("/simple/evil/", simple_answer(body, content_type=content_type))
    error = await sync_evil(runner)
    assert message in error


async def test_a_hostile_json_api_answer_is_refused_too(
    good: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    runner.options = SyncOptions(metadata_source="json")
    release = [
        {
            "filename": "evil.tar.gz",
            "url": "/packages/a/../c/evil.tar.gz",
            "size": 1,
            "digests": {"sha256": SHA},
        }
    ]
    body = json.dumps({"info": {"name": "evil"}, "last_serial": 3, "releases": {"1.0": release}})
    good.serve_raw("/pypi/evil/json", RawAnswer(body=body.encode()))
    error = await sync_evil(runner)
    assert "releases.1.0[0].url" in error or "unsafe path component" in error


def client(upstream: FakeUpstream, **overrides: object) -> Upstream:
    settings = UpstreamSettings(
        base_url=upstream.base_url,
        retries=0,
        **overrides,  # type: ignore[arg-type]
    )
    return Upstream(settings, sleep=no_sleep)


XMLRPC_ARRAY_OF_STRING = (
    b"<?xml version='1.0'?><methodResponse><params><param><value><string>rows</string>"
    b"</value></param></params></methodResponse>"
)
XMLRPC_BAD_UTF8 = (
    b"<?xml version='1.0' encoding='utf-8'?><methodResponse><params><param><value>"
    b"<string>\xff\xfe</string></value></param></params></methodResponse>"
)
XMLRPC_STRING_SERIAL = (
    b"<?xml version='1.0'?><methodResponse><params><param><value><struct><member>"
    b"<name>evil</name><value><string>12</string></value></member></struct></value>"
    b"</param></params></methodResponse>"
)


@pytest.mark.parametrize(
    ("body", "call", "message"),
    [
        (b"not xml at all", "changelog_last_serial", "unparseable response"),
        (XMLRPC_BAD_UTF8, "changelog_last_serial", "unparseable response"),
        (XMLRPC_ARRAY_OF_STRING, "changelog_last_serial", "expected a serial"),
        (XMLRPC_ARRAY_OF_STRING, "changelog_since", "expected an array, got str"),
        (XMLRPC_ARRAY_OF_STRING, "list_packages_with_serial", "expected a struct"),
        (XMLRPC_STRING_SERIAL, "list_packages_with_serial", "expected a serial, got '12'"),
    ],
)
async def test_malformed_xmlrpc_answers_are_refused_with_a_clear_error(
    upstream: FakeUpstream, body: bytes, call: str, message: str
) -> None:
    upstream.serve_raw(
        "/pypi", RawAnswer(body=body, headers=(("Content-Type", "text/xml"),)), method="POST"
    )
    calls: dict[str, Callable[[Upstream], Awaitable[object]]] = {
        "changelog_last_serial": lambda up: up.changelog_last_serial(),
        "changelog_since": lambda up: up.changelog_since_serial(Serial(0)),
        "list_packages_with_serial": lambda up: up.list_packages_with_serial(),
    }
    async with client(upstream) as up:
        with pytest.raises(MalformedResponseError) as caught:
            await calls[call](up)
    assert message in str(caught.value)


async def test_a_run_whose_changelog_is_malformed_stops_and_writes_nothing(
    good: FakeUpstream, runner: MirrorRunner
) -> None:
    good.serve_raw("/pypi", RawAnswer(body=b"<oops"), method="POST")
    with pytest.raises(MalformedResponseError):
        await runner.sync()
    assert not (runner.web / "simple").exists()


# --- absurdly large answers ----------------------------------------------------------------


def endless() -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # 640 MiB if nobody stopped reading
            yield b" " * 65536

    return chunks


async def test_the_caps_on_pages_and_xmlrpc_answers_are_documented_defaults() -> None:
    settings = UpstreamSettings(base_url="https://pypi.org")
    assert settings.max_page_bytes == MAX_PAGE_BYTES == 64 * 1024 * 1024
    assert settings.max_xmlrpc_bytes == MAX_XMLRPC_BYTES == 512 * 1024 * 1024


async def test_an_endless_project_page_is_refused_once_past_the_cap(upstream: FakeUpstream) -> None:
    upstream.serve_raw(
        "/simple/evil/", RawAnswer(chunks=endless(), headers=(("Content-Type", SIMPLE_JSON),))
    )
    upstream.serve_raw("/pypi/evil/json", RawAnswer(chunks=endless()))
    async with client(upstream, max_page_bytes=256 * 1024) as up, asyncio.timeout(10):
        with pytest.raises(MalformedResponseError, match="over the 262144-byte limit"):
            await up.project_detail(NormalizedName("evil"), min_serial=None)
        with pytest.raises(MalformedResponseError, match="over the 262144-byte limit"):
            await up.project_json_raw(NormalizedName("evil"))


async def test_a_page_streamed_without_a_length_is_read_whole(upstream: FakeUpstream) -> None:
    body = page("streamed", [entry("s-1.tar.gz", "/packages/a/b/c/s-1.tar.gz")])

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10):
            yield body[start : start + 10]

    headers = (("Content-Type", SIMPLE_JSON),)
    upstream.serve_raw("/simple/streamed/", RawAnswer(chunks=chunks, headers=headers))
    async with client(upstream, max_page_bytes=len(body)) as up:
        detail = await up.project_detail(NormalizedName("streamed"), min_serial=None)
    assert [f.filename for f in detail.files] == ["s-1.tar.gz"]


async def test_an_announced_oversize_answer_is_refused_before_reading(
    upstream: FakeUpstream,
) -> None:
    upstream.serve_raw("/simple/evil/", simple_answer(b" " * 300_000))
    async with client(upstream, max_page_bytes=256 * 1024) as up:
        with pytest.raises(MalformedResponseError, match="a 300000-byte answer is over"):
            await up.project_detail(NormalizedName("evil"), min_serial=None)


async def test_an_endless_xmlrpc_answer_is_refused_once_past_the_cap(
    upstream: FakeUpstream,
) -> None:
    upstream.serve_raw("/pypi", RawAnswer(chunks=endless()), method="POST")
    async with client(upstream, max_xmlrpc_bytes=256 * 1024) as up, asyncio.timeout(10):
        with pytest.raises(MalformedResponseError, match="over the 262144-byte limit"):
            await up.list_packages_with_serial()


# --- safe defaults: TLS, plain http, credentials ---------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: ``(cert.pem, key.pem)``."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (.ci/run installs it)"
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def https_upstream(certificate: tuple[Path, Path]) -> AsyncIterator[FakeUpstream]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with FakeUpstream(tls=context) as fake:
        fake.add_release("alpha", "1.0")
        yield fake


def write_config(tmp_path: Path, upstream_url: str, **extra: str) -> Path:
    """A config for ``upstream_url``: no retries (the CLI sleeps for real) unless
    ``extra`` says otherwise; ``extra`` keys use ``_`` for ``-``."""
    keys = {"directory": str(tmp_path / "mirror"), "upstream": upstream_url, "retries": "0"}
    keys |= {key.replace("_", "-"): value for key, value in extra.items()}
    lines = ["[mirror]", *(f"{key} = {value}" for key, value in keys.items())]
    path = tmp_path / "mirror.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_an_untrusted_certificate_is_refused_at_once_with_a_clear_error(
    https_upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, https_upstream.base_url, retries="3")
    assert await run_cli("sync", "-c", str(config)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "TLS verification failed" in err
    assert "set [mirror] ca-bundle" in err
    assert "retry" not in err, "a certificate problem is not retried"
    assert https_upstream.request_log == [], "no request got through"


async def test_a_ca_bundle_makes_a_private_certificate_trusted(
    https_upstream: FakeUpstream,
    tmp_path: Path,
    certificate: tuple[Path, Path],
) -> None:
    config = write_config(tmp_path, https_upstream.base_url, ca_bundle=str(certificate[0]))
    assert await run_cli("sync", "-q", "-c", str(config)) == EXIT_OK
    assert_consistent(tmp_path / "mirror")
    assert any(path.startswith("/packages/") for _, path in https_upstream.request_log)


async def test_an_unusable_ca_bundle_is_an_error_naming_it(
    https_upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = write_config(tmp_path, https_upstream.base_url, ca_bundle="nowhere.pem")
    assert await run_cli("sync", "-c", str(missing)) == EXIT_USAGE
    assert "[mirror] ca-bundle: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    config = write_config(tmp_path, https_upstream.base_url, ca_bundle=str(junk))
    assert await run_cli("sync", "-c", str(config)) == EXIT_ERROR
    assert f"cannot load the CA bundle {junk}" in capsys.readouterr().err


def test_a_plain_http_upstream_is_refused_unless_allowed(tmp_path: Path) -> None:
    text = f"[mirror]\ndirectory = {tmp_path}\nupstream = http://127.0.0.1:1\n"
    with pytest.raises(ConfigError, match="allow-non-https"):
        parse_config(text)
    allowed = parse_config(text + "allow-non-https = true\n")
    assert allowed.upstream_url == "http://127.0.0.1:1"
    assert allowed.ca_bundle is None
    assert allowed.proxy_url is None


def test_the_proxy_key_is_a_checked_url(tmp_path: Path) -> None:
    text = f"[mirror]\ndirectory = {tmp_path}\n"
    config = parse_config(text + "proxy = http://u:p@proxy.example:3128/\n")
    assert config.proxy_url == "http://u:p@proxy.example:3128"
    with pytest.raises(ConfigError, match=r"\[mirror\] proxy: .*//\*\*\*@") as caught:
        parse_config(text + "proxy = socks5://u:secret@proxy.example:1080\n")
    assert "secret" not in str(caught.value)


async def test_credentials_in_the_upstream_url_appear_in_no_log_and_no_error(
    https_upstream: FakeUpstream,
    tmp_path: Path,
    certificate: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing sync, logged at DEBUG: a project that keeps answering 500, and one
    whose page links an unsafe relative URL (its error quotes the resolved URL)."""
    https_upstream.add_release("broken", "1.0")
    https_upstream.fail_next("/simple/broken/", status=500, times=100)
    https_upstream.serve_raw(
        "/simple/evil/", simple_answer(page("evil", [entry("e.tar.gz", "../../x/e.tar.gz")]))
    )
    https_upstream.add_release("evil", "1.0")
    base = https_upstream.base_url.replace("https://", "https://user:secret@")
    settings = UpstreamSettings(base_url=base, retries=1, ca_bundle=certificate[0])
    caplog.set_level(logging.DEBUG)
    directory = tmp_path / "mirror"
    directory.mkdir()
    async with (
        Upstream(settings, sleep=no_sleep) as up,
        FileSystemStorage(directory / "web") as storage,
    ):
        with StateStore.open(directory / "mirror.db") as state:
            syncer = Syncer(
                upstream=up,
                storage=storage,
                state=state,
                options=SyncOptions(),
            )
            report = await syncer.run()
    assert sorted(f.name for f in report.failures) == ["broken", "evil"]
    texts = [f.error for f in report.failures]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    assert any("127.0.0.1" in text for text in texts), "the URLs are logged, redacted"
    assert not [text for text in texts if "secret" in text]
    assert (directory / "web" / "simple" / "alpha" / "index.v1_json").exists()


async def test_a_proxy_carries_every_request_and_its_credentials_stay_out_of_logs(
    upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fake upstream doubles as the proxy: the upstream URL itself leads nowhere,
    so the sync only works when every request goes through the proxy."""
    upstream.add_release("alpha", "1.0")
    proxy = upstream.base_url.replace("http://", "http://puser:psecret@")
    config = write_config(tmp_path, "http://127.0.0.1:9", allow_non_https="true", proxy=proxy)
    assert await run_cli("sync", "-vv", "-c", str(config)) == EXIT_OK
    assert any(path.startswith("/packages/") for _, path in upstream.request_log)
    assert_consistent(tmp_path / "mirror")
    async with FakeUpstream() as gone:
        dead = gone.base_url.replace("http://", "http://puser:psecret@")
    config = write_config(tmp_path, "http://127.0.0.1:9", allow_non_https="true", proxy=dead)
    assert await run_cli("sync", "-vv", "-c", str(config)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "sync failed" in err
    assert "psecret" not in err
