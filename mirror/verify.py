"""``mirror verify``: prove that a mirror directory keeps its promises, and mend it.

A check has two halves, both read-only:

1. **Files.** Every file row in the state store (and its ``.metadata`` and
   ``.provenance`` sidecars) is
   looked up on disk and hashed: missing and corrupt (wrong size or sha256) files are
   reported. Hashing runs in a pool of two threads per CPU reading 1 MiB blocks
   (with sequential read-ahead advised): ``hashlib`` releases the GIL while it hashes
   a block that large, so the threads use every core, and the second thread per core
   keeps the disk busy while the first hashes. Measured on two cores over 400 MiB in
   the page cache: one thread 1.6 GiB/s, two threads 3.0 GiB/s, two processes 2.7
   GiB/s (a process pool also pays for its start-up and pipes). Results are taken as
   they finish, so one large file never idles the other threads. Rows are streamed
   from the store a page at a time and at most a few files per thread are in flight,
   so memory does not grow with the mirror.
2. **Pages and tree.** Every committed project's pages are parsed (each format the
   mirror writes) and every link must name a file the state lists with the same
   sha256 (and the same ``.metadata`` hash), every provenance link the copy of a
   file that has one recorded; every file row of a project must be
   linked by its pages, and the two HTML pages must be identical. Projects without
   pages, page directories without a project, and root indexes that list a project
   the state does not hold (or miss one it holds) are reported. The tree is listed
   once, through the storage (:meth:`~mirror.storage.Storage.list_files`): files
   under ``packages/`` that the state does not list are orphans (each is looked up in
   the store by its indexed path, so no set of millions of paths is ever built), and
   ``.*.part`` files anywhere are temps a killed run left behind.

A project still waiting in the todo queue is mid-sync: its files may be recorded
before its pages link them and its pages written before its commit. For such a
project only the links are checked (they must name verified files at every moment).

Acting on what was found: ``repair`` forgets the rows of missing and corrupt files,
queues every project a problem names and runs a sync of those projects (through the
caller's ``resync``), which downloads and verifies again and rewrites their pages and
the root index; ``delete_orphans`` removes orphan files and temps; ``dry_run`` only
says what either would do. The whole check runs with the mirror directory's lock
held, since the state and the tree agree only between runs; the lock is released
before the repair sync, which takes it itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import heapq
import itertools
import json
import logging
import os
import posixpath
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, get_args
from urllib.parse import unquote, urlsplit

from humanfriendly import format_size, format_timespan
from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import StateError, StorageError, UnsafePathError
from mirror.layout import (
    STATE_NAME,
    WEB_DIR,
    PackagePath,
    is_temp_name,
    package_path,
    provenance_path,
)
from mirror.lock import mirror_lock
from mirror.models import Serial
from mirror.provenance import PROVENANCE_SUFFIX
from mirror.state import UNFINISHED_META_KEY, StateStore, StoredFile
from mirror.storage import FileSystemStorage, Storage

if TYPE_CHECKING:
    # Only named in annotations: importing the sync engine would load the HTTP client
    # (a tenth of a second) into a command that never uses it.
    from mirror.storage.s3 import S3Storage
    from mirror.sync import SyncReport

logger = logging.getLogger(__name__)

ProblemKind = Literal[
    "missing",
    "corrupt",
    "orphan",
    "temp",
    "unlinked",
    "bad-link",
    "bad-page",
    "no-pages",
    "no-project",
    "root-extra",
    "root-missing",
]
"""What is wrong:

- ``missing``: a file (or ``.metadata``) the state lists is not on disk;
- ``corrupt``: it is on disk with another size or sha256;
- ``orphan``: a file under ``packages/`` the state does not list;
- ``temp``: a ``.*.part`` temp file a killed run left behind;
- ``unlinked``: a file row no page of its project links (or whose project the state
  does not hold);
- ``bad-link``: a page links a file the state does not list, or with another sha256
  or ``.metadata`` hash;
