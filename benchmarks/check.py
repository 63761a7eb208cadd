"""Is a mirror's served tree correct? Compared with what upstream publishes now.

Reads ``web/simple/<project>/index.v1_json`` (both mirrors write it) and the file
names under ``web/packages/``. A correct tree has a page for every live project that
lists exactly its live files with the right yanked flags, no page for a removed
project, every live file on disk and no file that upstream no longer publishes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeCheck:
    """Counts of what is wrong; all zero for a correct tree."""

    missing_pages: int
    wrong_pages: int
    stale_pages: int
    missing_files: int
    leftover_files: int

    @property
    def correct(self) -> bool:
        """True when nothing is wrong."""
        return not (
            self.missing_pages
            or self.wrong_pages
            or self.stale_pages
            or self.missing_files
            or self.leftover_files
        )

    def describe(self) -> str:
        """One line for the table's notes."""
        if self.correct:
            return "correct"
        return (
            f"missing pages {self.missing_pages}, wrong pages {self.wrong_pages}, "
            f"stale pages {self.stale_pages}, missing files {self.missing_files}, "
            f"leftover files {self.leftover_files}"
        )


def _page_files(page: Path) -> dict[str, bool]:
    data = json.loads(page.read_bytes())
    return {str(f["filename"]): bool(f.get("yanked")) for f in data["files"]}


def check_tree(web: Path, expected: Mapping[str, Mapping[str, bool]]) -> TreeCheck:
    """Compare ``web`` with ``expected`` (``{project: {filename: yanked}}``)."""
    simple = web / "simple"
    missing_pages = wrong_pages = stale_pages = 0
    for name, files in expected.items():
        page = simple / name / "index.v1_json"
        if not page.is_file():
            missing_pages += 1
        elif _page_files(page) != dict(files):
            wrong_pages += 1
    if simple.is_dir():
        for entry in os.scandir(simple):
            if entry.is_dir() and entry.name not in expected:
                stale_pages += 1
    on_disk: set[str] = set()
    for _, _, filenames in os.walk(web / "packages"):
        on_disk.update(f for f in filenames if not f.endswith(".metadata"))
    wanted = {filename for files in expected.values() for filename in files}
    return TreeCheck(
        missing_pages=missing_pages,
        wrong_pages=wrong_pages,
        stale_pages=stale_pages,
        missing_files=len(wanted - on_disk),
        leftover_files=len(on_disk - wanted),
    )
