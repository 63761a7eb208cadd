"""``python -m mirror.testing.soak``: kill ``mirror sync`` at random moments, many
times, and prove the mirror survives every kill and converges afterwards.

The soak serves a generated corpus from an in-process :class:`FakeUpstream` behind a
throttling loopback proxy (so a run spends long enough downloading for kills to land
mid-download), changes upstream between runs (new releases and projects, removed
files, releases and projects, yanks and unyanks), starts ``python -m mirror sync`` as
a subprocess and sends it SIGKILL after a random, seeded delay. After every kill it
checks the crash invariant with :func:`mirror.verify.check_mirror`: no page links a
file that is missing, partial or fails its hash, and every file the state lists is on
disk and intact (no problem of a kind in :data:`mirror.verify.SAFETY_KINDS`). After
the last kill it runs one clean sync and checks convergence: exit code 0, a verify
with no problem of any kind (so no orphan, no temp, no stale root index), and the
mirror's pages listing exactly upstream's projects, files, hashes and yank markers.

With ``--backend s3`` the tree is a bucket of a real S3 API (moto's server, started
by the soak on 127.0.0.1; see :mod:`mirror.testing.soakbucket`), and every fifth
release has a file larger than a part, so kills land mid multipart upload too. Each
check after a kill is a deep verify (every object downloaded and hashed); the lock
a killed run left is let run out (its lease rewritten to have ended: the five
minutes a successor would wait), after the first one has been shown to refuse a
second sync; convergence also asks that no multipart upload is left unfinished and
that the lock was released.

Prints one line per kill and the figures at the end; exits 0 when there was no
violation and the mirror converged, 1 otherwise. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import aiohttp
from packaging.utils import canonicalize_name

from mirror.layout import STATE_NAME, WEB_DIR
from mirror.state import UNFINISHED_META_KEY, StateStore
from mirror.storage import FileSystemStorage
from mirror.testing.distributions import make_sdist, make_wheel
from mirror.testing.soakbucket import SoakBucket
from mirror.testing.upstream import FakeUpstream
from mirror.verify import SAFETY_KINDS, Problem, check_mirror

_FORMATS = frozenset({"html", "json"})
_SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
_CHUNK_BYTES = 64 * 1024
_STREAMING_SECONDS = 0.1
_LARGE_EVERY = 5
"""With large files asked for, every fifth release's sdist is one."""
_EXIT_LOCKED = 3
"""``mirror sync``'s exit code when another run holds a lock (``mirror.cli``)."""
_REFUSAL_TIMEOUT_SECONDS = 120.0
DEFAULT_S3_LARGE_FILE_BYTES = 20 << 20
"""The large files of ``--backend s3``: three parts of the backend's 8 MiB."""

