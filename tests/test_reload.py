"""Rules reload on SIGHUP; a bad rule file keeps the previous rules running and says why."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from tests.factories import mention
from tests.test_trained import EN_WORDS, SMALL, synthetic
from xwatch.daemon import Daemon
from xwatch.detect.volume import CountDetector
from xwatch.model import Author, Mention
from xwatch.sentiment.trained import train
from xwatch.settings import Settings, load_settings

EXTRA_RULE = """\
rules:
  - id: recall-chatter
    title: People talk about a recall
    match: {any: [recall]}
    when: {signal: volume_up, likelihood: 0.999}
    playbook: product-defect
"""


def daemon_for(project: Path) -> Daemon:
    config = project / "config.yaml"
    config.write_text(config.read_text("utf-8").replace("port: 9464", "port: 0"), "utf-8")
    return Daemon(load_settings(config), reload=lambda: load_settings(config))


def reloads(daemon: Daemon, result: str) -> float | None:
    return daemon.registry.get_sample_value("xwatch_rule_reloads_total", {"result": result})


def test_a_good_reload_brings_new_rules_and_their_series(project: Path) -> None:
    daemon = daemon_for(project)
    before = len(daemon.pipeline.rules.rules)
    (project / "rules" / "recall.yaml").write_text(EXTRA_RULE, "utf-8")
    assert daemon.reload_rules()
    assert len(daemon.pipeline.rules.rules) == before + 1
    assert "recall-chatter" in daemon.pipeline.rules.topics("kettlebird")
    assert any(key.topic == "recall-chatter" for key in daemon.pipeline.aggregator.series)
    assert reloads(daemon, "ok") == 1
    assert daemon.registry.get_sample_value("xwatch_rules_loaded") == before + 1


def test_a_broken_rule_file_keeps_the_previous_rules_and_says_where(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = daemon_for(project)
    rules = daemon.pipeline.rules
    broken = project / "rules" / "broken.yaml"
    broken.write_text("rules:\n  - id: x\n    title: x\n    when: {signal: nope}\n", "utf-8")
    with caplog.at_level(logging.ERROR, "xwatch.daemon"):
        assert not daemon.reload_rules()
    assert daemon.pipeline.rules is rules  # still judging with the old ones
    assert reloads(daemon, "failed") == 1
    assert f"{broken}:4: rules[0].when.signal" in caplog.text


def test_a_reload_that_fails_unforeseen_keeps_the_previous_rules_and_says_so(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = daemon_for(project)
    rules = daemon.pipeline.rules

    def unforeseen() -> Settings:
        raise OverflowError("date value out of range")

    daemon.reload = unforeseen
    with caplog.at_level(logging.ERROR, "xwatch.daemon"):
        assert not daemon.reload_rules()
    assert daemon.pipeline.rules is rules
    assert reloads(daemon, "failed") == 1
    assert "reload failed, the previous rules stay" in caplog.text
    assert "OverflowError" in caplog.text


@pytest.mark.asyncio
async def test_sighup_reloads_a_running_daemon(project: Path) -> None:
    daemon = daemon_for(project)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        (project / "rules" / "recall.yaml").write_text(EXTRA_RULE, "utf-8")
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(10):
            while reloads(daemon, "ok") != 1:  # noqa: ASYNC110 - the handler runs on the loop
                await asyncio.sleep(0.01)
        assert "recall-chatter" in daemon.pipeline.rules.topics("kettlebird")
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 20)


def test_a_bad_regex_in_a_reload_keeps_the_previous_rules_and_says_where(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = daemon_for(project)
    rules = daemon.pipeline.rules
    broken = project / "rules" / "zz-regex.yaml"
    broken.write_text(
        "rules:\n"
        "  - id: login-trouble\n"
        "    title: Log-in trouble\n"
        "    match:\n"
        "      regex: ['can.?t log ?in', 'log(in']\n"
        "    when: {signal: volume_up}\n"
        "    playbook: service-outage\n",
        "utf-8",
    )
    with caplog.at_level(logging.ERROR, "xwatch.daemon"):
        assert not daemon.reload_rules()
    assert daemon.pipeline.rules is rules
    assert f"{broken}:5: rules[0].match.regex[1]: Value error, not a valid regular expression" in (
        caplog.text
    )
    broken.write_text(broken.read_text("utf-8").replace("'log(in'", "'log(in)?'"), "utf-8")
    assert daemon.reload_rules()
    assert "login-trouble" in daemon.pipeline.rules.topics("kettlebird")


def test_a_reload_starts_and_stops_term_tracking_and_mention_rules(project: Path) -> None:
    daemon = daemon_for(project)
    pipeline = daemon.pipeline
    assert ("kettlebird", 300) in pipeline.terms  # the shipped new-term-surge rule
    tracker = pipeline.terms[("kettlebird", 300)]
    for path in (project / "rules").glob("*.yaml"):
        text = path.read_text("utf-8")
        if "new_term:" in text:  # drop the new-term rule, keep the rest
            start = text.index("  - id: new-term-surge")
            path.write_text(text[:start], "utf-8")
    assert daemon.reload_rules()
    assert pipeline.terms == {}  # no more per-post term counting
    assert pipeline.emerging("kettlebird") == ()
    (project / "rules" / "zz-terms.yaml").write_text(
        "rules:\n"
        "  - id: words\n"
        "    title: New words\n"
        "    when: {new_term: {scale_seconds: 900}}\n"
        "    playbook: mention-spike\n"
        "  - id: vip\n"
        "    title: A very big account mentions us\n"
        "    when: {mention: {min_followers: 1000000}}\n"
        "    playbook: mention-spike\n",
        "utf-8",
    )
    assert daemon.reload_rules()
    assert set(pipeline.terms) == {("kettlebird", 900)}
    assert pipeline.terms[("kettlebird", 900)] is not tracker
    post = mention("kettlebird", at=5, followers=2_000_000)
    assert [e.alert.rule_id for e in pipeline.ingest([post])] == ["vip"]


def test_a_rules_folder_emptied_keeps_the_previous_rules(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder swapped file by file, or emptied by mistake, must not switch every rule
    off until the next reload."""
    daemon = daemon_for(project)
    rules = daemon.pipeline.rules
    for path in (project / "rules").glob("*.yaml"):
        path.unlink()
    with caplog.at_level(logging.ERROR, "xwatch.daemon"):
        assert not daemon.reload_rules()
    assert daemon.pipeline.rules is rules
    assert reloads(daemon, "failed") == 1
    assert "holds no rule now (it held" in caplog.text


