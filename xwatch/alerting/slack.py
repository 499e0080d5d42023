"""The Slack notifier: one Block Kit message per incident, kept up to date, and its buttons.

``SlackNotifier.send`` posts the first notice of an incident as one message in the
configured channel (headline, what fired at which time scale, observed against
expected with the likelihood, the negative share against its usual level, the
emerging terms, the posts with the most reach, the playbook and incident links, and
the buttons Acknowledge / Silence 1h / Resolve / Escalate), remembers where it went
(``MessageRefs``: channel id and ts) and uploads the incident's chart into its
thread. Every later notice edits that message to show the incident as it is now
(no buttons once it is resolved) and says what happened in a short thread reply;
reminders and escalations are also broadcast to the channel. Each message carries
the incident id: in its text, in its buttons and in its ``metadata``.

Each post shown carries a "Label this post" menu (negative / not negative) when the
daemon keeps labels (``labels``: it has a store): what the team says of a post the
scorer got wrong becomes training data (``xwatch.feedback``).

``SlackActions`` answers the buttons at ``POST /slack/actions``: it checks Slack's
signature (signing secret, timestamp within 5 minutes), turns the click into
``Actions.act`` (or a label choice into ``SampleLabels.label_sample``) and answers
within Slack's 3 seconds whatever happens. A label is acknowledged to the person who
chose it alone, by an ephemeral message through the click's ``response_url``.

Safety and limits:

* Post texts, handles and terms are untrusted (a handle that looks like X's is shown
  as it is: letters, digits and ``_`` are harmless). ``escape_mrkdwn`` escapes ``&``,
  ``<`` and ``>`` as Slack's docs ask (so ``<!channel>``, ``<@U123>`` and
  ``<https://evil|bank>`` stay text), and ``escape_untrusted`` also swaps mrkdwn's
  formatting characters (``* _ ~ `` ``) for look-alikes and folds the text onto one
  line, so a post cannot break out of its quote or restyle the message. Slack has
  no backslash escape; look-alikes are the usual way round.
* Slack's limits (150 characters in a header, 3,000 in a section, 2,000 in a field
  or a button value, 150 in a menu option's value, 50 blocks) are met by cutting text
  short, never by failing: a message has at most 15 blocks by construction, and a post
  whose id would not fit a menu option's value is shown without the menu.

Errors become the outbox's two kinds (``xwatch.alerting``): HTTP 429 is a
``TemporaryFailure`` carrying Retry-After; 5xx, network errors and timeouts are
temporary; Slack's ``ok: false`` errors are permanent (``channel_not_found``,
``invalid_auth``, ``token_revoked``, ``invalid_blocks``...: retrying will not help)
except the few Slack documents as passing (``internal_error``, ``fatal_error``,
``service_unavailable``, ``request_timeout``). The client runs **without**
slack-sdk's own retry handlers: the durable outbox already retries with backoff
and honours Retry-After, and two layers of retries would multiply the attempts
(and could post a message twice).

The chart goes up after the message, without holding the notices behind it: ``send``
returns once the message is posted, and the chart is drawn (about 0.15 s of CPU) and
uploaded into its thread by a task of its own. When several incidents open at once,
each message goes out without waiting for the charts of the ones before it. A failed
chart upload never fails the notice (the message is out; a retry would post it twice):
it is logged and skipped. A chart still under way when the process stops is not
uploaded; ``charts_uploaded`` waits for those under way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import aiohttp
import orjson
from aiohttp import web
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from xwatch import logs
from xwatch.alerting import MessageRefs, PermanentFailure, TemporaryFailure, env_secret
from xwatch.alerting.chart import incident_chart
from xwatch.alerting.incidents import Incident, Notice, NoticeKind, State, UnknownIncident
from xwatch.alerting.service import Action, Actions
from xwatch.alerting.summary import (
    PartLine,
    Post,
    Summary,
    notice_line,
    share_when,
    summarize,
)
from xwatch.config import SlackNotifierConfig
from xwatch.feedback import LabelInputError, LabelsUnavailable, PostNotFoundError, SampleLabels
from xwatch.store import StoreError

log = logging.getLogger("xwatch.alerting.slack")

# Slack's Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks)
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
BUTTON_VALUE_CHARS = 2000
FALLBACK_CHARS = 3000  # the message's `text`: what notifications and screen readers show
# What one post, term or handle may take before escaping (escaping at most quintuples it)
POST_CHARS = 500
TERM_CHARS = 50
HANDLE_CHARS = 50
MAX_POSTS = 5

ACTIONS_PATH = "/slack/actions"
ACTION_IDS: dict[str, Action] = {
    "xwatch_acknowledge": "acknowledge",
    "xwatch_silence_1h": "silence",
    "xwatch_resolve": "resolve",
    "xwatch_escalate": "escalate",
}
LABEL_ACTION = "xwatch_label"
LABEL_CHOICES = {"negative": "Negative", "not_negative": "Not negative"}
"""A post's label menu: the label stored, and what the menu shows."""
OPTION_VALUE_CHARS = 150  # a menu option's value (Slack's limit)
RESPONSE_SECONDS = 5.0  # an ephemeral answer through a click's response_url
SILENCE_FOR = timedelta(hours=1)
REPLAY_WINDOW_SECONDS = 2 * 5 * 60  # a signature's timestamp is valid 5 minutes either way
MAX_SEEN = 10_000  # signatures remembered against replays (the oldest forgotten first)
METADATA_EVENT = "xwatch_incident"
BROADCAST = frozenset({NoticeKind.REMINDER, NoticeKind.ESCALATED})

