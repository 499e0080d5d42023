"""The Slack notifier against a local server that answers like Slack's Web API, with the
real slack-sdk client, and the /slack/actions endpoint with Slack-signed requests."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests import factories
from tests.fake_slack import TOKEN, FakeSlack, Message
from tests.ports import free_port
from xwatch.alerting import MemoryRefs, PermanentFailure, TemporaryFailure
from xwatch.alerting import slack as slack_module
from xwatch.alerting.chart import incident_chart
from xwatch.alerting.incidents import (
    Incident,
    IncidentBook,
    Notice,
    NoticeKind,
    Policy,
    UnknownIncident,
)
from xwatch.alerting.service import Action
from xwatch.alerting.slack import (
    SlackActions,
    SlackNotifier,
    blocks,
    clip_mrkdwn,
    escape_untrusted,
)
from xwatch.alerting.summary import summarize
from xwatch.config import SlackNotifierConfig
from xwatch.errors import ConfigError
from xwatch.feedback import LabelsUnavailable, PostNotFoundError
from xwatch.model import AlertEvent, EventKind
from xwatch.store import StoredLabel

INCIDENTS = "http://127.0.0.1:9464/incidents/"
# the look-alikes that stand for mrkdwn's formatting characters
STAR, LOW_LINE, TILDE, BACKTICK = "\u2217", "\u02cd", "\u223c", "\u02cb"
HOSTILE = (
    "<!channel> wake up <@U123> and <!here|here>, log in at <https://evil|bank> "
    "*bold* _it_ ~gone~ `code`\n> a forged quote &amp; more"
)


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def make_notifier(
    fake: FakeSlack,
    *,
    token: str = TOKEN,
    channel: str = "C0ALERTS",
    chart: bool = False,
    api_url: str | None = None,
) -> SlackNotifier:
    config = SlackNotifierConfig(
        type="slack",
        channel=channel,
        api_url=api_url or fake.api_url,
        chart=chart,
        timeout_seconds=5,
    )
    return SlackNotifier(config, "slack", token, INCIDENTS, MemoryRefs())


def notice(kind: NoticeKind = NoticeKind.OPENED, who: str = "@maria", **alert: Any) -> Notice:
    return factories.notice(
        kind, channel="slack", alert_=factories.alert(channels=("slack",), **alert), who=who
    )


def texts(value: object) -> list[str]:
    """Every ``text`` string in a message's blocks, wherever it is nested."""
    if isinstance(value, dict):
        found = [value["text"]] if isinstance(value.get("text"), str) else []
        return found + [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def buttons(message_blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in message_blocks if b["type"] == "actions" for e in b["elements"]]


def only_message(fake: FakeSlack) -> Message:
    messages = fake.top_level()
    assert len(messages) == 1, messages
    return messages[0]


# -- the message ---------------------------------------------------------------------------


def test_the_message_explains_the_incident() -> None:
    opened = notice()
    incident = opened.incident
    made = blocks(summarize(incident, INCIDENTS + incident.id), opened)
    assert made[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "CRITICAL: Negative share spike (kettlebird)",
            "emoji": True,
        },
    }
    shown = "\n".join(texts(made))
    for fact in (
        "*Brand*\nkettlebird",
        "negative share up at 5m",  # what fired, at which time scale
        "negative share 41% (usual 9%, band 4%-16%)",  # observed against expected
        "likelihood 0.99999",
        "*Negative share* 41% now, usual 9%",
        "`exploded` · `refund`",
        "*<https://x.com/user_a/status/a|@user_a>* · 120,000 followers · negative",
        ">Kettle exploded on the counter, stay away! #kettlebird",
        "*<https://x.com/user_b/status/b|@user_b>* · 5,400 followers",
        "<http://127.0.0.1:9464/playbooks/complaint-wave|:book: Playbook: Customer complaint wave>",
        f"<{INCIDENTS}{incident.id}|:mag: Incident page>",
        f"xwatch incident {incident.id}",
    ):
        assert fact in shown, fact
    assert [(b["action_id"], b["text"]["text"], b["value"]) for b in buttons(made)] == [
        ("xwatch_acknowledge", "Acknowledge", incident.id),
        ("xwatch_silence_1h", "Silence 1h", incident.id),
        ("xwatch_resolve", "Resolve", incident.id),
        ("xwatch_escalate", "Escalate", incident.id),
    ]


