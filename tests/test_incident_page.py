"""The incident page (``/incidents/<id>``), the list and the action forms.

``FakeDaemon`` implements ``Incidents`` and ``Actions`` in memory on a real
``IncidentBook``, so the states the pages show are the ones the daemon would reach.
The API tests (``test_incidents_api.py``) use it too.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.factories import T0, alert
from xwatch import web_incidents
from xwatch.alerting.incidents import (
    Change,
    Entry,
    Incident,
    IncidentBook,
    Policy,
    Silence,
    State,
    UnknownIncident,
)
from xwatch.alerting.service import DEFAULT_SILENCE, Action, Delivery, IncidentRecord
from xwatch.incident_page import (
    CONTENT_SECURITY_POLICY,
    render_incident,
    render_incident_list,
)
from xwatch.model import Alert, AlertEvent, Author, EventKind, Mention, Sentiment, Severity
from xwatch.playbooks import FrontMatter, Playbook, PlaybookIndex
from xwatch.web_incidents import action_token, add_incident_routes

SECRET = b"page-secret-for-the-tests"
API_TOKEN = "api-token-for-the-tests"
URL_BASE = "http://xwatch.test/incidents/"
FIRED_AT = T0 + timedelta(hours=13)

Client = TestClient[web.Request, web.Application]


class FakeDaemon:
    """``Incidents`` and ``Actions`` in memory, on a real ``IncidentBook``."""

    def __init__(self) -> None:
        self.book = IncidentBook(Policy())
        self.now = FIRED_AT + timedelta(minutes=5)  # the time people act at
        self.records: dict[str, Incident] = {}  # every incident, resolved ones too
        self.timelines: dict[str, list[Entry]] = {}
        self.deliveries: dict[str, list[Delivery]] = {}
        self.acts: list[tuple[str, Action, str, str, timedelta]] = []
        self._ids = itertools.count(1)

    def fire(self, fired: Alert) -> str:
        """Let ``fired`` fire; the id of its incident."""
        at = fired.signal.end
        changes = self.book.observe([AlertEvent(EventKind.FIRING, fired, at)], at)
        self._apply(changes)
        return changes[0].incident.id

    def _apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            incident = change.incident
            self.records[incident.id] = incident
            self.timelines.setdefault(incident.id, []).extend(change.entries)
            self.deliveries.setdefault(incident.id, []).extend(
                Delivery(n.id, n.channel, n.kind.value, "delivered", 1, "", n.at, n.at)
                for n in change.notices
            )

    # -- Incidents --

    async def incident(self, incident_id: str) -> IncidentRecord | None:
        found = self.records.get(incident_id)
        if found is None:
            return None
        return IncidentRecord(
            found, tuple(self.timelines[incident_id]), tuple(self.deliveries[incident_id])
        )

    async def incidents(
        self,
        *,
        state: str | None = None,
        brand: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Sequence[Incident]:
        found = [
            i
            for i in self.records.values()
            if (state is None or (state == "open" and i.is_open) or i.state.value == state)
            and (brand is None or i.brand == brand)
        ]
        ordered = sorted(found, key=lambda i: (i.opened_at, i.id), reverse=True)
        if before is not None:
            ids = [i.id for i in ordered]
            ordered = ordered[ids.index(before) + 1 :] if before in ids else []
        return ordered[:limit]

    async def silences(self) -> Sequence[Silence]:
        return tuple(self.book.silences.values())

    async def add_silence(
        self,
        *,
        who: str,
        ends_at: datetime,
        brand: str = "",
        rules: tuple[str, ...] = (),
        labels: tuple[tuple[str, str], ...] = (),
        comment: str = "",
    ) -> Silence:
        silence = Silence(
            f"silence-{next(self._ids)}", ends_at, self.now, who, comment, brand, rules, labels
        )
        self._apply(self.book.silence(silence, self.now))
        return silence

    async def remove_silence(self, silence_id: str, who: str) -> bool:
        if silence_id not in self.book.silences:
            return False
        self._apply(self.book.unsilence(silence_id, who, self.now))
        return True

    # -- Actions --

    async def act(
        self,
        incident_id: str,
        action: Action,
        who: str,
        *,
        via: str,
        silence_for: timedelta = DEFAULT_SILENCE,
    ) -> Incident:
        if action == "acknowledge":
            changes = self.book.acknowledge(incident_id, who, self.now)
        elif action == "resolve":
            changes = self.book.resolve(incident_id, who, self.now)
        elif action == "escalate":
            changes = self.book.escalate(incident_id, who, self.now)
        else:
            silence_id = f"silence-{next(self._ids)}"
            changes = self.book.silence_incident(
                incident_id, who, self.now, silence_for, silence_id
            )[1]
        self.acts.append((incident_id, action, who, via, silence_for))
        self._apply(changes)
        if incident_id not in self.records:
            raise UnknownIncident(incident_id)
        return self.records[incident_id]


PLAYBOOK_BODY = """# Customer complaint wave

