"""The order ``verify`` hashes files in: the largest of a bounded look-ahead first, so
a big file does not start last; every file once; the report unchanged by the order."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror import verify as verify_module
from mirror.testing import FakeUpstream
from mirror.verify import _Expected, _largest_first, verify
from tests.harness import MirrorRunner

BOTH = frozenset({"html", "json"})


def expected(*sizes: int) -> list[_Expected]:
    return [
        _Expected(f"packages/f{i}", NormalizedName("p"), size, "0" * 64)
        for i, size in enumerate(sizes)
    ]


def sizes(files: list[_Expected]) -> list[int]:
    return [f.size for f in files]


def test_within_the_look_ahead_the_largest_file_comes_first() -> None:
    files = expected(1, 5, 3, 9, 2)
    assert sizes(list(_largest_first(files, lookahead=100))) == [9, 5, 3, 2, 1]


def test_a_short_look_ahead_orders_only_what_it_holds() -> None:
    files = expected(1, 5, 3, 9, 2)
    # Holding two: 1 and 5 -> 5; 1 and 3 -> 3 (9 passes straight through); then 2, 1.
    assert sizes(list(_largest_first(files, lookahead=2))) == [5, 9, 3, 2, 1]


def test_every_file_comes_out_once_and_equal_sizes_keep_their_order() -> None:
    files = expected(*([7] * 5 + [3] * 5))
    ordered = list(_largest_first(files, lookahead=3))
    assert sorted(f.path for f in ordered) == sorted(f.path for f in files)
    sevens = [f.path for f in ordered if f.size == 7]
    assert sevens == [f.path for f in files if f.size == 7]


def test_nothing_in_nothing_out() -> None:
    assert list(_largest_first([], lookahead=4)) == []


async def test_a_look_ahead_smaller_than_the_mirror_still_checks_every_file(
    upstream: FakeUpstream, runner: MirrorRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(6):
        upstream.add_release(f"p{number}", "1.0")
    assert (await runner.sync()).ok
    wheels = sorted((runner.web / "packages").rglob("*.whl"))
    for wheel in wheels[::2]:
        wheel.write_bytes(b"x" * wheel.stat().st_size)
    monkeypatch.setattr(verify_module, "_LOOKAHEAD_FILES", 2)

    outcome = await verify(runner.directory, formats=BOTH, workers=2)

    on_disk = [p for p in (runner.web / "packages").rglob("*") if p.is_file()]
    assert outcome.report.files == len(on_disk) == 18
    corrupt = [p.path for p in outcome.report.problems if p.kind == "corrupt"]
    assert corrupt == sorted(Path(w).relative_to(runner.web).as_posix() for w in wheels[::2])
