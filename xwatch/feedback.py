"""Feedback: people label an alert's sample posts, and xwatch keeps a training set.

An alert shows the posts behind it (``Alert.bucket.samples``). Someone on the team
who reads one and says "that is not negative" (or "yes, negative") has produced the
most valuable data xwatch can get: a labelled mention from the brand's own stream.
This module is the part of that loop that neither HTTP nor Slack owns:

* ``RecentSamples`` remembers the sample posts of recent alerts (a bounded number,
  the oldest forgotten first), so that a label can name a post by its id alone;
* ``parse_label_requests`` checks a JSON body (one object or a list), naming the
  field and the item of the first problem;
* ``Feedback.resolve`` turns requests into rows for the store (the text and lang
  looked up from the remembered post unless the request gives them), and
  ``Feedback.submit`` / ``Feedback.label_post`` store them: the JSON API
  (``xwatch.web``) calls ``submit``; a post's label menu in Slack
  (``xwatch.alerting.slack``) calls ``SampleLabels.label_sample``, which the daemon
  answers with ``label_post`` and the incident's own sample posts, so that a message
  from before a restart (when nothing is remembered) can still be labelled.

Labels are ``negative``, ``not_negative``, ``neutral`` and ``positive``; in the
training set ``not_negative`` becomes ``neutral`` (``xwatch.store.TRAIN_LABEL``).
Texts are kept as data, exactly as posted (mentions, HTML, SQL, control characters
included): they go to SQLite as bound parameters and out as JSON strings.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from xwatch.config import ApiConfig
from xwatch.errors import ConfigError, Problem
from xwatch.model import AlertEvent, Mention
from xwatch.sentiment.lang import guess_lang
from xwatch.store import LABELS, TRAIN_LABEL, LabelDraft, Store, StoredLabel

__all__ = [
    "LABELS",
    "TRAIN_LABEL",
    "Feedback",
    "LabelInputError",
    "LabelRequest",
    "LabelsUnavailable",
    "PostNotFoundError",
    "RecentSamples",
    "SampleLabels",
    "SamplePost",
    "api_token",
    "parse_label_requests",
]

SOURCES = ("api", "slack")
MAX_ITEMS = 500  # labels in one request
MAX_TEXT_CHARS = 25_000  # an X post is at most 25,000 characters (long posts)
MAX_NAME_CHARS = 200  # post_id, who, alert
MIN_TOKEN_CHARS = 16
FIELDS = ("post_id", "label", "who", "text", "lang", "alert")
_LANG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")


class LabelInputError(ValueError):
    """A label request is malformed: ``field`` names what is wrong, ``where`` the item."""

    def __init__(self, field: str, detail: str, where: str = "") -> None:
        super().__init__(f"{where}: {field}: {detail}" if where else f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.where = where


class PostNotFoundError(LookupError):
    """A label names a post that is not among the recent alerts' sample posts."""

    def __init__(self, post_ids: Sequence[str]) -> None:
        self.post_ids = list(post_ids)
        names = ", ".join(repr(p) for p in self.post_ids)
        super().__init__(
            f"post {names} is not among the sample posts of recent alerts "
            "(xwatch remembers a bounded number, and none across a restart); "
            'send its "text" with the label to store it anyway'
        )


class LabelsUnavailable(Exception):
    """No labels can be kept: the daemon runs without a store."""


class SampleLabels(Protocol):
    async def label_sample(
        self, incident_id: str, post_id: str, label: str, who: str
    ) -> StoredLabel:
        """Store ``who``'s label for ``post_id``, a sample post of incident ``incident_id``
        (source "slack"). Raises ``LabelsUnavailable`` (no store), ``PostNotFoundError``
        (neither remembered nor among the incident's samples), ``LabelInputError`` (a
        label or name that is not allowed) or ``xwatch.store.StoreError``."""
        ...


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """Someone's label for one post, as checked by ``parse_label_requests``."""

    post_id: str
    label: str  # one of LABELS
    who: str
    text: str | None = None  # None: look it up among the recent alerts' sample posts
    lang: str | None = None
    alert: str | None = None  # the alert's identity, when the client knows it


@dataclass(frozen=True, slots=True)
class SamplePost:
    """One of an alert's sample posts, remembered so it can be labelled by id."""

    post_id: str
    text: str
    lang: str  # '' when the source did not say
    alert: str  # the identity of the (latest) alert it was a sample of


