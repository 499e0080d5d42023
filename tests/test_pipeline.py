"""The pure pipeline: dedup, enrichment, event time, and batching that changes nothing."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import numpy
import pytest
from prometheus_client import CollectorRegistry

from tests.factories import T0, alert, mention
from xwatch.alerting.lifecycle import ActiveAlert
from xwatch.detect.state import to_state
from xwatch.detect.volume import CountDetector
from xwatch.metrics import Metrics
from xwatch.model import (
    AlertEvent,
    Author,
    Bucket,
    EventKind,
    Measure,
    Mention,
    Sentiment,
    SeriesKey,
)
from xwatch.pipeline import Pipeline, default_detectors, fires_early
from xwatch.sentiment.router import default_router
from xwatch.settings import Settings, load_settings


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")


def make_pipeline(settings: Settings) -> tuple[Pipeline, CollectorRegistry]:
    registry = CollectorRegistry()
    pipeline = Pipeline(
        settings.config, settings.rules, settings.playbooks, default_router("en"), Metrics(registry)
    )
    return pipeline, registry


def test_a_post_seen_twice_is_counted_once(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    post = mention("kettlebird is fine", at=1, id="42")
    again = dataclasses.replace(post, source="other")  # the same post from another source
    pipeline.ingest([post])
    pipeline.ingest([again, mention("kettlebird again", at=2, id="43")])
    assert registry.get_sample_value("xwatch_mentions_duplicate_total", {"source": "other"}) == 1
    assert (
        registry.get_sample_value("xwatch_mentions_processed_total", {"brand": "kettlebird"}) == 2
    )


def test_enrichment_finds_brands_and_sentiment(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    [en, ja, other] = pipeline.enrich(
        [
            mention("My Kettlebird is broken, worst purchase ever", lang=None),
            mention("ケトルバードが壊れた。最悪", lang=None),
            mention("nothing about any brand"),
        ]
    )
    assert en.brands == ("kettlebird",)
    assert en.sentiment is not None and en.sentiment.label == "negative"
    assert ja.brands == ("kettlebird",)
    assert ja.sentiment is not None and ja.sentiment.label == "negative"
    assert other.brands == ()


def test_full_width_brand_terms_match(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "KETTLEBIRD")  # full-width letters
    [post] = pipeline.enrich([mention(f"{full_width} rocks")])
    assert post.brands == ("kettlebird",)


def test_unmatched_and_late_posts_are_counted(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird", at=0), mention("unrelated", at=1)])
    pipeline.ingest([mention("kettlebird", at=3600)])  # the watermark moves an hour on
    pipeline.ingest([mention("kettlebird, late", at=10)])
    assert registry.get_sample_value("xwatch_mentions_unmatched_total") == 1
    assert registry.get_sample_value("xwatch_mentions_late_total") == 1


def test_a_post_is_late_or_not_whatever_the_batch_it_comes_in(settings: Settings) -> None:
    """Minute 0's bucket is due once a post 2 minutes later has moved the watermark past
    it (60 s of allowed lateness): a post from minute 0 after that is late, in the same
    batch as well as in the next."""
    posts = [
        mention("kettlebird", at=0, id="a"),
        mention("kettlebird", at=180, id="b"),
        mention("kettlebird, late", at=30, id="c"),
    ]
    counted = []
    for batches in ([posts], [[p] for p in posts]):
        pipeline, registry = make_pipeline(settings)
        events = [e for batch in batches for e in pipeline.ingest(batch)]
        events += pipeline.flush()
        assert registry.get_sample_value("xwatch_mentions_late_total") == 1
        counted.append(registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"}))
    assert counted[0] == counted[1]


def test_live_ticks_close_quiet_buckets(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird", at=0)])
    assert registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"}) is None
    pipeline.tick(T0 + timedelta(minutes=10))  # nothing posted: the clock alone closes them
    closed = registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"})
    # minutes 0..8 end before the watermark (10 min - 60 s lateness), for the brand's
    # series and for the topic series that a rule judges at 1 minute
    rules, scales = settings.rules, settings.config.detect.scales_seconds
    topics = [
        t for t in rules.topics("kettlebird") if 60 in rules.judged_scales("kettlebird", t, scales)
    ]
    assert closed == (1 + len(topics)) * 9
    assert (
        registry.get_sample_value("xwatch_brand_mentions", {"brand": "kettlebird", "scale": "1m"})
        == 0
    )


def test_a_topic_is_judged_only_at_the_scales_its_rule_uses(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird is down, app not working", at=0)])
    pipeline.tick(T0 + timedelta(minutes=31))
    judged = {(key.topic, key.scale_seconds) for key in pipeline.detectors}
    assert ("service-outage-surge", 300) in judged
    assert ("service-outage-surge", 900) in judged
    assert ("service-outage-surge", 60) not in judged  # its rule says [300, 900]
    assert {("", 60), ("", 300), ("", 900)} <= judged  # a brand's own series: every scale


def by(post: Mention, author: str, followers: int = 100) -> Mention:
    return dataclasses.replace(post, author=Author(author, author, followers))


def synthetic_week_with_a_spike(seed: int = 11) -> list[Mention]:
    """Three days of calm posts, a defect crisis, and single posts that mention rules fire on."""
    rng = random.Random(seed)
    posts: list[Mention] = []
    seconds = 0.0
    while seconds < 3 * 86400:
        seconds += rng.expovariate(1.5 / 60)  # 1.5 posts a minute
        post = mention("kettlebird is nice", at=seconds, id=f"b{len(posts)}")
        posts.append(by(post, f"u{rng.randrange(500)}"))
    spike_at = 2.5 * 86400
    for i in range(300):  # 300 angry posts in 10 minutes, by 100 people
        text = "kettlebird overheated and melted, terrible, dangerous #meltgate"
        posts.append(by(mention(text, at=spike_at + i * 2, id=f"s{i}"), f"angry{i % 100}"))
    for i, at in enumerate((1.2, 2.0, 2.51, 2.6)):  # a big account complains; then a bigger one
        text = "kettlebird is the worst, broken again, terrible"
        post = mention(text, at=at * 86400 + 7, id=f"big{i}", negative=True)
        posts.append(by(post, f"big{i}", followers=150_000 * (i + 1)))
    posts.append(by(mention("was @kettlebird hacked?", at=2.55 * 86400, id="h"), "worried"))
    return sorted(posts, key=lambda m: m.created_at)


def run_in_batches(settings: Settings, posts: list[Mention], size: int) -> list[AlertEvent]:
    pipeline, _ = make_pipeline(settings)
    events = []
    for i in range(0, len(posts), size):
        events.extend(pipeline.ingest(posts[i : i + size]))
    return events + pipeline.flush()


def test_alerts_do_not_depend_on_batching(settings: Settings) -> None:
    posts = synthetic_week_with_a_spike()
    one = run_in_batches(settings, posts, 1)
    fired = {e.alert.rule_id for e in one if e.kind is EventKind.FIRING}
    assert {
        "product-defect-surge",  # a signal rule on a topic
        "high-reach-complaint",  # mention rules, at ingest, between the buckets
        "account-takeover-report",
        "new-term-surge",  # #meltgate
    } <= fired
    # the spike fires on a bucket still open, at the post that makes it hold: what is
    # judged at a post must not depend on the batch it came in either
    assert any(e.alert.signal.so_far for e in one if e.kind is EventKind.FIRING)
    for size in (7, 1000, len(posts)):
        assert run_in_batches(settings, posts, size) == one


def test_a_mention_rule_fires_in_the_ingest_that_brings_its_post(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird", at=0)])
    post = by(mention("kettlebird broke, awful", at=30, negative=True), "celeb", 250_000)
    [event] = pipeline.ingest([post])  # no bucket closes: the watermark is still at 0
    assert event.kind is EventKind.FIRING and event.at == post.created_at
    alert = event.alert
    assert alert.rule_id == "high-reach-complaint" and alert.signal.measure is Measure.MENTION
    assert (alert.signal.observed, alert.signal.expected, alert.signal.likelihood) == (1, 0, 1)
    assert alert.signal.start == alert.signal.end == post.created_at
    assert (alert.bucket.count, alert.bucket.negative) == (1, 1)
    assert [m.id for m in alert.bucket.samples] == [post.id]
    # a later post with twice the reach updates the one alert; a smaller one is news to no one
    smaller = by(mention("kettlebird awful", at=60, negative=True), "celeb2", 120_000)
    bigger = by(mention("kettlebird awful!", at=90, negative=True), "celeb3", 600_000)
    assert pipeline.ingest([smaller]) == []
    [update] = pipeline.ingest([bigger])
    assert update.kind is EventKind.UPDATED and update.alert.identity == alert.identity
    # it resolves after the calm time, in event time, from the last matching post
    events = pipeline.tick(T0 + timedelta(seconds=90 + 60) + timedelta(hours=2))
    resolved = [e for e in events if e.kind is EventKind.RESOLVED]
    assert [(e.alert.rule_id, e.at) for e in resolved] == [
        ("high-reach-complaint", bigger.created_at + timedelta(hours=2))
    ]


def test_the_brand_s_own_posts_are_not_mentions_of_it(settings: Settings) -> None:
    """A support team's replies do not swell the brand's volume, its negative share, its
    topics or its new terms, and a large brand's apology is no high-reach complaint; a
    rule that asks for the brand's own posts (a hijacked account's) still sees them."""
    pipeline, registry = make_pipeline(settings)
    apology = "@sam so sorry, your kettlebird overheating is awful. please unplug it"
    replies = [
        by(mention(apology, at=5 + i, negative=True), "kettlebird", 300_000) for i in range(6)
    ]
    fans = [by(mention("kettlebird aero is fine", at=10 + i), f"fan{i}") for i in range(3)]
    takeover = by(mention("kettlebird airdrop! connect your wallet", at=30), "Kettlebird_JP")
    events = pipeline.ingest([*replies, *fans, takeover])
    assert [e.alert.rule_id for e in events] == ["account-takeover-post"]
    brand = {"brand": "kettlebird"}
    assert registry.get_sample_value("xwatch_mentions_processed_total", brand) == 3
    assert registry.get_sample_value("xwatch_mentions_own_total", brand) == 7

    def counted(topic: str) -> tuple[int, int]:
        series = pipeline.aggregator.series[SeriesKey("kettlebird", topic, 300)]
        return sum(b.count for b in series.open.values()), sum(
            b.negative for b in series.open.values()
        )

    assert counted("") == (3, 0)  # the fans' posts only
    assert counted("product-defect-surge") == (0, 0)  # "overheating": the brand's own words
    assert counted("own-account-anomaly") == (7, 6)  # a rule that asks for them
    [terms] = pipeline.terms[("kettlebird", 300)].open.values()
    assert terms.posts == 3 and "aero" in terms.counts and "overheating" not in terms.counts


def test_only_the_posts_about_a_brand_are_scored(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird is great", at=1), mention("nothing of ours", at=2)])
    scored = sum(
        registry.get_sample_value("xwatch_sentiment_texts_total", {"lang": lang}) or 0.0
        for lang in ("en", "ja", "other")
    )
    assert scored == 1
    assert registry.get_sample_value("xwatch_mentions_unmatched_total") == 1


def test_a_checkpoint_in_chunks_is_the_whole_checkpoint(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    pipeline.ingest(synthetic_week_with_a_spike()[:2000])
    whole = pipeline.checkpoint()
    chunks = list(pipeline.checkpoint_chunks(size=4))
    assert [item for chunk in chunks for item in chunk] == whole
    assert {item.series for item in whole} >= set(pipeline.detectors) and len(chunks) > 1
    assert all(len({item.series for item in chunk}) <= 4 for chunk in chunks)


def test_scoring_a_bucket_changes_nothing_the_detectors_learn() -> None:
    """The pipeline only learns the empty buckets of a topic no rule can fire on: the
    default detectors must then learn what they would have learned after scoring."""
    key = SeriesKey("kettlebird", "outage", 300)
    judged, learned = default_detectors(300), default_detectors(300)
    rng = random.Random(5)
    for i in range(3000):  # ten days of a sparse topic
        count = rng.choice([0, 0, 0, 0, 1, 2, 6])
        start = T0 + timedelta(seconds=300 * i)
        bucket = Bucket(key, start, start + timedelta(seconds=300), count, count // 2, count * 50)
        for detector in judged:
            detector.score_one(bucket)
        if count:
            for detector in learned:
                detector.score_one(bucket)
        for detector in (*judged, *learned):
            detector.learn_one(bucket)
    assert [to_state(d) for d in judged] == [to_state(d) for d in learned]


def test_enriching_a_post_keeps_every_other_field() -> None:
    """``Mention.enriched`` spells ``dataclasses.replace`` out: a field added to ``Mention``
    and forgotten there would be lost for every post (the values here differ from
    every field's default, so a forgotten one shows)."""
    values = {
        "id": "7",
        "text": "kettlebird",
        "created_at": T0,
        "source": "mqtt",
        "author": Author(id="9", handle="sam", followers=12, verified=True),
        "lang": "en",
        "url": "https://x.com/sam/status/7",
        "likes": 1,
        "reposts": 2,
        "replies": 3,
        "quotes": 4,
        "brands": ("old",),
        "sentiment": None,
    }
    assert set(values) == {field.name for field in dataclasses.fields(Mention)}
    post = Mention(**values)  # type: ignore[arg-type]
    sentiment = Sentiment("negative", -0.5)
    enriched = post.enriched(("kettlebird",), "ja", sentiment)
    assert enriched == dataclasses.replace(
        post, brands=("kettlebird",), lang="ja", sentiment=sentiment
    )


def week_of_minute_counts(until: datetime, seed: int = 5) -> list[tuple[datetime, int]]:
    """X's recent counts for a brand: posts per minute for the 7 days before ``until``,
    about 3 a minute at the afternoon's peak and a quarter of that at night."""
    rng = numpy.random.default_rng(seed)
    counts = []
    for minute in range(7 * 1440, 0, -1):
        start = until - timedelta(minutes=minute)
        hour = start.hour + start.minute / 60
        rate = 1.9 + 1.1 * math.cos(2 * math.pi * (hour - 14) / 24)
        counts.append((start, int(rng.poisson(rate))))
    return counts


def spike_after_a_calm_quarter_hour() -> list[Mention]:
    """Live posts from T0: 2 a minute by many people for 15 minutes, then 200 in 5 minutes."""
    posts = [
        by(mention("kettlebird", at=60 * m + 25 * i, id=f"c{m}.{i}"), f"u{m}.{i}")
        for m in range(15)
        for i in range(2)
    ]
    posts += [
        by(mention("kettlebird!!", at=900 + 1.5 * i, id=f"s{i}"), f"fan{i}") for i in range(200)
    ]
    return posts


def test_a_brand_warm_started_from_its_counts_alerts_from_its_first_live_buckets(
    settings: Settings,
) -> None:
    """With a week of counts learned, the brand's volume is judged from the first live
    bucket: a spike 15 minutes in alerts. Without them, a fresh series warms up for a
    day, and the same spike is not judged."""
    counts = week_of_minute_counts(until=T0)
    warm, _ = make_pipeline(settings)
    taught = warm.warm_start("kettlebird", counts)
    assert sorted(s.scale_seconds for s in taught) == [60, 300, 900]
    assert warm.warm_start("kettlebird", counts) == []  # what has learned is not taught again
    cold, _ = make_pipeline(settings)
    fired = {}
    for name, pipeline in (("warm", warm), ("cold", cold)):
        events = pipeline.ingest(spike_after_a_calm_quarter_hour())
        events += pipeline.tick(T0 + timedelta(minutes=25))
        fired[name] = {e.alert.rule_id for e in events if e.kind is EventKind.FIRING}
    assert "mention-volume-spike" in fired["warm"]
    assert "mention-volume-spike" not in fired["cold"]
    series = SeriesKey("kettlebird", "", 300)
    volume, share, negative = warm.detectors[series]
    assert isinstance(volume, CountDetector) and isinstance(negative, CountDetector)
    assert volume.measure is Measure.VOLUME and volume.learned > 7 * 288 - 2
    # counts carry no sentiment: the negative measures learn the live buckets only
    assert negative.measure is Measure.NEGATIVE_VOLUME and negative.learned < 10
    later = T0 + timedelta(minutes=30)
    probe = Bucket(series, later, later + timedelta(minutes=5), 10, 5, 0)
    assert share.score_one(probe).warming_up and negative.score_one(probe).warming_up


def test_a_warm_start_skips_what_it_cannot_teach(settings: Settings) -> None:
    """Scales that are not whole minutes, brands not watched, series already learning."""
    config = settings.config.model_copy(
        update={"detect": settings.config.detect.model_copy(update={"scales_seconds": (30, 300)})}
    )
    pipeline = Pipeline(
        config,
        settings.rules,
        settings.playbooks,
        default_router("en"),
        Metrics(CollectorRegistry()),
    )
    counts = week_of_minute_counts(until=T0)
    assert pipeline.warm_start("no-such-brand", counts) == []
    assert pipeline.warm_start("kettlebird", counts[-2:]) == []  # no whole 5-minute bucket
    assert pipeline.warm_start("kettlebird", counts) == [SeriesKey("kettlebird", "", 300)]


def test_a_spike_alerts_at_the_post_that_makes_it_one_not_when_its_bucket_closes(
    settings: Settings,
) -> None:
    """The 1-minute bucket of a spike closes a minute after its end (the allowed
    lateness); the alert goes out in the ingest of the post that makes the rule hold,
    at that post's time, and the bucket's close updates it rather than firing again."""
    pipeline, _ = make_pipeline(settings)
    pipeline.warm_start("kettlebird", week_of_minute_counts(until=T0))
    posts = spike_after_a_calm_quarter_hour()
    fired = crossing = None
    for post in posts:
        events = pipeline.ingest([post])
        spikes = [e for e in events if e.alert.rule_id == "mention-volume-spike"]
        if spikes:
            [fired], crossing = spikes, post
            break
    assert fired is not None and crossing is not None and fired.kind is EventKind.FIRING
    assert fired.at == crossing.created_at == fired.alert.signal.end
    onset = T0 + timedelta(seconds=900)
    assert crossing.created_at - onset < timedelta(seconds=60)  # 30 posts, 20 authors
    assert fired.alert.signal.start + timedelta(minutes=1) > crossing.created_at  # still open
    assert fired.alert.bucket.count >= 30 and fired.alert.signal.series.scale_seconds == 60
    rest = posts[posts.index(crossing) + 1 :]
    later = pipeline.ingest(rest) + pipeline.tick(T0 + timedelta(minutes=25))
    again = [e for e in later if e.alert.rule_id == "mention-volume-spike"]
    assert EventKind.FIRING not in {e.kind for e in again}


def test_only_count_rules_without_a_streak_fire_on_a_bucket_still_open(
    settings: Settings,
) -> None:
    early = {r.id for r in settings.rules.rules if fires_early(r)}
    assert {"mention-volume-spike", "product-defect-surge", "service-outage-surge"} <= early
    never = {"mention-volume-drop", "negative-share-spike"}  # a drop, a share: not monotone
    assert not early & never
    assert all(not settings.rules.get(r).when.for_seconds for r in early)  # type: ignore[union-attr]


def test_matching_reads_a_post_s_first_characters_only(settings: Settings) -> None:
    """Folding (NFKC) can make text 18 times longer: a post of 256 KiB of U+FDFA took
    0.3 s to fold. Brand matching, the rules and the term trackers read the first
    ``MATCH_CHARS`` characters (the sentiment scorers read 2,000)."""
    from xwatch.pipeline import MATCH_CHARS

    pipeline, _ = make_pipeline(settings)
    folded, _words = pipeline._fold("\ufdfa" * 87_000)
    assert len(folded) <= 18 * MATCH_CHARS
    early = "kettlebird " + "x" * (MATCH_CHARS + 10)
    late = "x" * (MATCH_CHARS + 10) + " kettlebird"
    [found, missed] = pipeline.enrich([mention(early), mention(late)])
    assert (found.brands, missed.brands) == (("kettlebird",), ())


def test_restored_alerts_show_in_the_active_alert_gauges_at_once(settings: Settings) -> None:
    """They read 0 after a restart until the next alert event: a crisis vanished from the
    dashboard at each upgrade."""
    pipeline, registry = make_pipeline(settings)
    firing = alert(at=13 * 3600.0)
    pipeline.restore_alerts([ActiveAlert(firing, firing, firing.signal.end, firing.signal.end)])
    assert registry.get_sample_value("xwatch_alerts_active") == 1
    assert registry.get_sample_value("xwatch_brand_active_alerts", {"brand": "kettlebird"}) == 1


def test_an_alert_that_ends_because_its_change_became_the_normal_says_how_far_it_moved(
    settings: Settings,
) -> None:
    """Two calm days at 4 posts a minute, then 12 for good: the volume alerts, the change
    is adopted as the new normal (3 hours on), and the alert resolves with how far the
    normal moved (``AlertEvent.settled``, about 3x), which the incident's resolution
    says instead of "back to normal"."""
    rng = random.Random(3)
    posts: list[Mention] = []
    seconds, step = 0.0, 2 * 86400.0
    while seconds < step + 10 * 3600:
        seconds += rng.expovariate((4.0 if seconds < step else 12.0) / 60)
        posts.append(
            by(
                mention("kettlebird kettle", at=seconds, id=f"p{len(posts)}"),
                f"u{rng.randrange(500)}",
            )
        )
    events = run_in_batches(settings, posts, 5000)
    volume = [e for e in events if e.alert.rule_id == "mention-volume-spike"]
    assert volume and volume[0].kind is EventKind.FIRING
    resolved = [e for e in volume if e.kind is EventKind.RESOLVED]
    assert len(resolved) == 1 and resolved[0].settled == pytest.approx(3.0, rel=0.2)
    assert resolved[0].since is not None and resolved[0].since.timestamp() >= step