@pytest.mark.asyncio
async def test_a_burst_of_reload_requests_is_read_off_the_loop_at_most_twice(
    project: Path,
) -> None:
    """A reload reads the files in a thread (the loop goes on meanwhile), and the requests
    that come while it reads make one more reload, not one each."""
    daemon = daemon_for(project)
    read_again = daemon.reload
    assert read_again is not None
    entered, release = threading.Event(), threading.Event()
    calls = 0

    def slow_reload() -> Settings:
        nonlocal calls
        calls += 1
        entered.set()
        release.wait(10)
        return read_again()

    daemon.reload = slow_reload
    # written before the start: the folder watcher sees no change, and asks for no reload
    (project / "rules" / "recall.yaml").write_text(EXTRA_RULE, "utf-8")
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        os.kill(os.getpid(), signal.SIGHUP)
        assert await asyncio.to_thread(entered.wait, 10)  # reading, in its thread
        for _ in range(20):  # the loop is free: more requests come while it reads
            daemon.request_reload()
        assert reloads(daemon, "ok") == 0
        release.set()
        async with asyncio.timeout(10):
            while reloads(daemon, "ok") != 2:  # noqa: ASYNC110 - applied on the loop
                await asyncio.sleep(0.01)
        assert calls == 2
        assert "recall-chatter" in daemon.pipeline.rules.topics("kettlebird")
    finally:
        release.set()
        daemon.stop.set()
        await asyncio.wait_for(task, 20)


def test_a_model_retrained_in_place_is_used_after_a_reload_and_a_broken_one_is_refused(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The router was built once: a model retrained at its path was ignored by SIGHUP, and
    a corrupted one passed the reload as "ok", to stop the next start."""
    gloomy = {**EN_WORDS, "negative": [*EN_WORDS["negative"], "kettle"]}
    cheerful = {**EN_WORDS, "positive": [*EN_WORDS["positive"], "kettle"]}
    path = project / "models" / "en.npz"
    path.parent.mkdir()
    train(synthetic(gloomy, 90, 1, "en"), folds=3, params=SMALL, c_grid=(10.0,)).save(path)
    config = project / "config.yaml"
    config.write_text(
        config.read_text("utf-8") + "\nsentiment:\n  models:\n    en: models/en.npz\n", "utf-8"
    )
    daemon = daemon_for(project)

    def label() -> str:
        return daemon.pipeline.scorer.score(["kettle kettle kettle"], ["en"])[0].label

    assert label() == "negative"
    assert str(path) in daemon._rule_files()  # the watcher sees a retrained model too
    train(synthetic(cheerful, 90, 1, "en"), folds=3, params=SMALL, c_grid=(10.0,)).save(path)
    caplog.set_level(logging.INFO, "xwatch.daemon")
    assert daemon.reload_rules()
    assert label() == "positive"
    assert "sentiment models reloaded: en: " in caplog.text
    path.write_bytes(b"garbage")
    assert not daemon.reload_rules()
    assert label() == "positive"  # the model read last goes on
    assert reloads(daemon, "failed") == 1
    assert "not an xwatch model" in caplog.text


def test_a_topic_rule_added_after_days_learns_from_then_and_does_not_fire_at_once(
    project: Path,
) -> None:
    """Two days of steady talk of a recall, then a rule for it arrives by reload. Its
    series started at the first post's bucket, two days back: the next round closed
    every bucket since, empty, and its detectors learned two days of a silence the topic
    never had (their warm-up over), then read the topic's usual talk as a surge."""
    daemon = daemon_for(project)
    pipeline = daemon.pipeline

    def hour_of_posts(hour: int) -> list[Mention]:
        texts = ["kettlebird is fine"] * 8 + ["kettlebird recall news"] * 3
        return [
            dataclasses.replace(
                mention(text, at=hour * 3600 + m * 300 + i, id=f"{hour}-{m}-{i}"),
                author=Author(f"a{hour}{m}{i}", f"a{hour}{m}{i}", 100),
            )
            for m in range(12)
            for i, text in enumerate(texts)
        ]

    for hour in range(48):
        pipeline.ingest(hour_of_posts(hour))
    (project / "rules" / "recall.yaml").write_text(EXTRA_RULE, "utf-8")
    assert daemon.reload_rules()
    events = [e for hour in range(48, 72) for e in pipeline.ingest(hour_of_posts(hour))]
    assert [e for e in events if e.alert.rule_id == "recall-chatter"] == []
    for key, detectors in pipeline.detectors.items():
        if key.topic == "recall-chatter":  # learned from the reload on, not from day 0
            volume = detectors[0]
            assert isinstance(volume, CountDetector)
            assert volume.learned <= 24 * 3600 // key.scale_seconds
