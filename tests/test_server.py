"""``mirror serve``: negotiation, redirects, 404s, files, caching, over a real socket."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from mirror.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, main
from mirror.config import load_config
from mirror.errors import MirrorError
from mirror.server import (
    ACCESS_LOG_FORMAT,
    PACKAGE_CACHE_CONTROL,
    TEXT_HTML,
    V1_HTML,
    V1_JSON,
    accepts_gzip,
    create_app,
    negotiate,
    running_server,
    serve,
)

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
WHEEL = "packages/ab/cd/0123456789/demo-1.0-py3-none-any.whl"
WHEEL_BYTES = bytes(range(256)) * 8
PAGES = {
    "index.html": b"<!DOCTYPE html><html><body>" + b"html " * 100 + b"</body></html>\n",
    "index.v1_html": b"<!DOCTYPE html><html><body>" + b"v1html " * 100 + b"</body></html>\n",
    "index.v1_json": b'{"meta": {"api-version": "1.4"}, "files": []}' + b" " * 400 + b"\n",
}


def write_tree(web_root: Path) -> None:
    """A web/ tree as sync writes it: root index, one project, a file, JSON API copy."""
    for directory in (web_root / "simple", web_root / "simple" / "demo"):
        directory.mkdir(parents=True)
        for name, body in PAGES.items():
            (directory / name).write_bytes(body.replace(b"html ", directory.name.encode()))
    wheel = web_root / WHEEL
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(WHEEL_BYTES)
    (wheel.parent / f"{wheel.name}.metadata").write_bytes(b"Name: demo\n")
    # A sibling aiohttp would love to send instead, gzip-encoded: it must never.
    (wheel.parent / f"{wheel.name}.gz").write_bytes(gzip.compress(b"not the wheel"))
    (web_root / "pypi" / "demo").mkdir(parents=True)
    (web_root / "pypi" / "demo" / "json").write_bytes(b'{"info": {"name": "demo"}}' * 20)
    (web_root / "last-modified").write_bytes(b"20260817T21:25:43\n")
    # The state store sits beside web/, never under it: path escapes aim for it.
    (web_root.parent / "mirror.db").write_bytes(b"SECRET STATE")


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    root = tmp_path / "mirror" / "web"
    write_tree(root)
    return root


async def status_page(request: web.Request) -> web.Response:
    del request
    return web.Response(text="status")


async def metrics_page(request: web.Request) -> web.Response:
    del request
    return web.Response(text="metrics")


@pytest.fixture
async def client(web_root: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app(
        web_root,
        extra_routes=[web.get("/metrics", metrics_page), web.get("/status/", status_page)],
    )
    async with TestClient(TestServer(app), auto_decompress=False) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


# --- negotiation: the table Warehouse's tests and real clients pin down -------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(None, TEXT_HTML, id="no header"),
        pytest.param("", TEXT_HTML, id="empty header"),
        pytest.param(PIP_ACCEPT, V1_JSON, id="pip"),
        pytest.param(UV_ACCEPT, V1_JSON, id="uv"),
        pytest.param(BROWSER_ACCEPT, TEXT_HTML, id="browser"),
        pytest.param("*/*", TEXT_HTML, id="anything: the first offer"),
        pytest.param("text/plain", TEXT_HTML, id="no match: text/html, never 406"),
        pytest.param(f"{TEXT_HTML}, {V1_HTML}, {V1_JSON}", TEXT_HTML, id="tie: first offer"),
        pytest.param(
            f"{TEXT_HTML};q=0.01, {V1_HTML};q=0.2, {V1_JSON}", V1_JSON, id="warehouse q table"
        ),
        pytest.param(V1_HTML, V1_HTML, id="v1 html only"),
        pytest.param(V1_JSON.upper(), V1_JSON, id="case-insensitive"),
        pytest.param(f"{V1_JSON};q=0, */*", TEXT_HTML, id="q=0 excludes json"),
        pytest.param(f"{TEXT_HTML};q=0, application/*", V1_HTML, id="type wildcard, tie"),
        pytest.param(f"text/*;q=0.5, {V1_JSON};q=0.4", TEXT_HTML, id="higher q wins"),
        pytest.param(f"*/*;q=0.1, {V1_JSON};q=0", TEXT_HTML, id="specific q=0 beats */*"),
        pytest.param(
            f"{V1_JSON};q=0.1, {V1_JSON};q=0.9, {TEXT_HTML};q=0.5",
            TEXT_HTML,
            id="first of equally specific ranges counts",
        ),
        pytest.param(f"{V1_JSON};charset=utf-8", TEXT_HTML, id="range with params: no match"),
        pytest.param(f"{TEXT_HTML};q=0, {V1_HTML};q=0, {V1_JSON};q=0", TEXT_HTML, id="all refused"),
        pytest.param("application/vnd.pypi.simple.latest+json", TEXT_HTML, id="latest: no"),
        pytest.param("garbage", TEXT_HTML, id="invalid: all acceptable"),
        pytest.param(f"{V1_JSON};q=2", TEXT_HTML, id="invalid q: all acceptable"),
        pytest.param(f'{V1_JSON};q=1;ext="a b", text/html;q=0.5', V1_JSON, id="accept-ext"),
        pytest.param(f"{V1_JSON} , ,", V1_JSON, id="empty list elements"),
        pytest.param(f", {V1_JSON}", TEXT_HTML, id="space after a leading comma: invalid"),
    ],
)
def test_negotiate_picks_the_type_warehouse_picks(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("accept", "available", "expected"),
    [
        pytest.param(None, [V1_JSON], V1_JSON, id="json-only mirror, no header"),
        pytest.param("garbage", [V1_JSON], V1_JSON, id="json-only mirror, invalid header"),
        pytest.param(PIP_ACCEPT, [V1_JSON], V1_JSON, id="json-only mirror, pip"),
        pytest.param(TEXT_HTML, [V1_JSON], None, id="json-only mirror, html client: 406"),
        pytest.param(PIP_ACCEPT, [TEXT_HTML, V1_HTML], V1_HTML, id="html-only mirror, pip"),
        pytest.param("text/plain", [TEXT_HTML, V1_HTML], TEXT_HTML, id="html-only, no match"),
        pytest.param(None, [], None, id="nothing on disk"),
    ],
)
def test_negotiate_chooses_among_the_pages_on_disk(
    accept: str | None, available: list[str], expected: str | None
) -> None:
    assert negotiate(accept, available) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate", True),
        ("x-gzip", True),
        ("GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=nonsense", False),
        ("deflate, br", False),
        ("identity", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("br;level=3, gzip", True),
    ],
)
def test_accepts_gzip_reads_q_values(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("accept", "content_type", "page"),
    [
        (PIP_ACCEPT, V1_JSON, "index.v1_json"),
        (UV_ACCEPT, V1_JSON, "index.v1_json"),
        (V1_HTML, V1_HTML, "index.v1_html"),
        (BROWSER_ACCEPT, "text/html; charset=utf-8", "index.html"),
        ("text/plain", "text/html; charset=utf-8", "index.html"),
    ],
)
@pytest.mark.parametrize("path", ["/simple/", "/simple/demo/"])
async def test_simple_pages_are_negotiated_and_vary_on_accept(
    client: Client, web_root: Path, *, path: str, accept: str, content_type: str, page: str
) -> None:
    response = await client.get(path, headers={"Accept": accept, "Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.headers["Cache-Control"] == "max-age=600, public"
    assert "Content-Encoding" not in response.headers
    assert await response.read() == (web_root / path.lstrip("/") / page).read_bytes()


async def test_simple_page_without_accept_is_html(client: Client) -> None:
    response = await client.get("/simple/demo/", skip_auto_headers=["Accept"])
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


async def test_json_only_mirror_answers_406_to_an_html_only_client(
    client: Client, web_root: Path
) -> None:
    (web_root / "simple" / "demo" / "index.html").unlink()
    (web_root / "simple" / "demo" / "index.v1_html").unlink()
    refused = await client.get("/simple/demo/", headers={"Accept": TEXT_HTML})
    assert refused.status == 406
    assert refused.headers["Vary"] == "Accept"
    served = await client.get("/simple/demo/", headers={"Accept": PIP_ACCEPT})
    assert served.headers["Content-Type"] == V1_JSON


# --- redirects and 404s ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple", "/simple/"),
        ("/simple/demo", "/simple/demo/"),
        ("/simple/Demo/", "/simple/demo/"),
        ("/simple/DEMO", "/simple/demo/"),
        ("/pypi/Demo/json", "/pypi/demo/json"),
    ],
)
async def test_unnormalized_names_and_missing_slashes_redirect_permanently(
    client: Client, path: str, location: str
) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 301
    assert response.headers["Location"] == location


async def test_a_redirect_leads_to_the_page(client: Client) -> None:
    response = await client.get("/simple/De_Mo/".replace("_", ""), headers={"Accept": V1_JSON})
    assert response.status == 200
    assert response.url.path == "/simple/demo/"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/simple/unknown/",
        "/simple/unknown",
        "/simple/-invalid-/",
        "/simple/demo/index.html",
        "/simple/demo/extra/",
        "/packages/",
        "/packages/ab/cd/",
        "/packages/ab/cd/0123456789/missing.whl",
        "/packages/ab/cd/0123456789",
        "/pypi/unknown/json",
        "/pypi/-invalid-/json",
        "/pypi/demo/json/",
        "/web/last-modified",
        "/mirror.db",
        "/packages/..%2F..%2F..%2Fmirror.db",
        "/packages/ab/..%2F..%2F..%2Fmirror.db",
        "/packages/ab/%2E%2E/%2E%2E/%2E%2E/mirror.db",
        "/packages/ab/cd/..%5C..%5Cmirror.db",
        "/packages/ab/cd/0123456789/demo%00.whl",
        "/packages/ab//cd/0123456789/demo-1.0-py3-none-any.whl",
        "/simple/..%2F..%2Fmirror.db/",
        "/pypi/..%2F..%2Fmirror.db/json",
    ],
)
async def test_unknown_paths_and_escape_attempts_are_404(client: Client, path: str) -> None:
    # encoded=True sends the path byte for byte: no client-side normalisation of dots.
    url = client.make_url("").join(URL(path, encoded=True))
    response = await client.session.get(url, allow_redirects=False)
    assert response.status == 404
    assert b"SECRET" not in await response.read()


async def test_dot_segments_in_the_raw_request_line_never_escape(web_root: Path) -> None:
    async with running_server(web_root, port=0, access_log=False) as url:
        port = URL(url).port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /packages/../../mirror.db HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 404")
    assert b"SECRET" not in answer


async def test_extra_routes_are_mounted_beside_the_tree(client: Client) -> None:
    assert await (await client.get("/metrics")).text() == "metrics"
    assert await (await client.get("/status/")).text() == "status"


async def test_a_page_that_vanishes_mid_request_is_a_404(
    client: Client, web_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sync renamed the project away between the stat and the read.
    def vanished(self: Path) -> bytes:
        raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(Path, "read_bytes", vanished)
    response = await client.get("/simple/demo/")
    assert response.status == 404


# --- files: bytes, ranges, HEAD, conditional requests, caching --------------------------


async def test_a_file_is_served_exactly_and_cached_for_a_year(client: Client) -> None:
    response = await client.get(f"/{WHEEL}", headers={"Accept-Encoding": "gzip, br"})
    assert response.status == 200
    assert await response.read() == WHEEL_BYTES
    assert "Content-Encoding" not in response.headers
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(WHEEL_BYTES))
    assert response.headers["Cache-Control"] == PACKAGE_CACHE_CONTROL
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "ETag" in response.headers
    assert "Last-Modified" in response.headers


async def test_metadata_files_are_served_too(client: Client) -> None:
    response = await client.get(f"/{WHEEL}.metadata")
    assert await response.read() == b"Name: demo\n"
    assert response.headers["Cache-Control"] == PACKAGE_CACHE_CONTROL


@pytest.mark.parametrize(
    ("range_header", "start", "stop"),
    [("bytes=0-9", 0, 10), ("bytes=100-", 100, 2048), ("bytes=-16", 2032, 2048)],
)
async def test_a_single_range_gets_206(
    client: Client, range_header: str, start: int, stop: int
) -> None:
    response = await client.get(f"/{WHEEL}", headers={"Range": range_header})
    assert response.status == 206
    assert await response.read() == WHEEL_BYTES[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/2048"


@pytest.mark.parametrize("range_header", ["bytes=5000-6000", "bytes=x-y"])
async def test_an_unsatisfiable_range_gets_416(client: Client, range_header: str) -> None:
    response = await client.get(f"/{WHEEL}", headers={"Range": range_header})
    assert response.status == 416
    assert response.headers["Content-Range"] == "bytes */2048"


async def test_head_gives_headers_without_a_body(client: Client) -> None:
    response = await client.head(f"/{WHEEL}")
    assert response.status == 200
    assert response.headers["Content-Length"] == "2048"
    assert await response.read() == b""
    page = await client.head("/simple/demo/", headers={"Accept": PIP_ACCEPT})
    assert page.status == 200
    assert page.headers["Content-Type"] == V1_JSON
    assert await page.read() == b""


@pytest.mark.parametrize("path", [f"/{WHEEL}", "/simple/demo/", "/pypi/demo/json"])
async def test_revalidation_with_etag_or_date_gets_304(client: Client, path: str) -> None:
    first = await client.get(path, headers={"Accept": PIP_ACCEPT})
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    by_etag = await client.get(path, headers={"Accept": PIP_ACCEPT, "If-None-Match": etag})
    assert by_etag.status == 304
    assert by_etag.headers["ETag"] == etag
    assert await by_etag.read() == b""
    weak = await client.get(path, headers={"Accept": PIP_ACCEPT, "If-None-Match": f"W/{etag}"})
    assert weak.status == 304
    any_tag = await client.get(path, headers={"Accept": PIP_ACCEPT, "If-None-Match": "*"})
    assert any_tag.status == 304
    by_date = await client.get(
        path, headers={"Accept": PIP_ACCEPT, "If-Modified-Since": last_modified}
    )
    assert by_date.status == 304
    stale = await client.get(path, headers={"Accept": PIP_ACCEPT, "If-None-Match": '"other"'})
    assert stale.status == 200
    old = await client.get(
        path,
        headers={"Accept": PIP_ACCEPT, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    )
    assert old.status == 200


async def test_each_page_variant_has_its_own_etag(client: Client) -> None:
    html = await client.get("/simple/demo/", headers={"Accept": TEXT_HTML})
    v1_html = await client.get("/simple/demo/", headers={"Accept": V1_HTML})
    json_page = await client.get(
        "/simple/demo/", headers={"Accept": V1_JSON, "If-None-Match": html.headers["ETag"]}
    )
    assert len({html.headers["ETag"], v1_html.headers["ETag"], json_page.headers["ETag"]}) == 3
    assert json_page.status == 200, "another variant's ETag must not validate this one"


async def test_simple_pages_are_gzipped_only_for_clients_that_accept_it(
    client: Client, web_root: Path
) -> None:
    page = (web_root / "simple" / "demo" / "index.v1_json").read_bytes()
    zipped = await client.get(
        "/simple/demo/", headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip, deflate"}
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == page
    assert zipped.headers["ETag"].endswith('-gzip"')
    plain = await client.get(
        "/simple/demo/", headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip;q=0"}
    )
    assert "Content-Encoding" not in plain.headers
    assert await plain.read() == page


async def test_json_api_copy_is_application_json(client: Client, web_root: Path) -> None:
    response = await client.get("/pypi/demo/json", headers={"Accept-Encoding": "identity"})
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "max-age=600, public"
    assert await response.read() == (web_root / "pypi" / "demo" / "json").read_bytes()


async def test_last_modified_is_plain_text_and_never_stale(client: Client) -> None:
    response = await client.get("/last-modified")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.read() == b"20260817T21:25:43\n"


# --- running it ------------------------------------------------------------------------


async def test_running_server_logs_each_request_with_the_type_served(
    web_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mirror.server.access")
    async with (
        running_server(web_root, port=0) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/demo/", headers={"Accept": PIP_ACCEPT}) as response,
    ):
        assert response.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "mirror.server.access"]
    assert any('"GET /simple/demo/ HTTP/1.1" 200' in line and V1_JSON in line for line in lines)
    assert "%{Content-Type}o" in ACCESS_LOG_FORMAT


async def test_running_server_without_access_log_logs_no_requests(
    web_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mirror.server.access")
    async with (
        running_server(web_root, port=0, access_log=False) as url,
        ClientSession() as session,
        session.get(f"{url}/simple/") as response,
    ):
        assert response.status == 200
    assert not [r for r in caplog.records if r.name == "mirror.server.access"]


async def test_a_taken_port_is_a_mirror_error(web_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MirrorError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with running_server(web_root, port=port):
                pass  # pragma: no cover - the bind fails first


async def test_serve_runs_until_sigterm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mirror.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve(tmp_path / "web", host="127.0.0.1", port=port))
    async with ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/simple/") as response:
                    assert response.status == 404, "nothing synced yet"
                break
            except OSError:
                await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, timeout=5)
    messages = [record.getMessage() for record in caplog.records]
    assert any("does not exist yet" in message for message in messages)
    assert any("stopping" in message for message in messages)


async def test_serve_stops_cleanly_when_cancelled(web_root: Path) -> None:
    task = asyncio.create_task(serve(web_root, port=0, access_log=False))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# --- the command line ----------------------------------------------------------------------


def write_config(tmp_path: Path, web_root: Path, serve_section: str = "") -> Path:
    config = tmp_path / "mirror.conf"
    config.write_text(f"[mirror]\ndirectory = {web_root.parent}\n{serve_section}")
    return config


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_serve_refuses_a_port_that_is_not_one(
    tmp_path: Path, web_root: Path, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "-c", str(write_config(tmp_path, web_root)), "--port", port])
    assert exit_info.value.code == EXIT_USAGE
    assert "expected a TCP port from 1 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[serve]\nport = 99999\n", "[serve] port: must be between 1 and 65535"),
        ("[serve]\nhost = a b\n", "[serve] host: expected a host name or IP address"),
        ("[serve]\nhost =\n", "[serve] host: expected a host name or IP address"),
        ("[serve]\naccess-log = maybe\n", "[serve] access-log: expected true or false"),
        ("[serve]\nlisten = 80\n", "[serve] listen: unknown key"),
    ],
)
def test_serve_section_errors_name_the_key(
    tmp_path: Path, web_root: Path, section: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "-c", str(write_config(tmp_path, web_root, section))]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_serve_section_sets_host_port_and_access_log(tmp_path: Path, web_root: Path) -> None:
    config = load_config(
        write_config(tmp_path, web_root, "[serve]\nhost = ::1\nport = 3141\naccess-log = off\n")
    )
    assert (config.serve_host, config.serve_port, config.serve_access_log) == ("::1", 3141, False)
    defaults = load_config(write_config(tmp_path, web_root))
    assert (defaults.serve_host, defaults.serve_port, defaults.serve_access_log) == (
        "127.0.0.1",
        8080,
        True,
    )


def test_serve_on_a_taken_port_exits_4(
    tmp_path: Path, web_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        config = write_config(tmp_path, web_root, f"[serve]\nport = {port}\n")
        assert main(["serve", "-c", str(config)]) == EXIT_ERROR
    assert f"serve failed: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def start_serve(config: Path) -> tuple[subprocess.Popen[str], int]:
    """``python -m mirror serve`` on a free loopback port, returned once it listens (or
    after five seconds); its stderr is piped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "serve", "-c", str(config), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(500):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.01)
    return proc, port


def test_serve_exits_130_on_ctrl_c(tmp_path: Path, web_root: Path) -> None:
    proc, _ = start_serve(write_config(tmp_path, web_root))
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr


def test_mirror_serve_also_serves_metrics_and_the_status_page(
    tmp_path: Path, web_root: Path
) -> None:
    """Before any sync there is no state store: both answer 503, never 404 or 500."""
    proc, port = start_serve(write_config(tmp_path, web_root))
    try:
        statuses = []
        for path in ("/metrics", "/status/"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        assert statuses == [503, 503]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
