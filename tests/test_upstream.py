"""The upstream client against small aiohttp apps on 127.0.0.1 (and aioresponses for
failures a real server cannot produce on demand)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import random
import xmlrpc.client
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from packaging.utils import NormalizedName

from mirror import __version__
from mirror.config import parse_config
from mirror.errors import (
    HTTPStatusError,
    IntegrityError,
    MalformedResponseError,
    ProjectNotFoundError,
    StaleResponseError,
    TransientUpstreamError,
    UpstreamError,
    XmlRpcFaultError,
)
from mirror.models import Serial
from mirror.storage import StoredBlob
from mirror.upstream import (
    CACHE_BUST_PARAMETER,
    SIMPLE_JSON_TYPE,
    Upstream,
    UpstreamSettings,
    default_user_agent,
    redact_url,
)

SHA_A = "a" * 64
FOO = NormalizedName("foo")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- fakes ------------------------------------------------------------------------------


@dataclass
class RecordingSleep:
    """A sleep that returns at once and remembers how long it was asked to wait."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def expected_backoff(count: int, *, base: float = 1.0, cap: float = 60.0) -> list[float]:
    """The full-jitter delays a client seeded with random.Random(0) must choose."""
    rng = random.Random(0)
    return [rng.uniform(0, min(cap, base * 2**n)) for n in range(count)]


@dataclass
class Seen:
    """What the fake server received, in order."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def queries(self) -> list[str]:
        return [query for _, query, _, _ in self.requests]


@asynccontextmanager
async def serving(
    routes: dict[tuple[str, str], Handler], seen: Seen | None = None
) -> AsyncIterator[str]:
    """Serve ``{(method, path): handler}`` on 127.0.0.1; yields the base URL."""
    record = seen if seen is not None else Seen()

    @web.middleware
    async def remember(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        record.requests.append((request.path, request.query_string, dict(request.headers), body))
        return await handler(request)

    app = web.Application(middlewares=[remember])
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def client(base_url: str, sleep: RecordingSleep | None = None, **overrides: object) -> Upstream:
    settings = UpstreamSettings(base_url=base_url, **overrides)  # type: ignore[arg-type]
    return Upstream(settings, sleep=sleep or RecordingSleep(), rng=random.Random(0))


def xml_response(result: Any) -> web.Response:  # Any: whatever the marshaller takes
    body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
    return web.Response(body=body.encode(), content_type="text/xml")


def xml_fault(code: int, text: str) -> web.Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), allow_none=True)
    return web.Response(body=body.encode(), content_type="text/xml")


def xmlrpc_app(methods: dict[str, Callable[..., object]]) -> dict[tuple[str, str], Handler]:
    """An XML-RPC endpoint at POST /pypi dispatching to plain functions."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        if request.content_type != "text/xml":
            return web.Response(status=400, text="XML-RPC needs text/xml")
        params, method = xmlrpc.client.loads(await request.read())
        result = methods[method or ""](*params)
        if isinstance(result, web.StreamResponse):
            return result
        return xml_response(result)

    return {("POST", "/pypi"): endpoint}


def sequence(*responses: Callable[[], web.StreamResponse]) -> Handler:
    """A handler answering with each response in turn, then repeating the last."""
    remaining = list(responses)

    async def handler(request: web.Request) -> web.StreamResponse:
        make = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return make()

    return handler


def simple_page(*, serial: int | None = None, url: str | None = None) -> bytes:
    data: dict[str, object] = {
        "name": "foo",
        "files": [
            {
                "filename": "foo-1.0.tar.gz",
                "url": url or "../../packages/aa/bb/cccc/foo-1.0.tar.gz",
                "hashes": {"sha256": SHA_A},
                "size": 10,
            }
        ],
        "versions": ["1.0"],
        "meta": {"api-version": "1.4"},
    }
    if serial is not None:
        data["meta"] = {"api-version": "1.4", "_last-serial": serial}
    return json.dumps(data).encode()


def simple_response(
    *, header_serial: int | None, body_serial: int | None = None
) -> Callable[[], web.Response]:
    def make() -> web.Response:
        headers = {"X-PyPI-Last-Serial": str(header_serial)} if header_serial is not None else {}
        return web.Response(
            body=simple_page(serial=body_serial), content_type=SIMPLE_JSON_TYPE, headers=headers
        )

    return make


def status(code: int, headers: dict[str, str] | None = None) -> Callable[[], web.Response]:
    return lambda: web.Response(status=code, headers=headers)


# --- XML-RPC ----------------------------------------------------------------------------


async def test_changelog_last_serial_posts_xmlrpc_and_returns_the_serial() -> None:
    seen = Seen()
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: 4242}), seen) as base,
        client(base + "/") as upstream,
    ):
        assert await upstream.changelog_last_serial() == 4242
    path, _, headers, body = seen.requests[0]
    assert path == "/pypi"
    assert headers["Content-Type"] == "text/xml"
    assert xmlrpc.client.loads(body) == ((), "changelog_last_serial")


