"""A reload that removes a topic rule (or a scale of one) leaves the pipeline holding
exactly the series the new rules need; the alerts of a rule that is gone end at once,
saying why, instead of hours later as "back to normal"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import T0, alert, mention
from tests.test_pipeline import make_pipeline
from tests.test_reload import daemon_for
from xwatch.alerting.incidents import Change, NoticeKind
from xwatch.detect.volume import CountDetector
from xwatch.model import Author, EventKind, Mention, SeriesKey
from xwatch.pipeline import RULE_GONE, Pipeline
from xwatch.rules import Rule, RuleSet
from xwatch.settings import Settings, load_settings

BRAND = "kettlebird"
DEFECT = "product-defect-surge"  # a topic rule judged at 5 and 15 minutes, min_authors 4
OUTAGE = "service-outage-surge"  # another, judged at the same scales, min_authors 5
SCALES = (60, 300, 900)  # the shipped config's


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")


def hour_of_posts(hour: int) -> list[Mention]:
    """A post a minute about each topic, and one about nothing in particular, each by
    another author."""
    texts = ["kettlebird is fine", "my kettlebird is broken, defect", "kettlebird outage, down"]
    return [
        dataclasses.replace(
            mention(text, at=hour * 3600 + minute * 60 + i, id=f"{hour}-{minute}-{i}"),
            author=Author(f"a{hour}-{minute}-{i}", f"a{hour}-{minute}-{i}", 100),
        )
        for minute in range(60)
        for i, text in enumerate(texts)
    ]


def without(rules: RuleSet, rule_id: str) -> RuleSet:
    return RuleSet.of([r for r in rules.rules if r.id != rule_id], rules.accounts, rules.origins)


def with_scales(rules: RuleSet, rule_id: str, scales: tuple[int, ...]) -> RuleSet:
    def changed(rule: Rule) -> Rule:
        if rule.id != rule_id:
            return rule
        return rule.model_copy(
            update={"when": rule.when.model_copy(update={"scales_seconds": scales})}
        )

    return RuleSet.of([changed(r) for r in rules.rules], rules.accounts, rules.origins)


def needed(rules: RuleSet) -> set[SeriesKey]:
    """The series the rules need: the brand's at every scale, each topic's at its rules'."""
    return {SeriesKey(BRAND, "", scale) for scale in SCALES} | {
        SeriesKey(BRAND, topic, scale)
        for topic in rules.topics(BRAND)
        for scale in rules.judged_scales(BRAND, topic, SCALES)
    }


def of_topic(keys: Iterable[SeriesKey], topic: str) -> list[SeriesKey]:
    return [key for key in keys if key.topic == topic]


def test_a_topic_removed_by_a_reload_leaves_no_series_detectors_or_authors(
    settings: Settings,
) -> None:
    """Kept, its series closed a bucket per round for nothing (its detectors never
    learned again), held its detectors (20 kB a series), and were checkpointed for as
    long as the daemon ran."""
    pipeline, _ = make_pipeline(settings)
    for hour in range(3):
        pipeline.ingest(hour_of_posts(hour))
    assert of_topic(pipeline.detectors, DEFECT)  # it was judged
    assert (BRAND, DEFECT) in pipeline._authors
    outage = {key: pipeline.detectors[key] for key in of_topic(pipeline.detectors, OUTAGE)}
    rules = without(settings.rules, DEFECT)

    pipeline.reload_rules(rules, settings.playbooks)

    assert set(pipeline.aggregator.series) == needed(rules)
    assert of_topic(pipeline.detectors, DEFECT) == []
    assert of_topic(pipeline.metrics._series_gauges, DEFECT) == []
    assert (BRAND, DEFECT) not in pipeline._authors
    assert of_topic({item.series for item in pipeline.checkpoint()}, DEFECT) == []
    assert pipeline.aggregator.scales_of(BRAND, DEFECT) == []
    closed = pipeline.aggregator.close_until(T0 + timedelta(hours=4))
    assert [b for b in closed if b.series.topic == DEFECT] == []
    # the topic that stays goes on with what it learned
    for key, detectors in outage.items():
        assert pipeline.detectors[key] is detectors


