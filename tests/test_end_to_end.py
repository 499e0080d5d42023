"""The whole pipeline on the bundled demo: the crisis alert fires early; a calm week is quiet."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import pytest

from xwatch.alerting.render import render_text
from xwatch.backtest import replay_file
from xwatch.cli import main
from xwatch.demo.generate import CRISIS_ONSET, bundled_demo_path, write
from xwatch.model import AlertEvent, EventKind
from xwatch.settings import Settings, load_settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The embedded default config, with the shipped rules and playbooks."""
    return load_settings(None, default_base=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def crisis_events(settings: Settings) -> list[AlertEvent]:
    return asyncio.run(replay_file(settings, bundled_demo_path()))


def test_the_crisis_alert_fires_within_a_few_buckets_of_the_onset(
    crisis_events: list[AlertEvent],
) -> None:
    firing = [e for e in crisis_events if e.kind is EventKind.FIRING]
    defect = [e for e in firing if e.alert.rule_id == "product-defect-surge"]
    assert defect, "the product-defect rule never fired"
    first = defect[0].alert
    assert first.signal.start >= CRISIS_ONSET
    assert first.signal.end - CRISIS_ONSET <= timedelta(minutes=15)  # a few buckets at most
    assert first.severity == "critical"
    assert first.playbook.id == "product-defect"
    assert first.bucket.samples, "the alert shows the posts behind it"
    # nothing fired before the crisis
    assert all(e.alert.signal.start >= CRISIS_ONSET for e in firing)
    # the brand-wide negative share alert explains itself in numbers
    share = next(e.alert for e in firing if e.alert.rule_id == "negative-share-spike")
    assert share.signal.observed > 2 * share.signal.expected


def test_the_rendered_alert_explains_itself(crisis_events: list[AlertEvent]) -> None:
    text = render_text(crisis_events[0])
    for needle in (
        "FIRING [CRITICAL] kettlebird",
        "expected",
        "likelihood",
        "negative share",
        "followers",
        "https://x.com/",
        "playbook",
        "/playbooks/product-defect",
    ):
        assert needle in text, needle


def test_every_firing_alert_is_eventually_resolved_or_still_active(
    crisis_events: list[AlertEvent],
) -> None:
    fired = [e.alert.identity for e in crisis_events if e.kind is EventKind.FIRING]
    resolved = [e.alert.identity for e in crisis_events if e.kind is EventKind.RESOLVED]
    for identity in set(fired):  # firing and resolution alternate per identity
        assert 0 <= fired.count(identity) - resolved.count(identity) <= 1


def test_a_calm_week_with_the_same_rhythm_fires_nothing(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    calm = tmp_path_factory.mktemp("calm") / "calm.jsonl.gz"
    write(calm, crisis=False)
    events = asyncio.run(replay_file(settings, calm))
    assert [render_text(e) for e in events] == []


def test_backtest_command_prints_the_alerts(
    in_repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    assert main(["backtest", "--input", str(bundled_demo_path()), "--json"]) == 0
    out.write(capsys.readouterr().out)
    lines = out.getvalue().splitlines()
    assert any(
        '"event": "firing"' in line and '"rule": "product-defect-surge"' in line for line in lines
    )
