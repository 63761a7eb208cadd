"""The composition root: a :class:`~mirror.config.Config` becomes the objects a command runs.

Every command that touches the mirror directory or upstream gets its resources here, so
each is built one way only: the mirror directory (created when missing), its lock, the
state store, the storage, the upstream client and the :class:`~mirror.sync.Syncer`,
entered in that order on one :class:`~contextlib.AsyncExitStack` and released in the
reverse order. ``mirror.cli`` parses arguments, sets up logging and maps errors to exit
codes; ``mirror.daemon`` and ``mirror.verify`` are handed what they need from here.

Each function imports what it needs when it runs: start-up is most of a sync that finds
nothing to do, and ``mirror sync`` has no use for the web server, the status page or the
verifier (nor for aiohttp's server half).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import NormalizedName

from mirror.config import Config
from mirror.errors import ConfigError
from mirror.layout import state_path, web_root

if TYPE_CHECKING:
    from aiohttp.web import Application, RouteDef

    from mirror.adopt import AdoptReport, Tree
    from mirror.bandersnatchconf import Translation
    from mirror.progress import ProgressSink
    from mirror.server import PageSerial, ProjectFetcher
    from mirror.sync import Syncer, SyncOptions, SyncReport
    from mirror.upstream import UpstreamSettings
    from mirror.verify import VerifyOutcome

# Connections beyond the workers' and the downloads' own: the changelog and listing
# calls a run makes beside them.
_SPARE_CONNECTIONS = 2


def mirror_directory(config: Config) -> Path:
    """``config``'s mirror directory, created (with its parents) when missing.

    Raises ConfigError naming ``[mirror] directory`` when it cannot be created.
    """
    directory = config.directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {directory}: {exc.strerror}", section="mirror", key="directory"
        ) from exc
    return directory


def sync_settings(config: Config) -> UpstreamSettings:
    """The upstream settings of a sync: enough connections for every worker and download."""
    from mirror.upstream import UpstreamSettings  # noqa: PLC0415  # see the module docstring

    return UpstreamSettings.from_config(
        config,
        max_connections=max(config.download_concurrency, config.workers) + _SPARE_CONNECTIONS,
    )


def sync_options(config: Config, *, reread_filters: bool = False) -> SyncOptions:
    """The sync's options as ``config`` sets them: its filters as parsed or, with
    ``reread_filters``, built again so that the files they name (requirements files)
    are read as they are now. Raises ConfigError when those no longer load."""
    from mirror.filters import filters_of  # noqa: PLC0415  # see the module docstring
    from mirror.sync import SyncOptions  # noqa: PLC0415

    return SyncOptions(
        workers=config.workers,
        download_concurrency=config.download_concurrency,
        formats=config.formats,
        keep_json=config.keep_json,
        verify_provenance=config.verify_provenance,
        metadata_source=config.metadata_source,
        upstream_api=config.upstream_api,
        retry_base_seconds=config.retry_base_seconds,
        retry_max_seconds=config.retry_max_seconds,
        metrics_file=config.metrics_file,
        keep_removed=config.keep_removed_seconds,
        cooldown=config.cooldown_seconds,
        recheck_interval=config.recheck_interval_seconds,
        filters=filters_of(config) if reread_filters else config.filters,
        journal_retention_seconds=config.journal_retention_seconds,
    )


@asynccontextmanager
async def open_syncer(
    config: Config, *, progress: ProgressSink | None = None, reread_filters: bool = False
) -> AsyncIterator[Syncer]:
    """A :class:`~mirror.sync.Syncer` over ``config``'s mirror, holding the mirror lock.

    Entered in order: the mirror directory (created), its lock, the state store, the
    storage, the upstream client; all are released when the block ends.
    ``reread_filters``: see :func:`sync_options`. Raises ConfigError (the directory,
    the filters read again), LockedError, StateError, StorageError.
    """
    # See the module docstring: only what a sync needs.
    from mirror.lock import mirror_lock  # noqa: PLC0415
    from mirror.state import StateStore  # noqa: PLC0415
    from mirror.storage.backend import open_backend  # noqa: PLC0415
    from mirror.sync import Syncer  # noqa: PLC0415
    from mirror.upstream import Upstream  # noqa: PLC0415

    directory = mirror_directory(config)
    async with AsyncExitStack() as stack:
        stack.enter_context(mirror_lock(directory))
        state = stack.enter_context(StateStore.open(state_path(directory)))
        settings = sync_settings(config)
        options = sync_options(config, reread_filters=reread_filters)
        storage = await stack.enter_async_context(
            open_backend(config, web_root(directory), lock=True)
        )
        upstream = await stack.enter_async_context(Upstream(settings))
        yield Syncer(
            upstream=upstream,
            storage=storage,
            state=state,
            options=options,
            progress=progress,
        )


async def sync(
    config: Config,
    projects: Sequence[NormalizedName] | None = None,
    *,
    progress: ProgressSink | None = None,
    reread_filters: bool = False,
) -> SyncReport:
    """One sync run over ``config``'s mirror: every change (``projects`` None) or just
    the named projects, reporting to ``progress``. A ``mirror daemon`` pass passes
    ``reread_filters`` (see :func:`sync_options`), as its config is parsed once for
    all its passes. See :func:`open_syncer` for errors."""
    async with open_syncer(config, progress=progress, reread_filters=reread_filters) as syncer:
        return await syncer.run(projects=None if projects is None else list(projects))


async def verify(
    config: Config,
    *,
    repair: bool,
    delete_orphans: bool,
    dry_run: bool,
    deep: bool = False,
    progress: Callable[[], ProgressSink | None] = lambda: None,
) -> VerifyOutcome:
    """``mirror verify`` over ``config``'s mirror (its bucket with ``[storage] backend
    = s3``; ``deep`` then downloads and hashes every object); a repair re-syncs the
    projects concerned through :func:`sync`, each resync reporting to a fresh
    ``progress()``."""
    from mirror.verify import verify as verify_mirror  # noqa: PLC0415  # see the docstring

    def resync(names: Iterable[NormalizedName]) -> Awaitable[SyncReport]:
        return sync(config, list(names), progress=progress())

    async with AsyncExitStack() as stack:
        s3 = None
        if config.s3 is not None:
            from mirror.storage.s3 import open_s3_storage  # noqa: PLC0415  # S3 only

            s3 = await stack.enter_async_context(open_s3_storage(config.s3))
        return await verify_mirror(
            config.directory,
            formats=config.formats,
            repair=repair,
            delete_orphans=delete_orphans,
            dry_run=dry_run,
            resync=resync,
            s3=s3,
            deep=deep,
        )


async def status(
    config: Config,
    *,
    remote: bool = False,
    as_json: bool = False,
    history: bool = False,
    recount: bool = False,
) -> str:
    """What ``mirror status`` prints for ``config``'s mirror: with ``remote``, upstream's
    serial asked for now (one call); with ``recount``, the totals audited against one
    listing of the storage (the disk, or the bucket of ``[storage] backend = s3``).

    Raises StateError when the mirror has no state store yet, UpstreamError when
    ``remote`` and upstream does not answer, StorageError when the listing fails.
    """
    import asyncio  # noqa: PLC0415  # see the module docstring

    from mirror.status import list_packages, require_store, status_text  # noqa: PLC0415
    from mirror.storage.backend import open_backend  # noqa: PLC0415
    from mirror.upstream import Upstream, UpstreamSettings  # noqa: PLC0415

    path = state_path(config.directory)
    await asyncio.to_thread(require_store, path)
    upstream_serial = None
    if remote:
        async with Upstream(UpstreamSettings.from_config(config)) as upstream:
            upstream_serial = await upstream.changelog_last_serial()
    on_disk = None
    if recount:
        async with open_backend(config, web_root(config.directory), lock=False) as storage:
            on_disk = await list_packages(storage)
    return await status_text(
        path, upstream_serial=upstream_serial, on_disk=on_disk, as_json=as_json, history=history
    )


async def delete(
    config: Config,
    names: Sequence[NormalizedName],
    *,
    undo: bool = False,
    reason: str | None = None,
    clock: Callable[[], float] | None = None,
) -> list[str]:
    """``mirror delete``: take ``names`` out of ``config``'s mirror (disk or bucket)
    and keep them out or, with ``undo``, let them back in (queued for the next sync);
    without ``names``, list what is kept out. Returns the lines to print. Holds the
    mirror lock (and the bucket's) like a sync.

    Raises ConfigError (the directory), LockedError, StateError, StorageError.
    """
    import asyncio  # noqa: PLC0415  # see the module docstring
    import time  # noqa: PLC0415

    from mirror import deletion  # noqa: PLC0415
    from mirror.lock import mirror_lock  # noqa: PLC0415
    from mirror.state import StateStore  # noqa: PLC0415
    from mirror.storage.backend import open_backend  # noqa: PLC0415

    now = (clock or time.time)()
    directory = mirror_directory(config)
    async with AsyncExitStack() as stack:
        stack.enter_context(mirror_lock(directory))
        state = stack.enter_context(StateStore.open(state_path(directory)))
        if not names:
            return deletion.render_exclusions(await asyncio.to_thread(state.exclusions))
        if undo:
            lifted = await asyncio.to_thread(deletion.lift, state, names, now=now)
            return deletion.render_lifted(names, lifted)
        storage = await stack.enter_async_context(
            open_backend(config, web_root(directory), lock=True)
        )
        deleted = await deletion.delete_projects(
            state=state,
            storage=storage,
            names=names,
            formats=config.formats,
            reason=reason or deletion.DEFAULT_REASON,
            now=now,
        )
        return deletion.render_deleted(deleted)


async def filters_dry_run(config: Config, names: Sequence[NormalizedName]) -> list[str]:
    """The ``mirror filters`` report, as lines: what ``config``'s filters keep and leave
    out of each of ``names``, from upstream's detail; nothing is written."""
    from mirror.filters.dryrun import explain  # noqa: PLC0415  # see the module docstring
    from mirror.upstream import Upstream, UpstreamSettings  # noqa: PLC0415

    async with Upstream(UpstreamSettings.from_config(config)) as upstream:
        verdicts = await explain(upstream, config.filters, names, source=config.metadata_source)
    return [line for verdict in verdicts for line in verdict.lines()]


@asynccontextmanager
async def _server_parts(config: Config) -> AsyncIterator[_ServerParts]:
    """What ``mirror serve`` serves for ``config``, its resources held for the block:
    the routes beside the tree's, the bucket's app (``[storage] backend = s3``) or the
    journal's serials, and the on-demand fetcher (``[serve] on-demand``)."""
    from mirror.metrics import metrics_routes  # noqa: PLC0415  # see the module docstring
    from mirror.rpc import journal_serial_reader, xmlrpc_routes  # noqa: PLC0415
    from mirror.snapshot import snapshot_routes  # noqa: PLC0415
    from mirror.statuspage import status_routes  # noqa: PLC0415

    extra_routes = [
        *metrics_routes(config.directory),
        *status_routes(config.directory),
        *snapshot_routes(
            config.directory,
            cooldown=config.cooldown_seconds,
            keep_removed=config.keep_removed_seconds,
            formats=config.formats,
        ),
    ]
    async with AsyncExitStack() as stack:
        parts = _ServerParts(extra_routes=extra_routes)
        if config.s3 is not None:
            # The bucket's tree: each request asks the bucket (any number of nodes).
            from mirror.bucketserver import create_bucket_app  # noqa: PLC0415  # S3 only
            from mirror.storage.s3 import open_s3_storage  # noqa: PLC0415

            storage = await stack.enter_async_context(open_s3_storage(config.s3))
            parts.app = create_bucket_app(
                storage, packages_redirect=config.packages_redirect, extra_routes=extra_routes
            )
        else:
            # We are an upstream too: our journal over XML-RPC, its serials on the pages.
            extra_routes.extend(xmlrpc_routes(config.directory))
            parts.page_serial = journal_serial_reader(config.directory)
        if config.on_demand:
            parts.on_missing = await stack.enter_async_context(_on_demand(config))
        yield parts


@asynccontextmanager
async def _on_demand(config: Config) -> AsyncIterator[ProjectFetcher]:
    """The on-demand fetcher of ``mirror serve``: each batch a :func:`sync` of the
    names. Raises ConfigError when the mirror directory is not writable."""
    from mirror.ondemand import on_demand  # noqa: PLC0415

    directory = mirror_directory(config)
    if not os.access(directory, os.W_OK):
        raise ConfigError(
            f"needs a writable mirror directory; {directory} is not",
            section="serve",
            key="on-demand",
        )

    def fetch(names: Sequence[NormalizedName]) -> Awaitable[SyncReport]:
        return sync(config, names)

    async with on_demand(
        filters=config.filters,
        state_path=state_path(directory),
        sync=fetch,
        timeout_seconds=config.on_demand_timeout_seconds,
    ) as fetcher:
        yield fetcher


@asynccontextmanager
async def serving(
    config: Config, *, host: str | None = None, port: int | None = None
) -> AsyncIterator[str]:
    """``mirror serve`` for the duration of the block (no signal handling); yields its
    base URL (``port`` 0 picks a free one). See :func:`serve`."""
    from mirror.server import running_server  # noqa: PLC0415  # see the module docstring

    async with (
        _server_parts(config) as parts,
        running_server(
            web_root(config.directory),
            host=host or config.serve_host,
            port=config.serve_port if port is None else port,
            access_log=config.serve_access_log,
            extra_routes=parts.extra_routes,
            app=parts.app,
            page_serial=parts.page_serial,
            on_missing=parts.on_missing,
        ) as url,
    ):
        yield url


async def serve(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """``mirror serve`` over ``config``'s web tree with the metrics and status routes
    and, for a tree on disk, the XML-RPC mirroring endpoint over the journal (with its
    serials on the pages) and, with ``[serve] on-demand``, projects fetched on demand;
    ``host`` and ``port`` win over the ``[serve]`` section. Runs until a signal."""
    from mirror.server import serve as serve_tree  # noqa: PLC0415  # see the module docstring

    async with _server_parts(config) as parts:
        await serve_tree(
            web_root(config.directory),
            host=host or config.serve_host,
            port=config.serve_port if port is None else port,
            access_log=config.serve_access_log,
            extra_routes=parts.extra_routes,
            app=parts.app,
            page_serial=parts.page_serial,
            on_missing=parts.on_missing,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptPlan:
    """What ``mirror adopt`` reads before it changes anything: bandersnatch's config
    translated, the config file it goes to, and what bandersnatch left on disk."""

    translation: Translation
    config_path: Path
    config_exists: bool
    tree: Tree


def plan_adoption(config_path: Path, bandersnatch_conf: Path) -> AdoptPlan:
    """Read bandersnatch's config and state (nothing is written). Raises ConfigError
    for an unreadable or unusable bandersnatch config, AdoptError for its state."""
    from mirror.adopt import read_tree  # noqa: PLC0415  # see the module docstring
    from mirror.bandersnatchconf import MIRROR, translate  # noqa: PLC0415

    try:
        text = bandersnatch_conf.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {bandersnatch_conf}: {exc}") from exc
    translation = translate(text)
    directory = Path(translation.directory).absolute()
    sections = {name: dict(values) for name, values in translation.sections.items()}
    sections[MIRROR]["directory"] = str(directory)
    translation = replace(translation, sections=sections)
    tree = read_tree(directory, hash_index=translation.hash_index)
    return AdoptPlan(
        translation=translation,
        config_path=config_path,
        config_exists=config_path.exists(),
        tree=tree,
    )


def adoption_config(plan: AdoptPlan) -> Config:
    """The config the adoption runs under: ``-c``'s file when it exists (written by an
    earlier, interrupted adoption, or by the operator), else the translation, written
    there first. Raises AdoptError when a filter cannot be carried over (and no config
    file exists to say what to do instead), or when the config names another
    directory or a bucket."""
    from mirror.config import load_config  # noqa: PLC0415
    from mirror.errors import AdoptError  # noqa: PLC0415

    if not plan.config_exists:
        lost = plan.translation.lost_filters
        if lost:
            raise AdoptError(
                "bandersnatch filters without an equivalent in mirror (the mirror would "
                "keep more): "
                + "; ".join(note.line() for note in lost)
                + f". Write {plan.config_path} yourself (`mirror adopt --dry-run` prints "
                "the translation) and run mirror adopt again"
            )
        try:
            plan.config_path.write_text(plan.translation.render(), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {plan.config_path}: {exc.strerror}") from exc
    config = load_config(plan.config_path)
    if config.directory.resolve() != plan.tree.directory.resolve():
        raise AdoptError(
            f"{plan.config_path} has directory = {config.directory}, bandersnatch's is "
            f"{plan.tree.directory}: mirror adopts a mirror in place"
        )
    if config.s3 is not None:
        raise AdoptError("adopting into an S3 bucket is not supported ([storage] backend = s3)")
    return config


async def adopt(
    config: Config,
    tree: Tree,
    *,
    trust_sizes: bool,
    progress: ProgressSink | None = None,
    threads: int | None = None,
) -> AdoptReport:
    """``mirror adopt`` of ``tree`` under ``config``, holding the mirror lock (which is
    bandersnatch's too: both lock ``<directory>/.lock``)."""
    from mirror.adopt import Adoption  # noqa: PLC0415  # see the module docstring
    from mirror.lock import mirror_lock  # noqa: PLC0415
    from mirror.pages import PageWriter  # noqa: PLC0415
    from mirror.state import StateStore  # noqa: PLC0415
    from mirror.storage import FileSystemStorage  # noqa: PLC0415

    directory = mirror_directory(config)
    with mirror_lock(directory), StateStore.open(state_path(directory)) as state:
        async with FileSystemStorage(web_root(directory)) as storage:
            adoption = Adoption(
                tree=tree,
                state=state,
                pages=PageWriter(storage=storage, state=state, formats=config.formats),
                trust_sizes=trust_sizes,
                threads=threads or min(32, 2 * (os.cpu_count() or 2)),
                progress=progress,
            )
            return await adoption.run()


@dataclass(slots=True, kw_only=True)
class _ServerParts:
    """What :func:`_server_parts` gathers for the server."""

    extra_routes: list[RouteDef]
    app: Application | None = None
    page_serial: PageSerial | None = None
    on_missing: ProjectFetcher | None = None
