"""bandersnatch's on-disk state read without I/O: its status, todo and generation files
and its project pages, parsed from their text.

A bandersnatch (8.2, generation 5) mirror directory holds:

* ``status``: the serial of its last finished run (absent before the first one);
* ``todo``: present when a run was interrupted: the run's target serial on the first
  line, then ``<name> <serial>`` for each project it still owed;
* ``generation``: its layout version (5);
* ``web/simple/<project>/index.html`` (also ``index.v1_html``, and ``index.v1_json``
  with ``simple-format = ALL`` or ``JSON``), or ``web/simple/<p[0]>/<project>/`` with
  ``hash-index = true``; each page names the project's serial (``<!--SERIAL n-->``,
  ``meta._last-serial``) and links its files at ``../../packages/...``;
* ``web/packages/<aa>/<bb>/<rest>/<file>`` (and ``<file>.metadata``), ``web/json/<p>``
  and ``web/pypi/<p>/json`` with ``json = true``.

:func:`parse_json_page` and :func:`parse_html_page` give a :class:`ProjectDetail`
whose files carry their :class:`~mirror.layout.PackagePath` under ``web/``. The
HTML page gives no sizes: those files have ``size = -1`` (the adoption takes the size
from the disk).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin

from packaging.utils import NormalizedName

from mirror.errors import AdoptError, MirrorError
from mirror.models import (
    DistFile,
    ProjectDetail,
    Serial,
    package_path_from_url,
    versions_from_files,
)

PAGE_BASE: Final = "http://bandersnatch.invalid/simple/{name}/"
"""The URL the pages' relative links are resolved against (never fetched)."""

UNKNOWN_SIZE: Final = -1
"""The size of a file an HTML page links (the page does not say)."""

CURRENT_GENERATION: Final = 5

_SERIAL_COMMENT_RE: Final = re.compile(r"<!--\s*SERIAL\s+(\d+)\s*-->")
_TITLE_RE: Final = re.compile(r"<title>Links for (.*?)</title>", re.DOTALL)
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Todo:
    """An interrupted run's ``todo`` file."""

    target_serial: Serial
    projects: dict[str, Serial]
    """``{name as written: serial}`` still owed."""


def parse_serial(text: str, *, what: str) -> Serial:
    """``status`` (or ``generation``): one whole number."""
    stripped = text.strip()
    if not stripped.isdigit():
        raise AdoptError(f"{what}: expected a whole number, got {stripped[:40]!r}")
    return Serial(int(stripped))


def parse_todo(text: str) -> Todo:
    """The ``todo`` file: the target serial, then ``name serial`` lines."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or not lines[0]:
        raise AdoptError("todo: empty")
    target = parse_serial(lines[0], what="todo (first line)")
    projects: dict[str, Serial] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        name, _, serial = line.rpartition(" ")
        if not name or not serial.isdigit():
            raise AdoptError(f"todo, line {number}: expected `name serial`, got {line!r}")
        projects[name.strip()] = Serial(int(serial))
    return Todo(target_serial=target, projects=projects)


def parse_json_page(text: str, *, name: NormalizedName) -> ProjectDetail:
    """A bandersnatch ``index.v1_json`` page (PEP 691, its ``_last-serial`` a string,
    empty ``upload-time`` and ``requires-python`` for unknown ones)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AdoptError(f"simple/{name}/index.v1_json: not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise AdoptError(f"simple/{name}/index.v1_json: not a PEP 691 project page")
    meta = data.get("meta")
    serial: int | None = None
    if isinstance(meta, dict):
        raw = meta.pop("_last-serial", None)
        serial = int(raw) if isinstance(raw, (int, str)) and str(raw).isdigit() else None
    for node in data["files"]:
        if isinstance(node, dict):
            for key in ("upload-time", "requires-python"):
                if node.get(key) == "":
                    del node[key]
    try:
        return ProjectDetail.from_simple_json(
            data, name=name, page_url=PAGE_BASE.format(name=name), serial=Serial(serial or 0)
        )
    except MirrorError as exc:
        raise AdoptError(f"simple/{name}/index.v1_json: {exc}") from exc


def page_title(text: str) -> str | None:
    """The display name an ``index.html`` page's title gives (``Links for <name>``)."""
    title = _TITLE_RE.search(text)
    return unescape(title.group(1).strip()) or None if title else None


def parse_html_page(text: str, *, name: NormalizedName) -> ProjectDetail:
    """A bandersnatch ``index.html`` page: its detail (sizes unknown)."""
    parser = _Links()
    parser.feed(text)
    parser.close()
    page = PAGE_BASE.format(name=name)
    files: list[DistFile] = []
    for attrs, filename in parser.links:
        href = attrs.get("href") or ""
        url, _, fragment = href.partition("#")
        algorithm, _, digest = fragment.partition("=")
        if algorithm != "sha256" or not _SHA256_RE.fullmatch(digest):
            raise AdoptError(
                f"simple/{name}/index.html: {filename}: no sha256 in its link ({href!r})"
            )
        metadata = attrs.get("data-core-metadata") or attrs.get("data-dist-info-metadata")
        core_sha = None
        if metadata and metadata.startswith("sha256="):
            core_sha = metadata.removeprefix("sha256=")
        yanked = attrs.get("data-yanked")
        try:
            absolute = urljoin(page, url)
            files.append(
                DistFile(
                    filename=filename,
                    url=absolute,
                    path=package_path_from_url(absolute, filename=filename),
                    sha256=digest,
                    size=UNKNOWN_SIZE,
                    requires_python=attrs.get("data-requires-python") or None,
                    yanked=yanked is not None,
                    yanked_reason=yanked or "",
                    core_metadata=metadata is not None and metadata != "false",
                    core_metadata_sha256=core_sha,
                )
            )
        except MirrorError as exc:
            raise AdoptError(f"simple/{name}/index.html: {exc}") from exc
    serials = _SERIAL_COMMENT_RE.findall(text)
    return ProjectDetail(
        name=name,
        serial=Serial(int(serials[-1]) if serials else 0),
        files=tuple(files),
        versions=versions_from_files(files),
    )


class _Links(HTMLParser):
    """The ``<a>`` elements of a page: their attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = dict(attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append((self._open, "".join(self._text).strip()))
            self._open = None
