"""What every notifier says about an incident, as plain data.

Slack, email, the webhook and the incident page all show the same facts: the
headline, what fired at which time scale with observed against expected and the
likelihood, the negative share now against its usual level, the emerging terms,
the posts with the most reach, and the links. ``summarize`` works them out once,
here, from the incident; each notifier only lays them out (and escapes them for
its medium: the texts in a ``Summary`` are raw, exactly as posted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from xwatch.alerting.incidents import Incident, Notice, NoticeKind, Part, State
from xwatch.alerting.render import MEASURE_NAMES, describe
from xwatch.model import Measure, Mention, format_count, format_scale

TOP_POSTS = 5
TOP_TERMS = 5


@dataclass(frozen=True, slots=True)
class PartLine:
    """One alert of the incident, in words and numbers."""

    rule_id: str
    title: str
    severity: str
    what: str  # "negative volume up at 5m: negative volume 48 (expected 3.1, band 0-8)"
    likelihood: float
    scale: str  # "5m", or "" for a single-post rule
    since: datetime
    status: str  # firing, resolved, muted (by the critical alert), silenced


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    handle: str
    followers: int
    text: str
    url: str | None
    sentiment: str  # negative, neutral, positive, or ""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    incident_id: str
    brand: str
    severity: str
    state: str
    acknowledged: bool  # someone has (a silence after it shows "silenced" as the state)
    title: str
    headline: str  # "[CRITICAL] kettlebird: negative volume 48 (expected 3.1)"
    status_line: str  # "firing since 13:05 UTC", "acknowledged by @maria", ...
    parts: tuple[PartLine, ...]
    negative_share: float | None  # in the lead alert's bucket
    usual_share: float | None
    terms: tuple[str, ...]  # emerging terms, strongest first
    posts: tuple[Post, ...]  # most reach first
    playbook_title: str
    playbook_url: str
    incident_url: str
    opened_at: datetime


def summarize(incident: Incident, incident_url: str) -> Summary:
    lead = incident.lead.latest
    share = lead.context_signal(Measure.NEGATIVE_SHARE)
    return Summary(
        incident_id=incident.id,
        brand=incident.brand,
        severity=incident.severity.value,
        state=incident.state.value,
        acknowledged=bool(incident.acknowledged_by),
        title=incident.title,
        headline=headline(incident),
        status_line=status_line(incident),
        parts=tuple(_part_line(p) for p in incident.parts),
        negative_share=share.observed if share is not None else None,
        usual_share=share.expected if share is not None else None,
        terms=_terms(incident),
        posts=_posts(incident),
        playbook_title=incident.playbook.title,
        playbook_url=incident.playbook.url,
        incident_url=incident_url,
        opened_at=incident.opened_at,
    )


def headline(incident: Incident) -> str:
    """``[CRITICAL] acme: negative share 41% (usual 9%)``: sorts well in an inbox."""
    lead = incident.lead.latest
    signal = lead.signal
    if signal.measure is Measure.MENTION:
        what = f"{lead.title} (single post)"
    elif lead.term:
        what = f"new term {lead.term!r} x{signal.observed:.0f} (usual {signal.expected:.1f})"
    elif signal.measure is Measure.NEGATIVE_SHARE:
        what = f"negative share {signal.observed:.0%} (usual {signal.expected:.0%})"
    else:
        name = MEASURE_NAMES[signal.measure]
        what = f"{name} {signal.observed:.0f} (expected {format_count(signal.expected)})"
    return f"[{incident.severity.value.upper()}] {incident.brand}: {what}"


def status_line(incident: Incident) -> str:
    if incident.state is State.RESOLVED and incident.resolved_at is not None:
        return f"resolved at {incident.resolved_at:%Y-%m-%d %H:%M} UTC"
    if incident.state is State.ACKNOWLEDGED:
        return f"acknowledged by {incident.acknowledged_by}"
    if incident.state is State.SILENCED:
        return "silenced"
    return f"firing since {incident.opened_at:%Y-%m-%d %H:%M} UTC"


def notice_line(notice: Notice) -> str:
    """What a notice is about, in a few words, for a thread reply or a subject prefix."""
    if notice.kind is NoticeKind.OPENED:
        return f"Opened: {notice.text}"
    return f"{notice.kind.value.capitalize()}: {notice.text}"


def _part_line(part: Part) -> PartLine:
    alert = part.latest
    signal = alert.signal
    if signal.measure is Measure.MENTION:
        what, scale = describe(signal), ""
    else:
        scale = format_scale(alert.series.scale_seconds)
        direction = "up" if signal.direction == "up" else "down"
        subject = f"term {alert.term!r}" if alert.term else MEASURE_NAMES[signal.measure]
        what = f"{subject} {direction} at {scale}: {describe(signal)}"
    if not part.active:
        status = "resolved"
    elif part.silenced_by:
        status = "silenced"
    elif part.muted_by:
        status = "muted"
    else:
        status = "firing"
    return PartLine(
        rule_id=alert.rule_id,
        title=alert.title,
        severity=alert.severity.value,
        what=what,
        likelihood=signal.likelihood,
        scale=scale,
        since=part.since,
        status=status,
    )


def _terms(incident: Incident) -> tuple[str, ...]:
    best: dict[str, float] = {}
    for part in incident.parts:
        for surge in part.latest.terms:
            best[surge.term] = max(best.get(surge.term, 0.0), surge.likelihood)
        if part.latest.term:
            best[part.latest.term] = max(best.get(part.latest.term, 0.0), 1.0)
    return tuple(sorted(best, key=lambda t: -best[t])[:TOP_TERMS])


def _posts(incident: Incident) -> tuple[Post, ...]:
    seen: dict[str, Mention] = {}
    for part in incident.parts:
        for mention in (*part.latest.bucket.samples, *part.first.bucket.samples):
            seen.setdefault(mention.id, mention)
    ranked = sorted(seen.values(), key=lambda m: -m.reach)[:TOP_POSTS]
    return tuple(
        Post(
            id=m.id,
            handle=m.author.handle,
            followers=m.author.followers,
            text=m.text,
            url=m.url,
            sentiment=m.sentiment.label if m.sentiment else "",
            created_at=m.created_at,
        )
        for m in ranked
    )


def share_when(summary: Summary) -> str:
    """When the negative share shown was seen: "now" while the incident is open; once it
    is resolved, the lead alert's last firing bucket (a closing notice said "41% now"
    next to "resolved")."""
    return "now" if summary.state != "resolved" else "at the last alert"
