"""The incidents JSON API: listing, one incident, actions and silences, with its bearer token.

Served by ``xwatch.web_incidents`` over ``FakeDaemon`` (``test_incident_page.py``): a
real ``IncidentBook`` behind the ``Incidents`` and ``Actions`` interfaces.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import alert
from tests.test_incident_page import (
    API_TOKEN,
    FIRED_AT,
    URL_BASE,
    Client,
    FakeDaemon,
    app_for,
    serving,
)
from xwatch.alerting.codec import from_json
from xwatch.alerting.incidents import State
from xwatch.alerting.service import IncidentRecord

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def call(
    client: Client,
    method: str,
    path: str,
    body: object = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request with the API token (``body`` as JSON, or ``raw`` bytes); its status
    and its JSON answer."""
    async with client.request(method, path, json=body, data=raw, headers=AUTH) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def three_incidents(daemon: FakeDaemon) -> tuple[str, str, str]:
    """alpha (oldest, open), beta (resolved), gamma (newest, open)."""
    alpha = daemon.fire(alert(at=FIRED_AT, brand="alpha"))
    beta = daemon.fire(alert(at=FIRED_AT + timedelta(hours=1), brand="beta"))
    gamma = daemon.fire(alert(at=FIRED_AT + timedelta(hours=2), brand="gamma"))
    daemon.now = FIRED_AT + timedelta(hours=3)
    await daemon.act(beta, "resolve", "@maria", via="test")
    return alpha, beta, gamma


# -- the token ----------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/incidents"),
    ("GET", "/api/incidents/x"),
    ("POST", "/api/incidents/x/acknowledge"),
    ("GET", "/api/silences"),
    ("POST", "/api/silences"),
    ("DELETE", "/api/silences/x"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_without_a_configured_token_the_api_is_off(method: str, path: str) -> None:
    async with serving(app_for(FakeDaemon(), token=None)) as client:
        status, body = await call(client, method, path, {"who": "x"})
    assert status == 503
    assert body == {"error": "disabled", "detail": "the API is off: XWATCH_API_TOKEN is not set"}


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}],
)
async def test_a_missing_or_wrong_token_is_a_401(
    method: str, path: str, headers: dict[str, str]
) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with (
        serving(app_for(daemon)) as client,
        client.request(
            method, path.replace("/x", f"/{incident_id}"), json={"who": "x"}, headers=headers
        ) as response,
    ):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="xwatch"'
        assert (await response.json())["error"] == "unauthorized"
        assert API_TOKEN not in await response.text()
    assert daemon.acts == [] and not daemon.book.silences


@pytest.mark.asyncio
async def test_a_token_that_is_not_ascii_is_a_401_not_a_crash() -> None:
    """Header bytes are any bytes (aiohttp reads them as Latin-1 or with escapes): the
    token check must refuse them, not fail encoding them."""
    daemon = FakeDaemon()
    async with serving(app_for(daemon)) as client:
        host, port = client.server.host, client.server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"GET /api/incidents HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer \xff\xfe\xed\xa0\x80\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"401"


# -- reading incidents --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_list_is_newest_first_with_what_each_incident_is() -> None:
    daemon = FakeDaemon()
    alpha, beta, gamma = await three_incidents(daemon)
    async with serving(app_for(daemon)) as client:
        status, body = await call(client, "GET", "/api/incidents")
    assert status == 200
    assert [i["id"] for i in body["incidents"]] == [gamma, beta, alpha]
    first = body["incidents"][0]
    assert first == {
        "id": gamma,
        "brand": "gamma",
        "state": "firing",
        "severity": "critical",
        "title": "Negative share spike",
        "opened_at": "2026-11-16T15:00:00+00:00",
        "updated_at": "2026-11-16T15:00:00+00:00",
        "resolved_at": None,
        "acknowledged_by": "",
        "escalated_at": None,
        "url": URL_BASE + gamma,
        "parts": [
            {
                "rule_id": "negative-share-spike",
                "title": "Negative share spike",
                "severity": "critical",
                "what": "negative share up at 5m: negative share 41% (usual 9%, band 4%-16%)",
                "likelihood": 0.99999,
                "scale": "5m",
                "since": "2026-11-16T15:00:00+00:00",
                "status": "firing",
            }
        ],
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=open", ["gamma", "alpha"]),
        ("state=resolved", ["beta"]),
        ("state=firing&brand=alpha", ["alpha"]),
        ("brand=beta", ["beta"]),
        ("limit=1", ["gamma"]),
        ("state=acknowledged", []),
    ],
)
async def test_the_list_filters(query: str, expected: list[str]) -> None:
    daemon = FakeDaemon()
    await three_incidents(daemon)
    async with serving(app_for(daemon)) as client:
        status, body = await call(client, "GET", f"/api/incidents?{query}")
    assert status == 200
    assert [i["brand"] for i in body["incidents"]] == expected


