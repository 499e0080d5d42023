"""The deduplicator: repeats dropped within its memory, which stays bounded."""

from __future__ import annotations

import pytest

from xwatch.dedup import Deduplicator


def test_a_repeat_within_half_the_capacity_is_dropped() -> None:
    dedup = Deduplicator(capacity=10)
    for i in range(5):
        assert dedup.first_time(f"p{i}")
    for i in range(5):
        assert not dedup.first_time(f"p{i}")
    # across a change of generation too
    for i in range(5, 10):
        assert dedup.first_time(f"p{i}")
    assert not dedup.first_time("p5") and not dedup.first_time("p9")


def test_memory_is_bounded_by_the_capacity_and_old_ids_are_forgotten() -> None:
    dedup = Deduplicator(capacity=10)
    for i in range(1000):
        assert dedup.first_time(f"p{i}")
        assert len(dedup) <= 10
    assert dedup.first_time("p0")  # long forgotten: taken as new
    assert not dedup.first_time("p999")


def test_an_id_seen_again_is_remembered_afresh() -> None:
    dedup = Deduplicator(capacity=4)
    assert dedup.first_time("kept")
    for i in range(20):  # "kept" keeps coming back (a redelivery loop), between new posts
        assert dedup.first_time(f"p{i}")
        assert not dedup.first_time("kept")


@pytest.mark.parametrize("capacity", [2, 3])
def test_a_tiny_capacity_still_drops_a_repeat_and_stays_within_it(capacity: int) -> None:
    """Below 4, a generation holds one id (``capacity // 2`` is 1): the last id and the
    one before it are remembered, never more than the capacity (a generation of 1.5 ids,
    or of 2, would hold 4)."""
    dedup = Deduplicator(capacity=capacity)
    for i in range(50):
        assert dedup.first_time(f"p{i}")
        assert not dedup.first_time(f"p{i}")  # redelivered at once: dropped
        assert len(dedup) <= capacity
    assert not dedup.first_time("p48")  # the one before the last: still remembered
    assert dedup.first_time("p0")


def test_a_capacity_of_one_drops_an_immediate_repeat() -> None:
    """The smallest capacity the configuration allows still drops a redelivery that comes
    straight after the original, and remembers at most the last two ids."""
    dedup = Deduplicator(capacity=1)
    for i in range(50):
        assert dedup.first_time(f"p{i}")
        assert not dedup.first_time(f"p{i}")
        assert len(dedup) <= 2