- ``bad-page``: a page that does not parse, or HTML pages that differ;
- ``no-pages``: a committed project (or the root) without a page it should have;
- ``no-project``: pages of a project the state does not hold;
- ``root-extra`` / ``root-missing``: the root index lists a project the state does
  not hold / does not list one it holds.
"""

SAFETY_KINDS: frozenset[ProblemKind] = frozenset({"missing", "corrupt", "bad-link", "bad-page"})
"""The kinds that break the promise to clients (a page linking a file that is missing,
partial or fails its hash). No crash may ever cause one; the others are what a crash
can leave for the next run to settle."""

_BLOCK_BYTES = 1 << 20
_SEQUENTIAL: int | None = getattr(os, "POSIX_FADV_SEQUENTIAL", None)
# Hash jobs in flight per worker thread: enough to keep every thread busy while the
# main thread reads the next page of rows, few enough that memory stays flat.
_IN_FLIGHT_PER_WORKER = 4
# Files the hashing looks ahead over to start the largest first: a big file then does
# not start last and leave one thread reading alone at the end. Cold, on the
# benchmark's large files (178 files, 1 MiB-500 MiB), a bare read-and-hash averaged
# 1.21 s largest first against 1.53 s in path order, and `mirror verify` 1.96 s
# against 2.10 s (four runs each; the machine is noisy). Bounded, so memory stays flat
# on a mirror of millions of files, where the order matters less.
_LOOKAHEAD_FILES = 4096
# Listed files judged per thread hop (each is a state lookup or two).
_TREE_BATCH_FILES = 2048
_PAGE_NAMES = {"html": ("index.html", "index.v1_html"), "json": ("index.v1_json",)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with the mirror. ``path`` is relative to the web root."""

    kind: ProblemKind
    path: str
    project: NormalizedName | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """What a check found."""

    projects: int
    """Committed projects whose pages were checked."""
    files: int
    """Files (and sidecars) the state lists, all looked up on disk."""
    bytes_hashed: int
    problems: tuple[Problem, ...]
    elapsed_seconds: float

    def count(self, *kinds: ProblemKind) -> int:
        """How many problems are of one of ``kinds``."""
        return sum(1 for problem in self.problems if problem.kind in kinds)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairPlan:
    """What ``--repair`` and ``--delete-orphans`` do (or, with ``--dry-run``, would do)."""

    forget: tuple[PackagePath, ...] = ()
    """File rows to drop (missing or corrupt): their files are downloaded again."""
    resync: tuple[NormalizedName, ...] = ()
    """Projects to queue and sync again."""
    rewrite_root: bool = False
    """Whether the root index must be rewritten."""
    delete: tuple[str, ...] = ()
    """Orphan and temp files to remove."""

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to do."""
        return not (self.forget or self.resync or self.rewrite_root or self.delete)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyOutcome:
    """A check, what was done about it, and what is still wrong."""

    report: VerifyReport
    plan: RepairPlan
    dry_run: bool
    deleted: int = 0
    """Orphans and temps removed."""
    sync: SyncReport | None = None
    """The repair sync's report, when one ran."""
    remaining: tuple[Problem, ...] = field(default=())
    """Problems not dealt with (everything, on a dry run or without options)."""

    @property
    def ok(self) -> bool:
        """True when nothing is left wrong: exit code 0."""
        return not self.remaining


# --- checking ----------------------------------------------------------------------


class Tree(Protocol):
    """The files of the served tree as the check reads them: blocking calls, made
    from worker threads. :class:`DiskTree` is the file-system backend's; the S3
    backend's is :class:`mirror.storage.s3tree.S3Tree`."""

    hashes: bool
    """Whether :meth:`inspect` hashes the bytes (False: it compares recorded sums)."""

    def inspect(self, relative: str, expected_size: int) -> tuple[int, str] | None:
        """The size and sha256 of the file at ``relative`` (the sha256 may be left
        empty when the size already differs); None when it is missing."""
        ...

    def read(self, relative: str) -> bytes | None:
        """The bytes of ``relative``; None when it is missing. StorageError."""
        ...

    def describe(self, relative: str) -> str:
        """Where ``relative`` is, for messages (a path, an ``s3://`` URL)."""
        ...


