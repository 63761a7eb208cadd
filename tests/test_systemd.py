"""The systemd units in ``systemd/``: what they run, how they are hardened, and that
systemd itself accepts them (``systemd-analyze verify``, ``systemd-sysusers``)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
SERVICES = ("mirror-sync.service", "mirror-daemon.service", "mirror-serve.service")
UNITS = (*SERVICES, "mirror-sync.timer")
MIRROR = "/usr/local/bin/mirror"

# Every service runs with these, whatever it does.
HARDENING = {
    "User": "mirror",
    "Group": "mirror",
    "UMask": "0022",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}


def read_unit(name: str) -> configparser.ConfigParser:
    # strict: a key given twice (which systemd would accept, for some keys as a list)
    # fails the parse, so the checks below see the one value systemd uses.
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((SYSTEMD / name).read_text(), source=name)
    return parser


@pytest.mark.parametrize(
    ("unit", "command"),
    [
        ("mirror-sync.service", "sync"),
        ("mirror-daemon.service", "daemon"),
        ("mirror-serve.service", "serve"),
    ],
)
def test_each_service_runs_its_mirror_command_with_the_system_config(
    unit: str, command: str
) -> None:
    exec_start = shlex.split(read_unit(unit)["Service"]["ExecStart"])
    assert exec_start == [MIRROR, command, "-c", "/etc/mirror.conf"]


@pytest.mark.parametrize("unit", SERVICES)
def test_every_service_is_hardened_and_runs_as_the_mirror_user(unit: str) -> None:
    service = read_unit(unit)["Service"]
    assert {key: service.get(key) for key in HARDENING} == HARDENING


@pytest.mark.parametrize("unit", ["mirror-sync.service", "mirror-daemon.service"])
def test_the_syncing_services_may_write_the_mirror_directory_only(unit: str) -> None:
    assert read_unit(unit)["Service"]["ReadWritePaths"] == "/srv/mirror"


def test_the_serve_unit_cannot_write_anything() -> None:
    service = read_unit("mirror-serve.service")["Service"]
    assert "ReadWritePaths" not in service
    assert service["ProtectSystem"] == "strict"


def test_the_sync_service_is_a_oneshot_without_a_start_timeout() -> None:
    service = read_unit("mirror-sync.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["TimeoutStartSec"] == "infinity"
    # SIGINT is what `mirror sync` turns into a clean, state-saving stop.
    assert service["KillSignal"] == "SIGINT"


def test_the_timer_runs_the_sync_service_every_ten_minutes_and_catches_up() -> None:
    unit = read_unit("mirror-sync.timer")
    timer = unit["Timer"]
    assert timer["Unit"] == "mirror-sync.service"
    assert timer["OnCalendar"] == "*:0/10"
    assert timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"]
    assert unit["Install"]["WantedBy"] == "timers.target"


def test_the_daemon_restarts_on_failure_and_stops_on_sigterm() -> None:
    unit = read_unit("mirror-daemon.service")
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"]
    # A bad config does not get better by restarting.
    assert service["RestartPreventExitStatus"] == "2"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_daemon_and_the_timer_cannot_run_together() -> None:
    daemon = read_unit("mirror-daemon.service")["Unit"]["Conflicts"].split()
    sync = read_unit("mirror-sync.service")["Unit"]["Conflicts"].split()
    assert set(daemon) == {"mirror-sync.timer", "mirror-sync.service"}
    assert sync == ["mirror-daemon.service"]


def test_sysusers_file_declares_the_mirror_user_homed_in_the_mirror_directory() -> None:
    lines = [
        shlex.split(line)
        for line in (SYSTEMD / "mirror.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [["u", "mirror", "-", "PyPI mirror", "/srv/mirror"]]


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or shutil.which("systemd-sysusers") is None,
    reason="systemd-analyze and systemd-sysusers are not installed (Debian package systemd)",
)


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``units`` copied into the file-system tree ``root``
    (where ``/usr/local/bin/mirror`` exists), without checking the units they pull in
    (a container has no complete system to resolve them against)."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=no", f"--root={root}", *units],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A file-system tree holding the units and an executable ``mirror``."""
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(SYSTEMD / name, units / name)
    executable = tmp_path / MIRROR.lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return tmp_path


@needs_systemd
def test_systemd_analyze_verify_accepts_every_unit(root: Path) -> None:
    result = verify(root, *UNITS)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd
def test_systemd_analyze_verify_would_catch_a_broken_unit(root: Path) -> None:
    """The check above is meaningful here: a misspelt key and a missing program fail."""
    units = root / "etc" / "systemd" / "system"
    text = (SYSTEMD / "mirror-daemon.service").read_text()
    (units / "typo.service").write_text(text + "ProtectSytem=strict\n")
    (units / "missing.service").write_text(text.replace(MIRROR, "/usr/bin/no-such-mirror"))
    typo = verify(root, "typo.service")
    assert typo.returncode != 0
    assert "ProtectSytem" in typo.stderr
    missing = verify(root, "missing.service")
    assert missing.returncode != 0
    assert "no-such-mirror" in missing.stderr


@needs_systemd
def test_systemd_sysusers_creates_the_mirror_user(tmp_path: Path) -> None:
    sysusers = tmp_path / "etc" / "sysusers.d"
    sysusers.mkdir(parents=True)
    shutil.copy(SYSTEMD / "mirror.sysusers.conf", sysusers / "mirror.conf")
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}"], check=True, capture_output=True, timeout=30
    )
    passwd = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    (user,) = [entry for entry in passwd if entry[0] == "mirror"]
    assert user[4:6] == ["PyPI mirror", "/srv/mirror"]
    groups = (tmp_path / "etc" / "group").read_text().splitlines()
    assert any(line.startswith("mirror:") for line in groups)
