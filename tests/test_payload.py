"""Payloads → mentions, and a precise reason for everything that is not one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from xwatch.errors import PayloadError
from xwatch.model import Mention
from xwatch.sources import payload
from xwatch.sources.payload import MAX_PAYLOAD_BYTES, _read, parse_payload


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
        # valid ISO 8601, but before year 1 or after 9999 once in UTC
        (
            dumps({"id": "1", "text": "x", "created_at": "0001-01-01T00:00:00+05:00"}),
            "bad_timestamp",
        ),
        (
            dumps({"id": "1", "text": "x", "created_at": "9999-12-31T23:59:59-05:00"}),
            "bad_timestamp",
        ),
        (
            dumps({"data": {"id": "1", "text": "x", "created_at": "0001-01-01T00:00:00+05:00"}}),
            "bad_timestamp",
        ),
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
        (  # a string is not a boolean: "false" must not read as a verified author
            dumps(
                {
                    "data": {
                        "id": "1",
                        "text": "x",
                        "created_at": "2026-11-16T09:00:00Z",
                        "author_id": "2",
                    },
                    "includes": {"users": [{"id": "2", "username": "sam", "verified": "false"}]},
                }
            ),
            "wrong_type",
        ),
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


def test_a_brand_named_twice_is_named_once() -> None:
    """Naming a brand 20,000 times in one post counted it 20,000 times."""
    post = {"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z"}
    [fast] = parse_payload(dumps({**post, "brands": ["kb"] * 500}), "t")
    [slow] = _read(json.dumps({**post, "brands": ["kb", "acme", "kb"]}), "t", ())
    assert (fast.brands, slow.brands) == (("kb",), ("kb", "acme"))


@pytest.mark.parametrize(
    "document",
    [
        {"id": "9" * 129, "text": "x", "created_at": "2026-11-16T09:00:00Z"},
        {"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z", "author": {"id": "a" * 200}},
        {
            "data": {
                "id": "1",
                "text": "x",
                "created_at": "2026-11-16T09:00:00Z",
                "author_id": "7" * 300,
            }
        },
    ],
)
def test_an_id_longer_than_any_is_refused(document: dict[str, object]) -> None:
    """The deduplicator keeps 200,000 ids: ids of 250 KiB would take 48 GiB."""
    with pytest.raises(PayloadError) as caught:
        parse_payload(dumps(document), "t")
    assert caught.value.reason == "wrong_type"
    assert "at most 128 characters" in caught.value.detail


def test_a_payload_that_breaks_the_parser_is_unreadable_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(value: str, name: str) -> object:
        raise ArithmeticError("a case the parser did not foresee")

    monkeypatch.setattr(payload, "_time_of", broken)
    with pytest.raises(PayloadError) as caught:
        parse_payload(dumps({"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z"}), "t")
    assert caught.value.reason == "unreadable"
    assert "ArithmeticError" in caught.value.detail
    assert any(r.exc_info and "broke the parser" in r.getMessage() for r in caplog.records)


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


# Every valid post is decoded the fast way (msgspec, into typed records), and whatever that
# refuses is read the long way (``_read``), which says what is wrong. The fast way must
# accept nothing the long way refuses, and read what it accepts to the same mention.

_ANY = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def _mostly(right: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Nine times in ten a value of the right type, else anything."""
    return st.integers(0, 9).flatmap(lambda draw: right if draw else _ANY)


_COUNT = _mostly(st.integers(min_value=-2, max_value=50) | st.sampled_from([2**63, 2**64]))


def _fields(
    required: dict[str, st.SearchStrategy[object]], optional: dict[str, st.SearchStrategy[object]]
) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(required, optional=optional)


