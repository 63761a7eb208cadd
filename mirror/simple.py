"""Render the mirror's simple pages: PEP 503 HTML and PEP 691 JSON, project and root.

Pure functions from the records in :mod:`mirror.models` to the exact bytes the mirror
writes below ``web/simple/``; no I/O. The HTML reproduces Warehouse's frozen (PEP 833)
templates byte for byte, the JSON its serialization (compact, sorted keys, UTF-8, a
trailing newline), with these deliberate differences:

- File URLs are relative to the page at ``simple/<name>/`` (``../../packages/...``), so
  the tree can be served under any prefix, and every path component is percent-encoded
  exactly as pip re-quotes it (only RFC 3986 unreserved characters stay raw), so the
  page, pip's request and uv's decoded filename agree for ``+``, ``!`` and non-ASCII.
- Root links are relative (``<name>/``) for the same reason.
- A PEP 792 status reason is published (``pypi:project-status-reason`` meta and
  ``project-status.reason``) when one is set; Warehouse never sets one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring
from urllib.parse import quote

from packaging.version import Version

from mirror.models import (
    DistFile,
    ListedProject,
    ListingRow,
    ProjectDetail,
    Serial,
    format_upload_time,
    version_sort_key,
)

API_VERSION = "1.4"
"""The simple API version both formats declare (PEP 629; HTML is frozen at 1.4 by PEP 833)."""

_JSON_SEPARATORS = (",", ":")


FILES_BASE = "../../"
"""Where file URLs start, relative to a live project page at ``simple/<name>/``."""


def render_project_html(
    detail: ProjectDetail, *, display_name: str, files_base: str = FILES_BASE
) -> bytes:
    """Render a project's PEP 503 page as UTF-8 bytes, Warehouse's markup exactly.

    One anchor per file, in ``detail.files`` order, each carrying the sha256 fragment
    and the PEP 503/592/658/714/740 attributes; ``data-yanked`` always has a value
    (``""`` without a reason), because pip ignores the bare attribute. The
    ``pypi:project-status`` meta is always present (PEP 792). There is no final newline
    after the ``<!--SERIAL n-->`` comment. ``files_base`` is the way from the page up
    to the directory holding ``packages/`` (deeper for a snapshot view's page).
    """
    title = _escape(display_name)
    status = f'<meta name="pypi:project-status" content="{_escape(detail.status.status)}">'
    if detail.status.reason:
        reason = _escape(detail.status.reason)
        status += f'<meta name="pypi:project-status-reason" content="{reason}">'
    head = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        # Warehouse's template glues the status meta to the title line (trim_blocks).
        f"{status}    <title>Links for {title}</title>\n"
        "  </head>\n"
        "  <body>\n"
        f"    <h1>Links for {title}</h1>\n"
    )
    tail = f"</body>\n</html>\n<!--SERIAL {detail.serial}-->"
    anchors = "".join(_anchor(dist, files_base) for dist in detail.files)
    return f"{head}{anchors}{tail}".encode()


def render_project_json(detail: ProjectDetail, *, files_base: str = FILES_BASE) -> bytes:
    """Render a project's PEP 691 page (with PEP 700, 714, 740 and 792 fields).

    Each file has exactly the keys Warehouse sends, including its legacy
    ``data-dist-info-metadata`` and never ``dist-info-metadata`` (which crashes pip
    22.3-23.1); ``upload-time`` is left out when unknown. ``name`` is the normalized
    name. ``versions`` (PEP 700) is ``detail.versions`` without duplicates in PEP 440
    order, legacy versions first (:func:`~mirror.models.version_sort_key`), ties broken
    by the string so the bytes never depend on input order or hash seed.
    """
    status: dict[str, str] = {"status": detail.status.status}
    if detail.status.reason:
        status["reason"] = detail.status.reason
    page = {
        "files": [_file_json(dist, files_base) for dist in detail.files],
        "meta": {"_last-serial": detail.serial, "api-version": API_VERSION},
        "name": detail.name,
        "project-status": status,
        "versions": sorted(set(detail.versions), key=_version_order),
    }
    return _dump_json(page)


def render_root_html(projects: Iterable[ListedProject]) -> bytes:
    """Render the PEP 503 root index: one relative link per project, by normalized name.

    The link text is the display name. Like Warehouse's page it has no ``<!--SERIAL-->``
    comment and no final newline. For a whole PyPI's worth of projects, use
    :func:`root_pages_chunks`, which never holds the page whole.
    """
    return b"".join(chunk for chunk, _ in root_pages_chunks([_by_name(projects)], serial=None))


def render_root_json(projects: Iterable[ListedProject], *, serial: Serial) -> bytes:
    """Render the PEP 691 root index, by normalized name, with ``_last-serial`` values.

    ``projects[].name`` is the display name, as Warehouse sends it. The output is what
    ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    plus ``\\n`` would give, but each entry is formatted directly so that a
    ~740,000-project listing never becomes a list of dicts.
    """
    return b"".join(chunk for _, chunk in root_pages_chunks([_by_name(projects)], serial=serial))


def root_pages_chunks(
    batches: Iterable[Sequence[ListingRow]], *, serial: Serial | None
) -> Iterator[tuple[bytes, bytes]]:
    """Both root index pages, a piece at a time: ``(html, json)`` bytes to append to
    each, one pair per batch of ``(name, display name, serial)`` rows plus the head
    and the tail.

    ``batches`` must come in normalized-name order (the state store's listing does),
    so that 740,000 projects are rendered a page of rows at a time and the pages are
    never whole in memory. ``serial`` is the JSON page's ``_last-serial`` (None: 0).
    """
    # encode_basestring is the string encoder json.dumps itself uses when
    # ensure_ascii=False, so the bytes are identical to a whole-document dump.
    meta = f'{{"_last-serial":{serial or 0:d},"api-version":{encode_basestring(API_VERSION)}}}'
    yield (
        (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n'
            "  <head>\n"
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
            "    <title>Simple index</title>\n"
            "  </head>\n"
            "  <body>\n"
        ).encode(),
        f'{{"meta":{meta},"projects":['.encode(),
    )
    separator = ""
    for batch in batches:
        if not batch:
            continue
        links = "".join(
            f'<a href="{_escape(name)}/">{_escape(shown)}</a>\n' for name, shown, _ in batch
        )
        entries = ",".join(
            f'{{"_last-serial":{last:d},"name":{encode_basestring(shown)}}}'
            for _, shown, last in batch
        )
        yield links.encode(), f"{separator}{entries}".encode()
        separator = ","
    yield b"</body>\n</html>", b"]}\n"


def _anchor(dist: DistFile, files_base: str) -> str:
    """One file's ``<a>`` line, attribute for attribute as Warehouse's template."""
    parts = [f'<a href="{_escape(_file_href(dist, files_base))}#sha256={dist.sha256}" ']
    if dist.requires_python:
        parts.append(f'data-requires-python="{_escape(dist.requires_python)}" ')
    if dist.yanked:
        parts.append(f'data-yanked="{_escape(dist.yanked_reason)}" ')
    if dist.core_metadata:
        value = f"sha256={dist.core_metadata_sha256}" if dist.core_metadata_sha256 else "true"
        parts.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
    if dist.provenance_kept:
        parts.append(f' data-provenance="{_escape(_provenance_href(dist, files_base))}"')
    parts.append(f">{_escape(dist.filename)}</a><br />\n")
    return "".join(parts)


def _file_json(dist: DistFile, files_base: str) -> dict[str, object]:
    """One entry of a project page's ``files`` array."""
    core: bool | dict[str, str] = False
    if dist.core_metadata:
        core = {"sha256": dist.core_metadata_sha256} if dist.core_metadata_sha256 else True
    yanked: bool | str = False
    if dist.yanked:
        yanked = dist.yanked_reason or True
    entry: dict[str, object] = {
        "core-metadata": core,
        "data-dist-info-metadata": core,
        "filename": dist.filename,
        "hashes": {"sha256": dist.sha256},
        # Empty strings mean "none", as the HTML's truthiness tests treat them.
        # The mirror's copy only: a page never sends a client to upstream's.
        "provenance": _provenance_href(dist, files_base) if dist.provenance_kept else None,
        "requires-python": dist.requires_python or None,
        "size": dist.size,
        "url": _file_href(dist, files_base),
        "yanked": yanked,
    }
    if dist.upload_time is not None:
        entry["upload-time"] = format_upload_time(dist.upload_time)
    return entry


def _file_href(dist: DistFile, files_base: str) -> str:
    """The file's URL relative to the page (``files_base``, then the path), each path
    component quoted.

    ``quote(..., safe="")`` leaves only unreserved characters raw: the same form pip
    produces when it unquotes and re-quotes an href, so ``+`` goes out as ``%2B`` and
    no server has to guess whether it means a space.
    """
    return files_base + "/".join(quote(part, safe="") for part in dist.path.split("/"))


def _provenance_href(dist: DistFile, files_base: str) -> str:
    """The URL of the file's provenance copy relative to the page, as :func:`_file_href`."""
    return files_base + "/".join(quote(part, safe="") for part in dist.provenance_path.split("/"))


def _escape(text: str) -> str:
    """Escape for HTML text and double-quoted attributes, as MarkupSafe does."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def _version_order(version: str) -> tuple[tuple[int, Version | str], str]:
    """PEP 440 order, legacy versions first; equal versions (``1.0``/``1.0.0``) by text."""
    return version_sort_key(version), version


def _by_name(projects: Iterable[ListedProject]) -> list[ListingRow]:
    """Projects as root index rows in normalized-name order, as Warehouse lists them."""
    # Already-ordered input sorts in linear time.
    return sorted((project.name, project.display_name, project.serial) for project in projects)


def _dump_json(value: object) -> bytes:
    """Warehouse's ``json-with-newline`` rendering, as UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=_JSON_SEPARATORS, ensure_ascii=False)
    return f"{text}\n".encode()
