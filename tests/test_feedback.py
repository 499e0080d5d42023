"""Teaching xwatch: labels for alerts' sample posts, stored, listed and exported for training."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import test_slack as slack_tests
from tests.factories import T0, GatedSource, mention
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.waiting import eventually
from xwatch.alerting import Notifier
from xwatch.alerting.console import ConsoleNotifier
from xwatch.cli import main
from xwatch.config import ApiConfig
from xwatch.daemon import Daemon
from xwatch.errors import ConfigError
from xwatch.feedback import (
    Feedback,
    LabelInputError,
    PostNotFoundError,
    RecentSamples,
    api_token,
    parse_label_requests,
)
from xwatch.model import (
    Alert,
    AlertEvent,
    Bucket,
    EventKind,
    Measure,
    Mention,
    PlaybookRef,
    SeriesKey,
    Severity,
    Signal,
)
from xwatch.settings import load_settings
from xwatch.store import MEMORY, MIGRATIONS, SCHEMA_VERSION, Store

TOKEN = "test-token-0123456789abcdef"
HOSTILE = (
    "<!channel> <script>alert(1)</script> '); DROP TABLE sentiment_labels; -- "
    "\u2028line\u2029para\x85nel \x00nul \x1b[31m ケトル 🔥"
)


def alert_event(samples: list[Mention], rule: str = "product-defect-surge") -> AlertEvent:
    series = SeriesKey("kettlebird", "", 300)
    start = T0 + timedelta(hours=1)
    end = start + timedelta(minutes=5)
    signal = Signal(series, Measure.NEGATIVE_SHARE, start, end, 0.6, 0.1, 0.0, 0.2, 0.9999, "up")
    bucket = Bucket(series, start, end, 40, 24, 5000, tuple(samples))
    return AlertEvent(
        EventKind.FIRING,
        Alert(
            rule_id=rule,
            title="Product defect surge",
            severity=Severity.CRITICAL,
            series=series,
            signal=signal,
            bucket=bucket,
            context=(signal,),
            playbook=PlaybookRef("product-defect", "Product defect", "http://x/playbooks/p"),
            channels=("console",),
        ),
        end,
    )


def read_jsonl(text: str) -> list[dict[str, Any]]:
    """A strict JSON-lines reader: every line one object with text, label and lang."""
    items = []
    for line in text.splitlines():
        item = json.loads(line)
        assert set(item) == {"text", "label", "lang"}
        assert item["label"] in {"negative", "neutral", "positive"}
        assert isinstance(item["text"], str) and item["text"]
        items.append(item)
    return items


# -- the store --------------------------------------------------------------------------


def test_labels_are_stored_listed_paged_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        first = store.add_label(
            "1", "still waiting for my bag", "negative", source="api", who="ann"
        )
        store.add_label("2", "kettle arrived, works", "not_negative", source="slack", who="U1")
        store.add_label("3", "love it", "positive", source="api", who="bo", lang="en", alert="a")
        assert first.id == 1 and first.lang == "" and first.created_at.tzinfo is not None
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [item.post_id for item in store.labels()] == ["1", "2", "3"]
        assert [item.post_id for item in store.labels(limit=2)] == ["1", "2"]
        assert [item.post_id for item in store.labels(after=2, limit=2)] == ["3"]
        assert store.label_count() == 3
        third = store.labels()[2]
        assert (third.who, third.source, third.alert, third.lang) == ("bo", "api", "a", "en")


def test_a_version_1_store_gains_the_labels_table_and_keeps_its_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
        db.execute(MIGRATIONS[1][0])
        db.execute("INSERT INTO schema_version VALUES (1, '2026-11-01T00:00:00+00:00')")
        db.execute(
            "INSERT INTO detector_checkpoints VALUES "
            "('kettlebird', '', 300, 'volume', 'D', 1, '{}', '2026-11-01T00:00:00+00:00')"
        )
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 2
        assert len(store.load_checkpoints()) == 1
        store.add_label("1", "broken again", "negative", source="api", who="ann")
        assert store.label_count() == 1


def test_the_store_refuses_a_label_it_does_not_know() -> None:
    with Store.open(MEMORY) as store, pytest.raises(ValueError, match="label must be one of"):
        store.add_label("1", "meh", "meh", source="api", who="ann")


def test_export_is_the_training_set_latest_label_per_post(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.add_label("1", "still waiting", "not_negative", source="api", who="a", lang="en")
        store.add_label("1", "still waiting", "negative", source="slack", who="b", lang="en")
        store.add_label("2", "届かない", "negative", source="api", who="a", lang="ja")
        store.add_label("3", "fine, thanks", "not_negative", source="api", who="a")
        store.add_label("4", HOSTILE, "positive", source="api", who="a", lang="und")
        assert store.export_labels(out) == 4
    items = read_jsonl(out.read_text("utf-8"))
    assert items == [
        {"text": "still waiting", "label": "negative", "lang": "en"},  # the later label wins
        {"text": "届かない", "label": "negative", "lang": "ja"},
        {"text": "fine, thanks", "label": "neutral", "lang": None},  # not_negative → neutral
        {"text": HOSTILE, "label": "positive", "lang": "und"},
    ]
    assert "届かない" in out.read_text("utf-8")  # UTF-8 kept readable, not \u-escaped


# -- the pure part ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "where"),
    [
        ({"label": "negative", "who": "a"}, "post_id", ""),
        ({"post_id": "", "label": "negative", "who": "a"}, "post_id", ""),
        ({"post_id": 12, "label": "negative", "who": "a"}, "post_id", ""),
        ({"post_id": "1", "label": "bad", "who": "a"}, "label", ""),
        ({"post_id": "1", "label": "negative"}, "who", ""),
        ({"post_id": "1", "label": "negative", "who": "a\nb"}, "who", ""),
        ({"post_id": "1", "label": "negative", "who": "a", "text": " "}, "text", ""),
        ({"post_id": "1", "label": "negative", "who": "a", "text": "x" * 25_001}, "text", ""),
        ({"post_id": "1", "label": "negative", "who": "a", "lang": "english!"}, "lang", ""),
        ({"post_id": "1", "label": "negative", "who": "a", "score": 1}, "score", ""),
        (
            [{"post_id": "1", "label": "negative", "who": "a"}, {"post_id": "2", "who": "b"}],
            "label",
            "item 2",
        ),
        ([], "body", ""),
        ("negative", "body", ""),
        ([{"post_id": "1", "label": "negative", "who": "a"}] * 501, "body", ""),
    ],
)
def test_bad_requests_name_the_field(body: object, field: str, where: str) -> None:
    with pytest.raises(LabelInputError) as caught:
        parse_label_requests(body)
    assert (caught.value.field, caught.value.where) == (field, where)


def test_recent_samples_are_bounded_and_refreshed() -> None:
    recent = RecentSamples(3)
    recent.remember(alert_event([mention("a", id="1"), mention("b", id="2")]))
    recent.remember(alert_event([mention("c", id="3"), mention("a", id="1")], rule="r2"))
    recent.remember(alert_event([mention("d", id="4")]))
    assert len(recent) == 3
    assert "2" not in recent  # the oldest is forgotten first
    post = recent.get("1")
    assert post is not None and post.alert.startswith("r2:")  # refreshed by the re-firing


@pytest.mark.asyncio
async def test_the_slack_entry_point_labels_a_remembered_post() -> None:
    feedback = Feedback(10)
    feedback.remember([alert_event([mention("my kettlebird smokes", id="77", lang="en")])])
    with Store.open(MEMORY) as store:
        stored = await feedback.label_post(store, "77", "not_negative", "U123")
        assert (stored.source, stored.text, stored.lang) == ("slack", "my kettlebird smokes", "en")
        assert stored.alert == "product-defect-surge:kettlebird/:up"
        with pytest.raises(PostNotFoundError):
            await feedback.label_post(store, "78", "negative", "U123")
        with pytest.raises(LabelInputError):
            await feedback.label_post(store, "77", "angry", "U123")
        assert store.label_count() == 1


def test_the_token_comes_from_the_environment_and_must_be_long() -> None:
    config = ApiConfig()
    assert api_token(config, {}) is None
    assert api_token(config, {"XWATCH_API_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(ConfigError, match="shorter than 16"):
        api_token(config, {"XWATCH_API_TOKEN": "short"})


# -- the JSON API on a running daemon ------------------------------------------------------


def write_config(project: Path, *, store: bool = True) -> Path:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    if store:
        text = text.replace("store:\n  enabled: false", "store:\n  path: state.sqlite3")
    config.write_text(text, "utf-8")
    return config


@asynccontextmanager
async def running(config: Path, *, configured_notifiers: bool = False) -> AsyncIterator[Daemon]:
    """The daemon on ``config``, notifying on a console only (``configured_notifiers``:
    with the notifiers its config names, Slack among them)."""
    source = GatedSource([mention("kettlebird is fine", at=0)])
    console: dict[str, Notifier] = {"console": ConsoleNotifier("console", io.StringIO())}
    notifiers = None if configured_notifiers else console
    daemon = Daemon(load_settings(config), sources=[source], notifiers=notifiers)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.serving.wait(), 10)
    try:
        yield daemon
    finally:
        daemon.stop.set()
        source.finish.set()
        await asyncio.wait_for(task, 10)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("XWATCH_API_TOKEN", TOKEN)
    return TOKEN


@pytest.mark.asyncio
async def test_the_api_labels_alerted_posts_by_id_and_keeps_them(project: Path, token: str) -> None:
    config = write_config(project)
    samples = [
        mention("still no refund after 3 weeks @kettlebird", id="1001", lang="en"),
        mention("ケトルバードの返金まだです", id="1002", lang=None),
    ]
    async with running(config) as daemon, aiohttp.ClientSession() as http:
        daemon._dispatch([alert_event(samples)])  # as the pipeline would, on a firing
        url = f"{daemon.web_url}/api/labels"
        async with http.post(
            url, json={"post_id": "1001", "label": "negative", "who": "ann"}, headers=auth()
        ) as response:
            assert response.status == 201
            (stored,) = (await response.json())["stored"]
        assert stored["text"] == samples[0].text  # looked up from the alert's samples
        assert stored["lang"] == "en" and stored["source"] == "api" and stored["who"] == "ann"
        assert stored["alert"] == "product-defect-surge:kettlebird/:up"
        batch = [
            {"post_id": "1002", "label": "not_negative", "who": "ken"},
            {"post_id": "x-9", "label": "positive", "who": "ann", "text": HOSTILE},
        ]
        async with http.post(url, json=batch, headers=auth()) as response:
            assert response.status == 201
            second, third = (await response.json())["stored"]
        assert second["lang"] == "ja"  # guessed from the script when the source had none
        assert third["text"] == HOSTILE and third["alert"] == ""  # stored as given, as data
        assert daemon.metrics.labels_stored.labels("api")._value.get() == 3
        async with http.get(url, params={"limit": "2"}, headers=auth()) as response:
            page = await response.json()
        assert [item["post_id"] for item in page["labels"]] == ["1001", "1002"]
        assert (page["total"], page["next"]) == (3, 2)
        async with http.get(url, params={"after": "2"}, headers=auth()) as response:
            rest = await response.json()
        assert [item["text"] for item in rest["labels"]] == [HOSTILE]
        assert rest["next"] is None
        async with http.get(f"{url}.jsonl", headers=auth()) as response:
            assert response.status == 200
            assert response.content_type == "application/x-ndjson"
            exported = read_jsonl(await response.text())
    assert exported == [
        {"text": samples[0].text, "label": "negative", "lang": "en"},
        {"text": samples[1].text, "label": "neutral", "lang": "ja"},
        {"text": HOSTILE, "label": "positive", "lang": "en"},  # guessed: Latin letters
    ]
    # the daemon has stopped: the labels are in the file, the table whole
    with Store.open(project / "state.sqlite3") as store:
        assert [item.post_id for item in store.labels()] == ["1001", "1002", "x-9"]
    # and after a restart they are still listed
    async with (
        running(config) as daemon,
        aiohttp.ClientSession() as http,
        http.get(f"{daemon.web_url}/api/labels", headers=auth()) as response,
    ):
        assert (await response.json())["total"] == 3
    out = project / "train.jsonl"
    assert main(["labels", "export", "-c", str(config), "--out", str(out)]) == 0
    assert read_jsonl(out.read_text("utf-8")) == exported


@pytest.mark.asyncio
async def test_the_api_refuses_strangers_unknown_posts_and_bad_input(
    project: Path, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(write_config(project)) as daemon, aiohttp.ClientSession() as http:
        daemon._dispatch([alert_event([mention("broken lid", id="5")])])
        url = f"{daemon.web_url}/api/labels"
        good = {"post_id": "5", "label": "negative", "who": "ann"}
        for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": TOKEN}):
            for method, target in (("POST", url), ("GET", url), ("GET", f"{url}.jsonl")):
                async with http.request(method, target, json=good, headers=headers) as response:
                    assert response.status == 401, (method, target, headers)
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert "POST /api/labels refused: a wrong bearer token" in refusals
        assert "GET /api/labels refused: no bearer token" in refusals
        assert not any("wrong-token" in line for line in caplog.text.splitlines())
        unknown = {"post_id": "404", "label": "negative", "who": "ann"}
        async with http.post(url, json=[good, unknown], headers=auth()) as response:
            assert response.status == 404
            body = await response.json()
        assert body["post_ids"] == ["404"] and "not among the sample posts" in body["detail"]
        async with http.post(url, json={**good, "label": "meh"}, headers=auth()) as response:
            assert response.status == 400
            assert (await response.json())["field"] == "label"
        for body in (
            b"{not json",
            b"[" * 100_000 + b"]" * 100_000,  # deeper than the interpreter's stack
            b'{"post_id": "5", "label": "negative", "who": "ann\\udfff"}',  # no text
        ):
            async with http.post(url, data=body, headers=auth()) as response:
                assert response.status == 400
                assert (await response.json())["field"] == "body"
        async with http.get(url, params={"limit": "0"}, headers=auth()) as response:
            assert response.status == 400
            assert (await response.json())["field"] == "limit"
        # a remembered post sent with another text: it would replace what was posted
        other = {**good, "text": "I love my new kettle!!"}
        async with http.post(url, json=[good, other], headers=auth()) as response:
            assert response.status == 400
            refused = await response.json()
        assert (refused["field"], refused["where"]) == ("text", "item 2")
        # too big to read: the API's JSON error, not aiohttp's plain text
        huge = [{**good, "post_id": f"p{i}", "text": "長い" * 12_000} for i in range(20)]
        big = io.BytesIO(json.dumps(huge).encode())  # raw bytes this large: a warning
        headers = {**auth(), "Content-Type": "application/json"}
        async with http.post(url, data=big, headers=headers) as response:
            assert response.status == 413
            assert (await response.json())["field"] == "body"
        async with http.get(url, headers=auth()) as response:
            assert (await response.json())["total"] == 0  # nothing refused was stored


@pytest.mark.asyncio
async def test_without_a_store_or_a_token_the_api_says_why(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(project, store=False)
    monkeypatch.delenv("XWATCH_API_TOKEN", raising=False)
    async with running(config) as daemon, aiohttp.ClientSession() as http:
        url = f"{daemon.web_url}/api/labels"
        async with http.get(url, headers=auth()) as response:
            assert response.status == 503
            assert "XWATCH_API_TOKEN is not set" in (await response.json())["detail"]
    monkeypatch.setenv("XWATCH_API_TOKEN", TOKEN)
    async with running(config) as daemon, aiohttp.ClientSession() as http:
        url = f"{daemon.web_url}/api/labels"
        good = {"post_id": "1", "label": "negative", "who": "a", "text": "x"}
        async with http.post(url, json=good, headers=auth()) as response:
            assert response.status == 503
            assert (await response.json())["detail"].startswith("no store configured")


def test_export_without_a_store_says_why(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(project, store=False)
    assert main(["labels", "export", "-c", str(config), "--out", str(project / "o")]) == 1
    assert "store.enabled is false" in capsys.readouterr().err
    config = write_config(project)
    assert main(["labels", "export", "-c", str(config), "--out", str(project / "o")]) == 1
    assert "no store at" in capsys.readouterr().err


# -- labels from Slack, on a running daemon ------------------------------------------------


def with_slack(config: Path, api_url: str) -> Path:
    text = config.read_text("utf-8")
    slack = f"  slack: {{type: slack, channel: C0ALERTS, api_url: '{api_url}', chart: false}}\n"
    config.write_text(text.replace("notifiers:\n", "notifiers:\n" + slack), "utf-8")
    return config


async def choose(daemon: Daemon, menu: dict[str, Any], label: str, response_url: str) -> None:
    """Choose ``label`` in a post's menu, as Slack posts the choice to the daemon."""
    value = next(o["value"] for o in menu["options"] if json.loads(o["value"])[2] == label)
    body = slack_tests.chose(value, response_url)
    headers = slack_tests.signed(body, secret=SIGNING_SECRET)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{daemon.web_url}/slack/actions", data=body, headers=headers) as response,
    ):
        assert response.status == 200


