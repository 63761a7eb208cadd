"""Seeded fault plans for the fake upstream: which request gets which fault.

A :class:`FaultPlan` gives a rate for each kind of trouble a real index and its CDN
produce. Whether a request is hit is decided by a hash of ``(seed, path, n)``, where
``n`` counts the earlier requests for the same path: a plan is reproducible from its
seed even when concurrent workers interleave their requests differently, because
each path is asked for by one worker at a time.

This module is pure: no I/O, no aiohttp. :class:`~mirror.testing.FakeUpstream` applies
the decisions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Final, Literal

FaultKind = Literal[
    "error",
    "throttle",
    "reset",
    "truncate",
    "corrupt",
    "endless",
    "stale",
    "stale_404",
    "xmlrpc_fault",
    "rate_limit",
]
"""What one request suffers (slowness is drawn separately and adds to any of these)."""

RequestKind = Literal["xmlrpc", "page", "file", "other"]
"""The faults that make sense depend on what is asked for: only files are corrupted,
only project pages are stale, only XML-RPC answers carry faults."""

_APPLICABLE: Final[dict[FaultKind, frozenset[RequestKind]]] = {
    "error": frozenset({"xmlrpc", "page", "file", "other"}),
    "throttle": frozenset({"xmlrpc", "page", "file", "other"}),
    "reset": frozenset({"xmlrpc", "page", "file", "other"}),
    "truncate": frozenset({"xmlrpc", "page", "file", "other"}),
    "corrupt": frozenset({"file"}),
    "endless": frozenset({"file"}),
    "stale": frozenset({"page"}),
    "stale_404": frozenset({"page"}),
    "xmlrpc_fault": frozenset({"xmlrpc"}),
    "rate_limit": frozenset({"xmlrpc"}),
}
_UNIT: Final = float(1 << 64)

ENDLESS_LENGTH: Final = 1 << 30
"""The ``Content-Length`` an endless answer announces (1 GiB), whatever the file's size."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Per-request fault rates, each the probability (0 to 1) that a request the fault
    applies to gets it; the rates of one request kind must add up to at most 1.

    - ``error_rate``: an HTTP 500, 502, 503 or 504 with an empty body;
    - ``throttle_rate``: HTTP 429 with ``Retry-After: <retry_after_seconds>``;
    - ``reset_rate``: the connection is closed before any answer;
    - ``truncate_rate``: the full ``Content-Length`` is announced, about half the body
      is sent, then the connection is closed;
    - ``corrupt_rate``: a file (``/packages/``) is served with one byte altered;
    - ``endless_rate``: a file is answered with a ``Content-Length`` of
      :data:`ENDLESS_LENGTH` (not its size) and a body that trickles on until the
      client hangs up, as a broken CDN node might;
    - ``stale_rate``: a project page (simple or JSON API) shows the project as it was
      before its latest journal row, with that older ``X-PyPI-Last-Serial``, as a
      CDN that missed a purge would (not for a project that had no earlier state:
      that is ``stale_404_rate``'s);
    - ``stale_404_rate``: a project page answers 404 although the project exists, as
      a CDN that cached a miss would (for a new project, and now and then for an
      existing one); a cache-busting query is another request, drawn anew;
    - ``xmlrpc_fault_rate``: an XML-RPC ``-32403 server error; service unavailable``;
    - ``rate_limit_rate``: Warehouse's XML-RPC rate-limit fault (``-32500
      HTTPTooManyRequests: ... Limit may reset in <retry_after_seconds> seconds.``);
    - ``slow_rate``: independently of the above, the answer waits ``slow_seconds``
      before it starts.
    """

    seed: int = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    corrupt_rate: float = 0.0
    endless_rate: float = 0.0
    stale_rate: float = 0.0
    stale_404_rate: float = 0.0
    xmlrpc_fault_rate: float = 0.0
    rate_limit_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    retry_after_seconds: int = 1

    def __post_init__(self) -> None:
        for kind in _APPLICABLE:
            rate = self.rate_of(kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{kind}_rate must be between 0 and 1, got {rate}")
        if not 0.0 <= self.slow_rate <= 1.0:
            raise ValueError(f"slow_rate must be between 0 and 1, got {self.slow_rate}")
        if self.slow_seconds < 0 or self.retry_after_seconds < 0:
            raise ValueError("slow_seconds and retry_after_seconds must not be negative")
        for request in ("xmlrpc", "page", "file", "other"):
            total = sum(self.rate_of(k) for k, on in _APPLICABLE.items() if request in on)
            if total > 1.0:
                raise ValueError(f"the fault rates for {request} requests add up to {total} > 1")

    def rate_of(self, kind: FaultKind) -> float:
        """The rate of one fault kind."""
        rate: float = getattr(self, f"{kind}_rate")
        return rate

    def fault_for(self, path: str, attempt: int, request: RequestKind) -> FaultKind | None:
        """The fault the ``attempt``-th request (from 0) for ``path`` suffers, if any."""
        draw = _draw(self.seed, "fault", path, attempt)
        edge = 0.0
        for kind, applies_to in _APPLICABLE.items():
            if request not in applies_to:
                continue
            edge += self.rate_of(kind)
            if draw < edge:
                return kind
        return None

    def is_slow(self, path: str, attempt: int) -> bool:
        """Whether that request waits ``slow_seconds`` before its answer."""
        return _draw(self.seed, "slow", path, attempt) < self.slow_rate

    def pick(self, path: str, attempt: int, choices: int) -> int:
        """A reproducible choice in ``range(choices)`` for that request (which 5xx)."""
        return int(_draw(self.seed, "pick", path, attempt) * choices)


def parse_fault_plan(text: str) -> FaultPlan:
    """Parse ``seed=3,error_rate=0.05,truncate_rate=0.02`` (the ``--faults`` option).

    Keys are :class:`FaultPlan` field names (``_rate`` may be left out:
    ``error=0.05``). Raises ValueError naming the bad key or value.
    """
    names = {f.name for f in fields(FaultPlan)}
    values: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in names and f"{key}_rate" in names:
            key = f"{key}_rate"
        if not sep or key not in names:
            raise ValueError(f"unknown fault setting {item!r}; known: {', '.join(sorted(names))}")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ValueError(f"{key}: not a number: {raw.strip()!r}") from None
    seed = int(values.pop("seed", 0))
    retry_after = int(values.pop("retry_after_seconds", 1))
    return FaultPlan(seed=seed, retry_after_seconds=retry_after, **values)


def _draw(seed: int, purpose: str, path: str, attempt: int) -> float:
    """A uniform number in [0, 1) determined by its arguments alone."""
    key = f"{seed}\0{purpose}\0{path}\0{attempt}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT
