"""A file-system storage that tests can step into around each streamed store.

Tests that fail, pause or count stores override the hooks below instead of
``store_stream`` itself, so the storage signature is written once here."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mirror.storage import Derivation, FileSystemStorage, StoredBlob


class HookedStorage(FileSystemStorage):
    """:class:`FileSystemStorage` with :meth:`before_store` and :meth:`after_store`."""

    async def before_store(
        self, relative: str, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """Called before ``relative`` is stored; returns the chunks to store (raise to
        refuse the file)."""
        return chunks

    async def after_store(self, relative: str, blob: StoredBlob) -> None:
        """Called once ``relative`` has landed."""

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
        chunks = await self.before_store(relative, chunks)
        blob = await super().store_stream(
            relative, chunks, sha256=sha256, size=size, max_size=max_size, derivation=derivation
        )
        await self.after_store(relative, blob)
        return blob
