"""``mirror daemon``: the schedule, the loop's error handling and signals (in-process,
with injected passes and sleeps), the CLI's exit codes, and real daemon processes
following the fake upstream and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from mirror.cli import EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE, main
from mirror.config import Config, parse_config
from mirror.daemon import Schedule, run_daemon
from mirror.errors import ConfigError, LockedError, StorageError, UpstreamError
from mirror.lock import mirror_lock
from mirror.testing import FakeUpstream
from tests.harness import write_config
from tests.mirrorcheck import assert_consistent

ROOT = Path(__file__).resolve().parent.parent

# --- the configuration ------------------------------------------------------------


def parse(*lines: str) -> Config:
    return parse_config("\n".join(["[mirror]", "directory = /srv/mirror", *lines, ""]))


@pytest.mark.parametrize(
    ("lines", "interval", "jitter"),
    [
        ((), 600.0, 60.0),
        (("interval = 1h",), 3600.0, 360.0),
        (("interval = 1s",), 1.0, 0.1),
        (("interval = 1w", "interval-jitter = 50%"), 604800.0, 302400.0),
        (("interval = 10m", "interval-jitter = 2.5 %"), 600.0, 15.0),
        (("interval = 10m", "interval-jitter = 30s"), 600.0, 30.0),
        (("interval = 10m", "interval-jitter = 0"), 600.0, 0.0),
        (("interval = 10m", "interval-jitter = 0%"), 600.0, 0.0),
    ],
)
def test_interval_and_jitter_keys_become_seconds(
    lines: tuple[str, ...], interval: float, jitter: float
) -> None:
    config = parse(*lines)
    assert (config.interval_seconds, config.interval_jitter_seconds) == (interval, jitter)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("interval = 500ms", "[mirror] interval: must be between 1 second and 1 week, got '500ms'"),
        ("interval = 8d", "[mirror] interval: must be between 1 second and 1 week, got '8d'"),
        ("interval = 0", "[mirror] interval: must be more than zero, got '0'"),
        ("interval = soon", "[mirror] interval: expected a duration"),
        (
            "interval-jitter = 6m",
            "[mirror] interval-jitter: must be between 0 and half the interval (5 minutes), "
            "got '6m'",
        ),
        ("interval-jitter = 51%", "[mirror] interval-jitter: must be between 0 and half"),
        ("interval-jitter = -5", "[mirror] interval-jitter: expected a duration such as 30s"),
        ("interval-jitter = ten%", "[mirror] interval-jitter: expected a duration such as 30s"),
    ],
)
def test_bad_interval_values_are_refused_naming_the_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(line)
    assert str(info.value).startswith(message)


# --- the schedule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "jitter", "fraction", "delay"),
    [
        (600.0, 60.0, 0.0, 540.0),
        (600.0, 60.0, 0.5, 600.0),
        (600.0, 60.0, 0.75, 630.0),
        (600.0, 0.0, 0.9, 600.0),
        # A hand-built schedule whose jitter exceeds the interval never goes negative.
        (1.0, 5.0, 0.0, 0.0),
    ],
)
def test_the_pause_is_the_interval_give_or_take_the_jitter(
    interval: float, jitter: float, fraction: float, delay: float
) -> None:
    schedule = Schedule(interval_seconds=interval, jitter_seconds=jitter)
    assert schedule.delay_seconds(fraction) == pytest.approx(delay)


# --- the loop, with injected passes and sleeps -----------------------------------


class Script:
    """Passes that follow a script (None: succeed; an exception: raise it) and a sleep
    that records each pause; when the script runs out the pass sends ``stop_with`` to
    this process and waits to be cancelled, as a real pass would."""

    def __init__(self, *outcomes: Exception | None, stop_with: signal.Signals) -> None:
        self.outcomes = list(outcomes)
        self.stop_with = stop_with
        self.passes = 0
        self.pauses: list[float] = []
        self.cancelled = False

    async def sync_pass(self) -> None:
        self.passes += 1
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if outcome is not None:
                raise outcome
            return
        os.kill(os.getpid(), self.stop_with)
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled = True

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def run(script: Script, *, jitter: float = 0.0, fraction: float = 0.5) -> signal.Signals:
    schedule = Schedule(interval_seconds=60.0, jitter_seconds=jitter)
    async with asyncio.timeout(5):
        return await run_daemon(
            script.sync_pass, schedule=schedule, sleep=script.sleep, fraction=lambda: fraction
        )


async def test_a_signal_cancels_the_pass_in_progress_and_is_returned() -> None:
    script = Script(None, None, stop_with=signal.SIGTERM)
    assert await run(script) is signal.SIGTERM
    assert script.passes == 3
    assert script.cancelled
    assert script.pauses == [60.0, 60.0]


async def test_the_signal_handlers_are_removed_when_the_daemon_returns() -> None:
    await run(Script(stop_with=signal.SIGINT))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


async def test_sigint_is_reported_as_sigint() -> None:
    assert await run(Script(stop_with=signal.SIGINT)) is signal.SIGINT


async def test_each_pause_draws_its_own_jitter() -> None:
    script = Script(None, None, stop_with=signal.SIGTERM)
    await run(script, jitter=6.0, fraction=0.0)
    assert script.pauses == [54.0, 54.0]


async def test_a_failing_pass_is_logged_and_retried_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(
        UpstreamError("upstream unreachable"),
        StorageError("disk full"),
        None,
        stop_with=signal.SIGTERM,
    )
    assert await run(script) is signal.SIGTERM
    assert script.passes == 4
    assert script.pauses == [60.0, 60.0, 60.0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "sync pass failed: upstream unreachable",
        "sync pass failed: disk full",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["next pass in 1 minute", "next pass in 1 minute"]


async def test_a_lock_held_at_the_first_pass_ends_the_daemon() -> None:
    script = Script(LockedError("held"), stop_with=signal.SIGTERM)
    with pytest.raises(LockedError):
        await run(script)
    assert script.pauses == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_a_lock_held_at_a_later_pass_skips_that_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(None, LockedError("held by a one-off run"), stop_with=signal.SIGTERM)
    assert await run(script) is signal.SIGTERM
    assert script.passes == 3
    assert "pass skipped: held by a one-off run" in caplog.messages


async def test_a_config_error_in_any_pass_ends_the_daemon() -> None:
    error = ConfigError("cannot create", section="mirror", key="directory")
    script = Script(None, error, stop_with=signal.SIGTERM)
    with pytest.raises(ConfigError):
        await run(script)
    assert script.passes == 2


async def test_a_signal_during_the_pause_ends_it_at_once() -> None:
    slept: list[float] = []

    async def sync_pass() -> None:
        pass

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(3600)

    started = time.monotonic()
    async with asyncio.timeout(5):
        stopped_by = await run_daemon(
            sync_pass, schedule=Schedule(interval_seconds=3600.0), sleep=sleep
        )
    assert stopped_by is signal.SIGTERM
    assert slept == [3600.0]
    assert time.monotonic() - started < 2


async def test_further_signals_while_stopping_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mirror.daemon")

    async def sync_pass() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.Event().wait()
        finally:
            # The pass is being cancelled; a second signal arrives during its clean-up.
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)

    async with asyncio.timeout(5):
        stopped_by = await run_daemon(sync_pass, schedule=Schedule(interval_seconds=1.0))
    assert stopped_by is signal.SIGTERM
    assert "SIGINT: already stopping" in caplog.messages


async def test_cancelling_the_daemon_cancels_its_pass() -> None:
    cancelled = asyncio.Event()

    async def sync_pass() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    task = asyncio.create_task(run_daemon(sync_pass, schedule=Schedule(interval_seconds=1.0)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- the CLI, in-process (main thread: the daemon installs signal handlers) --------


def write_daemon_config(tmp_path: Path, upstream_url: str, **extra: str) -> Path:
    """The CLI tests' config, with a one-second pause between passes and no jitter."""
    keys = {"interval": "1s", "interval-jitter": "0", **extra}
    return write_config(tmp_path, upstream_url, **keys)


