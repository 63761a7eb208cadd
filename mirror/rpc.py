"""``mirror serve`` as an upstream: PyPI's mirroring XML-RPC methods, from our journal.

``POST /pypi`` (and ``/pypi/``, ``/RPC2``, as Warehouse) answers
``changelog_last_serial``, ``changelog_since_serial`` and ``list_packages_with_serial``
from the state store's journal (:mod:`mirror.state.journal`): what changed in this
mirror, removals included, under the mirror's own serials. A serial older than the
journal keeps gets the fault :attr:`~mirror.errors.JournalPrunedError.FAULT_CODE`, on
which a follower reads the full listing instead; an unknown method or bad arguments get
Warehouse's faults (-32601, -32602). The state store is opened read-only per request,
in a worker thread; without one the answer is 503.

:func:`journal_serial_reader` gives the server the serial to send as
``X-PyPI-Last-Serial`` with each project's pages: the project's newest journal serial,
never below the upstream serial its page carries, so that a follower told about the
project at that serial (by our changelog, our listing or our root index) takes the
page as fresh.
"""

from __future__ import annotations

import asyncio
import logging
import xmlrpc.client
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final
from xml.parsers.expat import ExpatError

from aiohttp import web
from packaging.utils import NormalizedName

from mirror.errors import JournalPrunedError, MirrorError
from mirror.models import Serial
from mirror.state import STATE_NAME, StateStore
from mirror.statuspage import read_state_for_request

logger = logging.getLogger(__name__)

XMLRPC_PATHS: Final = ("/pypi", "/pypi/", "/RPC2")
"""Where the endpoint answers (Warehouse's paths)."""

MAX_REQUEST_BYTES: Final = 64 * 1024
"""Largest XML-RPC request read: the three methods take one integer at most."""

_Result = int | list[list[str | int | None]] | dict[str, int] | xmlrpc.client.Fault


def xmlrpc_routes(directory: Path) -> list[web.RouteDef]:
    """``POST /pypi`` (and ``/pypi/``, ``/RPC2``) over the mirror ``directory``'s journal."""

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_REQUEST_BYTES, actual_size=request.content_length
            )
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_REQUEST_BYTES, actual_size=len(body))
        try:
            params, method = xmlrpc.client.loads(body)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError):
            raise web.HTTPBadRequest(text="not an XML-RPC request\n") from None
        payload = await read_state_for_request(
            directory, lambda state: _marshal(call(state, method, params))
        )
        return web.Response(body=payload, content_type="text/xml", charset="utf-8")

    return [web.post(path, handle) for path in XMLRPC_PATHS]


def call(state: StateStore, method: str | None, params: tuple[object, ...]) -> _Result:
    """Answer one XML-RPC call from ``state`` (blocking); a Fault, returned, for a call
    that cannot be answered."""
    match method, params:
        case "changelog_last_serial", ():
            return int(state.journal_last_serial())
        case "changelog_since_serial", (int() as since,) if not isinstance(since, bool):
            try:
                rows = state.journal_since(Serial(since))
            except JournalPrunedError as exc:
                return xmlrpc.client.Fault(JournalPrunedError.FAULT_CODE, str(exc))
            return [[r.display_name, None, int(r.time), r.action, int(r.serial)] for r in rows]
        case "list_packages_with_serial", ():
            return {name: int(serial) for name, serial in state.journal_listing().items()}
        case (
            ("changelog_last_serial" | "changelog_since_serial" | "list_packages_with_serial"),
            _,
        ):
            return xmlrpc.client.Fault(
                -32602, f"client error; {method}: unexpected arguments {list(params)!r}"
            )
        case _:
            return xmlrpc.client.Fault(-32601, "server error; requested method not found")


def _marshal(result: _Result) -> bytes:
    if isinstance(result, xmlrpc.client.Fault):
        return xmlrpc.client.dumps(result, methodresponse=True).encode()
    return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()


def journal_serial_reader(
    directory: Path,
) -> Callable[[NormalizedName], Awaitable[Serial | None]]:
    """The project's newest journal serial in the mirror ``directory``'s state store,
    read (read-only, in a worker thread) when a page is served; None when the store is
    missing or unreadable or does not hold the project: the page goes without the
    header then."""

    def read(name: NormalizedName) -> Serial | None:
        with StateStore.open_read_only(directory / STATE_NAME) as state:
            return state.journal_serial(name)

    async def serial_of(name: NormalizedName) -> Serial | None:
        try:
            return await asyncio.to_thread(read, name)
        except MirrorError as exc:
            logger.debug("no journal serial for %s: %s", name, exc)
            return None

    return serial_of