async def test_changelog_last_serial_nil_means_an_empty_index() -> None:
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: None})) as base,
        client(base) as upstream,
    ):
        assert await upstream.changelog_last_serial() == 0


@pytest.mark.parametrize("value", ["12", -1, True, 1.5])
async def test_changelog_last_serial_rejects_a_non_serial(value: object) -> None:
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: value})) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match="expected a serial"):
            await upstream.changelog_last_serial()


def changelog(rows: list[list[object]]) -> Callable[[int], list[list[object]]]:
    """changelog_since_serial over ``rows``, three rows per page at most."""

    def since(serial: int) -> list[list[object]]:
        return [row for row in rows if isinstance(row[4], int) and row[4] > serial][:3]

    return since


async def test_changelog_since_serial_pages_until_a_short_page_and_unescapes_actions() -> None:
    rows: list[list[object]] = [
        ["Foo", None, 1700000000, "create", 11],
        ["Foo", "1.0", 1700000001, "new release", 12],
        ["Foo", "1.0", 1700000002, "add py3 file f&#246;o-1.0-py3-none-any.whl", 14],
        ["bar", "2", 1700000003, "remove release", 15],
        ["bar", "2", 1700000004, "yank release", 17],
        ["baz", None, 1700000005, "remove project", 18],
        ["qux", None, 1700000006, "create", 19],
    ]
    seen = Seen()
    async with (
        serving(xmlrpc_app({"changelog_since_serial": changelog(rows)}), seen) as base,
        client(base) as upstream,
    ):
        entries = await upstream.changelog_since_serial(Serial(10), page_limit=3)
    assert [xmlrpc.client.loads(body)[0] for *_, body in seen.requests] == [(10,), (14,), (18,)]
    assert [e.serial for e in entries] == [11, 12, 14, 15, 17, 18, 19]
    assert entries[2].action == "add py3 file föo-1.0-py3-none-any.whl"
    assert entries[0].version is None
    assert (entries[3].name, entries[3].version, entries[3].timestamp) == ("bar", "2", 1700000003)


async def test_changelog_since_serial_asks_again_after_an_exactly_full_last_page() -> None:
    rows: list[list[object]] = [["foo", None, 1, "create", n] for n in (11, 12, 13)]
    seen = Seen()
    async with (
        serving(xmlrpc_app({"changelog_since_serial": changelog(rows)}), seen) as base,
        client(base) as upstream,
    ):
        entries = await upstream.changelog_since_serial(Serial(10), page_limit=3)
    assert [e.serial for e in entries] == [11, 12, 13]
    assert len(seen.requests) == 2


async def test_changelog_since_serial_returns_nothing_when_nothing_changed() -> None:
    async with (
        serving(xmlrpc_app({"changelog_since_serial": lambda serial: []})) as base,
        client(base) as upstream,
    ):
        assert await upstream.changelog_since_serial(Serial(99)) == []


async def test_changelog_since_serial_rejects_a_full_page_that_does_not_advance() -> None:
    stuck: list[list[object]] = [["foo", None, 1, "create", 5], ["foo", None, 1, "create", 5]]
    async with (
        serving(xmlrpc_app({"changelog_since_serial": lambda serial: stuck})) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match="full page that ends at 5"):
            await upstream.changelog_since_serial(Serial(5), page_limit=2)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"not": "rows"}, "expected an array"),
        ([["foo", None, 1, "create"]], r"\[0\]: expected 5 values"),
        ([["foo", None, "x", "create", 3]], r"\[0\]\[2\]: expected an integer"),
    ],
)
async def test_changelog_since_serial_rejects_a_malformed_answer(
    answer: object, message: str
) -> None:
    async with (
        serving(xmlrpc_app({"changelog_since_serial": lambda serial: answer})) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match=message):
            await upstream.changelog_since_serial(Serial(0))


async def test_changelog_since_serial_refuses_a_page_limit_below_one() -> None:
    async with client("http://127.0.0.1:9") as upstream:
        with pytest.raises(ValueError, match="page_limit"):
            await upstream.changelog_since_serial(Serial(0), page_limit=0)


