"""bandersnatch, the baseline: a venv of its own, a config aimed at the fake upstream,
and a seeded mirror for the scale case.

bandersnatch 8.x needs Python >= 3.12, so it cannot share the project's interpreter:
:func:`ensure_venv` builds ``benchmarks/.venv-bandersnatch`` (gitignored) once with a
pyenv 3.12+ interpreter and ``pip install bandersnatch==8.2.*``. Installing the tool
is the only time the benchmark reaches a package index; every sync it runs talks to
the fake upstream on 127.0.0.1.

bandersnatch reads the project list from ``{master}/simple/`` (PEP 691 JSON with
``_last-serial``) and each project from ``{master}/pypi/<name>/json``; the fake serves
both. An ``http://`` master is accepted with ``allow-non-https = true`` (bandersnatch
>= 6.6), so no TLS front is needed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BANDERSNATCH_SPEC = "bandersnatch==8.2.*"
VENV = Path(__file__).resolve().parent / ".venv-bandersnatch"
# bandersnatch's maximum: the most favourable setting for the baseline.
DEFAULT_WORKERS = 10
# The minimum Python bandersnatch 8.x supports.
MIN_PYTHON = (3, 12)


def find_python() -> Path | None:
    """A Python >= 3.12 from pyenv (newest first), or None."""
    try:
        root = subprocess.run(
            ["pyenv", "root"],  # noqa: S607  # pyenv is found on PATH like any tool
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    candidates: list[tuple[tuple[int, int], Path]] = []
    versions = Path(root) / "versions"
    if versions.is_dir():
        for entry in versions.iterdir():
            parts = entry.name.split(".")
            if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
                continue
            version = (int(parts[0]), int(parts[1]))
            binary = entry / "bin" / f"python{version[0]}.{version[1]}"
            if version >= MIN_PYTHON and binary.is_file():
                candidates.append((version, binary))
    # 3.12 first: the oldest supported is the one bandersnatch's wheels surely fit.
    return min(candidates)[1] if candidates else None


def executable(venv: Path = VENV) -> Path:
    """The ``bandersnatch`` script inside ``venv``."""
    return venv / "bin" / "bandersnatch"


def ensure_venv(venv: Path = VENV) -> Path | None:
    """The bandersnatch script, installing it first if needed; None when no Python
    >= 3.12 is available or the install fails."""
    script = executable(venv)
    if script.is_file():
        return script
    python = find_python()
    if python is None:
        return None
    try:
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)  # noqa: S603
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", BANDERSNATCH_SPEC]
        subprocess.run(pip, check=True)  # noqa: S603  # installs the tool, mirrors nothing
    except (OSError, subprocess.CalledProcessError):
        return None
    return script if script.is_file() else None


def version(script: Path) -> str:
    """``bandersnatch --version`` output, e.g. ``bandersnatch 8.2.0``."""
    result = subprocess.run(  # noqa: S603  # our own venv's script
        [str(script), "--version"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or result.stderr.strip()


def write_config(path: Path, *, directory: Path, master: str, workers: int) -> Path:
    """A bandersnatch config that mirrors ``master`` (the fake) into ``directory``.

    Defaults otherwise (simple-format ALL, core-metadata on, compare-method hash), so
    it does the same work as ``mirror sync``: HTML and JSON pages, files and
    ``.metadata``.
    """
    path.write_text(
        "[mirror]\n"
        f"directory = {directory}\n"
        f"master = {master}\n"
        "allow-non-https = true\n"
        f"workers = {workers}\n"
        "timeout = 60\n"
        "global-timeout = 36000\n"
        "stop-on-error = false\n"
        "json = false\n"
        "core-metadata = true\n",
        encoding="utf-8",
    )
    return path


def seed(directory: Path, *, serial: int, names: list[str]) -> None:
    """Make ``directory`` look like a bandersnatch mirror in step at ``serial``
    holding ``names``: ``generation`` 5, ``status`` = serial and one
    ``web/simple/<name>/`` directory per project (what its root index scans).

    Used for the scale case: a real first sync of 600,000 projects by bandersnatch
    rewrites its whole todo file after every project (quadratic), which would not
    finish in a benchmark run.
    """
    simple = directory / "web" / "simple"
    simple.mkdir(parents=True, exist_ok=True)
    (directory / "web" / "packages").mkdir(parents=True, exist_ok=True)
    for name in names:
        os.mkdir(simple / name)  # noqa: PTH102  # os.mkdir skips pathlib's per-call overhead
    (directory / "generation").write_text("5", encoding="ascii")
    (directory / "status").write_text(str(serial), encoding="ascii")


def finished_projects(directory: Path) -> int:
    """How many projects a (stopped) bandersnatch sync of ``directory`` finished: it
    writes a project's ``web/simple/<name>/index.html`` after the project's files."""
    simple = directory / "web" / "simple"
    if not simple.is_dir():
        return 0
    # os rather than pathlib: 100,000 entries at full scale.
    with os.scandir(simple) as entries:
        pages = (os.path.join(entry.path, "index.html") for entry in entries)  # noqa: PTH118
        return sum(1 for page in pages if os.path.exists(page))  # noqa: PTH110