def test_untrusted_text_is_inert_mrkdwn() -> None:
    escaped = escape_untrusted(HOSTILE)
    assert "<" not in escaped and ">" not in escaped
    assert "&lt;!channel&gt;" in escaped and "&lt;@U123&gt;" in escaped
    assert "&amp;amp;" in escaped  # even an entity in the post shows as typed
    assert not set("*_~`\n") & set(escaped)  # no formatting, one line: no way out of a quote
    assert f"{STAR}bold{STAR} {LOW_LINE}it{LOW_LINE} {TILDE}gone{TILDE}" in escaped


def test_cutting_short_never_splits_an_entity_or_a_link() -> None:
    for text in ("&amp;" * 1000, "ab <https://x.com/a|a post> " * 200, "x" * 2998 + "&lt;"):
        cut = clip_mrkdwn(text, 3000)
        assert len(cut) <= 3000 and cut.endswith("…")
        assert re.sub(r"&(amp|lt|gt);", "", cut).count("&") == 0
        assert cut.count("<") == cut.count(">")


# -- sending -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_first_notice_posts_one_message_and_the_chart_in_its_thread(
    slack: FakeSlack,
) -> None:
    notifier = make_notifier(slack, chart=True)
    opened = notice()
    await notifier.send(opened)
    message = only_message(slack)
    incident_id = opened.incident.id
    assert message.channel == "C0ALERTS"
    assert incident_id in message.text and "[CRITICAL] kettlebird" in message.text
    assert message.metadata == {
        "event_type": "xwatch_incident",
        "event_payload": {
            "incident_id": incident_id,
            "brand": "kettlebird",
            "severity": "critical",
            "state": "firing",
        },
    }
    assert len(buttons(message.blocks)) == 4
    assert await notifier.refs.get("slack", incident_id) == {
        "channel": "C0ALERTS",
        "ts": message.ts,
        "shown": "1",
    }
    await notifier.charts_uploaded()  # the chart goes up after the message
    [chart] = slack.files.values()
    assert chart.data is not None and chart.data.startswith(b"\x89PNG")
    assert (chart.channel, chart.thread_ts) == ("C0ALERTS", message.ts)
    assert chart.filename == f"{incident_id}.png"


