"""``mirror adopt``: a bandersnatch mirror taken over in place, without downloading.

bandersnatch's directory already has mirror's layout of files (``web/packages/...``)
and nearly its pages. The adoption reads bandersnatch's state (:func:`read_tree`),
then, a chunk of projects at a time in name order:

1. reads each project's page (``index.v1_json`` where present, else ``index.html``);
2. checks every file the page links once, in a pool of threads off the event loop:
   present, of the page's size, and (unless ``trust_sizes``) of the page's sha256;
   its ``.metadata`` sidecar likewise;
3. records the intact files in the state store, rewrites the project's pages in
   mirror's format linking only those files, and commits the project at the page's
   serial. A project with a missing or corrupt file is queued: the next ``mirror
   sync`` downloads what is missing (an intact file is never downloaded again: its
   row is in step);
4. remembers the chunk's last name in the state store (:data:`ADOPT_PROGRESS_KEY`),
   so an interrupted adoption resumes after it.

Pages are only ever replaced by pages linking files already checked, so the web server
in front of the directory never serves a page linking a missing file because of the
adoption. Then the files no page links (``web/packages``) go to the garbage table
(the next sync collects them, after adopting any it still wants), the root index is
written from the state, and the mirror serial becomes bandersnatch's (``status``),
with the projects an interrupted run still owed (``todo``) queued. The next sync also
reads upstream's full listing once (:data:`ADOPT_RECONCILE_KEY`): projects
bandersnatch never removed are removed, and projects whose page is older than
upstream's serial are brought in step.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from packaging.utils import NormalizedName, canonicalize_name

from mirror.bandersnatchstate import (
    CURRENT_GENERATION,
    UNKNOWN_SIZE,
    Todo,
    page_title,
    parse_html_page,
    parse_json_page,
    parse_serial,
    parse_todo,
)
from mirror.errors import AdoptError, MirrorError
from mirror.layout import PackagePath, is_safe_component, package_path
from mirror.models import DistFile, ProjectDetail, Serial
from mirror.pages import PageWriter
from mirror.progress import NoProgress, ProgressSink
from mirror.project import history_entry
from mirror.state import ADOPT_PROGRESS_KEY, ADOPT_RECONCILE_KEY, StateStore, StoredFile

logger = logging.getLogger(__name__)

DONE: Final = "\x00done"
"""The value of :data:`ADOPT_PROGRESS_KEY` once an adoption finished."""

_CHUNK_PROJECTS: Final = 64
_READ_BYTES: Final = 1 << 20
_SEQUENTIAL: Final[int | None] = getattr(os, "POSIX_FADV_SEQUENTIAL", None)

Outcome = Literal["ok", "missing", "corrupt"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """What bandersnatch left in its directory."""

    directory: Path
    status_serial: Serial | None
    """``status``: its last finished run's serial; None before the first."""
    todo: Todo | None
    """``todo``: an interrupted run's."""
    generation: int | None
    projects: tuple[tuple[NormalizedName, str], ...]
    """Each project and its page directory below ``web/simple`` (``alpha``, or
    ``a/alpha`` with ``hash-index``), in name order: strings, not paths (600,000 of
    them for all of PyPI)."""
    hash_index: bool = False

    @property
    def web(self) -> Path:
        return self.directory / "web"


@dataclass(slots=True, kw_only=True)
class AdoptReport:
    """What an adoption found and did."""

    projects: int = 0
    """Projects adopted (this run; a resumed one counts only its own)."""
    files_adopted: int = 0
    bytes_adopted: int = 0
    bytes_hashed: int = 0
    missing: list[PackagePath] = field(default_factory=list)
    corrupt: list[PackagePath] = field(default_factory=list)
    orphaned: int = 0
    unreadable: list[NormalizedName] = field(default_factory=list)
    """Projects whose page did not parse: queued for a sync."""
    queued: int = 0
    """Projects queued for the next sync (missing files, unreadable pages, todo)."""
    serial: Serial | None = None
    seconds: float = 0.0
    resumed_after: str | None = None
    json_copies: int = 0
    """bandersnatch's ``web/json/<p>`` copies found (left as they are)."""

    def summary(self) -> str:
        rate = self.bytes_hashed / self.seconds / 1e9 if self.seconds > 0 else 0.0
        return (
            f"adopted {self.projects} project(s): {self.files_adopted} file(s) adopted "
            f"({self.bytes_adopted} bytes), {len(self.missing)} missing, "
            f"{len(self.corrupt)} corrupt, {self.orphaned} orphaned, "
            f"{len(self.unreadable)} unreadable page(s); {self.queued} project(s) queued "
            f"for the next sync; serial {self.serial}; {self.seconds:.1f} s, "
            f"{rate:.2f} GB/s hashed"
        )


