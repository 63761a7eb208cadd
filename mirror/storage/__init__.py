"""Where the served tree lives: the :class:`Storage` protocol and its backends.

Storage is the only code that writes the tree clients read, and it keeps one promise:
a client never sees a partial or unverified file. Every write lands under a temporary
name and replaces its target atomically only once it is complete (and, for streamed
files, verified); a failure or cancellation at any point leaves the target as it was
and no temporary file behind.

Paths are relative POSIX paths under the web root (``packages/ab/cd/ef.../f.whl``,
``simple/<project>/index.html``); a backend refuses any that could escape it with
:class:`~mirror.errors.UnsafePathError`. Disk failures surface as
:class:`~mirror.errors.StorageError`, size or hash mismatches as
:class:`~mirror.errors.IntegrityError`.
"""

from __future__ import annotations

from mirror.storage.filesystem import FileSystemStorage
from mirror.storage.protocol import Derivation, ListedFile, Storage, StoredBlob

__all__ = ["Derivation", "FileSystemStorage", "ListedFile", "Storage", "StoredBlob"]
