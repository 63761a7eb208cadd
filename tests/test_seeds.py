"""The state store's seeds: projects added on demand, locked files upstream lacks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.filters.lockfiles import LockedFile
from mirror.state import DemandedProject, StateStore
from mirror.state.keys import LOCKED_MISSING_META_KEY, ON_DEMAND_META_KEY

A = NormalizedName("a")
B = NormalizedName("b")


def locked(name: NormalizedName, filename: str) -> LockedFile:
    return LockedFile(name=name, version="1", filename=filename, sha256="0" * 64)


def test_on_demand_names_are_added_once_counted_and_dropped(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        state.add_on_demand(B, now=2.0)
        state.add_on_demand(A, now=1.0)
        state.add_on_demand(A, now=5.0)  # already there: the first time stays
        state.count_on_demand_requests(A, 3)
        state.count_on_demand_requests(A, 2)
        state.count_on_demand_requests(NormalizedName("c"), 1)  # not added: ignored
        assert state.on_demand_projects() == [
            DemandedProject(name=A, added=1.0, requests=5),
            DemandedProject(name=B, added=2.0, requests=0),
        ]
        state.drop_on_demand(B)
        state.drop_on_demand(B)
        assert state.on_demand_names() == frozenset({A})
    # Another connection (the sync's process) reads the same set.
    with StateStore.open(tmp_path / "mirror.db") as state:
        assert state.on_demand_names() == frozenset({A})


def test_missing_locked_files_are_replaced_per_project(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        state.update_missing_locked({})
        assert state.missing_locked() == []
        state.update_missing_locked({A: (locked(A, "a-1.tar.gz"),), B: (locked(B, "b-1.tar.gz"),)})
        state.update_missing_locked({A: ()})
        assert state.missing_locked() == [locked(B, "b-1.tar.gz")]


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '{"a": [1]}', '{"a": "x"}'])
def test_unreadable_seed_values_read_as_none_with_a_warning(
    tmp_path: Path, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with StateStore.open(tmp_path / "mirror.db") as state:
        state.set_meta(ON_DEMAND_META_KEY, raw)
        state.set_meta(LOCKED_MISSING_META_KEY, raw)
        with caplog.at_level(logging.WARNING, logger="mirror.state.seeds"):
            assert state.on_demand_projects() == []
            assert state.missing_locked() == []
        assert "unreadable on-demand project list" in caplog.text
        assert "unreadable list of missing locked files" in caplog.text
        # Written over by the next change.
        state.add_on_demand(A, now=1.0)
        assert state.on_demand_names() == frozenset({A})
