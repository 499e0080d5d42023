"""What the web side (incident pages, the JSON API, Slack buttons) needs from the daemon.

The daemon owns the incident book and the store; the web handlers only see this
small interface, so they can be tested against an in-memory implementation and
never reach into the daemon's internals.

    Actions      acknowledge, resolve, escalate or silence an incident
    Incidents    read incidents with their timelines and deliveries; silences

``IncidentRecord`` is an incident as the store keeps it: the incident, its timeline
(every state change) and its deliveries (every notification, with its attempts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from xwatch.alerting.incidents import Entry, Incident, Silence

Action = Literal["acknowledge", "resolve", "escalate", "silence"]
ACTIONS: tuple[Action, ...] = ("acknowledge", "resolve", "escalate", "silence")
DEFAULT_SILENCE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification of an incident to one notifier, and how its delivery went."""

    notice_id: str
    channel: str
    kind: str  # the notice kind: opened, updated, reminder, ...
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    incident: Incident
    timeline: tuple[Entry, ...]  # oldest first
    deliveries: tuple[Delivery, ...]  # oldest first


class Actions(Protocol):
    async def act(
        self,
        incident_id: str,
        action: Action,
        who: str,
        *,
        via: str,
        silence_for: timedelta = DEFAULT_SILENCE,
    ) -> Incident:
        """Do ``action`` on an open incident as ``who`` (via "slack", "api", "page").

        Raises ``xwatch.alerting.incidents.UnknownIncident`` when no open incident has
        this id (unknown, or resolved already). Returns the incident as it is now.
        """
        ...


class Incidents(Protocol):
    async def incident(self, incident_id: str) -> IncidentRecord | None: ...

    async def incidents(
        self,
        *,
        state: str | None = None,
        brand: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Sequence[Incident]:
        """Newest first; ``state``: open (any but resolved), firing, acknowledged, ...;
        ``before``: the next page, after the incident with this id."""
        ...

    async def silences(self) -> Sequence[Silence]: ...

    async def add_silence(
        self,
        *,
        who: str,
        ends_at: datetime,
        brand: str = "",
        rules: tuple[str, ...] = (),
        labels: tuple[tuple[str, str], ...] = (),
        comment: str = "",
    ) -> Silence: ...

    async def remove_silence(self, silence_id: str, who: str) -> bool: ...
