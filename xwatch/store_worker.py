"""The store's one worker thread: the daemon's writes, and the reads that must see them,
run there in the order they were asked for, never on the event loop.

Each write is quick, but it waits for the store's lock, which a checkpoint holds for as
long as it writes every series (about 2 s at 10,000 series on this machine's disk), and
for another process's lock on the file (``store.BUSY_SECONDS``). Written on the event
loop, an incident change that came during a checkpoint froze everything until the
checkpoint was written: the webhook, ``/healthz``, the MQTT keep-alive, the pipeline.

* ``submit(job, done)``: run ``job`` on the worker thread after every job submitted
  before it; then ``done(error)`` on the event loop (``error`` is ``None``, or the
  ``StoreError`` it raised). The daemon queues an incident's notices in ``done``: a
  notice goes out only once its change is written (or could not be). It returns a
  future done once ``done`` has run, for a caller that must wait for the write (a
  notifier records a delivery before it sends the next notice); cancelling that wait
  never cancels the job.
* ``await run(job)``: the same, for a caller that waits for the result (a read that must
  see the writes before it, a checkpoint).
* ``await settled()``: every job submitted so far has run, and its ``done`` too.

With no event loop running (a test that drives the daemon by hand), there is none to
keep free: a job runs at once, in the caller's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from xwatch.store import StoreError

log = logging.getLogger("xwatch.store")

T = TypeVar("T")
Done = Callable[[StoreError | None], None]


def _ignore(error: StoreError | None) -> None:
    """A ``done`` for a job whose outcome no one needs."""


class StoreWorker:
    """One thread, the jobs in order (make it in the daemon; ``close()`` it at the end)."""

    def __init__(self) -> None:
        # one worker: the executor's queue is first in, first out
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xwatch-store")
        self._waiting: set[asyncio.Future[Any]] = set()
        self._closed = False

    def submit(
        self, job: Callable[[], object], done: Done = _ignore
    ) -> asyncio.Future[None] | None:
        """Run ``job`` after the jobs before it, then ``done`` on the loop. The future
        returned is done once ``done`` has run (``None``: both ran at once, no loop); it
        is not the job's own, so a waiter cancelled (a notifier stopped) leaves the job
        and its ``done`` to run."""
        loop = self._loop()
        if loop is None:
            done(_outcome(job))
            return None
        future = loop.run_in_executor(self._executor, _outcome, job)
        self._waiting.add(future)
        over: asyncio.Future[None] = loop.create_future()

        def finished(future: asyncio.Future[StoreError | None]) -> None:
            self._waiting.discard(future)
            try:
                done(future.result())
            finally:
                if not over.done():
                    over.set_result(None)

        future.add_done_callback(finished)
        return over

    async def run(self, job: Callable[[], T]) -> T:
        """``job``'s result, after the jobs before it; its exception, raised here."""
        loop = self._loop()
        if loop is None:  # (closed: no job is waiting any more)
            return job()
        future = loop.run_in_executor(self._executor, job)
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        return await future

    async def settled(self) -> None:
        """Every job submitted so far (and those their ``done`` submitted) is over.

        ``asyncio.wait``, not ``gather``: a cancelled ``gather`` cancels what it waits
        for, and a caller of ``settled`` is cancelled at times (a request past its
        deadline, a drain that timed out). That cancelled the jobs themselves: a write
        still queued never ran, and its ``done`` never queued the incident's notices."""
        while self._waiting:
            await asyncio.wait(set(self._waiting))

    def close(self) -> None:
        """Let the thread go (after ``settled``); later jobs run in the caller's thread."""
        self._closed = True
        self._executor.shutdown(wait=True)

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        if self._closed:
            return None
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None


def _outcome(job: Callable[[], object]) -> StoreError | None:
    """Run ``job``: ``None``, or why it failed. An error that is not the store's own is a
    bug; it is logged with its traceback, and the job counts as failed all the same (a
    write that raised must not stop the daemon, nor lose the notices that wait on it)."""
    try:
        job()
    except StoreError as exc:
        return exc
    except Exception as exc:
        log.exception("a write to the store failed unexpectedly")
        return StoreError(f"unexpected error: {type(exc).__name__}: {exc}")
    return None
