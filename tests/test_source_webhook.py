"""POST /ingest through a real aiohttp server: signed, bounded, all-or-nothing batches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from xwatch.config import WebhookSourceConfig
from xwatch.model import Mention
from xwatch.sources.webhook import MissingSecretError, WebhookIngest, sign

SECRET = "s3cret-for-tests"
NOW = 1_800_000_000.0
LIMIT = 2048  # max_body_bytes in these tests


class FakeReport:
    """A ``SourceReport`` that records every call."""

    def __init__(self) -> None:
        self.received_from: list[str] = []
        self.rejections: list[tuple[str, str, str]] = []
        self.problems: list[tuple[str, str, str]] = []

    def received(self, source: str) -> None:
        self.received_from.append(source)

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.rejections.append((source, reason, detail))

    def connected(self, source: str, up: bool) -> None:
        raise AssertionError("a webhook has no connection to report")

    def reconnecting(self, source: str, delay_seconds: float, why: str) -> None:
        raise AssertionError("a webhook never reconnects")

    def problem(self, source: str, kind: str, detail: str) -> None:
        self.problems.append((source, kind, detail))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    json: dict[str, Any]


class Webhook:
    """A webhook on a real server; ``offer`` records batches, or refuses them when ``full``."""

    def __init__(self, *, full: bool = False) -> None:
        self.full = full
        self.batches: list[list[Mention]] = []
        self.report = FakeReport()
        config = WebhookSourceConfig(type="webhook", name="hook", max_body_bytes=LIMIT)
        environ = {"XWATCH_WEBHOOK_SECRET": SECRET}
        self.ingest = WebhookIngest(config, self.report, self.offer, environ=environ, now=self.now)

    def now(self) -> float:
        return NOW

    def offer(self, mentions: list[Mention]) -> bool:
        if self.full:
            return False
        self.batches.append(mentions)
        return True

    async def post(self, body: bytes | AsyncIterator[bytes], headers: dict[str, str]) -> Answer:
        app = web.Application()
        app.router.add_post("/ingest", self.ingest.handle)
        async with (
            TestClient(TestServer(app)) as client,
            client.post("/ingest", data=body, headers=headers) as response,
        ):
            return Answer(response.status, dict(response.headers), await response.json())

    async def post_signed(self, body: bytes, content_type: str = "application/json") -> Answer:
        return await self.post(body, signed(body, content_type=content_type))


def signed(
    body: bytes,
    *,
    at: float = NOW,
    secret: str = SECRET,
    content_type: str = "application/json",
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Xwatch-Timestamp": str(int(at)),
        "X-Xwatch-Signature": sign(secret.encode(), int(at), body),
    }


def mention(i: int = 1, text: str = "my kettlebird smokes") -> dict[str, Any]:
    return {"id": str(i), "text": text, "created_at": "2027-01-15T07:59:12Z", "brands": ["kb"]}


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def jsonl(*objs: object) -> bytes:
    return b"".join(dumps(o) + b"\n" for o in objs)


def x_v2_payload(post_id: str) -> dict[str, Any]:
    return {
        "data": {"id": post_id, "text": "@kettlebird help", "created_at": "2027-01-15T07:59:13Z"},
        "includes": {"users": []},
    }


# --- accepted ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_signed_single_mention_is_accepted_and_offered() -> None:
    hook = Webhook()
    answer = await hook.post_signed(dumps(mention(7)))
    assert answer.status == 202 and answer.json == {"accepted": 1}
    [[m]] = hook.batches
    assert m.id == "7" and m.source == "hook" and m.brands == ("kb",)
    assert hook.report.received_from == ["hook"]
    assert not hook.report.rejections and not hook.report.problems


@pytest.mark.asyncio
async def test_json_array_batch_with_an_x_v2_payload() -> None:
    hook = Webhook()
    answer = await hook.post_signed(dumps([mention(1), mention(2), x_v2_payload("3")]))
    assert answer.status == 202 and answer.json == {"accepted": 3}
    assert [m.id for m in hook.batches[0]] == ["1", "2", "3"]
    assert hook.report.received_from == ["hook"] * 3


@pytest.mark.asyncio
@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/json"])
async def test_json_lines_batch_by_content_type_or_by_newlines(content_type: str) -> None:
    hook = Webhook()
    body = jsonl(mention(1), mention(2)) + b"\n" + jsonl(mention(3))  # a blank line is fine
    answer = await hook.post_signed(body, content_type)
    assert answer.status == 202 and answer.json == {"accepted": 3}
    assert len(hook.batches) == 1 and [m.id for m in hook.batches[0]] == ["1", "2", "3"]


@pytest.mark.asyncio
async def test_body_of_exactly_the_limit_is_accepted() -> None:
    body = dumps(mention(1, text=""))
    body = dumps(mention(1, text="x" * (LIMIT - len(body))))
    assert len(body) == LIMIT
    answer = await Webhook().post_signed(body)
    assert answer.status == 202


@pytest.mark.asyncio
async def test_timestamp_inside_the_tolerance_is_accepted() -> None:
    body = dumps(mention())
    answer = await Webhook().post(body, signed(body, at=NOW - 299))
    assert answer.status == 202


@pytest.mark.asyncio
async def test_hostile_text_is_kept_as_data() -> None:
    hook = Webhook()
    hostile = '<!channel> <script>alert("x")</script> &amp; *bold* `code`'
    answer = await hook.post_signed(dumps(mention(text=hostile)))
    assert answer.status == 202
    assert hook.batches[0][0].text == hostile  # escaping is the notifiers' job


# --- unauthorized: nothing is read or ingested -------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ({}, "X-Xwatch-Timestamp is missing"),
        ({"X-Xwatch-Timestamp": str(int(NOW))}, "X-Xwatch-Signature is missing"),
        ({"X-Xwatch-Timestamp": "soon", "X-Xwatch-Signature": "sha256=" + "0" * 64}, "unix"),
        ({"X-Xwatch-Timestamp": str(int(NOW)), "X-Xwatch-Signature": "md5=abc"}, "sha256=<hex>"),
    ],
)
async def test_unsigned_or_malformed_headers_are_unauthorized(
    sent: dict[str, str], why: str
) -> None:
    hook = Webhook()
    answer = await hook.post(dumps(mention()), sent)
    assert answer.status == 401 and answer.json["error"] == "unauthorized"
    assert why in answer.json["detail"]
    assert hook.batches == [] and hook.report.received_from == []
    assert [(kind, why in detail) for _, kind, detail in hook.report.problems] == [
        ("unauthorized", True)
    ]


@pytest.mark.asyncio
async def test_wrong_secret_is_unauthorized() -> None:
    hook = Webhook()
    body = dumps(mention())
    answer = await hook.post(body, signed(body, secret="guessed"))
    assert answer.status == 401 and answer.json["detail"] == "signature does not match"
    assert hook.batches == []


@pytest.mark.asyncio
async def test_signature_over_a_different_body_is_unauthorized() -> None:
    hook = Webhook()
    headers = signed(dumps(mention(1)))
    answer = await hook.post(dumps(mention(666)), headers)
    assert answer.status == 401 and hook.batches == []


@pytest.mark.asyncio
async def test_signature_for_another_timestamp_is_unauthorized() -> None:
    hook = Webhook()
    body = dumps(mention())
    headers = signed(body) | {"X-Xwatch-Timestamp": str(int(NOW) + 1)}
    answer = await hook.post(body, headers)
    assert answer.status == 401 and hook.batches == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("shift", "when"), [(-360, "old"), (360, "in the future")])
async def test_stale_or_future_timestamp_is_unauthorized(shift: int, when: str) -> None:
    hook = Webhook()
    body = dumps(mention())
    answer = await hook.post(body, signed(body, at=NOW + shift))  # correctly signed
    assert answer.status == 401 and f"360 s {when}" in answer.json["detail"]
    assert hook.batches == []


# --- too large ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_oversized_body_with_content_length_is_413() -> None:
    hook = Webhook()
    body = dumps([mention(i) for i in range(50)])
    assert len(body) > LIMIT
    answer = await hook.post_signed(body)
    assert answer.status == 413 and answer.json["error"] == "too_large"
    assert hook.batches == []
    assert answer.json["detail"] == f"Content-Length {len(body)} exceeds {LIMIT} bytes"
    assert [reason for _, reason, _ in hook.report.rejections] == ["too_large"]


@pytest.mark.asyncio
async def test_oversized_chunked_body_is_413() -> None:
    hook = Webhook()
    body = jsonl(*[mention(i) for i in range(50)])
    assert len(body) > LIMIT

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    answer = await hook.post(stream(), signed(body, content_type="application/x-ndjson"))
    assert answer.status == 413 and hook.batches == []
    assert answer.json["detail"] == f"the body exceeds {LIMIT} bytes"  # found while reading


@pytest.mark.asyncio
async def test_small_chunked_body_is_accepted() -> None:
    hook = Webhook()
    body = jsonl(mention(1), mention(2))

    async def stream() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    answer = await hook.post(stream(), signed(body))
    assert answer.status == 202 and answer.json == {"accepted": 2}


# --- malformed: 400, nothing from the request is ingested --------------------------


@pytest.mark.asyncio
async def test_malformed_json_line_names_the_line() -> None:
    hook = Webhook()
    body = jsonl(mention(1)) + b'{"id": "2", "text": \n' + jsonl(mention(3))
    answer = await hook.post_signed(body, "application/x-ndjson")
    assert answer.status == 400
    assert answer.json["error"] == "not_json" and answer.json["where"] == "line 2"
    assert hook.batches == [] and hook.report.received_from == []
    [(source, reason, detail)] = hook.report.rejections
    assert (source, reason) == ("hook", "not_json") and detail.startswith("line 2: ")


@pytest.mark.asyncio
async def test_malformed_line_found_without_the_ndjson_content_type() -> None:
    hook = Webhook()
    body = jsonl(mention(1), mention(2)) + b"{oops}\n"
    answer = await hook.post_signed(body)
    assert answer.status == 400 and answer.json["where"] == "line 3"
    assert hook.batches == []


@pytest.mark.asyncio
async def test_malformed_single_document_says_where() -> None:
    hook = Webhook()
    answer = await hook.post_signed(b'{\n  "id": "1",\n  "text": oops\n}')
    assert answer.status == 400 and answer.json["error"] == "not_json"
    assert answer.json["where"] == "body" and "line 3" in answer.json["detail"]


@pytest.mark.asyncio
async def test_one_bad_item_in_a_batch_refuses_the_whole_batch() -> None:
    hook = Webhook()
    bad = mention(2)
    del bad["created_at"]
    answer = await hook.post_signed(dumps([mention(1), bad, mention(3)]))
    assert answer.status == 400
    assert answer.json == {
        "error": "missing_field",
        "where": "index 1",
        "detail": "created_at is missing",
    }
    assert hook.batches == [] and hook.report.received_from == []


@pytest.mark.asyncio
async def test_an_item_nested_too_deep_to_re_encode_is_refused_not_a_server_error() -> None:
    """orjson reads 1,024 levels but writes 254: an array item between the two (found by
    the fuzz test) is refused as too-deep JSON, with where it is."""
    hook = Webhook()
    deep = b"[" * 300 + b"]" * 300
    answer = await hook.post_signed(b"[" + dumps(mention(1)) + b"," + deep + b"]")
    assert answer.status == 400 and answer.json["error"] == "not_json"
    assert answer.json["where"] == "index 1" and hook.batches == []


@pytest.mark.asyncio
async def test_bad_line_in_a_json_lines_batch_refuses_the_whole_batch() -> None:
    hook = Webhook()
    body = jsonl(mention(1), {"id": "2", "text": 5, "created_at": "2027-01-15T07:59:12Z"})
    answer = await hook.post_signed(body, "application/x-ndjson")
    assert answer.status == 400 and answer.json["error"] == "wrong_type"
    assert answer.json["where"] == "line 2" and hook.batches == []


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"[]", b"", b"\n\n"])
async def test_empty_batch_is_400(body: bytes) -> None:
    hook = Webhook()
    answer = await hook.post_signed(body)
    assert answer.status == 400 and answer.json["error"] == "empty"
    assert hook.batches == []


# --- busy ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_full_queue_is_503_with_retry_after_and_nothing_ingested() -> None:
    hook = Webhook(full=True)
    answer = await hook.post_signed(dumps([mention(1), mention(2)]))
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert hook.batches == [] and hook.report.received_from == []
    assert [kind for _, kind, _ in hook.report.problems] == ["queue_full"]


# --- the secret ----------------------------------------------------------------------


@pytest.mark.parametrize("environ", [{}, {"XWATCH_WEBHOOK_SECRET": ""}])
def test_missing_secret_refuses_to_start(environ: dict[str, str]) -> None:
    config = WebhookSourceConfig(type="webhook", secret_env="XWATCH_WEBHOOK_SECRET")
    with pytest.raises(MissingSecretError, match="XWATCH_WEBHOOK_SECRET is not set"):
        WebhookIngest(config, FakeReport(), lambda mentions: True, environ=environ)


@pytest.mark.asyncio
async def test_the_secret_is_never_reported_or_shown() -> None:
    hook = Webhook()
    body = dumps(mention())
    await hook.post(body, signed(body, secret="guessed"))
    await hook.post(body, signed(body, at=NOW - 1000))
    reported = repr([hook.report.problems, hook.report.rejections, hook.ingest])
    assert SECRET not in reported and "s3cret" not in reported


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_sign_matches_the_documented_openssl_recipe() -> None:
    body = dumps(mention(text="kettle ünïcode <!channel>"))
    recipe = 'printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"'
    out = subprocess.run(
        ["sh", "-c", recipe + " | sed 's/^.*= //'"],
        env={
            "TS": "1800000000",
            "BODY": body.decode(),
            "SECRET": SECRET,
            "PATH": os.environ["PATH"],
        },
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    assert "sha256=" + out == sign(SECRET.encode(), 1800000000, body)
