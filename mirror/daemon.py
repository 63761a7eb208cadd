"""``mirror daemon``: sync, sleep the configured interval (with jitter), repeat.

The loop owns the process's lifetime and its signals; what a pass does is the
caller's (the CLI passes one ``mirror sync`` run, lock included). Contract:

* The mirror directory's lock is taken per pass, by the pass. While a pass runs, a
  ``mirror sync`` is refused (exit code 3); between passes an operator's one-off
  ``mirror sync --project NAME`` may run. A pass that finds the lock held raises
  :class:`~mirror.errors.LockedError`: on the first pass that ends the daemon (a
  second daemon, or a timer-driven sync started beside it, is a set-up mistake to
  surface at once); on a later pass it is logged and the pass waits for the next
  interval.
* A pass that fails with any other :class:`~mirror.errors.MirrorError` (upstream
  unreachable, disk full) is logged and tried again after the next interval; it never
  ends the daemon. :class:`~mirror.errors.ConfigError` does end it.
* SIGTERM and SIGINT stop the daemon: a pass in progress is cancelled at once, so no
  new project starts and in-flight downloads are abandoned (storage removes their
  temp files; every state write is its own transaction, so what was committed stays
  and the rest stays queued); a sleep ends at once. :func:`run_daemon` then returns
  the signal, which the CLI turns into the exit code. Later signals while stopping
  are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final, TypeVar

from humanfriendly import format_timespan

from mirror.errors import ConfigError, LockedError, MirrorError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

STOP_SIGNALS: Final[tuple[signal.Signals, ...]] = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop the daemon cleanly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When the next pass starts: ``interval_seconds`` after the previous one ended,
    give or take up to ``jitter_seconds`` (uniformly), so that many mirrors started
    together do not reach upstream in step."""

    interval_seconds: float
    jitter_seconds: float = 0.0

    def delay_seconds(self, fraction: float) -> float:
        """The pause before the next pass, for ``fraction`` drawn uniformly from [0, 1).

        0 gives ``interval - jitter``, 0.5 the interval itself, and values towards 1
        ``interval + jitter``. A jitter larger than the interval (only possible when
        the schedule is built by hand; the config refuses it) is capped so that the
        pause is never negative.
        """
        jitter = min(self.jitter_seconds, self.interval_seconds)
        return self.interval_seconds + jitter * (2.0 * fraction - 1.0)


async def run_daemon(
    sync_pass: Callable[[], Awaitable[None]],
    *,
    schedule: Schedule,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    fraction: Callable[[], float] = random.random,
    signals: Collection[signal.Signals] = STOP_SIGNALS,
) -> signal.Signals:
    """Run ``sync_pass`` every ``schedule`` until one of ``signals`` arrives.

    ``sync_pass`` is one complete pass (taking and releasing the lock, logging its
    summary). Returns the signal that stopped the daemon. Raises LockedError when the
    first pass finds the mirror directory locked, and ConfigError from any pass; see
    the module docstring for everything else. ``sleep`` and ``fraction`` (the jitter's
    random draw in [0, 1)) are injectable for tests; ``signals`` are installed as
    event-loop signal handlers for the duration of the call (main thread only).
    """
    daemon = _Daemon()
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.add_signal_handler(signum, daemon.request_stop, signum)
    try:
        passes = 0
        while daemon.stopped_by is None:
            passes += 1
            failed = await daemon.unless_stopped(_pass(sync_pass, first=passes == 1))
            if daemon.stopped_by is not None:
                break
            delay = schedule.delay_seconds(fraction())
            if failed:
                logger.warning("next pass in %s", format_timespan(delay))
            else:
                logger.debug("next pass in %s", format_timespan(delay))
            await daemon.unless_stopped(sleep(delay))
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    logger.info("stopped on %s", daemon.stopped_by.name)
    return daemon.stopped_by


async def _pass(sync_pass: Callable[[], Awaitable[None]], *, first: bool) -> bool:
    """Run one pass; returns True when it failed in a way the next pass may fix."""
    try:
        await sync_pass()
    except ConfigError:
        raise
    except LockedError as exc:
        if first:
            raise
        logger.warning("pass skipped: %s", exc)
        return True
    except MirrorError as exc:
        logger.error("sync pass failed: %s", exc)
        return True
    return False


class _Daemon:
    """The stop request shared by the signal handlers and the loop."""

    def __init__(self) -> None:
        self.stopped_by: signal.Signals | None = None
        self._stopping = asyncio.Event()

    def request_stop(self, signum: signal.Signals) -> None:
        """The signal handler: the first signal stops the daemon, later ones are noted."""
        if self.stopped_by is not None:
            logger.info("%s: already stopping", signum.name)
            return
        logger.info("%s: stopping", signum.name)
        self.stopped_by = signum
        self._stopping.set()

    async def unless_stopped(self, work: Awaitable[_T]) -> _T | None:
        """Run ``work`` until it ends or a stop is requested, whichever comes first.

        On a stop, ``work`` is cancelled and waited for (its clean-up runs to the end)
        and None is returned; otherwise its result or exception is passed on. If the
        caller itself is cancelled, ``work`` is cancelled too before that propagates.
        """
        task = asyncio.ensure_future(work)
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            task.cancel()
            # Let the work's clean-up (temp files removed, state store closed) finish.
            await asyncio.wait({task, stopping})
        if task.cancelled():
            return None
        return task.result()
