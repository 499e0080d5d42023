"""Drop a post that has already been ingested: the same post from two sources, or
a message redelivered after a reconnect (QoS 1 is at-least-once).

Memory is bounded: the ids of the last ``capacity`` posts are remembered, which
covers redeliveries (seconds to minutes apart) many times over.
"""

from __future__ import annotations

from collections import OrderedDict


class Deduplicator:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, post_id: str) -> bool:
        """True the first time an id is seen (within the last ``capacity`` ids)."""
        if post_id in self._seen:
            self._seen.move_to_end(post_id)
            return False
        self._seen[post_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
