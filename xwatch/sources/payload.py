"""Turn one raw payload (bytes) into mentions, or say precisely why not.

Two shapes are accepted:

* xwatch's own mention JSON::

    {"id": "1", "text": "...", "created_at": "2026-11-16T09:00:12Z", "lang": "en",
     "author": {"id": "42", "handle": "sam", "followers": 340, "verified": false},
     "url": "https://x.com/sam/status/1", "brands": ["acme"],
     "metrics": {"likes": 3, "reposts": 0, "replies": 1, "quotes": 0}}

  (only ``id``, ``text`` and ``created_at`` are required);

* an X API v2 post payload ``{"data": {...} | [...], "includes": {"users": [...]}}``
  as the filtered stream and recent search return it.

Anything else raises ``PayloadError`` with a short reason (for metrics) and a detail
(for the log line).

Every live post goes through here, so a payload is read twice over only when it is
wrong. The common case, xwatch's own mention JSON with every field of the right type,
is decoded by msgspec straight into typed records (``_FastMention``: about half the
time of the long way, the ``Mention`` included). Anything that decoding refuses
(another shape, a wrong type, an X payload, bad JSON) is read again by ``_read``:
orjson, then field readers that name the field and what was found. ``_FastMention``
accepts nothing ``_read`` refuses and reads what it accepts to the same mention
(``tests/test_payload.py`` compares the two on generated documents and on the boundary
cases: negative and 64-bit counts, empty ids, nulls, ``data``).

orjson is stricter than the standard library, as RFC 8259 is: ``NaN`` and unpaired
surrogates (``"\\ud800"``, text no encoder can write back out) are ``not_json``
instead of values that break later; an integer beyond 64 bits is read as a float (so
it is no count).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson

from xwatch.errors import PayloadError
from xwatch.model import Author, Mention, utc

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_ID_CHARS = 128
"""An id (a post's, an author's) longer than this is refused: X's are 19 digits, and the
deduplicator keeps 200,000 of them (ids of 250 KiB would take 48 GiB)."""

log = logging.getLogger("xwatch.sources.payload")


def parse_payload(raw: bytes, source: str, *, brands: tuple[str, ...] = ()) -> list[Mention]:
    """Mentions in one payload (one JSON document); raises ``PayloadError``, and nothing
    else: a payload this module did not foresee is ``unreadable`` (logged with its
    traceback, to be fixed here), so that no payload can end the source that read it.

    ``brands`` go to the mentions whose payload names none (the MQTT source's brand
    from the topic).
    """
    try:
        return _parse(raw, source, brands)
    except PayloadError:
        raise
    except Exception as exc:
        log.exception(
            "a payload from %s broke the parser (%s); it is refused as unreadable",
            source,
            type(exc).__name__,
            extra={"event": "parser_error", "source": source},
        )
        raise PayloadError("unreadable", f"the parser failed: {type(exc).__name__}") from None


def _parse(raw: bytes, source: str, brands: tuple[str, ...]) -> list[Mention]:
    if not raw or raw.isspace():
        raise PayloadError("empty", "empty payload")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        fast = _FAST_DECODER.decode(text)
    except (msgspec.MsgspecError, RecursionError):  # msgspec's depth is the interpreter's
        return _read(text, source, brands)
    mention = fast.mention(source, brands)
    return [mention] if mention is not None else _read(text, source, brands)


def _read(text: str, source: str, brands: tuple[str, ...]) -> list[Mention]:
    """``parse_payload`` the long way, saying what is wrong."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:  # nested too deep, too: orjson stops at 1,024
        raise PayloadError("not_json", str(exc)[:200]) from None
    if not isinstance(document, dict):
        raise PayloadError("wrong_type", f"expected a JSON object, found {_kind(document)}")
    if "data" in document:
        return mentions_from_x(document, source, brands=brands)
    return [mention_from_json(document, source, brands=brands)]