def test_a_scale_a_topic_rule_no_longer_judges_is_dropped_and_the_others_go_on(
    settings: Settings,
) -> None:
    pipeline, _ = make_pipeline(settings)
    for hour in range(2):
        pipeline.ingest(hour_of_posts(hour))
    at_900 = pipeline.detectors[SeriesKey(BRAND, OUTAGE, 900)]
    authors = pipeline._authors[(BRAND, OUTAGE)]
    assert {scale for scale, _ in authors.open} == {300, 900}
    rules = with_scales(settings.rules, OUTAGE, (900,))

    pipeline.reload_rules(rules, settings.playbooks)

    assert set(pipeline.aggregator.series) == needed(rules)
    assert SeriesKey(BRAND, OUTAGE, 300) not in pipeline.detectors
    assert pipeline.detectors[SeriesKey(BRAND, OUTAGE, 900)] is at_900
    # nothing would close its open buckets at 5 minutes any more
    assert {scale for scale, _ in authors.open} == {900}
    pipeline.ingest(hour_of_posts(2))
    assert {scale for scale, _ in authors.open} == {900}


def test_a_streak_of_a_series_no_rule_judges_is_forgotten(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    pipeline.ingest(hour_of_posts(0))
    series = SeriesKey(BRAND, OUTAGE, 300)
    pipeline.streaks[(OUTAGE, series)] = T0  # a for_seconds rule's streak under way
    pipeline.reload_rules(with_scales(settings.rules, OUTAGE, (900,)), settings.playbooks)
    assert (OUTAGE, series) not in pipeline.streaks


def test_a_topic_added_back_starts_fresh_from_the_reload(settings: Settings) -> None:
    """Its state was dropped with it (the rule's match may have changed meanwhile; a
    restart after the rule left the files has always started it fresh): it learns from
    the reload on, not across the hours it was not watched."""
    pipeline, _ = make_pipeline(settings)
    for hour in range(3):
        pipeline.ingest(hour_of_posts(hour))
    old = pipeline.detectors[SeriesKey(BRAND, DEFECT, 300)]
    pipeline.reload_rules(without(settings.rules, DEFECT), settings.playbooks)
    for hour in range(3, 6):
        pipeline.ingest(hour_of_posts(hour))
    pipeline.reload_rules(settings.rules, settings.playbooks)
    pipeline.ingest(hour_of_posts(6))

    volume = pipeline.detectors[SeriesKey(BRAND, DEFECT, 300)][0]
    assert volume is not old[0]
    assert isinstance(volume, CountDetector)
    assert 0 < volume.learned <= 3600 // 300  # the hour since it came back


def restored_alert(pipeline: Pipeline, rule_id: str, topic: str, at: float) -> None:
    fired = alert(rule=rule_id, at=at, measure="negative_volume")
    fired = dataclasses.replace(fired, series=SeriesKey(BRAND, topic, 300))
    pipeline.book.observe([fired], fired.signal.end)


def test_an_alert_whose_rule_a_reload_removed_resolves_at_once_saying_why(
    settings: Settings,
) -> None:
    """It never fires again: the calm period ended it two hours later as "back to
    normal", which nothing had judged."""
    pipeline, registry = make_pipeline(settings)
    pipeline.ingest(hour_of_posts(0))
    restored_alert(pipeline, DEFECT, DEFECT, 1800)
    restored_alert(pipeline, OUTAGE, OUTAGE, 1800)
    watermark = pipeline.clock.watermark
    assert watermark is not None

    events = pipeline.reload_rules(without(settings.rules, DEFECT), settings.playbooks)

    assert [(e.kind, e.alert.rule_id, e.at, e.why) for e in events] == [
        (EventKind.RESOLVED, DEFECT, watermark, RULE_GONE)
    ]
    assert events[0].since == T0 + timedelta(seconds=1800)
    assert [a.alert.rule_id for a in pipeline.book.active.values()] == [OUTAGE]
    resolved = {"rule": DEFECT, "severity": "critical"}
    assert registry.get_sample_value("xwatch_alerts_resolved_total", resolved) == 1
    assert registry.get_sample_value("xwatch_brand_active_alerts", {"brand": BRAND}) == 1


def test_an_alert_of_a_rule_that_stays_is_left_to_its_lifecycle(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    pipeline.ingest(hour_of_posts(0))
    restored_alert(pipeline, OUTAGE, OUTAGE, 1800)
    events = pipeline.reload_rules(with_scales(settings.rules, OUTAGE, (900,)), settings.playbooks)
    assert events == []  # one alert across scales: its rule still watches the topic
    assert [a.alert.rule_id for a in pipeline.book.active.values()] == [OUTAGE]


def test_a_rule_a_reload_brings_has_its_alert_counters_at_zero(settings: Settings) -> None:
    pipeline, registry = make_pipeline(settings)
    added = settings.rules.rules[0].model_copy(update={"id": "brand-new"})
    rules = RuleSet.of([*settings.rules.rules, added], settings.rules.accounts)
    pipeline.reload_rules(rules, settings.playbooks)
    labels = {"rule": "brand-new", "severity": added.severity.value}
    assert registry.get_sample_value("xwatch_alerts_fired_total", labels) == 0
    assert registry.get_sample_value("xwatch_alerts_resolved_total", labels) == 0


def test_the_incident_of_a_removed_rule_closes_at_the_reload_with_a_clear_note(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_for(project)
    pipeline = daemon.pipeline
    pipeline.ingest(hour_of_posts(0))
    fired = dataclasses.replace(
        alert(rule=DEFECT, at=1800, measure="negative_volume"),
        series=SeriesKey(BRAND, DEFECT, 300),
    )
    daemon._dispatch(pipeline.book.observe([fired], fired.signal.end))
    [incident] = daemon.book.incidents.values()
    assert incident.announced_at is not None
    changes: list[Change] = []
    apply = daemon._apply

    def recorded(found: list[Change]) -> None:
        changes.extend(found)
        apply(found)

    monkeypatch.setattr(daemon, "_apply", recorded)
    rules = project / "rules" / "product-and-service.yaml"
    text = rules.read_text("utf-8")
    start, end = text.index(f"  - id: {DEFECT}"), text.index(f"  - id: {OUTAGE}")
    rules.write_text(text[:start] + text[end:], "utf-8")

    assert daemon.reload_rules()

    assert daemon.book.incidents == {}  # resolved, not left firing
    [change] = changes
    assert change.incident.id == incident.id
    assert [(e.kind, e.text) for e in change.entries] == [
        ("part_resolved", f"{DEFECT}: {RULE_GONE}"),
        ("resolved", f"every alert has ended: {RULE_GONE}"),
    ]
    assert [(n.kind, n.text) for n in change.notices] == [(NoticeKind.RESOLVED, RULE_GONE)]


def test_a_reload_between_two_chunks_of_a_checkpoint_leaves_the_gone_series_out(
    settings: Settings,
) -> None:
    """A checkpoint is taken a chunk at a time, the loop turning in between: a reload
    that dropped a series it had listed made it fail (KeyError), and the store was
    reported not writable."""
    pipeline, _ = make_pipeline(settings)
    for hour in range(3):
        pipeline.ingest(hour_of_posts(hour))
    assert of_topic(pipeline.detectors, DEFECT)
    chunks = pipeline.checkpoint_chunks(size=1)
    taken = list(next(chunks))
    pipeline.reload_rules(without(settings.rules, DEFECT), settings.playbooks)
    taken += [item for chunk in chunks for item in chunk]
    assert not of_topic(pipeline.detectors, DEFECT)
    assert {item.series for item in taken} >= set(pipeline.detectors)  # the others, all
