"""End to end: real pip installs from a synced mirror, and from it alone.

The mirror's ``web/`` directory is served over loopback twice: by ``python -m
http.server`` (pip reads the HTML pages) and by a small PEP 691-negotiating handler
(pip reads the JSON pages). pip runs isolated from this machine's settings, which name
extra indexes (:mod:`tests.clients`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirror.testing import FakeUpstream, make_wheel
from tests.clients import free_port, pip_install
from tests.harness import MirrorRunner

pytestmark = pytest.mark.slow

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class NegotiatingHandler(SimpleHTTPRequestHandler):
    """Serves the mirror's web tree with PEP 691 negotiation for JSON-first clients."""

    log: list[tuple[str, str]]

    def send_head(self):  # type: ignore[no-untyped-def]
        if self.path.startswith("/simple/") and self.path.endswith("/"):
            accept = self.headers.get("Accept", "")
            if JSON_TYPE in accept:
                page = Path(self.translate_path(self.path)) / "index.v1_json"
                if page.is_file():
                    body = page.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", JSON_TYPE)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.log.append(("json", self.path))
                    return _BytesFile(body)
        self.log.append(("file", self.path))
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _BytesFile:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        body, self._body = self._body, b""
        return body

    def close(self) -> None:
        self._body = b""


@contextmanager
def negotiating_server(web: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    log: list[tuple[str, str]] = []
    handler = type("Handler", (NegotiatingHandler,), {"log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(web)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_server(web: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", str(web), str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def publish_app_and_lib(upstream: FakeUpstream) -> None:
    for version in ["1.0", "2.0"]:
        filename, wheel, metadata = make_wheel("mirrorlib", version)
        upstream.add_file("MirrorLib", version, filename, wheel, metadata=metadata)
    filename, wheel, metadata = make_wheel("mirrorapp", "1.0", requires_dist=["MirrorLib>=2"])
    upstream.add_file("mirrorapp", "1.0", filename, wheel, metadata=metadata)


@pytest.fixture
async def mirrored(upstream: FakeUpstream, runner: MirrorRunner) -> MirrorRunner:
    """A mirror synced with the app and both releases of its library."""
    publish_app_and_lib(upstream)
    assert (await runner.sync()).ok
    return runner


async def test_pip_installs_through_the_html_pages(mirrored: MirrorRunner, tmp_path: Path) -> None:
    target = tmp_path / "site"
    with http_server(mirrored.web) as (url, proc):
        result = await asyncio.to_thread(pip_install, f"{url}/simple/", target, "mirrorapp")
        proc.terminate()
        access_log = proc.communicate(timeout=10)[1]
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "mirrorapp" / "__init__.py").exists()
    assert "2.0" in (target / "mirrorlib" / "__init__.py").read_text()
    fetched = re.findall(r'"GET (\S+) HTTP', access_log)
    assert any(path.endswith("mirrorapp-1.0-py3-none-any.whl.metadata") for path in fetched)
    assert any(path.endswith("mirrorlib-2.0-py3-none-any.whl.metadata") for path in fetched)


async def test_pip_installs_through_the_json_pages(mirrored: MirrorRunner, tmp_path: Path) -> None:
    target = tmp_path / "site"
    with negotiating_server(mirrored.web) as (url, log):
        result = await asyncio.to_thread(pip_install, f"{url}/simple/", target, "mirrorapp")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("json", "/simple/mirrorapp/") in log
    assert ("json", "/simple/mirrorlib/") in log
    fetched = [path for kind, path in log if kind == "file"]
    assert any(path.endswith("mirrorlib-2.0-py3-none-any.whl.metadata") for path in fetched)
    assert (target / "mirrorlib" / "__init__.py").exists()


async def test_pip_finds_nothing_the_mirror_does_not_hold(
    upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    publish_app_and_lib(upstream)
    assert (await runner.sync(projects=["mirrorapp"])).ok
    with negotiating_server(runner.web) as (url, _):
        result = await asyncio.to_thread(
            pip_install, f"{url}/simple/", tmp_path / "site", "mirrorapp"
        )
    assert result.returncode != 0, "the dependency is not mirrored, so pip must fail"
    assert "mirrorlib" in (result.stdout + result.stderr).lower()
