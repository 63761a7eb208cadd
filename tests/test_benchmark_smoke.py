"""The benchmark (``benchmarks/run.py``) still runs end to end, so it cannot rot.

Runs it at ``--scale tiny --no-bandersnatch --warm-cache`` (a test must not drop the
machine's page cache) as a user would and checks the JSON it
writes, not the figures: speed is the benchmark's business, never a test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MEASURED_CASES = {
    "large-files",
    "small-projects",
    "small-projects-x10",
    "incremental",
    "scale-noop",
    "scale-behind",
    "scale-root-index",
    "verify",
    "s3-large-files",
    "s3-small-projects",
    "small-25ms",
    "small-100ms",
    "large-capped",
}
NETWORK_CASES = {"small-25ms", "small-100ms", "large-capped"}


@pytest.mark.slow
def test_tiny_benchmark_measures_every_case_including_verify(tmp_path: Path) -> None:
    """Every case gets a measured mirror run with numbers, the large and verify cases
    a ceiling run, the incremental case a correct tree, verify a GB/s figure over the clean
    large-files mirror, the network cases a run at the mirror's shipped defaults (a
    correct tree for the small projects), and every target a pass/fail/n-a status (n/a
    for the bandersnatch ratios)."""
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--scale",
            "tiny",
            "--no-bandersnatch",
            "--warm-cache",
            "--rounds",
            "2",
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "target" in result.stdout
    assert "verify" in result.stdout

    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["scale"] == "tiny"
    assert document["bandersnatch"] is None
    runs = document["runs"]
    mirror_cases = {run["case"] for run in runs if run["tool"] == "mirror"}
    assert mirror_cases >= MEASURED_CASES
    assert {run["tool"] for run in runs} == {"mirror", "ceiling", "mirror-s3"}
    for run in runs:
        assert run["exit_code"] == 0, run
        assert run["wall_seconds"] > 0, run
        assert run["cpu_seconds"] > 0, run
        assert 0 <= run["system_seconds"] <= run["cpu_seconds"], run
        assert run["peak_rss_mib"] > 1, run
        assert isinstance(run["rate"], float), run
    ceilings = {r["case"]: r for r in runs if r["tool"] == "ceiling"}
    assert set(ceilings) == {"large-files", "verify"}, "a download and a read ceiling"
    assert ceilings["verify"]["rate_unit"] == "GB/s"
    for case in ("large-files", "verify"):
        recorded = [r for r in runs if r["case"] == case]
        assert len(recorded) == 2, f"{case}: one recorded run per tool, whatever the rounds"
        assert all("median of 2 runs" in r["note"] for r in recorded), recorded
    assert all(ceiling["rate"] > 0 for ceiling in ceilings.values())
    incremental = next(r for r in runs if r["case"] == "incremental")
    assert incremental["correct"] is True, incremental["note"]

    verify = next(r for r in runs if r["case"] == "verify" and r["tool"] == "mirror")
    assert verify["rate_unit"] == "GB/s"
    assert verify["rate"] > 0
    assert verify["correct"] is True, verify["note"]
    assert "NOT clean" not in verify["note"]
    assert "WARM cache" in verify["note"]
    assert document["not_applicable"] == {}
    network = {r["case"]: r for r in runs if r["case"] in NETWORK_CASES}
    assert all("shipped defaults" in r["note"] for r in network.values()), network
    assert "25 ms per answer" in network["small-25ms"]["note"]
    assert "100 ms per answer" in network["small-100ms"]["note"]
    assert network["small-25ms"]["correct"] is True, network["small-25ms"]["note"]
    assert network["small-100ms"]["correct"] is True, network["small-100ms"]["note"]
    assert "cap 10 MB/s" in network["large-capped"]["note"]
    assert network["large-capped"]["rate_unit"] == "MB/s"
    targets = {t["name"]: t for t in document["targets"]}
    assert all(t["status"] in {"pass", "fail", "n/a", "info"} for t in targets.values())
    assert targets["verify vs bandersnatch"]["status"] == "n/a"
    assert targets["large files vs bandersnatch"]["status"] == "n/a"
    assert targets["large files vs machine ceiling"]["status"] in {"pass", "fail"}
    assert targets["peak RSS of any scale sync"]["status"] in {"pass", "fail"}
    assert targets["small projects at 25 ms vs bandersnatch"]["status"] == "n/a"
    assert targets["small projects at 100 ms vs bandersnatch"]["status"] == "n/a"
    assert targets["large files under a 10 MB/s cap"]["status"] in {"pass", "fail"}
    assert targets["peak RSS of any network sync"]["status"] in {"pass", "fail"}
    assert targets["CPU per small project on loopback"]["status"] in {"pass", "fail"}
