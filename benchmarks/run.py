"""``python -m benchmarks.run``: ``mirror sync`` against bandersnatch, on loopback and
over a simulated network.

Every case starts the fake upstream (``benchmarks.launcher``) in a process of its own
on 127.0.0.1, runs each tool as a whole process and takes its wall time, CPU time and
peak RSS from ``os.wait4``. The network cases put the fake at a distance
(``--latency-ms``, ``--bandwidth``: every answer waits, file bodies share a cap) and
run ``mirror`` at its shipped defaults, bandersnatch at its maximum ``workers = 10``.
Prints one table (runs, then the issues' targets with pass/fail) and writes the same
as JSON (``--output``, default ``benchmarks/results/latest.json``). Exit status 0 when
every measured process succeeded (a missed target is a result, not a failure of the
benchmark), 1 otherwise.

Nothing here contacts a real index; the only network use outside loopback is the
one-time ``pip install`` of bandersnatch into its own venv (``--no-bandersnatch``
skips it).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TextIO

from benchmarks import bandersnatch
from benchmarks.check import TreeCheck, check_tree
from benchmarks.measure import MIB, Measurement, run_measured

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "latest.json"
MB = 1_000_000
GB = 1_000_000_000
# verify comes right after large-files: it checks the large-files mirrors while the
# large corpus' upstream (kept in memory) is still up; s3 uses it too, and stops it
# once done with it. That upstream is stopped before any other case starts.
# The network cases: small projects at 25 ms and 100 ms per answer, large files under a
# bandwidth cap (and 25 ms per answer).
NET_SMALL_CASES = {"small-25ms": 25.0, "small-100ms": 100.0}
NET_LARGE_CASE = "large-capped"
NET_LARGE_LATENCY_MS = 25.0
CASES = (
    "large-files",
    "verify",
    "s3",
    "small-projects",
    "incremental",
    "scale",
    *NET_SMALL_CASES,
    NET_LARGE_CASE,
)
LARGE_CASES = frozenset({"large-files", "verify", "s3"})
NETWORK_CASES = frozenset({*NET_SMALL_CASES, NET_LARGE_CASE})
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
MIRROR = "mirror"
BANDERSNATCH = "bandersnatch"
CEILING = "ceiling"
MIRROR_S3 = "mirror-s3"
"""``mirror sync`` with ``[storage] backend = s3``, into a bucket of a local moto server."""
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench-key-id",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Dummy credentials for moto on loopback (botocore's chain finds them in the env),
shared config files and instance metadata off: nothing reaches a real cloud."""
RSS_LIMIT_BYTES = 300 * MIB
# Issue 16's loopback CPU and rate targets are taken at this many small projects.
LOOPBACK_PROJECTS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    """Corpus sizes for one ``--scale``."""

    large_factor: float
    """Multiplies the large corpus' 1 MiB-500 MiB file sizes (1.0: 2,150 MiB)."""
    small_projects: tuple[int, int]
    """The two many-small-projects sizes; the target compares their rates."""
    incremental_base: int
    incremental_changes: int
    scale_projects: int
    scale_behind: int
    """Serials the "behind" sync of the scale case starts behind."""
    rounds: int = 3
    """Runs of each tool in the large-files and verify cases (rotating which goes
    first); the median is recorded."""
    bandersnatch_limit_seconds: float | None = None
    """Stop bandersnatch's many-small-projects syncs after this long and count the
    projects it finished (its todo file makes a first sync quadratic)."""
    net_small_projects: tuple[int, int] = (20, 10)
    """Small projects in the network cases at 25 ms and at 100 ms per answer."""
    net_large_factor: float = 0.002
    """The large corpus' size factor under the bandwidth cap."""
    net_bandwidth_bytes_per_second: int = 10 * 1_000_000
    """The cap on file bytes per second in the large-capped case."""


PRESETS = {
    "tiny": Preset(
        large_factor=0.001,
        rounds=1,
        small_projects=(10, 50),
        incremental_base=30,
        incremental_changes=20,
        scale_projects=100,
        scale_behind=20,
        net_small_projects=(20, 10),
        net_large_factor=0.002,
        net_bandwidth_bytes_per_second=10 * 1_000_000,
    ),
    "small": Preset(
        large_factor=0.1,
        small_projects=(1_000, 10_000),
        incremental_base=2_000,
        incremental_changes=500,
        scale_projects=60_000,
        scale_behind=1_000,
        net_small_projects=(2_000, 1_000),
        # The whole corpus: 45 s at 50 MB/s, so a second of start-up is 2% of it.
        net_large_factor=1.0,
        net_bandwidth_bytes_per_second=50 * 1_000_000,
    ),
    "full": Preset(
        large_factor=1.0,
        small_projects=(10_000, 100_000),
        incremental_base=5_000,
        incremental_changes=500,
        scale_projects=600_000,
        scale_behind=1_000,
        bandersnatch_limit_seconds=900.0,
        net_small_projects=(10_000, 5_000),
        net_large_factor=1.0,
        net_bandwidth_bytes_per_second=50 * 1_000_000,
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One measured process."""

    case: str
    tool: str
    wall_seconds: float
    cpu_seconds: float
    system_seconds: float
    """The kernel's part of ``cpu_seconds`` (file systems, page cache, sockets)."""
    peak_rss_mib: float
    exit_code: int
    work: float
    """How much the run did, in ``rate_unit`` times seconds (MB, projects, changes)."""
    rate_unit: str
    rate: float
    correct: bool | None = None
    """For the incremental case: did the tree match upstream afterwards; for verify:
    did the tool find the mirror clean."""
    note: str = ""
    stopped: bool = False
    """The run reached its time limit; ``work`` is what it finished by then."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One of the issue's targets with its measured value."""

    name: str
    goal: str
    measured: str
    status: str
    """``pass``, ``fail`` or ``n/a`` (a needed run is missing)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """The launcher's ready line."""

    upstream: str
    control: str
    projects: int
    files: int
    bytes: int
    serial: int


@dataclass(slots=True)
class Results:
    """Everything a benchmark run produced."""

    scale: str
    started: str
    bandersnatch: str | None
    runs: list[Run] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)

    def find(self, case: str, tool: str) -> Run | None:
        """The run of ``tool`` in ``case``, if it was measured."""
        return next((r for r in self.runs if r.case == case and r.tool == tool), None)


class Launcher:
    """A running ``benchmarks.launcher`` process and its control server."""

    def __init__(self, process: subprocess.Popen[str], ready: Ready) -> None:
        self.process = process
        self.ready = ready

    def get(self, path: str) -> object:
        """GET a control endpoint; the decoded JSON answer."""
        return self._call(path, "GET")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the fake upstream's process has used so far (from
        ``/proc/<pid>/stat``; 0.0 where there is none): the share of the two cores the
        tools did not get."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()  # after the command name: state, ppid, ...
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path: str) -> object:
        """POST to a control endpoint; the decoded JSON answer."""
        return self._call(path, "POST")

    def _call(self, path: str, method: str) -> object:
        url = f"{self.ready.control}{path}"
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"refusing a control URL off loopback: {url}")
        request = urllib.request.Request(url, method=method)  # noqa: S310  # checked above
        with urllib.request.urlopen(request, timeout=3600) as response:  # noqa: S310
            return json.loads(response.read())


