"""The :class:`Storage` protocol and the values its operations take and return.

Kept apart from the package's ``__init__`` so that a backend can import these without
importing the package that imports the backend. See :mod:`mirror.storage`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, Self


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredBlob:
    """What was written: the lowercase hex sha256 and the size in bytes."""

    sha256: str
    size: int
    derived: StoredBlob | None = None
    """The sidecar a :class:`Derivation` wrote from these bytes in the same step; None
    when none was asked for or what it derived did not match."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Derivation:
    """A sidecar to write from a file being stored, in the same step (e.g. a wheel's
    ``.metadata`` read from the wheel): ``derive`` reads the stored file and returns
    the sidecar's bytes (or None), which are written to ``relative`` only when they
    hash to ``sha256``."""

    relative: str
    derive: Callable[[BinaryIO], bytes | None]
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedFile:
    """One file found by :meth:`Storage.list_files`: its path relative to the web root
    and its size in bytes."""

    path: str
    size: int


class Storage(Protocol):
    """The operations the sync engine needs from the served tree.

    A storage is an async context manager: its operations are used inside
    ``async with``, and leaving the block releases what it holds (threads, processes,
    connections). The file-system backend adds ``web_root`` and ``path_of``; they are
    left out here because an object-store backend has no local path to give.
    """

    async def __aenter__(self) -> Self:
        """Make the storage ready for use; return it."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release what the storage holds, once its operations are done."""
        ...

    async def store_stream(
        self,
        relative: str,
        chunks: AsyncIterator[bytes],
        *,
        sha256: str | None,
        size: int | None,
        max_size: int | None = None,
        derivation: Derivation | None = None,
    ) -> StoredBlob:
        """Store the streamed bytes at ``relative`` once they match ``size`` and
        ``sha256`` (each checked when given); ``max_size`` bounds a file of unknown
        size. Raises IntegrityError on a mismatch, leaving the target untouched.
        With a ``derivation``, its sidecar is written right after (see
        :attr:`StoredBlob.derived`)."""
        ...

    async def write_bytes(self, relative: str, data: bytes) -> None:
        """Replace ``relative`` with ``data`` atomically (pages, small files)."""
        ...

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Replace each ``(relative, data)`` atomically, in order, in one step, after
        removing the temps a killed run left in their directories (a project's pages)."""
        ...

    async def write_generated(
        self, relatives: Sequence[str], produce: Callable[[], Iterable[Sequence[bytes]]]
    ) -> None:
        """Replace each of ``relatives`` atomically with bytes ``produce()`` yields while
        they are written, one chunk per file at each step (the root index, never whole
        in memory). ``produce`` runs off the event loop."""
        ...

    async def read_bytes(self, relative: str) -> bytes:
        """Return the content of ``relative``; StorageError when it is missing."""
        ...

    async def delete(self, relative: str) -> None:
        """Remove one file (missing is fine) and any parents it leaves empty, up to
        but not including the top-level directory (``packages``, ``simple``)."""
        ...

    async def delete_tree(self, relative: str) -> None:
        """Remove a directory and everything under it; missing is fine."""
        ...

    async def exists(self, relative: str) -> bool:
        """Whether something exists at ``relative``."""
        ...

    async def remove_stale_temps(self, relative_dir: str) -> int:
        """Remove temporary files a killed run left in one directory; return how many."""
        ...

    async def adopt(
        self, relative: str, *, sha256: str, size: int | None = None
    ) -> StoredBlob | None:
        """Remove the temps a killed run left beside ``relative`` and return the file
        already there when its sha256 (and size, when given) match, else None."""
        ...

    async def adopt_all(
        self, wanted: Sequence[tuple[str, str, int | None]]
    ) -> list[StoredBlob | None]:
        """:meth:`adopt` for each ``(relative, sha256, size)``, in one step."""
        ...

    async def store_derived(
        self,
        relative: str,
        *,
        source: str,
        derive: Callable[[BinaryIO], bytes | None],
        sha256: str,
    ) -> StoredBlob | None:
        """Store at ``relative`` (atomically) the bytes ``derive`` reads from the file
        ``source`` once they hash to ``sha256``; None, writing nothing, when ``derive``
        returns None or the hash differs."""
        ...

    async def hash_file(self, relative: str) -> StoredBlob:
        """Return the sha256 and size of the file at ``relative``."""
        ...

    def list_files(self, top: str) -> AsyncIterator[ListedFile]:
        """Every file under the directory ``top`` (``""``: the whole tree), temps
        included, each once, in an order that is the same from one call to the next
        over the same tree; none when ``top`` is missing. Raises StorageError when the
        tree cannot be read."""
        ...
