"""Prometheus metrics of the mirror, in the text exposition format (version 0.0.4).

:func:`render_metrics` turns a :class:`~mirror.status.MirrorStatus` into the text;
the sync writes it to the ``metrics-file`` at the end of each run
(:func:`write_metrics_file`, atomically, for node_exporter's textfile collector), and
``mirror serve`` can answer ``/metrics`` with it (:func:`metrics_routes`).

Every metric is prefixed ``mirror_`` and has HELP and TYPE lines; a metric whose value
is unknown (no run yet, no upstream serial seen) is left out rather than given a
made-up value.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from mirror.errors import StorageError
from mirror.state import StateStore
from mirror.status import MirrorStatus, read_status
from mirror.statuspage import read_state_for_request

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of the text exposition format."""


def render_metrics(status: MirrorStatus) -> str:
    """The metrics for ``status`` in the Prometheus text format, ending with a newline."""
    run = status.last_run
    success = status.last_success
    families: list[tuple[str, str, str, float | None]] = [
        ("mirror_serial", "gauge", "The mirror's serial.", status.mirror_serial),
        (
            "mirror_upstream_serial",
            "gauge",
            "Upstream's serial as the last run that asked saw it.",
            status.upstream_serial,
        ),
        ("mirror_lag_serials", "gauge", "Serials the mirror is behind upstream.", status.lag),
        ("mirror_projects", "gauge", "Projects in the mirror.", status.totals.projects),
        ("mirror_files", "gauge", "Distribution files in the mirror.", status.totals.files),
        (
            "mirror_bytes",
            "gauge",
            "Bytes of the mirror's files and their metadata files.",
            status.totals.bytes,
        ),
        ("mirror_pending_projects", "gauge", "Projects queued for a sync.", status.pending),
        (
            "mirror_failing_projects",
            "gauge",
            "Projects that failed and wait for a retry.",
            len(status.failures),
        ),
        (
            "mirror_last_success_timestamp_seconds",
            "gauge",
            "Unix time the last successful sync ended.",
            None if success is None else success.finished,
        ),
        (
            "mirror_last_run_timestamp_seconds",
            "gauge",
            "Unix time the last sync ended.",
            None if run is None else run.finished,
        ),
        (
            "mirror_last_run_duration_seconds",
            "gauge",
            "How long the last sync took.",
            None if run is None else run.finished - run.started,
        ),
        (
            "mirror_last_run_success",
            "gauge",
            "1 when every project the last sync attempted is in step, else 0.",
            None if run is None else int(run.ok),
        ),
        (
            "mirror_downloaded_bytes_total",
            "counter",
            "Bytes downloaded by all syncs.",
            status.downloaded_bytes_total,
        ),
    ]
    lines: list[str] = []
    for name, kind, help_text, value in families:
        if value is None:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """Integers without a fraction, other values as Python's shortest repr."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_metrics_file(path: Path, state: StateStore, *, now: float) -> None:
    """Write the metrics of ``state`` to ``path`` atomically (temp file beside it,
    then rename), so a collector never reads half a file. Blocking.

    Raises StorageError when the file cannot be written.
    """
    text = render_metrics(read_status(state, now=now))
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(f"cannot write metrics file {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        # mkstemp makes the file 0600; a collector running as another user must read it.
        Path(temp).chmod(0o644)
        Path(temp).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise StorageError(f"cannot write metrics file {path}: {exc.strerror}") from exc


def metrics_routes(
    directory: Path, *, clock: Callable[[], float] = time.time
) -> list[web.RouteDef]:
    """``GET /metrics`` for ``mirror serve``: the metrics of the mirror ``directory``,
    read from its state store, opened read-only per request in a worker thread."""

    def render(state: StateStore) -> str:
        return render_metrics(read_status(state, now=clock()))

    async def handle(request: web.Request) -> web.Response:
        del request
        # No state store yet, or one this version cannot read: 503, no metrics to give.
        text = await read_state_for_request(directory, render)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    return [web.get("/metrics", handle)]
