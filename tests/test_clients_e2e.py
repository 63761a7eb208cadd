"""Real clients against real servers: pip and uv install from a synced mirror, and from
it alone, served by ``mirror serve`` (the CLI, as a subprocess) and by nginx with the
repository's ``nginx/mirror.conf``.

Both servers must give the same answers: JSON pages for pip and uv (seen in the
access logs, with the ``.metadata`` files they fetch), yanked releases skipped unless
pinned, a clean "not found" for a project the mirror lacks, and the HTTP contract
(types, Vary, 301/404, caching, gzip only for pages, ranges). This machine's pip and
uv may be configured with other indexes: both run with every ``PIP_*``/``UV_*``
variable removed, no config files and ``--index-url`` only.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession

from mirror.testing import FakeUpstream, make_wheel
from tests.clients import free_port, pip_install, stop, uv_install, wait_for_port
from tests.harness import MirrorRunner
from tests.nginxserver import NGINX, REPO, running_nginx, server_block

pytestmark = pytest.mark.slow

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@dataclass(frozen=True)
class Served:
    """A mirror behind a running server: its base URL and its access log so far."""

    url: str
    web: Path
    access_log: Callable[[], str]


@contextmanager
def mirror_serve(web: Path, tmp: Path) -> Iterator[Served]:
    """``mirror serve`` through the real command line; stops it with SIGTERM (exit 0)."""
    port = free_port()
    config = tmp / "serve.conf"
    config.write_text(f"[mirror]\ndirectory = {web.parent}\n\n[serve]\nhost = 127.0.0.1\n")
    log = tmp / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "serve", "-c", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
        )
    try:
        wait_for_port(port, proc, log)
        yield Served(f"http://127.0.0.1:{port}", web, lambda: log.read_text(errors="replace"))
    finally:
        assert stop(proc, signal.SIGTERM) == 0, log.read_text(errors="replace")


@contextmanager
def nginx(web: Path, tmp: Path) -> Iterator[Served]:
    """nginx with the repository's ``nginx/mirror.conf`` over ``web``."""
    block = server_block(
        "mirror.conf",
        {"listen 80;": "listen 127.0.0.1:{port};", "root /srv/mirror/web;": f"root {web};"},
    )
    with running_nginx(block, tmp / "nginx") as running:
        yield Served(running.url, web, running.access_log)


SERVERS = [
    pytest.param(mirror_serve, id="mirror-serve"),
    pytest.param(
        nginx,
        id="nginx",
        marks=pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run does)"),
    ),
]


def publish(upstream: FakeUpstream) -> None:
    """mirrorapp 1.0 needs MirrorLib>=1; MirrorLib 3.0 is yanked, so 2.0 is picked."""
    for version in ["1.0", "2.0", "3.0"]:
        filename, wheel, metadata = make_wheel("mirrorlib", version)
        upstream.add_file("MirrorLib", version, filename, wheel, metadata=metadata)
    upstream.yank("MirrorLib", "3.0", reason="broken")
    filename, wheel, metadata = make_wheel("mirrorapp", "1.0", requires_dist=["MirrorLib>=1"])
    upstream.add_file("mirrorapp", "1.0", filename, wheel, metadata=metadata)