@pytest.mark.asyncio
async def test_a_message_does_not_wait_for_the_chart_of_the_one_before(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = threading.Event()

    def slow_chart(incident: Any) -> bytes | None:
        drawn.wait(timeout=10)  # a chart that takes long to draw
        return incident_chart(incident)

    monkeypatch.setattr(slack_module, "incident_chart", slow_chart)
    notifier = make_notifier(slack, chart=True)
    first, second = notice(brand="kettlebird"), notice(brand="globex")
    await notifier.send(first)
    await notifier.send(second)  # while the first one's chart is still being drawn
    assert len(slack.top_level()) == 2 and not slack.files
    drawn.set()
    await notifier.charts_uploaded()
    threads = {message.ts for message in slack.top_level()}
    assert {chart.thread_ts for chart in slack.files.values()} == threads


@pytest.mark.asyncio
async def test_a_channel_name_is_resolved_to_the_channel_id_slack_answers(
    slack: FakeSlack,
) -> None:
    notifier = make_notifier(slack, channel="#alerts")
    opened = notice()
    await notifier.send(opened)
    ref = await notifier.refs.get("slack", opened.incident.id)
    assert ref is not None and ref["channel"] == "C0ALERTS"


@pytest.mark.asyncio
async def test_acknowledge_edits_the_message_and_says_so_in_the_thread(
    slack: FakeSlack,
) -> None:
    notifier = make_notifier(slack)
    await notifier.send(notice())
    await notifier.send(notice(NoticeKind.ACKNOWLEDGED))
    message = only_message(slack)
    assert message.edits == 1
    assert "*State*\n:eyes: acknowledged by @maria" in texts(message.blocks)
    assert [b["action_id"] for b in buttons(message.blocks)] == [
        "xwatch_silence_1h",
        "xwatch_resolve",
        "xwatch_escalate",
    ]
    [reply] = slack.replies(message.ts)
    assert reply.text == "Acknowledged: acknowledged by @maria"
    assert not reply.reply_broadcast


@pytest.mark.asyncio
async def test_a_name_given_on_the_incident_page_formats_nothing_in_slack(
    slack: FakeSlack,
) -> None:
    """The incident page and the JSON API take any name: it is shown, never bold,
    struck through or code (nor a mention: those were escaped already)."""
    who = "*ALL CLEAR* ~ignore~ _x_ `y` <!channel>"
    notifier = make_notifier(slack)
    await notifier.send(notice())
    await notifier.send(notice(NoticeKind.ACKNOWLEDGED, who=who))
    message = only_message(slack)
    [reply] = slack.replies(message.ts)
    shown = [t for t in [*texts(message.blocks), message.text, reply.text] if "ALL CLEAR" in t]
    assert len(shown) >= 3  # the state, the context line, the fallback text, the reply
    for text in shown:
        assert "*ALL CLEAR*" not in text and "~ignore~" not in text and "`y`" not in text
        assert "<!channel>" not in text


@pytest.mark.asyncio
async def test_resolve_removes_the_buttons_and_a_late_notice_does_not_bring_them_back(
    slack: FakeSlack,
) -> None:
    notifier = make_notifier(slack)
    await notifier.send(notice())
    await notifier.send(notice(NoticeKind.RESOLVED))
    message = only_message(slack)
    assert buttons(message.blocks) == []
    assert any(
        t.startswith("*State*\n:white_check_mark: resolved at") for t in texts(message.blocks)
    )
    assert message.metadata is not None
    assert message.metadata["event_payload"]["state"] == "resolved"
    # the outbox retries an older notice after the newer one went out: the thread says
    # so, the message keeps showing the newer state
    acknowledged = notice(NoticeKind.ACKNOWLEDGED)
    acknowledged = dataclasses.replace(
        acknowledged, incident=dataclasses.replace(acknowledged.incident, notices=1)
    )
    await notifier.send(acknowledged)
    assert buttons(only_message(slack).blocks) == []
    assert [r.text for r in slack.replies(message.ts)] == [
        "Resolved: resolved by @maria",
        "Acknowledged: acknowledged by @maria",
    ]


@pytest.mark.asyncio
async def test_escalation_is_broadcast_from_the_thread_to_the_channel(slack: FakeSlack) -> None:
    notifier = make_notifier(slack)
    await notifier.send(notice())
    await notifier.send(notice(NoticeKind.ESCALATED))
    [reply] = slack.replies(only_message(slack).ts)
    assert reply.text == "Escalated: escalated by @maria" and reply.reply_broadcast


@pytest.mark.asyncio
async def test_a_deleted_message_is_posted_again(slack: FakeSlack) -> None:
    notifier = make_notifier(slack)
    await notifier.send(notice())
    slack.messages.clear()  # someone deleted it
    await notifier.send(notice(NoticeKind.ACKNOWLEDGED))
    message = only_message(slack)
    assert "*State*\n:eyes: acknowledged by @maria" in texts(message.blocks)
    ref = await notifier.refs.get("slack", notice().incident.id)
    assert ref is not None and ref["ts"] == message.ts


@pytest.mark.asyncio
async def test_hostile_posts_ping_nobody_and_link_nowhere(slack: FakeSlack) -> None:
    end = factories.T0 + timedelta(hours=13)
    posts = (
        factories._post(HOSTILE, end, 90_000, "a"),
        factories._post("fine post", end, 10, "x<!here>|y"),  # a hostile handle and URL
    )
    notifier = make_notifier(slack)
    await notifier.send(notice(posts=posts))
    [call] = slack.calls_to("chat.postMessage")
    received = [call.args["text"], *texts(call.args["blocks"])]
    for text in received:
        for token in re.findall(r"<([^>]*)>", text):  # every link we made, and only those
            assert re.match(r"https?://(x\.com|127\.0\.0\.1)[^|<>]*\|", token), token
        assert "*bold*" not in text and "_it_" not in text and "`code`" not in text
    quoted = next(t for t in received if "wake up" in t)
    assert quoted.count("\n") == 1  # the author line, then the post on one quoted line
    assert quoted.endswith(
        "\n>&lt;!channel&gt; wake up &lt;@U123&gt; and &lt;!here|here&gt;, log in at "
        f"&lt;https://evil|bank&gt; {STAR}bold{STAR} {LOW_LINE}it{LOW_LINE} {TILDE}gone{TILDE} "
        f"{BACKTICK}code{BACKTICK} &gt; a forged quote &amp;amp; more"
    )
    handle = next(t for t in received if "fine post" in t)
    assert handle.startswith("*<https://x.com/user_x&lt;!here&gt;%7Cy/status/")


@pytest.mark.asyncio
async def test_huge_incidents_are_cut_to_slacks_limits_never_refused(slack: FakeSlack) -> None:
    end = factories.T0 + timedelta(hours=13)
    posts = tuple(factories._post("lorem ipsum " * 850, end, 1000 + i, f"p{i}") for i in range(60))
    book = IncidentBook(Policy())
    events = []
    for i in range(60):
        alert = factories.alert(rule=f"rule-{i:02d}", channels=("slack",), posts=posts)
        alert = dataclasses.replace(alert, title=f"A very long alert title {i} " * 20)
        events.append(AlertEvent(EventKind.FIRING, alert, alert.signal.end))
    changes = book.observe(events, end)
    last = [n for c in changes for n in c.notices][-1]
    assert len(last.incident.parts) == 60
    notifier = make_notifier(slack)
    await notifier.send(last)  # the fake refuses what Slack would (invalid_blocks)
    message = only_message(slack)
    assert len(message.blocks) <= 50
    header = message.blocks[0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    shown = texts(message.blocks)
    what_fired = next(t for t in shown if t.startswith("*What fired*"))
    assert len(what_fired) <= 3000 and re.search(r"\n…and \d+ more alerts$", what_fired)
    quoted = [t for t in shown if "lorem ipsum" in t]
    assert len(quoted) == 5 and all(t.endswith("…") and len(t) < 3000 for t in quoted)


# -- failures --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limited_is_temporary_with_retry_after(slack: FakeSlack) -> None:
    slack.fail(method="chat.postMessage", status=429, error="ratelimited", retry_after=7)
    notifier = make_notifier(slack)
    with pytest.raises(TemporaryFailure) as caught:
        await notifier.send(notice())
    assert caught.value.retry_after == 7.0
    assert len(slack.calls_to("chat.postMessage")) == 1  # slack-sdk did not retry on its own
    await notifier.send(notice())  # the outbox's retry goes through
    assert len(slack.top_level()) == 1


@pytest.mark.asyncio
async def test_server_errors_are_temporary_and_not_retried_by_the_client(
    slack: FakeSlack,
) -> None:
    slack.fail(status=500)
    with pytest.raises(TemporaryFailure) as caught:
        await make_notifier(slack).send(notice())
    assert caught.value.retry_after is None
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert slack.top_level() == []


@pytest.mark.asyncio
async def test_a_dropped_connection_is_temporary_and_left_to_the_outbox(slack: FakeSlack) -> None:
    slack.fail(method="chat.postMessage", drop=True)
    with pytest.raises(TemporaryFailure, match="ServerDisconnected"):
        await make_notifier(slack).send(notice())
    assert len(slack.calls_to("chat.postMessage")) == 1  # slack-sdk's retry handlers are off
    assert slack.top_level() == []


@pytest.mark.asyncio
async def test_network_errors_are_temporary(slack: FakeSlack) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/"  # a port nobody listens on
    with pytest.raises(TemporaryFailure):
        await make_notifier(slack, api_url=closed).send(notice())


@pytest.mark.asyncio
async def test_unknown_channel_is_permanent(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PermanentFailure, match="channel_not_found"):
        await make_notifier(slack, channel="#nope").send(notice())
    assert any("failed for good" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_revoked_token_is_permanent_and_never_shown(slack: FakeSlack) -> None:
    wrong = "xoxb-revoked-0123456789"
    with pytest.raises(PermanentFailure, match="invalid_auth") as caught:
        await make_notifier(slack, token=wrong).send(notice())
    assert wrong not in str(caught.value)


@pytest.mark.asyncio
async def test_an_update_that_fails_is_temporary_and_retried_whole(slack: FakeSlack) -> None:
    notifier = make_notifier(slack)
    await notifier.send(notice())
    slack.fail(method="chat.postMessage", status=503)  # the thread reply
    with pytest.raises(TemporaryFailure):
        await notifier.send(notice(NoticeKind.ACKNOWLEDGED))
    await notifier.send(notice(NoticeKind.ACKNOWLEDGED))
    message = only_message(slack)
    assert [r.text for r in slack.replies(message.ts)] == ["Acknowledged: acknowledged by @maria"]


@pytest.mark.asyncio
@pytest.mark.parametrize("step", ["files.getUploadURLExternal", "upload"])
async def test_a_failed_chart_upload_does_not_fail_or_repeat_the_message(
    slack: FakeSlack, step: str, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail(method=step, status=500)
    notifier = make_notifier(slack, chart=True)
    with caplog.at_level(logging.WARNING, "xwatch.alerting.slack"):
        await notifier.send(notice())
        await notifier.charts_uploaded()
    message = only_message(slack)
    assert not slack.calls_to("files.completeUploadExternal")
    assert any("chart upload failed" in r.getMessage() for r in caplog.records)
    await notifier.send(notice(NoticeKind.ACKNOWLEDGED))
    assert only_message(slack).ts == message.ts


def test_from_config_reads_the_token_from_the_environment() -> None:
    config = SlackNotifierConfig(type="slack", channel="C0ALERTS", token_env="MY_SLACK_TOKEN")
    with pytest.raises(ConfigError, match=r"^environment:0: MY_SLACK_TOKEN is not set"):
        SlackNotifier.from_config(
            "slack", config, refs=MemoryRefs(), incident_url_base=INCIDENTS, env={}
        )
    notifier = SlackNotifier.from_config(
        "slack",
        config,
        refs=MemoryRefs(),
        incident_url_base=INCIDENTS,
        env={"MY_SLACK_TOKEN": " xoxb-1 "},
    )
    assert notifier.client.token == "xoxb-1" and notifier.name == "slack"
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        SlackActions.from_config(config, RecordingActions(), env={})


# -- the buttons -----------------------------------------------------------------------------

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class RecordingActions:
    """``Actions`` that records each call; ``gate`` holds them; unknown ids raise."""

    def __init__(self, known: tuple[str, ...] = ("kettlebird-20261116-130000",)) -> None:
        self.known = known
        self.calls: list[tuple[str, Action, str, str, timedelta]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.done = asyncio.Event()

    async def act(
        self,
        incident_id: str,
        action: Action,
        who: str,
        *,
        via: str,
        silence_for: timedelta = timedelta(hours=1),
    ) -> Incident:
        await self.gate.wait()
        self.done.set()
        if incident_id not in self.known:
            raise UnknownIncident(incident_id)
        self.calls.append((incident_id, action, who, via, silence_for))
        return notice().incident


@pytest.fixture
def recorder() -> RecordingActions:
    return RecordingActions()


def click(action_id: str, incident_id: str = "kettlebird-20261116-130000") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0MARIA", "username": "maria", "name": "maria", "team_id": "T1"},
        "container": {"type": "message", "channel_id": "C0ALERTS", "message_ts": "1.2"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "xwatch_actions",
                "value": incident_id,
                "action_ts": "1763298000.1",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, *, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    """Headers as Slack signs a request (https://docs.slack.dev/authentication/verifying-requests-from-slack)."""
    timestamp = str(int(time.time() if at is None else at))
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest_asyncio.fixture
async def buttons_app(
    recorder: RecordingActions,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    SlackActions(SECRET, recorder, answer_within=0.5).routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action_id", "action"),
    [
        ("xwatch_acknowledge", "acknowledge"),
        ("xwatch_silence_1h", "silence"),
        ("xwatch_resolve", "resolve"),
        ("xwatch_escalate", "escalate"),
    ],
)
async def test_a_signed_click_acts_on_the_incident(
    buttons_app: TestClient[web.Request, web.Application],
    recorder: RecordingActions,
    action_id: str,
    action: str,
) -> None:
    body = click(action_id)
    response = await buttons_app.post("/slack/actions", data=body, headers=signed(body))
    assert response.status == 200
    assert recorder.calls == [
        ("kettlebird-20261116-130000", action, "@maria", "slack", timedelta(hours=1))
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make_headers",
    [
        lambda body: signed(body, secret="not-the-secret"),
        lambda body: signed(click("xwatch_acknowledge")),  # signs another body
        lambda body: signed(body, at=time.time() - 6 * 60),  # stale
        lambda body: {**signed(body), "X-Slack-Request-Timestamp": "soon"},
        lambda body: {**signed(body), "X-Slack-Request-Timestamp": "\u00b2"},  # int() refuses
        lambda body: {**signed(body), "X-Slack-Request-Timestamp": "9" * 5000},
        lambda body: {**signed(body), "X-Slack-Signature": "v0=\u00e9\u00e9"},  # was a 500
        lambda body: {},
    ],
    ids=[
        "forged",
        "other-body",
        "stale",
        "garbled",
        "superscript",
        "huge",
        "non-ascii-signature",
        "unsigned",
    ],
)
async def test_unsigned_forged_or_stale_clicks_are_refused(
    buttons_app: TestClient[web.Request, web.Application],
    recorder: RecordingActions,
    make_headers: Callable[[bytes], dict[str, str]],
) -> None:
    body = click("xwatch_resolve")
    response = await buttons_app.post("/slack/actions", data=body, headers=make_headers(body))
    assert response.status == 401
    assert recorder.calls == [] and not recorder.done.is_set()


@pytest.mark.asyncio
async def test_a_signed_request_sent_again_is_not_acted_on_again(
    buttons_app: TestClient[web.Request, web.Application], recorder: RecordingActions
) -> None:
    """A captured click replayed within its 5 minutes escalated (and paged) twice."""
    body = click("xwatch_escalate")
    headers = signed(body)
    for _ in range(3):
        response = await buttons_app.post("/slack/actions", data=body, headers=headers)
        assert response.status == 200
    later = signed(body, at=time.time() + 1)  # another click: its own timestamp and signature
    response = await buttons_app.post("/slack/actions", data=body, headers=later)
    assert [call[1] for call in recorder.calls] == ["escalate", "escalate"]


@pytest.mark.asyncio
async def test_a_click_on_an_unknown_incident_is_answered(
    buttons_app: TestClient[web.Request, web.Application], recorder: RecordingActions
) -> None:
    body = click("xwatch_acknowledge", "kettlebird-gone")
    response = await buttons_app.post("/slack/actions", data=body, headers=signed(body))
    assert response.status == 200
    assert recorder.done.is_set() and recorder.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [b"payload=not-json", b"nothing=here", urlencode({"payload": "[1, 2]"}).encode(), b"\xff\xfe"],
)
async def test_a_malformed_payload_is_a_bad_request(
    buttons_app: TestClient[web.Request, web.Application],
    recorder: RecordingActions,
    body: bytes,
) -> None:
    response = await buttons_app.post("/slack/actions", data=body, headers=signed(body))
    assert response.status == 400
    assert not recorder.done.is_set()


@pytest.mark.asyncio
async def test_a_slow_action_is_answered_in_time_and_still_done(recorder: RecordingActions) -> None:
    recorder.gate.clear()
    app = web.Application()
    SlackActions(SECRET, recorder, answer_within=0.05).routes(app)
    async with TestClient(TestServer(app)) as client:
        body = click("xwatch_resolve")
        response = await client.post("/slack/actions", data=body, headers=signed(body))
        assert response.status == 200 and recorder.calls == []
        recorder.gate.set()
        await recorder.done.wait()
    assert [c[1] for c in recorder.calls] == ["resolve"]


def test_a_silenced_incident_acknowledged_before_offers_no_acknowledge_button() -> None:
    """A silence after an acknowledgement shows "silenced" as the state; the button came
    back, and a click sent everyone a second "acknowledged"."""
    book = IncidentBook(Policy(repeat_after=None))
    first = factories.alert(channels=("slack",))
    opened = book.observe([AlertEvent(EventKind.FIRING, first, first.signal.end)], first.signal.end)
    incident_id = opened[0].incident.id
    later = first.signal.end + timedelta(minutes=5)
    book.acknowledge(incident_id, "@maria", later)
    _, silenced = book.silence_incident(incident_id, "@maria", later, timedelta(hours=1), "s1")
    incident = silenced[0].incident
    made = blocks(summarize(incident, INCIDENTS + incident.id), silenced[0].notices[0])
    assert [b["action_id"] for b in buttons(made)] == ["xwatch_resolve", "xwatch_escalate"]


# -- labelling posts ---------------------------------------------------------------------------


def menus(message_blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b["accessory"] for b in message_blocks if "accessory" in b]


def choice(menu: dict[str, Any], label: str) -> list[str]:
    """The ``[incident id, post id, label]`` an option of a post's menu stands for."""
    values = [json.loads(option["value"]) for option in menu["options"]]
    return next(v for v in values if v[2] == label)


def test_each_post_has_a_label_menu_when_labels_are_kept() -> None:
    made = notice()
    summary = summarize(made.incident, INCIDENTS + made.incident.id)
    assert summary.posts and menus(blocks(summary, made)) == []  # no store: no menus
    shown = menus(blocks(summary, made, labels=True))
    assert len(shown) == len(summary.posts)
    for menu, post in zip(shown, summary.posts, strict=True):
        assert menu["type"] == "static_select" and menu["action_id"] == "xwatch_label"
        assert [option["text"]["text"] for option in menu["options"]] == [
            "Negative",
            "Not negative",
        ]
        assert choice(menu, "not_negative") == [made.incident.id, post.id, "not_negative"]
    # a post id too long for an option's value (150 characters) is shown without a menu
    long_id = dataclasses.replace(summary.posts[0], id="9" * 200)
    longer = dataclasses.replace(summary, posts=(long_id, *summary.posts[1:]))
    assert len(menus(blocks(longer, made, labels=True))) == len(summary.posts) - 1


@pytest.mark.asyncio
async def test_the_menus_are_what_slack_accepts_and_stay_after_the_resolve(
    slack: FakeSlack,
) -> None:
    config = SlackNotifierConfig(
        type="slack", channel="C0ALERTS", api_url=slack.api_url, chart=False
    )
    notifier = SlackNotifier(config, "slack", TOKEN, INCIDENTS, MemoryRefs(), labels=True)
    opened = notice()
    await notifier.send(opened)
    assert menus(only_message(slack).blocks)  # Slack took the message (no invalid_blocks)
    resolved = factories.notice(
        NoticeKind.RESOLVED, channel="slack", alert_=factories.alert(channels=("slack",))
    )
    await notifier.send(resolved)
    message = only_message(slack)
    assert buttons(message.blocks) == [] and menus(message.blocks)  # labels after the end too


class RecordingLabels:
    """``SampleLabels`` that records each label; ``refuse`` makes it raise instead."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, str, str, str]] = []

    async def label_sample(
        self, incident_id: str, post_id: str, label: str, who: str
    ) -> StoredLabel:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append((incident_id, post_id, label, who))
        return StoredLabel(
            len(self.calls), post_id, "text", "en", label, "slack", who, "", factories.T0
        )


def chose(value: str, response_url: str) -> bytes:
    """A label chosen in a post's menu, as Slack posts it (block_actions, static_select)."""
    payload = {
        "type": "block_actions",
        "user": {"id": "U0MARIA", "username": "maria", "name": "maria", "team_id": "T1"},
        "container": {"type": "message", "channel_id": "C0ALERTS", "message_ts": "1.2"},
        "response_url": response_url,
        "actions": [
            {
                "type": "static_select",
                "action_id": "xwatch_label",
                "block_id": "Ab1",
                "selected_option": {
                    "text": {"type": "plain_text", "text": "Not negative", "emoji": True},
                    "value": value,
                },
                "placeholder": {"type": "plain_text", "text": "Label this post"},
                "action_ts": "1763298000.1",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def post_choice(
    slack: FakeSlack, labels: RecordingLabels | None, value: str
) -> tuple[int, list[dict[str, Any]]]:
    app = web.Application()
    SlackActions(SECRET, RecordingActions(), labels=labels, answer_within=5).routes(app)
    async with TestClient(TestServer(app)) as client:
        body = chose(value, slack.response_url)
        response = await client.post("/slack/actions", data=body, headers=signed(body))
        return response.status, slack.responses


@pytest.mark.asyncio
async def test_a_chosen_label_is_stored_and_the_chooser_alone_is_told(slack: FakeSlack) -> None:
    labels = RecordingLabels()
    value = json.dumps(["kettlebird-20261116-130000", "1859431", "not_negative"])
    status, responses = await post_choice(slack, labels, value)
    assert status == 200
    assert labels.calls == [("kettlebird-20261116-130000", "1859431", "not_negative", "@maria")]
    [answer] = responses
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "labelled *not negative*" in answer["text"] and "xwatch labels export" in answer["text"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("refuse", "said"),
    [
        (None, "keeps no labels"),
        (LabelsUnavailable("this xwatch runs without a store"), "without a store"),
        (PostNotFoundError(["<!channel>"]), "&lt;!channel&gt;"),  # told, and inert
    ],
    ids=["no-labeller", "no-store", "unknown-post"],
)
async def test_a_label_that_cannot_be_stored_is_explained_to_the_chooser(
    slack: FakeSlack, refuse: Exception | None, said: str
) -> None:
    labels = None if refuse is None else RecordingLabels(refuse)
    value = json.dumps(["kettlebird-20261116-130000", "1859431", "negative"])
    status, responses = await post_choice(slack, labels, value)
    assert status == 200
    [answer] = responses
    assert answer["text"].startswith("Not labelled: ") and said in answer["text"]
    assert "<!channel>" not in answer["text"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps(["kettlebird-20261116-130000", "1859431", "angry"]),
        json.dumps(["kettlebird-20261116-130000", "1859431"]),
        json.dumps(["", "1859431", "negative"]),
        json.dumps({"post": "1859431"}),
    ],
)
async def test_a_value_that_is_not_one_of_our_menus_is_ignored(
    slack: FakeSlack, value: str
) -> None:
    labels = RecordingLabels()
    status, responses = await post_choice(slack, labels, value)
    assert status == 200 and labels.calls == [] and responses == []


def test_a_rule_title_cannot_restyle_what_fired() -> None:
    """Rule titles are the operators', but the 'What fired' line folded them as no other
    block did: ``*b*`` stayed bold and a line break stayed one."""
    made = notice()
    alert = dataclasses.replace(made.incident.parts[0].latest, title="*b*\nforged line")
    part = dataclasses.replace(made.incident.parts[0], latest=alert)
    incident = dataclasses.replace(made.incident, parts=(part,))
    summary = summarize(incident, INCIDENTS + incident.id)
    fired = next(t for t in texts(blocks(summary, made)) if t.startswith("*What fired*"))
    assert f"{STAR}b{STAR} forged line" in fired and "*b*" not in fired