Answer within **30 minutes**.

## First hour

| Step | Who |
|---|---|
| Call the support lead | incident lead |
"""


def playbook(body: str = PLAYBOOK_BODY, playbook_id: str = "complaint-wave") -> Playbook:
    meta = FrontMatter(
        id=playbook_id,
        title="Customer complaint wave",
        crisis_type="complaint_wave",
        severity=Severity.WARNING,
        owner="Head of Support",
        first_response_minutes=30,
    )
    return Playbook(meta, body, Path(f"playbooks/{playbook_id}.md"))


def app_for(
    daemon: FakeDaemon,
    *,
    token: str | None = API_TOKEN,
    playbooks: tuple[Playbook, ...] = (),
) -> web.Application:
    index = PlaybookIndex({p.id: p for p in playbooks or (playbook(),)})
    app = web.Application()
    add_incident_routes(
        app,
        incidents=daemon,
        actions=daemon,
        playbooks=lambda: index,
        api_token=token,
        page_secret=SECRET,
        incident_url_base=URL_BASE,
        token_env="XWATCH_API_TOKEN",
    )
    return app


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as client:
        yield client


def post(
    text: str, *, url: str | None, key: str, handle: str = "", followers: int = 1000
) -> Mention:
    return Mention(
        id=f"post-{key}",
        text=text,
        created_at=FIRED_AT - timedelta(seconds=30),
        source="test",
        author=Author(id=f"user-{key}", handle=handle or f"user_{key}", followers=followers),
        url=url,
        brands=("kettlebird",),
        sentiment=Sentiment("negative", -0.8),
    )


async def page_of(client: Client, incident_id: str) -> str:
    async with client.get(f"/incidents/{incident_id}") as response:
        assert response.status == 200
        return await response.text()


async def act_by_form(
    client: Client, incident_id: str, action: str, *, who: str = "@maria", token: str | None = None
) -> tuple[int, str, str]:
    """POST the page's form; the status, the Location header and the body."""
    form = {"who": who, "token": action_token(SECRET, incident_id) if token is None else token}
    async with client.post(
        f"/incidents/{incident_id}/{action}", data=form, allow_redirects=False
    ) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


# -- the page -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_page_shows_the_state_the_numbers_the_posts_the_chart_and_the_playbook() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with (
        serving(app_for(daemon)) as client,
        client.get(f"/incidents/{incident_id}") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        page = await response.text()
    assert (
        "script" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    )
    assert "<script" not in page.lower()
    # state and headline
    assert '<span class="state state-firing">firing</span>' in page
    assert "[CRITICAL] kettlebird: negative share 41% (usual 9%)" in page
    # the numbers: every part, the negative share now against usual, the terms
    assert "negative share up at 5m: negative share 41% (usual 9%, band 4%-16%)" in page
    assert "Negative share: <b>41%</b> now, usually 9%" in page
    assert "<b>exploded</b>, <b>refund</b>" in page
    # the posts with the most reach, most first, linked with a safe rel
    assert page.index("@user_a") < page.index("@user_b") < page.index("@user_c")
    assert "120,000 followers" in page
    assert '<a href="https://x.com/user_a/status/a" rel="noopener noreferrer nofollow">' in page
    # the chart, the timeline and the deliveries
    assert f'<img class="chart" src="/incidents/{incident_id}/chart.png"' in page
    assert "<td>opened</td>" in page
    assert "<td>console</td><td>opened</td><td>delivered</td><td>1</td>" in page
    # the playbook, rendered from Markdown (a table too)
    assert "<h2>Playbook: Customer complaint wave</h2>" in page
    assert "<h2>First hour</h2>" in page and "<strong>30 minutes</strong>" in page
    assert "<td>Call the support lead</td>" in page
    # the actions, posting with the incident's token
    assert f'<input type="hidden" name="token" value="{action_token(SECRET, incident_id)}">' in page
    for action, label in [
        ("acknowledge", "Acknowledge"),
        ("silence", "Silence 1h"),
        ("resolve", "Resolve"),
        ("escalate", "Escalate"),
    ]:
        assert f'formaction="/incidents/{incident_id}/{action}">{label}</button>' in page
    assert 'name="who" required' in page
    assert f"{URL_BASE}{incident_id}" in page  # the permalink


