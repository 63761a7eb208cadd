"""A mirror served as an upstream, and what "an exact copy" of a mirror's tree means,
for the chain tests (fake upstream -> mirror A -> serve A -> mirror B -> ...)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from mirror.rpc import journal_serial_reader, xmlrpc_routes
from mirror.server import running_server
from mirror.state import STATE_NAME, StateStore
from mirror.storage import FileSystemStorage
from mirror.sync import Syncer, SyncOptions, SyncReport
from mirror.testing import FakeUpstream, make_sdist, make_wheel
from mirror.upstream import Upstream, UpstreamSettings
from tests.harness import Clock, no_sleep

ROOT_JSON = "simple/index.v1_json"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@asynccontextmanager
async def served(directory: Path, *, xmlrpc: bool = True) -> AsyncIterator[str]:
    """``mirror serve`` of the mirror ``directory`` on a free loopback port (as
    ``mirror.app.serve`` wires it: the journal over XML-RPC, its serials on the pages);
    with ``xmlrpc`` false a plain static tree (no ``/pypi``, no serial header). Yields
    the base URL."""
    async with running_server(
        directory / "web",
        port=0,
        access_log=False,
        extra_routes=xmlrpc_routes(directory) if xmlrpc else (),
        page_serial=journal_serial_reader(directory) if xmlrpc else None,
    ) as url:
        yield url


@asynccontextmanager
async def static_tree(directory: Path) -> AsyncIterator[str]:
    """The mirror ``directory``'s ``web/`` served as a bandersnatch tree behind nginx
    is: the JSON root without any ``_last-serial``, pages and files as static files
    (``ETag``, ``If-None-Match`` answered 304, no ``X-PyPI-Last-Serial``), nothing
    answering ``POST /pypi``. Yields the base URL."""
    web_root = directory / "web"

    async def root(request: web.Request) -> web.Response:
        data = json.loads((web_root / ROOT_JSON).read_bytes())
        del data["meta"]["_last-serial"]
        projects = [{"name": project["name"]} for project in data["projects"]]
        return web.json_response({**data, "projects": projects}, content_type=SIMPLE_JSON)

    async def page(request: web.Request) -> web.FileResponse:
        path = web_root / "simple" / request.match_info["name"] / "index.v1_json"
        if not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={"Content-Type": SIMPLE_JSON})

    app = web.Application()
    app.router.add_get("/simple/", root)
    app.router.add_get("/simple/{name}/", page)
    app.router.add_static("/packages/", web_root / "packages")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def sync_from(
    url: str,
    directory: Path,
    *,
    options: SyncOptions | None = None,
    clock: Clock | None = None,
) -> SyncReport:
    """One sync of the mirror ``directory`` from the index at ``url``, in-process."""
    directory.mkdir(parents=True, exist_ok=True)
    async with (
        Upstream(UpstreamSettings(base_url=url, retries=1), sleep=no_sleep) as client,
        FileSystemStorage(directory / "web") as storage,
    ):
        with StateStore.open(directory / STATE_NAME) as state:
            syncer = Syncer(
                upstream=client,
                storage=storage,
                state=state,
                options=options or SyncOptions(workers=3),
                clock=clock or Clock(),
            )
            return await syncer.run()


def tree(directory: Path) -> dict[str, bytes]:
    """Every file of the mirror's ``web/`` tree by relative path, with its bytes; the
    root JSON without its ``_last-serial`` values (each mirror's own serials)
    and ``last-modified`` (the time of each sync) left out."""
    web = directory / "web"
    files = {
        path.relative_to(web).as_posix(): path.read_bytes()
        for path in sorted(web.rglob("*"))
        if path.is_file()
    }
    files.pop("last-modified", None)
    if ROOT_JSON in files:
        root = json.loads(files[ROOT_JSON])
        del root["meta"]["_last-serial"]
        for project in root["projects"]:
            del project["_last-serial"]
        files[ROOT_JSON] = json.dumps(root, sort_keys=True).encode()
    return files


def publish(upstream: FakeUpstream, project: str, version: str, *, sdist: bool = True) -> None:
    """A wheel (with ``.metadata``) and, with ``sdist``, an sdist of ``project`` ``version``."""
    filename, wheel, metadata = make_wheel(project, version)
    upstream.add_file(project, version, filename, wheel, metadata=metadata)
    if sdist:
        sdist_name, sdist_bytes = make_sdist(project, version)
        upstream.add_file(project, version, sdist_name, sdist_bytes)


def mixed_changes(upstream: FakeUpstream) -> None:
    """New releases and projects, removed files, releases and projects, a yank, over
    what :func:`first_corpus` published."""
    publish(upstream, "alpha", "1.1")
    publish(upstream, "Delta_Pkg", "0.1", sdist=False)
    upstream.remove_file("beta", make_sdist("beta", "1.0")[0])
    upstream.remove_release("alpha", "1.0")
    upstream.remove_project("Gamma.Lib")
    upstream.yank("beta", "2.0", reason="broken")


def first_corpus(upstream: FakeUpstream) -> None:
    """Three projects, one with a display name that is not normalized."""
    publish(upstream, "alpha", "1.0")
    publish(upstream, "beta", "1.0")
    publish(upstream, "beta", "2.0", sdist=False)
    publish(upstream, "Gamma.Lib", "3.0")
    upstream.add_release("Gamma.Lib", "4.0")