def read_tree(directory: Path, *, hash_index: bool) -> Tree:
    """bandersnatch's ``status``, ``todo``, ``generation`` and project directories
    (blocking I/O). Raises AdoptError for malformed files or an unknown generation."""
    status = _read_optional(directory / "status")
    todo_text = _read_optional(directory / "todo")
    generation_text = _read_optional(directory / "generation")
    generation = (
        None if generation_text is None else parse_serial(generation_text, what="generation")
    )
    if generation is not None and generation != CURRENT_GENERATION:
        raise AdoptError(
            f"{directory / 'generation'}: generation {generation}; run bandersnatch 8.2 "
            f"once to bring the mirror to generation {CURRENT_GENERATION}"
        )
    simple = directory / "web" / "simple"
    found: dict[NormalizedName, str] = {}
    pages = _directories(simple)
    if hash_index:
        pages = [f"{outer}/{inner}" for outer in pages for inner in _directories(simple / outer)]
    for where in pages:
        name = where.rpartition("/")[2]
        key = canonicalize_name(name)
        # A legacy directory under the raw name (bandersnatch before `cleanup`) gives
        # way to the normalized one.
        if key not in found or name == key:
            found[key] = where
    return Tree(
        directory=directory,
        status_serial=None if status is None else parse_serial(status, what="status"),
        todo=None if not todo_text else parse_todo(todo_text),
        generation=generation,
        projects=tuple(sorted(found.items())),
        hash_index=hash_index,
    )


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdoptError(f"cannot read {path}: {exc}") from exc


def _directories(parent: Path) -> list[str]:
    """The names of the directories in ``parent`` (none when it is missing)."""
    try:
        with os.scandir(parent) as entries:
            return [e.name for e in entries if e.is_dir() and is_safe_component(e.name)]
    except FileNotFoundError:
        return []


