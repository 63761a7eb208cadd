"""The network the fake upstream pretends to sit behind: a per-answer latency and a
bandwidth cap shared by every connection.

Loopback answers in microseconds; a real index and its CDN are 10-100 ms away and
deliver at a finite rate. :class:`Network` says how far and how fast;
:class:`TokenBucket` decides, for each chunk of a file body, how long to wait so the
bytes of all connections together stay under the cap. :func:`parse_bandwidth` reads
the command line's ``--bandwidth`` (``50MB/s``).

This module is pure: no I/O, no clock of its own (callers pass the time in).
:class:`~mirror.testing.FakeUpstream` does the waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from humanfriendly import InvalidSize, parse_size

CHUNK_BYTES = 64 * 1024
"""A capped file body is sent in chunks of this size, each paid for before it goes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """How far away and how fast the fake upstream is.

    - ``latency_seconds``: every answer (pages, XML-RPC, files, faults) waits this long
      before its first byte, like one round trip to a distant server;
    - ``bandwidth_bytes_per_second``: a cap on the file bodies (``/packages/``) sent
      per second over all connections together; None leaves them uncapped.
    """

    latency_seconds: float = 0.0
    bandwidth_bytes_per_second: int | None = None

    def __post_init__(self) -> None:
        if self.latency_seconds < 0:
            raise ValueError(f"latency must not be negative: {self.latency_seconds}")
        rate = self.bandwidth_bytes_per_second
        if rate is not None and rate <= 0:
            raise ValueError(f"bandwidth must be positive: {rate}")


class TokenBucket:
    """A token bucket of ``rate_bytes_per_second`` holding at most ``burst_bytes``.

    :meth:`reserve` takes the tokens at once, running into debt when the bucket holds
    too few, and returns how long the caller must wait before sending: callers are
    served in the order they asked, and the bytes sent over any interval exceed
    ``rate x interval`` by at most ``burst_bytes``.
    """

    def __init__(self, rate_bytes_per_second: int, *, burst_bytes: int = CHUNK_BYTES) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError(f"rate must be positive: {rate_bytes_per_second}")
        self.rate_bytes_per_second = rate_bytes_per_second
        self.burst_bytes = burst_bytes
        self._tokens = float(burst_bytes)
        self._last: float | None = None

    def reserve(self, size_bytes: int, now: float) -> float:
        """Take ``size_bytes`` tokens at time ``now`` (seconds, monotonic); returns the
        seconds to wait before sending them (0.0 when the bucket held enough)."""
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            refill = elapsed * self.rate_bytes_per_second
            self._tokens = min(float(self.burst_bytes), self._tokens + refill)
        self._last = now
        self._tokens -= size_bytes
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate_bytes_per_second


def parse_bandwidth(text: str) -> int:
    """Bytes per second from a humanfriendly size with an optional ``/s``: ``50MB/s``
    is 50,000,000, ``50MiB/s`` 52,428,800, ``1G`` 1,000,000,000 (a bare number is
    bytes). Raises ValueError for anything else, or for zero."""
    size = text.strip()
    if size.lower().endswith("/s"):
        size = size[:-2]
    try:
        rate = int(parse_size(size))
    except InvalidSize as exc:
        raise ValueError(f"not a bandwidth: {text!r} (e.g. 50MB/s)") from exc
    if rate <= 0:
        raise ValueError(f"bandwidth must be positive: {text!r}")
    return rate
