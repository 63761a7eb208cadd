"""Real pip and uv, run as subprocesses against one index URL alone, for the end-to-end
tests.

This machine's pip and uv may be configured with other indexes: both run with every
``PIP_*``/``UV_*`` variable removed, no config files and ``--index-url`` only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}: {log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the server hangs
            proc.kill()


def client_env() -> dict[str, str]:
    """The environment without the caller's pip and uv settings, and no config files."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_")) and key not in {"XDG_CONFIG_HOME"}
    }
    return {
        **env,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
    }


def pip_install(
    index_url: str, target: Path, *requirements: str
) -> subprocess.CompletedProcess[str]:
    """``pip install --target`` from ``index_url`` alone; the result, never raised."""
    command = ["pip", "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check"]
    return _install(command, index_url, target, requirements)


def uv_install(
    index_url: str, target: Path, *requirements: str
) -> subprocess.CompletedProcess[str]:
    """``uv pip install --target`` from ``index_url`` alone, for this interpreter."""
    command = ["uv", "pip", "install", "--no-config", "--no-cache", "--no-python-downloads"]
    return _install([*command, "--python", sys.executable], index_url, target, requirements)


def _install(
    command: Sequence[str], index_url: str, target: Path, requirements: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            *command,
            "--index-url",
            index_url,
            "--target",
            str(target),
            *requirements,
        ],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
