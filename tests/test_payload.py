"""Payloads → mentions, and a precise reason for everything that is not one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xwatch.errors import PayloadError
from xwatch.sources.payload import MAX_PAYLOAD_BYTES, parse_payload


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_xwatch_mention_json() -> None:
    [m] = parse_payload(
        dumps(
            {
                "id": 123,
                "text": "kettle <!channel>",
                "created_at": "2026-11-16T09:00:12Z",
                "lang": "en",
                "author": {"id": "7", "handle": "sam", "followers": 340, "verified": True},
                "url": "https://x.com/sam/status/123",
                "brand": "kettlebird",
                "metrics": {"likes": 3, "reposts": 2, "replies": 1, "quotes": 0},
            }
        ),
        "mqtt",
    )
    assert m.id == "123" and m.source == "mqtt" and m.brands == ("kettlebird",)
    assert m.created_at == datetime(2026, 11, 16, 9, 0, 12, tzinfo=UTC)
    assert m.author.followers == 340 and m.author.verified
    assert m.reach == 340 + 2 * 100 + 3 + 1
    assert m.text == "kettle <!channel>"  # kept as data; escaping is the notifier's job


def test_x_api_v2_payload_with_includes() -> None:
    payload = {
        "data": {
            "id": "1859",
            "text": "@kettlebird my Aero smokes",
            "author_id": "42",
            "created_at": "2026-11-20T13:01:02.000Z",
            "lang": "en",
            "public_metrics": {
                "retweet_count": 5,
                "reply_count": 1,
                "like_count": 9,
                "quote_count": 0,
                "impression_count": 1000,
            },
        },
        "includes": {
            "users": [
                {
                    "id": "42",
                    "username": "techjo",
                    "verified": True,
                    "public_metrics": {"followers_count": 120000},
                }
            ]
        },
        "matching_rules": [{"id": "1", "tag": "kettlebird"}],
    }
    [m] = parse_payload(dumps(payload), "x")
    assert m.url == "https://x.com/techjo/status/1859"
    assert m.author.handle == "techjo" and m.author.followers == 120000 and m.author.verified
    assert m.reposts == 5 and m.likes == 9
    assert m.created_at == datetime(2026, 11, 20, 13, 1, 2, tzinfo=UTC)


def test_x_api_v2_list_payload() -> None:
    payload = {
        "data": [
            {"id": "1", "text": "a", "created_at": "2026-11-20T13:00:00Z", "author_id": "9"},
            {"id": "2", "text": "b", "created_at": "2026-11-20T13:00:01Z", "author_id": "9"},
        ]
    }
    assert [m.id for m in parse_payload(dumps(payload), "x")] == ["1", "2"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "too_large"),
        (b'{"id": "1", "text": "\xff\xfe"}', "invalid_utf8"),
        (b"{not json", "not_json"),
        # RFC 8259 has no NaN; an unpaired surrogate is text that no encoder can write
        # back out (the store, Slack, the logs)
        (b'{"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z", "x": NaN}', "not_json"),
        (b'{"id": "1", "text": "\\ud800", "created_at": "2026-11-16T09:00:00Z"}', "not_json"),
        # beyond 64 bits, a number is read as a float: not a count
        (
            dumps({"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z"})[:-1]
            + b', "author": {"followers": 1'
            + b"0" * 30
            + b"}}",
            "wrong_type",
        ),
        (b"[1, 2]", "wrong_type"),
        (dumps({"text": "x", "created_at": "2026-11-16T09:00:00Z"}), "missing_field"),
        (dumps({"id": "1", "created_at": "2026-11-16T09:00:00Z"}), "missing_field"),
        (dumps({"id": "1", "text": 5, "created_at": "2026-11-16T09:00:00Z"}), "wrong_type"),
        (dumps({"id": True, "text": "x", "created_at": "2026-11-16T09:00:00Z"}), "wrong_type"),
        (dumps({"id": "1", "text": "x", "created_at": "yesterday"}), "bad_timestamp"),
        (dumps({"id": "1", "text": "x", "created_at": 1700000000}), "bad_timestamp"),
        (
            dumps(
                {
                    "id": "1",
                    "text": "x",
                    "created_at": "2026-11-16T09:00:00Z",
                    "author": {"followers": -5},
                }
            ),
            "wrong_type",
        ),
        (
            dumps({"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z", "author": "sam"}),
            "wrong_type",
        ),
        (dumps({"data": ["nope"]}), "wrong_type"),
        (
            dumps(
                {
                    "data": {
                        "id": "1",
                        "text": "x",
                        "created_at": "2026-11-16T09:00:00Z",
                        "author_id": "2",
                        "public_metrics": [],
                    }
                }
            ),
            "wrong_type",
        ),
    ],
)
def test_bad_payloads_have_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(raw, "test")
    assert caught.value.reason == reason


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    deep = b"[" * 50_000 + b"]" * 50_000  # under the size limit, over the recursion limit
    with pytest.raises(PayloadError) as caught:
        parse_payload(deep, "test")
    assert caught.value.reason in {"not_json", "wrong_type"}


@given(st.binary(max_size=300))
def test_random_bytes_give_mentions_or_a_payload_error(raw: bytes) -> None:
    try:
        parse_payload(raw, "fuzz")
    except PayloadError as exc:
        assert exc.reason in PayloadError.REASONS


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "id",
                        "text",
                        "created_at",
                        "author",
                        "metrics",
                        "data",
                        "includes",
                        "users",
                        "brands",
                        "lang",
                    ]
                ),
                children,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_random_json_shapes_give_mentions_or_a_payload_error(obj: object) -> None:
    try:
        raw = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        parse_payload(raw, "fuzz")
    except PayloadError as exc:
        assert exc.reason in PayloadError.REASONS


@given(
    st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries(
                {
                    "id": st.text(min_size=1, max_size=5),
                    "text": st.text(max_size=20),
                    "created_at": st.just("2026-11-20T13:00:00Z"),
                    "author_id": st.none()
                    | st.integers()
                    | st.text(max_size=3)
                    | st.lists(st.integers()),
                    "public_metrics": st.dictionaries(
                        st.text(max_size=12), st.integers() | st.text()
                    ),
                }
            ),
            "includes": st.dictionaries(
                st.just("users"),
                st.integers()
                | st.lists(
                    st.dictionaries(
                        st.sampled_from(["id", "username", "verified", "public_metrics"]),
                        st.none() | st.integers() | st.text(max_size=3) | st.lists(st.integers()),
                    ),
                    max_size=3,
                ),
            ),
        }
    )
)
def test_x_payloads_with_wrong_types_give_a_payload_error(obj: dict[str, object]) -> None:
    try:
        parse_payload(json.dumps(obj).encode(), "fuzz")
    except PayloadError as exc:
        assert exc.reason in PayloadError.REASONS
