"""The deduplicator: repeats dropped within its memory, which stays bounded."""

from __future__ import annotations

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
