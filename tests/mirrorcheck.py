"""Checks that a mirror directory keeps its promises, used by the integration tests.

These read the tree the way a client would (pages first, then the files they link)
and compare it with what the fake upstream serves.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import aiohttp
from packaging.utils import canonicalize_name

from mirror.testing import FakeUpstream


@dataclass(frozen=True, slots=True)
class PublishedFile:
    filename: str
    sha256: str
    yanked: bool | str
    core_metadata: bool


def read_project_json(web: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((web / "simple" / name / "index.v1_json").read_bytes())
    return data


def published_files(web: Path, name: str) -> dict[str, PublishedFile]:
    page = read_project_json(web, name)
    files = page["files"]
    assert isinstance(files, list)
    return {
        f["filename"]: PublishedFile(
            filename=f["filename"],
            sha256=f["hashes"]["sha256"],
            yanked=f["yanked"],
            core_metadata=f["core-metadata"] is not False,
        )
        for f in files
    }


def assert_consistent(directory: Path) -> None:
    """Every link on every page points to a present file whose bytes match its hash,
    every advertised ``.metadata`` exists and matches, and no temp file is left."""
    web = directory / "web"
    simple = web / "simple"
    for page in simple.glob("*/index.v1_json"):
        data = json.loads(page.read_bytes())
        for entry in data["files"]:
            target = (page.parent / unquote(entry["url"])).resolve()
            assert target.is_relative_to(web.resolve()), entry["url"]
            body = target.read_bytes()
            assert hashlib.sha256(body).hexdigest() == entry["hashes"]["sha256"], target
            assert len(body) == entry["size"], target
            if entry["core-metadata"] is not False:
                meta = Path(f"{target}.metadata").read_bytes()
                assert hashlib.sha256(meta).hexdigest() == entry["core-metadata"]["sha256"]
        html = (page.parent / "index.html").read_text()
        for entry in data["files"]:
            assert f"#sha256={entry['hashes']['sha256']}" in html
    temps = list(web.rglob(".*.part"))
    assert not temps, f"temp files left behind: {temps}"


def files_on_disk(directory: Path) -> set[str]:
    packages = directory / "web" / "packages"
    if not packages.exists():
        return set()
    return {p.name for p in packages.rglob("*") if p.is_file()}


async def upstream_state(upstream: FakeUpstream) -> dict[str, dict[str, PublishedFile]]:
    """What upstream's PEP 691 pages say, per normalized project name."""
    result: dict[str, dict[str, PublishedFile]] = {}
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{upstream.base_url}/simple/", headers=accept) as resp:
            root = await resp.json(content_type=None)
        for project in root["projects"]:
            name = project["name"]
            async with session.get(f"{upstream.base_url}/simple/{name}/", headers=accept) as resp:
                page = await resp.json(content_type=None)
            result[page["name"]] = {
                f["filename"]: PublishedFile(
                    filename=f["filename"],
                    sha256=f["hashes"]["sha256"],
                    yanked=f["yanked"],
                    core_metadata=f["core-metadata"] is not False,
                )
                for f in page["files"]
            }
    return result


def root_html_links(web: Path) -> list[tuple[str, str]]:
    """The HTML root index's ``(href without the slash, link text)`` pairs, in order."""
    page = (web / "simple" / "index.html").read_text()
    return [
        (html.unescape(href), html.unescape(text))
        for href, text in re.findall(r'<a href="([^"]*)/">([^<]*)</a>', page)
    ]


async def assert_matches_upstream(directory: Path, upstream: FakeUpstream) -> None:
    """The mirror holds exactly upstream's projects, files, hashes and yank markers,
    its root lists exactly those projects, and no file is on disk that no page links."""
    expected = await upstream_state(upstream)
    web = directory / "web"
    root = json.loads((web / "simple" / "index.v1_json").read_bytes())
    assert {canonicalize_name(p["name"]) for p in root["projects"]} == set(expected)
    assert root_html_links(web) == [
        (canonicalize_name(p["name"]), p["name"]) for p in root["projects"]
    ], "the HTML root names what the JSON root does"
    assert (web / "simple" / "index.v1_html").read_bytes() == (
        web / "simple" / "index.html"
    ).read_bytes()
    mirrored = {p.parent.name for p in (web / "simple").glob("*/index.v1_json")}
    assert mirrored == set(expected)
    linked: set[str] = set()
    for name, files in expected.items():
        assert published_files(web, name) == files, name
        linked |= set(files)
        linked |= {f"{fn}.metadata" for fn, f in files.items() if f.core_metadata}
    assert files_on_disk(directory) == linked
    assert_consistent(directory)
