"""Drop a post that has already been ingested: the same post from two sources, or
a message redelivered after a reconnect (QoS 1 is at-least-once).

Memory is bounded and steady: the ids are kept in two generations of sets, the current
one and the one before it; when the current one holds ``capacity / 2`` ids, the one
before is dropped and the current one takes its place. So the last ``capacity / 2``
ids at least, and ``capacity`` at most, are remembered, which covers redeliveries
(seconds to minutes apart) many times over (a generation holds one id at least: a
capacity of 1 remembers 2). An id seen again is remembered afresh.

Two plain sets, not an ordered dict that forgets its oldest entry at every insert: such
a dict keeps the slots of the entries it removed until it resizes, and its memory
stepped up for good (70 to 115 MiB at 792,000 ids) long after it had filled
(``bench/memory.py``); a set that is only ever added to, then dropped whole, does not.
"""

from __future__ import annotations


class Deduplicator:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._generation = max(1, capacity // 2)  # ids per generation
        self._current: set[str] = set()
        self._previous: set[str] = set()

    def first_time(self, post_id: str) -> bool:
        """True the first time an id is seen (within the last ``capacity / 2`` ids at least)."""
        if post_id in self._current:
            return False
        seen = post_id in self._previous
        if len(self._current) >= self._generation:
            self._previous, self._current = self._current, set()
        self._current.add(post_id)  # a repeat is remembered afresh
        return not seen

    def __len__(self) -> int:
        return len(self._current | self._previous)