@contextmanager
def launch(
    corpus: str,
    *,
    count: int,
    log: Path,
    large_factor: float = 1.0,
    latency_ms: float = 0.0,
    bandwidth_bytes_per_second: int | None = None,
) -> Iterator[Launcher]:
    """Start the fake upstream with ``corpus`` (that far away and that fast); stops it
    on exit."""
    argv = [sys.executable, "-m", "benchmarks.launcher", "--corpus", corpus, "--count", str(count)]
    argv += ["--large-factor", str(large_factor), "--latency-ms", str(latency_ms)]
    if bandwidth_bytes_per_second is not None:
        argv += ["--bandwidth", str(bandwidth_bytes_per_second)]
    with log.open("ab") as errors:
        process = subprocess.Popen(  # noqa: S603  # our own launcher module
            argv, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=REPO
        )
    try:
        stdout: IO[str] | None = process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the {corpus} launcher exited early; see {log}")
        yield Launcher(process, Ready(**json.loads(line)))
    finally:
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def s3_server(log: Path) -> Iterator[str]:
    """Start ``benchmarks.s3server`` (moto on 127.0.0.1); its endpoint URL. Stopped on
    exit (its stdin closed, then SIGTERM)."""
    argv = [sys.executable, "-m", "benchmarks.s3server"]
    with log.open("ab") as errors:
        process = subprocess.Popen(  # noqa: S603  # our own module
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=REPO,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the S3 server exited early; see {log}")
        endpoint = str(json.loads(line)["endpoint"])
        if not endpoint.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"refusing an S3 endpoint off loopback: {endpoint}")
        yield endpoint
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


class Bucket:
    """One bucket of the benchmark's S3 server (a plain botocore client: the benchmark
    itself needs no event loop)."""

    def __init__(self, endpoint: str, name: str) -> None:
        from botocore.session import get_session  # noqa: PLC0415  # the S3 case only

        self.endpoint = endpoint
        self.name = name
        self._client = get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self._client.create_bucket(Bucket=name)

    def storage_section(self) -> str:
        """The ``[storage]`` section of a mirror config syncing into this bucket."""
        return (
            f"[storage]\nbackend = s3\nbucket = {self.name}\nprefix = mirror/\n"
            f"endpoint-url = {self.endpoint}\nregion = {S3_CREDENTIALS['AWS_DEFAULT_REGION']}\n"
        )

    def stored(self, top: str = "packages/") -> tuple[int, int]:
        """Objects and bytes under ``mirror/<top>``."""
        objects = size = 0
        for page in self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=f"mirror/{top}"
        ):
            for item in page.get("Contents", []):
                objects += 1
                size += int(item["Size"])
        return objects, size

    def empty(self) -> None:
        """Delete every object (so the server does not hold earlier rounds' bytes)."""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.name, Delete={"Objects": keys})


