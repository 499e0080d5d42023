"""Detector checkpoints: exact restores, clear refusals, and the daemon across a restart.

Nothing here depends on a detector's particular fields: states are compared as
whole ``to_state`` documents and detectors by the signals they give.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import io
import json
import logging
import math
import random
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.factories import T0, bucket, rhythmic_share
from tests.factories import mention as post
from xwatch.alerting.console import ConsoleNotifier
from xwatch.daemon import Daemon
from xwatch.detect import Detector
from xwatch.detect.share import NegativeShareDetector, ShareParams, shrunk_factors
from xwatch.detect.state import (
    DETECTORS,
    STATE_VERSION,
    Checkpoint,
    CheckpointError,
    fingerprint,
    from_state,
    restore_term_model,
    to_state,
)
from xwatch.detect.terms import TermModel, TermTracker
from xwatch.detect.volume import CountDetector, CountParams
from xwatch.errors import XwatchError
from xwatch.metrics import Metrics
from xwatch.model import Bucket, Measure, Mention, SeriesKey, Signal
from xwatch.pipeline import Pipeline, default_detectors
from xwatch.sentiment.router import default_router
from xwatch.settings import Settings, load_settings
from xwatch.sources import MetricsReport
from xwatch.sources.replay import ReplaySource
from xwatch.store import Store, StoreError

HOUR = 3600
DAY = 24 * HOUR

# -- data ----------------------------------------------------------------------------


def rhythm(seconds: float) -> float:
    """Posts per hour: busy afternoons, quiet nights."""
    hour = (seconds % DAY) / HOUR
    return 40.0 if 12 <= hour < 20 else 20.0 if 7 <= hour < 12 else 4.0


def buckets(
    scale: int, days: float, seed: int, spike_at: float | None = None, brand: str = "b"
) -> list[Bucket]:
    """A brand's buckets: a daily rhythm, some negatives, and maybe a spike."""
    rng = random.Random(seed)
    out = []
    for i in range(int(days * DAY / scale)):
        start = T0 + timedelta(seconds=i * scale)
        mean = rhythm(i * scale) * scale / HOUR
        count = sum(rng.random() < mean / 20 for _ in range(20))
        negative = sum(rng.random() < 0.15 for _ in range(count))
        if spike_at is not None and spike_at <= i * scale < spike_at + HOUR:
            count, negative = count + 25, negative + 20
        out.append(bucket(start, count, negative, scale=scale, brand=brand))
    return out


CALM = (
    "loving my kettlebird this morning",
    "anyone tried the new kettlebird aero?",
    "kettlebird customer service was quick and kind",
    "kettlebird support is terrible, worst experience ever",
)
DEFECT = "my kettlebird overheated and the base melted, awful and dangerous"