@dataclass(frozen=True, slots=True, kw_only=True)
class _Page:
    """One project's page as adoption reads it."""

    name: NormalizedName
    detail: ProjectDetail | None
    """None when the page did not parse (or is absent)."""
    display_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Checked:
    """One linked file after its check."""

    dist: DistFile
    outcome: Outcome
    size: int
    hashed: int
    metadata: tuple[str, int] | None
    """The sidecar's sha256 and size when it is present and in step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Started:
    """A chunk whose pages are read and whose files are being checked."""

    last: NormalizedName
    pages: list[tuple[_Page, list[asyncio.Future[_Checked]]]]


class Adoption:
    """One adoption of ``tree`` into ``state``, pages written through ``pages``."""

    def __init__(
        self,
        *,
        tree: Tree,
        state: StateStore,
        pages: PageWriter,
        trust_sizes: bool = False,
        threads: int = 4,
        progress: ProgressSink | None = None,
    ) -> None:
        self._tree = tree
        self._state = state
        self._pages = pages
        self._trust_sizes = trust_sizes
        self._threads = threads
        self._progress = progress or NoProgress()
        self._report = AdoptReport()
        self._requeue: dict[NormalizedName, Serial] = {}

    async def run(self) -> AdoptReport:
        """Adopt every project not adopted yet, then the rest of the state."""
        started = time.monotonic()
        report = self._report
        after = await asyncio.to_thread(self._state.get_meta, ADOPT_PROGRESS_KEY)
        if after == DONE:
            raise AdoptError(f"{self._tree.directory} was adopted already; run `mirror sync`")
        report.resumed_after = after or None
        todo = [(n, p) for n, p in self._tree.projects if not after or n > after]
        if after:
            logger.info("resuming the adoption after %s: %d project(s) left", after, len(todo))
        self._progress.start(len(todo))
        try:
            with ThreadPoolExecutor(self._threads, thread_name_prefix="adopt") as pool:
                # Two chunks in flight: the next one's files are hashing while this
                # one's projects are committed, so no thread waits at a chunk's end.
                pending: _Started | None = None
                for chunk in _chunks(todo, _CHUNK_PROJECTS):
                    begun = await self._start_chunk(chunk, pool)
                    if pending is not None:
                        await self._finish_chunk(pending)
                    pending = begun
                if pending is not None:
                    await self._finish_chunk(pending)
        finally:
            self._progress.finish()
        report.orphaned = await asyncio.to_thread(self._note_orphans)
        report.json_copies = await asyncio.to_thread(_count_files, self._tree.web / "json")
        await asyncio.to_thread(self._settle)
        await self._pages.write_root(report.serial, changed=True)
        await asyncio.to_thread(self._state.set_meta, ADOPT_PROGRESS_KEY, DONE)
        report.seconds = time.monotonic() - started
        return report

    async def _start_chunk(
        self, chunk: Sequence[tuple[NormalizedName, str]], pool: ThreadPoolExecutor
    ) -> _Started:
        """Read the chunk's pages and set every file they link hashing in ``pool``."""
        loop = asyncio.get_running_loop()
        simple = self._tree.web / "simple"
        pages = await asyncio.gather(
            *(loop.run_in_executor(pool, _read_page, name, simple / where) for name, where in chunk)
        )
        checks = [
            [
                loop.run_in_executor(pool, self._check, dist)
                for dist in (page.detail.files if page.detail is not None else ())
            ]
            for page in pages
        ]
        return _Started(last=chunk[-1][0], pages=list(zip(pages, checks, strict=True)))

    async def _finish_chunk(self, started: _Started) -> None:
        """Commit the chunk's projects as their checks end, then remember the chunk."""
        for page, futures in started.pages:
            checked = list(await asyncio.gather(*futures))
            await self._commit(page, checked)
            self._progress.bytes_downloaded(sum(check.hashed for check in checked))
            self._progress.project_done(ok=page.detail is not None)
        await asyncio.to_thread(self._state.set_meta, ADOPT_PROGRESS_KEY, started.last)

    def _check(self, dist: DistFile) -> _Checked:
        """Check one linked file (in a pool thread)."""
        path = self._tree.web / dist.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return _Checked(dist=dist, outcome="missing", size=0, hashed=0, metadata=None)
        if dist.size not in {UNKNOWN_SIZE, size}:
            return _Checked(dist=dist, outcome="corrupt", size=size, hashed=0, metadata=None)
        hashed = 0
        if not self._trust_sizes:
            digest, hashed = _sha256(path)
            if digest != dist.sha256:
                return _Checked(
                    dist=dist, outcome="corrupt", size=size, hashed=hashed, metadata=None
                )
        metadata = None
        if dist.core_metadata:
            metadata = _metadata(path, dist.core_metadata_sha256)
        return _Checked(dist=dist, outcome="ok", size=size, hashed=hashed, metadata=metadata)

    async def _commit(self, page: _Page, checked: list[_Checked]) -> None:
        """Record the project's intact files, write its pages, commit it."""
        report = self._report
        name = page.name
        if page.detail is None:
            report.unreadable.append(name)
            self._requeue[name] = Serial(0)
            return
        kept: list[DistFile] = []
        stored: list[StoredFile] = []
        for check in checked:
            report.bytes_hashed += check.hashed
            if check.outcome == "missing":
                report.missing.append(check.dist.path)
                continue
            if check.outcome == "corrupt":
                report.corrupt.append(check.dist.path)
                continue
            dist = replace(
                check.dist,
                size=check.size,
                core_metadata=check.metadata is not None,
                core_metadata_sha256=None if check.metadata is None else check.metadata[0],
            )
            kept.append(dist)
            stored.append(
                StoredFile(
                    path=dist.path,
                    project=name,
                    filename=dist.filename,
                    size=dist.size,
                    sha256=dist.sha256,
                    metadata_sha256=None if check.metadata is None else check.metadata[0],
                    metadata_size=None if check.metadata is None else check.metadata[1],
                )
            )
            report.files_adopted += 1
            report.bytes_adopted += dist.size
        if any(c.outcome != "ok" or (c.dist.core_metadata and c.metadata is None) for c in checked):
            self._requeue[name] = page.detail.serial
        detail = replace(page.detail, files=tuple(kept))
        await asyncio.to_thread(self._state.record_files, stored)
        await self._pages.write_project(detail, page.display_name)
        await asyncio.to_thread(
            lambda: self._state.commit_project(
                name=name,
                display_name=page.display_name,
                serial=detail.serial,
                status=detail.status.status,
                delete=(),
                kept=[history_entry(dist) for dist in kept],
            )
        )
        report.projects += 1

    def _note_orphans(self) -> int:
        """Put the files under ``web/packages`` that no row owns in the garbage table
        (blocking): the next sync collects them after adopting any it wants."""
        orphans: list[PackagePath] = []
        for relative in _walk(self._tree.web, "packages"):
            if self._owned(relative):
                continue
            orphans.append(relative)
        self._state.expect_files(orphans)
        if orphans:
            logger.info(
                "%d file(s) under packages/ that no page links: collected by the next sync",
                len(orphans),
            )
        return len(orphans)

    def _owned(self, relative: PackagePath) -> bool:
        if self._state.file(relative) is not None:
            return True
        if relative.endswith(".metadata"):
            base = self._state.file(PackagePath(relative.removesuffix(".metadata")))
            return base is not None and base.metadata_sha256 is not None
        return False

    def _settle(self) -> None:
        """The mirror serial and the queue (blocking): bandersnatch's serial, the
        projects its interrupted run still owed and those adoption could not finish;
        and the reconciliation the next sync owes."""
        tree, report = self._tree, self._report
        queued = dict(self._requeue)
        if tree.todo is not None:
            for raw, serial in tree.todo.projects.items():
                key = canonicalize_name(raw)
                queued[key] = Serial(max(serial, queued.get(key, Serial(0))))
        report.queued = len(queued)
        report.serial = tree.status_serial
        self._state.enqueue(queued, mirror_serial=tree.status_serial, now=time.time())
        if tree.status_serial is not None:
            self._state.set_meta(ADOPT_RECONCILE_KEY, str(int(tree.status_serial)))


