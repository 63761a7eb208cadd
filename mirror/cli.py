"""The ``mirror`` command line: subcommands, logging set-up and exit codes.

No mirroring logic lives here; this module wires the config to the sync engine and
turns :class:`~mirror.errors.MirrorError` into exit codes:

====  ==============================================================================
code  meaning
====  ==============================================================================
0     the run finished and every project it attempted is in step
1     the run finished but some projects failed; they stay queued for a retry
2     bad command line or configuration
3     another run holds the mirror directory's lock
4     the run could not proceed (upstream unreachable, disk or state store trouble)
130   interrupted (SIGINT)
====  ==============================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from humanfriendly import format_size, format_timespan
from packaging.utils import NormalizedName

from mirror import __version__
from mirror.config import Config, load_config
from mirror.errors import (
    ConfigError,
    LockedError,
    MalformedResponseError,
    MirrorError,
)
from mirror.lock import mirror_lock
from mirror.models import project_name
from mirror.state import StateStore
from mirror.storage import FileSystemStorage
from mirror.sync import Syncer, SyncOptions, SyncReport
from mirror.upstream import Upstream, UpstreamSettings, default_user_agent

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROJECTS_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130

DEFAULT_CONFIG = Path("/etc/mirror.conf")
STATE_FILE = "mirror.db"
WEB_DIR = "web"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the tests and the docs)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )
    verbosity = common.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")

    parser = argparse.ArgumentParser(
        prog="mirror",
        description="Keep an on-site mirror of the Python Package Index in step with upstream.",
    )
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sync = commands.add_parser(
        "sync",
        parents=[common],
        help="bring the mirror in step with upstream once",
        description=(
            "Bring the mirror in step with upstream once: read the changes since the "
            "mirror's serial (the full listing on the first run), download and verify "
            "what changed, rewrite the simple pages. Exit code 0 when all is in step."
        ),
    )
    sync.add_argument(
        "--project",
        "-p",
        action="append",
        metavar="NAME",
        dest="projects",
        help="sync just this project (repeatable); the mirror's serial is left alone",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(verbose=args.verbose, quiet=args.quiet)
    command: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
    return command(args)


def _run_sync(args: argparse.Namespace) -> int:
    """``mirror sync``: one pass."""
    try:
        config = load_config(args.config)
        projects = _project_names(args.projects)
    except ConfigError as exc:
        logger.error("configuration error: %s", exc)
        return EXIT_USAGE
    try:
        report = asyncio.run(_sync(config, projects))
    except LockedError as exc:
        logger.error("%s", exc)
        return EXIT_LOCKED
    except ConfigError as exc:
        logger.error("configuration error: %s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        logger.error("interrupted; the next run resumes where this one stopped")
        return EXIT_INTERRUPTED
    except MirrorError as exc:
        logger.error("sync failed: %s", exc)
        return EXIT_ERROR
    logger.info("%s", summary_line(report))
    return EXIT_OK if report.ok else EXIT_PROJECTS_FAILED


# One entry per subcommand of build_parser(); each returns the exit code.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": _run_sync,
}


def summary_line(report: SyncReport) -> str:
    """The one line a run ends with."""
    failed = len(report.failures)
    serial = "none" if report.serial is None else str(report.serial)
    return (
        f"sync {'done' if report.ok else 'incomplete'}: "
        f"{report.projects_synced} project(s) synced, {report.projects_removed} removed, "
        f"{failed} failed; {report.files_downloaded} file(s) "
        f"({format_size(report.bytes_downloaded, binary=True)}) downloaded, "
        f"{report.files_deleted} deleted; serial {serial}; "
        f"{report.pending} queued for retry; "
        f"{format_timespan(report.elapsed_seconds)}"
    )


async def _sync(config: Config, projects: list[NormalizedName] | None) -> SyncReport:
    directory = config.directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {directory}: {exc.strerror}", section="mirror", key="directory"
        ) from exc
    with mirror_lock(directory), StateStore.open(directory / STATE_FILE) as state:
        settings = UpstreamSettings(
            base_url=config.upstream_url,
            connect_timeout_seconds=config.connect_timeout_seconds,
            read_timeout_seconds=config.read_timeout_seconds,
            retries=config.retries,
            max_connections=max(config.download_concurrency, config.workers) + 2,
            user_agent=default_user_agent(contact=config.user_agent_contact),
        )
        options = SyncOptions(
            workers=config.workers,
            download_concurrency=config.download_concurrency,
            formats=config.formats,
            keep_json=config.keep_json,
            metadata_source="json" if config.metadata_source == "json" else "simple",
            retry_base_seconds=config.retry_base_seconds,
            retry_max_seconds=config.retry_max_seconds,
        )
        storage = FileSystemStorage(directory / WEB_DIR)
        async with Upstream(settings) as upstream:
            syncer = Syncer(upstream=upstream, storage=storage, state=state, options=options)
            return await syncer.run(projects=projects)


def _project_names(raw: list[str] | None) -> list[NormalizedName] | None:
    if raw is None:
        return None
    names: list[NormalizedName] = []
    for name in raw:
        try:
            names.append(project_name(name))
        except MalformedResponseError as exc:
            raise ConfigError(f"--project {name!r} is not a valid project name") from exc
    return names


def _configure_logging(*, verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    else:
        # journald and cron add their own timestamps.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access and client chatter is only interesting with -vv.
    logging.getLogger("aiohttp").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