Backend = Literal["filesystem", "s3"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakOptions:
    """What to soak, and how hard."""

    kills: int = 50
    seed: int = 0
    projects: int = 20
    file_size_bytes: int = 1280 * 1024
    """Payload added to every generated file."""
    rate_bytes_per_second: int = 8 * 1024 * 1024
    """What the throttling proxy lets through, all connections together."""
    directory: Path | None = None
    """Where the mirror and its config go (default: a fresh temporary directory)."""
    backend: Backend = "filesystem"
    """Where the tree goes: the mirror directory, or a bucket of a local moto server."""
    large_file_bytes: int = 0
    """The payload of every fifth release's sdist (0: none larger than the rest)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakResult:
    """The soak's figures."""

    backend: Backend = "filesystem"

    kills: int
    """SIGKILLs delivered to a running sync."""
    finished_before_kill: int
    """Runs that ended on their own before their kill was due."""
    mid_download: int
    """Kills while upstream's bytes were flowing to the sync (mostly files, some
    pages and XML-RPC), or after which a download temp was left under ``packages/``."""
    download_temps: int
    """Kills after which a download temp (in a bucket: an unfinished multipart
    upload) was left under ``packages/``."""
    mid_page_write: int
    """Kills after which a page temp was left under ``simple/`` (or the web root)."""
    violations: tuple[str, ...]
    """Crash-invariant violations seen after kills (must be empty)."""
    converged: bool
    convergence_errors: tuple[str, ...]
    elapsed_seconds: float
    leases_expired: int = 0
    """In a bucket: kills that left the bucket lock (its lease let run out)."""
    second_sync_refused: bool | None = None
    """In a bucket: whether a sync started while a killed run's lease lasted was
    refused (exit 3); None when no kill left a lock."""


@dataclass
class _Corpus:
    """The projects the soak publishes, and the changes it makes to them."""

    upstream: FakeUpstream
    rng: random.Random
    file_size_bytes: int
    large_file_bytes: int = 0
    releases: dict[str, list[str]] = field(default_factory=dict)
    """Live project -> its live versions, oldest first."""
    yanked: set[tuple[str, str]] = field(default_factory=set)
    wheel_removed: set[tuple[str, str]] = field(default_factory=set)
    created: int = 0
    released: int = 0
    pending_bytes: int = 0
    """Bytes published since the last run that finished (a guess at its work)."""

    def new_project(self) -> str:
        name = f"soak-{self.created:04d}"
        self.created += 1
        self.releases[name] = []
        self.new_release(name)
        return name

    def new_release(self, name: str) -> str:
        versions = self.releases[name]
        version = f"{len(versions) + 1}.0" if not versions else _next_version(versions[-1])
        # An empty release first: PyPI allows it, and the journal shows it.
        self.upstream.add_release(name, version, sdist=False, wheel=False)
        self.released += 1
        sdist_bytes = self.file_size_bytes
        if self.large_file_bytes and self.released % _LARGE_EVERY == 0:
            sdist_bytes = self.large_file_bytes
        filename, content = make_sdist(name, version, payload_bytes=sdist_bytes)
        self.upstream.add_file(name, version, filename, content)
        filename, content, metadata = make_wheel(name, version, payload_bytes=self.file_size_bytes)
        self.upstream.add_file(name, version, filename, content, metadata=metadata)
        versions.append(version)
        self.pending_bytes += sdist_bytes + self.file_size_bytes
        return version

    def change(self) -> str:
        """Make one random change upstream; describe it."""
        names = sorted(self.releases)
        roll = self.rng.random()
        if roll < 0.15 or len(names) < 3:
            return f"new project {self.new_project()}"
        if roll < 0.5:
            name = self.rng.choice(names)
            return f"new release {name} {self.new_release(name)}"
        return self._change_project(self.rng.choice(names), roll)

    def _change_project(self, name: str, roll: float) -> str:
        versions = self.releases[name]
        if roll < 0.6:
            del self.releases[name]
            self.upstream.remove_project(name)
            return f"removed project {name}"
        if roll < 0.7 and len(versions) > 1:
            version = versions.pop(0)
            self.upstream.remove_release(name, version)
            return f"removed release {name} {version}"
        if roll < 0.8 and versions and (name, versions[-1]) not in self.wheel_removed:
            version = versions[-1]
            filename, *_ = make_wheel(name, version)
            self.upstream.remove_file(name, filename)
            self.wheel_removed.add((name, version))
            return f"removed wheel {filename}"
        # A project always keeps a release: only the oldest of several is removed.
        return self._toggle_yank(name, self.rng.choice(versions))

    def _toggle_yank(self, name: str, version: str) -> str:
        if (name, version) in self.yanked:
            self.yanked.discard((name, version))
            self.upstream.unyank(name, version)
            return f"unyanked {name} {version}"
        self.yanked.add((name, version))
        self.upstream.yank(name, version, reason="soak")
        return f"yanked {name} {version}"


def _next_version(version: str) -> str:
    return f"{int(version.split('.', maxsplit=1)[0]) + 1}.0"


class _Throttle:
    """A loopback TCP proxy that lets ``rate`` bytes a second through from upstream to
    the client, shared by every connection.

    The fake upstream's pages carry absolute file URLs with its own port; the proxy
    rewrites ``//127.0.0.1:<upstream port>/`` to its own port on the way through
    (same length, so no ``Content-Length`` changes), so downloads are throttled too.
    """

    def __init__(self, target_port: int, rate: int) -> None:
        self._target_port = target_port
        self._rate = rate
        self._next = 0.0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._old = b""
        self._new = b""
        self.port = 0
        self.last_sent = 0.0
        """``loop.time()`` when bytes last went out to a client."""

    async def __aenter__(self) -> _Throttle:
        self._old = f"//127.0.0.1:{self._target_port}/".encode()
        while True:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._new = f"//127.0.0.1:{self.port}/".encode()
            if len(self._new) == len(self._old):
                self._server = server
                return self
            # A port of another digit count (the rewrite needs equal lengths): the
            # OS hands those out rarely, no test can ask for one.
            server.close()  # pragma: no cover

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Closing every connection ends its handler (cancelling one would be logged
        # as an error by asyncio's stream machinery).
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
            self._writers.add(up_writer)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._forward(reader, up_writer))
                group.create_task(self._throttled(up_reader, writer))
        except* OSError:
            pass  # the client was killed: the connection just ends
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK_BYTES):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    async def _throttled(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = b""
        try:
            while True:
                try:
                    # A held-back tail (a possible start of the URL to rewrite) goes out
                    # when nothing follows it soon: the answer may simply end there.
                    async with asyncio.timeout(0.05 if held else None):
                        chunk = await reader.read(_CHUNK_BYTES)
                except TimeoutError:
                    chunk, held = held, b""
                    await self._send(writer, chunk)
                    continue
                if not chunk:
                    await self._send(writer, held)
                    return
                data = (held + chunk).replace(self._old, self._new)
                keep = next(
                    (k for k in range(len(self._old) - 1, 0, -1) if data.endswith(self._old[:k])),
                    0,
                )
                data, held = data[: len(data) - keep], data[len(data) - keep :]
                await self._send(writer, data)
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not data:
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._next)
        self._next = start + len(data) / self._rate
        await asyncio.sleep(self._next - loop.time())
        writer.write(data)
        self.last_sent = loop.time()
        await writer.drain()