@pytest.mark.asyncio
async def test_the_list_pages_on_with_next_as_before() -> None:
    """The list stopped at 500 (the largest limit), with no way to the others: past 500
    open incidents, the oldest could not be listed at all."""
    daemon = FakeDaemon()
    alpha, beta, gamma = await three_incidents(daemon)
    seen: list[str] = []
    before = ""
    async with serving(app_for(daemon)) as client:
        for _ in range(4):
            status, body = await call(client, "GET", f"/api/incidents?limit=1{before}")
            assert status == 200
            seen.extend(i["id"] for i in body["incidents"])
            if body["next"] is None:
                break
            before = f"&before={body['next']}"
        status, body = await call(client, "GET", f"/api/incidents?limit=2&before={beta}")
    assert seen == [gamma, beta, alpha]
    assert [i["id"] for i in body["incidents"]] == [alpha] and body["next"] is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("before=a%20b", "before"),
        ("state=burning", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("brand=a%20b", "brand"),
    ],
)
async def test_bad_list_parameters_are_a_400_naming_them(query: str, field: str) -> None:
    async with serving(app_for(FakeDaemon())) as client:
        status, body = await call(client, "GET", f"/api/incidents?{query}")
    assert status == 400
    assert body["error"] == "invalid" and body["field"] == field and body["detail"]


@pytest.mark.asyncio
async def test_one_incident_comes_with_its_timeline_and_deliveries() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    await daemon.act(incident_id, "acknowledge", "@maria", via="slack")
    record = await daemon.incident(incident_id)
    async with serving(app_for(daemon)) as client:
        status, body = await call(client, "GET", f"/api/incidents/{incident_id}")
        missing = await call(client, "GET", "/api/incidents/nope")
    assert status == 200
    assert body["url"] == URL_BASE + incident_id
    assert [e["kind"] for e in body["timeline"]] == ["opened", "acknowledged"]
    assert [d["kind"] for d in body["deliveries"]] == ["opened", "acknowledged"]
    # the whole record, as the store's codec reads it back
    kept = {key: body[key] for key in ("incident", "timeline", "deliveries")}
    assert from_json(IncidentRecord, kept) == record
    assert missing == (404, {"error": "unknown_incident", "detail": "no incident 'nope'"})


