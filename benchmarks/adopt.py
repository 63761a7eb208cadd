"""``mirror adopt`` measured: a real bandersnatch mirror of the large-files corpus taken
over, hashing every file and with ``--trust-sizes``.

    python -m benchmarks.adopt [--large-factor 1.0] [--workdir DIR] [--rounds 3]

bandersnatch mirrors the large corpus (the benchmark's fake upstream) once into
``DIR/adopt-bander``; its ``web/simple`` is kept aside and put back before each
adoption, and ``mirror.db`` removed, so every run adopts the same bandersnatch tree.
The page cache is dropped before each run (when the kernel lets us), so the hashing
reads from disk. Prints one JSON line per run and a Markdown table: wall seconds,
GB/s hashed (bytes of the files adopted / wall), files/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import bandersnatch
from benchmarks.measure import MIB, run_measured
from benchmarks.run import GB, REPO, drop_page_cache, launch


def _adopt_once(directory: Path, bconf: Path, log: Path, *, trust_sizes: bool) -> dict[str, object]:
    pristine = directory.parent / "adopt-simple.orig"
    shutil.rmtree(directory / "web" / "simple")
    shutil.copytree(pristine, directory / "web" / "simple", symlinks=True)
    for leftover in (directory / "mirror.db", directory.parent / "adopt-mirror.conf"):
        leftover.unlink(missing_ok=True)
    for extra in ("-wal", "-shm"):
        (directory / f"mirror.db{extra}").unlink(missing_ok=True)
    cold = drop_page_cache()
    argv = [sys.executable, "-m", "mirror", "adopt", "-q", "-c"]
    argv += [str(directory.parent / "adopt-mirror.conf"), str(bconf)]
    if trust_sizes:
        argv.append("--trust-sizes")
    measured = run_measured(argv, log=log, cwd=REPO)
    files = [p for p in (directory / "web" / "packages").rglob("*") if p.is_file()]
    data = [p for p in files if not p.name.endswith(".metadata")]
    size = sum(p.stat().st_size for p in files)
    wall = measured.wall_seconds
    return {
        "mode": "--trust-sizes" if trust_sizes else "hash",
        "exit": measured.exit_code,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(measured.cpu_seconds, 3),
        "gb_per_second": round(size / GB / wall, 3) if wall else 0.0,
        "files_per_second": round(len(data) / wall, 1) if wall else 0.0,
        "files": len(data),
        "bytes": size,
        "peak_rss_mib": round(measured.peak_rss_bytes / MIB, 1),
        "cold_cache": cold,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adopt", description=__doc__)
    parser.add_argument("--large-factor", type=float, default=1.0)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mirror-bench-adopt"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "adopt.log"
    script = bandersnatch.ensure_venv()
    if script is None:
        sys.stderr.write("bandersnatch 8.2 could not be installed\n")
        return 2
    directory = workdir / "adopt-bander"
    bconf = workdir / "adopt-bander.conf"
    if not (workdir / "adopt-simple.orig").exists():
        shutil.rmtree(directory, ignore_errors=True)
        with launch("large", count=0, log=log, large_factor=args.large_factor) as up:
            bandersnatch.write_config(
                bconf, directory=directory, master=up.ready.upstream, workers=4
            )
            made = run_measured([str(script), "-c", str(bconf), "mirror"], log=log, cwd=workdir)
            if made.exit_code != 0:
                sys.stderr.write(f"bandersnatch failed; see {log}\n")
                return 1
        shutil.copytree(directory / "web" / "simple", workdir / "adopt-simple.orig", symlinks=True)
    runs: list[dict[str, object]] = []
    for _ in range(args.rounds):
        for trust_sizes in (False, True):
            run = _adopt_once(directory, bconf, log, trust_sizes=trust_sizes)
            sys.stdout.write(json.dumps(run) + "\n")
            runs.append(run)
    if not runs:  # --rounds 0: the bandersnatch tree made, nothing measured
        return 0
    sys.stdout.write(
        "\n| mode | wall s (median) | GB/s hashed | files/s | peak RSS MiB | cache |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    for mode in ("hash", "--trust-sizes"):
        mine = [r for r in runs if r["mode"] == mode]
        wall = statistics.median(float(str(r["wall_seconds"])) for r in mine)
        chosen = min(mine, key=lambda r: abs(float(str(r["wall_seconds"])) - wall))
        gbps = chosen["gb_per_second"] if mode == "hash" else "(sizes only)"
        sys.stdout.write(
            f"| {mode} | {wall:.2f} | {gbps} | {chosen['files_per_second']} | "
            f"{chosen['peak_rss_mib']} | {'cold' if chosen['cold_cache'] else 'warm'} |\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
