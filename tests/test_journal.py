"""The mirror's own journal in the state store: rows with commits and removals, serials,
pruning and its horizon, the listing, the migration of an older store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from mirror.errors import JournalPrunedError
from mirror.models import PackagePath, Serial
from mirror.state import STATE_NAME, StateStore, StoredFile
from mirror.state.schema import MIGRATIONS

SHA = "a" * 64


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / STATE_NAME) as opened:
        yield opened


def commit(
    store: StateStore,
    project: str,
    serial: int,
    *,
    display_name: str | None = None,
    delete: tuple[PackagePath, ...] = (),
) -> None:
    store.commit_project(
        name=NormalizedName(project),
        display_name=display_name or project,
        serial=Serial(serial),
        status="active",
        delete=delete,
    )


def actions(store: StateStore, since: int = 0) -> list[tuple[int, str, str]]:
    return [(int(r.serial), r.display_name, r.action) for r in store.journal_since(Serial(since))]


def test_commits_that_change_something_and_removals_are_journalled(store: StateStore) -> None:
    assert store.journal_last_serial() == 0
    commit(store, "alpha", 100, display_name="Alpha")
    commit(store, "beta", 50)
    commit(store, "alpha", 100, display_name="Alpha")  # nothing changed: no row
    commit(store, "alpha", 100, display_name="ALPHA")  # the display name changed
    path = PackagePath("packages/aa/bb/cc/beta-1.tar.gz")
    store.record_file(
        StoredFile(path=path, project=NormalizedName("beta"), filename=path, size=3, sha256=SHA)
    )
    commit(store, "beta", 50)  # a file more
    commit(store, "beta", 50, delete=(path,))  # a file less
    store.remove_project(NormalizedName("alpha"))
    store.remove_project(NormalizedName("never-held"))  # nothing to remove: no row
    # Each serial is one above the last, or the upstream serial committed when higher.
    assert actions(store) == [
        (100, "Alpha", "create"),
        (101, "beta", "create"),
        (102, "ALPHA", "update"),
        (103, "beta", "update"),
        (104, "beta", "update"),
        (105, "ALPHA", "remove project"),
    ]
    assert actions(store, since=103) == [(104, "beta", "update"), (105, "ALPHA", "remove project")]
    assert [int(r.serial) for r in store.journal_since(Serial(0), limit=2)] == [100, 101]
    assert store.journal_last_serial() == 105
    assert store.journal_listing() == {"beta": 104}
    assert store.journal_serial(NormalizedName("beta")) == 104
    assert store.journal_serial(NormalizedName("alpha")) is None, "removed: no serial"


def test_pruning_keeps_each_held_projects_newest_row_and_refuses_older_serials(
    store: StateStore,
) -> None:
    commit(store, "alpha", 10)
    commit(store, "alpha", 11)
    commit(store, "beta", 12)
    store.remove_project(NormalizedName("beta"))
    assert store.prune_journal(older_than=0.0) == 0, "nothing is that old"
    assert store.prune_journal(older_than=time.time() + 1) == 3
    # alpha's newest row stays (its serial is what the listing and its pages say).
    assert actions(store, since=13) == []
    assert store.journal_listing() == {"alpha": 11}
    assert store.journal_last_serial() == 13, "pruning never lowers the last serial"
    with pytest.raises(JournalPrunedError) as info:
        store.journal_since(Serial(12))
    assert (info.value.serial, info.value.horizon) == (12, 13)
    assert "list_packages_with_serial" in str(info.value)
    commit(store, "gamma", 1)
    assert actions(store, since=13) == [(14, "gamma", "create")]
    with pytest.raises(ValueError, match="reserved"):
        store.set_meta("journal_horizon", "0")


def test_a_store_from_before_the_journal_gets_a_row_per_project_above_their_serials(
    tmp_path: Path,
) -> None:
    db = tmp_path / STATE_NAME
    raw = sqlite3.connect(db)
    for version in (1, 2):
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                raw.execute(statement)
    raw.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    raw.executemany(
        "INSERT INTO projects (name, display_name, serial, file_count, total_bytes)"
        " VALUES (?, ?, ?, 0, 0)",
        [("zeta", "Zeta", 7), ("alpha", "Alpha", 40), ("beta", "beta", 7)],
    )
    raw.commit()
    raw.close()
    with StateStore.open(db) as store:
        assert actions(store) == [
            (41, "beta", "create"),
            (42, "Zeta", "create"),
            (43, "Alpha", "create"),
        ]
        commit(store, "beta", 8, display_name="Beta")
        assert store.journal_serial(NormalizedName("beta")) == 44
