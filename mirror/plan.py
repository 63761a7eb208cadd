"""What one project's sync does, decided without I/O: a frozen :class:`ProjectPlan`.

From what upstream says about the project (after the filters) and what the state
store has recorded of it, :func:`plan_project` decides which files to fetch (and of
those, which may already be on disk to adopt, and whose ``.metadata`` may be derived
from the wheel), what the pages publish, which recorded files they keep and which
the commit deletes. The run carries the plan out (``mirror/fetch.py`` for the
downloads) and plans again from the inventory the downloads leave: the second plan
fetches nothing (but a provenance that could not be had, tried again by the next
sync of the project) and says what to publish, keep and delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from packaging.utils import NormalizedName

from mirror.models import DistFile, PackagePath, ProjectDetail, versions_from_files

QUARANTINED = "quarantined"
"""The PEP 792 status whose project publishes no file, whatever the cooldown."""


class Recorded(Protocol):
    """What the plan reads of a file the state store has recorded (a ``StoredFile``)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def metadata_sha256(self) -> str | None: ...

    @property
    def metadata_size(self) -> int | None: ...

    @property
    def provenance_sha256(self) -> str | None: ...

    @property
    def provenance_size(self) -> int | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFetch:
    """One file to bring onto the disk, or only its ``.metadata``."""

    dist: DistFile
    recorded: Recorded | None
    """The file's row when the file itself is recorded as upstream has it: only its
    ``.metadata`` or its provenance is missing. None: the file is adopted from the
    disk or downloaded (and the stale temps of its directory removed)."""
    derive_metadata: bool
    """A wheel whose ``.metadata`` hash upstream advertises: the sidecar may be taken
    from the wheel (its ``METADATA``, when it hashes right) instead of downloaded."""

    @property
    def fetch_metadata(self) -> bool:
        """Whether the file's PEP 658 ``.metadata`` is mirrored too."""
        return self.dist.core_metadata

    @property
    def fetch_provenance(self) -> bool:
        """Whether the file's PEP 740 provenance is mirrored too (upstream links one)."""
        return bool(self.dist.provenance)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectPlan:
    """What one sync of a project does, in order: fetch, publish, commit, delete."""

    name: NormalizedName
    fetch: tuple[FileFetch, ...]
    """Files (or sidecars) to bring onto the disk, in upstream's order."""
    publish: ProjectDetail
    """The detail the pages show: only files recorded as upstream has them, each
    advertising the ``.metadata`` hash the mirror verified itself, and linking its
    provenance copy only when the mirror holds one."""
    held: tuple[DistFile, ...]
    """Recorded files the cooldown holds back: on disk, kept, not yet published (each
    advertising the ``.metadata`` hash the mirror verified, as ``publish``'s)."""
    keep: frozenset[PackagePath]
    """Recorded files the pages link, and those held back."""
    delete: frozenset[PackagePath]
    """Recorded files the pages no longer link: the commit drops their rows and the
    run unlinks them. Acted on only in a plan that fetches nothing (the one made
    from the inventory the downloads left): before, a file being replaced is here."""
    display_name: str | None
    """The project's name as its author spells it, when known without asking
    upstream again (None: the run asks the JSON API before writing pages)."""

    @property
    def adopt(self) -> tuple[DistFile, ...]:
        """Files to fetch that are not recorded: a matching file found on disk (left
        by a killed run, or a bandersnatch tree) is adopted instead of downloaded."""
        return tuple(f.dist for f in self.fetch if f.recorded is None)

    @property
    def expected(self) -> tuple[PackagePath, ...]:
        """Paths the fetch may write, noted as garbage before it starts so that a
        killed run's leftovers are found."""
        paths = [f.dist.path for f in self.fetch]
        paths += [f.dist.metadata_path for f in self.fetch if f.fetch_metadata]
        paths += [f.dist.provenance_path for f in self.fetch if f.fetch_provenance]
        return tuple(paths)


def plan_project(
    detail: ProjectDetail,
    recorded: Mapping[PackagePath, Recorded],
    *,
    queued_display_name: str | None = None,
    recorded_display_name: str | None = None,
    uploaded_before: datetime | None = None,
) -> ProjectPlan:
    """The plan for ``detail`` (filtered) against the project's ``recorded`` files.

    ``queued_display_name`` is the name the change source gave (a listing),
    ``recorded_display_name`` the committed one; upstream's own comes first.
    ``uploaded_before`` is the cooldown's line (now less the cooldown; None: no
    cooldown): a file uploaded after it is fetched but held back, not published, and
    the versions only it brings are left out of the page. A file without an upload
    time is published at once. A quarantined project (PEP 792) fetches and publishes
    nothing, whatever the cooldown: its recorded files are all deleted.
    """
    fetch: list[FileFetch] = []
    published: list[DistFile] = []
    held: list[DistFile] = []
    files = () if detail.status.status == QUARANTINED else detail.files
    for dist in files:
        known = recorded.get(dist.path)
        in_step = known is not None and known.sha256 == dist.sha256
        if not in_step or (
            known is not None
            and (
                (dist.core_metadata and known.metadata_sha256 is None)
                or (bool(dist.provenance) and known.provenance_sha256 is None)
            )
        ):
            fetch.append(
                FileFetch(
                    dist=dist,
                    recorded=known if in_step else None,
                    derive_metadata=dist.core_metadata_sha256 is not None
                    and dist.filename.endswith(".whl"),
                )
            )
        if in_step:
            assert known is not None
            verified = replace(
                dist,
                core_metadata=known.metadata_sha256 is not None,
                core_metadata_sha256=known.metadata_sha256,
                provenance_kept=known.provenance_sha256 is not None,
            )
            due = (
                uploaded_before is None
                or dist.upload_time is None
                or dist.upload_time <= uploaded_before
            )
            (published if due else held).append(verified)
    keep = frozenset(f.path for f in published) | {f.path for f in held}
    versions = detail.versions
    if held:
        # A version whose every file is held back is not on the page yet.
        unpublished = set(versions_from_files(held)) - set(versions_from_files(published))
        versions = tuple(v for v in versions if v not in unpublished)
    return ProjectPlan(
        name=detail.name,
        fetch=tuple(fetch),
        publish=replace(detail, files=tuple(published), versions=versions),
        held=tuple(held),
        keep=keep,
        delete=frozenset(recorded.keys() - keep),
        display_name=detail.display_name or queued_display_name or recorded_display_name or None,
    )
