"""The store's worker thread: jobs in the order asked for, off the event loop, each
``done`` back on the loop in the same order; failures become ``StoreError``s."""

from __future__ import annotations

import asyncio
import threading

import pytest

from xwatch.store import StoreError
from xwatch.store_worker import StoreWorker


@pytest.mark.asyncio
async def test_jobs_run_in_order_on_one_thread_and_done_follows_on_the_loop() -> None:
    worker = StoreWorker()
    ran: list[tuple[int, str]] = []
    done: list[tuple[int, str]] = []
    loop_thread = threading.current_thread().name
    for i in range(50):
        worker.submit(
            lambda i=i: ran.append((i, threading.current_thread().name)),  # type: ignore[misc]
            lambda error, i=i: done.append((i, threading.current_thread().name)),  # type: ignore[misc]
        )
    assert await worker.run(lambda: len(ran)) == 50  # after every job before it
    await worker.settled()
    worker.close()
    assert [i for i, _ in ran] == list(range(50)) == [i for i, _ in done]
    assert {name for _, name in ran} != {loop_thread}
    assert len({name for _, name in ran}) == 1  # one worker thread
    assert {name for _, name in done} == {loop_thread}


@pytest.mark.asyncio
async def test_a_failed_job_is_reported_to_its_done_and_the_next_ones_run() -> None:
    worker = StoreWorker()
    outcomes: list[str] = []

    def refused() -> None:
        raise StoreError("attempt to write a readonly database")

    def buggy() -> None:
        raise KeyError("x")

    for job in (refused, buggy, lambda: None):
        worker.submit(job, lambda error: outcomes.append(str(error) if error else "ok"))
    await worker.settled()
    worker.close()
    assert outcomes == [
        "attempt to write a readonly database",
        "unexpected error: KeyError: 'x'",  # a bug: logged, and the job counts as failed
        "ok",
    ]


@pytest.mark.asyncio
async def test_run_raises_the_jobs_own_error() -> None:
    worker = StoreWorker()

    def refused() -> int:
        raise StoreError("locked")

    with pytest.raises(StoreError, match="locked"):
        await worker.run(refused)
    assert await worker.run(lambda: 7) == 7
    worker.close()


def test_without_a_running_loop_a_job_runs_at_once_in_the_callers_thread() -> None:
    worker = StoreWorker()
    seen: list[str] = []
    worker.submit(lambda: seen.append("job"), lambda error: seen.append(f"done {error}"))
    assert seen == ["job", "done None"]
    worker.close()


@pytest.mark.asyncio
async def test_after_close_jobs_run_in_the_callers_thread() -> None:
    worker = StoreWorker()
    worker.close()
    seen: list[str] = []
    worker.submit(lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]
    assert await worker.run(lambda: 3) == 3


@pytest.mark.asyncio
async def test_a_cancelled_wait_for_the_jobs_cancels_none_of_them() -> None:
    """A caller of ``settled`` is cancelled at times (a request past its deadline, a
    drain that timed out). ``gather`` cancelled the jobs it waited for with it: the one
    still queued never ran, and no ``done`` was called (an incident's notices, queued
    there, never went out)."""
    worker = StoreWorker()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    done: list[str] = []

    def slow() -> None:  # a write waiting for the store's lock (a checkpoint holds it)
        started.set()
        release.wait(timeout=5)
        ran.append("slow")

    worker.submit(slow, lambda error: done.append(f"slow {error}"))
    worker.submit(lambda: ran.append("queued"), lambda error: done.append(f"queued {error}"))
    waiter = asyncio.create_task(worker.settled())
    assert await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await worker.settled()
    worker.close()
    assert ran == ["slow", "queued"]
    assert done == ["slow None", "queued None"]


@pytest.mark.asyncio
async def test_submit_gives_a_future_done_once_done_ran_whose_cancel_spares_the_job() -> None:
    worker = StoreWorker()
    release = threading.Event()
    done: list[str] = []
    worker.submit(lambda: release.wait(timeout=5))
    first = worker.submit(lambda: None, lambda error: done.append("first"))
    second = worker.submit(lambda: None, lambda error: done.append("second"))
    assert first is not None and second is not None
    first.cancel()  # a notifier stopped while it waited for its delivery's record
    release.set()
    await second
    assert done == ["first", "second"]
    worker.close()
