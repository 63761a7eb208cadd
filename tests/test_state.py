"""The SQLite state store: schema, atomic queue + serial, commits, garbage, threads."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from packaging.utils import NormalizedName

from mirror.errors import StateError
from mirror.models import PackagePath, Serial
from mirror.state import (
    NEEDS_META_KEY,
    ROOT_HTML_META_KEY,
    SCHEMA_VERSION,
    STATE_NAME,
    ProjectRow,
    StateStore,
    StoredFile,
    TodoItem,
    Totals,
)
from mirror.state import inventory as inventory_module
from mirror.state import queue as queue_module
from mirror.state.schema import MIGRATIONS

SHA_A = "a" * 64
SHA_M = "c" * 64


def name(raw: str) -> NormalizedName:
    return NormalizedName(raw)


def path(filename: str) -> PackagePath:
    return PackagePath(f"packages/ab/cd/{'e' * 60}/{filename}")


def stored(
    project: str, filename: str, size: int, *, metadata_size: int | None = None
) -> StoredFile:
    return StoredFile(
        path=path(filename),
        project=name(project),
        filename=filename,
        size=size,
        sha256=SHA_A,
        metadata_sha256=SHA_M if metadata_size is not None else None,
        metadata_size=metadata_size,
    )


def commit(
    store: StateStore, project: str, serial: int, keep: list[PackagePath]
) -> list[PackagePath]:
    return store.commit_project(
        name=name(project),
        display_name=project.title(),
        serial=Serial(serial),
        status="active",
        delete=store.project_files(name(project)).keys() - set(keep),
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / STATE_NAME


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    with StateStore.open(db_path) as opened:
        yield opened


# --- opening, schema, errors -------------------------------------------------------------


def test_open_creates_schema_in_wal_mode_and_reopen_keeps_data(db_path: Path) -> None:
    with StateStore.open(db_path) as store:
        assert store.mirror_serial() is None
        store.enqueue({}, mirror_serial=Serial(42), now=0.0)
        store.set_meta("last_run", "ok")
    with StateStore.open(db_path) as store:
        assert store.mirror_serial() == 42
        assert store.get_meta("last_run") == "ok"
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store.get_meta("missing") is None
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    assert {"meta", "projects", "files", "todo", "garbage", "files_project"} <= tables


def test_a_newer_schema_version_is_refused(db_path: Path) -> None:
    StateStore.open(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StateError, match=r"schema version 99.*newer mirror"):
        StateStore.open(db_path)


def test_an_unreadable_schema_version_is_refused(db_path: Path) -> None:
    StateStore.open(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StateError, match="unreadable schema version 'one'"):
        StateStore.open(db_path)


@pytest.mark.parametrize(
    "setup",
    [
        "CREATE TABLE unrelated (x)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    ],
)
def test_a_foreign_sqlite_database_is_refused_and_left_alone(db_path: Path, setup: str) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute(setup)
    raw.close()
    with pytest.raises(StateError, match="not a mirror state store"):
        StateStore.open(db_path)
    with sqlite3.connect(db_path) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    assert "todo" not in tables


def test_a_corrupt_file_gives_state_error(db_path: Path) -> None:
    db_path.write_bytes(random.Random(7).randbytes(16384))
    with pytest.raises(StateError, match=re.escape(str(db_path))) as caught:
        StateStore.open(db_path)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_an_unopenable_path_gives_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="unable to open"):
        StateStore.open(tmp_path / "missing-directory" / STATE_NAME)


def test_a_closed_store_raises_state_error_and_closes_twice(db_path: Path) -> None:
    store = StateStore.open(db_path)
    store.close()
    store.close()
    with pytest.raises(StateError):
        store.todo_count()
    with pytest.raises(StateError):
        store.set_meta("k", "v")


@pytest.mark.parametrize("key", ["schema_version", "mirror_serial"])
def test_set_meta_refuses_the_store_s_own_keys(store: StateStore, key: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        store.set_meta(key, "1")


def test_set_meta_overwrites(store: StateStore) -> None:
    store.set_meta("last_run", "failed")
    store.set_meta("last_run", "ok")
    assert store.get_meta("last_run") == "ok"


def test_stored_file_needs_metadata_hash_and_size_together() -> None:
    with pytest.raises(ValueError, match="set together"):
        StoredFile(
            path=path("a-1.tar.gz"),
            project=name("a"),
            filename="a-1.tar.gz",
            size=1,
            sha256=SHA_A,
            metadata_sha256=SHA_M,
        )


# --- todo queue and mirror serial ------------------------------------------------------


def test_enqueue_keeps_the_highest_serial_and_advances_the_mirror_serial(
    store: StateStore,
) -> None:
    store.enqueue(
        {name("a"): Serial(10), name("b"): Serial(20)},
        display_names={name("a"): "A"},
        mirror_serial=Serial(20),
        now=100.0,
    )
    store.enqueue(
        {name("a"): Serial(5), name("c"): Serial(30)}, mirror_serial=Serial(30), now=200.0
    )
    assert store.mirror_serial() == 30
    assert store.todo_count() == 3
    assert store.todo_item(name("a")) == TodoItem(
        name=name("a"),
        serial=Serial(10),
        display_name="A",
        attempts=0,
        next_attempt=200.0,
        last_error=None,
    )
    assert [item.serial for item in store.due(200.0)] == [10, 20, 30]
    assert store.todo_item(name("missing")) is None


def test_a_confirmed_removal_is_kept_until_a_newer_change_clears_it(store: StateStore) -> None:
    """``gone`` is set by a removal, survives an older or equal change (a filter
    requeue at serial 0) and is cleared by a newer one (the project made again)."""
    store.enqueue({name("a"): Serial(10), name("b"): Serial(3)}, gone={name("a")}, now=0.0)
    assert store.todo_item(name("a")) is not None
    assert [item.gone for item in store.due(0.0)] == [True, False]
    store.enqueue({name("a"): Serial(0)}, now=0.0)
    assert store.todo_item(name("a")).gone  # type: ignore[union-attr]
    store.enqueue({name("a"): Serial(12)}, now=0.0)
    assert not store.todo_item(name("a")).gone  # type: ignore[union-attr]
    store.enqueue({name("a"): Serial(0), name("b"): Serial(0)}, gone={name("b")}, now=0.0)
    assert [item.gone for item in store.due(0.0)] == [False, True], "a listing's zero serial"
    item = store.record_failure(name("b"), error="404", next_attempt=5.0)
    assert item.gone
    assert [f.gone for f in store.failures()] == [True]


def test_a_version_5_store_migrates_with_unconfirmed_todo_items(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    for version in range(1, 6):
        raw.executescript(MIGRATIONS[version])
    raw.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
    raw.execute(
        "INSERT INTO todo (name, serial, display_name, attempts, next_attempt, last_error)"
        " VALUES ('a', 3, NULL, 0, 0, NULL)"
    )
    raw.commit()
    raw.close()
    with StateStore.open(db_path) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        item = store.todo_item(name("a"))
        assert item is not None
        assert item.serial == 3
        assert not item.gone


def test_enqueue_without_a_mirror_serial_leaves_it_alone(store: StateStore) -> None:
    store.enqueue({}, mirror_serial=Serial(7), now=0.0)
    store.enqueue({name("a"): Serial(9)}, now=0.0)
    assert store.mirror_serial() == 7


def test_a_failing_enqueue_queues_nothing_and_keeps_the_serial(store: StateStore) -> None:
    store.enqueue({}, mirror_serial=Serial(5), now=0.0)
    # A value SQLite cannot bind fails half-way through the batch.
    bad = {name("a"): Serial(6), name("b"): cast(Serial, object())}
    with pytest.raises(StateError):
        store.enqueue(bad, mirror_serial=Serial(6), now=0.0)
    assert store.todo_count() == 0
    assert store.mirror_serial() == 5


def test_due_honours_next_attempt_order_and_limit(store: StateStore) -> None:
    store.enqueue({name(n): Serial(1) for n in ["c", "a", "b", "d"]}, now=10.0)
    store.record_failure(name("b"), error="boom", next_attempt=50.0)
    assert [item.name for item in store.due(10.0)] == ["a", "c", "d"]
    assert [item.name for item in store.due(10.0, limit=2)] == ["a", "c"]
    assert [item.name for item in store.due(50.0)] == ["a", "b", "c", "d"]
    assert store.due(9.0) == []


def test_due_pages_come_a_page_at_a_time_and_skip_what_left_meanwhile(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "_DUE_PAGE_ROWS", 2)
    store.enqueue({name(n): Serial(1) for n in "edcbagf"}, now=10.0)
    store.record_failure(name("f"), error="boom", next_attempt=50.0)
    assert store.due_count(10.0) == 6
    assert store.due_count(50.0) == 7
    pages = store.due_pages(10.0)
    assert [item.name for item in next(pages)] == ["a", "b"]
    # While the caller works: "a" is done, "c" backs off, "d" is done. None comes back.
    commit(store, "a", 1, [])
    store.record_failure(name("c"), error="boom", next_attempt=60.0)
    commit(store, "d", 1, [])
    assert [[item.name for item in page] for page in pages] == [["e", "g"]]


def test_a_failure_backs_off_and_a_new_change_makes_it_due_again(store: StateStore) -> None:
    store.enqueue({name("a"): Serial(10)}, now=0.0)
    first = store.record_failure(name("a"), error="timeout", next_attempt=60.0)
    second = store.record_failure(name("a"), error="HTTP 503", next_attempt=180.0)
    assert (first.attempts, second.attempts) == (1, 2)
    assert second.last_error == "HTTP 503"
    assert store.due(100.0) == []
    assert store.failures() == [second]

    store.enqueue({name("a"): Serial(11)}, now=100.0)
    (item,) = store.due(100.0)
    assert (item.serial, item.attempts, item.last_error) == (11, 2, "HTTP 503")


def test_record_failure_of_an_unqueued_project_raises_key_error(store: StateStore) -> None:
    with pytest.raises(KeyError):
        store.record_failure(name("ghost"), error="x", next_attempt=1.0)
    assert store.todo_count() == 0


def test_failures_lists_only_failed_items_by_name(store: StateStore) -> None:
    store.enqueue({name(n): Serial(1) for n in ["z", "m", "a"]}, now=0.0)
    store.record_failure(name("z"), error="e1", next_attempt=5.0)
    store.record_failure(name("m"), error="e2", next_attempt=5.0)
    assert [(item.name, item.last_error) for item in store.failures()] == [
        ("m", "e2"),
        ("z", "e1"),
    ]


def test_enqueue_of_200000_changes_lands_in_one_transaction(store: StateStore) -> None:
    changes = {name(f"project-{i:06d}"): Serial(i + 1) for i in range(200_000)}
    store.enqueue(changes, mirror_serial=Serial(200_000), now=1.0)
    assert store.todo_count() == 200_000
    assert store.mirror_serial() == 200_000
    assert store.todo_item(name("project-123456")) == TodoItem(
        name=name("project-123456"),
        serial=Serial(123_457),
        display_name=None,
        attempts=0,
        next_attempt=1.0,
        last_error=None,
    )
    assert [item.name for item in store.due(1.0, limit=2)] == ["project-000000", "project-000001"]


# --- files, commits, garbage -----------------------------------------------------------


def test_record_file_round_trips_and_replaces(store: StateStore) -> None:
    wheel = stored("demo", "demo-1.0-py3-none-any.whl", 100, metadata_size=7)
    store.record_file(wheel)
    assert store.file(wheel.path) == wheel
    assert store.project_files(name("demo")) == {wheel.path: wheel}
    assert store.file(path("absent.tar.gz")) is None
    # Uncommitted files do not count towards the totals.
    assert store.project(name("demo")) is None
    assert store.totals() == Totals(projects=0, files=0, bytes=0)

    bigger = stored("demo", "demo-1.0-py3-none-any.whl", 200, metadata_size=9)
    store.record_file(bigger)
    assert store.file(wheel.path) == bigger


def test_commit_counts_files_and_metadata_bytes_and_drops_the_rest(store: StateStore) -> None:
    keep_a = stored("demo", "demo-1.0.tar.gz", 1000)
    keep_b = stored("demo", "demo-1.0-py3-none-any.whl", 500, metadata_size=30)
    gone = stored("demo", "demo-0.9-py3-none-any.whl", 400, metadata_size=20)
    other = stored("other", "other-1.0.tar.gz", 5)
    for f in (keep_a, keep_b, gone, other):
        store.record_file(f)
    store.enqueue({name("demo"): Serial(10)}, now=0.0)

    garbage = commit(store, "demo", 10, [keep_a.path, keep_b.path])

    assert garbage == [gone.path, PackagePath(f"{gone.path}.metadata")]
    assert store.garbage() == sorted(garbage)
    assert set(store.project_files(name("demo"))) == {keep_a.path, keep_b.path}
    assert store.project(name("demo")) == ProjectRow(
        name=name("demo"),
        display_name="Demo",
        serial=Serial(10),
        status="active",
        file_count=2,
        total_bytes=1530,
    )
    assert store.todo_item(name("demo")) is None
    assert store.file(other.path) == other


def test_commit_keeps_a_todo_item_queued_for_a_newer_serial(store: StateStore) -> None:
    store.enqueue({name("demo"): Serial(12)}, now=0.0)
    commit(store, "demo", 10, [])
    item = store.todo_item(name("demo"))
    assert item is not None
    assert item.serial == 12


def test_commit_updates_an_existing_project_row(store: StateStore) -> None:
    wheel = stored("demo", "demo-1.0-py3-none-any.whl", 500)
    store.record_file(wheel)
    commit(store, "demo", 10, [wheel.path])
    store.commit_project(
        name=name("demo"),
        display_name="DEMO",
        serial=Serial(11),
        status="archived",
        delete=store.project_files(name("demo")).keys(),
    )
    assert store.project(name("demo")) == ProjectRow(
        name=name("demo"),
        display_name="DEMO",
        serial=Serial(11),
        status="archived",
        file_count=0,
        total_bytes=0,
    )
    assert store.garbage() == [wheel.path]


def test_forget_garbage_drops_only_the_given_paths(store: StateStore) -> None:
    for filename in ("a-1.tar.gz", "a-2.tar.gz", "a-3.tar.gz"):
        store.record_file(stored("a", filename, 1))
    commit(store, "a", 1, [])
    store.forget_garbage([path("a-1.tar.gz"), path("a-3.tar.gz")])
    assert store.garbage() == [path("a-2.tar.gz")]


def test_storing_a_dropped_path_again_takes_it_out_of_garbage(store: StateStore) -> None:
    wheel = stored("demo", "demo-1.0-py3-none-any.whl", 500, metadata_size=10)
    store.record_file(wheel)
    commit(store, "demo", 1, [])
    assert len(store.garbage()) == 2
    store.record_file(wheel)
    assert store.garbage() == []


def test_replacing_a_file_without_its_sidecar_sends_the_sidecar_to_garbage(
    store: StateStore,
) -> None:
    store.record_file(stored("demo", "demo-1.0-py3-none-any.whl", 500, metadata_size=10))
    store.record_file(stored("demo", "demo-1.0-py3-none-any.whl", 500))
    assert store.garbage() == [PackagePath(f"{path('demo-1.0-py3-none-any.whl')}.metadata")]
    commit(store, "demo", 1, [path("demo-1.0-py3-none-any.whl")])
    project = store.project(name("demo"))
    assert project is not None
    assert project.total_bytes == 500


def test_the_html_root_mark_is_cleared_only_when_the_names_change(store: StateStore) -> None:
    def marked() -> bool:
        return store.get_meta(ROOT_HTML_META_KEY) == "1.4"

    def mark() -> None:
        store.set_meta(ROOT_HTML_META_KEY, "1.4")

    commit(store, "demo", 1, [])
    assert not marked(), "a new project"
    mark()
    commit(store, "demo", 2, [])
    assert marked(), "the same name at a new serial: the HTML root still lists it right"
    store.commit_project(
        name=name("demo"),
        display_name="DEMO",
        serial=Serial(3),
        status="active",
        delete=store.project_files(name("demo")).keys(),
    )
    assert not marked(), "a new display name"
    mark()
    store.remove_project(name("absent"))
    assert marked(), "nothing was removed"
    store.remove_project(name("demo"))
    assert not marked()


def test_remove_project_forgets_rows_and_garbages_files(store: StateStore) -> None:
    sdist = stored("demo", "demo-1.0.tar.gz", 1000)
    wheel = stored("demo", "demo-1.0-py3-none-any.whl", 500, metadata_size=30)
    store.record_file(sdist)
    store.record_file(wheel)
    commit(store, "demo", 10, [sdist.path, wheel.path])
    store.enqueue({name("demo"): Serial(11)}, now=0.0)

    garbage = store.remove_project(name("demo"))

    assert sorted(garbage) == sorted(
        [sdist.path, wheel.path, PackagePath(f"{wheel.path}.metadata")]
    )
    assert store.garbage() == sorted(garbage)
    assert store.project(name("demo")) is None
    assert store.project_files(name("demo")) == {}
    assert store.todo_item(name("demo")) is None
    assert store.totals() == Totals(projects=0, files=0, bytes=0)
    assert store.remove_project(name("never-seen")) == []


def test_totals_add_up_committed_projects(store: StateStore) -> None:
    store.record_file(stored("a", "a-1.tar.gz", 100, metadata_size=1))
    store.record_file(stored("b", "b-1.tar.gz", 200))
    store.record_file(stored("b", "b-2.tar.gz", 300))
    commit(store, "a", 1, [path("a-1.tar.gz")])
    commit(store, "b", 2, [path("b-1.tar.gz"), path("b-2.tar.gz")])
    commit(store, "c", 3, [])
    assert store.totals() == Totals(projects=3, files=3, bytes=601)


# --- iteration and threads --------------------------------------------------------------


def test_iter_projects_is_ordered_and_streams_past_one_page(store: StateStore) -> None:
    names = [f"p{i:05d}" for i in range(2500)]
    for raw in reversed(names):
        commit(store, raw, 1, [])
    projects = store.iter_projects()
    first = next(projects)
    assert first.name == "p00000"
    # Committed after iteration began, and sorting after the first page: a stream
    # still sees it, a list loaded up front would not.
    commit(store, "zzz", 1, [])
    rest = [project.name for project in projects]
    assert rest == [*names[1:], "zzz"]


def test_iter_projects_of_an_empty_store_is_empty(store: StateStore) -> None:
    assert list(store.iter_projects()) == []
    assert [page for page in store.listing_pages() if page] == []


def test_listing_names_every_project_in_order_past_one_page(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory_module, "_LISTING_PAGE_ROWS", 7)
    names = [f"p{i:03d}" for i in range(20)]
    for serial, raw in enumerate(reversed(names), start=1):
        commit(store, raw, serial, [])
    pages = list(store.listing_pages())
    assert [len(page) for page in pages] == [7, 7, 6]
    assert [row for page in pages for row in page] == [
        (raw, raw.title(), 21 - i) for i, raw in enumerate(names, start=1)
    ]


def test_concurrent_calls_from_threads_do_not_corrupt_anything(
    store: StateStore, db_path: Path
) -> None:
    threads_count = 8
    projects_per_thread = 25
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(projects_per_thread):
                project = f"w{worker}-p{i:02d}"
                store.enqueue({name(project): Serial(i + 1)}, now=0.0)
                keep = []
                for version in range(3):
                    f = stored(project, f"{project}-{version}.tar.gz", 10, metadata_size=1)
                    store.record_file(f)
                    keep.append(f.path)
                store.record_failure(name(project), error="flaky", next_attempt=1.0)
                commit(store, project, i + 1, keep[1:])
                store.totals()
                sum(1 for _ in store.iter_projects())
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads_count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert errors == []
    total = threads_count * projects_per_thread
    assert store.totals() == Totals(projects=total, files=total * 2, bytes=total * 22)
    assert len(store.garbage()) == total * 2
    assert store.todo_count() == 0
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    raw.close()


def test_record_files_records_every_file_in_one_call_and_clears_their_garbage(
    store: StateStore,
) -> None:
    wheel = stored("demo", "demo-1.0-py3-none-any.whl", 10, metadata_size=3)
    sdist = stored("demo", "demo-1.0.tar.gz", 20)
    store.expect_files([wheel.path, sdist.path, PackagePath(f"{wheel.path}.metadata")])
    store.record_files([wheel, sdist])
    assert store.project_files(name("demo")) == {wheel.path: wheel, sdist.path: sdist}
    assert store.garbage() == []


def test_the_dependency_closure_is_stored_as_json_and_read_back_typed(store: StateStore) -> None:
    assert store.dependency_needs() == {}
    store.set_dependency_needs({name("lib"): (">=2", "<4"), name("deep"): ("",)})
    assert store.dependency_needs() == {"lib": (">=2", "<4"), "deep": ("",)}
    # The stored form is what earlier mirrors wrote and read: JSON {project: [specifiers]}.
    assert json.loads(store.get_meta(NEEDS_META_KEY) or "") == {"lib": [">=2", "<4"], "deep": [""]}


@pytest.mark.parametrize("raw", ["not json", "[1]", '{"lib": 5}'])
def test_an_unreadable_dependency_closure_reads_as_none_with_a_warning(
    store: StateStore, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.set_meta(NEEDS_META_KEY, raw)
    assert store.dependency_needs() == {}
    assert "ignoring an unreadable dependency closure" in caplog.text
