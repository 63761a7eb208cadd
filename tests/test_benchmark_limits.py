"""The benchmark's time limit for bandersnatch: a stopped run is reported with what it
finished, and does not fail the benchmark."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bandersnatch
from benchmarks.measure import Measurement
from benchmarks.run import PRESETS, Bench, Results, parse_args


def test_finished_projects_counts_the_project_pages_written(tmp_path: Path) -> None:
    simple = tmp_path / "web" / "simple"
    for name in ("done-a", "done-b", "in-flight"):
        (simple / name).mkdir(parents=True)
    (simple / "done-a" / "index.html").write_text("<html></html>", encoding="utf-8")
    (simple / "done-b" / "index.html").write_text("<html></html>", encoding="utf-8")
    assert bandersnatch.finished_projects(tmp_path) == 2


def test_finished_projects_of_a_sync_stopped_before_any_page_is_zero(tmp_path: Path) -> None:
    assert bandersnatch.finished_projects(tmp_path) == 0


def test_a_stopped_run_is_recorded_with_the_work_done_and_a_note(tmp_path: Path) -> None:
    results = Results(scale="tiny", started="now", bandersnatch="8.2.0")
    bench = Bench(
        preset=PRESETS["tiny"],
        workdir=tmp_path,
        results=results,
        bandersnatch_script=None,
        workers=10,
    )
    stopped = Measurement(
        wall_seconds=900.2, cpu_seconds=880.0, peak_rss_bytes=1 << 27, exit_code=-15, stopped=True
    )
    bench.record("small-projects-x10", "bandersnatch", stopped, work=45_000, unit="projects/s")
    (run,) = results.runs
    assert run.stopped
    assert run.rate == round(45_000 / 900.2, 3)
    assert run.note == "stopped at its time limit, after 900.2 s, with 45000 done"


def test_the_limit_defaults_to_the_full_scale_preset_and_can_be_changed() -> None:
    assert PRESETS["full"].bandersnatch_limit_seconds == 900
    assert PRESETS["small"].bandersnatch_limit_seconds is None
    assert parse_args(["--bandersnatch-limit", "60"]).bandersnatch_limit == 60