# -- acting -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_acknowledge_then_resolve_then_a_409() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    path = f"/api/incidents/{incident_id}"
    async with serving(app_for(daemon)) as client:
        status, body = await call(client, "POST", f"{path}/acknowledge", {"who": "@maria"})
        assert status == 200
        assert body["incident"]["state"] == "acknowledged"
        assert body["incident"]["acknowledged_by"] == "@maria"
        status, body = await call(client, "POST", f"{path}/resolve", {"who": "@ops"})
        assert (status, body["incident"]["state"]) == (200, "resolved")
        status, body = await call(client, "POST", f"{path}/escalate", {"who": "@ops"})
        assert (status, body["error"]) == (409, "not_open")
        status, body = await call(client, "POST", "/api/incidents/nope/escalate", {"who": "@ops"})
        assert (status, body["error"]) == (404, "unknown_incident")
    assert [(a[1], a[2], a[3]) for a in daemon.acts] == [
        ("acknowledge", "@maria", "api"),
        ("resolve", "@ops", "api"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "minutes"), [({"who": "@maria"}, 60), ({"who": "m", "minutes": 90}, 90)]
)
async def test_silence_for_some_minutes(body: dict[str, Any], minutes: int) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        status, answer = await call(client, "POST", f"/api/incidents/{incident_id}/silence", body)
    assert status == 200 and answer["incident"]["state"] == "silenced"
    assert daemon.acts[0][4] == timedelta(minutes=minutes)
    (silence,) = daemon.book.silences.values()
    assert silence.ends_at == daemon.now + timedelta(minutes=minutes)
    assert silence.brand == "kettlebird" and silence.rules == ("negative-share-spike",)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("acknowledge", b"not json", "body"),
        ("acknowledge", b"", "body"),
        ("acknowledge", b"[" * 100_000 + b"]" * 100_000, "body"),  # deeper than the stack
        ("acknowledge", b'{"who": "m\\ud800"}', "body"),  # a lone surrogate: no text
        ("acknowledge", b'["@maria"]', "body"),
        ("acknowledge", b"{}", "who"),
        ("acknowledge", b'{"who": ""}', "who"),
        ("acknowledge", b'{"who": 7}', "who"),
        ("acknowledge", b'{"who": "m", "minutes": 5}', "minutes"),  # only for silence
        ("resolve", b'{"who": "m", "because": "x"}', "because"),
        ("silence", b'{"who": "m", "minutes": 0}', "minutes"),
        ("silence", b'{"who": "m", "minutes": 43201}', "minutes"),
        ("silence", b'{"who": "m", "minutes": "60"}', "minutes"),
        ("silence", b'{"who": "m", "minutes": true}', "minutes"),
        ("silence", b'{"who": "m", "minutes": 1.5}', "minutes"),
    ],
)
async def test_a_bad_action_body_is_a_400_naming_the_field(
    action: str, body: bytes, field: str
) -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT))
    async with serving(app_for(daemon)) as client:
        status, answer = await call(
            client, "POST", f"/api/incidents/{incident_id}/{action}", raw=body
        )
    assert status == 400
    assert answer["error"] == "invalid" and answer["field"] == field and answer["detail"]
    assert daemon.acts == []


# -- silences -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_list_and_delete_a_silence() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT, labels=(("team", "pr"),)))
    async with serving(app_for(daemon)) as client:
        before = datetime.now(UTC)
        status, created = await call(
            client,
            "POST",
            "/api/silences",
            {"who": "@maria", "minutes": 120, "brand": "kettlebird", "comment": "known issue"},
        )
        after = datetime.now(UTC)
        assert status == 201
        silence = created["silence"]
        ends_at = datetime.fromisoformat(silence["ends_at"])
        assert before + timedelta(minutes=120) <= ends_at <= after + timedelta(minutes=120)
        assert (silence["who"], silence["brand"], silence["comment"]) == (
            "@maria",
            "kettlebird",
            "known issue",
        )
        assert daemon.records[incident_id].state is State.SILENCED  # the book applied it

        status, listed = await call(client, "GET", "/api/silences")
        assert status == 200 and listed == {"silences": [silence]}

        path = f"/api/silences/{silence['id']}"
        assert await call(client, "DELETE", f"{path}?who=%40ops") == (
            200,
            {"removed": silence["id"]},
        )
        assert daemon.records[incident_id].state is State.FIRING
        assert daemon.timelines[incident_id][-1].text == "silence removed by @ops"
        assert await call(client, "GET", "/api/silences") == (200, {"silences": []})
        status, missing = await call(client, "DELETE", f"{path}?who=ops")
        assert (status, missing["error"]) == (404, "unknown_silence")