# ok=false errors Slack documents as passing; every other error will not fix itself
PASSING_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# chat.update on a message someone deleted: post a new one instead
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})

SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}
STATE_EMOJI = {  # an incident's state, or a part's status
    "firing": ":red_circle:",
    "acknowledged": ":eyes:",
    "muted": ":white_circle:",
    "silenced": ":no_bell:",
    "resolved": ":white_check_mark:",
}
X_HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")  # X's handles: shown as they are
LOOKALIKES = str.maketrans({"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"})


# -- escaping and cutting short ------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters, so that no ``<...>`` mention or link forms."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_untrusted(text: str, limit: int = POST_CHARS) -> str:
    """Untrusted text (a post, a handle, a term) as one inert line of mrkdwn: cut to
    ``limit`` characters, on one line (a newline would end a quote), formatting
    characters swapped for look-alikes, control characters escaped."""
    one_line = " ".join(text.split())
    return escape_mrkdwn(clip(one_line, limit).translate(LOOKALIKES))


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped mrkdwn in at most ``limit`` characters, never cut inside an ``&amp;``
    entity or a ``<url|label>`` link (a half link would show raw or break the block)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    cut = re.sub(r"&[a-z]{0,3}$", "", cut)
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut.rstrip() + "…"


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to an http(s) URL, or just the (escaped) label for anything else."""
    if not url or not url.startswith(("https://", "http://")):
        return label
    return f"<{escape_mrkdwn(url).replace('|', '%7C')}|{label}>"


def lines_within(title: str, lines: list[str], more: str, limit: int = SECTION_CHARS) -> str:
    """``title``, then as many whole ``lines`` as fit in ``limit`` characters, then
    "…and N more <more>" for the rest (room for it is kept at every step)."""
    kept = [title]
    for i, line in enumerate(lines):
        rest = len(lines) - i - 1
        tail = len(f"\n…and {rest} more {more}") if rest else 0
        if len("\n".join([*kept, line])) + tail > limit:
            kept.append(f"…and {len(lines) - i} more {more}")
            break
        kept.append(line)
    return clip_mrkdwn("\n".join(kept), limit)


# -- the message -------------------------------------------------------------------------


def blocks(summary: Summary, notice: Notice, *, labels: bool = False) -> list[dict[str, Any]]:
    """The message's Block Kit blocks for the incident as it is now (pure: no I/O).

    At most 15 blocks: header, headline, facts, what fired, negative share, terms,
    the posts' title and up to 5 posts, links, buttons, and the latest notice.
    ``labels``: each post has a menu to label it (``label_menu``), whatever the state
    (a post is worth labelling after the incident is resolved too).
    """
    emoji = SEVERITY_EMOJI.get(summary.severity, "")
    header = f"{summary.severity.upper()}: {summary.title} ({summary.brand})"
    incident = link(summary.incident_url, escape_mrkdwn(summary.incident_id))
    out: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(clip(header, HEADER_CHARS))},
        _section(f"{emoji} {escape_untrusted(summary.headline, HEADER_CHARS)}"),
        {
            "type": "section",
            "fields": [
                _field(f"*Brand*\n{escape_mrkdwn(summary.brand)}"),
                _field(f"*State*\n{_state(summary)}"),
                _field(f"*Incident*\n{incident}"),
                _field(f"*Opened*\n{summary.opened_at:%Y-%m-%d %H:%M} UTC"),
            ],
        },
        _section(lines_within("*What fired*", [_part_line(p) for p in summary.parts], "alerts")),
    ]
    if summary.negative_share is not None and summary.usual_share is not None:
        share, usual = summary.negative_share, summary.usual_share
        when = share_when(summary)
        out.append(_section(f"*Negative share* {share:.0%} {when}, usual {usual:.0%}"))
    if summary.terms:
        terms = " · ".join(f"`{escape_untrusted(t, TERM_CHARS)}`" for t in summary.terms)
        out.append(_section(f"*Emerging terms* {terms}"))
    posts = summary.posts[:MAX_POSTS]
    if posts:
        out.append(_section(f"*Posts with the most reach* ({len(posts)})"))
        for post in posts:
            section = _section(_post(post))
            menu = label_menu(summary.incident_id, post.id) if labels else None
            if menu is not None:
                section["accessory"] = menu
            out.append(section)
    playbook_label = f":book: Playbook: {escape_mrkdwn(summary.playbook_title)}"
    playbook = link(summary.playbook_url, playbook_label)
    out.append(_section(f"{playbook}    {link(summary.incident_url, ':mag: Incident page')}"))
    buttons = _buttons(summary)
    if buttons:
        out.append({"type": "actions", "block_id": "xwatch_actions", "elements": buttons})
    latest = f"{notice_line(notice)} · xwatch incident {summary.incident_id}"
    out.append({"type": "context", "elements": [_field(escape_untrusted(latest, FIELD_CHARS))]})
    return out


def fallback_text(summary: Summary) -> str:
    """The message's ``text``: notifications, screen readers, clients without blocks."""
    text = (
        f"{escape_untrusted(summary.headline, HEADER_CHARS)} "
        f"({escape_untrusted(summary.status_line, HEADER_CHARS)})"
    )
    return clip_mrkdwn(f"{text} · incident {escape_mrkdwn(summary.incident_id)}", FALLBACK_CHARS)