async def test_list_packages_with_serial_parses_a_chunked_body() -> None:
    projects = {f"Project_{n}.x": n for n in range(3000)}
    projects["Django"] = 40000000
    projects["zope.interface"] = 7
    projects["-bad-"] = 8  # not a valid project name: skipped
    body = xmlrpc.client.dumps((projects,), methodresponse=True).encode()

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/xml"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 1000):  # boundaries fall mid-tag
            await response.write(body[start : start + 1000])
        await response.write_eof()
        return response

    async with (
        serving({("POST", "/pypi"): chunked}) as base,
        client(base) as upstream,
    ):
        listing = await upstream.list_packages_with_serial()
    assert len(listing.serials) == len(listing.display_names) == 3002
    assert listing.serials[NormalizedName("django")] == 40000000
    assert listing.display_names[NormalizedName("django")] == "Django"
    assert listing.display_names[NormalizedName("zope-interface")] == "zope.interface"
    assert listing.serials[NormalizedName("project-2999-x")] == 2999
    assert NormalizedName("-bad-") not in listing.serials


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([["foo", 1]], "expected a struct"),
        ({"foo": "1"}, r"\['foo'\]: expected a serial"),
        ({"foo": -1}, r"\['foo'\]: expected a serial"),
        ({"foo": False}, r"\['foo'\]: expected a serial"),
    ],
)
async def test_list_packages_with_serial_rejects_a_malformed_answer(
    answer: object, message: str
) -> None:
    async with (
        serving(xmlrpc_app({"list_packages_with_serial": lambda: answer})) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match=message):
            await upstream.list_packages_with_serial()


async def test_an_xmlrpc_fault_is_raised_with_its_code_and_text_and_not_retried() -> None:
    sleep = RecordingSleep()
    fault = "RuntimeError: PyPI no longer supports the XMLRPC changelog_last_serial method."
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: xml_fault(-32500, fault)})) as base,
        client(base, sleep) as upstream,
    ):
        with pytest.raises(XmlRpcFaultError) as caught:
            await upstream.changelog_last_serial()
    assert (caught.value.method, caught.value.code, caught.value.fault_string) == (
        "changelog_last_serial",
        -32500,
        fault,
    )
    assert sleep.delays == []


RATE_LIMITED = (
    "HTTPTooManyRequests: The action could not be performed because there were too many "
    "requests by the client. Limit may reset in {} seconds."
)


async def test_a_rate_limit_fault_is_retried_after_the_time_it_names() -> None:
    sleep = RecordingSleep()
    answers = iter([xml_fault(-32500, RATE_LIMITED.format(5)), 77])
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: next(answers)})) as base,
        client(base, sleep) as upstream,
    ):
        assert await upstream.changelog_last_serial() == 77
    assert sleep.delays == [5.0]


async def test_a_rate_limited_listing_is_retried_with_a_fresh_parser() -> None:
    sleep = RecordingSleep()
    answers = iter([xml_fault(-32500, RATE_LIMITED.format(2)), {"Django": 9}])
    async with (
        serving(xmlrpc_app({"list_packages_with_serial": lambda: next(answers)})) as base,
        client(base, sleep) as upstream,
    ):
        listing = await upstream.list_packages_with_serial()
    assert (listing.serials, listing.display_names) == ({"django": 9}, {"django": "Django"})
    assert sleep.delays == [2.0]


async def test_a_rate_limit_fault_without_a_time_backs_off_with_jitter() -> None:
    sleep = RecordingSleep()
    answers = iter([xml_fault(-32500, "HTTPTooManyRequests: slow down"), 77])
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: next(answers)})) as base,
        client(base, sleep) as upstream,
    ):
        assert await upstream.changelog_last_serial() == 77
    assert sleep.delays == expected_backoff(1)


async def test_a_rate_limit_longer_than_the_back_off_cap_fails_at_once() -> None:
    sleep = RecordingSleep()
    answer = xml_fault(-32500, RATE_LIMITED.format(1800))
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: answer})) as base,
        client(base, sleep) as upstream,
    ):
        with pytest.raises(TransientUpstreamError, match="rate limited") as caught:
            await upstream.changelog_last_serial()
    assert caught.value.retry_after_seconds == 1800
    assert sleep.delays == []


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html",  # not well-formed
        b"<?xml version='1.0'?><methodResponse><params><param><value><int>1",  # truncated
        b"<?xml version='1.0'?><something/>",  # no XML-RPC value at all
        b"<?xml version='1.0'?><methodResponse><params></params></methodResponse>",  # no result
        b"<methodResponse><params><param><value><int>x</int></value></param></params>"
        b"</methodResponse>",  # not an integer
    ],
)
async def test_an_unparseable_xmlrpc_answer_is_malformed(body: bytes) -> None:
    answer = web.Response(body=body, content_type="text/xml")
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: answer})) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match="changelog_last_serial: unparseable"):
            await upstream.changelog_last_serial()


# --- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 429])
async def test_a_transient_status_is_retried_with_jittered_back_off(code: int) -> None:
    sleep = RecordingSleep()
    handler = sequence(status(code), status(code), lambda: xml_response(5))
    async with (
        serving({("POST", "/pypi"): handler}) as base,
        client(base, sleep) as upstream,
    ):
        assert await upstream.changelog_last_serial() == 5
    assert sleep.delays == expected_backoff(2)