class DiskTree:
    """The files in a directory (the file-system backend's ``web/``), always hashed."""

    hashes = True

    def __init__(self, web_root: Path) -> None:
        self._web = web_root

    def describe(self, relative: str) -> str:
        return str(self._web / relative)

    def inspect(self, relative: str, expected_size: int) -> _Seen:
        return _inspect(self._web / relative, expected_size)

    def read(self, relative: str) -> bytes | None:
        try:
            return (self._web / relative).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self._web / relative}: {exc.strerror}") from exc


async def check_mirror(
    state: StateStore,
    storage: Storage,
    *,
    formats: frozenset[str],
    workers: int | None = None,
    deep: bool = False,
) -> VerifyReport:
    """Check the state store against the tree ``storage`` holds (hashing and page
    reads run in threads, off the event loop). ``formats`` are the page formats the
    mirror writes; ``workers`` the hashing threads (default: two per CPU). On disk
    every file is hashed; in an S3 bucket each is checked by one HEAD against the
    sha256 and size recorded on upload, or downloaded and hashed with ``deep``.
    Raises StorageError when the tree cannot be read, StateError when the store
    cannot."""
    started = time.monotonic()
    problems: list[Problem] = []
    tree: Tree
    if isinstance(storage, FileSystemStorage):
        tree = DiskTree(storage.web_root)
    else:
        from mirror.storage.s3 import S3Storage  # noqa: PLC0415  # S3 only
        from mirror.storage.s3tree import S3Tree  # noqa: PLC0415

        assert isinstance(storage, S3Storage)
        tree = S3Tree(storage, asyncio.get_running_loop(), deep=deep)
    checker = _Checker(state, tree, problems)
    files, bytes_hashed = await asyncio.to_thread(
        checker.check_files, workers or 2 * (os.cpu_count() or 1)
    )
    projects = await asyncio.to_thread(checker.check_pages, formats)
    await checker.check_tree(storage)
    return VerifyReport(
        projects=projects,
        files=files,
        bytes_hashed=bytes_hashed,
        problems=tuple(problems),
        elapsed_seconds=time.monotonic() - started,
    )


@dataclass(frozen=True, slots=True)
class _Expected:
    path: str
    project: NormalizedName
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class _Link:
    href: str
    """The URL as the page has it, without a fragment."""
    sha256: str | None
    metadata_sha256: str | None
    provenance: str | None = None
    """The PEP 740 provenance URL the page gives, if any."""


