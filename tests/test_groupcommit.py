"""Group commit: concurrent state-store calls batched into shared transactions, each
caller getting its own outcome, over a real SQLite state store."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.errors import StateError
from mirror.groupcommit import GroupCommit
from mirror.state import StateStore


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "mirror.db") as store:
        yield store


def reopened(tmp_path: Path, key: str) -> str | None:
    """What a fresh connection reads: only committed writes."""
    with StateStore.open_read_only(tmp_path / "mirror.db") as store:
        return store.get_meta(key)


def setting(state: StateStore, key: str, value: str) -> str:
    state.set_meta(key, value)
    return value


async def test_calls_waiting_together_share_one_thread_hop(state: StateStore) -> None:
    threads: list[int] = []

    def write(n: int) -> int:
        threads.append(threading.get_ident())
        state.set_meta(f"k{n}", str(n))
        return n

    commits = GroupCommit(state)
    results = await asyncio.gather(*(commits.call(functools.partial(write, n)) for n in range(20)))
    assert results == list(range(20))
    assert [state.get_meta(f"k{n}") for n in range(20)] == [str(n) for n in range(20)]
    # The first runs alone; the 19 that waited meanwhile run in one batch.
    assert len(threads) == 20
    assert len(set(threads[1:])) == 1


async def test_a_batch_is_capped(state: StateStore) -> None:
    batches: list[int] = []
    original = state.batch

    def counted() -> contextlib.AbstractContextManager[None]:
        batches.append(len(batches))
        return original()

    state.batch = counted  # type: ignore[method-assign,assignment]
    commits = GroupCommit(state, max_calls=3)
    await asyncio.gather(
        *(commits.call(functools.partial(setting, state, f"k{n}", "v")) for n in range(10))
    )
    assert [state.get_meta(f"k{n}") for n in range(10)] == ["v"] * 10
    # The first alone, then the 9 that waited meanwhile: three batches of 3.
    assert len(batches) == 4


async def test_a_failing_call_fails_its_caller_alone_and_undoes_only_itself(
    state: StateStore, tmp_path: Path
) -> None:
    def failing() -> None:
        state.set_meta("bad", "written, then undone")
        raise ValueError("this call fails")

    commits = GroupCommit(state)
    outcomes = await asyncio.gather(
        commits.call(lambda: setting(state, "first", "1")),
        commits.call(lambda: setting(state, "a", "2")),
        commits.call(failing),
        commits.call(lambda: setting(state, "b", "3")),
        return_exceptions=True,
    )
    assert list(outcomes[:2]) == ["1", "2"]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == "3"
    assert [reopened(tmp_path, key) for key in ("first", "a", "b", "bad")] == [
        "1",
        "2",
        "3",
        None,
    ]


async def test_a_batch_that_cannot_commit_fails_every_caller(
    state: StateStore, tmp_path: Path
) -> None:
    def lose_the_transaction() -> None:
        # What SQLite does on its own after a full disk: the whole batch is gone.
        state._connection.execute("ROLLBACK")

    commits = GroupCommit(state)
    outcomes = await asyncio.gather(
        commits.call(lambda: setting(state, "first", "1")),
        commits.call(lambda: setting(state, "a", "2")),
        commits.call(lose_the_transaction),
        commits.call(lambda: setting(state, "b", "3")),
        return_exceptions=True,
    )
    assert outcomes[0] == "1"
    # The call after the loss is refused rather than run outside the batch, and the
    # commit fails every caller of the batch.
    assert all(isinstance(outcome, StateError) for outcome in outcomes[1:])
    assert [reopened(tmp_path, key) for key in ("first", "a", "b")] == ["1", None, None]
    # The store is usable again afterwards.
    assert await commits.call(lambda: setting(state, "c", "4")) == "4"


async def test_a_leader_cancelled_mid_batch_still_settles_the_others(
    state: StateStore,
) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return setting(state, "slow", "1")

    commits = GroupCommit(state)
    leader = asyncio.ensure_future(commits.call(slow))
    await asyncio.to_thread(started.wait, 5)
    waiting = [asyncio.ensure_future(commits.call(lambda: setting(state, "w", "2")))]
    second_leader = waiting[0]
    # A caller cancelled while it waits its turn: its call still runs, nobody waits
    # for its outcome.
    dropped = asyncio.ensure_future(commits.call(lambda: setting(state, "dropped", "3")))
    await asyncio.sleep(0)
    dropped.cancel()
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await second_leader == "2"
    assert state.get_meta("slow") == "1", "the cancelled leader's call ran to its end"
    assert state.get_meta("w") == "2"
    assert dropped.cancelled()
    assert state.get_meta("dropped") == "3"


def test_a_batch_makes_one_transaction_of_many(state: StateStore, tmp_path: Path) -> None:
    with state.batch():
        state.set_meta("x", "1")
        state.set_meta("y", "2")
        assert reopened(tmp_path, "x") is None, "nothing is committed before the end"
    assert [reopened(tmp_path, "x"), reopened(tmp_path, "y")] == ["1", "2"]


def test_a_batch_that_raises_commits_nothing(state: StateStore, tmp_path: Path) -> None:
    def write_then_fail() -> None:
        with state.batch():
            state.set_meta("x", "1")
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert reopened(tmp_path, "x") is None


def test_another_threads_write_waits_for_the_batch(state: StateStore, tmp_path: Path) -> None:
    done = threading.Event()

    def other() -> None:
        state.set_meta("other", "1")
        done.set()

    with state.batch():
        state.set_meta("x", "1")
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(0.2), "it waits for the batch to end"
    thread.join(5)
    assert [reopened(tmp_path, "x"), reopened(tmp_path, "other")] == ["1", "1"]