def _config(directory: Path, upstream_url: str, bucket: SoakBucket | None = None) -> Path:
    path = directory / "mirror.conf"
    path.write_text(
        "[mirror]\n"
        f"directory = {directory / 'mirror'}\n"
        f"upstream = {upstream_url}\n"
        "allow-non-https = true\n"
        "workers = 4\n"
        "download-concurrency = 8\n"
        "retries = 2\n" + ("" if bucket is None else bucket.config_section())
    )
    return path


async def _check(mirror: Path, bucket: SoakBucket | None = None) -> tuple[list[Problem], bool]:
    """Every problem verify finds in the mirror (in ``bucket``'s tree, deeply: every
    object downloaded and hashed), and whether a run was under way."""
    if not await asyncio.to_thread((mirror / STATE_NAME).exists):
        return [], False
    async with contextlib.AsyncExitStack() as stack:
        storage = bucket.storage if bucket is not None else FileSystemStorage(mirror / WEB_DIR)
        await stack.enter_async_context(storage)
        state = await asyncio.to_thread(StateStore.open, mirror / STATE_NAME)
        with state:
            report = await check_mirror(
                state, storage, formats=_FORMATS, workers=2, deep=bucket is not None
            )
            under_way = bool(await asyncio.to_thread(state.get_meta, UNFINISHED_META_KEY))
    return list(report.problems), under_way


async def _upstream_pages(session: aiohttp.ClientSession, base_url: str) -> dict[str, object]:
    """Upstream's PEP 691 view: {normalized name: sorted [filename, sha256, yanked]}."""
    async with session.get(f"{base_url}/simple/", headers=_SIMPLE_JSON) as response:
        root = await response.json(content_type=None)
    pages: dict[str, object] = {}
    for project in root["projects"]:
        name = canonicalize_name(project["name"])
        async with session.get(f"{base_url}/simple/{name}/", headers=_SIMPLE_JSON) as response:
            pages[name] = _files_of(await response.json(content_type=None))
    return pages


def _files_of(page: dict[str, list[dict[str, object]]]) -> list[tuple[object, ...]]:
    return sorted(
        (entry["filename"], json.dumps(entry["hashes"]), json.dumps(entry["yanked"]))
        for entry in page["files"]
    )


async def _page_files(mirror: Path, bucket: SoakBucket | None) -> dict[str, bytes]:
    """The mirror's JSON simple pages, root and projects, by path under the tree."""
    if bucket is not None:
        return {relative: data async for relative, data in bucket.page_files()}
    web = mirror / WEB_DIR
    paths = [web / "simple" / "index.v1_json", *(web / "simple").glob("*/index.v1_json")]
    return {path.relative_to(web).as_posix(): path.read_bytes() for path in paths}


