"""The writer processes: steps run in real child processes, answers and errors come
back, a writer that dies is replaced, and the pool closes."""

from __future__ import annotations

import errno
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing import Pipe

import pytest

from mirror.storage.writers import WriterLostError, WriterPool, serve, writer_main


@pytest.fixture
def pool() -> Iterator[WriterPool]:
    writers = WriterPool(2)
    yield writers
    writers.close()


def refuse() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def unpicklable() -> object:
    return threading.Lock()


def die() -> None:
    os._exit(9)


def pause(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_step_runs_in_another_process_and_its_result_comes_back(pool: WriterPool) -> None:
    assert pool.submit(os.getpid).result(timeout=30) != os.getpid()
    assert pool.submit(functools.partial(divmod, 7, 2)).result(timeout=30) == (3, 1)


def test_a_steps_error_comes_back_as_itself(pool: WriterPool) -> None:
    with pytest.raises(OSError, match="No space left") as raised:
        pool.submit(refuse).result(timeout=30)
    assert raised.value.errno == errno.ENOSPC
    with pytest.raises(RuntimeError, match="unpicklable reply"):
        pool.submit(unpicklable).result(timeout=30)
    assert pool.submit(os.getpid).result(timeout=30) > 0, "the writer serves on"


def test_steps_share_at_most_size_writers(pool: WriterPool) -> None:
    futures = [pool.submit(functools.partial(pause, 0.2)) for _ in range(6)]
    pids = {future.result(timeout=30) for future in futures}
    assert len(pids) == 2


def test_a_writer_that_dies_fails_its_steps_and_is_replaced(pool: WriterPool) -> None:
    waiting = pool.submit(functools.partial(pause, 0.3))
    dying = pool.submit(die)
    with pytest.raises(WriterLostError):
        dying.result(timeout=30)
    assert waiting.result(timeout=30) > 0, "the other writer's step is unharmed"
    pids = {pool.submit(os.getpid).result(timeout=30) for _ in range(4)}
    assert pids, "a replacement serves"


def test_a_closed_pool_takes_no_steps_and_its_writers_are_gone() -> None:
    pool = WriterPool(1)
    pid = pool.submit(os.getpid).result(timeout=30)
    pool.close()
    pool.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(os.getpid)


def test_serve_answers_in_order_until_the_pipe_closes() -> None:
    # The writer's loop, run in a thread here (coverage does not follow the writers).
    ours, theirs = Pipe()
    server = threading.Thread(target=serve, args=(theirs,))
    server.start()
    ours.send((1, functools.partial(divmod, 9, 4)))
    ours.send((2, refuse))
    ours.send((3, unpicklable))
    assert ours.recv() == (1, True, (2, 1))
    call_id, ok, error = ours.recv()
    assert (call_id, ok, type(error)) == (2, False, OSError)
    call_id, ok, error = ours.recv()
    assert (call_id, ok, type(error)) == (3, False, RuntimeError)
    ours.close()
    server.join(timeout=30)
    assert not server.is_alive()


def test_serve_stops_when_the_parent_is_gone_mid_reply() -> None:
    ours, theirs = Pipe()
    ours.send((1, functools.partial(pause, 0.2)))
    server = threading.Thread(target=serve, args=(theirs,))
    server.start()
    ours.close()
    server.join(timeout=30)
    assert not server.is_alive()


def test_writers_leave_stop_signals_to_the_parent() -> None:
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    ours, theirs = Pipe()
    ours.close()
    try:
        writer_main(theirs)  # returns at once: the pipe is closed
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


class BrokenPipe:
    """A writer's pipe whose far end is gone."""

    def send(self, message: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_writer_that_died_after_it_was_chosen_fails_that_step(pool: WriterPool) -> None:
    pool.submit(os.getpid).result(timeout=30)
    (writer,) = pool._writers
    real, writer.connection = writer.connection, BrokenPipe()  # type: ignore[assignment]
    try:
        with pytest.raises(WriterLostError, match="Broken pipe"):
            pool.submit(os.getpid).result(timeout=30)
        assert writer.pending == {}
    finally:
        writer.connection = real
