"""The alert lifecycle: one alert per identity, from firing to resolved.

Re-firings of an identity that is already firing (the next bucket, another time
scale) update it instead of sending again. An alert is resolved, and that is
announced, once its identity has stayed calm for ``resolve_after`` of event time.
Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from xwatch.model import Alert, AlertEvent, EventKind


@dataclass(slots=True)
class ActiveAlert:
    alert: Alert  # the first firing: what was sent
    latest: Alert  # the most recent firing
    since: datetime
    last_fired: datetime
    firings: int = 1


class AlertBook:
    def __init__(self, resolve_after: timedelta) -> None:
        self.resolve_after = resolve_after
        self.active: dict[str, ActiveAlert] = {}

    def observe(self, alerts: list[Alert], now: datetime) -> list[AlertEvent]:
        """Take this round's firings (at event time ``now``); return what changed."""
        events = []
        for alert in alerts:
            at = alert.signal.end
            active = self.active.get(alert.identity)
            if active is None:
                self.active[alert.identity] = ActiveAlert(alert, alert, at, at)
                events.append(AlertEvent(EventKind.FIRING, alert, at))
            else:
                active.latest = alert
                active.last_fired = max(active.last_fired, at)
                active.firings += 1
        for identity, active in list(self.active.items()):
            if now - active.last_fired >= self.resolve_after:
                del self.active[identity]
                resolved_at = active.last_fired + self.resolve_after
                events.append(AlertEvent(EventKind.RESOLVED, active.latest, resolved_at))
        return events