def _mirror_pages(files: dict[str, bytes]) -> dict[str, object]:
    pages: dict[str, object] = {}
    root = json.loads(files["simple/index.v1_json"])
    for project in root["projects"]:
        name = canonicalize_name(project["name"])
        pages[name] = _files_of(json.loads(files[f"simple/{name}/index.v1_json"]))
    listed = {path.split("/")[1] for path in files if path.count("/") == 2}
    if listed != set(pages):
        pages["<page directories>"] = sorted(listed)
    return pages


async def _start_sync(
    config: Path, log: TextIO, bucket: SoakBucket | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        "sync",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
        env=None if bucket is None else bucket.environment(),
    )


async def _startup_seconds() -> float:
    """How long ``python -m mirror`` takes to start (its imports)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", "--version", stdout=asyncio.subprocess.DEVNULL
    )
    await process.wait()
    return time.monotonic() - started


async def soak(options: SoakOptions, *, out: TextIO) -> SoakResult:
    """Run the soak and return its figures (see the module docstring)."""
    async with contextlib.AsyncExitStack() as stack:
        directory = options.directory or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="mirror-soak-"))
        )
        directory.mkdir(parents=True, exist_ok=True)
        bucket = None
        if options.backend == "s3":
            bucket = await stack.enter_async_context(SoakBucket())
        return await _soak(options, directory, out, bucket)


@dataclass
class _Tally:
    kills: int = 0
    finished: int = 0
    mid_download: int = 0
    mid_page_write: int = 0
    download_temps: int = 0
    violations: list[str] = field(default_factory=list)
    typical_run_seconds: float = 0.0
    """How long the last run that finished took."""
    last_exit_code: int | None = None
    temps_seen: set[str] = field(default_factory=set)
    """The temps found after the last kill."""
    leases_expired: int = 0
    second_sync_refused: bool | None = None


async def _soak(
    options: SoakOptions, directory: Path, out: TextIO, bucket: SoakBucket | None
) -> SoakResult:
    started = time.monotonic()
    rng = random.Random(options.seed)  # noqa: S311  # reproducible test schedule, not crypto
    mirror = directory / "mirror"
    tally = _Tally()
    startup = await _startup_seconds()
    tally.typical_run_seconds = startup + 1.0
    async with FakeUpstream() as upstream:
        corpus = _Corpus(
            upstream=upstream,
            rng=rng,
            file_size_bytes=options.file_size_bytes,
            large_file_bytes=options.large_file_bytes,
        )
        for _ in range(options.projects):
            corpus.new_project()
        port = int(upstream.base_url.rsplit(":", 1)[1])
        async with _Throttle(port, options.rate_bytes_per_second) as proxy:
            config = _config(directory, f"http://127.0.0.1:{proxy.port}", bucket)
            with (directory / "sync.log").open("a") as log:
                attempt = 0
                while tally.kills < options.kills and attempt < options.kills * 4:
                    attempt += 1
                    changes: list[str] = []
                    if attempt > 1:
                        changes = [corpus.change() for _ in range(rng.randint(1, 4))]
                    work = corpus.pending_bytes / options.rate_bytes_per_second
                    # Mostly past start-up (imports), up to about when the run would end.
                    length = max(tally.typical_run_seconds, startup + work)
                    delay = rng.uniform(0.8 * startup, length)
                    line = await _run_and_kill(
                        config,
                        log=log,
                        delay=delay,
                        mirror=mirror,
                        tally=tally,
                        proxy=proxy,
                        bucket=bucket,
                    )
                    # A run that finished did the work published so far.
                    killed = line.startswith("kill")
                    corpus.pending_bytes = corpus.pending_bytes if killed else 0
                    out.write(f"{line}; {'; '.join(changes) or 'first run'}\n")
                    out.flush()
                final = await _start_sync(config, log, bucket)
                final_code = await final.wait()
        errors = await _convergence_errors(upstream, mirror, final_code, bucket)
    return SoakResult(
        backend=options.backend,
        leases_expired=tally.leases_expired,
        second_sync_refused=tally.second_sync_refused,
        kills=tally.kills,
        finished_before_kill=tally.finished,
        mid_download=tally.mid_download,
        mid_page_write=tally.mid_page_write,
        download_temps=tally.download_temps,
        violations=tuple(tally.violations),
        converged=not errors,
        convergence_errors=tuple(errors),
        elapsed_seconds=time.monotonic() - started,
    )


async def _run_and_kill(
    config: Path,
    *,
    log: TextIO,
    delay: float,
    mirror: Path,
    tally: _Tally,
    proxy: _Throttle,
    bucket: SoakBucket | None = None,
) -> str:
    """Start a sync, SIGKILL it after ``delay`` seconds and check the invariant;
    return a line about the kill (``kill N ...``) or about the run that ended first."""
    started = time.monotonic()
    process = await _start_sync(config, log, bucket)
    try:
        await asyncio.wait_for(process.wait(), timeout=delay)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
    # Bytes were flowing to the client just before the kill: it was downloading.
    streaming = asyncio.get_running_loop().time() - proxy.last_sent < _STREAMING_SECONDS
    if process.returncode != -signal.SIGKILL:
        tally.finished += 1
        tally.typical_run_seconds = time.monotonic() - started
        tally.last_exit_code = process.returncode
        tally.temps_seen = set()  # a run that ends removes what earlier kills left
        return (
            f"run ended before its kill ({delay:.2f}s): {tally.typical_run_seconds:.2f}s,"
            f" exit {process.returncode}"
        )
    tally.kills += 1
    lock = "" if bucket is None else await _settle_lock(config, log, bucket, tally)
    problems, under_way = await _check(mirror, bucket)
    bad = [p for p in problems if p.kind in SAFETY_KINDS]
    tally.violations += [f"kill {tally.kills}: {p.kind} {p.path}: {p.detail}" for p in bad]
    temps = {p.path for p in problems if p.kind == "temp"}
    # Only the temps this kill left tell where it landed; earlier kills' stay until
    # a run gets far enough to remove them.
    fresh = sorted(temps - tally.temps_seen)
    tally.temps_seen = temps
    where = classify_kill(
        fresh, under_way=under_way, streaming=streaming, bucket=bucket is not None
    )
    tally.mid_page_write += where == "mid-page-write"
    tally.mid_download += where.startswith("mid-download")
    tally.download_temps += where.endswith("left)")
    return (
        f"kill {tally.kills} after {delay:.2f}s ({where}): {len(bad)} violation(s),"
        f" {len(problems)} problem(s) for the next run to settle{lock}"
    )


async def _settle_lock(config: Path, log: TextIO, bucket: SoakBucket, tally: _Tally) -> str:
    """After a kill: the bucket lock the killed run left, if any, is let run out
    (the first one only after a second sync was shown to be refused while its
    lease lasted); a note for the kill's line."""
    lease = await bucket.lock_lease()
    if lease is None:
        return ""
    note = ", its lock left"
    if tally.second_sync_refused is None and lease > time.time():
        second = await _start_sync(config, log, bucket)
        try:
            code = await asyncio.wait_for(second.wait(), timeout=_REFUSAL_TIMEOUT_SECONDS)
        except TimeoutError:  # pragma: no cover  # a sync the lock failed to stop
            second.kill()
            code = await second.wait()
        tally.second_sync_refused = code == _EXIT_LOCKED
        note += f" (a second sync meanwhile exited {code})"
    await bucket.expire_lease()
    tally.leases_expired += 1
    return f"{note} and its lease let run out"


