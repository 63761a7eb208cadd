"""Real pip and uv against ``mirror serve`` (the CLI, as a subprocess): a snapshot view
installs the versions current at a past moment, and the live pages obey a cooldown.

The project gained a release and lost a file after the snapshot point: through
``/snapshot/<when>/simple/`` both clients get the old set, the lost file included
(kept on disk by ``keep-removed``). pip and uv see only the mirror (tests.clients).
"""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirror.testing import FakeUpstream, make_sdist, make_wheel
from tests.clients import free_port, pip_install, uv_install
from tests.harness import MirrorRunner

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
MONTH = 30 * 86400.0
Installer = Callable[[str, Path, str], subprocess.CompletedProcess[str]]
INSTALLERS = [pytest.param(pip_install, id="pip"), pytest.param(uv_install, id="uv")]


@contextmanager
def mirror_serve(directory: Path, tmp: Path, **keys: str) -> Iterator[tuple[str, Path]]:
    """``mirror serve`` through the real command line, with ``keys`` in ``[mirror]``;
    yields its base URL and its log file."""
    port = free_port()
    config = tmp / "serve.conf"
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    config.write_text(f"[mirror]\ndirectory = {directory}\n{extra}\n[serve]\nhost = 127.0.0.1\n")
    log = tmp / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "serve", "-c", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0, log.read_text(errors="replace")
        finally:
            if proc.poll() is None:  # pragma: no cover - only when the server hangs
                proc.kill()


def upload(upstream: FakeUpstream, version: str, uploaded: datetime, *, sdist: bool) -> str:
    """Demo ``version``'s wheel (and sdist): returns the wheel's filename."""
    wheel, content, metadata = make_wheel("Demo", version)
    upstream.add_file("Demo", version, wheel, content, metadata=metadata, upload_time=uploaded)
    if sdist:
        name, content = make_sdist("Demo", version)
        upstream.add_file("Demo", version, name, content, upload_time=uploaded)
    return wheel


def installed(target: Path) -> list[str]:
    return sorted(p.name for p in target.glob("*.dist-info"))


@pytest.mark.parametrize("install", INSTALLERS)
async def test_a_snapshot_view_installs_what_was_current_then(
    install: Installer, upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    runner.options = dataclasses.replace(runner.options, keep_removed=MONTH)
    runner.clock.now = now.timestamp() - 25 * 86400.0
    old_wheel = upload(upstream, "1.0", now - timedelta(days=30), sdist=True)
    await runner.sync()
    # After the snapshot point (20 days ago): a new release, and 1.0's wheel removed.
    upload(upstream, "2.0", now - timedelta(days=10), sdist=False)
    upstream.remove_file("Demo", old_wheel)
    runner.clock.now = now.timestamp()
    await runner.sync()
    when = (now - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with mirror_serve(runner.directory, tmp_path, **{"keep-removed": "30d"}) as (url, log):
        live = install(f"{url}/simple/", tmp_path / "live", "demo")
        past = install(f"{url}/snapshot/{when}/simple/", tmp_path / "past", "demo")
        pinned = install(f"{url}/snapshot/{when}/simple/", tmp_path / "pinned", "demo==2.0")
        served = log.read_text(errors="replace")
    assert live.returncode == 0, live.stderr
    assert installed(tmp_path / "live") == ["demo-2.0.dist-info"]
    assert past.returncode == 0, past.stderr
    assert installed(tmp_path / "past") == ["demo-1.0.dist-info"]
    # The file removed since: served from /packages/ (kept by keep-removed), as a wheel.
    assert re.search(rf'"GET /packages/\S+/{re.escape(old_wheel)} HTTP/1.1" 200', served)
    # 2.0 did not exist then.
    assert pinned.returncode != 0


@pytest.mark.parametrize("install", INSTALLERS)
async def test_the_live_pages_obey_the_cooldown(
    install: Installer, upstream: FakeUpstream, runner: MirrorRunner, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    runner.options = dataclasses.replace(runner.options, cooldown=7 * 86400.0)
    runner.clock.now = now.timestamp()
    upload(upstream, "1.0", now - timedelta(days=30), sdist=True)
    upload(upstream, "2.0", now - timedelta(days=2), sdist=True)
    await runner.sync()
    with mirror_serve(runner.directory, tmp_path, cooldown="7d") as (url, _):
        latest = install(f"{url}/simple/", tmp_path / "latest", "demo")
        pinned = install(f"{url}/simple/", tmp_path / "pinned", "demo==2.0")
        # Nor may a snapshot view of today get round it.
        today = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        sneaky = install(f"{url}/snapshot/{today}/simple/", tmp_path / "sneaky", "demo==2.0")
    assert latest.returncode == 0, latest.stderr
    assert installed(tmp_path / "latest") == ["demo-1.0.dist-info"]
    assert pinned.returncode != 0
    assert sneaky.returncode != 0