@pytest.fixture(params=SERVERS)
async def served(
    request: pytest.FixtureRequest, upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> AsyncIterator[Served]:
    publish(upstream)
    assert (await runner.sync()).ok
    server: Callable[[Path, Path], AbstractContextManager[Served]] = request.param
    with server(runner.web, tmp_path) as running:
        yield running


def installed_version(target: Path, module: str) -> str:
    match = re.search(r"[0-9][0-9.]*", (target / module / "__init__.py").read_text())
    assert match is not None
    return match.group(0)


async def test_pip_and_uv_install_from_the_mirror_alone(served: Served, tmp_path: Path) -> None:
    index = f"{served.url}/simple/"
    runs = {
        "pip": (pip_install, tmp_path / "pip", ("mirrorapp",)),
        "uv": (uv_install, tmp_path / "uv", ("mirrorapp",)),
        "pip-pinned": (pip_install, tmp_path / "pip-pinned", ("mirrorlib==3.0",)),
        "uv-pinned": (uv_install, tmp_path / "uv-pinned", ("mirrorlib==3.0",)),
        "pip-missing": (pip_install, tmp_path / "pip-missing", ("nosuchproject",)),
        "uv-missing": (uv_install, tmp_path / "uv-missing", ("nosuchproject",)),
    }
    results = dict(
        zip(
            runs,
            await asyncio.gather(
                *(
                    asyncio.to_thread(install, index, target, *requirements)
                    for install, target, requirements in runs.values()
                )
            ),
            strict=True,
        )
    )
    for name in ["pip", "uv", "pip-pinned", "uv-pinned"]:
        result = results[name]
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    # The app, and its dependency at the newest release that is not yanked.
    for name in ["pip", "uv"]:
        assert (tmp_path / name / "mirrorapp" / "__init__.py").exists()
        assert installed_version(tmp_path / name, "mirrorlib") == "2.0"
    # A yanked release still installs when pinned exactly (PEP 592).
    for name in ["pip-pinned", "uv-pinned"]:
        assert installed_version(tmp_path / name, "mirrorlib") == "3.0"
    # A project the mirror lacks: a clean resolver error, not a crash.
    for name in ["pip-missing", "uv-missing"]:
        result = results[name]
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "nosuchproject" in output
        assert "Traceback" not in output
        assert "panicked" not in output
    assert "No matching distribution found for nosuchproject" in results["pip-missing"].stderr
    assert "not found in the package registry" in results["uv-missing"].stderr

    log = served.access_log()
    for agent in ["pip/", "uv/"]:
        lines = [line for line in log.splitlines() if f'"{agent}' in line]
        # Both clients negotiated the PEP 691 JSON pages...
        for project in ["mirrorapp", "mirrorlib"]:
            assert any(
                f'GET /simple/{project}/ HTTP/1.1" 200' in line and JSON_TYPE in line
                for line in lines
            ), f"{agent} did not get the JSON page of {project}:\n{log}"
        # ...and read the PEP 658 metadata instead of downloading wheels to resolve.
        assert any('.whl.metadata HTTP/1.1" 200' in line for line in lines), log
        assert any('GET /simple/nosuchproject/ HTTP/1.1" 404' in line for line in lines), log


async def test_both_servers_keep_the_same_http_contract(served: Served) -> None:
    (wheel,) = served.web.glob("packages/*/*/*/mirrorlib-2.0-py3-none-any.whl")
    wheel_path = "/" + wheel.relative_to(served.web).as_posix()
    async with ClientSession(served.url, auto_decompress=False) as session:
        expectations = [
            (PIP_ACCEPT, JSON_TYPE, "index.v1_json"),
            (
                "application/vnd.pypi.simple.v1+html",
                "application/vnd.pypi.simple.v1+html",
                "index.v1_html",
            ),
            (BROWSER_ACCEPT, "text/html; charset=utf-8", "index.html"),
            ("*/*", "text/html; charset=utf-8", "index.html"),
            (f"{JSON_TYPE};q=0, text/html", "text/html; charset=utf-8", "index.html"),
        ]
        for accept, content_type, page in expectations:
            for path in ["/simple/", "/simple/mirrorlib/"]:
                async with session.get(
                    path, headers={"Accept": accept, "Accept-Encoding": "identity"}
                ) as response:
                    assert response.status == 200, (path, accept)
                    assert response.headers["Content-Type"] == content_type, (path, accept)
                    assert "Accept" in response.headers.getall("Vary")[0]
                    assert "max-age=600" in response.headers["Cache-Control"]
                    assert (
                        await response.read() == (served.web / path.strip("/") / page).read_bytes()
                    )

        async with session.get(
            "/simple/mirrorlib/", headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"}
        ) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            etag = response.headers["ETag"]
        async with session.get(
            "/simple/mirrorlib/",
            headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip", "If-None-Match": etag},
        ) as response:
            assert response.status == 304

        async with session.get("/simple/mirrorlib", allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"].endswith("/simple/mirrorlib/")
        for missing in [
            "/simple/nosuchproject/",
            "/simple/nosuchproject",
            f"{wheel_path}.nope",
            "/",
        ]:
            async with session.get(missing, allow_redirects=False) as response:
                assert response.status == 404, missing

        async with session.get(wheel_path, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200
            assert "Content-Encoding" not in response.headers
            assert await response.read() == wheel.read_bytes()
            assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        async with session.get(wheel_path, headers={"Range": "bytes=0-3"}) as response:
            assert response.status == 206
            assert await response.read() == b"PK\x03\x04"
        async with session.head(wheel_path) as response:
            assert response.headers["Content-Length"] == str(wheel.stat().st_size)
        async with session.get("/last-modified") as response:
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
