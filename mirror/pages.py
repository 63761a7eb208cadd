"""Writing the simple pages: a project's, and the root index from the state store.

The bytes come from ``mirror/simple.py`` (pure rendering); this module decides which
pages are out of date and writes them atomically through the storage. It never asks
upstream anything: what a page shows (the published detail, the display name) is
settled before it is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

from mirror.models import ListingRow, ProjectDetail, Serial
from mirror.simple import API_VERSION, render_project_html, render_project_json, root_pages_chunks
from mirror.state import ROOT_HTML_META_KEY, StateStore
from mirror.storage import Storage

logger = logging.getLogger(__name__)


class PageWriter:
    """Writes the pages of ``formats`` (``html``, ``json``) to ``storage``."""

    def __init__(self, *, storage: Storage, state: StateStore, formats: frozenset[str]) -> None:
        self._storage = storage
        self._state = state
        self._formats = formats

    async def write_project(self, detail: ProjectDetail, display_name: str) -> None:
        """Replace the project's pages, all in one disk step."""
        base = f"simple/{detail.name}"
        pages: list[tuple[str, bytes]] = []
        if "html" in self._formats:
            html = render_project_html(detail, display_name=display_name)
            pages += [(f"{base}/index.html", html), (f"{base}/index.v1_html", html)]
        if "json" in self._formats:
            pages.append((f"{base}/index.v1_json", render_project_json(detail)))
        await self._storage.write_files(pages)

    async def write_root(self, serial: Serial | None, *, changed: bool) -> None:
        """Rewrite the root index pages that are out of date (or missing) from the
        state store, a page of rows at a time.

        The JSON page's ``meta._last-serial`` is the newest of ``serial`` and the
        journal's last serial, so it is never below a project's ``_last-serial`` (each
        project's newest journal serial, see
        :meth:`~mirror.state.inventory.Inventory.listing_pages`).

        The JSON page carries every project's serial, so it is rewritten whenever a
        project changed (``changed``). The HTML pages only name the projects, so they
        are rewritten only when the state says the names changed (see
        :data:`ROOT_HTML_META_KEY`): at 600,000 projects that is 50 MB not written on
        most runs.
        """
        html_stale = "html" in self._formats and not await self._html_root_current()
        json_stale = "json" in self._formats and (
            changed or not await self._storage.exists("simple/index.v1_json")
        )
        if not html_stale and not json_stale:
            return
        journal = await asyncio.to_thread(self._state.journal_last_serial)
        serial = Serial(max(serial or 0, journal))
        relatives = ["simple/index.html", "simple/index.v1_html"] if html_stale else []
        if json_stale:
            relatives.append("simple/index.v1_json")
        counted = [0]

        def produce() -> Iterator[list[bytes]]:
            pages = self._state.listing_pages()
            for page_html, page_json in root_pages_chunks(_counting(pages, counted), serial=serial):
                chunks = [page_html, page_html] if html_stale else []
                if json_stale:
                    chunks.append(page_json)
                yield chunks

        await self._storage.write_generated(relatives, produce)
        if html_stale:
            await asyncio.to_thread(self._state.set_meta, ROOT_HTML_META_KEY, API_VERSION)
        logger.info("wrote the root index (%s): %d project(s)", ", ".join(relatives), counted[0])

    async def _html_root_current(self) -> bool:
        """Whether both HTML root pages are on disk and name the committed projects."""
        current = await asyncio.to_thread(self._state.get_meta, ROOT_HTML_META_KEY)
        return (
            current == API_VERSION
            and await self._storage.exists("simple/index.html")
            and await self._storage.exists("simple/index.v1_html")
        )


def _counting(pages: Iterable[list[ListingRow]], counted: list[int]) -> Iterator[list[ListingRow]]:
    """``pages`` as they are, adding up their projects in ``counted[0]``."""
    for page in pages:
        counted[0] += len(page)
        yield page
