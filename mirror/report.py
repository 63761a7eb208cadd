"""What a sync run did: the tally its parts add to, and the report it ends with.

One :class:`Tally` belongs to one run; the run hands it to the parts that count (the
fetcher, the garbage collector) when it builds them, instead of passing it through
every call. It is only touched on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.utils import NormalizedName

from mirror.filters.lockfiles import LockedFile
from mirror.models import Serial


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectFailure:
    """A project that could not be brought in step during a run."""

    name: NormalizedName
    error: str
    attempts: int
    next_attempt: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """What a run did; ``ok`` is what the exit code reports."""

    serial: Serial | None
    projects_synced: int
    projects_removed: int
    failures: tuple[ProjectFailure, ...]
    files_downloaded: int
    bytes_downloaded: int
    files_deleted: int
    pending: int
    """Projects still in the todo queue (failed ones waiting for their next attempt)."""
    elapsed_seconds: float
    upstream_serial: Serial | None = None
    """Upstream's serial as this run saw it; None for a ``--project`` run."""
    missing_locked: tuple[LockedFile, ...] = ()
    """Files the allowlist's lockfiles lock that upstream no longer lists, of the
    projects this run synced."""

    @property
    def ok(self) -> bool:
        """True when every project this run attempted is in step."""
        return not self.failures


@dataclass(slots=True)
class Tally:
    """The counters of one run."""

    synced: int = 0
    removed: int = 0
    files_downloaded: int = 0
    bytes_downloaded: int = 0
    files_deleted: int = 0
    files_derived: int = 0
    """``.metadata`` files taken from their wheel on disk instead of downloaded."""
    failures: list[ProjectFailure] = field(default_factory=list)
    locked: dict[NormalizedName, tuple[LockedFile, ...]] = field(default_factory=dict)
    """Of each synced project the lockfiles lock: the locked files upstream lacks."""
    root_dirty: bool = False
    """Whether a project changed (or the last run did not finish): the root index is
    rewritten."""

    def downloaded(self, size: int) -> None:
        """One file of ``size`` bytes downloaded and verified."""
        self.files_downloaded += 1
        self.bytes_downloaded += size

    def derived(self) -> None:
        """One ``.metadata`` file taken from its wheel."""
        self.files_derived += 1

    def deleted(self, count: int) -> None:
        """``count`` files unlinked."""
        self.files_deleted += count

    def project_done(self, *, removed: bool) -> None:
        """One project brought in step (``removed``: by removing it)."""
        if removed:
            self.removed += 1
        else:
            self.synced += 1
        self.root_dirty = True

    def checked_locks(self, name: NormalizedName, missing: tuple[LockedFile, ...]) -> None:
        """``name``'s locked files compared with upstream: ``missing`` it no longer has."""
        self.locked[name] = missing

    def failed(self, failure: ProjectFailure) -> None:
        """One project that failed."""
        self.failures.append(failure)

    def report(
        self,
        *,
        serial: Serial | None,
        pending: int,
        elapsed_seconds: float,
        upstream_serial: Serial | None,
    ) -> SyncReport:
        """The run's report, failures sorted by project."""
        return SyncReport(
            serial=serial,
            projects_synced=self.synced,
            projects_removed=self.removed,
            failures=tuple(sorted(self.failures, key=lambda f: f.name)),
            files_downloaded=self.files_downloaded,
            bytes_downloaded=self.bytes_downloaded,
            files_deleted=self.files_deleted,
            pending=pending,
            elapsed_seconds=elapsed_seconds,
            upstream_serial=upstream_serial,
            missing_locked=tuple(sorted(f for files in self.locked.values() for f in files)),
        )
