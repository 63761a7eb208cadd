"""``mirror filters``: what the filters would keep and leave out of some projects.

Fetches each project's detail from upstream and runs the configured filters over it,
writing nothing: no lock, no state store, no files. The report is one block per
project: the files kept, then every release and file left out with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from humanfriendly import format_size
from packaging.utils import NormalizedName

from mirror.errors import ProjectNotFoundError
from mirror.filters import Drop, FilterSet
from mirror.upstream import Upstream


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the filters make of one project."""

    name: NormalizedName
    found: bool
    """False when upstream has no such project."""
    kept: tuple[str, ...]
    """Filenames kept (empty when the whole project is left out)."""
    kept_bytes: int
    drops: tuple[Drop, ...]

    @property
    def excluded(self) -> bool:
        """Whether the whole project is left out."""
        return any(d.stage in {"name", "project"} for d in self.drops)

    def lines(self) -> list[str]:
        """The report block for this project."""
        if not self.found:
            return [f"{self.name}: not found upstream"]
        if self.excluded:
            head = f"{self.name}: left out"
        else:
            size = format_size(self.kept_bytes, binary=True)
            head = f"{self.name}: keeps {len(self.kept)} file(s), {size}"
        body = [f"  keep {filename}" for filename in self.kept]
        body.extend(f"  drop {drop}" for drop in self.drops)
        return [head, *body]


async def explain(
    upstream: Upstream,
    filters: FilterSet,
    names: Sequence[NormalizedName],
    *,
    source: str = "simple",
) -> list[Verdict]:
    """Run ``filters`` over each named project as upstream has it now. A project the
    name filters leave out is not requested. Raises UpstreamError when upstream fails."""
    verdicts: list[Verdict] = []
    for name in names:
        dropped = filters.check_name(name)
        if dropped is not None:
            verdicts.append(Verdict(name=name, found=True, kept=(), kept_bytes=0, drops=(dropped,)))
            continue
        try:
            detail = await upstream.project_detail(
                name, min_serial=None, source="json" if source == "json" else "simple"
            )
        except ProjectNotFoundError:
            verdicts.append(Verdict(name=name, found=False, kept=(), kept_bytes=0, drops=()))
            continue
        outcome = filters.apply(detail)
        files = outcome.detail.files if outcome.detail is not None else ()
        verdicts.append(
            Verdict(
                name=name,
                found=True,
                kept=tuple(f.filename for f in files),
                kept_bytes=sum(f.size for f in files),
                drops=outcome.drops,
            )
        )
    return verdicts