def metadata(summary: Summary) -> dict[str, Any]:
    """Message metadata: lets anything reading the channel recognise the incident."""
    return {
        "event_type": METADATA_EVENT,
        "event_payload": {
            "incident_id": summary.incident_id,
            "brand": summary.brand,
            "severity": summary.severity,
            "state": summary.state,
        },
    }


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(clip_mrkdwn(text, SECTION_CHARS))}


def _field(text: str) -> dict[str, Any]:
    """A section field or a context element (both at most 2,000 characters)."""
    return _mrkdwn(clip_mrkdwn(text, FIELD_CHARS))


def _state(summary: Summary) -> str:
    emoji = STATE_EMOJI.get(summary.state, "")
    # a status names people (who acknowledged): their names are anyone's text
    return f"{emoji} {escape_untrusted(summary.status_line, HEADER_CHARS)}".strip()


def _part_line(part: PartLine) -> str:
    emoji = STATE_EMOJI.get(part.status, "")
    return (
        f"{emoji} *{part.severity}* {escape_untrusted(part.title, HEADER_CHARS)} — "
        f"{escape_untrusted(part.what, SECTION_CHARS // 5)}, "
        f"likelihood {part.likelihood:.5f} ({part.status})"
    )


def _post(post: Post) -> str:
    handle = f"@{post.handle}"
    if not X_HANDLE.fullmatch(post.handle):  # not a handle X would give: treat as any text
        handle = escape_untrusted(handle, HANDLE_CHARS)
    facts = [f"{post.followers:,} followers"]
    if post.sentiment:
        facts.append(escape_untrusted(post.sentiment, 20))
    facts.append(f"{post.created_at:%H:%M} UTC")
    return f"*{link(post.url, handle)}* · {' · '.join(facts)}\n>{escape_untrusted(post.text)}"


