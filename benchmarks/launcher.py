"""``python -m benchmarks.launcher``: the fake upstream with one benchmark corpus, plus a
control server that changes the corpus between syncs.

Runs in its own process so the fake's CPU time never counts against the mirror being
measured. It prints one JSON line on stdout once serving (``upstream`` and ``control``
base URLs, ``projects``, ``files``, ``bytes``, ``serial``), then serves until killed.

Corpora (``--corpus``):

- ``large``: one wheel per project, sizes from :data:`LARGE_SIZES_MB` times
  ``--large-factor`` (1.0 is 2,150 MiB in 89 files from 1 MiB to 500 MiB). The files
  are sent with ``sendfile`` from a temporary directory (in ``/dev/shm`` where there
  is one), as a CDN would (``FakeUpstream.spill_files``): answered from memory they
  cost this process a saturated event loop, 4-5 s of CPU per 2.25 GB;
- ``small``: ``--count`` projects x one release x 3 wheels x 4 KiB payload, each wheel
  with its ``.metadata``;
- ``incremental``: ``--count`` generated projects (sdist and 2 wheels per release);
- ``scale``: ``--count`` projects with one tiny file each. The file is a few bytes, not
  a real archive: building 600,000 real sdists would take the launcher longer than
  the benchmark itself, and no mirror looks inside the files it copies.

``--latency-ms`` and ``--bandwidth`` put the fake upstream at a distance, as
``python -m mirror.testing`` does: every answer waits that long, and file bodies over
all connections together stay under the cap (sent from memory then, not with
``sendfile``).

Control server (loopback only), all answers JSON:

- ``GET /files``: ``[{"url", "size", "sha256"}]`` of the large corpus (the ceiling's
  download list; empty for the other corpora);
- ``GET /names``: the live projects' normalized names;
- ``GET /expected``: ``{"serial", "projects": {name: {filename: yanked}}}``, what a
  correct mirror holds now;
- ``POST /mixed?count=N``: N changes, each on a different project: new releases (40%),
  removed files (25%), removed projects (10%) and yanks (25%);
- ``POST /touch?serials=N``: new one-file releases on distinct projects until the
  serial has moved by at least N.

The expected state is replayed from the fake's public journal, the same record a
mirror follows, so it needs nothing from the fake's internals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from packaging.utils import canonicalize_name

from mirror.testing import FakeUpstream, JournalEntry, generate_corpus, make_wheel
from mirror.testing.__main__ import network_from_args

MIB = 1024 * 1024
# Where the large corpus' files are written to be sent with sendfile: memory-backed
# where the machine has it, so the syncs' page cache drops never evict them.
# (S108: only the parent of a mkdtemp directory, which is private and unique.)
_SHM = "/dev/shm"  # noqa: S108
_SPILL_ROOT = _SHM if Path(_SHM).is_dir() else None

# 2,150 MiB in 89 files, from 500 MiB down to 1 MiB (at --large-factor 1).
LARGE_SIZES_MB: tuple[int, ...] = (
    500,
    500,
    300,
    200,
    100,
    *(50,) * 4,
    *(20,) * 10,
    *(5,) * 20,
    *(1,) * 50,
)
SMALL_PAYLOAD_BYTES = 4096
SMALL_WHEELS = 3
INCREMENTAL_WHEELS = 2
CORPORA = ("large", "small", "incremental", "scale")


@dataclass(frozen=True, slots=True, kw_only=True)
class LargeFile:
    """One file of the large corpus, as the ceiling downloads it."""

    url: str
    size: int
    sha256: str


@dataclass(slots=True)
class _LiveProject:
    """A project as replayed from the journal: filename -> version, yanked versions."""

    files: dict[str, str] = field(default_factory=dict)
    yanked: set[str] = field(default_factory=set)


def replay(journal: Sequence[JournalEntry]) -> dict[str, _LiveProject]:
    """The live projects and files after ``journal``, keyed by normalized name."""
    live: dict[str, _LiveProject] = {}
    for entry in journal:
        key = canonicalize_name(entry.name)
        action = entry.action
        if action == "remove project":
            live.pop(key, None)
            continue
        project = live.setdefault(key, _LiveProject())
        if action.startswith("add ") and " file " in action:
            project.files[action.split(" file ", 1)[1]] = entry.version or ""
        elif action.startswith("remove file "):
            project.files.pop(action.removeprefix("remove file "), None)
        elif action == "remove release":
            project.files = {f: v for f, v in project.files.items() if v != entry.version}
            project.yanked.discard(entry.version or "")
        elif action == "yank release":
            project.yanked.add(entry.version or "")
        elif action == "unyank release":
            project.yanked.discard(entry.version or "")
    return live


def expected_state(upstream: FakeUpstream) -> dict[str, dict[str, bool]]:
    """``{project: {filename: yanked}}`` that a correct mirror of ``upstream`` holds."""
    return {
        name: {filename: version in project.yanked for filename, version in project.files.items()}
        for name, project in replay(upstream.journal).items()
    }


def publish_large(upstream: FakeUpstream, factor: float) -> list[LargeFile]:
    """Publish the large corpus; returns its files (the ceiling's download list)."""
    files: list[LargeFile] = []
    for index, size_mb in enumerate(LARGE_SIZES_MB):
        name = f"large-{index:03d}"
        payload = max(1, int(size_mb * MIB * factor))
        filename, content, metadata = make_wheel(name, "1.0", payload_bytes=payload)
        upstream.add_file(name, "1.0", filename, content, metadata=metadata)
        files.append(
            LargeFile(
                url=upstream.file_url(name, filename),
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
            )
        )
    return files


def publish_scale(upstream: FakeUpstream, count: int) -> None:
    """``count`` projects with one tiny (not a real archive) file each."""
    for index in range(count):
        name = f"scale-{index:06d}"
        upstream.add_file(name, "1.0", f"scale_{index:06d}-1.0.tar.gz", name.encode())


def apply_mixed(upstream: FakeUpstream, count: int, *, seed: int) -> dict[str, int]:
    """``count`` mixed changes on distinct projects; returns how many of each kind."""
    live = replay(upstream.journal)
    names = sorted(name for name, project in live.items() if project.files)
    if count > len(names):
        raise ValueError(f"{count} changes need {count} projects with files; have {len(names)}")
    rng = random.Random(seed)  # noqa: S311  # reproducible benchmark data, not crypto
    rng.shuffle(names)
    kinds = {"new release": 0, "remove file": 0, "remove project": 0, "yank": 0}
    for index, name in enumerate(names[:count]):
        project = live[name]
        slot = index % 20  # 8 new releases, 5 removed files, 2 removed projects, 5 yanks
        if slot < 8:
            upstream.add_release(name, "10.0")
            kinds["new release"] += 1
        elif slot < 13:
            upstream.remove_file(name, rng.choice(sorted(project.files)))
            kinds["remove file"] += 1
        elif slot < 15:
            upstream.remove_project(name)
            kinds["remove project"] += 1
        elif versions := sorted(set(project.files.values()) - project.yanked):
            upstream.yank(name, rng.choice(versions), reason="benchmark yank")
            kinds["yank"] += 1
        else:  # every release already yanked: a new release is the next best change
            upstream.add_release(name, "10.0")
            kinds["new release"] += 1
    return kinds


def apply_touch(upstream: FakeUpstream, serials: int) -> int:
    """New one-file releases on distinct projects until the serial moved by ``serials``;
    returns the number of projects changed."""
    start = upstream.serial
    names = upstream.project_names()
    touched = 0
    while upstream.serial - start < serials:
        name = names[touched % len(names)]
        # The serial makes the version new even when touch runs again.
        upstream.add_release(name, f"20.{upstream.serial}", sdist=True, wheel=False)
        touched += 1
    return touched


class _Control:
    """The control server's handlers over one running fake upstream."""

    def __init__(self, upstream: FakeUpstream, large: list[LargeFile], seed: int) -> None:
        self._upstream = upstream
        self._large = large
        self._seed = seed

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files", self._files)
        app.router.add_get("/names", self._names)
        app.router.add_get("/expected", self._expected)
        app.router.add_post("/mixed", self._mixed)
        app.router.add_post("/touch", self._touch)
        return app

    async def _files(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"url": f.url, "size": f.size, "sha256": f.sha256} for f in self._large]
        )

    async def _names(self, request: web.Request) -> web.Response:
        names = [canonicalize_name(name) for name in self._upstream.project_names()]
        return web.json_response(names)

    async def _expected(self, request: web.Request) -> web.Response:
        projects = expected_state(self._upstream)
        return web.json_response({"serial": self._upstream.serial, "projects": projects})

    async def _mixed(self, request: web.Request) -> web.Response:
        count = int(request.query.get("count", "500"))
        kinds = apply_mixed(self._upstream, count, seed=self._seed)
        return web.json_response({"serial": self._upstream.serial, "changes": kinds})

    async def _touch(self, request: web.Request) -> web.Response:
        serials = int(request.query.get("serials", "1000"))
        touched = apply_touch(self._upstream, serials)
        return web.json_response({"serial": self._upstream.serial, "projects": touched})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The launcher's command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launcher")
    parser.add_argument("--corpus", choices=CORPORA, required=True)
    parser.add_argument("--count", type=int, default=100, help="projects (not for large)")
    parser.add_argument("--large-factor", type=float, default=1.0, help="large file size x")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait per answer")
    parser.add_argument("--bandwidth", help="cap on file bytes/s, e.g. 50MB/s")
    args = parser.parse_args(argv)
    try:
        args.network = network_from_args(args.latency_ms, args.bandwidth)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    """Build the corpus, print the JSON ready line, serve until ``stop`` (or forever)."""
    async with (
        FakeUpstream(network=args.network) as upstream,
        contextlib.AsyncExitStack() as cleanup,
    ):
        large: list[LargeFile] = []
        if args.corpus == "large":
            large = await asyncio.to_thread(publish_large, upstream, args.large_factor)
            # Under a cap the files go through the bucket from memory: no spill.
            if args.network.bandwidth_bytes_per_second is None:
                files_dir = Path(tempfile.mkdtemp(prefix="mirror-bench-files-", dir=_SPILL_ROOT))
                cleanup.callback(shutil.rmtree, files_dir, ignore_errors=True)
                await asyncio.to_thread(upstream.spill_files, files_dir)
        elif args.corpus == "small":
            await asyncio.to_thread(
                generate_corpus,
                upstream,
                projects=args.count,
                seed=args.seed,
                releases_per_project=1,
                wheels_per_release=SMALL_WHEELS,
                sdists=False,
                file_size_bytes=SMALL_PAYLOAD_BYTES,
            )
        elif args.corpus == "incremental":
            await asyncio.to_thread(
                generate_corpus,
                upstream,
                projects=args.count,
                seed=args.seed,
                wheels_per_release=INCREMENTAL_WHEELS,
            )
        else:
            await asyncio.to_thread(publish_scale, upstream, args.count)
        runner = web.AppRunner(_Control(upstream, large, args.seed).app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            state = replay(upstream.journal)
            ready = {
                "upstream": upstream.base_url,
                "control": f"http://127.0.0.1:{port}",
                "projects": len(state),
                "files": sum(len(p.files) for p in state.values()),
                "bytes": sum(f.size for f in large),
                "serial": upstream.serial,
            }
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
            await (stop or asyncio.Event()).wait()
        finally:
            await runner.cleanup()


async def _serve_until_stopped(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT, then clean up (the spilled files included)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(args, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; runs until SIGTERM or SIGINT."""
    asyncio.run(_serve_until_stopped(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