def _read_page(name: NormalizedName, where: Path) -> _Page:
    """A project's page (blocking): its JSON page where there is one, else its HTML
    page (whose title gives the display name the JSON page lacks)."""
    html = _read_optional(where / "index.html")
    text = _read_optional(where / "index.v1_json")
    display = (page_title(html) if html is not None else None) or name
    detail: ProjectDetail | None = None
    try:
        if text is not None:
            detail = parse_json_page(text, name=name)
        elif html is not None:
            detail = parse_html_page(html, name=name)
    except MirrorError as exc:
        logger.warning("%s: %s; the project is queued for a sync", where, exc)
        detail = None
    return _Page(name=name, detail=detail, display_name=display)


def _sha256(path: Path) -> tuple[str, int]:
    """The file's sha256 and its length, read once."""
    digest = hashlib.sha256()
    read = 0
    with path.open("rb", buffering=0) as handle:
        if _SEQUENTIAL is not None:
            # A larger read-ahead keeps the disk busy while a block is hashed.
            os.posix_fadvise(handle.fileno(), 0, 0, _SEQUENTIAL)
        while chunk := handle.read(_READ_BYTES):
            digest.update(chunk)
            read += len(chunk)
    return digest.hexdigest(), read


def _metadata(path: Path, expected: str | None) -> tuple[str, int] | None:
    sidecar = path.with_name(path.name + ".metadata")
    try:
        data = sidecar.read_bytes()
    except FileNotFoundError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    if expected is not None and digest != expected:
        return None
    return digest, len(data)


def _walk(web: Path, top: str) -> Iterator[PackagePath]:
    """Every file under ``web/top`` as a PackagePath (names mirror would never
    write are skipped with a warning)."""
    for root, _dirs, files in os.walk(web / top):
        for filename in files:
            relative = Path(root, filename).relative_to(web).as_posix()
            try:
                yield package_path(relative)
            except MirrorError:
                logger.warning("left alone: %s (not a path mirror writes)", relative)


def _count_files(top: Path) -> int:
    return sum(len(files) for _root, _dirs, files in os.walk(top))


def _chunks(
    items: Sequence[tuple[NormalizedName, str]], size: int
) -> Iterable[Sequence[tuple[NormalizedName, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
