"""Which of a tool's runs in a case measured in rounds (large files, verify) the
benchmark records: the median, unless one failed."""

from __future__ import annotations

from benchmarks.measure import Measurement
from benchmarks.run import Sample, representative


def run(wall: float, *, exit_code: int = 0, correct: bool | None = True) -> Sample:
    measurement = Measurement(
        wall_seconds=wall, cpu_seconds=1.0, peak_rss_bytes=1 << 25, exit_code=exit_code
    )
    return Sample(tool="mirror", measurement=measurement, work=2.0, correct=correct, note=f"{wall}")


def test_the_median_run_by_wall_time_is_recorded() -> None:
    assert representative([run(2.0), run(1.2), run(1.5)]).note == "1.5"


def test_of_two_runs_the_slower_is_recorded() -> None:
    assert representative([run(1.2), run(2.0)]).note == "2.0"


def test_a_single_run_is_recorded_as_it_is() -> None:
    assert representative([run(3.0)]).note == "3.0"


def test_a_failed_run_is_recorded_even_when_others_were_fine() -> None:
    chosen = representative([run(1.2), run(9.0, exit_code=1), run(1.3)])
    assert chosen.measurement.exit_code == 1


def test_a_run_that_did_not_find_the_mirror_clean_is_recorded() -> None:
    chosen = representative([run(1.2), run(1.4), run(1.3, correct=False)])
    assert chosen.correct is False


def test_runs_without_a_verdict_are_not_failures() -> None:
    assert representative([run(1.0, correct=None), run(2.0, correct=None)]).note == "2.0"
