"""The mirror directory's run lock: one sync at a time, for the whole run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from mirror.errors import LockedError, StorageError
from mirror.layout import lock_path

logger = logging.getLogger(__name__)


@contextmanager
def mirror_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for the duration of the block.

    Raises LockedError at once (no waiting) when another process holds it, and
    StorageError when the lock file cannot be created.
    """
    path = lock_path(directory)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise LockedError(
            f"another mirror run holds {path}; it is still running (or wait for it to end)"
        ) from exc
    except OSError as exc:
        raise StorageError(f"cannot create lock file {path}: {exc.strerror}") from exc
    logger.debug("locked %s", path)
    try:
        yield
    finally:
        lock.release()
