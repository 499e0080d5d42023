"""A notifier's outbox in memory: the notices it has yet to send, in the order queued.

Each notice holds its whole incident as it was (its parts' alerts, their charts' points
and sample posts): about 23 kB each live, and 167 kB each decoded from the store, where
each one has its own copy. While Slack or the SMTP relay was down for hours and
incidents kept coming (20 brands firing, reminders every 30 minutes), the notices piled
up in memory (1,900 in a day held 43.6 MB), and a start decoded every pending one at
once: 325 MB traced for those 1,900, 668 MB more resident (2 GB for 5,740: twice the
pod's 1 GiB), and every start read them all again (an out-of-memory crash loop).

So an outbox holds at most ``NOTICES_IN_MEMORY`` notices whole (waiting, or being
sent). Beyond them, a notice that is pending in the store (its incident's change was
written: a restart sends it too) waits as a ``NoticeStub``, its id only, and the
notifier reads it whole from the store when its turn comes. Once stubs wait, every
notice pending in the store queued after them waits as one too: a stub read whole for
its turn then never finds ``NOTICES_IN_MEMORY`` others held whole behind it. A notice
whose change the store has not taken (the store fails) exists nowhere else: it waits
whole, whatever the count, up to ``MAX_UNSTORED_NOTICES``; beyond, the oldest of those
go, logged and counted by the daemon.

The order is the order queued, stubs included, and each notice is queued once: sent
once, as before (and once more after a kill, if it was in flight).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from xwatch.alerting.incidents import Notice

NOTICES_IN_MEMORY = 100
"""Notices an outbox holds whole, waiting or being sent (the one read back for its turn
counted too): about 2.4 MB live, and 17 MB decoded at a start (167 kB each), for each
notifier. The others wait as stubs while they are pending in the store, and cost a
read of the store each when their turn comes (11 ms for the audit's notices on this
machine, against a send's tens or hundreds of ms): a notifier down for a day keeps
this many in memory, and a start decodes this many of each notifier's, not all."""
MAX_UNSTORED_NOTICES = 10_000
"""Notices an outbox keeps whole while the store has not taken their change (it fails):
as many as the incident changes kept for it (``daemon.MAX_UNSAVED``). With the store
and the notifier both failing, the oldest beyond go, never sent (unless their change is
written later: the next start sends them)."""


@dataclass(frozen=True, slots=True)
class NoticeStub:
    """A notice pending in the store, waiting by its id: read whole when its turn comes."""

    id: str
    channel: str


@dataclass(eq=False, slots=True)
class _Waiting:
    item: Notice | NoticeStub
    stored: bool  # pending in the store: a restart sends it even if this one never does
    at: float  # when it was queued (wall time: ``xwatch_outbox_oldest_timestamp_seconds``)


class Outbox:
    """One notifier's notices, in order, for one consumer (its ``Daemon._deliver``): take
    one with ``get``, say it is over with ``task_done``; ``join`` waits until every notice
    queued is over (a drain)."""

    def __init__(
        self,
        channel: str,
        dropped: Callable[[Notice], None],
        *,
        limit: int = NOTICES_IN_MEMORY,
        unstored_limit: int = MAX_UNSTORED_NOTICES,
    ) -> None:
        self.channel = channel
        self.dropped = dropped  # told of each notice gone beyond ``unstored_limit``
        self.limit = limit
        self.unstored_limit = unstored_limit
        self._waiting: deque[_Waiting] = deque()
        self._sending: _Waiting | None = None
        self._whole = 0  # notices held whole: waiting, or being sent
        self._stubs = 0  # stubs waiting
        self._unstored = 0  # notices waiting that are not in the store
        self._ready = asyncio.Event()  # set while something waits
        self._over = asyncio.Event()  # set while nothing waits or is being sent
        self._over.set()

    def put(self, notice: Notice, *, stored: bool, at: float) -> None:
        """Queue ``notice``; ``stored``: it is pending in the store (its change was
        written), so it may wait as a stub."""
        if stored and (self._stubs or self._whole >= self.limit):
            self._add(_Waiting(NoticeStub(notice.id, notice.channel), stored, at))
            return
        self._add(_Waiting(notice, stored, at))
        if not stored and self._unstored > self.unstored_limit:
            self._drop_oldest_unstored()

    def put_stub(self, stub: NoticeStub, at: float) -> None:
        """Queue a notice pending in the store by its id (a start, past ``limit``)."""
        self._add(_Waiting(stub, True, at))

    async def get(self) -> Notice | NoticeStub:
        """The next notice (or stub: the caller reads it), now being sent."""
        assert self._sending is None, "one notice at a time: task_done() the last one"
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        waiting = self._waiting.popleft()
        if isinstance(waiting.item, NoticeStub):
            self._stubs -= 1
            self._whole += 1  # read whole for its turn
        elif not waiting.stored:
            self._unstored -= 1
        self._sending = waiting
        return waiting.item

    def task_done(self) -> None:
        """The notice ``get`` gave is over (sent, failed, or not found)."""
        assert self._sending is not None, "task_done() without a notice taken"
        self._sending = None
        self._whole -= 1
        if not self._waiting:
            self._over.set()

    async def join(self) -> None:
        """Wait until every notice queued so far is over."""
        await self._over.wait()

    def qsize(self) -> int:
        """Notices waiting (not the one being sent)."""
        return len(self._waiting)

    @property
    def depth(self) -> int:
        """Notices waiting or being sent (``xwatch_outbox_depth``)."""
        return len(self._waiting) + (self._sending is not None)

    @property
    def oldest(self) -> float | None:
        """When the oldest notice waiting or being sent was queued (None: none)."""
        first = self._sending or (self._waiting[0] if self._waiting else None)
        return first.at if first is not None else None

    @property
    def whole(self) -> int:
        """Notices held whole (waiting, or being sent); the others wait as stubs."""
        return self._whole

    def _add(self, waiting: _Waiting) -> None:
        if isinstance(waiting.item, NoticeStub):
            self._stubs += 1
        else:
            self._whole += 1
            self._unstored += not waiting.stored
        self._waiting.append(waiting)
        self._ready.set()
        self._over.clear()

    def _drop_oldest_unstored(self) -> None:
        gone = next(w for w in self._waiting if not w.stored)
        self._waiting.remove(gone)
        self._whole -= 1
        self._unstored -= 1
        if not self._waiting and self._sending is None:
            self._over.set()
        assert isinstance(gone.item, Notice)
        self.dropped(gone.item)
