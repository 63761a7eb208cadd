"""The frozen records the state store hands out and takes in: a stored file, a
committed project, a todo item, the totals, a finished run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from packaging.utils import NormalizedName

from mirror.models import PackagePath, Serial


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """A distribution file verified on disk, and its PEP 658 ``.metadata`` sidecar.

    ``metadata_sha256`` and ``metadata_size`` are set together, when the sidecar
    (``<path>.metadata``) is on disk and verified, and are both None otherwise.
    """

    path: PackagePath
    project: NormalizedName
    filename: str
    size: int
    sha256: str
    metadata_sha256: str | None = None
    metadata_size: int | None = None
    provenance_sha256: str | None = None
    """The PEP 740 provenance copy (``<path>.provenance``), with ``provenance_size``:
    both set when it is on disk and verified, both None otherwise."""
    provenance_size: int | None = None

    def __post_init__(self) -> None:
        if (self.metadata_sha256 is None) != (self.metadata_size is None):
            raise ValueError(f"{self.path}: metadata_sha256 and metadata_size must be set together")
        if (self.provenance_sha256 is None) != (self.provenance_size is None):
            raise ValueError(
                f"{self.path}: provenance_sha256 and provenance_size must be set together"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectRow:
    """A committed project."""

    name: NormalizedName
    display_name: str
    serial: Serial
    status: str
    """PEP 792 status: ``active`` unless upstream says otherwise."""
    file_count: int
    """Distribution files (``.metadata`` sidecars not counted)."""
    total_bytes: int
    """Bytes of the files and their ``.metadata`` sidecars."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TodoItem:
    """A project the mirror still has to bring up to ``serial``."""

    name: NormalizedName
    serial: Serial
    """The serial the project must reach."""
    display_name: str | None
    """The display name, when the change source knew it (a listing); else None."""
    attempts: int
    """Failed attempts so far."""
    next_attempt: float
    """Unix time before which the project is not retried."""
    last_error: str | None
    gone: bool = False
    """Upstream confirmed the project removed (a changelog row, or the full listing
    no longer has it): a 404 then removes it. Unconfirmed, a 404 is taken for a
    CDN's mistake and the project stays, queued (see :mod:`mirror.project`)."""

    @classmethod
    def fresh(cls, name: NormalizedName) -> Self:
        """An item for ``name`` named explicitly rather than read from the queue: due at
        once, never tried, with no serial to reach (``Serial(0)``: whatever upstream
        serves now)."""
        return cls(
            name=name,
            serial=Serial(0),
            display_name=None,
            attempts=0,
            next_attempt=0.0,
            last_error=None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """What the committed projects add up to."""

    projects: int
    files: int
    bytes: int
    """Bytes of the files and their ``.metadata`` sidecars."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One finished sync run: what it did, and the mirror's size when it ended."""

    started: float
    """Unix time the run started."""
    finished: float
    """Unix time the run ended."""
    ok: bool
    """True when every project the run attempted is in step."""
    projects_synced: int
    projects_removed: int
    projects_failed: int
    files_downloaded: int
    bytes_downloaded: int
    files_deleted: int
    serial: Serial | None
    """The mirror serial at the end of the run."""
    upstream_serial: Serial | None
    """Upstream's serial as the run saw it; None when the run did not ask
    (``--project`` runs)."""
    totals: Totals
    """The committed projects' totals at the end of the run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryFile:
    """A file in the state store's history: what a past (snapshot) view lists of it,
    and when it was mirrored and removed. Times are Unix seconds."""

    path: PackagePath
    project: NormalizedName
    filename: str
    size: int
    sha256: str
    metadata_sha256: str | None
    requires_python: str | None
    yanked: str | None
    """None when not yanked, else the PEP 592 reason (``""`` for none): the yank state
    the mirror last saw, not the one of the past moment."""
    provenance: str | None
    upload_time: float | None
    """Upstream's upload time (PEP 700); None when upstream gave none."""
    mirrored_at: float
    """When the mirror first committed the file."""
    mirrored_serial: Serial
    """The project's serial at that commit."""
    removed_at: float | None
    """When a commit dropped the file (None: still mirrored)."""
    removed_serial: Serial | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Moment:
    """The moment a past view shows: a Unix time or a mirror serial (one of the two),
    as seen at ``now`` under a ``cooldown`` (seconds) and ``keep_removed`` (seconds)."""

    at: float | None = None
    serial: Serial | None = None
    now: float
    cooldown: float = 0.0
    keep_removed: float = 0.0

    def __post_init__(self) -> None:
        if (self.at is None) == (self.serial is None):
            raise ValueError("a moment is a time or a serial, exactly one of the two")


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusion:
    """A project ``mirror delete`` took out of the mirror and keeps out."""

    name: NormalizedName
    display_name: str
    since: float
    """Unix time of the deletion."""
    reason: str
