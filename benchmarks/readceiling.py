"""``python -m benchmarks.readceiling DIR``: the machine's ceiling for the verify case.

Reads and sha256-hashes every file under ``DIR``, ``--threads`` files at a time, in
1 MiB blocks with ``POSIX_FADV_SEQUENTIAL``: no state store, no pages, no comparison
with anything. Run on the large-files mirror right after the page cache is dropped,
it is what any verify of that tree could reach on this disk. Exit status 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BLOCK_BYTES = 1024 * 1024


def hash_file(path: Path) -> str:
    """The sha256 of ``path``, read sequentially (hashlib lets go of the GIL)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while block := file.read(BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path, threads: int) -> int:
    """Hash every file under ``root``, largest first; returns how many."""
    files = [Path(top) / name for top, _, names in os.walk(root) for name in names]
    files.sort(key=lambda path: path.stat().st_size, reverse=True)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return len(list(pool.map(hash_file, files)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readceiling")
    parser.add_argument("root", type=Path, help="the tree to read (e.g. <mirror>/web/packages)")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    hash_tree(args.root, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