@pytest.mark.asyncio
async def test_the_chart_is_a_png_and_a_404_without_history() -> None:
    daemon = FakeDaemon()
    charted = daemon.fire(alert(at=FIRED_AT))
    plain = daemon.fire(alert(at=FIRED_AT, brand="otherbrand", history_points=0))
    async with serving(app_for(daemon)) as client:
        async with client.get(f"/incidents/{charted}/chart.png") as response:
            assert response.status == 200
            assert response.content_type == "image/png"
            assert (await response.read()).startswith(b"\x89PNG\r\n\x1a\n")
        async with client.get(f"/incidents/{plain}/chart.png") as response:
            assert response.status == 404
        async with client.get("/incidents/nope/chart.png") as response:
            assert response.status == 404
        assert "chart.png" not in await page_of(client, plain)


@pytest.mark.asyncio
async def test_an_unknown_incident_is_a_404_page_with_the_same_headers() -> None:
    async with (
        serving(app_for(FakeDaemon())) as client,
        client.get("/incidents/%3Cscript%3Ex") as response,
    ):
        assert response.status == 404
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        text = await response.text()
    assert "No incident &lt;script&gt;x." in text and "<script" not in text


def test_hostile_posts_are_escaped_and_their_bad_links_dropped() -> None:
    hostile = (
        post("<script>alert(1)</script>", url="javascript:alert(1)", key="a", followers=9000),
        post("<img src=x onerror=alert(2)>", url=" javascript:alert(3)", key="b"),
        post("quote \" and ' here", url='https://x.com/a" onmouseover="alert(4)', key="c"),
        post("ok", url="data:text/html,<b>x</b>", key="d", handle='"><svg onload=alert(5)>'),
        post("bidi \u202eevil\u202c and\nnewline", url=None, key="e"),
    )
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT, posts=hostile))
    record = daemon.records[incident_id]
    page = render_incident(
        IncidentRecord(record, (), ()),
        playbook(),
        incident_url=URL_BASE + incident_id,
        action_token="t",
    )
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<svg" not in page and "&quot;&gt;&lt;svg onload=alert(5)&gt;" in page
    assert "javascript:" not in page  # neither linked nor shown
    assert "data:text/html" not in page
    assert ' onmouseover="' not in page
    assert 'href="https://x.com/a&quot; onmouseover=&quot;alert(4)"' in page
    assert "quote &quot; and &#x27; here" in page
    assert "\u202e" not in page and "bidi evil and newline" in page
    # every link on the page is a path of this site or an http(s) URL
    for href in re.findall(r'href="([^"]*)"', page):
        assert href.startswith(("/", "http://", "https://")), href


def test_a_playbook_cannot_add_markup_or_script_links() -> None:
    body = (
        "# Steps\n\n<script>alert(1)</script>\n\n"
        '<iframe src="https://evil.example"></iframe>\n\n'
        "Say <b onclick=alert(2)>this</b>. [click](javascript:alert(3)) "
        "[ok](https://status.example.com)\n"
    )
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    page = render_incident(
        IncidentRecord(daemon.records[incident_id], (), ()),
        playbook(body),
        incident_url=URL_BASE + incident_id,
        action_token="t",
    )
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<iframe" not in page and "&lt;iframe" in page
    assert "<b onclick" not in page and "&lt;b onclick=alert(2)&gt;" in page
    assert 'href="javascript' not in page
    assert '<a href="https://status.example.com">ok</a>' in page  # Markdown still works


@pytest.mark.asyncio
async def test_without_its_playbook_the_page_links_the_playbook_url() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    other = playbook(playbook_id="service-outage")
    async with serving(app_for(daemon, playbooks=(other,))) as client:
        page = await page_of(client, incident_id)
    assert (
        '<a href="http://127.0.0.1:9464/playbooks/complaint-wave" '
        'rel="noopener noreferrer nofollow">Customer complaint wave</a>'
    ) in page
    assert "not loaded in this daemon" in page


# -- the forms ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "state", "said"),
    [
        ("acknowledge", State.ACKNOWLEDGED, "acknowledged by @maria"),
        ("silence", State.SILENCED, "silenced by @maria until 2026-11-16 14:05 UTC"),
        ("resolve", State.RESOLVED, "resolved by @maria"),
        ("escalate", State.FIRING, "escalated by @maria"),
    ],
)
async def test_a_form_with_the_token_acts_and_redirects_to_the_page(
    action: str, state: State, said: str
) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        status, location, _ = await act_by_form(client, incident_id, action)
        assert (status, location) == (303, f"/incidents/{incident_id}")
        page = await page_of(client, incident_id)
    assert daemon.acts == [(incident_id, action, "@maria", "page", timedelta(hours=1))]
    assert daemon.records[incident_id].state is state
    assert f'<span class="state state-{state.value}">' in page
    assert f"<td>{said}</td><td>@maria</td>" in page  # in the timeline, with who did it
    if state is State.RESOLVED:
        assert "<form" not in page and "nothing left to do" in page
    else:
        assert '<form class="actions" method="post"' in page