async def test_retries_stop_after_the_configured_count_with_capped_back_off() -> None:
    sleep = RecordingSleep()
    seen = Seen()
    async with (
        serving({("POST", "/pypi"): sequence(status(503))}, seen) as base,
        client(base, sleep, retries=4, backoff_max_seconds=3.0) as upstream,
    ):
        with pytest.raises(TransientUpstreamError, match="HTTP 503"):
            await upstream.changelog_last_serial()
    assert len(seen.requests) == 5
    assert sleep.delays == expected_backoff(4, cap=3.0)


async def test_retry_after_seconds_is_honoured() -> None:
    sleep = RecordingSleep()
    handler = sequence(status(429, {"Retry-After": "7"}), lambda: xml_response(5))
    async with serving({("POST", "/pypi"): handler}) as base, client(base, sleep) as upstream:
        assert await upstream.changelog_last_serial() == 5
    assert sleep.delays == [7.0]


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2037 07:28:00 GMT", "-3", "nan", "inf"])
async def test_an_unusable_retry_after_falls_back_to_our_back_off(value: str) -> None:
    sleep = RecordingSleep()
    handler = sequence(status(503, {"Retry-After": value}), lambda: xml_response(5))
    async with serving({("POST", "/pypi"): handler}) as base, client(base, sleep) as upstream:
        assert await upstream.changelog_last_serial() == 5
    assert sleep.delays == expected_backoff(1)


async def test_a_retry_after_beyond_the_back_off_cap_fails_at_once() -> None:
    sleep = RecordingSleep()
    handler = sequence(status(503, {"Retry-After": "3600"}), lambda: xml_response(5))
    async with serving({("POST", "/pypi"): handler}) as base, client(base, sleep) as upstream:
        with pytest.raises(TransientUpstreamError) as caught:
            await upstream.changelog_last_serial()
    assert caught.value.retry_after_seconds == 3600
    assert sleep.delays == []


@pytest.mark.parametrize("code", [400, 401, 403, 410])
async def test_other_client_errors_fail_at_once(code: int) -> None:
    sleep = RecordingSleep()
    async with (
        serving({("POST", "/pypi"): sequence(status(code))}) as base,
        client(base, sleep) as upstream,
    ):
        with pytest.raises(HTTPStatusError) as caught:
            await upstream.changelog_last_serial()
    assert caught.value.status == code
    assert sleep.delays == []


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ClientConnectionError("connection reset by peer"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        TimeoutError(),
    ],
)
async def test_network_failures_are_transient_and_retried(exception: Exception) -> None:
    # aioresponses cannot build bodies under this aiohttp, so it supplies only failures;
    # success after a failure is covered against real servers above.
    sleep = RecordingSleep()
    with aioresponses() as mocked:
        mocked.post("http://upstream.test/pypi", exception=exception, repeat=True)
        async with client("http://upstream.test", sleep, retries=2) as upstream:
            with pytest.raises(TransientUpstreamError, match=type(exception).__name__) as caught:
                await upstream.changelog_last_serial()
    assert caught.value.__cause__ is exception
    assert sleep.delays == expected_backoff(2)


async def test_other_aiohttp_errors_become_upstream_errors_without_retry() -> None:
    sleep = RecordingSleep()
    with aioresponses() as mocked:
        mocked.post("http://upstream.test/pypi", exception=aiohttp.InvalidURL("http://x:y"))
        async with client("http://upstream.test", sleep) as upstream:
            with pytest.raises(UpstreamError, match="InvalidURL") as caught:
                await upstream.changelog_last_serial()
    assert not isinstance(caught.value, TransientUpstreamError)
    assert sleep.delays == []


async def test_a_read_timeout_is_transient() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    try:
        async with (
            serving({("POST", "/pypi"): stall}) as base,
            client(base, retries=0, read_timeout_seconds=0.05) as upstream,
        ):
            with pytest.raises(TransientUpstreamError, match="Timeout"):
                await upstream.changelog_last_serial()
    finally:
        release.set()


async def test_credentials_are_sent_but_never_appear_in_errors() -> None:
    seen = Seen()
    async with serving({("POST", "/pypi"): sequence(status(403))}, seen) as base:
        with_credentials = base.replace("http://", "http://mirror:s3cret@")
        async with client(with_credentials) as upstream:
            with pytest.raises(HTTPStatusError) as caught:
                await upstream.changelog_last_serial()
    assert "s3cret" not in str(caught.value)
    assert caught.value.url == f"{base}/pypi"
    expected = "Basic " + base64.b64encode(b"mirror:s3cret").decode()
    assert seen.requests[0][2]["Authorization"] == expected


async def test_retries_are_logged_as_warnings_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = sequence(status(503), lambda: xml_response(5))
    async with serving({("POST", "/pypi"): handler}) as base:
        with_credentials = base.replace("http://", "http://mirror:s3cret@")
        async with client(with_credentials) as upstream:
            assert await upstream.changelog_last_serial() == 5
    (record,) = [
        r for r in caplog.records if r.name == "mirror.upstream" and r.levelname != "DEBUG"
    ]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith(
        f"XML-RPC changelog_last_serial: {base}/pypi: HTTP 503; retry 1 of 5 in "
    )
    assert "s3cret" not in caplog.text