@pytest.mark.asyncio
async def test_a_silence_by_rules_and_labels_until_a_time() -> None:
    daemon = FakeDaemon()
    incident_id = daemon.fire(alert(at=FIRED_AT, labels=(("team", "pr"),)))
    ends_at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    request = {
        "who": "@maria",
        "ends_at": ends_at.isoformat().replace("+00:00", "Z"),
        "rules": ["negative-share-spike"],
        "labels": {"team": "pr"},
    }
    async with serving(app_for(daemon)) as client:
        status, created = await call(client, "POST", "/api/silences", request)
        assert status == 201
        silence = created["silence"]
        assert datetime.fromisoformat(silence["ends_at"]) == ends_at
        assert silence["rules"] == ["negative-share-spike"]
        assert silence["labels"] == {"team": "pr"}
        assert silence["brand"] == ""
        assert daemon.records[incident_id].state is State.SILENCED
        # the silence expires on its own: the book drops it at its end
        daemon.book.advance(ends_at)
        assert await call(client, "GET", "/api/silences") == (200, {"silences": []})
        # a body can name who removes it, too
        again = dict(request, labels={"team": "other"})
        status, created = await call(client, "POST", "/api/silences", again)
        assert status == 201
        path = f"/api/silences/{created['silence']['id']}"
        assert (await call(client, "DELETE", path, {"who": "@ops"}))[0] == 200
        assert (await call(client, "DELETE", f"{path}?who=ops"))[0] == 404


@pytest.mark.asyncio
async def test_deleting_a_silence_needs_who() -> None:
    daemon = FakeDaemon()
    async with serving(app_for(daemon)) as client:
        _, created = await call(
            client, "POST", "/api/silences", {"who": "m", "minutes": 5, "brand": "b"}
        )
        status, body = await call(client, "DELETE", f"/api/silences/{created['silence']['id']}")
    assert (status, body["field"]) == (400, "who")
    assert len(daemon.book.silences) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"minutes": 60, "brand": "b"}, "who"),
        ({"who": "m", "brand": "b"}, "minutes"),  # neither minutes nor ends_at
        ({"who": "m", "minutes": 60, "ends_at": "2099-01-01T00:00:00Z", "brand": "b"}, "minutes"),
        ({"who": "m", "minutes": 60}, "brand, rules, labels"),  # matches nothing
        (
            {"who": "m", "minutes": 60, "brand": "", "rules": [], "labels": {}},
            "brand, rules, labels",
        ),
        ({"who": "m", "ends_at": "2020-01-01T00:00:00Z", "brand": "b"}, "ends_at"),
        ({"who": "m", "ends_at": "2099-01-01T00:00:00", "brand": "b"}, "ends_at"),  # no zone
        ({"who": "m", "ends_at": "tomorrow", "brand": "b"}, "ends_at"),
        ({"who": "m", "ends_at": "2099-01-01T00:00:00Z", "brand": "b"}, "ends_at"),  # > 30 days
        ({"who": "m", "ends_at": 1767225600, "brand": "b"}, "ends_at"),
        # after year 9999, or before year 1, once in UTC
        ({"who": "m", "ends_at": "9999-12-31T23:59:59-05:00", "brand": "b"}, "ends_at"),
        ({"who": "m", "ends_at": "0001-01-01T00:00:00+05:00", "brand": "b"}, "ends_at"),
        ({"who": "m", "minutes": 60, "brand": "a b"}, "brand"),
        ({"who": "m", "minutes": 60, "brand": ["b"]}, "brand"),
        ({"who": "m", "minutes": 60, "rules": "r"}, "rules"),
        ({"who": "m", "minutes": 60, "rules": ["ok", ""]}, "rules"),
        ({"who": "m", "minutes": 60, "rules": ["ok", 3]}, "rules[1]"),
        ({"who": "m", "minutes": 60, "labels": [["team", "pr"]]}, "labels"),
        ({"who": "m", "minutes": 60, "labels": {"team": 3}}, "labels.team"),
        ({"who": "m", "minutes": 60, "brand": "b", "comment": "x" * 501}, "comment"),
        ({"who": "m", "minutes": 60, "brnad": "b"}, "brnad"),
    ],
)
async def test_a_bad_silence_is_a_400_naming_the_field(body: dict[str, Any], field: str) -> None:
    daemon = FakeDaemon()
    async with serving(app_for(daemon)) as client:
        status, answer = await call(client, "POST", "/api/silences", body)
    assert status == 400
    assert answer["error"] == "invalid" and answer["field"] == field and answer["detail"]
    assert not daemon.book.silences
