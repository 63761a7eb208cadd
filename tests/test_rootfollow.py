"""Following an upstream without XML-RPC through its PEP 691 root index, over loopback:
the fake upstream with XML-RPC off (root serials), a static bandersnatch-like tree
(page ETags), and ``mirror serve`` of another mirror (``upstream-api = simple``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.errors import HTTPStatusError, MalformedResponseError, NoXmlRpcError
from mirror.filters import load_filters
from mirror.models import PageValidator, Serial
from mirror.rootfollow import full_listing
from mirror.state import StateStore
from mirror.sync import SyncOptions
from mirror.testing import FakeUpstream, RawAnswer
from mirror.upstream import Upstream, UpstreamSettings
from tests.chainsupport import (
    SIMPLE_JSON,
    first_corpus,
    mixed_changes,
    publish,
    served,
    static_tree,
    sync_from,
    tree,
)
from tests.harness import no_sleep
from tests.mirrorcheck import assert_consistent, assert_matches_upstream


def options(api: str) -> SyncOptions:
    assert api in {"auto", "xmlrpc", "simple"}
    return SyncOptions(workers=3, upstream_api=api)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["auto", "simple"])
async def test_an_upstream_without_xmlrpc_is_followed_through_its_root_serials(
    tmp_path: Path, api: str
) -> None:
    async with FakeUpstream(xmlrpc_enabled=False) as upstream:
        first_corpus(upstream)
        report = await sync_from(upstream.base_url, tmp_path, options=options(api))
        assert report.ok, report
        await assert_matches_upstream(tmp_path, upstream)

        mixed_changes(upstream)  # new releases and projects, removals, a yank
        upstream.unyank("beta", "2.0")
        upstream.yank("alpha", "1.1", reason="bad build")
        start = len(upstream.request_log)
        report = await sync_from(upstream.base_url, tmp_path, options=options(api))
        assert report.ok, report
        assert report.projects_removed == 1, "Gamma.Lib, gone from the root"
        await assert_matches_upstream(tmp_path, upstream)
        assert_consistent(tmp_path)
        log = upstream.request_log[start:]
        assert ("GET", "/simple/beta/") in log
        assert ("GET", "/simple/zeta/") not in log
        posts = [p for m, p in log if m == "POST"]
        assert (len(posts) > 0) == (api == "auto"), "simple never asks for XML-RPC"

        before = len(upstream.request_log)
        report = await sync_from(upstream.base_url, tmp_path, options=options(api))
        assert report.ok
        assert report.projects_synced == 0, "no serial moved: nothing to sync"
        gets = [p for m, p in upstream.request_log[before:] if m == "GET"]
        assert gets == ["/simple/"], "one request for an unchanged index"


async def test_xmlrpc_only_refuses_an_upstream_without_it(tmp_path: Path) -> None:
    async with FakeUpstream(xmlrpc_enabled=False) as upstream:
        first_corpus(upstream)
        with pytest.raises(NoXmlRpcError, match="no XML-RPC endpoint"):
            await sync_from(upstream.base_url, tmp_path, options=options("xmlrpc"))


async def test_a_static_tree_without_serials_is_followed_by_page_etags(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    first_corpus(upstream)
    assert (await sync_from(upstream.base_url, a)).ok
    async with static_tree(a) as url:
        report = await sync_from(url, b, options=options("auto"))
        assert report.ok, report
        assert tree(b) == tree(a)

        mixed_changes(upstream)
        assert (await sync_from(upstream.base_url, a)).ok
        report = await sync_from(url, b, options=options("auto"))
        assert report.ok, report
        assert report.projects_removed == 1
        assert "simple/gamma-lib/index.html" not in tree(a)
        assert tree(b) == tree(a)
        assert_consistent(b)

        # Nothing changed: each page answers 304 and nothing is synced.
        report = await sync_from(url, b, options=options("simple"))
        assert report.ok
        assert report.projects_synced == 0

        publish(upstream, "beta", "3.0", sdist=False)
        assert (await sync_from(upstream.base_url, a)).ok
        report = await sync_from(url, b, options=options("simple"))
        assert report.projects_synced == 1, "only beta's page has a new ETag"
        assert tree(b) == tree(a)


async def test_a_mirror_follows_mirror_serve_through_its_root_index(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    first_corpus(upstream)
    assert (await sync_from(upstream.base_url, a)).ok
    async with served(a) as url:
        assert (await sync_from(url, b, options=options("simple"))).ok
        assert tree(b) == tree(a)
    mixed_changes(upstream)
    assert (await sync_from(upstream.base_url, a)).ok
    await assert_matches_upstream(a, upstream)
    async with served(a) as url:
        report = await sync_from(url, b, options=options("simple"))
        assert report.ok, report
    assert tree(b) == tree(a)
    assert_consistent(b)


# --- the client's edges -----------------------------------------------------------------


def client(url: str) -> Upstream:
    return Upstream(UpstreamSettings(base_url=url, retries=0), sleep=no_sleep)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (RawAnswer(status=405, body=b"no"), NoXmlRpcError),
        (RawAnswer(status=501, body=b"no"), NoXmlRpcError),
        (RawAnswer(body=b"<html></html>", headers=(("Content-Type", "text/html"),)), NoXmlRpcError),
        (RawAnswer(body=b"{}", headers=(("Content-Type", "application/json"),)), NoXmlRpcError),
        (RawAnswer(status=403, body=b"no"), HTTPStatusError),
        (RawAnswer(body=b"<oops"), MalformedResponseError),
        (RawAnswer(body=b"<oops", headers=(("Content-Type", "text/xml"),)), MalformedResponseError),
    ],
)
async def test_an_upstream_without_xmlrpc_is_told_apart_from_a_failing_one(
    upstream: FakeUpstream, answer: RawAnswer, error: type[Exception]
) -> None:
    upstream.serve_raw("/pypi", answer, method="POST")
    async with client(upstream.base_url) as up:
        with pytest.raises(error) as caught:
            await up.changelog_last_serial()
    assert type(caught.value) is error
    assert len(upstream.request_log) == 1, "not retried"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (RawAnswer(body=b"<html/>", headers=(("Content-Type", "text/html"),)), "a PEP 691 index"),
        (RawAnswer(body=b"{", headers=(("Content-Type", SIMPLE_JSON),)), "not JSON"),
        (RawAnswer(body=b"{}", headers=(("Content-Type", SIMPLE_JSON),)), "projects: missing"),
    ],
)
async def test_a_root_that_is_not_a_pep_691_json_root_is_refused(
    upstream: FakeUpstream, answer: RawAnswer, message: str
) -> None:
    upstream.serve_raw("/simple/", answer)
    async with client(upstream.base_url) as up:
        with pytest.raises(MalformedResponseError, match=message):
            await up.simple_root()


async def test_a_page_validator_is_the_serial_and_etag_and_a_404_is_empty(
    upstream: FakeUpstream,
) -> None:
    publish(upstream, "alpha", "1.0")
    upstream.serve_raw(
        "/simple/tagged/",
        RawAnswer(status=200, body=b"{}", headers=(("ETag", '"v1"'),)),
    )
    name = NormalizedName
    async with client(upstream.base_url) as up:
        found = await up.page_validator(name("alpha"), None)
        assert found == PageValidator(serial=Serial(upstream.serial))
        assert await up.page_validator(name("tagged"), None) == PageValidator(etag='"v1"')
        assert await up.page_validator(name("gone"), PageValidator(etag='"x"')) == PageValidator()


async def test_a_page_that_cannot_be_read_counts_as_changed(tmp_path: Path) -> None:
    async with FakeUpstream(xmlrpc_enabled=False) as upstream:
        first_corpus(upstream)
        # A root without serials: each page's X-PyPI-Last-Serial is compared.
        names = [{"name": name} for name in ("alpha", "beta", "Gamma.Lib")]
        body = json.dumps({"meta": {"api-version": "1.0"}, "projects": names}).encode()
        upstream.serve_raw(
            "/simple/", RawAnswer(body=body, headers=(("Content-Type", SIMPLE_JSON),))
        )
        assert (await sync_from(upstream.base_url, tmp_path, options=options("simple"))).ok
        again = await sync_from(upstream.base_url, tmp_path, options=options("simple"))
        assert again.projects_synced == 0
        upstream.fail_next("/simple/beta/", 500, times=2)  # the check and its one retry
        report = await sync_from(upstream.base_url, tmp_path, options=options("simple"))
        assert report.ok, report
        assert report.projects_synced == 1, "beta, whose page could not be checked"
        await assert_matches_upstream(tmp_path, upstream)


async def test_the_full_listing_comes_from_the_root_without_xmlrpc(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    first_corpus(upstream)
    with StateStore.open(tmp_path / "mirror.db"):
        async with client(upstream.base_url) as up:
            listed = await full_listing(up, "xmlrpc")
            upstream.xmlrpc_enabled = False
            assert await full_listing(up, "auto") == listed
            assert await full_listing(up, "simple") == listed
            with pytest.raises(NoXmlRpcError):
                await full_listing(up, "xmlrpc")
    serials, names = listed
    assert names[NormalizedName("gamma-lib")] == "Gamma.Lib"
    assert set(serials) == {"alpha", "beta", "gamma-lib"}


async def test_changed_filters_requeue_from_the_root_without_xmlrpc(
    tmp_path: Path,
) -> None:
    async with FakeUpstream(xmlrpc_enabled=False) as upstream:
        first_corpus(upstream)
        assert (await sync_from(upstream.base_url, tmp_path, options=options("auto"))).ok
        blocked = SyncOptions(
            workers=2,
            upstream_api="auto",
            filters=load_filters(
                {"plugins": {"enabled": "blocklist_project"}, "blocklist": {"packages": "beta"}}
            ),
        )
        report = await sync_from(upstream.base_url, tmp_path, options=blocked)
        assert report.ok, report
        assert report.projects_removed == 1
        assert not (tmp_path / "web" / "simple" / "beta").exists()