async def test_the_user_agent_is_sent_on_every_request() -> None:
    seen = Seen()
    async with (
        serving(xmlrpc_app({"changelog_last_serial": lambda: 1}), seen) as base,
        client(base, user_agent="mirror-test/1 (ops@example.org)") as upstream,
    ):
        await upstream.changelog_last_serial()
    assert seen.requests[0][2]["User-Agent"] == "mirror-test/1 (ops@example.org)"


def test_the_default_user_agent_names_the_program_python_aiohttp_and_contact() -> None:
    agent = default_user_agent("ops@example.org")
    assert agent.startswith(f"mirror/{__version__} (PyPI mirror; ops@example.org) Python/3.")
    assert agent.endswith(f" aiohttp/{aiohttp.__version__}")
    assert "(PyPI mirror) " in default_user_agent()
    assert UpstreamSettings(base_url="https://pypi.org").user_agent == default_user_agent()


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:pa55@mirror.example/simple/", "https://mirror.example/simple/"),
        ("https://token@mirror.example:8443/pypi", "https://mirror.example:8443/pypi"),
        ("https://u:p@ss@mirror.example/x?y=a@b", "https://mirror.example/x?y=a@b"),
        ("https://pypi.org/simple/foo/", "https://pypi.org/simple/foo/"),
        (
            "GET http://a:b@h/x failed, then http://c:d@h/y",
            "GET http://h/x failed, then http://h/y",
        ),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_strips_credentials(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


async def test_using_the_client_outside_its_context_is_a_programming_error() -> None:
    upstream = client("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await upstream.changelog_last_serial()
    async with upstream:
        pass
    await upstream.__aexit__(None, None, None)  # closing a closed client is harmless
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await upstream.changelog_last_serial()


# --- project detail -------------------------------------------------------------------------


async def test_project_detail_reads_the_pep_691_page_and_resolves_relative_urls() -> None:
    seen = Seen()
    routes = {("GET", "/simple/foo/"): sequence(simple_response(header_serial=31))}
    async with serving(routes, seen) as base, client(base) as upstream:
        detail = await upstream.project_detail(FOO, min_serial=Serial(30))
    assert detail.name == "foo"
    assert detail.serial == 31  # from the header: the body has no _last-serial
    assert detail.versions == ("1.0",)
    (dist,) = detail.files
    assert dist.url == f"{base}/packages/aa/bb/cccc/foo-1.0.tar.gz"
    assert dist.path == "packages/aa/bb/cccc/foo-1.0.tar.gz"
    assert seen.requests[0][2]["Accept"] == SIMPLE_JSON_TYPE
    assert seen.queries == [""]


async def test_project_detail_follows_redirects_and_resolves_against_the_final_url() -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/other/foo/")

    routes = {
        ("GET", "/simple/foo/"): moved,
        ("GET", "/other/foo/"): sequence(simple_response(header_serial=3)),
    }
    async with serving(routes) as base, client(base) as upstream:
        detail = await upstream.project_detail(FOO, min_serial=None)
    assert detail.files[0].url == f"{base}/packages/aa/bb/cccc/foo-1.0.tar.gz"


async def test_project_detail_prefers_the_body_serial_and_defaults_to_zero() -> None:
    routes = {
        ("GET", "/simple/foo/"): sequence(
            simple_response(header_serial=None, body_serial=44),
            simple_response(header_serial=None),
            simple_response(header_serial=None),
        )
    }
    async with serving(routes) as base, client(base) as upstream:
        assert (await upstream.project_detail(FOO, min_serial=None)).serial == 44
        assert (await upstream.project_detail(FOO, min_serial=None)).serial == 0
        # Neither header nor body serial: nothing says it is stale, so it is trusted.
        assert (await upstream.project_detail(FOO, min_serial=Serial(9))).serial == 9


async def test_project_detail_ignores_an_unreadable_serial_header() -> None:
    def make() -> web.Response:
        return web.Response(
            body=simple_page(serial=12),
            content_type=SIMPLE_JSON_TYPE,
            headers={"X-PyPI-Last-Serial": "soon"},
        )

    async with (
        serving({("GET", "/simple/foo/"): sequence(make)}) as base,
        client(base) as upstream,
    ):
        assert (await upstream.project_detail(FOO, min_serial=Serial(12))).serial == 12


async def test_project_detail_from_the_json_api() -> None:
    body = {
        "info": {"name": "Foo"},
        "last_serial": 50,
        "releases": {
            "1.0": [
                {
                    "filename": "foo-1.0.tar.gz",
                    "url": "https://files.example/packages/aa/bb/cccc/foo-1.0.tar.gz",
                    "digests": {"sha256": SHA_A},
                    "size": 10,
                }
            ],
            "2.0": [],
        },
    }
    seen = Seen()

    def make() -> web.Response:
        return web.json_response(body, headers={"X-PyPI-Last-Serial": "50"})

    async with (
        serving({("GET", "/pypi/foo/json"): sequence(make)}, seen) as base,
        client(base) as upstream,
    ):
        detail = await upstream.project_detail(FOO, min_serial=Serial(50), source="json")
    assert (detail.display_name, detail.serial, detail.versions) == ("Foo", 50, ("1.0",))
    assert detail.files[0].url == "https://files.example/packages/aa/bb/cccc/foo-1.0.tar.gz"
    assert seen.requests[0][2]["Accept"] == "application/json"


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_project_detail_refuses_a_page_that_is_not_pep_691_json(content_type: str) -> None:
    def make() -> web.Response:
        return web.Response(body=simple_page(serial=1), content_type=content_type)

    async with (
        serving({("GET", "/simple/foo/"): sequence(make)}) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match="Content-Type"):
            await upstream.project_detail(FOO, min_serial=None)


@pytest.mark.parametrize(
    ("source", "path"), [("simple", "/simple/foo/"), ("json", "/pypi/foo/json")]
)
async def test_project_detail_404_means_the_project_is_gone(source: str, path: str) -> None:
    sleep = RecordingSleep()
    async with (
        serving({("GET", path): sequence(status(404))}) as base,
        client(base, sleep) as upstream,
    ):
        with pytest.raises(ProjectNotFoundError) as caught:
            await upstream.project_detail(FOO, min_serial=None, source=source)  # type: ignore[arg-type]
    assert caught.value.name == "foo"
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"name": "foo"}', "files: missing"),
        (b'{"name": "bar", "files": []}', "name: expected 'foo'"),
    ],
)
async def test_project_detail_refuses_a_malformed_body(body: bytes, message: str) -> None:
    def make() -> web.Response:
        return web.Response(
            body=body, content_type=SIMPLE_JSON_TYPE, headers={"X-PyPI-Last-Serial": "1"}
        )

    async with (
        serving({("GET", "/simple/foo/"): sequence(make)}) as base,
        client(base) as upstream,
    ):
        with pytest.raises(MalformedResponseError, match=message):
            await upstream.project_detail(FOO, min_serial=None)


