"""The pure pipeline: dedup, enrichment, event time, and batching that changes nothing."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.factories import T0, mention
from xwatch.metrics import Metrics
from xwatch.model import AlertEvent, Mention
from xwatch.pipeline import Pipeline
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


def test_live_ticks_close_quiet_buckets(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    pipeline.ingest([mention("kettlebird", at=0)])
    assert registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"}) is None
    pipeline.tick(T0 + timedelta(minutes=10))  # nothing posted: the clock alone closes them
    closed = registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"})
    # minutes 0..8 end before the watermark (10 min - 60 s lateness), for the brand's
    # series and for the topic series of the product-defect rule
    assert closed == 2 * 9
    assert (
        registry.get_sample_value("xwatch_brand_mentions", {"brand": "kettlebird", "scale": "1m"})
        == 0
    )


def synthetic_week_with_a_spike(seed: int = 11) -> list[Mention]:
    rng = random.Random(seed)
    posts: list[Mention] = []
    seconds = 0.0
    while seconds < 3 * 86400:
        seconds += rng.expovariate(1.5 / 60)  # 1.5 posts a minute
        posts.append(mention("kettlebird is nice", at=seconds, id=f"b{len(posts)}"))
    spike_at = 2.5 * 86400
    for i in range(300):  # 300 angry posts in 10 minutes
        posts.append(
            mention(
                "kettlebird overheated and melted, terrible, dangerous",
                at=spike_at + i * 2,
                id=f"s{i}",
            )
        )
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
    assert any(e.alert.rule_id == "product-defect-surge" for e in one)
    for size in (7, 1000, len(posts)):
        assert run_in_batches(settings, posts, size) == one