def traffic(
    start: float, end: float, seed: int, spike_at: float | None = None
) -> list[dict[str, str]]:
    """Posts (replay JSON) from ``start`` to ``end`` seconds after T0, the last one at ``end``."""
    rng = random.Random(seed)
    times = []
    t = start
    while t < end:
        times.append(t)
        t += rng.expovariate(rhythm(t) / HOUR)
    times.append(end)
    if spike_at is not None:  # an overheating scandal: 60 defect posts in half an hour
        times.extend(spike_at + i * 30 for i in range(60))
    posts = []
    for i, at in enumerate(sorted(times)):
        in_spike = spike_at is not None and spike_at <= at < spike_at + 1800
        text = DEFECT if in_spike or rng.random() < 0.05 else rng.choice(CALM)
        created = T0 + timedelta(seconds=at)
        posts.append(
            {
                "id": f"{seed}-{i}",
                "text": text,
                "lang": "en",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return posts


def write_replay(path: Path, posts: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in posts), "utf-8")
    return path


async def read_replay(path: Path) -> list[Mention]:
    source = ReplaySource(path, "replay", 0.0, MetricsReport(Metrics(CollectorRegistry())))
    async with source:
        return [m async for m in source]


# Phase 1 ends with a post exactly on a 15-minute boundary, so that its flush closes
# every scale's buckets up to T1 + 15 min, where phase 2 begins: a pipeline that goes
# on and one restored from the checkpoint then see exactly the same buckets.
T1 = 30 * HOUR
T2 = T1 + 900


def phase_one(seed: int = 1) -> list[dict[str, str]]:
    return traffic(0, T1, seed)


def phase_two(seed: int = 2) -> list[dict[str, str]]:
    return traffic(T2, T2 + 8 * HOUR, seed, spike_at=T2 + 4 * HOUR)


# -- one detector --------------------------------------------------------------------


def states(detectors: list[Detector]) -> list[dict[str, Any]]:
    return [to_state(d) for d in detectors]


def keyed(items: list[Checkpoint]) -> dict[tuple[SeriesKey, str], dict[str, Any]]:
    """Checkpoint states by series and measure, whatever order they come in."""
    return {(c.series, c.measure): c.state for c in items}


def test_every_registered_class_is_a_default_detector_or_the_term_model() -> None:
    """So that the tests below, over the default detectors and the term model, cover every
    class."""
    names = {type(d).__name__ for d in default_detectors(300)}
    assert names | {TermModel.__name__} == set(DETECTORS)


def test_a_restored_term_model_judges_new_terms_exactly_like_the_original() -> None:
    rng = random.Random(5)
    words = [f"word{i}" for i in range(40)]
    original = TermTracker(300)
    for i in range(2 * DAY // 60):  # two days of posts, a minute apart
        terms = set(rng.sample(words, 3)) | ({"recall"} if i > 2 * DAY // 60 - 30 else set())
        original.add(post("post", at=i * 60, id=str(i)), terms, T0.timestamp() + i * 60)
    original.close_until(T0.timestamp() + 2 * DAY - 1800)
    state = json.loads(json.dumps(to_state(original.model)))  # as the store keeps it
    restored = TermTracker(300)
    restored.model = restore_term_model(
        Checkpoint(SeriesKey("b"), "term_volume", "TermModel", STATE_VERSION, state), 300
    )
    restored.next_index, restored.open = original.next_index, copy.deepcopy(original.open)
    end = T0.timestamp() + 2 * DAY
    closed = original.close_until(end)
    assert restored.close_until(end) == closed  # the last half hour, bucket by bucket
    assert closed[0].surges[0].term == "recall" and closed[0].surges[0].likelihood > 0.999
    assert closed[0].history_seconds > DAY  # no warm-up again
    assert to_state(restored.model) == to_state(original.model)


@pytest.mark.parametrize("scale", [300, 900])
@pytest.mark.parametrize("measure", sorted({d.measure for d in default_detectors(300)}), ids=str)
def test_a_restored_detector_scores_exactly_like_the_original(scale: int, measure: Measure) -> None:
    [original] = [d for d in default_detectors(scale) if d.measure is measure]
    # more than a week before the checkpoint (weekly factors move), a spike after it
    history = buckets(scale, days=10, seed=scale, spike_at=9 * DAY + 14 * HOUR)
    learned, ahead = history[: 8 * DAY // scale], history[8 * DAY // scale :]
    for b in learned:
        original.score_one(b)
        original.learn_one(b)

    restored = from_state(json.loads(json.dumps(to_state(original))))  # as the store keeps it

    assert type(restored) is type(original)
    signals: list[Signal] = []
    for b in ahead:
        expected = original.score_one(b)
        assert restored.score_one(b) == expected  # every float exactly equal
        signals.append(expected)
        original.learn_one(b)
        restored.learn_one(b)
    assert to_state(restored) == to_state(original)
    assert any(not s.warming_up for s in signals)
    assert max(s.likelihood for s in signals) > 0.999  # the spike is in what was compared
    if isinstance(original, CountDetector):  # its calibration was restored, not started again
        assert isinstance(restored, CountDetector)
        assert restored.onsets == original.onsets and original.onsets.reached[0] > 0
        assert restored.bucket_tails == original.bucket_tails
        assert restored.calibrated_up == original.calibrated_up


def test_a_restored_detector_remembers_the_level_before_an_adopted_shift() -> None:
    """Saved while a five-hour crisis is the new normal, the level before it remembered:
    the restored detector judges the return to that level, and adopts it, exactly as the
    original does."""
    rng = random.Random(9)
    rates = [20.0] * (2 * DAY // 300) + [100.0] * (5 * HOUR // 300) + [20.0] * (6 * HOUR // 300)
    history = [
        bucket(T0 + timedelta(seconds=300 * i), round(rng.gauss(rate, rate**0.5)))
        for i, rate in enumerate(rates)
    ]
    cut = 2 * DAY // 300 + 5 * HOUR // 300  # the crisis's end
    original = CountDetector(Measure.VOLUME, 300)
    for b in history[:cut]:
        original.score_one(b)
        original.learn_one(b)
    assert original.shift_from > 0.0  # the crisis was adopted, the calm level remembered

    restored = from_state(json.loads(json.dumps(to_state(original))))

    assert isinstance(restored, CountDetector)
    for b in history[cut:]:
        assert restored.score_one(b) == original.score_one(b)
        original.learn_one(b)
        restored.learn_one(b)
    assert to_state(restored) == to_state(original)
    assert original.shift_from == 0.0  # the calm level came back, and was adopted


def test_restored_detectors_share_their_params_and_constants() -> None:
    """10,000 restored series hold one params record and one set of constants, not one
    each (and the same ones as fresh detectors)."""
    learned = [learned_state() for _ in range(2)]
    first, second = (from_state(json.loads(json.dumps(state))) for state in learned)

    assert isinstance(first, CountDetector) and isinstance(second, CountDetector)
    assert first.params is second.params  # one record, whichever checkpoint it came from
    assert first._constants() is second._constants()
    assert first._constants() is CountDetector(Measure.VOLUME, 300)._constants()


def test_a_list_of_numbers_that_is_not_one_is_refused_naming_the_item() -> None:
    state = learned_state()
    daily = [1.0] * 23 + ["1e9"]
    message = refusal(state | {"fields": state["fields"] | {"daily": daily}})
    assert "CountDetector.daily[23]: expected a number, found '1e9' (str)" in message
    message = refusal(state | {"fields": state["fields"] | {"daily": {"0": 1.0}}})
    assert "CountDetector.daily: expected a list[float]" in message


def test_a_state_is_plain_json_data() -> None:
    for detector in default_detectors(300):
        state = to_state(detector)
        assert json.loads(json.dumps(state, allow_nan=False)) == state
        assert state["detector"] == type(detector).__name__
        assert state["version"] == STATE_VERSION


# -- refusals ------------------------------------------------------------------------


def refusal(state: dict[str, Any]) -> str:
    with pytest.raises(CheckpointError) as caught:
        from_state(state)
    assert isinstance(caught.value, XwatchError)
    return str(caught.value)


def learned_state() -> dict[str, Any]:
    detector = default_detectors(300)[0]
    for b in buckets(300, days=1, seed=7):
        detector.learn_one(b)
    return to_state(detector)


def test_another_state_version_is_refused() -> None:
    state = learned_state() | {"version": STATE_VERSION + 1}
    message = refusal(state)
    assert f"state version {STATE_VERSION + 1}" in message
    assert f"reads version {STATE_VERSION}" in message


VERSION_9_STATE = Path(__file__).parent / "data" / "count_detector_v9.json"


def version_9_state() -> dict[str, Any]:
    """A state saved by version 9 itself (``tests/data``: 8 days learned)."""
    state: dict[str, Any] = json.loads(VERSION_9_STATE.read_text("utf-8"))["state"]
    assert state["version"] == 9
    return state


def version_8_state(state: dict[str, Any]) -> dict[str, Any]:
    """A version 9 ``state`` as version 8 would have saved it: no fading (the tails'
    weight and the half-life are not there), counts as integers."""
    fields = copy.deepcopy(state["fields"])
    for name in ("onsets", "bucket_tails"):
        tail = fields[name]
        del tail["weight"]
        tail["buckets"] = round(tail["buckets"])
        tail["reached"] = [round(count) for count in tail["reached"]]
    del fields["params"]["calibration_halflife_seconds"]
    return state | {
        "version": 8,
        "fingerprint": PINNED_FINGERPRINTS[8]["CountDetector"],
        "fields": fields,
    }


def test_a_version_8_checkpoint_is_upgraded_and_keeps_what_it_learned() -> None:
    """Version 9 made the calibration fade; a version 8 state is a version 9 one that has
    faded nothing yet. It is upgraded (to 9, then on), not refused: the series keeps its
    rhythm and its calibration, as the version 9 state whose tails have faded nothing
    does (their weight 1, their counts as saved)."""
    old = json.loads(json.dumps(version_8_state(version_9_state())))
    unfaded = version_9_state()
    for name in ("onsets", "bucket_tails"):
        tail = unfaded["fields"][name]
        tail |= {"weight": 1.0, "buckets": round(tail["buckets"])}
        tail["reached"] = [round(count) for count in tail["reached"]]

    restored = from_state(old)

    assert isinstance(restored, CountDetector)
    assert restored.params == CountParams()  # the defaults: it fades from now on
    assert restored.onsets.weight == 1.0 and restored.onsets.reached[0] > 0
    assert to_state(restored) == to_state(from_state(unfaded))
    for other in (NegativeShareDetector(300), TermModel(300)):  # unchanged from 8 to 10
        for version in (8, 9, 10):
            state = as_saved_by(to_state(other), version)
            assert to_state(from_state(state)) == to_state(other)


SHARE_FIELDS_12 = frozenset(
    {
        "cusum_down",
        "rise_negatives",
        "rise_posts",
        "held_up",
        "fall_negatives",
        "fall_posts",
        "held_down",
        "hour_expected",
        "shift_from",
        "shift_at",
    }
)
"""The share detector's fields that version 12 added (and ``ShareParams``' adoption)."""


def as_saved_by(state: dict[str, Any], version: int) -> dict[str, Any]:
    """A UTC detector's current ``state`` as an older ``version`` saved it: before 11 no
    ``timezone`` field, before 12 none of the share detector's ``SHARE_FIELDS_12``; and
    that version's fingerprint."""
    dropped = set()
    if version < 11:
        dropped.add("timezone")
    if version < 12 and state["detector"] == "NegativeShareDetector":
        dropped |= SHARE_FIELDS_12
    fields = {name: value for name, value in state["fields"].items() if name not in dropped}
    if version < 12 and state["detector"] == "NegativeShareDetector":
        params = dict(fields["params"])
        del params["adopt_after_seconds"], params["adopt_likelihood"]
        del params["shift_memory_seconds"]
        fields["params"] = params
    pinned = PINNED_FINGERPRINTS[version][state["detector"]]
    return state | {"version": version, "fingerprint": pinned, "fields": fields}


def test_a_version_10_checkpoint_is_upgraded_to_its_rhythm_in_utc() -> None:
    """Version 11 learns the rhythm in the brand's time zone; version 10 learned it in
    UTC, and its states are upgraded to say so (kept, not refused)."""
    detectors: list[CountDetector | NegativeShareDetector] = [
        CountDetector(Measure.VOLUME, 300),
        NegativeShareDetector(300),
    ]
    for b in buckets(300, days=2, seed=3):
        for detector in detectors:
            detector.score_one(b)
            detector.learn_one(b)
    for detector in detectors:
        saved = json.loads(json.dumps(as_saved_by(to_state(detector), 10)))
        restored = from_state(saved)
        assert isinstance(restored, CountDetector | NegativeShareDetector)
        assert restored.timezone == "UTC"
        now, live = to_state(restored)["fields"], to_state(detector)["fields"]
        if isinstance(detector, NegativeShareDetector):  # version 12's, worked out again
            for name in SHARE_FIELDS_12:
                now.pop(name), live.pop(name)
        assert now == live


VERSION_11_SHARE = Path(__file__).parent / "data" / "share_detector_v11.json"


def test_a_version_11_share_checkpoint_is_upgraded_and_keeps_its_rhythm() -> None:
    """Version 12's share detector adopts a lasting change, and learns each hour's and
    weekday's factor against the usual share of its time. A checkpoint saved by version
    11 itself (``tests/data``: 8 days of a share with a daily rhythm, 0.06 to 0.18) is
    upgraded, not refused: each slot's expected negatives are its posts times the share
    of all slots, which gives the factors it had, so the next day's usual share, hour by
    hour, is the one version 11 gave; nothing is held or adopted yet; and it goes on
    judging and learning the next day without a false alarm."""
    saved = json.loads(VERSION_11_SHARE.read_text("utf-8"))
    assert saved["state"]["version"] == 11

    restored = from_state(saved["state"])

    assert isinstance(restored, NegativeShareDetector)
    assert restored.params == ShareParams()
    assert restored.hour_factors == saved["state"]["fields"]["hour_factors"]
    assert restored.cusum_down == restored.rise_posts == restored.held_up == 0
    for start, usual in saved["usual"].items():
        at = datetime.fromisoformat(start)
        assert restored.usual_at(bucket(at, 10, 1)) == pytest.approx(usual, rel=1e-9)
    # the factors the upgraded sums give are the ones version 11's sums gave (as saved at
    # the last hour's start: its sums have learned that hour's buckets since)
    again = shrunk_factors(restored.hour_negatives, restored.hour_expected, restored.hour_posts)
    assert again == pytest.approx(restored.hour_factors, rel=0.05)
    counts = rhythmic_share(9, amplitude=0.5, seed=11)
    for i, (n, k) in enumerate(counts[8 * 288 :], start=8 * 288):
        b = bucket(T0 + timedelta(seconds=300 * i), n, k)
        assert restored.score_one(b).likelihood < 0.9999
        restored.learn_one(b)
    assert to_state(from_state(json.loads(json.dumps(to_state(restored))))) == to_state(restored)


def test_a_version_9_checkpoint_is_upgraded_and_keeps_its_rhythm() -> None:
    """Version 10 learns each hour's factor as a ratio of sums (posts over expected posts).
    A checkpoint saved by version 9 itself (``tests/data``: 8 days learned) is upgraded,
    not refused: each factor becomes a ratio resting on the posts it rested on, so the
    series keeps its daily and weekly rhythm. The next day's expected counts, hour by
    hour, are within 10 % of the ones version 9 gave, and the upgraded detector goes on
    judging and learning (the next day's buckets) without a false alarm."""
    saved = json.loads(VERSION_9_STATE.read_text("utf-8"))

    restored = from_state(version_9_state())

    assert isinstance(restored, CountDetector)
    assert sum(restored.hour_expected) > 0 and restored.last_hour == -1
    for start, expected in saved["expected"].items():
        at = datetime.fromisoformat(start)
        assert restored.expected(at) == pytest.approx(expected, rel=0.1)
    for b in buckets(300, days=9, seed=8)[8 * 288 :]:  # the day after the saved eight
        assert restored.score_one(b).likelihood < 0.9999
        restored.learn_one(b)
    assert to_state(from_state(json.loads(json.dumps(to_state(restored))))) == to_state(restored)


def test_a_version_9_state_of_the_wrong_types_is_refused_by_name() -> None:
    """The upgrade works out the hours' evidence from the saved level and factors; where
    those are not numbers it leaves them to the checkpoint's checks, which name them."""
    for name, value in (("level", "high"), ("daily", [1.0] * 23 + [None])):
        state = version_9_state()
        state["fields"][name] = value
        assert name in refusal(state)


def test_a_version_8_state_with_other_fields_is_refused() -> None:
    state = learned_state() | {"version": 8}  # version 9's fields, saved as version 8
    assert "state version 8: its fields are not the ones version 8 had" in refusal(state)
    message = refusal(learned_state() | {"version": 7})
    expected = f"state version 7: this xwatch reads version {STATE_VERSION} and upgrades 8-11"
    assert expected + " (" in message


def test_an_unknown_detector_class_is_refused() -> None:
    message = refusal(learned_state() | {"detector": "ProphetDetector"})
    assert "unknown detector class 'ProphetDetector'" in message
    for name in DETECTORS:
        assert name in message


def test_a_state_with_other_fields_is_refused_naming_them() -> None:
    state = learned_state()
    fields = dict(state["fields"])
    gone = next(iter(fields))
    del fields[gone]
    fields["retired_knob"] = 1.5
    # what a class with other fields would have written: another fingerprint
    message = refusal(state | {"fields": fields, "fingerprint": "0123456789abcdef"})
    assert "fields have changed" in message
    assert f"expected {gone} (not in the checkpoint)" in message
    assert "found retired_knob (unknown to this xwatch)" in message


def test_a_field_of_the_wrong_type_is_refused() -> None:
    state = learned_state()
    name = next(k for k, v in state["fields"].items() if isinstance(v, int | float))
    message = refusal(state | {"fields": state["fields"] | {name: "1e9; import os"}})
    assert f".{name}: expected" in message
    assert "found '1e9; import os' (str)" in message


def test_a_detector_that_cannot_be_saved_says_which_field() -> None:
    detector = default_detectors(300)[0]
    name = next(iter(to_state(detector)["fields"]))
    object.__setattr__(detector, name, object())
    with pytest.raises(CheckpointError, match=f"{name}: cannot checkpoint a object"):
        to_state(detector)


@pytest.mark.parametrize("garbage", [None, [], {"detector": "CountDetector"}, "{}"])
def test_what_is_not_a_state_is_refused(garbage: object) -> None:
    with pytest.raises(CheckpointError, match="not a detector state"):
        from_state(garbage)


# -- a whole pipeline ---------------------------------------------------------------


class RecordingPipeline(Pipeline):
    """A pipeline that keeps every signal its detectors give."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings.config,
            settings.rules,
            settings.playbooks,
            default_router("en"),
            Metrics(CollectorRegistry()),
        )
        self.signals: list[Signal] = []

    def _judge(self, bucket: Bucket) -> list[Signal]:
        signals = super()._judge(bucket)
        self.signals.extend(signals)
        return signals

    def feed(self, mentions: list[Mention], batch: int = 250) -> None:
        for i in range(0, len(mentions), batch):
            self.ingest(mentions[i : i + batch])
        self.flush()


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")


@pytest.fixture
def replays(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_replay(tmp_path / "one.jsonl", phase_one()),
        write_replay(tmp_path / "two.jsonl", phase_two()),
    )


@pytest.mark.asyncio
async def test_a_restored_pipeline_scores_exactly_like_the_original(
    settings: Settings, replays: tuple[Path, Path], tmp_path: Path
) -> None:
    one, two = [await read_replay(path) for path in replays]
    original = RecordingPipeline(settings)
    original.feed(one)
    with Store.open(tmp_path / "xwatch.sqlite3") as store:
        store.save_checkpoints(original.checkpoint())
    restarted = RecordingPipeline(settings)
    with Store.open(tmp_path / "xwatch.sqlite3") as store:
        items = store.load_checkpoints()
        # as the daemon restores: streamed from the store, a page of rows at a time
        restored, refused = restarted.restore(store.iter_checkpoints(page=7))

    assert (restored, refused) == (len(original.detectors), 0)
    assert any(series.topic for series in original.detectors)  # rule topics are series too
    assert any(c.measure == "term_volume" for c in items)  # the new-term models too
    original.signals.clear()
    original.feed(two)
    restarted.feed(two)
    assert restarted.signals == original.signals  # every float exactly equal
    assert len(original.signals) > 1000
    assert max(s.likelihood for s in original.signals) > 0.999
    assert keyed(restarted.checkpoint()) == keyed(original.checkpoint())


def test_a_checkpoint_is_a_snapshot(settings: Settings) -> None:
    pipeline = RecordingPipeline(settings)
    pipeline.restore(checkpoints_of(pipeline, buckets(300, days=1, seed=3)))
    items = pipeline.checkpoint()
    before = json.dumps([c.state for c in items])
    for b in buckets(300, days=1, seed=4, brand="kettlebird"):
        pipeline._judge(b)  # the restored detectors learn on
    assert keyed(pipeline.checkpoint()) != keyed(items)
    assert json.dumps([c.state for c in items]) == before


def checkpoints_of(pipeline: Pipeline, history: list[Bucket], scale: int = 300) -> list[Checkpoint]:
    """Checkpoints of the brand's series at ``scale`` after learning ``history``."""
    series = SeriesKey(pipeline.config.brands[0].id, "", scale)
    detectors = default_detectors(scale)
    for b in history:
        for detector in detectors:
            detector.learn_one(Bucket(series, b.start, b.end, b.count, b.negative, b.reach))
    return [Checkpoint.of(series, d) for d in detectors]


def test_a_refused_series_starts_fresh_and_the_others_are_restored(settings: Settings) -> None:
    pipeline = RecordingPipeline(settings)
    brand = settings.config.brands[0].id
    good = checkpoints_of(pipeline, buckets(300, days=1, seed=5))
    moved = checkpoints_of(pipeline, buckets(900, days=1, seed=5), scale=900)
    # one detector of the 15-minute series is from another version: the whole series is refused
    moved[0] = Checkpoint(
        moved[0].series,
        moved[0].measure,
        moved[0].detector,
        moved[0].version,
        moved[0].state | {"version": 0},
        moved[0].saved_at,
    )
    gone = [
        Checkpoint(SeriesKey("acme", "", 300), c.measure, c.detector, c.version, c.state)
        for c in good
    ]
    refusals: list[tuple[SeriesKey, str]] = []

    restored, refused = pipeline.restore(
        [*good, *moved, *gone], lambda series, exc: refusals.append((series, str(exc)))
    )

    assert (restored, refused) == (1, 2)
    assert states(pipeline.detectors[good[0].series]) == [c.state for c in good]
    fifteen = SeriesKey(brand, "", 900)
    assert states(pipeline.detectors.get(fifteen, default_detectors(900))) == states(
        default_detectors(900)
    )
    assert SeriesKey("acme", "", 300) not in pipeline.detectors
    assert refusals[0][0] == SeriesKey("acme", "", 300)
    assert "not in the config any more" in refusals[0][1]
    assert refusals[1][0] == fifteen
    assert "state version 0" in refusals[1][1]


def test_a_series_learned_in_another_time_zone_starts_afresh(
    settings: Settings, project: Path
) -> None:
    """A brand given its audience's time zone: the hours and days its detectors learned
    are UTC's, nine hours off Tokyo's. Its series are refused, saying why, and learn
    afresh; the new ones are Tokyo's."""
    saved = checkpoints_of(RecordingPipeline(settings), buckets(300, days=1, seed=5))
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace(
        "    name: Kettlebird\n", "    name: Kettlebird\n    timezone: Asia/Tokyo\n"
    )
    config.write_text(text, "utf-8")
    tokyo = RecordingPipeline(load_settings(config))
    refusals: list[str] = []

    assert tokyo.restore(saved, lambda series, exc: refusals.append(str(exc))) == (0, 1)
    assert refusals == [
        "its rhythm was learned in the time zone UTC, and the brand's is Asia/Tokyo now: "
        "it is learned afresh"
    ]
    for b in buckets(300, days=1, seed=6, brand="kettlebird"):
        tokyo._judge(b)
    assert {getattr(d, "timezone", None) for ds in tokyo.detectors.values() for d in ds} == {
        "Asia/Tokyo"
    }


PINNED_FINGERPRINTS = {
    5: {
        "CountDetector": "ba4ae091fdf05579",
        "NegativeShareDetector": "459a89ed366f7827",
        "TermModel": "a89c6275c0bdf88b",
    },
    6: {  # CountDetector remembers the level before an adopted shift
        "CountDetector": "351e403b50cf2b11",
        "NegativeShareDetector": "459a89ed366f7827",
        "TermModel": "a89c6275c0bdf88b",
    },
    7: {  # CountDetector: rhythm from the whole warm-up, weekdays from whole days
        "CountDetector": "e12035459878636c",
        "NegativeShareDetector": "459a89ed366f7827",
        "TermModel": "a89c6275c0bdf88b",
    },
    8: {  # CountDetector: the level learns by information; the first week is remembered;
        # NegativeShareDetector: a share per hour of day and weekday, a pooled drift
        "CountDetector": "18505488396d58c9",
        "NegativeShareDetector": "0c3297ff08fb182d",
        "TermModel": "a89c6275c0bdf88b",
    },
    9: {  # CountDetector: its calibration fades (upgraded from 8: ``UPGRADES``)
        "CountDetector": "7b277056d6058acd",
        "NegativeShareDetector": "0c3297ff08fb182d",
        "TermModel": "a89c6275c0bdf88b",
    },
    10: {  # CountDetector: hours as ratios of sums, a change held near the CUSUM's cap (from 9)
        "CountDetector": "c2b5e3e520a3b4b1",
        "NegativeShareDetector": "0c3297ff08fb182d",
        "TermModel": "a89c6275c0bdf88b",
    },
    11: {  # both: the rhythm in the brand's time zone (``timezone``; from 10: UTC)
        "CountDetector": "77c1ae68a952cde7",
        "NegativeShareDetector": "45065dd745bfb416",
        "TermModel": "a89c6275c0bdf88b",
    },
    12: {  # NegativeShareDetector adopts a lasting change; its slots against the usual share
        "CountDetector": "77c1ae68a952cde7",
        "NegativeShareDetector": "66e622ce95d08401",
        "TermModel": "a89c6275c0bdf88b",
    },
}


def test_the_saved_fields_change_only_with_the_state_version() -> None:
    """A class's field names, nested ones included (``CountDetector.judged``'s), are its
    checkpoints' fingerprint: a renamed or added field makes every saved checkpoint
    refused, as a new ``STATE_VERSION`` does. Pinned, so that it only happens on purpose
    (a speed-up once added a field to ``Judgement``): when this fails, bump
    ``STATE_VERSION`` and pin the new fingerprints."""
    assert STATE_VERSION in PINNED_FINGERPRINTS, "a new STATE_VERSION: pin its fingerprints"
    found = {name: fingerprint(cls) for name, cls in DETECTORS.items()}
    assert found == PINNED_FINGERPRINTS[STATE_VERSION]


# -- the daemon ----------------------------------------------------------------------


def daemon_config(project: Path, replay: Path, *, interval: float = 3600.0) -> Path:
    config = project / "daemon.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird"]\n'
        "sources:\n"
        "  - type: replay\n"
        f"    path: {replay}\n"
        "server:\n"
        "  enabled: false\n"
        "store:\n"
        "  path: state/xwatch.sqlite3\n"
        f"  checkpoint_interval_seconds: {interval}\n",
        "utf-8",
    )
    (project / "state").mkdir(exist_ok=True)
    return config


async def run_daemon(config: Path) -> Daemon:
    daemon = Daemon(
        load_settings(config),
        exit_when_done=True,
        notifiers={"console": ConsoleNotifier("console", io.StringIO())},
    )
    await asyncio.wait_for(daemon.run(), 30)
    return daemon


def saved(daemon: Daemon) -> float | None:
    return daemon.registry.get_sample_value("xwatch_checkpoints_total", {"outcome": "saved"})


@pytest.mark.asyncio
async def test_the_daemon_restores_its_detectors_on_restart(
    project: Path, replays: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xwatch.daemon")
    one, two = replays
    first = await run_daemon(daemon_config(project, one))
    assert "no checkpoint yet, every series starts fresh" in caplog.text
    assert saved(first) == 1  # at the graceful stop (the interval is an hour)
    rows = len(first.pipeline.checkpoint())
    assert f"checkpoint saved: {rows} detectors of " in caplog.text  # (it said 0)
    with Store.open(project / "state" / "xwatch.sqlite3") as store:
        assert keyed(store.load_checkpoints()) == keyed(first.pipeline.checkpoint())

    second = await run_daemon(daemon_config(project, two))

    series = len(first.pipeline.detectors)
    assert f"restored {series} series from the checkpoint saved" in caplog.text
    assert "0 refused" in caplog.text
    # the same as one pipeline restored in-process from the first run's state ...
    settings = load_settings(project / "daemon.yaml")
    reference = RecordingPipeline(settings)
    reference.feed(await read_replay(one))
    restarted = RecordingPipeline(settings)
    restarted.restore(reference.checkpoint())
    restarted.feed(await read_replay(two))
    assert keyed(second.pipeline.checkpoint()) == keyed(restarted.checkpoint())
    # ... and not what the second week alone would have taught
    fresh = RecordingPipeline(settings)
    fresh.feed(await read_replay(two))
    assert keyed(second.pipeline.checkpoint()) != keyed(fresh.checkpoint())
    size = second.registry.get_sample_value("xwatch_store_size_bytes")
    assert size is not None and size > 0


@pytest.mark.asyncio
async def test_the_daemon_settles_once_its_detectors_are_restored_before_the_first_post(
    project: Path, replays: tuple[Path, Path]
) -> None:
    """``settle`` (``xwatch run``: the garbage collector's ``gc_tuning.settle``) sees the
    restored detectors, so that they are frozen with the rest of what is loaded."""
    one, two = replays
    first = await run_daemon(daemon_config(project, one))
    seen: list[tuple[int, int]] = []
    second = Daemon(
        load_settings(daemon_config(project, two)),
        exit_when_done=True,
        notifiers={"console": ConsoleNotifier("console", io.StringIO())},
        settle=lambda: seen.append((len(second.pipeline.detectors), second.ingested)),
    )
    await asyncio.wait_for(second.run(), 30)

    assert seen == [(len(first.pipeline.detectors), 0)]
    assert second.ingested > 0


@pytest.mark.asyncio
async def test_the_daemon_refuses_a_stale_checkpoint_and_starts_that_series_fresh(
    project: Path, replays: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    one, _ = replays
    config = daemon_config(project, one)
    series = SeriesKey("kettlebird", "", 300)
    stale = [
        Checkpoint(c.series, c.measure, c.detector, 0, c.state | {"version": 0})
        for c in checkpoints_of(
            RecordingPipeline(load_settings(config)), buckets(300, days=1, seed=6)
        )
    ]
    with Store.open(project / "state" / "xwatch.sqlite3") as store:
        store.save_checkpoints(stale)
    caplog.set_level(logging.INFO, logger="xwatch.daemon")

    daemon = await run_daemon(config)

    warnings = [
        r for r in caplog.records if r.name == "xwatch.daemon" and r.levelno == logging.WARNING
    ]
    [warning] = [r.getMessage() for r in warnings]  # one per series, not per detector
    assert warning.startswith(f"series {series}: checkpoint refused, the series starts fresh: ")
    assert warning.endswith(
        f"state version 0: this xwatch reads version {STATE_VERSION} and upgrades 8-11 "
        "(the detector's state changed meaning)"
    )
    assert "restored 0 series from the checkpoint saved" in caplog.text
    assert "1 refused (started fresh)" in caplog.text
    # it went on from fresh detectors, and its stop saved them in place of the stale ones
    with Store.open(project / "state" / "xwatch.sqlite3") as store:
        assert {c.version for c in store.load_checkpoints()} == {STATE_VERSION}
    assert series in daemon.pipeline.detectors


class EndlessSource:
    """A source that sends a few posts and then stays open, like a quiet live feed."""

    live = False
    name = "endless"

    def __init__(self, mentions: list[Mention]) -> None:
        self.mentions = mentions

    async def __aenter__(self) -> EndlessSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> EndlessSource:
        self._left = iter(self.mentions)
        return self

    async def __anext__(self) -> Mention:
        for mention in self._left:
            return mention
        await asyncio.Event().wait()  # until cancelled
        raise StopAsyncIteration


@pytest.mark.asyncio
async def test_the_daemon_checkpoints_every_interval_while_it_runs(
    project: Path, replays: tuple[Path, Path]
) -> None:
    one, _ = replays
    settings = load_settings(daemon_config(project, one, interval=0.05))
    daemon = Daemon(
        settings,
        sources=[EndlessSource(await read_replay(one))],
        notifiers={"console": ConsoleNotifier("console", io.StringIO())},
    )
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(20):
            while (saved(daemon) or 0) < 3:  # noqa: ASYNC110 - a counter another task moves
                await asyncio.sleep(0.02)
        with Store.open(project / "state" / "xwatch.sqlite3") as store:  # a second reader
            assert store.load_checkpoints()
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)
    assert daemon.registry.get_sample_value("xwatch_checkpoints_total", {"outcome": "failed"}) == 0
    count = daemon.registry.get_sample_value("xwatch_checkpoint_seconds_count")
    assert count is not None and count == saved(daemon)


@pytest.mark.asyncio
async def test_the_daemon_stops_at_start_when_the_store_cannot_be_opened(
    project: Path, replays: tuple[Path, Path]
) -> None:
    config = daemon_config(project, replays[0])
    config.write_text(
        config.read_text("utf-8").replace("state/xwatch.sqlite3", "nowhere/xwatch.sqlite3")
    )
    daemon = Daemon(load_settings(config), exit_when_done=True)
    with pytest.raises(StoreError, match=r"nowhere does not exist"):
        await asyncio.wait_for(daemon.run(), 10)
    assert daemon.ingested == 0


@pytest.mark.asyncio
async def test_a_failed_checkpoint_is_counted_and_logged_and_the_daemon_goes_on(
    project: Path,
    replays: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def disk_full(self: Store, *args: object) -> None:
        raise StoreError(f"cannot save the checkpoint to {self.path}: database or disk is full")

    monkeypatch.setattr(Store, "save_checkpoint_rows", disk_full)

    daemon = await run_daemon(daemon_config(project, replays[0]))

    assert daemon.registry.get_sample_value("xwatch_checkpoints_total", {"outcome": "failed"}) == 1
    assert saved(daemon) == 0
    assert daemon.ingested > 0
    assert "checkpoint failed: cannot save the checkpoint" in caplog.text
    assert "database or disk is full" in caplog.text
    # /readyz says why until a checkpoint succeeds again
    assert daemon.store_problem is not None
    assert daemon.store_problem.startswith("store not writable: cannot save the checkpoint")
    daemon.stop.clear()  # as if it were still running
    assert daemon._ready() == (False, daemon.store_problem)


def test_a_state_learned_at_another_width_is_refused(settings: Settings) -> None:
    """A 5-minute series' state put under the 15-minute series (a store edited by hand)."""
    pipeline = RecordingPipeline(settings)
    brand = settings.config.brands[0].id
    fifteen = SeriesKey(brand, "", 900)
    moved = [
        Checkpoint(fifteen, c.measure, c.detector, c.version, c.state, c.saved_at)
        for c in checkpoints_of(pipeline, buckets(300, days=1, seed=5))
    ]
    refusals: list[str] = []
    assert pipeline.restore(moved, lambda series, exc: refusals.append(str(exc))) == (0, 1)
    assert refusals == ["volume: learned at 300 s, the series counts at 900 s"]


def _edited(state: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of ``state`` with ``fields.<path>`` set to ``value`` (a hand edit)."""
    edited: dict[str, Any] = json.loads(json.dumps(state))
    *parents, last = path.split(".")
    target = edited["fields"]
    for key in parents:
        target = target[key]
    target[last] = value
    return edited


@pytest.mark.parametrize(
    ("measure", "path", "value", "message"),
    [
        ("volume", "level", math.nan, "volume.level: nan is not a number"),
        ("volume", "level", math.inf, "volume.level: inf is not a number"),
        ("volume", "daily", [1.0, 1.0, 1.0], "volume.daily: 3 items, expected 24"),
        ("volume", "learned", -5, "volume.learned: -5, a count or a level, is below zero"),
        ("volume", "level", -50.0, "volume.level: -50.0, a count or a level, is below zero"),
        ("volume", "params.cusum_share", 0.0, "volume: the restored state fails on a bucket"),
        ("volume", "params.shift_factor", 0.0, "volume: the restored state fails on a bucket"),
        ("volume", "daily", [1.0] * 5_000_000, "volume.daily: 5,000,000 items, expected 24"),
        ("negative_share", "hour_factors", [1.0], "hour_factors: 1 items, expected 24"),
        ("negative_share", "width_seconds", 0, "negative_share: learned at 0 s"),
    ],
)
def test_a_restored_state_with_values_that_cannot_work_is_refused(
    settings: Settings, measure: str, path: str, value: object, message: str
) -> None:
    """Each of these passed the type checks, then stopped the daemon at its first bucket
    (again at each start), or (NaN) silenced the series for good."""
    pipeline = RecordingPipeline(settings)
    good = checkpoints_of(pipeline, buckets(300, days=2, seed=5))
    damaged = [
        dataclasses.replace(c, state=_edited(c.state, path, value)) if c.measure == measure else c
        for c in good
    ]
    refusals: list[str] = []
    assert pipeline.restore(damaged, lambda series, exc: refusals.append(str(exc))) == (0, 1)
    assert message in refusals[0], refusals
    # the series starts fresh, and works
    pipeline.feed([post("kettlebird is fine", at=60.0 * i, id=f"f{i}") for i in range(30)])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("params.halflife_seconds", 0.0, "term_volume: the restored model fails on a bucket"),
        ("unit", math.nan, "term_volume.unit: nan is not a number"),
    ],
)
def test_a_restored_term_model_that_cannot_work_is_refused(
    path: str, value: object, message: str
) -> None:
    model = TermModel(300)
    model.learn(T0.timestamp(), 10, {"kettle": 3})
    checkpoint = Checkpoint(
        SeriesKey("b", "", 300),
        "term_volume",
        "TermModel",
        STATE_VERSION,
        _edited(to_state(model), path, value),
    )
    with pytest.raises(CheckpointError, match=re.escape(message)):
        restore_term_model(checkpoint, 300)


@pytest.mark.asyncio
async def test_a_store_whose_detectors_a_newer_xwatch_saved_is_refused_untouched(
    project: Path, replays: tuple[Path, Path]
) -> None:
    """A rollback after an upgrade: every series was refused and started fresh, and the
    first checkpoint replaced the newer one, a month of learning gone both ways."""
    one, _ = replays
    config = daemon_config(project, one)
    await run_daemon(config)
    path = project / "state" / "xwatch.sqlite3"
    query = "SELECT count(*), min(state_version) FROM detector_checkpoints"
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # as a next release wrote it
        db.execute("UPDATE detector_checkpoints SET state_version = state_version + 1")
        rows, _ = db.execute(query).fetchone()
    assert rows > 0
    daemon = Daemon(load_settings(config), exit_when_done=True)
    with pytest.raises(StoreError, match="its detectors were saved by a newer xwatch"):
        await asyncio.wait_for(daemon.run(), 30)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute(query).fetchone() == (rows, STATE_VERSION + 1)  # untouched
