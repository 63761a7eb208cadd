"""The ``mirror`` command line: subcommands, logging set-up and exit codes.

No mirroring logic lives here: this module parses arguments, sets up logging, hands
the config to :mod:`mirror.app` (which builds every command's resources) and turns
:class:`~mirror.errors.MirrorError` into exit codes:

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

``mirror daemon`` exits 0 when SIGTERM stops it and 130 on SIGINT; 2 and 3 as above
(3 only when its first pass finds the lock held). A failing pass never ends it.
``mirror verify`` exits 0 when nothing is wrong (or all was repaired), 1 when
problems remain, 2, 3 and 4 as above.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from humanfriendly import format_size, format_timespan
from packaging.utils import NormalizedName

from mirror import __version__, app
from mirror.config import load_config
from mirror.errors import (
    ConfigError,
    LockedError,
    MalformedResponseError,
    MirrorError,
)
from mirror.models import project_name

if TYPE_CHECKING:
    from mirror.progress import ProgressSink
    from mirror.sync import SyncReport

# Each command imports what it needs when it runs (mirror.app does the same): start-up
# is most of a sync that finds nothing to do, and `mirror sync` has no use for the web
# server, the status page or the verifier (nor for aiohttp's server half).

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROJECTS_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130

DEFAULT_CONFIG = Path("/etc/mirror.conf")


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
    status = commands.add_parser(
        "status",
        parents=[common],
        help="show the mirror's serial, size, last run and failing projects",
        description=(
            "Show the mirror's serial, size, last run and failing projects, read from "
            "its state store (fast on any mirror size)."
        ),
    )
    status.add_argument(
        "--remote", action="store_true", help="ask upstream for its serial (one request)"
    )
    status.add_argument("--json", action="store_true", help="JSON for scripts (stable keys)")
    status.add_argument("--history", action="store_true", help="size and serial of every run")
    status.add_argument(
        "--recount",
        action="store_true",
        help="audit the size counters against the disk and fix them",
    )
    serve_command = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the mirror over HTTP (pip and uv get the JSON pages)",
        description=(
            "Serve the mirror's web/ tree over HTTP with PEP 691 content negotiation, "
            "until SIGTERM or Ctrl-C. Fine for a small site; nginx (nginx/mirror.conf) "
            "for a busy one. --host and --port win over the [serve] section."
        ),
    )
    serve_command.add_argument("--host", help="address to listen on (default: [serve] host)")
    serve_command.add_argument(
        "--port", type=_tcp_port, help="TCP port to listen on (default: [serve] port)"
    )
    commands.add_parser(
        "daemon",
        parents=[common],
        help="sync, sleep the configured interval, repeat (until SIGTERM)",
        description=(
            "Run `mirror sync` passes forever: one pass, then a pause of `interval` "
            "(give or take `interval-jitter`), and again. A failing pass is logged and "
            "tried again next interval. SIGTERM or SIGINT stops it cleanly (exit 0, or "
            "130 for SIGINT). The lock is held during each pass only."
        ),
    )
    filters_command = commands.add_parser(
        "filters",
        parents=[common],
        help="show what the filters keep and leave out of some projects (writes nothing)",
        description=(
            "Fetch each project's detail from upstream and print, per project, the "
            "files the configured filters keep and every release and file they leave "
            "out, with the reason. Writes nothing. Exit code 0."
        ),
    )
    filters_command.add_argument("names", nargs="+", metavar="PROJECT", help="project names")
    delete_command = commands.add_parser(
        "delete",
        parents=[common],
        help="take projects out of the mirror and keep them out (takedowns)",
        description=(
            "Delete the projects' pages, then their files and state rows, rewrite the "
            "root index, and keep them out of every later sync (an exclusion held in "
            "the state store, shown by `mirror status`). --undo lets them back in (the "
            "next sync mirrors them again); without projects, list the exclusions. "
            "Takes the mirror lock. Works on disk and in an S3 bucket."
        ),
    )
    delete_command.add_argument("names", nargs="*", metavar="PROJECT", help="project names")
    delete_command.add_argument(
        "--undo", action="store_true", help="lift the exclusion of the projects instead"
    )
    delete_command.add_argument(
        "--list", action="store_true", help="list the projects kept out (the default without names)"
    )
    delete_command.add_argument("--reason", help="why, kept with the exclusion (a ticket, a URL)")
    verify_command = commands.add_parser(
        "verify",
        parents=[common],
        help="check every file's hash and every page link; optionally repair",
        description=(
            "Check every file the state store lists (present, size, sha256, .metadata "
            "too) and every page link against the state, and look for orphan and temp "
            "files. Takes the mirror lock. Exit code 0 when nothing is wrong (or all "
            "was repaired), 1 when problems remain."
        ),
    )
    verify_command.add_argument(
        "--repair",
        action="store_true",
        help="download missing and corrupt files again and rewrite the pages concerned",
    )
    verify_command.add_argument(
        "--delete-orphans", action="store_true", help="remove orphan and temporary files"
    )
    verify_command.add_argument(
        "--dry-run", action="store_true", help="say what --repair/--delete-orphans would do"
    )
    verify_command.add_argument(
        "--deep",
        action="store_true",
        help="S3: download and hash every object (default: compare the sha256 and size"
        " recorded on upload, one HEAD each); on disk every file is always hashed",
    )
    verify_command.add_argument("--json", action="store_true", help="JSON for scripts")
    adopt_command = commands.add_parser(
        "adopt",
        parents=[common],
        help="take over a bandersnatch mirror in place, without downloading it again",
        description=(
            "Take over the bandersnatch mirror BANDERSNATCH_CONF describes, in place: "
            "its config translated into -c's file (unless that exists), every file its "
            "pages link checked once and recorded, its pages rewritten, its serial kept. "
            "Missing and corrupt files are queued for the next `mirror sync`, which also "
            "reconciles the mirror with upstream's full listing. Resumable."
        ),
    )
    adopt_command.add_argument("bandersnatch_conf", type=Path, metavar="BANDERSNATCH_CONF")
    adopt_command.add_argument(
        "--trust-sizes",
        action="store_true",
        help="check sizes only (leave hashing to a later `mirror verify`)",
    )
    adopt_command.add_argument(
        "--dry-run",
        action="store_true",
        help="print the translated config and what was found; change nothing",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Commands return their own exit code for a run that finished; every error they
    raise is turned into one log line and its exit code here, in one place.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(verbose=args.verbose, quiet=args.quiet)
    command: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
    try:
        return command(args)
    except ConfigError as exc:
        logger.error("configuration error: %s", exc)
        return EXIT_USAGE
    except LockedError as exc:
        logger.error("%s", exc)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    except MirrorError as exc:
        logger.error("%s failed: %s", args.command, exc)
        return EXIT_ERROR


def _run_sync(args: argparse.Namespace) -> int:
    """``mirror sync``: one pass."""
    config = load_config(args.config)
    report = asyncio.run(app.sync(config, _project_names(args.projects), progress=_progress_sink()))
    logger.info("%s", summary_line(report))
    return EXIT_OK if report.ok else EXIT_PROJECTS_FAILED


def _run_status(args: argparse.Namespace) -> int:
    """``mirror status``: the state store's view, optionally upstream's serial."""
    config = load_config(args.config)
    sys.stdout.write(
        asyncio.run(
            app.status(
                config,
                remote=args.remote,
                as_json=args.json,
                history=args.history,
                recount=args.recount,
            )
        )
    )
    return EXIT_OK


def _run_serve(args: argparse.Namespace) -> int:
    """``mirror serve``: serve the web tree until SIGTERM (exit 0) or SIGINT (130)."""
    config = load_config(args.config)
    asyncio.run(app.serve(config, host=args.host, port=args.port))
    return EXIT_OK


def _tcp_port(text: str) -> int:
    """argparse type for --port: a whole number from 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {text!r}")
    return int(text)


