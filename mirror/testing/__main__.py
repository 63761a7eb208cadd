"""``python3 -m mirror.testing``: serve a generated corpus on loopback until Ctrl-C.

Prints the base URL on the first line of stdout, so scripts can read it. Refuses any
host that is not a loopback address (exit status 2): the fake upstream must never be
reachable from the network. ``--latency-ms`` and ``--bandwidth`` put it at a
distance (:class:`~mirror.testing.network.Network`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from mirror.testing.corpus import generate_corpus
from mirror.testing.faults import FaultPlan, parse_fault_plan
from mirror.testing.network import Network, parse_bandwidth
from mirror.testing.upstream import FakeUpstream, is_loopback


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """What to serve and where."""

    host: str = "127.0.0.1"
    port: int = 8765
    projects: int = 20
    seed: int = 0
    file_size_bytes: int = 0
    wheels_per_release: int = 1
    faults: FaultPlan | None = None
    network: Network = field(default_factory=Network)


def parse_options(argv: Sequence[str] | None) -> ServeOptions:
    """Parse the command line (``--help`` and bad values exit via argparse)."""
    parser = argparse.ArgumentParser(
        prog="python3 -m mirror.testing",
        description="Serve a fake PyPI with a generated corpus on a loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--projects", type=int, default=20, help="projects to generate")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--file-size-bytes", type=int, default=0, help="payload per file")
    parser.add_argument("--wheels-per-release", type=int, default=1)
    parser.add_argument(
        "--faults",
        metavar="PLAN",
        help="inject faults, e.g. seed=1,error=0.05,truncate=0.02,corrupt=0.01,stale=0.02",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="every answer waits N ms before its first byte (default 0)",
    )
    parser.add_argument(
        "--bandwidth",
        metavar="RATE",
        help="cap on file bytes per second over all connections, e.g. 50MB/s",
    )
    args = parser.parse_args(argv)
    try:
        network = network_from_args(args.latency_ms, args.bandwidth)
    except ValueError as exc:
        parser.error(str(exc))
    faults: FaultPlan | None = None
    if args.faults is not None:
        try:
            faults = parse_fault_plan(args.faults)
        except ValueError as exc:
            parser.error(f"--faults: {exc}")
    return ServeOptions(
        host=args.host,
        port=args.port,
        projects=args.projects,
        seed=args.seed,
        file_size_bytes=args.file_size_bytes,
        wheels_per_release=args.wheels_per_release,
        faults=faults,
        network=network,
    )


def network_from_args(latency_ms: float, bandwidth: str | None) -> Network:
    """The :class:`Network` of ``--latency-ms`` and ``--bandwidth`` (ValueError for
    a negative latency or a bandwidth that is not a positive rate)."""
    rate = None if bandwidth is None else parse_bandwidth(bandwidth)
    return Network(latency_seconds=latency_ms / 1000, bandwidth_bytes_per_second=rate)


async def serve(options: ServeOptions, *, out: TextIO, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or forever), after writing the base URL to ``out``."""
    async with FakeUpstream(
        host=options.host, port=options.port, network=options.network
    ) as upstream:
        generate_corpus(
            upstream,
            projects=options.projects,
            seed=options.seed,
            file_size_bytes=options.file_size_bytes,
            wheels_per_release=options.wheels_per_release,
        )
        upstream.faults = options.faults
        out.write(f"{upstream.base_url}\n")
        out.write(
            f"serving {len(upstream.project_names())} projects at serial {upstream.serial};"
            " Ctrl-C stops\n"
        )
        out.flush()
        await (stop or asyncio.Event()).wait()


def main(
    argv: Sequence[str] | None = None,
    *,
    run: Callable[[Coroutine[Any, Any, None]], object] = asyncio.run,
) -> int:
    """Entry point; returns the exit status (0 after Ctrl-C, 2 for a refused host).
    ``run`` drives the server coroutine (tests pass one that stops it)."""
    options = parse_options(argv)
    if not is_loopback(options.host):
        sys.stderr.write(f"refusing non-loopback host {options.host!r}: use 127.0.0.1 or ::1\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how this server stops
        run(serve(options, out=sys.stdout))
    return 0


if __name__ == "__main__":  # pragma: no cover  # the module is run, not imported, here
    sys.exit(main())
