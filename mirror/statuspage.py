"""The status page of ``mirror serve`` (``/status/``): plain HTML and an inline SVG chart.

:func:`render_status_page` is pure: a :class:`~mirror.status.MirrorStatus` and the run
history in, HTML bytes out (no script, no external resource). :func:`status_routes`
serves it, reading the state store opened read-only per request in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from humanfriendly import format_size, format_timespan

from mirror.errors import MirrorError
from mirror.state import STATE_NAME, RunRecord, StateStore
from mirror.status import MirrorStatus, read_status

_T = TypeVar("_T")

HISTORY_SAMPLES = 200
"""Runs shown in the size chart (the newest ones)."""

FAILURES_SHOWN = 50
"""Failing projects listed on the page; the count covers all of them."""

# Chart geometry, in SVG user units.
_WIDTH = 640
_HEIGHT = 240
_LEFT = 80
_RIGHT = 20
_TOP = 20
_BOTTOM = 40

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 0.2em 1em 0.2em 0; vertical-align: top; }
th { white-space: nowrap; }
.bad { color: #a00; } .good { color: #070; }
svg text { font-size: 12px; fill: #444; }
"""


def _size(count: int) -> str:
    return str(format_size(count, binary=True))


def _date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp))


def render_size_chart(runs: Sequence[RunRecord]) -> str:
    """An SVG line chart of the mirror's size per run: one polyline point per run,
    labelled axes (size on the left, first and last date below)."""
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    largest = max((run.totals.bytes for run in runs), default=0) or 1
    first = runs[0].finished if runs else 0.0
    span = (runs[-1].finished - first if runs else 0.0) or 1.0
    points = " ".join(
        f"{_LEFT + (run.finished - first) / span * plot_width:.1f},"
        f"{_TOP + plot_height - run.totals.bytes / largest * plot_height:.1f}"
        for run in runs
    )
    bottom = _TOP + plot_height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}"'
        f' viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="mirror size over time">',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#444"/>',
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_WIDTH - _RIGHT}" y2="{bottom}" stroke="#444"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">'
        f"{escape(_size(largest if runs else 0))}</text>",
        f'<text x="{_LEFT - 6}" y="{bottom + 4}" text-anchor="end">0 bytes</text>',
        f'<text x="{_LEFT + plot_width / 2}" y="{_HEIGHT - 4}" text-anchor="middle">'
        "date (UTC)</text>",
    ]
    if runs:
        parts.append(
            f'<text x="{_LEFT}" y="{bottom + 18}" text-anchor="start">'
            f"{_date(runs[0].finished)}</text>"
        )
        parts.append(
            f'<text x="{_WIDTH - _RIGHT}" y="{bottom + 18}" text-anchor="end">'
            f"{_date(runs[-1].finished)}</text>"
        )
        parts.append(f'<polyline fill="none" stroke="#1f6fb2" stroke-width="2" points="{points}"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_status_page(status: MirrorStatus, runs: Sequence[RunRecord]) -> bytes:
    """The status page as UTF-8 HTML: serial, size, last run, failing projects and
    the size chart of ``runs`` (oldest first)."""
    totals = status.totals
    rows: list[tuple[str, str]] = [
        ("Mirror serial", "none" if status.mirror_serial is None else str(status.mirror_serial)),
    ]
    if status.upstream_serial is not None:
        rows.append(("Upstream serial", f"{status.upstream_serial} (lag {status.lag})"))
    rows.append(
        ("Size", f"{totals.projects} projects, {totals.files} files, {_size(totals.bytes)}")
    )
    since = status.seconds_since_last_success
    rows.append(
        (
            "Last success",
            "never" if since is None else f"{format_timespan(round(since))} ago",
        )
    )
    run = status.last_run
    if run is None:
        rows.append(("Last run", "none recorded"))
    else:
        rows.append(
            (
                "Last run",
                f"{'ok' if run.ok else 'incomplete'}, ended {_date(run.finished)} UTC: "
                f"{run.projects_synced} synced, {run.projects_removed} removed, "
                f"{run.projects_failed} failed, {_size(run.bytes_downloaded)} downloaded",
            )
        )
    rows.append(("Queued", f"{status.pending} project(s)"))
    table = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    failures = status.failures
    if failures:
        items = "\n".join(
            f"<tr><td>{escape(item.name)}</td><td>{item.attempts}</td>"
            f"<td>{_date(item.next_attempt)}</td><td>{escape(item.last_error or '')}</td></tr>"
            for item in failures[:FAILURES_SHOWN]
        )
        failing = (
            f'<h2 class="bad">Failing projects ({len(failures)})</h2>\n<table>\n'
            "<tr><th>project</th><th>attempts</th><th>next retry (UTC)</th>"
            f"<th>last error</th></tr>\n{items}\n</table>"
        )
    else:
        failing = '<h2 class="good">No failing projects</h2>'
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mirror status</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Mirror status</h1>
<table>
{table}
</table>
{failing}
<h2>Size over time</h2>
{render_size_chart(runs)}
</body>
</html>
"""
    return page.encode()


async def read_state_for_request(directory: Path, read: Callable[[StateStore], _T]) -> _T:
    """``read(state)`` on the state store of the mirror ``directory``, opened read-only
    in a worker thread, for a request handler of ``mirror serve``. Raises
    HTTPServiceUnavailable (503, with the reason) while there is no state store yet, or
    one this version cannot read."""

    def run() -> _T:
        with StateStore.open_read_only(directory / STATE_NAME) as state:
            return read(state)

    try:
        return await asyncio.to_thread(run)
    except MirrorError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}\n") from exc


def status_routes(directory: Path, *, clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    """``GET /status/`` (and ``/status``, redirected) for ``mirror serve``: the status
    page of the mirror ``directory``; 503 while it has no readable state store."""

    def render(state: StateStore) -> bytes:
        status = read_status(state, now=clock())
        return render_status_page(status, state.runs(limit=HISTORY_SAMPLES))

    async def page(request: web.Request) -> web.Response:
        del request
        body = await read_state_for_request(directory, render)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def redirect(request: web.Request) -> web.Response:
        del request
        # Relative, so the page works wherever the routes are mounted.
        raise web.HTTPMovedPermanently("status/")

    return [web.get("/status/", page), web.get("/status", redirect)]