async def test_a_stale_page_is_fetched_again_with_a_cache_busting_query() -> None:
    sleep = RecordingSleep()
    seen = Seen()
    handler = sequence(simple_response(header_serial=5), simple_response(header_serial=10))
    async with (
        serving({("GET", "/simple/foo/"): handler}, seen) as base,
        client(base, sleep) as upstream,
    ):
        detail = await upstream.project_detail(FOO, min_serial=Serial(10))
    assert detail.serial == 10
    assert seen.queries == ["", f"{CACHE_BUST_PARAMETER}=10-1"]
    assert sleep.delays == expected_backoff(1)


async def test_a_page_whose_body_serial_is_stale_is_fetched_again() -> None:
    seen = Seen()
    handler = sequence(
        simple_response(header_serial=None, body_serial=5),
        simple_response(header_serial=None, body_serial=11),
    )
    async with (
        serving({("GET", "/simple/foo/"): handler}, seen) as base,
        client(base) as upstream,
    ):
        assert (await upstream.project_detail(FOO, min_serial=Serial(10))).serial == 11
    assert seen.queries == ["", f"{CACHE_BUST_PARAMETER}=10-1"]


async def test_a_page_that_stays_stale_raises_stale_response_error() -> None:
    sleep = RecordingSleep()
    seen = Seen()
    async with (
        serving({("GET", "/simple/foo/"): sequence(simple_response(header_serial=5))}, seen) as b,
        client(b, sleep, retries=3) as upstream,
    ):
        with pytest.raises(StaleResponseError) as caught:
            await upstream.project_detail(FOO, min_serial=Serial(10))
    assert (caught.value.expected, caught.value.got) == (10, 5)
    assert seen.queries == ["", *(f"{CACHE_BUST_PARAMETER}=10-{n}" for n in (1, 2, 3))]
    assert sleep.delays == expected_backoff(3)


async def test_project_json_raw_returns_the_exact_bytes() -> None:
    raw = b'{"info":{"name":"Foo"},"last_serial":1,"releases":{}}\n'

    def make() -> web.Response:
        return web.Response(body=raw, content_type="application/json")

    async with (
        serving({("GET", "/pypi/foo/json"): sequence(status(502), make)}) as base,
        client(base) as upstream,
    ):
        assert await upstream.project_json_raw(FOO) == raw


async def test_project_json_raw_404_means_not_found() -> None:
    async with (
        serving({("GET", "/pypi/foo/json"): sequence(status(404))}) as base,
        client(base) as upstream,
    ):
        with pytest.raises(ProjectNotFoundError):
            await upstream.project_json_raw(FOO)