def s3_environment() -> dict[str, str]:
    """The environment of a ``mirror sync`` into the benchmark's S3 server."""
    cleared = {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"}
    env = {name: value for name, value in os.environ.items() if name not in cleared}
    return env | S3_CREDENTIALS


class Bench:
    """Runs the cases of one benchmark run, appending to :class:`Results`."""

    def __init__(
        self,
        *,
        preset: Preset,
        workdir: Path,
        results: Results,
        bandersnatch_script: Path | None,
        workers: int,
        drop_caches: bool = True,
    ) -> None:
        self.preset = preset
        self.workdir = workdir
        self.results = results
        self.script = bandersnatch_script
        self.workers = workers
        self.log = workdir / "bench.log"
        self.drop_caches = drop_caches
        self._large_stack = ExitStack()
        self._large_up: Launcher | None = None
        self._large_synced = False

    def large_upstream(self) -> Launcher:
        """The large corpus' upstream, started on first use and kept up until
        :meth:`close_large` (the verify case needs it after the large-files syncs)."""
        if self._large_up is None:
            factor = self.preset.large_factor
            self._large_up = self._large_stack.enter_context(
                launch("large", count=0, log=self.log, large_factor=factor)
            )
        return self._large_up

    def close_large(self) -> None:
        """Stop the large corpus' upstream (it holds the whole corpus in memory)."""
        self._large_stack.close()
        self._large_up = None

    # --- tools -------------------------------------------------------------------

    def mirror_sync(
        self,
        directory: Path,
        upstream: str,
        *,
        bucket: Bucket | None = None,
        defaults: bool = False,
    ) -> Measurement:
        """One ``mirror sync`` of ``directory`` from ``upstream`` (its tree in
        ``bucket`` when given); with ``defaults`` at the mirror's shipped settings (no
        ``workers``), else with the benchmark's ``workers``."""
        conf = directory.with_suffix(".conf")
        tuning = "" if defaults else f"workers = {self.workers}\n"
        conf.write_text(
            f"[mirror]\ndirectory = {directory}\nupstream = {upstream}\n"
            f"allow-non-https = true\n{tuning}"
            + ("" if bucket is None else bucket.storage_section()),
            encoding="utf-8",
        )
        argv = [sys.executable, "-m", "mirror", "sync", "-c", str(conf), "-q"]
        env = None if bucket is None else s3_environment()
        return run_measured(argv, log=self.log, cwd=REPO, env=env)

    def bandersnatch_sync(
        self,
        directory: Path,
        upstream: str,
        *,
        limit_seconds: float | None = None,
        workers: int | None = None,
    ) -> Measurement | None:
        """One ``bandersnatch mirror`` of ``directory`` (stopped after ``limit_seconds``
        if given) with ``workers`` (default ``--workers``); None without bandersnatch."""
        if self.script is None:
            return None
        conf = directory.with_suffix(".bandersnatch.conf")
        if not conf.exists():
            directory.mkdir(parents=True, exist_ok=True)
            bandersnatch.write_config(
                conf, directory=directory, master=upstream, workers=workers or self.workers
            )
        argv = [str(self.script), "-c", str(conf), "mirror"]
        return run_measured(argv, log=self.log, cwd=self.workdir, limit_seconds=limit_seconds)

    def record(
        self,
        case: str,
        tool: str,
        measurement: Measurement | None,
        *,
        work: float,
        unit: str,
        correct: bool | None = None,
        note: str = "",
    ) -> None:
        """Append a run (nothing when the tool did not run)."""
        if measurement is None:
            return
        wall = measurement.wall_seconds
        if measurement.stopped:
            stop = f"stopped at its time limit, after {wall:.1f} s, with {work:g} done"
            note = f"{note}; {stop}" if note else stop
        self.results.runs.append(
            Run(
                case=case,
                tool=tool,
                wall_seconds=round(wall, 3),
                cpu_seconds=round(measurement.cpu_seconds, 3),
                system_seconds=round(measurement.system_seconds, 3),
                peak_rss_mib=round(measurement.peak_rss_bytes / MIB, 1),
                exit_code=measurement.exit_code,
                work=work,
                rate_unit=unit,
                rate=round(work / wall, 3) if wall > 0 else 0.0,
                correct=correct,
                note=note,
                stopped=measurement.stopped,
            )
        )

    # --- cases -------------------------------------------------------------------

    def large_files(self) -> None:
        """Large files: MB/s of mirror, the ceiling and bandersnatch, each syncing into
        an empty directory ``rounds`` times in a rotating order (see :meth:`verify`
        for why); the median run is recorded. The page cache is flushed before each
        run, so no tool pays for another's writes (bandersnatch does not fsync)."""
        up = self.large_upstream()
        megabytes = up.ready.bytes / MB
        note = f"{up.ready.files} files, {megabytes:.1f} MB"
        upstream = up.ready.upstream

        def mirror() -> Sample:
            measured = self.mirror_sync(_emptied(self.workdir / "large-mirror"), upstream)
            return Sample(tool=MIRROR, measurement=measured, work=megabytes, note=note)

        def ceiling() -> Sample:
            # As many downloads at a time as the tools have projects in flight.
            argv = [sys.executable, "-m", "benchmarks.ceiling", up.ready.control]
            destination = _emptied(self.workdir / "large-ceiling")
            argv += [str(destination), "--concurrency", str(self.workers)]
            measured = run_measured(argv, log=self.log, cwd=REPO)
            return Sample(tool=CEILING, measurement=measured, work=megabytes, note=note)

        def theirs() -> Sample:
            measured = self.bandersnatch_sync(_emptied(self.workdir / "large-bander"), upstream)
            assert measured is not None
            return Sample(tool=BANDERSNATCH, measurement=measured, work=megabytes)

        tools = [mirror, ceiling] + ([theirs] if self.script is not None else [])
        self._record_rounds("large-files", "MB/s", tools)
        self._large_synced = True

    def _record_rounds(self, case: str, unit: str, tools: Sequence[Callable[[], Sample]]) -> None:
        """Run every tool ``rounds`` times, the order rotating from one round to the
        next, and record each tool's :func:`representative` run."""
        rounds: dict[str, list[Sample]] = {}
        for number in range(self.preset.rounds):
            shift = number % len(tools)
            for tool in [*tools[shift:], *tools[:shift]]:
                sample = tool()
                rounds.setdefault(sample.tool, []).append(sample)
        for samples in rounds.values():
            chosen = representative(samples)
            note = chosen.note
            if len(samples) > 1:
                walls = ", ".join(f"{s.measurement.wall_seconds:.2f}" for s in samples)
                note = f"{note}; " if note else ""
                note += f"median of {len(samples)} runs ({walls} s)"
            self.record(
                case,
                chosen.tool,
                chosen.measurement,
                work=chosen.work,
                unit=unit,
                correct=chosen.correct,
                note=note,
            )

    def s3(self) -> None:
        """The S3 backend against the file system in the same run: the large-files
        corpus (MB/s, ``rounds`` times in a rotating order, the median recorded) and
        the first many-small-projects size (projects/s), each synced by ``mirror
        sync`` into an empty directory and into an empty bucket of a moto server on
        loopback (``benchmarks.s3server``, a process of its own). Peak RSS is the
        sync's alone. moto is a stand-in for the S3 API, not for an S3 service's
        speed: the ratios say what the backend costs on top of the store it talks to.
        """
        if importlib.util.find_spec("moto") is None:
            self.results.not_applicable["s3"] = "moto is not installed (pip install '.[test]')"
            return
        with s3_server(self.log) as endpoint:
            self._s3_large_files(endpoint)
            self.close_large()
            count = self.preset.small_projects[0]
            with launch("small", count=count, log=self.log) as up:
                note = f"{up.ready.projects} projects, {up.ready.files} files"
                directory = _emptied(self.workdir / "s3-small-fs")
                ours = self.mirror_sync(directory, up.ready.upstream)
                self.record(
                    "s3-small-projects",
                    MIRROR,
                    ours,
                    work=count,
                    unit="projects/s",
                    note=f"{note}; file system",
                )
                bucket = Bucket(endpoint, "small-projects")
                directory = _emptied(self.workdir / "s3-small-bucket")
                ours = self.mirror_sync(directory, up.ready.upstream, bucket=bucket)
                objects, size = bucket.stored()
                self.record(
                    "s3-small-projects",
                    MIRROR_S3,
                    ours,
                    work=count,
                    unit="projects/s",
                    correct=objects >= up.ready.files,
                    note=f"{note}; bucket: {objects} objects, {size / MB:.1f} MB under packages/",
                )
                bucket.empty()

    def _s3_large_files(self, endpoint: str) -> None:
        up = self.large_upstream()
        megabytes = up.ready.bytes / MB
        note = f"{up.ready.files} files, {megabytes:.1f} MB"
        upstream = up.ready.upstream
        rounds = itertools.count()

        def on_disk() -> Sample:
            measured = self.mirror_sync(_emptied(self.workdir / "s3-large-fs"), upstream)
            return Sample(
                tool=MIRROR, measurement=measured, work=megabytes, note=f"{note}; file system"
            )

        def in_bucket() -> Sample:
            bucket = Bucket(endpoint, f"large-files-{next(rounds)}")
            directory = _emptied(self.workdir / "s3-large-bucket")
            measured = self.mirror_sync(directory, upstream, bucket=bucket)
            objects, size = bucket.stored()
            bucket.empty()
            return Sample(
                tool=MIRROR_S3,
                measurement=measured,
                work=megabytes,
                correct=size >= up.ready.bytes,
                note=f"{note}; bucket: {objects} objects, {size / MB:.1f} MB under packages/",
            )

        self._record_rounds("s3-large-files", "MB/s", [on_disk, in_bucket])

    def small_projects(self) -> None:
        """Many small projects at two sizes: projects/s."""
        for index, count in enumerate(self.preset.small_projects):
            case = "small-projects" if index == 0 else "small-projects-x10"
            with launch("small", count=count, log=self.log) as up:
                note = f"{up.ready.projects} projects, {up.ready.files} files"
                ours = self.mirror_sync(self.workdir / f"{case}-mirror", up.ready.upstream)
                self.record(case, MIRROR, ours, work=count, unit="projects/s", note=note)
                directory = self.workdir / f"{case}-bander"
                limit = self.preset.bandersnatch_limit_seconds
                theirs = self.bandersnatch_sync(directory, up.ready.upstream, limit_seconds=limit)
                done = count
                if theirs is not None and theirs.stopped:
                    done = bandersnatch.finished_projects(directory)
                self.record(case, BANDERSNATCH, theirs, work=done, unit="projects/s")

    def incremental(self) -> None:
        """Mixed changes on top of a synced mirror: time, and whether the tree is right."""
        base, changes = self.preset.incremental_base, self.preset.incremental_changes
        with launch("incremental", count=base, log=self.log) as up:
            ours_dir = self.workdir / "incremental-mirror"
            theirs_dir = self.workdir / "incremental-bander"
            first = self.mirror_sync(ours_dir, up.ready.upstream)
            self.record("incremental-setup", MIRROR, first, work=base, unit="projects/s")
            first_theirs = self.bandersnatch_sync(theirs_dir, up.ready.upstream)
            self.record(
                "incremental-setup", BANDERSNATCH, first_theirs, work=base, unit="projects/s"
            )
            applied = up.post(f"/mixed?count={changes}")
            assert isinstance(applied, dict)
            note = ", ".join(f"{v} {k}" for k, v in applied["changes"].items())
            ours = self.mirror_sync(ours_dir, up.ready.upstream)
            theirs = self.bandersnatch_sync(theirs_dir, up.ready.upstream)
            expected = up.get("/expected")
            assert isinstance(expected, dict)
            projects: dict[str, dict[str, bool]] = expected["projects"]
            ours_check = check_tree(ours_dir / "web", projects)
            self.record(
                "incremental",
                MIRROR,
                ours,
                work=changes,
                unit="changes/s",
                correct=ours_check.correct,
                note=f"{note}; {ours_check.describe()}",
            )
            if theirs is not None:
                theirs_check: TreeCheck = check_tree(theirs_dir / "web", projects)
                self.record(
                    "incremental",
                    BANDERSNATCH,
                    theirs,
                    work=changes,
                    unit="changes/s",
                    correct=theirs_check.correct,
                    note=theirs_check.describe(),
                )

    def scale(self) -> None:
        """A mirror of many projects: no-op sync, N serials behind, root index rebuild."""
        count, behind = self.preset.scale_projects, self.preset.scale_behind
        with launch("scale", count=count, log=self.log) as up:
            ours_dir = self.workdir / "scale-mirror"
            theirs_dir = self.workdir / "scale-bander"
            first = self.mirror_sync(ours_dir, up.ready.upstream)
            self.record("scale-setup", MIRROR, first, work=count, unit="projects/s")
            if self.script is not None:
                names = up.get("/names")
                assert isinstance(names, list)
                bandersnatch.seed(theirs_dir, serial=up.ready.serial, names=names)
            steps = (
                ("scale-noop", None, f"{count} projects, nothing changed"),
                ("scale-behind", behind, f"{behind} serials behind"),
                ("scale-root-index", 1, "one change, so the root index is rewritten"),
            )
            for case, serials, note in steps:
                touched = 0
                if serials is not None:
                    answer = up.post(f"/touch?serials={serials}")
                    assert isinstance(answer, dict)
                    touched = int(answer["projects"])
                ours = self.mirror_sync(ours_dir, up.ready.upstream)
                self.record(case, MIRROR, ours, work=touched, unit="projects/s", note=note)
                theirs = self.bandersnatch_sync(theirs_dir, up.ready.upstream)
                self.record(case, BANDERSNATCH, theirs, work=touched, unit="projects/s")

    def network_small(self, case: str) -> None:
        """Small projects ``NET_SMALL_CASES[case]`` ms away: projects/s of ``mirror`` at
        its shipped defaults and of bandersnatch at ``workers = 10``, each tree checked
        against upstream afterwards."""
        latency_ms = NET_SMALL_CASES[case]
        index = list(NET_SMALL_CASES).index(case)
        count = self.preset.net_small_projects[index]
        with launch("small", count=count, log=self.log, latency_ms=latency_ms) as up:
            note = (
                f"{up.ready.projects} projects, {up.ready.files} files, "
                f"{latency_ms:g} ms per answer"
            )
            expected = up.get("/expected")
            assert isinstance(expected, dict)
            projects: dict[str, dict[str, bool]] = expected["projects"]
            ours_dir = self.workdir / f"{case}-mirror"
            cpu_before = up.cpu_seconds()
            ours = self.mirror_sync(ours_dir, up.ready.upstream, defaults=True)
            upstream_cpu = _upstream_cpu(up, cpu_before)
            ours_check = check_tree(ours_dir / "web", projects)
            self.record(
                case,
                MIRROR,
                ours,
                work=count,
                unit="projects/s",
                correct=ours_check.correct,
                note=f"{note}; shipped defaults; {ours_check.describe()}; {upstream_cpu}",
            )
            theirs_dir = self.workdir / f"{case}-bander"
            cpu_before = up.cpu_seconds()
            theirs = self.bandersnatch_sync(
                theirs_dir,
                up.ready.upstream,
                limit_seconds=self.preset.bandersnatch_limit_seconds,
                workers=bandersnatch.DEFAULT_WORKERS,
            )
            done = count
            if theirs is not None and theirs.stopped:
                done = bandersnatch.finished_projects(theirs_dir)
            self.record(
                case,
                BANDERSNATCH,
                theirs,
                work=done,
                unit="projects/s",
                note=f"workers = {bandersnatch.DEFAULT_WORKERS}; {_upstream_cpu(up, cpu_before)}",
            )

    def network_large(self) -> None:
        """Large files under the preset's bandwidth cap, ``NET_LARGE_LATENCY_MS`` away:
        MB/s of ``mirror`` at its shipped defaults and of bandersnatch at ``workers =
        10``, each into an empty directory."""
        rate = self.preset.net_bandwidth_bytes_per_second
        with launch(
            "large",
            count=0,
            log=self.log,
            large_factor=self.preset.net_large_factor,
            latency_ms=NET_LARGE_LATENCY_MS,
            bandwidth_bytes_per_second=rate,
        ) as up:
            megabytes = up.ready.bytes / MB
            note = (
                f"{up.ready.files} files, {megabytes:.1f} MB, cap {rate / MB:g} MB/s, "
                f"{NET_LARGE_LATENCY_MS:g} ms per answer"
            )
            ours_dir = _emptied(self.workdir / f"{NET_LARGE_CASE}-mirror")
            cpu_before = up.cpu_seconds()
            ours = self.mirror_sync(ours_dir, up.ready.upstream, defaults=True)
            self.record(
                NET_LARGE_CASE,
                MIRROR,
                ours,
                work=megabytes,
                unit="MB/s",
                note=f"{note}; shipped defaults; {_upstream_cpu(up, cpu_before)}",
            )
            theirs_dir = _emptied(self.workdir / f"{NET_LARGE_CASE}-bander")
            cpu_before = up.cpu_seconds()
            theirs = self.bandersnatch_sync(
                theirs_dir, up.ready.upstream, workers=bandersnatch.DEFAULT_WORKERS
            )
            self.record(
                NET_LARGE_CASE,
                BANDERSNATCH,
                theirs,
                work=megabytes,
                unit="MB/s",
                note=f"workers = {bandersnatch.DEFAULT_WORKERS}; {_upstream_cpu(up, cpu_before)}",
            )

    def verify(self) -> None:
        """Verify the large-files mirrors: GB/s of ``mirror verify``, the read ceiling
        and ``bandersnatch verify``, each from a cold page cache when the kernel lets us
        drop it, each run ``rounds`` times in a rotating order; the median run
        is recorded.

        Why rounds: on this VM the first cold read after the large-files syncs was
        often much slower than the next ones (the host still writing back, most
        likely), and it always fell on the same tool. Rotating the order shares that
        out, and the median drops it.

        Runs the large-files case first when it has not run. bandersnatch's verify reads
        the ``web/json/<name>`` files a ``json = true`` sync stores; the large-files sync
        runs with ``json = false`` (like ``mirror``, which has no JSON API to mirror), so
        they are written here, unmeasured, from the fake's ``/pypi/<name>/json``.

        bandersnatch runs as ``verify --dry-run``: without ``--json-update`` (off by
        default in 8.2) it fetches no metadata, and ``--dry-run`` makes it report a bad
        file instead of fetching it, so it is a pure local check like ``mirror verify``
        (which hashes the same files; it also checks pages and walks the tree). Its
        verify ignores ``allow-non-https`` (8.2 builds its ``Master`` without it), so its
        config names the master as ``https://``: nothing is fetched, so nothing breaks.
        """
        if not self._large_synced:
            self.large_files()
        up = self.large_upstream()
        tools: list[Callable[[], Sample]] = [self._verify_mirror, self._verify_ceiling]
        if self.script is not None:
            names = up.get("/names")
            assert isinstance(names, list)
            seed_bandersnatch_json(self.workdir / "large-bander", up.ready.upstream, names)
            tools.append(functools.partial(self._verify_bandersnatch, up.ready.upstream))
        self._record_rounds("verify", "GB/s", tools)

    def _verify_mirror(self) -> Sample:
        ours_dir = self.workdir / "large-mirror"
        ours_bytes = tree_bytes(ours_dir / "web" / "packages")
        report = self.workdir / "verify-mirror.json"
        report.unlink(missing_ok=True)
        cold = self.drop_caches and drop_page_cache()
        argv = [sys.executable, "-m", "mirror", "verify", "-c", str(ours_dir.with_suffix(".conf"))]
        ours = run_measured([*argv, "-q", "--json"], log=report, cwd=REPO)
        return Sample(
            tool=MIRROR,
            measurement=ours,
            work=ours_bytes / GB,
            correct=ours.exit_code == 0,
            note=f"{_verify_note(report, ours_bytes)}; {_cache_note(cold)}",
        )

    def _verify_ceiling(self) -> Sample:
        packages = self.workdir / "large-mirror" / "web" / "packages"
        cold = self.drop_caches and drop_page_cache()
        argv = [sys.executable, "-m", "benchmarks.readceiling", str(packages)]
        return Sample(
            tool=CEILING,
            measurement=run_measured(argv, log=self.log, cwd=REPO),
            work=tree_bytes(packages) / GB,
            correct=None,
            note=f"read and sha256 of the same files, nothing else; {_cache_note(cold)}",
        )

    def _verify_bandersnatch(self, upstream: str) -> Sample:
        assert self.script is not None
        theirs_dir = self.workdir / "large-bander"
        theirs_bytes = tree_bytes(theirs_dir / "web" / "packages")
        log = self.workdir / "verify-bandersnatch.log"
        log.unlink(missing_ok=True)
        cold = self.drop_caches and drop_page_cache()
        conf = bandersnatch.write_config(
            theirs_dir.with_suffix(".bandersnatch-verify.conf"),
            directory=theirs_dir,
            master=upstream.replace("http://", "https://", 1),
            workers=self.workers,
        )
        argv = [str(self.script), "-c", str(conf), "verify", "--dry-run"]
        theirs = run_measured(argv, log=log, cwd=self.workdir)
        text = log.read_text(encoding="utf-8", errors="replace")
        with self.log.open("a", encoding="utf-8") as bench_log:
            bench_log.write(text)
        # A clean mirror needs no download; a bad file is only logged (exit code 0).
        clean = "No files would be downloaded" in text
        return Sample(
            tool=BANDERSNATCH,
            measurement=theirs,
            work=theirs_bytes / GB,
            correct=clean,
            note=(
                f"{theirs_bytes / MB:.1f} MB, "
                f"{'clean' if clean else 'NOT clean: files would be fetched'}; "
                f"{_cache_note(cold)}"
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One measured run of a tool in a case measured in rounds."""

    tool: str
    measurement: Measurement
    work: float
    """As :attr:`Run.work`."""
    correct: bool | None = None
    note: str = ""


def representative(runs: Sequence[Sample]) -> Sample:
    """The run to record for one tool: the first that failed (exit code, or did not
    find the mirror clean), so a failure is never hidden by a good run; otherwise the
    median by wall time (the upper median of an even count)."""
    failed = [r for r in runs if r.measurement.exit_code != 0 or r.correct is False]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda r: r.measurement.wall_seconds)
    return ordered[len(ordered) // 2]


def _upstream_cpu(up: Launcher, before: float) -> str:
    """The fake upstream's CPU time since ``before``, for a run's note."""
    return f"upstream CPU {up.cpu_seconds() - before:.1f} s"


def _emptied(directory: Path) -> Path:
    """``directory`` with whatever an earlier round left in it removed, after the page
    cache is flushed (so the next run does not pay for earlier writes)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.sync()
    return directory


def tree_bytes(root: Path) -> int:
    """Bytes of every file under ``root``: what a verify of that tree hashes."""
    return sum(
        (Path(top) / name).stat().st_size for top, _, names in os.walk(root) for name in names
    )


def drop_page_cache() -> bool:
    """Flush and drop the page cache so a verify reads from disk; False when the
    kernel does not let us (not root, or a read-only ``/proc/sys``)."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n", encoding="ascii")
    except OSError:
        return False
    return True


def _cache_note(cold: bool) -> str:
    return "cold cache" if cold else "WARM cache (page cache not dropped)"


def _verify_note(report: Path, on_disk: int) -> str:
    """What ``mirror verify --json`` said, for the table."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{on_disk / MB:.1f} MB on disk; no JSON report (see {report})"
    verdict = "clean" if data.get("ok") else f"NOT clean: {data.get('remaining')} problem(s)"
    return f"{data.get('files')} files, {data.get('bytes_hashed', 0) / MB:.1f} MB hashed, {verdict}"


def seed_bandersnatch_json(directory: Path, upstream: str, names: Sequence[str]) -> None:
    """Write ``web/json/<name>`` for each project as bandersnatch's ``json = true``
    sync would (the body of ``{upstream}/pypi/<name>/json``): its verify reads them."""
    if not upstream.startswith("http://127.0.0.1:"):
        raise RuntimeError(f"refusing an upstream off loopback: {upstream}")
    json_dir = directory / "web" / "json"
    json_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        url = f"{upstream}/pypi/{name}/json"
        with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310  # loopback
            (json_dir / name).write_bytes(response.read())


# --- targets ---------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _target(name: str, goal: str, value: float | None, ok: bool | None, shown: str = "") -> Target:
    if value is None or ok is None:
        return Target(name=name, goal=goal, measured="-", status="n/a")
    return Target(
        name=name, goal=goal, measured=shown or f"{value:.2f}", status="pass" if ok else "fail"
    )


def evaluate(results: Results, preset: Preset | None = None) -> list[Target]:
    """The issues' targets, each with its measured ratio and pass/fail (``preset``
    gives the network cases' bandwidth cap; without it that target is n/a)."""
    targets = _loopback_targets(results)
    targets += _network_targets(results, preset)
    return targets


def _loopback_targets(results: Results) -> list[Target]:
    """Issue 7's targets over loopback, and issue 16's loopback CPU and rate."""
    targets: list[Target] = []
    ours = results.find("large-files", MIRROR)
    theirs = results.find("large-files", BANDERSNATCH)
    ceiling = results.find("large-files", CEILING)
    value = _ratio(ours.rate, theirs.rate) if ours and theirs else None
    targets.append(
        _target("large files vs bandersnatch", ">= 2.5x MB/s", value, _ge(value, 2.5), _x(value))
    )
    value = _ratio(ours.rate, ceiling.rate) if ours and ceiling else None
    shown = f"{value:.0%}" if value is not None else ""
    targets.append(
        _target("large files vs machine ceiling", ">= 75%", value, _ge(value, 0.75), shown)
    )
    ours = results.find("small-projects", MIRROR)
    theirs = results.find("small-projects", BANDERSNATCH)
    value = _ratio(ours.rate, theirs.rate) if ours and theirs else None
    targets.append(
        _target(
            "small projects vs bandersnatch", ">= 5x projects/s", value, _ge(value, 5.0), _x(value)
        )
    )
    targets += _loopback_cpu_targets(results)
    bigger = results.find("small-projects-x10", MIRROR)
    value = _ratio(bigger.rate, ours.rate) if ours and bigger else None
    shown = f"{value:.0%} of the smaller size's rate" if value is not None else ""
    targets.append(
        _target("small projects rate holds at 10x", "within 15%", value, _ge(value, 0.85), shown)
    )
    ours = results.find("scale-noop", MIRROR)
    theirs = results.find("scale-noop", BANDERSNATCH)
    value = _ratio(ours.wall_seconds, theirs.wall_seconds) if ours and theirs else None
    targets.append(_target("no-op sync wall time", "<= 0.3x", value, _le(value, 0.3), _x(value)))
    value = _ratio(ours.peak_rss_mib, theirs.peak_rss_mib) if ours and theirs else None
    targets.append(_target("no-op sync peak RSS", "<= 0.25x", value, _le(value, 0.25), _x(value)))
    ours = results.find("scale-behind", MIRROR)
    theirs = results.find("scale-behind", BANDERSNATCH)
    value = _ratio(ours.wall_seconds, theirs.wall_seconds) if ours and theirs else None
    targets.append(
        _target("serials-behind sync time", "<= 0.5x", value, _le(value, 0.5), _x(value))
    )
    ours = results.find("incremental", MIRROR)
    theirs = results.find("incremental", BANDERSNATCH)
    value = _ratio(ours.wall_seconds, theirs.wall_seconds) if ours and theirs else None
    ok = value is not None and value < 1.0 and bool(ours and ours.correct)
    shown = f"{_x(value)}, {'correct' if ours and ours.correct else 'NOT correct'}"
    targets.append(
        _target("mixed changes", "< 1x time and correct", value, ok if value else None, shown)
    )
    targets.append(_verify_target(results))
    targets += _s3_figures(results)
    scale_runs = [r for r in results.runs if r.tool == MIRROR and r.case.startswith("scale-")]
    peak = max((r.peak_rss_mib for r in scale_runs), default=None)
    targets.append(
        _target(
            "peak RSS of any scale sync",
            "< 300 MiB",
            peak,
            None if peak is None else peak * MIB < RSS_LIMIT_BYTES,
            f"{peak:.0f} MiB" if peak is not None else "",
        )
    )
    return targets


def _loopback_cpu_targets(results: Results) -> list[Target]:
    """Issue 16 on loopback: CPU per small project and the rate against bandersnatch, at
    10,000 projects (whichever small-projects case has that many; the larger size
    otherwise, as at ``tiny``)."""
    case = "small-projects-x10"
    for candidate in ("small-projects", "small-projects-x10"):
        found = results.find(candidate, MIRROR)
        if found is not None and found.work == LOOPBACK_PROJECTS:
            case = candidate
    ours = results.find(case, MIRROR)
    theirs = results.find(case, BANDERSNATCH)
    at = f" at {ours.work:g} projects" if ours else ""
    value = _ratio(ours.rate, theirs.rate) if ours and theirs else None
    rate = _target(
        "small projects on loopback vs bandersnatch",
        ">= 2.5x projects/s at 10,000",
        value,
        _ge(value, 2.5),
        f"{_x(value)}{at}",
    )
    value = ours.cpu_seconds * 1000 / ours.work if ours and ours.work else None
    cpu = _target(
        "CPU per small project on loopback",
        "<= 3.4 ms at 10,000",
        value,
        _le(value, 3.4),
        f"{value:.2f} ms{at}" if value is not None else "",
    )
    return [cpu, rate]


def _network_targets(results: Results, preset: Preset | None) -> list[Target]:
    """Issue 16's targets over the simulated network: mirror at its shipped defaults."""
    targets: list[Target] = []
    for case, latency_ms in NET_SMALL_CASES.items():
        ours = results.find(case, MIRROR)
        theirs = results.find(case, BANDERSNATCH)
        value = _ratio(ours.rate, theirs.rate) if ours and theirs else None
        ok = _ge(value, 5.0)
        shown = _x(value)
        if ours is not None and ours.correct is False:
            ok, shown = False, f"{shown}, mirror NOT correct"
        targets.append(
            _target(
                f"small projects at {latency_ms:g} ms vs bandersnatch",
                ">= 5x projects/s, shipped defaults",
                value,
                ok,
                shown,
            )
        )
    ours = results.find(NET_LARGE_CASE, MIRROR)
    cap = None if preset is None else preset.net_bandwidth_bytes_per_second / MB
    value = _ratio(ours.rate, cap) if ours and cap else None
    targets.append(
        _target(
            f"large files under a {cap:g} MB/s cap" if cap else "large files under a cap",
            ">= 95% of the cap",
            value,
            _ge(value, 0.95),
            f"{value:.0%} ({ours.rate:.1f} MB/s)" if value is not None and ours else "",
        )
    )
    network = [r for r in results.runs if r.tool == MIRROR and r.case in NETWORK_CASES]
    peak = max((r.peak_rss_mib for r in network), default=None)
    targets.append(
        _target(
            "peak RSS of any network sync",
            "< 300 MiB",
            peak,
            None if peak is None else peak * MIB < RSS_LIMIT_BYTES,
            f"{peak:.0f} MiB" if peak is not None else "",
        )
    )
    return targets


def _verify_target(results: Results) -> Target:
    """``mirror verify`` against ``bandersnatch verify`` in GB/s. A run that did not find
    the mirror clean (``mirror`` exit code not 0, bandersnatch re-downloading) is a
    failed measurement: no ratio."""
    name, goal = "verify vs bandersnatch", ">= 1.5x GB/s"
    runs = [results.find("verify", MIRROR), results.find("verify", BANDERSNATCH)]
    failed = [r.tool for r in runs if r is not None and not (r.correct and r.exit_code == 0)]
    if failed:
        shown = f"failed measurement ({', '.join(failed)} did not find the mirror clean)"
        return Target(name=name, goal=goal, measured=shown, status="n/a")
    ours, theirs = runs
    value = _ratio(ours.rate, theirs.rate) if ours and theirs else None
    return _target(name, goal, value, _ge(value, 1.5), _x(value))


def _s3_figures(results: Results) -> list[Target]:
    """The S3 case's ratios to the file system (status ``info``: the issue sets no
    goal for them); none when the case did not run."""
    figures: list[Target] = []
    for case, what in (("s3-large-files", "MB/s"), ("s3-small-projects", "projects/s")):
        disk, bucket = results.find(case, MIRROR), results.find(case, MIRROR_S3)
        if disk is None or bucket is None:
            continue
        label = case.removeprefix("s3-").replace("-", " ")
        rss = _ratio(bucket.peak_rss_mib, disk.peak_rss_mib)
        for name, value in (
            (f"S3 {label}: {what} vs file system", _ratio(bucket.rate, disk.rate)),
            (f"S3 {label}: peak RSS vs file system", rss),
        ):
            shown = _x(value) or "-"
            figures.append(Target(name=name, goal="measured", measured=shown, status="info"))
    return figures


def _ge(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _le(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else ""


# --- output ----------------------------------------------------------------------------


def render(results: Results, targets: Sequence[Target], out: TextIO) -> None:
    """The one table: runs, not-applicable cases, then targets."""
    head = ("case", "tool", "wall s", "cpu s", "RSS MiB", "rate", "exit", "note")
    rows = [
        (
            r.case,
            r.tool,
            f"{r.wall_seconds:.2f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.peak_rss_mib:.0f}",
            f"{r.rate:.{2 if r.rate_unit == 'GB/s' else 1}f} {r.rate_unit}" if r.work else "-",
            str(r.exit_code),
            r.note,
        )
        for r in results.runs
    ]
    rows += [
        (case, "-", "N/A", "N/A", "N/A", "N/A", "-", why)
        for case, why in results.not_applicable.items()
    ]
    _table(head, rows, out)
    out.write("\n")
    _table(
        ("target", "goal", "measured", "result"),
        [(t.name, t.goal, t.measured, t.status.upper()) for t in targets],
        out,
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *rows]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def to_json(results: Results, targets: Sequence[Target]) -> str:
    """The JSON document written to ``--output``."""
    document = {
        "scale": results.scale,
        "started": results.started,
        "python": sys.version.split()[0],
        "bandersnatch": results.bandersnatch,
        "runs": [asdict(r) for r in results.runs],
        "not_applicable": results.not_applicable,
        "targets": [asdict(t) for t in targets],
    }
    return json.dumps(document, indent=2) + "\n"


# --- command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark `mirror sync` against bandersnatch on a loopback fake PyPI.",
    )
    parser.add_argument("--scale", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--only", choices=CASES, action="append", help="run just this case")
    parser.add_argument("--no-bandersnatch", action="store_true", help="measure mirror only")
    parser.add_argument("--large-factor", type=float, help="override the large file size factor")
    parser.add_argument(
        "--workers",
        type=int,
        default=bandersnatch.DEFAULT_WORKERS,
        help="projects in flight, for both tools (1-10)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="runs of each tool in the large-files and verify cases, in a rotating "
        "order; the median is recorded (default: 3, 1 at tiny scale)",
    )
    parser.add_argument(
        "--bandersnatch-limit",
        type=float,
        metavar="SECONDS",
        help="stop bandersnatch's many-small-projects syncs after this long and count "
        "the projects it finished (default: 900 at full scale, none otherwise; 0: none)",
    )
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="do not drop the page cache before each verify (it is dropped when permitted)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    parser.add_argument("--workdir", type=Path, help="keep mirrors and logs here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    """Run the benchmark; exit status 1 when a measured process failed."""
    args = parse_args(argv)
    preset = PRESETS[args.scale]
    if args.large_factor is not None:
        preset = Preset(**{**asdict(preset), "large_factor": args.large_factor})
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit("--rounds must be at least 1")
        preset = Preset(**{**asdict(preset), "rounds": args.rounds})
    if args.bandersnatch_limit is not None:
        limit = args.bandersnatch_limit or None
        preset = Preset(**{**asdict(preset), "bandersnatch_limit_seconds": limit})
    script = None if args.no_bandersnatch else bandersnatch.ensure_venv()
    results = Results(
        scale=args.scale,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        bandersnatch=bandersnatch.version(script) if script else None,
    )
    if script is None and not args.no_bandersnatch:
        out.write("bandersnatch unavailable (no Python >= 3.12 or install failed)\n")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        preset=preset,
        workdir=workdir,
        results=results,
        bandersnatch_script=script,
        workers=args.workers,
        drop_caches=not args.warm_cache,
    )
    steps = {
        "large-files": bench.large_files,
        "small-projects": bench.small_projects,
        "incremental": bench.incremental,
        "scale": bench.scale,
        "verify": bench.verify,
        "s3": bench.s3,
        NET_LARGE_CASE: bench.network_large,
    }
    for case in NET_SMALL_CASES:
        steps[case] = functools.partial(bench.network_small, case)
    selected = [case for case in CASES if case in (args.only or CASES)]
    completed = False
    try:
        for case in selected:
            if case not in LARGE_CASES:
                bench.close_large()
            steps[case]()
        completed = True
    finally:
        bench.close_large()
        failed = not completed or any(r.exit_code and not r.stopped for r in results.runs)
        if failed:
            out.write(f"something failed: logs and mirrors kept in {workdir}\n")
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    targets = evaluate(results, preset)
    render(results, targets, out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_json(results, targets), encoding="utf-8")
    out.write(f"\nwrote {args.output}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