def _run_daemon(args: argparse.Namespace) -> int:
    """``mirror daemon``: passes until a signal stops it (see mirror.daemon)."""
    from mirror.daemon import Schedule, run_daemon  # noqa: PLC0415  # see the imports

    config = load_config(args.config)

    async def sync_pass() -> None:
        # The config is parsed once; each pass reads the filters' files afresh.
        report = await app.sync(config, progress=_progress_sink(), reread_filters=True)
        logger.info("%s", summary_line(report))

    schedule = Schedule(
        interval_seconds=config.interval_seconds, jitter_seconds=config.interval_jitter_seconds
    )
    stopped_by = asyncio.run(run_daemon(sync_pass, schedule=schedule))
    return EXIT_INTERRUPTED if stopped_by is signal.SIGINT else EXIT_OK


def _progress_sink() -> ProgressSink:
    """A live line on a terminal (erased before each log line), log lines otherwise."""
    from mirror.progress import ClearProgressFirst, TerminalProgress, progress_for  # noqa: PLC0415

    progress = progress_for(sys.stderr)
    if isinstance(progress, TerminalProgress):
        for handler in logging.getLogger().handlers:
            # The daemon asks for a sink every pass: replace the last pass's filter.
            for stale in [f for f in handler.filters if isinstance(f, ClearProgressFirst)]:
                handler.removeFilter(stale)
            handler.addFilter(progress.log_filter())
    return progress