def unreachable_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SignalOnLog(logging.Handler):
    """Sends ``signum`` to this process when the daemon announces its pause."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__()
        self.signum = signum

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("next pass in"):
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def signal_on_pause() -> Iterator[Callable[[signal.Signals], None]]:
    logger = logging.getLogger("mirror.daemon")
    handlers: list[logging.Handler] = []

    def install(signum: signal.Signals) -> None:
        handler = SignalOnLog(signum)
        handlers.append(handler)
        logger.addHandler(handler)

    yield install
    for handler in handlers:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, EXIT_OK), (signal.SIGINT, EXIT_INTERRUPTED)]
)
def test_cli_daemon_survives_an_unreachable_upstream_and_exits_on_a_signal(
    tmp_path: Path,
    signal_on_pause: Callable[[signal.Signals], None],
    capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
    code: int,
) -> None:
    signal_on_pause(signum)
    config = write_daemon_config(tmp_path, unreachable_url())
    assert main(["daemon", "-c", str(config)]) == code
    err = capsys.readouterr().err
    assert "sync pass failed:" in err
    assert f"stopped on {signum.name}" in err


def test_cli_daemon_exits_3_when_another_run_holds_the_lock(tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path, unreachable_url())
    (tmp_path / "mirror").mkdir()
    with mirror_lock(tmp_path / "mirror"):
        assert main(["daemon", "-q", "-c", str(config)]) == EXIT_LOCKED


def test_cli_daemon_exits_2_for_a_bad_config(tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path, unreachable_url(), interval="500ms")
    assert main(["daemon", "-q", "-c", str(config)]) == EXIT_USAGE


def test_cli_daemon_exits_2_when_the_mirror_directory_cannot_be_created(
    tmp_path: Path,
) -> None:
    (tmp_path / "mirror").write_text("a file where the directory should be")
    config = write_daemon_config(tmp_path, unreachable_url())
    assert main(["daemon", "-q", "-c", str(config)]) == EXIT_USAGE


# --- real daemon processes against the fake upstream ----------------------------


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def page(tmp_path: Path, project: str) -> Path:
    return tmp_path / "mirror" / "web" / "simple" / project / "index.html"


def temp_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "mirror" / "web").rglob(".*.part"))


class DaemonProcess:
    """``python -m mirror daemon`` as a child process, its log in a file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        async with asyncio.timeout(5):
            return await self.process.wait()


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Callable[[Path], Awaitable[DaemonProcess]]]:
    started: list[DaemonProcess] = []

    async def start(config: Path) -> DaemonProcess:
        log = tmp_path / f"daemon-{len(started)}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mirror",
                "daemon",
                "-c",
                str(config),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        daemon = DaemonProcess(process, log)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()