SIGNING_SECRET = "feedback-signing-secret"


@pytest.mark.asyncio
async def test_a_post_labelled_in_slack_is_stored_even_after_a_restart(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Slack message's label menus store labels with source slack; after a restart
    (nothing remembered) the post's text comes from its incident, as stored."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    samples = [
        mention("still no refund after 3 weeks @kettlebird", id="1001", lang="en", followers=900),
        mention("ケトルバードの返金まだです", id="1002", lang=None, followers=100),
    ]
    event = alert_event(samples)
    event = dataclasses.replace(event, alert=dataclasses.replace(event.alert, channels=("slack",)))
    async with FakeSlack() as slack:
        config = with_slack(write_config(project), slack.api_url)
        async with running(config, configured_notifiers=True) as daemon:
            daemon._dispatch([event])
            await eventually(lambda: bool(slack.top_level()), "the incident's message")
            posts = {json.loads(m["options"][0]["value"])[1]: m for m in menus(slack)}
            assert set(posts) == {"1001", "1002"}
            await choose(daemon, posts["1001"], "not_negative", slack.response_url)
            assert daemon.metrics.labels_stored.labels("slack")._value.get() == 1
        async with running(config, configured_notifiers=True) as daemon:
            assert "1002" not in daemon.feedback.recent  # a restart remembers nothing
            await choose(daemon, posts["1002"], "negative", slack.response_url)
    assert [r["text"].split(" (label")[0] for r in slack.responses] == [
        "Thanks: post 1001 is labelled *not negative*",
        "Thanks: post 1002 is labelled *negative*",
    ]
    with Store.open(project / "state.sqlite3") as store:
        stored = [(s.post_id, s.text, s.lang, s.label, s.source, s.who) for s in store.labels()]
        assert [s.alert for s in store.labels()] == [event.alert.identity] * 2
    assert stored == [
        ("1001", samples[0].text, "en", "not_negative", "slack", "@maria"),
        ("1002", samples[1].text, "ja", "negative", "slack", "@maria"),
    ]


def menus(slack: FakeSlack) -> list[dict[str, Any]]:
    (message,) = slack.top_level()
    return [b["accessory"] for b in message.blocks if "accessory" in b]


@pytest.mark.asyncio
async def test_without_a_store_slack_shows_no_label_menus(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    event = alert_event([mention("my kettlebird smokes", id="77", lang="en")])
    event = dataclasses.replace(event, alert=dataclasses.replace(event.alert, channels=("slack",)))
    async with FakeSlack() as slack:
        config = with_slack(write_config(project, store=False), slack.api_url)
        async with running(config, configured_notifiers=True) as daemon:
            daemon._dispatch([event])
            await eventually(lambda: bool(slack.top_level()), "the incident's message")
            assert menus(slack) == []
            # a choice from an older message is answered: nothing can be kept
            value = json.dumps([next(iter(daemon.book.incidents)), "77", "negative"])
            body = slack_tests.chose(value, slack.response_url)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{daemon.web_url}/slack/actions",
                    data=body,
                    headers=slack_tests.signed(body, secret=SIGNING_SECRET),
                ) as response,
            ):
                assert response.status == 200
    [answer] = slack.responses
    assert answer["text"].startswith("Not labelled: this xwatch runs without a store")
