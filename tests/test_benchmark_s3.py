"""The benchmark's S3 case (``python -m benchmarks.run --only s3``) still runs end to
end at tiny scale: both backends synced from the same corpora in the same run, the
bucket on a moto server of the benchmark's own. Checks the JSON, not the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_s3_case_measures_both_backends_on_both_corpora(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    argv = [sys.executable, "-m", "benchmarks.run", "--scale", "tiny", "--no-bandersnatch"]
    argv += ["--warm-cache", "--only", "s3", "--rounds", "2", "--output", str(output)]
    argv += ["--workdir", str(tmp_path / "work")]
    result = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

    document = json.loads(output.read_text(encoding="utf-8"))
    runs = {(run["case"], run["tool"]): run for run in document["runs"]}
    assert set(runs) == {
        ("s3-large-files", "mirror"),
        ("s3-large-files", "mirror-s3"),
        ("s3-small-projects", "mirror"),
        ("s3-small-projects", "mirror-s3"),
    }
    for run in runs.values():
        assert run["exit_code"] == 0, run
        assert run["rate"] > 0, run
        assert run["peak_rss_mib"] > 1, run
    for case, unit in (("s3-large-files", "MB/s"), ("s3-small-projects", "projects/s")):
        disk, bucket = runs[case, "mirror"], runs[case, "mirror-s3"]
        assert disk["rate_unit"] == bucket["rate_unit"] == unit
        assert disk["work"] == bucket["work"], "the same corpus for both backends"
        assert "file system" in disk["note"]
        assert bucket["correct"] is True, bucket["note"]
        assert "under packages/" in bucket["note"]
    assert "median of 2 runs" in runs["s3-large-files", "mirror-s3"]["note"]
    # The ratios, as figures without a goal.
    figures = {t["name"]: t for t in document["targets"] if t["status"] == "info"}
    assert set(figures) == {
        "S3 large files: MB/s vs file system",
        "S3 large files: peak RSS vs file system",
        "S3 small projects: projects/s vs file system",
        "S3 small projects: peak RSS vs file system",
    }
    assert all(t["measured"].endswith("x") for t in figures.values())
    # Only the state store stays on disk: the tree went into the bucket.
    assert not (tmp_path / "work" / "s3-large-bucket" / "web").exists()
    assert (tmp_path / "work" / "s3-large-bucket" / "mirror.db").exists()