def classify_kill(
    temps: Sequence[str], *, under_way: bool, streaming: bool, bucket: bool = False
) -> str:
    """Where a kill landed, judged from the temps it left (paths under the web root;
    in a bucket, unfinished multipart uploads), whether the state says a run was
    under way and whether upstream's bytes were flowing: ``mid-page-write``,
    ``mid-download (temp left)`` (in a bucket: ``mid-download (multipart upload
    left)``), ``mid-download``, ``during the run, between writes`` or ``during
    start-up``."""
    if any(not t.startswith("packages/") for t in temps):
        return "mid-page-write"
    if temps:
        return "mid-download (multipart upload left)" if bucket else "mid-download (temp left)"
    if streaming:
        return "mid-download"
    return "during the run, between writes" if under_way else "during start-up"


async def _convergence_errors(
    upstream: FakeUpstream, mirror: Path, final_code: int, bucket: SoakBucket | None = None
) -> list[str]:
    """What keeps the mirror from being exactly upstream after the clean sync."""
    errors: list[str] = []
    if final_code != 0:
        errors.append(f"the clean sync exited {final_code} (see sync.log)")
    problems, _ = await _check(mirror, bucket)
    errors += [f"{p.kind} {p.path}: {p.detail}" for p in problems]
    if bucket is not None:
        errors += [f"unfinished upload of {key}" for key in await bucket.unfinished_uploads()]
        if await bucket.lock_lease() is not None:
            errors.append("the clean sync left the bucket lock behind")
    async with aiohttp.ClientSession() as session:
        expected = await _upstream_pages(session, upstream.base_url)
    try:
        got = _mirror_pages(await _page_files(mirror, bucket))
    except (OSError, ValueError, KeyError) as exc:
        return [*errors, f"the mirror's pages cannot be read: {exc}"]
    for name in sorted(set(expected) | set(got)):
        if expected.get(name) != got.get(name):
            errors.append(f"{name}: upstream {expected.get(name)}, mirror {got.get(name)}")
    return errors