def _run_filters(args: argparse.Namespace) -> int:
    """``mirror filters``: a dry run of the filters over some projects."""
    config = load_config(args.config)
    lines = asyncio.run(app.filters_dry_run(config, _project_names(args.names) or []))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return EXIT_OK


def _run_delete(args: argparse.Namespace) -> int:
    """``mirror delete``: takedowns (see mirror.deletion)."""
    if args.list and args.names:
        raise ConfigError("mirror delete --list takes no project names")
    if args.undo and not args.names:
        raise ConfigError("mirror delete --undo needs the project names to let back in")
    config = load_config(args.config)
    names = _project_names(args.names) or []
    lines = asyncio.run(app.delete(config, names, undo=args.undo, reason=args.reason))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return EXIT_OK


def _run_verify(args: argparse.Namespace) -> int:
    """``mirror verify``: the integrity check (see mirror.verify)."""
    from mirror.verify import render_json, render_text  # noqa: PLC0415  # see the imports

    config = load_config(args.config)
    outcome = asyncio.run(
        app.verify(
            config,
            repair=args.repair,
            delete_orphans=args.delete_orphans,
            dry_run=args.dry_run,
            deep=args.deep,
            progress=_progress_sink,
        )
    )
    sys.stdout.write(render_json(outcome) if args.json else render_text(outcome))
    return EXIT_OK if outcome.ok else EXIT_PROJECTS_FAILED


def _run_adopt(args: argparse.Namespace) -> int:
    """``mirror adopt``: a bandersnatch mirror taken over (see mirror.adopt)."""
    plan = app.plan_adoption(args.config, args.bandersnatch_conf)
    tree = plan.tree
    found = (
        f"bandersnatch mirror {tree.directory}: serial {tree.status_serial}, "
        f"{len(tree.projects)} project page(s)"
        + (f", an interrupted run's todo of {len(tree.todo.projects)}" if tree.todo else "")
    )
    if args.dry_run:
        sys.stdout.write(plan.translation.render())
        sys.stdout.write(f"# {found}\n")
        if plan.config_exists:
            sys.stdout.write(f"# {args.config} exists: adopt would use it as it is\n")
        return EXIT_OK
    logger.info("%s", found)
    for note in plan.translation.notes:
        if not note.redundant:
            logger.warning("not carried over: %s", note.line())
    config = app.adoption_config(plan)
    report = asyncio.run(
        app.adopt(config, tree, trust_sizes=args.trust_sizes, progress=_progress_sink())
    )
    logger.info("%s", report.summary())
    return EXIT_OK


# One entry per subcommand of build_parser(); each returns the exit code.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": _run_sync,
    "status": _run_status,
    "serve": _run_serve,
    "daemon": _run_daemon,
    "filters": _run_filters,
    "verify": _run_verify,
    "adopt": _run_adopt,
    "delete": _run_delete,
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
        + (
            f"; {len(report.missing_locked)} locked file(s) upstream no longer has"
            if report.missing_locked
            else ""
        )
    )


def _project_names(raw: list[str] | None) -> list[NormalizedName] | None:
    if raw is None:
        return None
    names: list[NormalizedName] = []
    for name in raw:
        try:
            names.append(project_name(name))
        except MalformedResponseError as exc:
            raise ConfigError(f"{name!r} is not a valid project name") from exc
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