def label_menu(incident_id: str, post_id: str) -> dict[str, Any] | None:
    """A post's "Label this post" menu; None when its ids do not fit an option's value.

    Each option's value is the JSON ``[incident id, post id, label]``: the click names the
    post itself (the posts shown change order as an incident grows) and the incident
    whose samples hold its text (``SampleLabels.label_sample``)."""
    options = []
    for label, shown in LABEL_CHOICES.items():
        value = orjson.dumps([incident_id, post_id, label]).decode()
        if len(value) > OPTION_VALUE_CHARS:
            return None
        options.append({"text": _plain(shown), "value": value})
    return {
        "type": "static_select",
        "action_id": LABEL_ACTION,
        "placeholder": _plain("Label this post"),
        "options": options,
    }


def _buttons(summary: Summary) -> list[dict[str, Any]]:
    """The action buttons for the incident's state: none once it is resolved."""
    if summary.state == State.RESOLVED.value:
        return []
    value = summary.incident_id[:BUTTON_VALUE_CHARS]
    wanted = [
        ("xwatch_acknowledge", "Acknowledge", "primary", not summary.acknowledged),
        ("xwatch_silence_1h", "Silence 1h", "", summary.state != State.SILENCED.value),
        ("xwatch_resolve", "Resolve", "", True),
        ("xwatch_escalate", "Escalate", "danger", True),
    ]
    buttons = []
    for action_id, label, style, show in wanted:
        if not show:
            continue
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": _plain(label),
            "value": value,
        }
        if style:
            button["style"] = style
        buttons.append(button)
    return buttons


# -- sending -------------------------------------------------------------------------------


