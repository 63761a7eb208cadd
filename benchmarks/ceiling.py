"""``python -m benchmarks.ceiling CONTROL_URL DEST``: the machine's ceiling for the
large-file case.

A plain streamed download of every large-corpus file from the same fake upstream:
one aiohttp session, ``--concurrency`` files at a time, 1 MiB reads, sha256 and the
disk write of each chunk in a worker thread, fsync and a check of the digest at the
end. No state store, no pages, no retries: what any mirror's downloads could reach
on this machine. Exit status 0 when every file arrived intact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import aiohttp

CHUNK_BYTES = 1024 * 1024


def _write_chunk(out: BinaryIO, digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    out.write(chunk)


def _finish(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


async def _download(session: aiohttp.ClientSession, url: str, sha256: str, target: Path) -> bool:
    digest = hashlib.sha256()
    out = await asyncio.to_thread(target.open, "wb")
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                await asyncio.to_thread(_write_chunk, out, digest, chunk)
    finally:
        await asyncio.to_thread(_finish, out)
    return digest.hexdigest() == sha256


async def download_all(control: str, dest: Path, concurrency: int) -> int:
    """Download the large corpus into ``dest``; returns how many files failed."""
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{control}/files") as response:
            files = await response.json()
        results: list[bool] = []

        async def one(index: int, url: str, sha256: str) -> None:
            async with limit:
                results.append(await _download(session, url, sha256, dest / f"{index:04d}"))

        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(files):
                group.create_task(one(index, str(item["url"]), str(item["sha256"])))
    return results.count(False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the exit status says whether every file arrived intact."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling")
    parser.add_argument("control", help="the launcher's control URL")
    parser.add_argument("dest", type=Path, help="directory to download into")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    failed = asyncio.run(download_all(args.control, args.dest, args.concurrency))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