def mention_from_json(
    obj: Mapping[str, Any], source: str, *, brands: tuple[str, ...] = ()
) -> Mention:
    author = obj.get("author", {})
    if not isinstance(author, dict):
        raise PayloadError("wrong_type", f"author: expected an object, found {_kind(author)}")
    metrics = obj.get("metrics", {})
    if not isinstance(metrics, dict):
        raise PayloadError("wrong_type", f"metrics: expected an object, found {_kind(metrics)}")
    named = obj.get("brands", [])
    if "brand" in obj:
        named = [obj["brand"]]
    if not isinstance(named, list) or not all(isinstance(b, str) for b in named):
        raise PayloadError("wrong_type", "brands: expected a list of strings")
    return Mention(
        id=_id(obj, "id"),
        text=_str(obj, "text", required=True),
        created_at=_time(obj, "created_at"),
        source=source,
        lang=_str(obj, "lang") or None,
        url=_str(obj, "url") or None,
        author=Author(
            id=_id(author, "id", "author.") if "id" in author else "",
            handle=_str(author, "handle", prefix="author."),
            followers=_count(author, "followers", "author."),
            verified=_bool(author, "verified", "author."),
        ),
        likes=_count(metrics, "likes", "metrics."),
        reposts=_count(metrics, "reposts", "metrics."),
        replies=_count(metrics, "replies", "metrics."),
        quotes=_count(metrics, "quotes", "metrics."),
        brands=tuple(dict.fromkeys(named)) or brands,  # a brand named twice is one
    )


def mentions_from_x(
    document: Mapping[str, Any], source: str, *, brands: tuple[str, ...] = ()
) -> list[Mention]:
    """Mentions in an X API v2 payload (``data`` one post or a list, ``includes.users``)."""
    data = document["data"]
    posts = data if isinstance(data, list) else [data]
    includes = document.get("includes", {})
    users_list = includes.get("users") if isinstance(includes, dict) else None
    users = {
        u["id"]: u
        for u in (users_list if isinstance(users_list, list) else [])
        if isinstance(u, dict) and isinstance(u.get("id"), str)
    }
    mentions = []
    for post in posts:
        if not isinstance(post, dict):
            raise PayloadError("wrong_type", f"data: expected objects, found {_kind(post)}")
        author_id = post.get("author_id")
        if author_id is not None and not isinstance(author_id, str):
            raise PayloadError(
                "wrong_type", f"data.author_id: expected a string, found {_kind(author_id)}"
            )
        if author_id is not None:
            _short_id(author_id, "data.author_id")
        user = users.get(author_id, {})
        handle = user.get("username", "") if isinstance(user.get("username"), str) else ""
        metrics = post.get("public_metrics", {})
        user_metrics = user.get("public_metrics", {})
        if not isinstance(metrics, dict) or not isinstance(user_metrics, dict):
            raise PayloadError("wrong_type", "public_metrics: expected an object")
        post_id = _id(post, "id", "data.")
        mentions.append(
            Mention(
                id=post_id,
                text=_str(post, "text", required=True, prefix="data."),
                created_at=_time(post, "created_at", "data."),
                source=source,
                lang=_str(post, "lang", prefix="data.") or None,
                url=f"https://x.com/{handle or 'i'}/status/{post_id}",
                author=Author(
                    id=author_id or "",
                    handle=handle,
                    followers=_count(user_metrics, "followers_count", "user."),
                    verified=_bool(user, "verified", "user."),
                ),
                likes=_count(metrics, "like_count", "public_metrics."),
                reposts=_count(metrics, "retweet_count", "public_metrics."),
                replies=_count(metrics, "reply_count", "public_metrics."),
                quotes=_count(metrics, "quote_count", "public_metrics."),
                brands=brands,
            )
        )
    return mentions