class _Checker:
    """The state of one check: the store, the tree and the problems found so far."""

    def __init__(self, state: StateStore, tree: Tree, problems: list[Problem]) -> None:
        self._state = state
        self._tree = tree
        self._problems = problems
        # Whether a project is queued, asked for many rows of the same project.
        self._is_queued = functools.lru_cache(maxsize=4096)(self._queued)
        self._is_committed = functools.lru_cache(maxsize=4096)(self._committed)
        self._last_page_directory: str | None = None

    def _queued(self, name: NormalizedName) -> bool:
        return self._state.todo_item(name) is not None

    def _committed(self, name: NormalizedName) -> bool:
        return self._state.project(name) is not None

    def _add(self, kind: ProblemKind, path: str, project: str | None, detail: str) -> None:
        name = None if project is None else NormalizedName(project)
        self._problems.append(Problem(kind=kind, path=path, project=name, detail=detail))

    # --- files ----------------------------------------------------------------------

    def check_files(self, workers: int) -> tuple[int, int]:
        """Look up and hash every listed file; return (files checked, bytes hashed).

        Results are taken as they finish, not in order: a thread hashing a 500 MB
        file must not leave the others idle behind it. The file problems are then
        put in path order, so the report is the same whichever thread was faster."""
        checked = 0
        hashed = 0
        first_problem = len(self._problems)
        window: dict[concurrent.futures.Future[_Seen], _Expected] = {}

        def judge(futures: Iterable[concurrent.futures.Future[_Seen]]) -> int:
            return sum(self._judge(window.pop(future), future) for future in futures)

        with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="verify"
        ) as pool:
            for expected in _largest_first(self._expected_files(), _LOOKAHEAD_FILES):
                window[pool.submit(self._tree.inspect, expected.path, expected.size)] = expected
                if len(window) >= workers * _IN_FLIGHT_PER_WORKER:
                    done, _ = concurrent.futures.wait(
                        window, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    hashed += judge(done)
                    checked += len(done)
            checked += len(window)
            hashed += judge(list(window))
        self._problems[first_problem:] = sorted(
            self._problems[first_problem:], key=lambda problem: (problem.path, problem.kind)
        )
        return checked, hashed

    def _expected_files(self) -> Iterator[_Expected]:
        for stored in self._state.iter_files():
            self._check_owner(stored)
            yield _Expected(stored.path, stored.project, stored.size, stored.sha256)
            if stored.metadata_sha256 is not None and stored.metadata_size is not None:
                yield _Expected(
                    f"{stored.path}.metadata",
                    stored.project,
                    stored.metadata_size,
                    stored.metadata_sha256,
                )
            if stored.provenance_sha256 is not None and stored.provenance_size is not None:
                yield _Expected(
                    provenance_path(stored.path),
                    stored.project,
                    stored.provenance_size,
                    stored.provenance_sha256,
                )

    def _check_owner(self, stored: StoredFile) -> None:
        """A row whose project is neither committed nor queued belongs to no page."""
        if not self._is_committed(stored.project) and not self._is_queued(stored.project):
            self._add(
                "unlinked",
                stored.path,
                stored.project,
                "recorded for a project the state neither holds nor has queued",
            )

    def _judge(self, expected: _Expected, future: concurrent.futures.Future[_Seen]) -> int:
        """Report what the hashing of one file found; return the bytes it hashed."""
        try:
            seen = future.result()
        except OSError as exc:
            raise StorageError(f"cannot read {self._tree.describe(expected.path)}: {exc}") from exc
        if seen is None:
            self._add("missing", expected.path, expected.project, "listed but not on disk")
            return 0
        size, sha256 = seen
        if size != expected.size:
            self._add(
                "corrupt",
                expected.path,
                expected.project,
                f"{size} bytes on disk, {expected.size} expected",
            )
            return 0
        if sha256 != expected.sha256:
            self._add(
                "corrupt",
                expected.path,
                expected.project,
                f"sha256 {sha256 or '(none recorded)'} on disk, {expected.sha256} expected",
            )
        return size if self._tree.hashes else 0

    # --- pages ----------------------------------------------------------------------

    def check_pages(self, formats: frozenset[str]) -> int:
        """Check every committed project's pages and the root index; return how many
        projects were checked."""
        roots = {fmt: self._root_names(fmt) for fmt in sorted(formats)}
        count = 0
        for row in self._state.iter_projects():
            count += 1
            queued = self._is_queued(row.name)
            stored = self._state.project_files(row.name)
            # A row must be linked by the page of every format.
            linked: set[str] | None = None
            for fmt in sorted(formats):
                links = self._check_project_page(row.name, fmt, stored, queued=queued)
                linked = links if linked is None else linked & links
                names = roots[fmt]
                if names is not None and row.name not in names:
                    self._add(
                        "root-missing",
                        _ROOT_PAGES[fmt],
                        row.name,
                        "the root index does not list this project",
                    )
                elif names is not None:
                    names.discard(row.name)
            if not queued:
                for path in sorted(set(stored) - (linked or set())):
                    self._add("unlinked", path, row.name, "recorded but no page links it")
        for fmt, names in roots.items():
            for name in sorted(names or ()):
                if not self._is_queued(name):
                    self._add(
                        "root-extra",
                        _ROOT_PAGES[fmt],
                        name,
                        "the root index lists a project the state does not hold",
                    )
        return count

    def _root_names(self, fmt: str) -> set[NormalizedName] | None:
        """The projects a root page lists; None (and a problem) when it is missing or
        does not parse."""
        relative = _ROOT_PAGES[fmt]
        body = self._read(relative)
        if body is None:
            self._add("no-pages", relative, None, "the root index is missing")
            return None
        try:
            if fmt == "json":
                data = json.loads(body)
                return {canonicalize_name(str(p["name"])) for p in data["projects"]}
            return {
                canonicalize_name(href.rstrip("/")) for href, _ in _anchors(body.decode("utf-8"))
            }
        except (ValueError, KeyError, TypeError) as exc:
            self._add("bad-page", relative, None, f"the root index does not parse: {exc}")
            return None

    def _check_project_page(
        self,
        name: NormalizedName,
        fmt: str,
        stored: dict[PackagePath, StoredFile],
        *,
        queued: bool,
    ) -> set[str]:
        """Check one format's pages of ``name``; return the paths they link."""
        base = f"simple/{name}"
        pages = _PAGE_NAMES[fmt]
        first = f"{base}/{pages[0]}"
        body = self._read(first)
        if body is None:
            self._add("no-pages", first, name, "a committed project without this page")
            return set()
        for other in pages[1:]:
            twin = self._read(f"{base}/{other}")
            if twin != body and not queued:
                self._add("bad-page", f"{base}/{other}", name, f"differs from {pages[0]}")
        try:
            links = _json_links(body) if fmt == "json" else _html_links(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._add("bad-page", first, name, f"does not parse: {exc}")
            return set()
        linked: set[str] = set()
        for link in links:
            path = _resolve(name, link.href)
            self._check_link(first, name, link, None if path is None else stored.get(path))
            if path is not None:
                linked.add(path)
        return linked

    def _check_link(
        self, page: str, name: NormalizedName, link: _Link, known: StoredFile | None
    ) -> None:
        if known is None:
            self._add("bad-link", page, name, f"links {link.href}, which the state does not list")
        elif link.sha256 != known.sha256:
            self._add(
                "bad-link",
                page,
                name,
                f"links {known.path} with sha256 {link.sha256}, the state has {known.sha256}",
            )
        elif link.metadata_sha256 is not None and link.metadata_sha256 != known.metadata_sha256:
            self._add(
                "bad-link",
                page,
                name,
                f"advertises {known.path}.metadata with sha256 {link.metadata_sha256},"
                f" the state has {known.metadata_sha256}",
            )
        elif link.provenance is not None and (
            known.provenance_sha256 is None
            or _resolve(name, link.provenance) != provenance_path(known.path)
        ):
            # Never upstream's, never a copy the state does not hold.
            self._add(
                "bad-link",
                page,
                name,
                f"links the provenance {link.provenance}, not a copy the state holds",
            )

    def _read(self, relative: str) -> bytes | None:
        return self._tree.read(relative)

    # --- the tree -------------------------------------------------------------------

    async def check_tree(self, storage: Storage) -> None:
        """List the web tree once: temps anywhere, orphans under ``packages/``, page
        directories without a project under ``simple/``. The listed paths are judged
        in a thread a batch at a time (each asks the state store)."""
        batch: list[str] = []
        async for listed in storage.list_files(""):
            batch.append(listed.path)
            if len(batch) >= _TREE_BATCH_FILES:
                await asyncio.to_thread(self._check_listed, batch)
                batch = []
        await asyncio.to_thread(self._check_listed, batch)

    def _check_listed(self, paths: Iterable[str]) -> None:
        for path in paths:
            top, _, rest = path.partition("/")
            directory, _, filename = path.rpartition("/")
            if top == "simple" and "/" in rest:
                # A project's page directory, seen once: its files are listed together.
                project = rest.partition("/")[0]
                if project != self._last_page_directory:
                    self._last_page_directory = project
                    self._check_page_directory(project)
            if is_temp_name(filename):
                self._add("temp", path, None, "a temporary file a killed run left behind")
            elif top == "packages" and directory and not self._is_listed(path):
                self._add("orphan", path, None, "on disk but not in the state")

    def _check_page_directory(self, name: str) -> None:
        project = NormalizedName(name)
        if not self._is_committed(project) and not self._is_queued(project):
            self._add(
                "no-project", f"simple/{name}", project, "pages of a project not in the state"
            )

    def _is_listed(self, path: str) -> bool:
        try:
            known = package_path(path)
        except UnsafePathError:
            return False  # a name the mirror would never write
        if self._state.file(known) is not None or self._state.is_retained(known):
            return True
        if path.endswith(".metadata"):
            owner = self._state.file(package_path(known.removesuffix(".metadata")))
            return owner is not None and owner.metadata_sha256 is not None
        if path.endswith(PROVENANCE_SUFFIX):
            owner = self._state.file(package_path(known.removesuffix(PROVENANCE_SUFFIX)))
            return owner is not None and owner.provenance_sha256 is not None
        return False


_ROOT_PAGES = {"html": "simple/index.html", "json": "simple/index.v1_json"}

# (size, sha256) of a file on disk; None when it is missing.
_Seen = tuple[int, str] | None


def _largest_first(files: Iterable[_Expected], lookahead: int) -> Iterator[_Expected]:
    """``files``, each once, the largest of the next ``lookahead`` always first (all of
    them sorted, largest first, when there are no more than ``lookahead``)."""
    order = itertools.count()
    heap: list[tuple[int, int, _Expected]] = []
    for expected in files:
        entry = (-expected.size, next(order), expected)
        if len(heap) < lookahead:
            heapq.heappush(heap, entry)
        else:
            yield heapq.heappushpop(heap, entry)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def _inspect(path: Path, expected_size: int) -> _Seen:
    """Size and sha256 of ``path`` (None when missing); the sha256 is not computed
    (empty) when the size already differs. Runs in a hashing thread."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size != expected_size:
                return size, ""
            if _SEQUENTIAL is not None:
                # Read all the way through once: a larger read-ahead keeps the disk busy
                # while the block before is hashed (cold files: 1.1 -> 1.4 GB/s here).
                os.posix_fadvise(file.fileno(), 0, 0, _SEQUENTIAL)
            digest = hashlib.sha256()
            while block := file.read(_BLOCK_BYTES):
                digest.update(block)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return size, digest.hexdigest()


def _resolve(name: str, href: str) -> PackagePath | None:
    """The path under the web root that ``href`` on ``simple/<name>/`` names, or None
    when it leaves ``packages/`` (or the tree)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    path = posixpath.normpath(posixpath.join("simple", name, unquote(parts.path)))
    try:
        return package_path(path)
    except UnsafePathError:
        return None


def _json_links(body: bytes) -> list[_Link]:
    data = json.loads(body)
    links: list[_Link] = []
    for entry in data["files"]:
        core = entry.get("core-metadata")
        links.append(
            _Link(
                href=str(entry["url"]),
                sha256=entry["hashes"].get("sha256"),
                metadata_sha256=core.get("sha256") if isinstance(core, dict) else None,
                provenance=entry.get("provenance") or None,
            )
        )
    return links


def _html_links(body: bytes) -> list[_Link]:
    text = body.decode("utf-8")
    links: list[_Link] = []
    for href, attributes in _anchors(text):
        url, _, fragment = href.partition("#")
        sha256 = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        core = attributes.get("data-core-metadata") or ""
        links.append(
            _Link(
                href=url,
                sha256=sha256,
                metadata_sha256=core.removeprefix("sha256=")
                if core.startswith("sha256=")
                else None,
                provenance=attributes.get("data-provenance") or None,
            )
        )
    return links


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = {key: value or "" for key, value in attrs}
            self.anchors.append((values.get("href", ""), values))


def _anchors(text: str) -> list[tuple[str, dict[str, str]]]:
    """``(href, attributes)`` of every ``<a>`` in an HTML page."""
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    return parser.anchors


# --- acting --------------------------------------------------------------------------


def plan_repair(report: VerifyReport, *, repair: bool, delete_orphans: bool) -> RepairPlan:
    """What ``repair`` and ``delete_orphans`` would do about ``report``'s problems."""
    forget: dict[PackagePath, None] = {}
    resync: set[NormalizedName] = set()
    rewrite_root = False
    delete: list[str] = []
    for problem in report.problems:
        if problem.kind in ("orphan", "temp"):
            if delete_orphans:
                delete.append(problem.path)
            continue
        if not repair:
            continue
        if problem.kind in ("missing", "corrupt"):
            owner = problem.path.removesuffix(".metadata").removesuffix(PROVENANCE_SUFFIX)
            forget[package_path(owner)] = None
        if problem.kind in ("root-extra", "root-missing") or problem.path.startswith(
            "simple/index"
        ):
            rewrite_root = True
        if problem.project is not None:
            resync.add(problem.project)
    return RepairPlan(
        forget=tuple(forget),
        resync=tuple(sorted(resync)),
        rewrite_root=rewrite_root,
        delete=tuple(delete),
    )


Resync: TypeAlias = "Callable[[Sequence[NormalizedName]], Awaitable[SyncReport]]"
"""Runs a sync of just these projects (``mirror sync --project ...``), taking the
mirror lock itself, and returns its report."""


async def verify(
    directory: Path,
    *,
    formats: frozenset[str],
    repair: bool = False,
    delete_orphans: bool = False,
    dry_run: bool = False,
    resync: Resync | None = None,
    workers: int | None = None,
    clock: Callable[[], float] = time.time,
    s3: S3Storage | None = None,
    deep: bool = False,
) -> VerifyOutcome:
    """Check the mirror in ``directory`` and, unless ``dry_run``, act on what was
    found: ``delete_orphans`` removes orphans and temps; ``repair`` forgets missing
    and corrupt files, queues the projects concerned, marks the root index for a
    rewrite and calls ``resync`` with those projects (required with ``repair``).

    With ``s3`` (entered by the caller) the tree is that bucket's; the state store
    stays in ``directory``. ``deep`` downloads and hashes every object (see
    :func:`check_mirror`).

    Raises StateError when ``directory`` has no state store, LockedError when a run
    holds the lock, StorageError and StateError when the disk or the store fail.
    """
    if repair and resync is None:
        raise ValueError("repair needs a resync function")
    state_path = directory / STATE_NAME
    if not state_path.is_file():
        raise StateError(f"no state store at {state_path}: is this a mirror directory?")
    acting = (repair or delete_orphans) and not dry_run
    deleted = 0
    with mirror_lock(directory):
        opener = StateStore.open if acting else StateStore.open_read_only
        storage: Storage = FileSystemStorage(directory / WEB_DIR) if s3 is None else s3
        async with storage:
            with opener(state_path) as state:
                report = await check_mirror(
                    state, storage, formats=formats, workers=workers, deep=deep
                )
                plan = plan_repair(report, repair=repair, delete_orphans=delete_orphans)
                if acting:
                    deleted = await _delete(storage, plan.delete)
                    if s3 is not None and repair:
                        # A sync adopts an object by its recorded sum, which bit rot
                        # keeps: remove the corrupt ones so the repair downloads them.
                        for problem in report.problems:
                            if problem.kind == "corrupt":
                                await s3.delete(problem.path)
                    await asyncio.to_thread(_apply, state, plan, clock())
    sync_report = None
    if acting and repair and (plan.resync or plan.rewrite_root):
        assert resync is not None  # checked above
        sync_report = await resync(plan.resync)
    remaining = _remaining(report, plan, acted=acting, sync=sync_report)
    return VerifyOutcome(
        report=report,
        plan=plan,
        dry_run=dry_run,
        deleted=deleted,
        sync=sync_report,
        remaining=remaining,
    )


async def _delete(storage: Storage, paths: Sequence[str]) -> int:
    """Remove orphans and temps (and the directories they leave empty)."""
    for path in paths:
        await storage.delete(path)
    if paths:
        logger.info("removed %d orphan or temporary file(s)", len(paths))
    return len(paths)


def _apply(state: StateStore, plan: RepairPlan, now: float) -> None:
    """Forget the bad rows, queue the projects and mark the root for a rewrite, so
    that even if the repair sync is stopped, the next sync finishes the job."""
    if plan.forget:
        state.forget_files(plan.forget)
        logger.info("forgot %d missing or corrupt file(s)", len(plan.forget))
    if plan.resync:
        state.enqueue(dict.fromkeys(plan.resync, Serial(0)), now=now)
    if plan.rewrite_root or plan.resync:
        state.set_meta(UNFINISHED_META_KEY, "verify")


def _remaining(
    report: VerifyReport, plan: RepairPlan, *, acted: bool, sync: SyncReport | None
) -> tuple[Problem, ...]:
    if not acted:
        return report.problems
    deleted = set(plan.delete)
    repaired = sync is not None and sync.ok
    failed = set() if sync is None else {f.name for f in sync.failures}
    remaining: list[Problem] = []
    for problem in report.problems:
        if problem.path in deleted:
            continue
        if repaired or (
            sync is not None and problem.project is not None and problem.project not in failed
        ):
            continue
        remaining.append(problem)
    return tuple(remaining)


# --- output --------------------------------------------------------------------------

# The order the kinds are declared in is the order they are reported in.
_KIND_ORDER: tuple[ProblemKind, ...] = get_args(ProblemKind)


def summary_line(outcome: VerifyOutcome) -> str:
    """The one line a verify ends with."""
    report = outcome.report
    counts = ", ".join(f"{report.count(kind)} {kind}" for kind in _KIND_ORDER if report.count(kind))
    verdict = "repaired" if outcome.ok and report.problems else "ok"
    line = (
        f"verify {verdict if outcome.ok else 'found problems'}: {report.projects} project(s),"
        f" {report.files} file(s) ({format_size(report.bytes_hashed, binary=True)} hashed)"
        f" in {format_timespan(report.elapsed_seconds)}: {counts or 'no problems'}"
    )
    plan = outcome.plan
    verb = "would" if outcome.dry_run else "did"
    if not plan.is_empty:
        line += (
            f"; {verb} forget {len(plan.forget)} file(s), re-sync {len(plan.resync)}"
            f" project(s), delete {len(plan.delete)} file(s)"
        )
    if outcome.sync is not None:
        line += f"; repair sync {'ok' if outcome.sync.ok else 'incomplete'}"
    return f"{line}; {len(outcome.remaining)} problem(s) remain"


def render_text(outcome: VerifyOutcome) -> str:
    """One line per problem (``kind path [project]: detail``), then the summary."""
    lines = [
        f"{p.kind} {p.path}{f' [{p.project}]' if p.project else ''}: {p.detail}"
        for p in outcome.report.problems
    ]
    lines.append(summary_line(outcome))
    return "".join(f"{line}\n" for line in lines)


def render_json(outcome: VerifyOutcome) -> str:
    """One JSON object with stable keys: ``ok``, ``projects``, ``files``,
    ``bytes_hashed``, ``seconds``, ``counts`` (per kind), ``problems`` (``kind``,
    ``path``, ``project``, ``detail``), ``dry_run``, ``plan`` (``forget``, ``resync``,
    ``rewrite_root``, ``delete``), ``deleted``, ``sync_ok`` (null without a repair
    sync) and ``remaining`` (a count)."""
    report = outcome.report
    plan = outcome.plan
    data = {
        "ok": outcome.ok,
        "projects": report.projects,
        "files": report.files,
        "bytes_hashed": report.bytes_hashed,
        "seconds": round(report.elapsed_seconds, 3),
        "counts": {kind: report.count(kind) for kind in _KIND_ORDER},
        "problems": [
            {"kind": p.kind, "path": p.path, "project": p.project, "detail": p.detail}
            for p in report.problems
        ],
        "dry_run": outcome.dry_run,
        "plan": {
            "forget": list(plan.forget),
            "resync": list(plan.resync),
            "rewrite_root": plan.rewrite_root,
            "delete": list(plan.delete),
        },
        "deleted": outcome.deleted,
        "sync_ok": None if outcome.sync is None else outcome.sync.ok,
        "remaining": len(outcome.remaining),
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
