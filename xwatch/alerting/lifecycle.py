"""The alert lifecycle: one alert per identity, from firing to resolved.

Re-firings of an identity that is already firing (the next bucket, another time
scale, another matching post) update it instead of sending again; a re-firing
that is clearly stronger than anything before it (ten times less likely, or for a
mention rule a post with at least twice the reach) is reported as ``UPDATED`` so
that the incident shows the new peak. An alert is resolved, and that is
announced, once its identity has stayed calm for ``resolve_after`` of event time:
that calm period is the hysteresis that keeps a flapping signal one alert.
An alert whose rule is gone (a reload removed it, or it no longer watches that
series) never fires again: left to the calm period it would end ``resolve_after``
later as "back to normal", which nobody checked; ``end`` resolves it at once, saying why.

Pure: time comes in as an argument. ``restore`` puts back the alerts that were
active when the daemon stopped (kept in the store with their incident), so a
restart in the middle of a crisis neither forgets nor repeats it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from xwatch.model import Alert, AlertEvent, EventKind, Measure

STRONGER_SURPRISE = 1.0  # a new peak: at least ten times less likely than the last one
STRONGER_REACH = 2.0  # a mention rule's new post: at least twice the reach


def fired_at(alert: Alert) -> datetime:
    """The event time of a firing: its bucket's end, or the post's time."""
    return alert.signal.end


def strength(alert: Alert) -> float:
    """How strong a firing is, to compare re-firings of one identity."""
    if alert.signal.measure is Measure.MENTION:
        return float(alert.bucket.reach)
    return alert.signal.surprise


@dataclass(slots=True)
class ActiveAlert:
    alert: Alert  # the first firing: what was sent
    latest: Alert  # the most recent firing
    since: datetime
    last_fired: datetime
    firings: int = 1
    peak: Alert | None = None  # the strongest firing so far (None: the first one)

    @property
    def strongest(self) -> Alert:
        return self.peak if self.peak is not None else self.alert


def is_stronger(alert: Alert, than: Alert) -> bool:
    if alert.signal.measure is Measure.MENTION:
        return strength(alert) >= STRONGER_REACH * max(strength(than), 1.0)
    return strength(alert) >= strength(than) + STRONGER_SURPRISE


class AlertBook:
    def __init__(self, resolve_after: timedelta) -> None:
        self.resolve_after = resolve_after
        self.active: dict[str, ActiveAlert] = {}

    def restore(self, active: Iterable[ActiveAlert]) -> None:
        """Put back alerts that were active before a restart."""
        for item in active:
            self.active[item.alert.identity] = item

    def observe(self, alerts: list[Alert], now: datetime) -> list[AlertEvent]:
        """Take this round's firings (at event time ``now``); return what changed."""
        events = []
        for alert in alerts:
            at = fired_at(alert)
            active = self.active.get(alert.identity)
            if active is None:
                self.active[alert.identity] = ActiveAlert(alert, alert, at, at)
                events.append(AlertEvent(EventKind.FIRING, alert, at))
                continue
            active.latest = alert
            active.last_fired = max(active.last_fired, at)
            active.firings += 1
            if is_stronger(alert, active.strongest):
                active.peak = alert
                events.append(AlertEvent(EventKind.UPDATED, alert, at))
        for identity, active in list(self.active.items()):
            if now - active.last_fired >= self.resolve_after:
                del self.active[identity]
                resolved_at = active.last_fired + self.resolve_after
                resolved = AlertEvent(EventKind.RESOLVED, active.latest, resolved_at, active.since)
                events.append(resolved)
        return events

    def end(self, identities: Iterable[str], at: datetime | None, why: str) -> list[AlertEvent]:
        """Resolve these active alerts now, at event time ``at`` (None: each at its last
        firing, before any post has moved event time), for the reason ``why``."""
        events = []
        for identity in identities:
            active = self.active.pop(identity, None)
            if active is None:
                continue
            ended = active.last_fired if at is None else max(at, active.last_fired)
            events.append(
                AlertEvent(EventKind.RESOLVED, active.latest, ended, active.since, why=why)
            )
        return events