_MENTION_DOCUMENTS = _fields(
    {
        "id": _mostly(st.text(max_size=4) | st.integers()),
        "text": _mostly(st.text(max_size=20)),
        "created_at": _mostly(
            st.sampled_from(
                ["2026-11-16T09:00:00Z", "2026-11-16T09:00:00.5+09:00", "2026-11-16 09:00", "soon"]
            )
        ),
    },
    {
        "lang": _mostly(st.sampled_from(["en", "ja", ""]) | st.none()),
        "url": _mostly(st.just("https://x.com/sam/status/1") | st.none()),
        "author": _mostly(
            _fields(
                {},
                {
                    "id": _mostly(st.text(max_size=3)),
                    "handle": _mostly(st.text(max_size=5) | st.none()),
                    "followers": _COUNT,
                    "verified": _mostly(st.booleans()),
                },
            )
        ),
        "metrics": _mostly(
            _fields({}, {key: _COUNT for key in ("likes", "reposts", "replies", "quotes")})
        ),
        "brands": _mostly(st.lists(st.text(max_size=4), max_size=3)),
        "extra": _ANY,
    },
)


def _outcome(read: Callable[[], list[Mention]]) -> list[Mention] | tuple[str, str]:
    try:
        return read()
    except PayloadError as exc:
        return (exc.reason, exc.detail)


_VALID = {"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z"}


@settings(max_examples=300)
@given(_MENTION_DOCUMENTS)
@example({**_VALID, "metrics": {"likes": -1}})
@example({**_VALID, "author": {"followers": 2**63}})
@example({**_VALID, "author": {"followers": 2**64}})
@example({**_VALID, "author": {"followers": True}})
@example({**_VALID, "author": {"id": ""}})
@example({**_VALID, "author": None})
@example({**_VALID, "id": 7})
@example({**_VALID, "id": ""})
@example({**_VALID, "lang": "", "url": None, "brands": []})
@example({**_VALID, "created_at": "2026-11-16T18:00:00+09:00"})
@example({**_VALID, "created_at": "2026-11-16 09:00"})
@example({**_VALID, "data": None})
def test_the_fast_way_reads_a_mention_as_the_long_way_does(document: dict[str, object]) -> None:
    raw = json.dumps(document).encode()
    fast = _outcome(lambda: parse_payload(raw, "fuzz", brands=("acme",)))
    assert fast == _outcome(lambda: _read(raw.decode(), "fuzz", ("acme",)))


def test_the_fast_way_reads_a_full_mention() -> None:
    raw = dumps(
        {
            "id": "7",
            "text": "hello",
            "created_at": "2026-11-16T18:00:00+09:00",
            "lang": "ja",
            "url": "https://x.com/sam/status/7",
            "author": {"id": "42", "handle": "sam", "followers": 340, "verified": True},
            "metrics": {"likes": 3, "reposts": 1, "replies": 2, "quotes": 4},
            "brands": ["acme"],
            "ignored": {"deep": [1, 2, {"x": None}]},
        }
    )
    [mention] = parse_payload(raw, "x")
    assert mention == _read(raw.decode(), "x", ())[0]
    assert mention.created_at == datetime(2026, 11, 16, 9, tzinfo=UTC)
    assert mention.created_at.tzinfo is UTC
    assert (mention.author.followers, mention.reach) == (340, 340 + 100 + 3 + 2 + 4)


def test_a_single_brand_is_read_the_long_way() -> None:
    raw = dumps({"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z", "brand": "acme"})
    assert [m.brands for m in parse_payload(raw, "x", brands=("other",))] == [("acme",)]
    with pytest.raises(PayloadError, match="brands: expected a list of strings"):
        parse_payload(raw.replace(b'"acme"', b"7"), "x")


def test_invalid_utf8_in_a_key_no_field_reads_is_still_refused() -> None:
    raw = dumps({"id": "1", "text": "x", "created_at": "2026-11-16T09:00:00Z"})[:-1]
    with pytest.raises(PayloadError) as caught:
        parse_payload(raw + b', "other": "\xff"}', "test")
    assert caught.value.reason == "invalid_utf8"