class SlackNotifier:
    def __init__(
        self,
        config: SlackNotifierConfig,
        name: str,
        token: str,
        incident_url_base: str,
        refs: MessageRefs,
        *,
        labels: bool = False,
    ) -> None:
        self.config = config
        self.name = name
        self.labels = labels  # posts get a label menu: the daemon keeps labels (a store)
        self.incident_url_base = incident_url_base
        self.refs = refs
        self.client = AsyncWebClient(
            token=token,
            base_url=config.api_url,
            timeout=max(1, math.ceil(config.timeout_seconds)),
            retry_handlers=[],  # the outbox retries (see the module's docstring)
        )
        self._charts: set[asyncio.Task[None]] = set()  # uploads under way, after messages

    @classmethod
    def from_config(
        cls,
        name: str,
        config: SlackNotifierConfig,
        *,
        refs: MessageRefs,
        incident_url_base: str,
        labels: bool = False,
        env: Mapping[str, str] = os.environ,
    ) -> SlackNotifier:
        """The notifier with its bot token from the environment variable the config names;
        ``labels``: show each post's label menu (the daemon has a store to keep labels)."""
        token = env_secret(
            env,
            config.token_env,
            f": the Slack notifier {name!r} needs a bot token (xoxb-...) with the chat:write "
            "and files:write scopes",
        )
        return cls(config, name, token.strip(), incident_url_base, refs, labels=labels)

    def incident_url(self, incident_id: str) -> str:
        return self.incident_url_base + quote(incident_id, safe="")

    async def charts_uploaded(self) -> None:
        """Wait until the charts under way are uploaded (or have failed, logged)."""
        while self._charts:
            await asyncio.gather(*self._charts)

    async def send(self, notice: Notice) -> None:
        summary = summarize(notice.incident, self.incident_url(notice.incident.id))
        try:
            await self._deliver(notice, summary)
        except SlackApiError as exc:
            failure = _failure(exc)
            if isinstance(failure, PermanentFailure):
                log.error(
                    "slack notice %s failed for good: %s",
                    notice.id,
                    failure,
                    extra={"event": "slack_failed", "channel": self.name},
                )
            raise failure from exc
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TemporaryFailure(f"slack: {type(exc).__name__}: {exc}") from exc

    async def _deliver(self, notice: Notice, summary: Summary) -> None:
        ref = await self.refs.get(self.name, notice.incident.id)
        if ref is not None:
            try:
                await self._edit(ref, notice, summary)
            except SlackApiError as exc:
                if _error_code(exc) not in MESSAGE_GONE:
                    raise
                log.warning(
                    "the slack message of incident %s is gone (%s): posting a new one",
                    notice.incident.id,
                    _error_code(exc),
                    extra={"event": "slack_message_gone", "channel": self.name},
                )
            else:
                return
        await self._open(notice, summary)

    async def _open(self, notice: Notice, summary: Summary) -> None:
        """Post the incident's message, remember it, then put the chart in its thread."""
        response = await self.client.chat_postMessage(
            channel=self.config.channel,
            text=fallback_text(summary),
            blocks=blocks(summary, notice, labels=self.labels),
            metadata=metadata(summary),
            unfurl_links=False,
            unfurl_media=False,
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        await self.refs.put(
            self.name,
            notice.incident.id,
            {"channel": channel, "ts": ts, "shown": str(notice.incident.notices)},
        )
        if self.config.chart:  # after the message, not before the next notice
            upload = asyncio.create_task(self._upload_chart(notice.incident, channel, ts))
            self._charts.add(upload)
            upload.add_done_callback(self._charts.discard)

    async def _edit(self, ref: dict[str, str], notice: Notice, summary: Summary) -> None:
        """Show the incident as it is now in its message, and say what happened in the
        thread. A notice retried after a newer one was shown does not undo it."""
        channel, ts = ref["channel"], ref["ts"]
        shown = int(ref.get("shown", "0"))
        if notice.incident.notices >= shown:
            await self.client.chat_update(
                channel=channel,
                ts=ts,
                text=fallback_text(summary),
                blocks=blocks(summary, notice, labels=self.labels),
                metadata=metadata(summary),
            )
            await self.refs.put(
                self.name, notice.incident.id, {**ref, "shown": str(notice.incident.notices)}
            )
        await self.client.chat_postMessage(
            channel=channel,
            thread_ts=ts,
            text=escape_untrusted(notice_line(notice), SECTION_CHARS),
            reply_broadcast=notice.kind in BROADCAST,
            unfurl_links=False,
            unfurl_media=False,
        )

    async def _upload_chart(self, incident: Incident, channel: str, ts: str) -> None:
        """Best effort: the message is out, so a failure here is logged, never raised."""
        try:
            png = await asyncio.to_thread(incident_chart, incident)
            if png is None:
                return
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=ts,
                file=png,
                filename=f"{incident.id}.png",
                title=f"{incident.brand}: volume and negative share",
                alt_txt="Mention volume and negative share over the last hours, alert marked",
            )
        except Exception as exc:  # anything: the chart must never fail the notice
            log.warning(
                "slack chart upload failed for incident %s: %s: %s",
                incident.id,
                type(exc).__name__,
                exc,
                extra={"event": "slack_chart_failed", "channel": self.name},
            )


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _failure(exc: SlackApiError) -> TemporaryFailure | PermanentFailure:
    """A Slack API error as the outbox's kind of failure (see the module's docstring)."""
    response = exc.response
    status = int(getattr(response, "status_code", getattr(response, "status", 0)) or 0)
    error = _error_code(exc)
    api_url = str(getattr(response, "api_url", ""))
    where = f"slack {api_url.rsplit('/', 1)[-1] or 'api'}"
    if status == 429 or error == "ratelimited":
        headers = getattr(response, "headers", None) or {}
        return TemporaryFailure(f"{where}: rate limited", _seconds(headers.get("Retry-After")))
    if status >= 500 or error in PASSING_ERRORS:
        return TemporaryFailure(f"{where}: HTTP {status} {error}".rstrip())
    if error:
        return PermanentFailure(f"{where}: {error}")
    if 400 <= status < 500:
        return PermanentFailure(f"{where}: HTTP {status}")
    return TemporaryFailure(f"{where}: unexpected response (HTTP {status})")


def _seconds(value: object) -> float | None:
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# -- the buttons ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelChoice:
    """Someone chose a label in a post's menu (``label_menu``)."""

    incident_id: str
    post_id: str
    label: str
    response_url: str  # where Slack takes an answer to the person who chose (or "")