@pytest.mark.asyncio
async def test_once_acknowledged_the_acknowledge_button_is_disabled() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        await act_by_form(client, incident_id, "acknowledge")
        page = await page_of(client, incident_id)
    assert '<button type="submit" disabled>Acknowledged</button>' in page
    assert f'formaction="/incidents/{incident_id}/acknowledge"' not in page
    assert "Resolve</button>" in page


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token",
    ["", "0" * 64, action_token(SECRET, "kettlebird-20261116-125959"), "ünïcode"],
)
async def test_a_form_without_the_right_token_is_refused(token: str) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        status, _, body = await act_by_form(client, incident_id, "resolve", token=token)
        async with client.post(
            f"/incidents/{incident_id}/resolve", data={"who": "x"}, allow_redirects=False
        ) as response:
            assert response.status == 403  # no token at all
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert status == 403 and "Refused" in body
    assert daemon.acts == []
    assert daemon.records[incident_id].state is State.FIRING


@pytest.mark.asyncio
async def test_acting_on_a_resolved_or_unknown_incident_is_a_409() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        assert (await act_by_form(client, incident_id, "resolve"))[0] == 303
        status, _, body = await act_by_form(client, incident_id, "acknowledge")
        assert status == 409 and "resolved already" in body
        assert (await act_by_form(client, "kettlebird-19990101-000000", "escalate"))[0] == 409
    assert daemon.records[incident_id].state is State.RESOLVED
    assert daemon.records[incident_id].acknowledged_by == ""


@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["", "   ", "x" * 81])
async def test_a_form_needs_a_name(who: str) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        status, _, body = await act_by_form(client, incident_id, "acknowledge", who=who)
    assert status == 400 and "Please give your name" in body
    assert daemon.acts == []


@pytest.mark.asyncio
async def test_a_hostile_name_is_escaped_on_the_page() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        await act_by_form(client, incident_id, "acknowledge", who="<script>alert(1)</script>")
        page = await page_of(client, incident_id)
    assert daemon.records[incident_id].acknowledged_by == "<script>alert(1)</script>"
    assert "<script" not in page.lower()
    assert "acknowledged by &lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- the list -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_list_shows_open_incidents_first_then_newest_first() -> None:
    daemon = FakeDaemon()
    old_open = daemon.fire(alert(at=FIRED_AT, brand="alpha"))
    resolved = daemon.fire(alert(at=FIRED_AT + timedelta(hours=2), brand="beta"))
    new_open = daemon.fire(alert(at=FIRED_AT + timedelta(hours=1), brand="gamma"))
    await daemon.act(resolved, "resolve", "@maria", via="test")
    async with serving(app_for(daemon)) as client, client.get("/incidents/") as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        page = await response.text()
    links = re.findall(r'<a href="/incidents/([^"]+)">', page)
    assert links == [new_open, old_open, resolved]
    assert '<span class="state state-resolved">resolved</span>' in page
    assert "<script" not in page.lower()


@pytest.mark.asyncio
async def test_open_incidents_past_a_page_are_one_link_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The list showed the newest 500 open incidents and said nothing of the others."""
    monkeypatch.setattr(web_incidents, "MAX_LIMIT", 2)
    monkeypatch.setattr(web_incidents, "DEFAULT_LIMIT", 1)
    daemon = FakeDaemon()
    opened = [daemon.fire(alert(at=FIRED_AT + timedelta(hours=i), brand=f"b{i}")) for i in range(3)]
    async with serving(app_for(daemon)) as client:
        async with client.get("/incidents/") as response:
            first = await response.text()
        more = re.findall(r'<a href="(/incidents/\?before=[^"]+)">More open', first)
        assert len(more) == 1
        async with client.get(html.unescape(more[0])) as response:
            assert response.status == 200
            second = await response.text()
    listed = re.compile(r'<a href="/incidents/([^"?]+)">')
    assert listed.findall(first) == [opened[2], opened[1]]
    assert listed.findall(second) == [opened[0]] and "More open" not in second


def test_an_empty_list_says_so() -> None:
    assert "No incidents yet." in render_incident_list([])