def summary(result: SoakResult) -> str:
    """The figures, one per line."""
    left = "an unfinished multipart upload" if result.backend == "s3" else "a download temp"
    lines = [
        f"backend: {result.backend}",
        f"kills: {result.kills}",
        f"runs that finished before their kill: {result.finished_before_kill}",
        f"kills mid-download (bytes flowing from upstream): {result.mid_download},"
        f" of which left {left}: {result.download_temps}",
        f"kills mid-page-write: {result.mid_page_write}",
        *(
            [
                f"kills that left the bucket lock (lease let run out): {result.leases_expired}",
                "second sync refused while a killed run's lease lasted: "
                + {None: "not tried", True: "yes", False: "NO"}[result.second_sync_refused],
            ]
            if result.backend == "s3"
            else []
        ),
        f"invariant violations: {len(result.violations)}",
        *(f"  {violation}" for violation in result.violations),
        f"converged: {'yes' if result.converged else 'no'}",
        *(f"  {error}" for error in result.convergence_errors),
        f"time: {result.elapsed_seconds:.1f}s",
    ]
    return "".join(f"{line}\n" for line in lines)


def parse_options(argv: Sequence[str] | None) -> SoakOptions:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m mirror.testing.soak",
        description="Kill `mirror sync` at random moments and check the mirror survives.",
    )
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs to deliver")
    parser.add_argument("--seed", type=int, default=0, help="seed of the schedule and changes")
    parser.add_argument("--projects", type=int, default=20, help="projects to start with")
    parser.add_argument(
        "--file-size-bytes", type=int, default=1280 * 1024, help="payload per generated file"
    )
    parser.add_argument(
        "--rate", type=int, default=8 * 1024 * 1024, help="bytes per second upstream sends"
    )
    parser.add_argument("--directory", type=Path, help="keep the mirror here (default: temp)")
    parser.add_argument(
        "--backend",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="where the tree goes: the mirror directory, or a bucket of a moto server"
        " the soak starts on 127.0.0.1",
    )
    parser.add_argument(
        "--large-file-bytes",
        type=int,
        help="payload of every fifth release's sdist"
        f" (default: {DEFAULT_S3_LARGE_FILE_BYTES} with --backend s3, else none larger)",
    )
    args = parser.parse_args(argv)
    large = args.large_file_bytes
    if large is None:
        large = DEFAULT_S3_LARGE_FILE_BYTES if args.backend == "s3" else 0
    return SoakOptions(
        backend=args.backend,
        large_file_bytes=large,
        kills=args.kills,
        seed=args.seed,
        projects=args.projects,
        file_size_bytes=args.file_size_bytes,
        rate_bytes_per_second=args.rate,
        directory=args.directory,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; exit 0 when every kill kept the invariant, the mirror converged
    and (in a bucket) a second sync was refused while a killed run's lease lasted."""
    options = parse_options(argv)
    result = asyncio.run(soak(options, out=sys.stdout))
    sys.stdout.write(summary(result))
    refused = result.second_sync_refused is not False
    return 0 if result.converged and not result.violations and refused else 1


if __name__ == "__main__":  # pragma: no cover  # the module is run, not imported, here
    sys.exit(main())