class SlackActions:
    """``POST /slack/actions``: Slack's interactive buttons, verified, turned into actions.

    Slack wants an answer within 3 seconds and shows an error for anything but 200,
    so: 401 for a forged or stale request, 400 for one that is not a Slack payload,
    and 200 otherwise, after at most ``answer_within`` seconds (an action still
    running then goes on in the background). An unknown incident is logged. A label
    chosen in a post's menu goes to ``labels`` (None: no labels are kept, and the
    person is told so), and the person who chose it is told what was stored.
    """

    def __init__(
        self,
        signing_secret: str,
        actions: Actions,
        *,
        labels: SampleLabels | None = None,
        answer_within: float = 2.0,
    ) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.actions = actions
        self.labels = labels
        self.answer_within = answer_within
        self._running: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[str, int] = OrderedDict()  # signatures answered, oldest first

    @classmethod
    def from_config(
        cls,
        config: SlackNotifierConfig,
        actions: Actions,
        labels: SampleLabels | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> SlackActions:
        secret = env_secret(
            env,
            config.signing_secret_env,
            ": Slack's buttons need the app's signing secret to verify their requests",
        )
        return cls(secret.strip(), actions, labels=labels)

    def routes(self, app: web.Application) -> None:
        app.router.add_post(ACTIONS_PATH, self.handle)

    def _first_time(self, signature: str, timestamp: int) -> bool:
        """Whether this signed request is new: a copy of one already answered (within the
        5 minutes its signature is valid) is not acted on again (an escalation sent the
        pager twice). The signatures seen are kept while their timestamp is valid."""
        seen = self._seen
        horizon = timestamp - REPLAY_WINDOW_SECONDS
        while seen and (next(iter(seen.values())) < horizon or len(seen) > MAX_SEEN):
            seen.popitem(last=False)
        if signature in seen:
            return False
        seen[signature] = timestamp
        return True

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            return web.Response(status=400, text="expected a UTF-8 form")
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        readable = (
            timestamp.isascii()
            and timestamp.isdigit()
            and len(timestamp) <= 12
            and signature.isascii()  # compare_digest refuses other text (a 500 and a traceback)
        )
        if not readable or not self.verifier.is_valid(body, timestamp, signature):
            log.warning(
                "slack action refused: bad signature or stale timestamp",
                extra={"event": "slack_action_refused"},
            )
            return web.Response(status=401, text="invalid signature")
        if not self._first_time(signature, int(timestamp)):
            log.warning(
                "slack action refused: a request already answered, sent again",
                extra={"event": "slack_action_replayed"},
            )
            return web.Response(status=200)  # answered before: nothing more to do
        try:
            payload = _payload(body)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        if payload.get("type") != "block_actions":
            return web.Response(status=200)
        who = _who(payload.get("user"))
        response_url = payload.get("response_url")
        wanted: list[tuple[str, Action]] = []
        chosen: list[LabelChoice] = []
        for item in payload.get("actions") or []:
            if not isinstance(item, dict):
                continue
            action_id = str(item.get("action_id", ""))
            if action_id == LABEL_ACTION:
                choice = _label_choice(item, response_url)
                if choice is not None:
                    chosen.append(choice)
                continue
            action = ACTION_IDS.get(action_id)
            if action is not None and item.get("value"):
                wanted.append((str(item["value"]), action))
        if wanted or chosen:
            await self._act_in_time(wanted, chosen, who)
        return web.Response(status=200)

    async def _act_in_time(
        self, wanted: list[tuple[str, Action]], chosen: list[LabelChoice], who: str
    ) -> None:
        """Do the actions; stop waiting after ``answer_within`` seconds (they go on)."""
        task = asyncio.create_task(self._act_all(wanted, chosen, who))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            await asyncio.wait_for(asyncio.shield(task), self.answer_within)
        except TimeoutError:
            log.warning(
                "slack actions %s still running after %.1f s: answered anyway",
                wanted or [(c.incident_id, "label") for c in chosen],
                self.answer_within,
                extra={"event": "slack_action_slow"},
            )

    async def _act_all(
        self, wanted: list[tuple[str, Action]], chosen: list[LabelChoice], who: str
    ) -> None:
        for incident_id, action in wanted:
            await self._act(incident_id, action, who)
        for choice in chosen:
            answer = await self._label(choice, who)
            if choice.response_url:
                await _answer_privately(choice.response_url, answer)

    async def _label(self, choice: LabelChoice, who: str) -> str:
        """Store the label; what to tell the person who chose it (Slack mrkdwn)."""
        post = escape_untrusted(choice.post_id, HANDLE_CHARS)
        shown = LABEL_CHOICES[choice.label].lower()
        try:
            if self.labels is None:
                raise LabelsUnavailable("this xwatch keeps no labels")
            stored = await self.labels.label_sample(
                choice.incident_id, choice.post_id, choice.label, who
            )
        except (LabelsUnavailable, PostNotFoundError, LabelInputError, StoreError) as exc:
            log.warning(
                "slack label %s of post %s (incident %s) not stored: %s",
                choice.label,
                logs.excerpt(choice.post_id),
                choice.incident_id,
                exc,
                extra={"event": "slack_label_refused", "incident": choice.incident_id},
            )
            return f"Not labelled: {escape_untrusted(str(exc), SECTION_CHARS // 2)}"
        except Exception:
            log.exception(
                "slack label of post %s failed",
                logs.excerpt(choice.post_id),
                extra={"event": "slack_label_failed", "incident": choice.incident_id},
            )
            return "Not labelled: xwatch failed to store it (see its log)."
        log.info(
            "slack label %s of post %s by %s",
            choice.label,
            logs.excerpt(choice.post_id),
            who,
            extra={"event": "slack_label", "incident": choice.incident_id},
        )
        return (
            f"Thanks: post {post} is labelled *{shown}* (label {stored.id}). It joins the "
            "team's training set: `xwatch labels export`, then `xwatch train`."
        )

    async def _act(self, incident_id: str, action: Action, who: str) -> None:
        try:
            await self.actions.act(incident_id, action, who, via="slack", silence_for=SILENCE_FOR)
        except UnknownIncident:
            log.info(
                "slack action %s on %s ignored: no open incident has this id",
                action,
                incident_id,
                extra={"event": "slack_action_unknown_incident"},
            )
        except Exception:
            log.exception(
                "slack action %s on %s failed",
                action,
                incident_id,
                extra={"event": "slack_action_failed"},
            )
        else:
            log.info(
                "slack action %s on %s by %s",
                action,
                incident_id,
                who,
                extra={"event": "slack_action"},
            )


def _label_choice(item: Mapping[str, Any], response_url: object) -> LabelChoice | None:
    """The label chosen in a post's menu (``label_menu``), or None for a value that is not
    one of ours."""
    option = item.get("selected_option")
    try:
        value = orjson.loads(str(option.get("value", ""))) if isinstance(option, dict) else None
    except orjson.JSONDecodeError:
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, str) and v for v in value)
        or value[2] not in LABEL_CHOICES
    ):
        log.warning(
            "slack label choice ignored: not one of xwatch's menus",
            extra={"event": "slack_action_refused"},
        )
        return None
    url = response_url if isinstance(response_url, str) and _is_http(response_url) else ""
    return LabelChoice(value[0], value[1], value[2], url)


