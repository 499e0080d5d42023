"""The new-term vocabulary's memory: one string per word in the process, a bounded model.

The strings here are built at run time (``fresh``): a literal in the test source is
interned by the compiler already, and would prove nothing.
"""

from __future__ import annotations

import json

import pytest

from xwatch.detect import terms
from xwatch.detect.state import STATE_VERSION, Checkpoint, restore_term_model, to_state
from xwatch.detect.terms import TermModel, TermParams, TermTracker, terms_of
from xwatch.model import SeriesKey

from .factories import T0, mention


def fresh(word: str) -> str:
    """An equal string that is not the interned one."""
    copy = "".join(list(word))
    assert copy == word and copy is not word
    return copy


def test_a_word_is_one_string_however_many_posts_use_it() -> None:
    first = terms_of(fresh("the kettle overheats #recall"))
    second = terms_of(fresh("my kettle overheats again #recall"))
    shared = first & second
    assert shared == {"kettle", "overheats", "#recall"}
    for word in shared:
        [a] = [t for t in first if t == word]
        [b] = [t for t in second if t == word]
        assert a is b


def test_two_brands_models_hold_one_string_per_word() -> None:
    words = ["kettle", "overheats", "smoke"]
    brand_a, brand_b = TermModel(300), TermModel(300)
    brand_a.learn(0.0, 10, {fresh(w): 2 for w in words})
    brand_b.learn(0.0, 20, {fresh(w): 4 for w in words})
    for word in words:
        [a] = [t for t in brand_a.counts if t == word]
        [b] = [t for t in brand_b.counts if t == word]
        assert a is b
        assert brand_a.count(word) == 2 and brand_b.count(word) == 4  # counts as before


def test_a_model_read_back_from_a_checkpoint_shares_the_live_strings() -> None:
    live = TermModel(300)
    live.learn(0.0, 10, {fresh("recall"): 3})
    state = json.loads(json.dumps(to_state(live)))  # as the store keeps it: new strings
    restored = restore_term_model(
        Checkpoint(SeriesKey("b"), "term_volume", "TermModel", STATE_VERSION, state), 300
    )
    [term] = restored.counts
    assert term is next(iter(live.counts))
    assert to_state(restored) == to_state(live)


def test_the_vocabulary_stays_bounded_and_remembers_what_it_dropped() -> None:
    params = TermParams(capacity=100)
    model = TermModel(300, params)
    for bucket in range(40):  # 40 x 10 new words, each bucket's words used less and less
        words = {f"w{bucket}x{i}": 1 + (40 - bucket) for i in range(10)}
        model.learn(bucket * 300.0, 100, words)
        assert len(model.counts) <= 125
    assert model.unseen > 0.0  # the strongest word dropped is the floor for unseen words
    assert model.usual("never-seen") >= model.unseen / model.posts


def test_a_tracker_counts_posts_whatever_string_objects_they_bring() -> None:
    tracker = TermTracker(300, samples=2)
    tracker.judge_min = 1
    start = T0.timestamp() // 300 * 300
    for i in range(3):
        tracker.add(mention("recall", id=str(i)), {fresh("recall")}, start + i)
    [closed] = tracker.close_until(start + 300)
    [surge] = closed.surges
    assert (surge.term, surge.count, closed.posts) == ("recall", 3, 3)
    assert tracker.model.count("recall") == 3.0


def test_an_open_bucket_counts_so_many_terms_and_says_how_many_it_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bot posting random hashtags must not fill memory: past ``BUCKET_TERMS``
    different terms, a bucket counts only the ones it has (and their posts)."""
    monkeypatch.setattr(terms, "BUCKET_TERMS", 50)
    tracker = TermTracker(300)
    start = T0.timestamp() // 300 * 300
    for i in range(40):  # 3 new hashtags a post, and #recall in every one
        tags = {f"#r{i}a", f"#r{i}b", f"#r{i}c", "#recall"}
        tracker.add(mention("spam", id=str(i)), tags, start + i)
    [closed] = tracker.close_until(start + 300)
    assert closed.posts == 40
    assert len(tracker.model.counts) == 50
    assert tracker.model.count("#recall") == 40.0  # a term it has goes on counting
    assert tracker.dropped == 40 * 3 + 1 - 50