# --- downloads ------------------------------------------------------------------------------


@dataclass
class VerifyingStore:
    """Stands in for Storage.store_stream: collects chunks, checks the sha256."""

    sha256: str
    stored: list[bytes] = field(default_factory=list)
    chunk_counts: list[int] = field(default_factory=list)

    async def __call__(self, chunks: AsyncIterator[bytes]) -> StoredBlob:
        parts = [chunk async for chunk in chunks]
        data = b"".join(parts)
        self.chunk_counts.append(len(parts))
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise IntegrityError(f"sha256 mismatch after {len(data)} bytes")
        self.stored.append(data)
        return StoredBlob(sha256=self.sha256, size=len(data))


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several chunks


async def test_download_streams_the_exact_bytes_in_chunks() -> None:
    seen = Seen()

    async def gzipped_looking(request: web.Request) -> web.StreamResponse:
        # A misconfigured server labels a .tar.gz as gzip-encoded: the bytes must be
        # stored as sent, not decompressed.
        return web.Response(body=PAYLOAD, headers={"Content-Encoding": "gzip"})

    store = VerifyingStore(hashlib.sha256(PAYLOAD).hexdigest())
    async with (
        serving({("GET", "/packages/a/b/c/foo-1.0.tar.gz"): gzipped_looking}, seen) as base,
        client(base) as upstream,
    ):
        blob = await upstream.download(f"{base}/packages/a/b/c/foo-1.0.tar.gz", store)
    assert blob == StoredBlob(sha256=store.sha256, size=len(PAYLOAD))
    assert store.stored == [PAYLOAD]
    assert store.chunk_counts[0] > 1
    assert seen.requests[0][2]["Accept-Encoding"] == "identity"


async def test_a_truncated_download_is_retried_from_the_start() -> None:
    sleep = RecordingSleep()
    attempts = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal attempts
        attempts += 1
        response = web.StreamResponse(headers={"Content-Length": str(len(PAYLOAD))})
        await response.prepare(request)
        if attempts == 1:
            await response.write(PAYLOAD[:1000])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-body
            return response
        await response.write(PAYLOAD)
        await response.write_eof()
        return response

    store = VerifyingStore(hashlib.sha256(PAYLOAD).hexdigest())
    async with serving({("GET", "/f"): flaky}) as base, client(base, sleep) as upstream:
        blob = await upstream.download(f"{base}/f", store)
    assert blob.size == len(PAYLOAD)
    assert store.stored == [PAYLOAD]
    assert sleep.delays == expected_backoff(1)


async def test_a_broken_transfer_reaches_the_store_as_a_transient_upstream_error() -> None:
    received: list[BaseException] = []

    async def store(chunks: AsyncIterator[bytes]) -> StoredBlob:
        try:
            async for _ in chunks:
                pass
        except BaseException as exc:
            received.append(exc)
            raise
        raise AssertionError("the body should not have completed")

    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "5000"})
        await response.prepare(request)
        await response.write(b"x" * 100)
        assert request.transport is not None
        request.transport.close()
        return response

    async with (
        serving({("GET", "/f"): truncated}) as base,
        client(base, retries=0) as upstream,
    ):
        with pytest.raises(TransientUpstreamError):
            await upstream.download(f"{base}/f", store)
    assert isinstance(received[0], TransientUpstreamError)
    assert isinstance(received[0].__cause__, aiohttp.ClientPayloadError)


async def test_a_download_failing_verification_is_retried_then_succeeds() -> None:
    sleep = RecordingSleep()
    bodies = iter([b"corrupted", PAYLOAD])

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=next(bodies))

    store = VerifyingStore(hashlib.sha256(PAYLOAD).hexdigest())
    async with serving({("GET", "/f"): serve}) as base, client(base, sleep) as upstream:
        await upstream.download(f"{base}/f", store)
    assert store.stored == [PAYLOAD]
    assert sleep.delays == expected_backoff(1)


async def test_a_download_that_never_verifies_raises_integrity_error() -> None:
    sleep = RecordingSleep()
    store = VerifyingStore(SHA_A)

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"always wrong")

    async with (
        serving({("GET", "/f"): serve}) as base,
        client(base, sleep, retries=2) as upstream,
    ):
        with pytest.raises(IntegrityError):
            await upstream.download(f"{base}/f", store)
    assert store.chunk_counts == [1, 1, 1]
    assert sleep.delays == expected_backoff(2)


async def test_a_download_404_is_not_retried() -> None:
    sleep = RecordingSleep()
    seen = Seen()
    store = VerifyingStore(SHA_A)
    async with (
        serving({("GET", "/f"): sequence(status(404))}, seen) as base,
        client(base, sleep) as upstream,
    ):
        with pytest.raises(HTTPStatusError) as caught:
            await upstream.download(f"{base}/f", store)
    assert caught.value.status == 404
    assert len(seen.requests) == 1
    assert store.chunk_counts == []
    assert sleep.delays == []