class RecentSamples:
    """The sample posts of the latest alerts, at most ``capacity`` of them.

    A post seen again (a re-firing) moves to the newest end; past the capacity the
    oldest are forgotten. Memory is bounded by ``capacity`` times the longest post.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._posts: OrderedDict[str, SamplePost] = OrderedDict()

    def remember(self, event: AlertEvent) -> None:
        alert = event.alert
        for post in alert.bucket.samples:
            self._posts[post.id] = SamplePost(post.id, post.text, post.lang or "", alert.identity)
            self._posts.move_to_end(post.id)
        while len(self._posts) > self.capacity:
            self._posts.popitem(last=False)

    def get(self, post_id: str) -> SamplePost | None:
        return self._posts.get(post_id)

    def __len__(self) -> int:
        return len(self._posts)

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._posts


def parse_label_requests(body: object) -> list[LabelRequest]:
    """The label requests in a decoded JSON body: one object or a non-empty list of them.

    Raises ``LabelInputError`` naming the field (and, for a list, the item) of the first
    problem; a list is all or nothing.
    """
    if isinstance(body, list):
        if not body:
            raise LabelInputError("body", "the list is empty")
        if len(body) > MAX_ITEMS:
            raise LabelInputError("body", f"{len(body)} labels; at most {MAX_ITEMS} at once")
        return [_parse_one(item, f"item {i}") for i, item in enumerate(body, start=1)]
    return [_parse_one(body, "")]


def _parse_one(item: object, where: str) -> LabelRequest:
    if not isinstance(item, dict):
        raise LabelInputError("body", "expected a JSON object (or a list of them)", where)
    unknown = sorted(str(key) for key in item if key not in FIELDS)
    if unknown:
        raise LabelInputError(unknown[0], f"unknown field (expected {', '.join(FIELDS)})", where)
    post_id = _name(item, "post_id", where, required=True)
    who = _name(item, "who", where, required=True)
    label = item.get("label")
    if label not in LABELS:
        raise LabelInputError("label", f"must be one of {', '.join(LABELS)}", where)
    text = item.get("text")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise LabelInputError("text", "must be a non-empty string", where)
        if len(text) > MAX_TEXT_CHARS:
            raise LabelInputError("text", f"longer than {MAX_TEXT_CHARS} characters", where)
    lang = item.get("lang")
    if lang is not None:
        if not isinstance(lang, str) or not _LANG.fullmatch(lang.lower()):
            raise LabelInputError("lang", "must be a language tag such as en or ja", where)
        lang = lang.lower()
    alert = _name(item, "alert", where, required=False)
    return LabelRequest(post_id or "", str(label), who or "", text, lang, alert)


def _name(item: Mapping[str, object], field: str, where: str, *, required: bool) -> str | None:
    value = item.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise LabelInputError(field, "must be a non-empty string", where)
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise LabelInputError(
            field, f"must be printable and at most {MAX_NAME_CHARS} characters", where
        )
    return value.strip()


class Feedback:
    """Labels for alerts' sample posts: remembers the samples, resolves and stores labels."""

    def __init__(self, capacity: int = 5000) -> None:
        self.recent = RecentSamples(capacity)

    def remember(self, events: Iterable[AlertEvent]) -> None:
        for event in events:
            self.recent.remember(event)

    def resolve(self, requests: Sequence[LabelRequest], source: str) -> list[LabelDraft]:
        """The rows to store for these requests, or ``PostNotFoundError`` naming every post
        that is neither remembered nor given with its text, or ``LabelInputError`` for a
        remembered post given with another text (then nothing is stored)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        missing = [
            r.post_id for r in requests if r.text is None and self.recent.get(r.post_id) is None
        ]
        if missing:
            raise PostNotFoundError(list(dict.fromkeys(missing)))
        drafts = []
        for i, request in enumerate(requests, start=1):
            post = self.recent.get(request.post_id)
            if post is not None and request.text is not None and request.text != post.text:
                # the training set keeps one text per post: the label would replace what
                # was posted (and alerted on) with the text sent
                raise LabelInputError(
                    "text",
                    f"post {request.post_id!r} was alerted on with another text; "
                    "leave text out to label the post as it was posted",
                    f"item {i}" if len(requests) > 1 else "",
                )
            text = request.text
            if text is None:
                assert post is not None
                text = post.text
            known_lang = post.lang if post is not None and post.text == text else ""
            lang = request.lang or known_lang or guess_lang(text)
            alert = request.alert or (post.alert if post is not None else "")
            drafts.append(
                LabelDraft(request.post_id, text, request.label, source, request.who, lang, alert)
            )
        return drafts

    async def submit(
        self, store: Store, requests: Sequence[LabelRequest], source: str
    ) -> list[StoredLabel]:
        """Resolve and store these labels, all in one transaction (the write off the loop)."""
        drafts = self.resolve(requests, source)
        return await asyncio.to_thread(store.add_labels, drafts)

    async def label_post(
        self,
        store: Store,
        post_id: str,
        label: str,
        who: str,
        *,
        source: str = "slack",
        known: Iterable[tuple[Mention, str]] = (),
    ) -> StoredLabel:
        """One person's label for one post: what a post's label menu in Slack leads to.

        The post is looked up among the remembered samples, else in ``known`` (posts and
        the identity of the alert each was a sample of: an incident's, which outlive a
        restart). Raises ``LabelInputError`` for a label or name that is not allowed and
        ``PostNotFoundError`` for a post found in neither.
        """
        request = parse_label_requests({"post_id": post_id, "label": label, "who": who})[0]
        if self.recent.get(post_id) is None:
            for mention, alert in known:
                if mention.id == post_id:
                    lang = mention.lang if mention.lang and _LANG.fullmatch(mention.lang) else None
                    request = replace(request, text=mention.text, lang=lang, alert=alert)
                    break
        return (await self.submit(store, [request], source))[0]


def api_token(config: ApiConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API's bearer token from the environment; None (the API off) when unset.

    A token shorter than ``MIN_TOKEN_CHARS`` is refused: the daemon must not start.
    """
    token = environ.get(config.token_env, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        message = (
            f"{config.token_env} is shorter than {MIN_TOKEN_CHARS} characters; "
            "use a long random token (e.g. openssl rand -hex 32)"
        )
        raise ConfigError([Problem("environment", 0, message)])
    return token