# --- field readers: each names the field and what was found ------------------------


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _id(obj: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = obj.get(key)
    if type(value) is str and 0 < len(value) <= MAX_ID_CHARS:
        return value
    if key not in obj:
        raise PayloadError("missing_field", f"{prefix}{key} is missing")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise PayloadError(
            "wrong_type", f"{prefix}{key}: expected a string id, found {_kind(value)}"
        )
    return _short_id(str(value), f"{prefix}{key}")


def _short_id(value: str, name: str) -> str:
    if len(value) > MAX_ID_CHARS:
        raise PayloadError(
            "wrong_type",
            f"{name}: expected an id of at most {MAX_ID_CHARS} characters, found {len(value):,}",
        )
    return value


def _str(obj: Mapping[str, Any], key: str, *, required: bool = False, prefix: str = "") -> str:
    value = obj.get(key)
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise PayloadError("missing_field", f"{prefix}{key} is missing")
        return ""
    if not isinstance(value, str):
        raise PayloadError("wrong_type", f"{prefix}{key}: expected a string, found {_kind(value)}")
    return value


def _count(obj: Mapping[str, Any], key: str, prefix: str = "") -> int:
    value = obj.get(key, 0)
    if type(value) is int and value >= 0:
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(
            "wrong_type", f"{prefix}{key}: expected a count >= 0, found {_kind(value)}"
        )
    return value


def _bool(obj: Mapping[str, Any], key: str, prefix: str = "") -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise PayloadError(
            "wrong_type", f"{prefix}{key}: expected true/false, found {_kind(value)}"
        )
    return value


def _time(obj: Mapping[str, Any], key: str, prefix: str = "") -> datetime:
    value = obj.get(key)
    if value is None:
        raise PayloadError("missing_field", f"{prefix}{key} is missing")
    if not isinstance(value, str):
        raise PayloadError(
            "bad_timestamp", f"{prefix}{key}: expected an ISO 8601 string, found {_kind(value)}"
        )
    return _time_of(value, f"{prefix}{key}")


def _time_of(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(
            "bad_timestamp", f"{name}: not an ISO 8601 time: {value[:40]!r}"
        ) from None
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return utc(parsed)
    except OverflowError:  # "0001-01-01T00:00:00+05:00" is before year 1 in UTC
        raise PayloadError(
            "bad_timestamp", f"{name}: out of the range of dates: {value[:40]!r}"
        ) from None


# --- the common case, decoded in one go ------------------------------------------------

# orjson reads integers up to 2**64 - 1 (and a larger one as a float, no count); msgspec
# bounds stop at 2**63 - 1, so a count beyond that is read the long way
_COUNT_MAX = 2**63 - 1
_Count = Annotated[int, msgspec.Meta(ge=0, le=_COUNT_MAX)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


class _FastAuthor(msgspec.Struct, frozen=True):
    id: _Id | msgspec.UnsetType = msgspec.UNSET
    handle: str | None = None
    followers: _Count | None = None
    verified: bool = False


class _FastMetrics(msgspec.Struct, frozen=True):
    likes: _Count | None = None
    reposts: _Count | None = None
    replies: _Count | None = None
    quotes: _Count | None = None


class _FastMention(msgspec.Struct, frozen=True):
    """xwatch's mention JSON with every field as ``mention_from_json`` wants it (other
    keys are ignored, as they are there); ``data`` and ``brand`` are left to ``_read``."""

    id: _Id
    text: str
    created_at: str
    lang: str | None = None
    url: str | None = None
    author: _FastAuthor = _FastAuthor()
    metrics: _FastMetrics = _FastMetrics()
    brands: list[str] = []
    brand: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET

    def mention(self, source: str, brands: tuple[str, ...]) -> Mention | None:
        """The mention ``mention_from_json`` makes of the same document (or its error:
        a bad ``created_at``); None for an X payload or a ``brand``: ``_read`` them."""
        if self.data is not msgspec.UNSET or self.brand is not msgspec.UNSET:
            return None
        author, metrics = self.author, self.metrics
        return Mention(
            id=self.id,
            text=self.text,
            created_at=_time_of(self.created_at, "created_at"),
            source=source,
            lang=self.lang or None,
            url=self.url or None,
            author=Author(
                id=author.id if author.id is not msgspec.UNSET else "",
                handle=author.handle or "",
                followers=author.followers or 0,
                verified=author.verified,
            ),
            likes=metrics.likes or 0,
            reposts=metrics.reposts or 0,
            replies=metrics.replies or 0,
            quotes=metrics.quotes or 0,
            brands=tuple(dict.fromkeys(self.brands)) or brands,
        )


_FAST_DECODER = msgspec.json.Decoder(_FastMention)