async def test_a_download_that_stalls_mid_body_times_out_as_transient() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "5000"})
        await response.prepare(request)
        await response.write(b"x" * 100)
        await release.wait()
        return response

    try:
        async with (
            serving({("GET", "/f"): stall}) as base,
            client(base, retries=0, read_timeout_seconds=0.05) as upstream,
        ):
            with pytest.raises(TransientUpstreamError, match="Timeout"):
                await upstream.download(f"{base}/f", VerifyingStore(SHA_A))
    finally:
        release.set()


def test_settings_from_config_carry_every_upstream_key(tmp_path: Path) -> None:
    """Every command builds its client from the same keys: TLS and proxy included."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    config = parse_config(
        "[mirror]\ndirectory = /srv/m\nupstream = https://user:pw@index.example\n"
        f"ca-bundle = {bundle}\nproxy = http://proxy.example:3128\ntimeout = 7\n"
        "retries = 2\ncontact = ops@example.org\n"
    )
    settings = UpstreamSettings.from_config(config, max_connections=9)
    assert settings.base_url == "https://user:pw@index.example"
    assert settings.ca_bundle == bundle
    assert settings.proxy_url == "http://proxy.example:3128"
    assert (settings.connect_timeout_seconds, settings.read_timeout_seconds) == (7, 7)
    assert settings.retries == 2
    assert settings.max_connections == 9
    assert "ops@example.org" in settings.user_agent


# --- over a real network: keep-alive, gzip, upstream's "slow down" ------------------------


async def test_pages_are_asked_for_with_gzip_and_decoded() -> None:
    seen = Seen()

    async def gzipped(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(simple_page(serial=3))
        headers = {"Content-Encoding": "gzip", "X-PyPI-Last-Serial": "3"}
        return web.Response(body=body, content_type=SIMPLE_JSON_TYPE, headers=headers)

    async with serving({("GET", "/simple/foo/"): gzipped}, seen) as base, client(base) as upstream:
        detail = await upstream.project_detail(FOO, min_serial=Serial(3))
    assert [dist.filename for dist in detail.files] == ["foo-1.0.tar.gz"]
    assert "gzip" in seen.requests[0][2]["Accept-Encoding"]


async def test_a_big_page_is_parsed_like_a_small_one() -> None:
    files = [
        {
            "filename": f"foo-1.{n}.tar.gz",
            "url": f"../../packages/aa/bb/{n:04d}/foo-1.{n}.tar.gz",
            "hashes": {"sha256": SHA_A},
            "size": 10,
        }
        for n in range(1000)
    ]
    page = {"name": "foo", "files": files, "meta": {"api-version": "1.4", "_last-serial": 3}}
    body = json.dumps(page).encode()
    assert len(body) > 64 * 1024  # parsed off the event loop

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=SIMPLE_JSON_TYPE)

    async with serving({("GET", "/simple/foo/"): big}) as base, client(base) as upstream:
        detail = await upstream.project_detail(FOO, min_serial=None)
    assert len(detail.files) == 1000
    assert detail.files[999].path == "packages/aa/bb/0999/foo-1.999.tar.gz"


async def test_requests_reuse_kept_alive_connections() -> None:
    peers: set[object] = set()

    async def page(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return simple_response(header_serial=3)()

    routes: dict[tuple[str, str], Handler] = {("GET", "/simple/foo/"): page}
    async with serving(routes) as base, client(base, max_connections=4) as upstream:
        for _ in range(5):
            await upstream.project_detail(FOO, min_serial=None)
        await asyncio.gather(*(upstream.project_detail(FOO, min_serial=None) for _ in range(40)))
    # One connection for the five in a row, at most four (the limit) for the forty.
    assert 1 <= len(peers) <= 4


async def test_retry_after_on_a_page_holds_back_every_request_until_it_passes() -> None:
    sleep = RecordingSleep()
    now = [100.0]
    handler = sequence(status(429, {"Retry-After": "7"}), simple_response(header_serial=3))
    async with serving({("GET", "/simple/foo/"): handler}) as base:
        settings = UpstreamSettings(base_url=base)
        upstream = Upstream(settings, sleep=sleep, rng=random.Random(0), clock=lambda: now[0])
        async with upstream:
            await upstream.project_detail(FOO, min_serial=None)
            assert sleep.delays == [7.0]  # the one told waited at least as long
            now[0] += 2.5
            await upstream.project_detail(FOO, min_serial=None)
            assert sleep.delays == [7.0, 4.5]  # the next one waits for the rest
            now[0] += 5.0
            await upstream.project_detail(FOO, min_serial=None)
    assert sleep.delays == [7.0, 4.5]  # over: no more waiting
