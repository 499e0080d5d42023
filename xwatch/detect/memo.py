"""A detector's memo: one slot for what it works out from its own state and may use again.

A detector's checkpointed state is its dataclass fields (``xwatch.detect.state``). What it
can derive from them again (the count detector's constants of its width and parameters,
the share detector's work on the bucket ``score_one`` just judged) goes in this slot
instead: never checkpointed, not part of the state's fingerprint, and absent from a copy
made without ``__init__`` (``copy``, ``pickle``), which then derives it again.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Memo(Generic[T]):
    """Base of a slotted detector dataclass: ``_get_memo`` what ``_set_memo`` kept."""

    __slots__ = ("_memo",)
    _memo: T | None

    def _set_memo(self, value: T | None) -> None:
        # set here, where type checkers see the slot (a slotted dataclass's own __slots__
        # hides its bases' from them)
        self._memo = value

    def _get_memo(self) -> T | None:
        """What was remembered last (None: nothing, or a copy made without __init__)."""
        try:
            return self._memo
        except AttributeError:
            return None