def _is_http(url: str) -> bool:
    return url.startswith(("https://", "http://")) and len(url) <= 2000


async def _answer_privately(response_url: str, text: str) -> None:
    """An ephemeral message to the person who clicked, through the click's response_url
    (best effort: a failure is logged; what was stored stays stored)."""
    body = {"response_type": "ephemeral", "replace_original": False, "text": text}
    timeout = aiohttp.ClientTimeout(total=RESPONSE_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(response_url, json=body) as response,
        ):
            if response.status >= 400:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=response.reason or ""
                )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning(
            "slack answer through response_url failed: %s: %s",
            type(exc).__name__,
            exc,
            extra={"event": "slack_response_failed"},
        )


def _payload(body: str) -> dict[str, Any]:
    """The JSON ``payload`` field of Slack's form-encoded request; ValueError if none."""
    try:
        payload = orjson.loads(parse_qs(body)["payload"][0])
    except (KeyError, IndexError, orjson.JSONDecodeError):
        raise ValueError("expected a form field 'payload' holding JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("the payload is not a JSON object")
    return payload


def _who(user: object) -> str:
    """``@username`` for the person who clicked (what the timeline and emails show)."""
    if not isinstance(user, dict):
        return "someone in Slack"
    name = user.get("username") or user.get("name")
    if name:
        return f"@{name}"
    return f"Slack user {user.get('id', '?')}"