async def test_daemon_follows_upstream_and_stops_cleanly_on_sigterm(
    upstream: FakeUpstream, tmp_path: Path, start_daemon: Callable[[Path], Awaitable[DaemonProcess]]
) -> None:
    upstream.add_release("Alpha", "1.0")
    upstream.add_release("beta", "2.0")
    daemon = await start_daemon(write_daemon_config(tmp_path, upstream.base_url))
    await wait_until(lambda: page(tmp_path, "beta").exists())

    upstream.add_release("Alpha", "1.1")
    upstream.remove_project("beta")
    await wait_until(
        lambda: (
            not page(tmp_path, "beta").exists()
            and "alpha-1.1.tar.gz" in page(tmp_path, "alpha").read_text()
        )
    )

    assert await daemon.stop() == EXIT_OK
    log = daemon.log.read_text()
    assert "sync done:" in log
    assert "stopped on SIGTERM" in log
    assert_consistent(tmp_path / "mirror")
    assert temp_files(tmp_path) == []


class SlowUpstream(FakeUpstream):
    """Serves half of every file, then stalls until :attr:`release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def _handle_package(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._handle_package(request)
        # Nothing is spilled here (no spill_files), so a file is a web.Response.
        body = answer.body if isinstance(answer, web.Response) else None
        if answer.status != 200 or not isinstance(body, bytes):
            return answer
        stalled = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await stalled.prepare(request)
        await stalled.write(body[: len(body) // 2])
        await self.release.wait()
        # The client is gone by now.
        with contextlib.suppress(ConnectionResetError):
            await stalled.write(body[len(body) // 2 :])
        return stalled


async def test_sigterm_during_a_stalled_download_stops_at_once_without_temp_files(
    tmp_path: Path, start_daemon: Callable[[Path], Awaitable[DaemonProcess]]
) -> None:
    async with SlowUpstream() as upstream:
        try:
            # Big enough that the half sent reaches the disk (storage writes by the MiB).
            upstream.add_file("big", "1.0", "big-1.0.tar.gz", random.randbytes(4 << 20))
            config = write_daemon_config(tmp_path, upstream.base_url)
            daemon = await start_daemon(config)
            await wait_until(lambda: bool(temp_files(tmp_path)))

            # The daemon holds the lock during its pass: a one-off sync is refused.
            code = await asyncio.to_thread(main, ["sync", "-q", "-c", str(config)])
            assert code == EXIT_LOCKED

            started = time.monotonic()
            assert await daemon.stop() == EXIT_OK
            assert time.monotonic() - started < 3
        finally:
            upstream.release.set()
    assert temp_files(tmp_path) == []
    assert not page(tmp_path, "big").exists()
    assert "stopped on SIGTERM" in daemon.log.read_text()
